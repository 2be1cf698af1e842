//! What the checks found, in the words of RFC 8601 (and for the message JSON).
//!
//! mail-auth's own output types borrow the message and carry error values; these are
//! owned, small and `Serialize`, made once per message on the resolver thread and sent to
//! the executor. The mapping from mail-auth's results lives here, in one place, so the
//! JSON, the header and the metrics cannot disagree on what a result was called.

use std::net::{IpAddr, Ipv4Addr};

use mail_auth::dkim::{DkimError, Signature};
use mail_auth::dmarc::Policy;
use mail_auth::{
    DkimOutput, DkimResult, DmarcOutput, DmarcResult, IprevResult, SpfOutput, SpfResult,
};
use serde::Serialize;

use crate::auth::VerifyRequest;

/// Longest name kept in results (a domain name has at most 255 octets): a DKIM `d=` or a
/// From domain is whatever the sender wrote, and must not make the JSON or the header
/// grow with it. Longer names are cut.
pub const NAME_BYTES_MAX: usize = 255;

/// A result value of RFC 8601 section 2.7 (the lowercase words of the IANA registry).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Pass,
    Fail,
    SoftFail,
    Neutral,
    None,
    TempError,
    PermError,
    Policy,
}

impl Verdict {
    /// Every verdict, in `index` order.
    pub const ALL: [Verdict; 8] = [
        Verdict::Pass,
        Verdict::Fail,
        Verdict::SoftFail,
        Verdict::Neutral,
        Verdict::None,
        Verdict::TempError,
        Verdict::PermError,
        Verdict::Policy,
    ];

    /// The verdict's place in `ALL`.
    pub fn index(self) -> usize {
        self as usize
    }

    /// The verdict `as_str` writes.
    pub fn parse(word: &str) -> Option<Verdict> {
        Some(match word {
            "pass" => Verdict::Pass,
            "fail" => Verdict::Fail,
            "softfail" => Verdict::SoftFail,
            "neutral" => Verdict::Neutral,
            "none" => Verdict::None,
            "temperror" => Verdict::TempError,
            "permerror" => Verdict::PermError,
            "policy" => Verdict::Policy,
            _ => return None,
        })
    }

    /// The word as written in the header and the JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::Fail => "fail",
            Verdict::SoftFail => "softfail",
            Verdict::Neutral => "neutral",
            Verdict::None => "none",
            Verdict::TempError => "temperror",
            Verdict::PermError => "permerror",
            Verdict::Policy => "policy",
        }
    }
}

/// Which identity SPF checked: MAIL FROM's domain, or the HELO name when MAIL FROM is the
/// null sender (RFC 7208 2.3); the header writes `smtp.mailfrom` or `smtp.helo`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SpfIdentity {
    MailFrom,
    Helo,
}

/// SPF (RFC 7208) for one identity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SpfCheck {
    pub result: Verdict,
    /// The domain checked (empty when there was none to check).
    pub domain: String,
    pub identity: SpfIdentity,
}

/// One DKIM signature (RFC 6376). A single entry with an empty domain and selector and
/// `temperror` means the signatures could not even be listed (queue full).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DkimCheck {
    pub result: Verdict,
    /// The signature's `d=`.
    pub domain: String,
    /// The signature's `s=`.
    pub selector: String,
}

/// The DMARC policy the From domain published (RFC 7489 6.3 `p=`, or `sp=`/`np=` as it
/// applied).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DmarcPolicy {
    None,
    Quarantine,
    Reject,
}

impl DmarcPolicy {
    /// The word of a DMARC record's `p=`.
    pub fn as_str(self) -> &'static str {
        match self {
            DmarcPolicy::None => "none",
            DmarcPolicy::Quarantine => "quarantine",
            DmarcPolicy::Reject => "reject",
        }
    }

    /// The policy `as_str` writes.
    pub fn parse(word: &str) -> Option<DmarcPolicy> {
        match word {
            "none" => Some(DmarcPolicy::None),
            "quarantine" => Some(DmarcPolicy::Quarantine),
            "reject" => Some(DmarcPolicy::Reject),
            _ => None,
        }
    }
}

/// DMARC (RFC 7489): SPF or DKIM passed for a domain aligned with the From domain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DmarcCheck {
    pub result: Verdict,
    /// The RFC 5322 From domain (empty when the message has none, or several).
    pub domain: String,
    /// `None` when no DMARC record applies.
    pub policy: Option<DmarcPolicy>,
}

