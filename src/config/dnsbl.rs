//! `--dnsbl ZONE[*WEIGHT]`: one DNS blocklist and what a listing in it weighs.

use crate::config::domains::validate_dns_name;

/// Weights are small integers, as in Postfix's `postscreen_dnsbl_sites`.
const WEIGHT_MAX: i32 = 100;

/// One blocklist zone and its weight.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsblSite {
    /// Lowercase, without a trailing dot.
    pub zone: Box<str>,
    /// Added to the client's score when this zone lists it; negative for an allowlist.
    pub weight: i32,
}

impl DnsblSite {
    /// Parses `zone` or `zone*weight`.
    pub(super) fn parse(text: &str) -> Result<DnsblSite, String> {
        let (zone, weight) = match text.rsplit_once('*') {
            Some((zone, weight)) => {
                let weight: i32 = weight
                    .parse()
                    .map_err(|_| format!("{text:?}: the weight after * is not a whole number"))?;
                if weight == 0 || weight.abs() > WEIGHT_MAX {
                    return Err(format!(
                        "{text:?}: the weight must be from -{WEIGHT_MAX} to {WEIGHT_MAX}, not 0"
                    ));
                }
                (zone, weight)
            }
            None => (text, 1),
        };
        let zone = zone.trim_end_matches('.').to_ascii_lowercase();
        validate_dns_name(&zone).map_err(|why| format!("{text:?}: {why}"))?;
        Ok(DnsblSite {
            zone: zone.into(),
            weight,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zones_parse_with_optional_weights() {
        assert_eq!(
            DnsblSite::parse("zen.Example.").unwrap(),
            DnsblSite {
                zone: "zen.example".into(),
                weight: 1
            }
        );
        assert_eq!(DnsblSite::parse("bl.test*3").unwrap().weight, 3);
        assert_eq!(DnsblSite::parse("allow.test*-2").unwrap().weight, -2);
        for bad in [
            "bl.test*0",
            "bl.test*x",
            "bl.test*101",
            "*2",
            "bad zone",
            "",
        ] {
            assert!(DnsblSite::parse(bad).is_err(), "{bad}");
        }
    }
}
