//! `IpRange`: a CIDR block such as `10.0.0.0/8` or `2001:db8::/32`, or one address, for
//! settings that name clients (`client_limit_exempt`).
//!
//! A range with host bits set (`10.1.2.3/8`) is refused rather than masked: it is almost
//! always a typo for a different range, and Postfix's cidr tables refuse it too.
//! Matching treats an IPv4-mapped IPv6 client (`::ffff:192.0.2.7`, what a dual-stack
//! listener reports for an IPv4 peer) as the IPv4 address it is.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

const IPV4_BITS: u8 = 32;
const IPV6_BITS: u8 = 128;
const EXPECTED: &str =
    "expected an IP address or a CIDR range such as 192.0.2.7, 10.0.0.0/8 or 2001:db8::/32";

/// A block of IP addresses: `addr/prefix_len`, where the first `prefix_len` bits are fixed.
///
/// Invariant: `prefix_len` is at most the address's width (32 or 128) and every bit of
/// `addr` after the first `prefix_len` is zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IpRange {
    addr: IpAddr,
    prefix_len: u8,
}

impl IpRange {
    /// The range `addr/prefix_len`.
    ///
    /// # Errors
    ///
    /// A one-line reason when `prefix_len` is wider than the address, or when `addr` has
    /// bits set after the prefix (the reason names the range that was probably meant).
    pub fn new(addr: IpAddr, prefix_len: u8) -> Result<IpRange, String> {
        let width = address_bits(addr);
        if prefix_len > width {
            return Err(format!(
                "prefix length {prefix_len} is more than the {width} bits of an IPv{} address",
                if addr.is_ipv4() { 4 } else { 6 }
            ));
        }
        let network = mask(addr, prefix_len);
        if network != addr {
            return Err(format!(
                "{addr}/{prefix_len} has bits set after the prefix: write {network}/{prefix_len}, \
                 or {addr} alone for one address"
            ));
        }
        Ok(IpRange { addr, prefix_len })
    }

    /// The first address of the range.
    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    /// How many leading bits every address in the range shares with [`IpRange::addr`].
    pub fn prefix_len(&self) -> u8 {
        self.prefix_len
    }

    /// Whether `ip` is in the range. An IPv4-mapped IPv6 address (`::ffff:10.1.2.3`) is
    /// also in the IPv4 ranges that hold its IPv4 address; otherwise an IPv4 address is
    /// never in an IPv6 range, nor the other way round.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let matches = |ip: IpAddr| {
            ip.is_ipv4() == self.addr.is_ipv4() && mask(ip, self.prefix_len) == self.addr
        };
        matches(ip) || matches(ip.to_canonical())
    }
}

impl FromStr for IpRange {
    type Err = String;

    /// `ADDR/PREFIX_LEN`, or a bare address for a range of one (`/32` or `/128`).
    fn from_str(text: &str) -> Result<IpRange, String> {
        let (addr_text, prefix_text) = match text.split_once('/') {
            Some((addr_text, prefix_text)) => (addr_text, Some(prefix_text)),
            None => (text, None),
        };
        let addr = addr_text
            .parse::<IpAddr>()
            .map_err(|_| EXPECTED.to_string())?;
        let prefix_len = match prefix_text {
            None => address_bits(addr),
            // Digits only: `u8::from_str` would also take a leading '+'.
            Some(digits) if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) => {
                digits.parse::<u8>().unwrap_or(u8::MAX)
            }
            Some(_) => return Err(format!("bad prefix length after '/': {EXPECTED}")),
        };
        IpRange::new(addr, prefix_len)
    }
}

impl fmt::Display for IpRange {
    /// The form [`IpRange::from_str`] reads: always with the prefix length.
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{}/{}", self.addr, self.prefix_len)
    }
}

fn address_bits(addr: IpAddr) -> u8 {
    match addr {
        IpAddr::V4(_) => IPV4_BITS,
        IpAddr::V6(_) => IPV6_BITS,
    }
}