/// ARC chain validation (RFC 8617): `none` without ARC sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ArcCheck {
    pub result: Verdict,
}

/// iprev (RFC 8601 3): the client's PTR name resolves back to its address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct IprevCheck {
    pub result: Verdict,
}

/// Everything checked for one message; `Serialize` gives the message JSON's `auth` object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuthResults {
    pub spf: SpfCheck,
    pub dkim: Vec<DkimCheck>,
    pub dmarc: DmarcCheck,
    pub arc: ArcCheck,
    pub iprev: IprevCheck,
    /// The client's address, only when the request asked for it (`--log-client-ip`);
    /// absent from the JSON otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_ip: Option<IpAddr>,
}

impl AuthResults {
    /// The answer when nothing could be checked (queue full, thread gone, deadline passed
    /// before start), and the starting point of every check on the resolver thread: a
    /// check overwrites its part when it finishes, so what is unfinished at the deadline
    /// stays `temperror`. Made from the envelope alone, never from the message.
    pub fn temperror(request: &VerifyRequest) -> AuthResults {
        AuthResults::temperror_for(
            &request.mail_from,
            &request.helo,
            request.include_client_ip.then_some(request.client_ip),
        )
    }

    /// `temperror` from the envelope's parts, for a caller that no longer has the
    /// request: `helo` matters only when `mail_from` has no domain (the null sender);
    /// `client_ip` is what the results may show (`None` without `--log-client-ip`).
    pub fn temperror_for(mail_from: &str, helo: &str, client_ip: Option<IpAddr>) -> AuthResults {
        let (identity, domain) = spf_identity_of(mail_from, helo);
        AuthResults {
            spf: SpfCheck {
                result: Verdict::TempError,
                domain: bounded(domain),
                identity,
            },
            dkim: vec![DkimCheck {
                result: Verdict::TempError,
                domain: String::new(),
                selector: String::new(),
            }],
            dmarc: DmarcCheck {
                result: Verdict::TempError,
                domain: String::new(),
                policy: None,
            },
            arc: ArcCheck {
                result: Verdict::TempError,
            },
            iprev: IprevCheck {
                result: Verdict::TempError,
            },
            client_ip,
        }
    }
}

/// `name` as kept in results: at most `NAME_BYTES_MAX` octets, cut on a char boundary.
pub(super) fn bounded(name: &str) -> String {
    truncate_str(name, NAME_BYTES_MAX).to_string()
}

/// The longest prefix of `text` of at most `bytes_max` octets that ends on a char boundary.
pub(super) fn truncate_str(text: &str, bytes_max: usize) -> &str {
    if text.len() <= bytes_max {
        return text;
    }
    let mut end_idx = bytes_max;
    while !text.is_char_boundary(end_idx) {
        end_idx -= 1;
    }
    &text[..end_idx]
}

/// The identity SPF checks for `request` and its domain: MAIL FROM's domain, or the HELO
/// name for the null sender (RFC 7208 2.3 and 2.4).
pub(super) fn spf_identity(request: &VerifyRequest) -> (SpfIdentity, &str) {
    spf_identity_of(&request.mail_from, &request.helo)
}

fn spf_identity_of<'a>(mail_from: &'a str, helo: &'a str) -> (SpfIdentity, &'a str) {
    if mail_from.is_empty() {
        return (SpfIdentity::Helo, helo);
    }
    // mail-auth falls back to the HELO name for an address without a domain; say so.
    match mail_from.rsplit_once('@') {
        Some((_, domain)) => (SpfIdentity::MailFrom, domain),
        None => (SpfIdentity::MailFrom, helo),
    }
}

impl SpfCheck {
    pub(super) fn from_output(output: &SpfOutput, identity: SpfIdentity) -> SpfCheck {
        let result = match output.result() {
            SpfResult::Pass => Verdict::Pass,
            SpfResult::Fail => Verdict::Fail,
            SpfResult::SoftFail => Verdict::SoftFail,
            SpfResult::Neutral => Verdict::Neutral,
            SpfResult::TempError => Verdict::TempError,
            SpfResult::PermError => Verdict::PermError,
            SpfResult::None => Verdict::None,
        };
        SpfCheck {
            result,
            domain: bounded(output.domain()),
            identity,
        }
    }
}

impl DkimCheck {
    /// A signature that has not been checked yet.
    pub(super) fn unfinished(signature: &Signature) -> DkimCheck {
        DkimCheck {
            result: Verdict::TempError,
            domain: bounded(&signature.d),
            selector: bounded(&signature.s),
        }
    }

    pub(super) fn from_output(output: &DkimOutput<'_>) -> DkimCheck {
        let result = match output.result() {
            DkimResult::Pass => Verdict::Pass,
            // mail-auth calls a body that no longer matches its hash `neutral`; RFC 6376
            // 6.1.3 says PERMFAIL, and RFC 8601 2.7.1's `fail` is "did not pass
            // verification", which is what a changed body is.
            DkimResult::Neutral(mail_auth::Error::Dkim(DkimError::FailedBodyHashMatch)) => {
                Verdict::Fail
            }
            DkimResult::Neutral(_) => Verdict::Neutral,
            DkimResult::Fail(_) => Verdict::Fail,
            DkimResult::PermError(_) => Verdict::PermError,
            DkimResult::TempError(_) => Verdict::TempError,
            DkimResult::None => Verdict::None,
        };
        let (domain, selector) = match output.signature() {
            Some(signature) => (bounded(&signature.d), bounded(&signature.s)),
            None => (String::new(), String::new()),
        };
        DkimCheck {
            result,
            domain,
            selector,
        }
    }
}

impl DmarcCheck {
    pub(super) fn from_output(output: &DmarcOutput) -> DmarcCheck {
        let result = match output.result() {
            DmarcResult::Pass => Verdict::Pass,
            DmarcResult::Fail(_) => Verdict::Fail,
            DmarcResult::TempError(_) => Verdict::TempError,
            DmarcResult::PermError(_) => Verdict::PermError,
            DmarcResult::None => Verdict::None,
        };
        // mail-auth reports `p=none` also when there is no record at all.
        let policy = output.dmarc_record().map(|_| match output.policy() {
            Policy::Reject => DmarcPolicy::Reject,
            Policy::Quarantine => DmarcPolicy::Quarantine,
            Policy::None | Policy::Unspecified => DmarcPolicy::None,
        });
        DmarcCheck {
            result,
            domain: bounded(output.domain()),
            policy,
        }
    }
}

impl ArcCheck {
    /// RFC 8617 knows `none`, `pass` and `fail`; a chain mail-auth finds malformed
    /// (`neutral`, `permerror`) is a failed chain. A DNS failure stays `temperror`, as an
    /// unfinished check does.
    pub(super) fn from_result(result: &DkimResult) -> ArcCheck {
        let result = match result {
            DkimResult::Pass => Verdict::Pass,
            DkimResult::None => Verdict::None,
            DkimResult::TempError(_) => Verdict::TempError,
            DkimResult::Fail(_) | DkimResult::Neutral(_) | DkimResult::PermError(_) => {
                Verdict::Fail
            }
        };
        ArcCheck { result }
    }
}

impl IprevCheck {
    /// RFC 8601 2.7.3: `permerror` when no PTR is published, `fail` when the names do not
    /// lead back to the address.
    pub(super) fn from_result(result: &IprevResult) -> IprevCheck {
        let result = match result {
            IprevResult::Pass => Verdict::Pass,
            IprevResult::Fail(_) => Verdict::Fail,
            IprevResult::TempError(_) => Verdict::TempError,
            IprevResult::PermError(_) => Verdict::PermError,
            IprevResult::None => Verdict::None,
        };
        IprevCheck { result }
    }
}

/// What one DNSBL zone said about a client (RFC 5782).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "verdict")]
pub enum DnsblVerdict {
    /// An A record in 127.0.0.0/24 answered (its last octet is the list's reason code).
    #[serde(rename = "listed")]
    Listed { answer: Ipv4Addr },
    /// NXDOMAIN or no A record in 127.0.0.0/24.
    #[serde(rename = "not_listed")]
    NotListed,
    /// No answer within the deadline, or a DNS error.
    #[serde(rename = "temperror")]
    TempError,
}

/// One zone's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DnsblZone {
    pub zone: Box<str>,
    #[serde(flatten)]
    pub verdict: DnsblVerdict,
}

/// Every zone's answer about one client, in the order the zones were given (so weights
/// from the configuration can be matched by index).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DnsblResult {
    pub zones: Vec<DnsblZone>,
}