/// `addr` with every bit after the first `prefix_len` cleared. `prefix_len` is at most
/// the address's width (callers check it).
fn mask(addr: IpAddr, prefix_len: u8) -> IpAddr {
    match addr {
        IpAddr::V4(v4) => {
            let host_bits = u32::from(IPV4_BITS.saturating_sub(prefix_len));
            let netmask = u32::MAX.checked_shl(host_bits).unwrap_or(0);
            IpAddr::V4(Ipv4Addr::from(u32::from(v4) & netmask))
        }
        IpAddr::V6(v6) => {
            let host_bits = u32::from(IPV6_BITS.saturating_sub(prefix_len));
            let netmask = u128::MAX.checked_shl(host_bits).unwrap_or(0);
            IpAddr::V6(Ipv6Addr::from(u128::from(v6) & netmask))
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn range(text: &str) -> IpRange {
        text.parse()
            .unwrap_or_else(|reason| panic!("{text}: {reason}"))
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("test address")
    }

    #[test]
    fn parses_and_displays() {
        let cases: &[(&str, &str)] = &[
            ("10.0.0.0/8", "10.0.0.0/8"),
            ("192.0.2.7", "192.0.2.7/32"),
            ("192.0.2.7/32", "192.0.2.7/32"),
            ("0.0.0.0/0", "0.0.0.0/0"),
            ("2001:db8::/32", "2001:db8::/32"),
            ("::1", "::1/128"),
            ("::/0", "::/0"),
            ("10.0.0.0/008", "10.0.0.0/8"),
            ("::ffff:192.0.2.0/120", "::ffff:192.0.2.0/120"),
        ];
        for (text, expected) in cases {
            assert_eq!(range(text).to_string(), *expected, "{text}");
            assert_eq!(range(expected), range(text), "{text} round trip");
        }
    }

    #[test]
    fn rejects() {
        let cases: &[(&str, &str)] = &[
            ("", "expected an IP address"),
            ("localhost", "expected an IP address"),
            ("10.0.0/8", "expected an IP address"),
            (" 10.0.0.0/8", "expected an IP address"),
            ("10.0.0.0/8 ", "bad prefix length"),
            ("10.0.0.0/", "bad prefix length"),
            ("10.0.0.0/+8", "bad prefix length"),
            ("10.0.0.0/-8", "bad prefix length"),
            ("10.0.0.0/8/8", "bad prefix length"),
            (
                "10.0.0.0/33",
                "prefix length 33 is more than the 32 bits of an IPv4 address",
            ),
            ("10.0.0.0/256", "prefix length 255 is more than"),
            ("::/129", "more than the 128 bits of an IPv6 address"),
            (
                "10.1.2.3/8",
                "10.1.2.3/8 has bits set after the prefix: write 10.0.0.0/8, or 10.1.2.3 alone",
            ),
            ("2001:db8::1/64", "write 2001:db8::/64"),
            ("fe80::1%eth0", "expected an IP address"),
            ("[::1]", "expected an IP address"),
        ];
        for (text, expected) in cases {
            let reason = text.parse::<IpRange>().expect_err(text);
            assert!(reason.contains(expected), "{text:?}: {reason}");
            assert!(!reason.contains('\n'), "{text:?}: {reason}");
        }
    }

    #[test]
    fn contains() {
        let cases: &[(&str, &str, bool)] = &[
            ("10.0.0.0/8", "10.0.0.0", true),
            ("10.0.0.0/8", "10.255.255.255", true),
            ("10.0.0.0/8", "11.0.0.0", false),
            ("10.0.0.0/8", "9.255.255.255", false),
            ("192.0.2.7", "192.0.2.7", true),
            ("192.0.2.7", "192.0.2.8", false),
            ("0.0.0.0/0", "203.0.113.9", true),
            ("0.0.0.0/0", "::1", false),
            ("10.0.0.0/8", "::ffff:10.1.2.3", true),
            ("10.0.0.0/8", "::ffff:11.1.2.3", false),
            ("2001:db8::/32", "2001:db8:ffff::1", true),
            ("2001:db8::/32", "2001:db9::1", false),
            ("::/0", "2001:db8::1", true),
            ("::/0", "192.0.2.1", false),
            ("::1", "::1", true),
            ("::1", "127.0.0.1", false),
            ("::ffff:192.0.2.0/120", "::ffff:192.0.2.5", true),
            ("::ffff:192.0.2.0/120", "192.0.2.5", false),
        ];
        for (range_text, ip_text, expected) in cases {
            assert_eq!(
                range(range_text).contains(ip(ip_text)),
                *expected,
                "{range_text} contains {ip_text}"
            );
        }
    }

    /// A naive model: compare the addresses bit by bit, as text.
    fn bits(addr: IpAddr) -> String {
        match addr {
            IpAddr::V4(v4) => format!("{:032b}", u32::from(v4)),
            IpAddr::V6(v6) => format!("{:0128b}", u128::from(v6)),
        }
    }

    proptest! {
        #[test]
        fn contains_matches_bitwise_model(network in any::<u32>(), prefix_len in 0u8..=32, probe in any::<u32>()) {
            let addr = IpAddr::V4(Ipv4Addr::from(network));
            let Ok(range) = IpRange::new(mask(addr, prefix_len), prefix_len) else {
                return Err(TestCaseError::fail("a masked address is a valid range"));
            };
            let probe = IpAddr::V4(Ipv4Addr::from(probe));
            let len = usize::from(prefix_len);
            let expected = bits(range.addr())[..len] == bits(probe)[..len];
            prop_assert_eq!(range.contains(probe), expected);
        }

        #[test]
        fn contains_matches_bitwise_model_v6(network in any::<u128>(), prefix_len in 0u8..=128, probe in any::<u128>()) {
            let addr = IpAddr::V6(Ipv6Addr::from(network));
            let Ok(range) = IpRange::new(mask(addr, prefix_len), prefix_len) else {
                return Err(TestCaseError::fail("a masked address is a valid range"));
            };
            let probe = IpAddr::V6(Ipv6Addr::from(probe));
            let len = usize::from(prefix_len);
            let expected = bits(range.addr())[..len] == bits(probe)[..len];
            prop_assert_eq!(range.contains(probe), expected);
        }

        #[test]
        fn display_round_trips(network in any::<u128>(), prefix_len in 0u8..=128) {
            let addr = mask(IpAddr::V6(Ipv6Addr::from(network)), prefix_len);
            let range = IpRange::new(addr, prefix_len).map_err(TestCaseError::fail)?;
            prop_assert_eq!(range.to_string().parse::<IpRange>(), Ok(range));
        }

        #[test]
        fn parse_never_panics(text in "[0-9a-f:./%]{0,24}|\\PC{0,24}") {
            let _ = text.parse::<IpRange>();
        }
    }
}