impl DnsblResult {
    /// Every zone `temperror`: the answer when nothing could be asked, and the starting
    /// point of a query (a zone overwrites its entry when it answers).
    pub fn temperror(zones: &[Box<str>]) -> DnsblResult {
        DnsblResult {
            zones: zones
                .iter()
                .map(|zone| DnsblZone {
                    zone: zone.clone(),
                    verdict: DnsblVerdict::TempError,
                })
                .collect(),
        }
    }

    /// Whether any zone lists the client.
    pub fn is_listed(&self) -> bool {
        self.listed_zones().next().is_some()
    }

    /// The zones that list the client.
    pub fn listed_zones(&self) -> impl Iterator<Item = &str> {
        self.zones
            .iter()
            .filter(|zone| matches!(zone.verdict, DnsblVerdict::Listed { .. }))
            .map(|zone| &*zone.zone)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn request(mail_from: &str, include_client_ip: bool) -> VerifyRequest {
        VerifyRequest {
            client_ip: "192.0.2.7".parse().unwrap(),
            helo: "mail.example.org".into(),
            mail_from: mail_from.into(),
            authserv_id: Arc::from("mx.example.test"),
            message: Arc::from(&b"From: a@example.org\r\n\r\n"[..]),
            include_client_ip,
        }
    }

    #[test]
    fn spf_checks_mail_from_or_else_helo() {
        let cases = [
            ("bounce@example.org", (SpfIdentity::MailFrom, "example.org")),
            ("a@b@example.org", (SpfIdentity::MailFrom, "example.org")),
            ("postmaster", (SpfIdentity::MailFrom, "mail.example.org")),
            ("", (SpfIdentity::Helo, "mail.example.org")),
        ];
        for (mail_from, expected) in cases {
            assert_eq!(
                spf_identity(&request(mail_from, false)),
                expected,
                "{mail_from}"
            );
        }
    }

    #[test]
    fn temperror_json_names_no_client_unless_asked() {
        let json =
            serde_json::to_value(AuthResults::temperror(&request("a@example.org", false))).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "spf": {"result": "temperror", "domain": "example.org", "identity": "mailfrom"},
                "dkim": [{"result": "temperror", "domain": "", "selector": ""}],
                "dmarc": {"result": "temperror", "domain": "", "policy": null},
                "arc": {"result": "temperror"},
                "iprev": {"result": "temperror"}
            })
        );
        let asked = serde_json::to_value(AuthResults::temperror(&request("", true))).unwrap();
        assert_eq!(asked["client_ip"], "192.0.2.7");
        assert_eq!(asked["spf"]["identity"], "helo");
    }

    #[test]
    fn every_verdict_serializes_as_its_rfc_8601_word() {
        for verdict in Verdict::ALL {
            assert_eq!(Verdict::ALL[verdict.index()], verdict);
            assert_eq!(serde_json::to_value(verdict).unwrap(), verdict.as_str());
        }
    }

    #[test]
    fn dnsbl_json() {
        let result = DnsblResult {
            zones: vec![
                DnsblZone {
                    zone: "bl.example".into(),
                    verdict: DnsblVerdict::Listed {
                        answer: "127.0.0.2".parse().unwrap(),
                    },
                },
                DnsblZone {
                    zone: "other.example".into(),
                    verdict: DnsblVerdict::NotListed,
                },
                DnsblZone {
                    zone: "slow.example".into(),
                    verdict: DnsblVerdict::TempError,
                },
            ],
        };
        assert_eq!(
            serde_json::to_value(&result).unwrap(),
            serde_json::json!({"zones": [
                {"zone": "bl.example", "verdict": "listed", "answer": "127.0.0.2"},
                {"zone": "other.example", "verdict": "not_listed"},
                {"zone": "slow.example", "verdict": "temperror"}
            ]})
        );
        assert!(result.is_listed());
        assert_eq!(result.listed_zones().collect::<Vec<_>>(), ["bl.example"]);
        assert!(!DnsblResult::temperror(&["a".into()]).is_listed());
    }

    #[test]
    fn names_are_bounded() {
        assert_eq!(bounded(&"x".repeat(1_000)).len(), NAME_BYTES_MAX);
        // Cut on a char boundary: 127 two-octet chars fit, the 128th would end at 256.
        assert_eq!(bounded(&"é".repeat(200)).len(), 254);
        assert_eq!(bounded("example.org"), "example.org");
    }
}
