//! Which addresses the server may connect to on a tenant's behalf (webhook deliveries).
//!
//! A tenant chooses a webhook's URL, so the server must not become its way into the server's
//! own network: loopback, private, link-local, shared (CGNAT), metadata and other special-purpose
//! addresses are refused unless the operator allows them by host name or CIDR. The check is a
//! pure function of the addresses a name resolved to; the server applies it when a webhook is
//! created and again on every delivery (DNS may have changed), and never follows redirects.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;

/// Why an address is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    Unspecified,
    Loopback,
    Private,
    LinkLocal,
    /// Shared address space (RFC 6598, carrier-grade NAT).
    Shared,
    /// A cloud provider's instance metadata service.
    Metadata,
    Multicast,
    Broadcast,
    /// Documentation, benchmarking, reserved and other special-purpose ranges.
    Reserved,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Unspecified => "an unspecified address",
            Self::Loopback => "a loopback address",
            Self::Private => "a private address",
            Self::LinkLocal => "a link-local address",
            Self::Shared => "a shared (carrier-grade NAT) address",
            Self::Metadata => "a cloud metadata address",
            Self::Multicast => "a multicast address",
            Self::Broadcast => "the broadcast address",
            Self::Reserved => "a reserved address",
        })
    }
}

/// Metadata services, refused first so that the reason names them.
const METADATA_V4: [Ipv4Addr; 3] = [
    Ipv4Addr::new(169, 254, 169, 254), // AWS, GCP, Azure, OpenStack…
    Ipv4Addr::new(100, 100, 100, 200), // Alibaba Cloud
    Ipv4Addr::new(192, 0, 0, 192),     // Oracle Cloud
];
/// AWS's IPv6 metadata endpoint.
const METADATA_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x0ec2, 0, 0, 0, 0, 0, 0x0254);

/// Why `ip` may not be connected to by default, or `None` for a public unicast address.
pub fn refusal(ip: IpAddr) -> Option<Refusal> {
    match ip {
        IpAddr::V4(v4) => refusal_v4(v4),
        IpAddr::V6(v6) => refusal_v6(v6),
    }
}

fn refusal_v4(ip: Ipv4Addr) -> Option<Refusal> {
    let [a, b, c, _] = ip.octets();
    if METADATA_V4.contains(&ip) {
        return Some(Refusal::Metadata);
    }
    Some(match (a, b, c) {
        (0, ..) => Refusal::Unspecified,
        (127, ..) => Refusal::Loopback,
        (10, ..) | (172, 16..=31, _) | (192, 168, _) => Refusal::Private,
        (169, 254, _) => Refusal::LinkLocal,
        (100, 64..=127, _) => Refusal::Shared,
        (224..=239, ..) => Refusal::Multicast,
        _ if ip == Ipv4Addr::BROADCAST => Refusal::Broadcast,
        (240..=255, ..) | (192, 0, 0 | 2) | (198, 18 | 19, _) | (198, 51, 100) | (203, 0, 113) | (192, 88, 99) => {
            Refusal::Reserved
        }
        _ => return None,
    })
}

fn refusal_v6(ip: Ipv6Addr) -> Option<Refusal> {
    if ip == METADATA_V6 {
        return Some(Refusal::Metadata);
    }
    let segments = ip.segments();
    let embedded_v4 = |high: u16, low: u16| Ipv4Addr::from((u32::from(high) << 16) | u32::from(low));
    // Addresses that carry an IPv4 address are judged by it: `::ffff:127.0.0.1` is loopback.
    if let Some(v4) = ip.to_ipv4_mapped() {
        return refusal_v4(v4);
    }
    match segments {
        [0, 0, 0, 0, 0, 0, 0, 0] => return Some(Refusal::Unspecified),
        [0, 0, 0, 0, 0, 0, 0, 1] => return Some(Refusal::Loopback),
        // IPv4-compatible (deprecated) and NAT64 (RFC 6052, 8215) carry the IPv4 address last.
        [0, 0, 0, 0, 0, 0, high, low]
        | [0x64, 0xff9b, 0, 0, 0, 0, high, low]
        | [0x64, 0xff9b, 1, _, _, _, high, low] => {
            return refusal_v4(embedded_v4(high, low)).or(Some(Refusal::Reserved).filter(|_| segments[0] == 0));
        }
        // 6to4 (RFC 3056) carries it in the second and third groups.
        [0x2002, high, low, ..] => return refusal_v4(embedded_v4(high, low)),
        _ => {}
    }
    let first = segments[0];
    Some(match first {
        _ if first & 0xfe00 == 0xfc00 => Refusal::Private, // fc00::/7, unique local
        _ if first & 0xffc0 == 0xfe80 => Refusal::LinkLocal, // fe80::/10
        _ if first & 0xffc0 == 0xfec0 => Refusal::Private, // fec0::/10, site-local (deprecated)
        _ if first & 0xff00 == 0xff00 => Refusal::Multicast, // ff00::/8
        // Documentation (2001:db8::/32, 3fff::/20), Teredo (hides an IPv4 address), ORCHID,
        // benchmarking, discard-only.
        _ if (first, segments[1]) == (0x2001, 0x0db8)
            || (first, segments[1]) == (0x2001, 0)
            || (first == 0x2001 && segments[1] & 0xfff0 == 0x0010)
            || (first == 0x2001 && segments[1] & 0xfff0 == 0x0020)
            || (first, segments[1], segments[2]) == (0x2001, 2, 0)
            || (first, segments[1], segments[2], segments[3]) == (0x0100, 0, 0, 0)
            || (first == 0x3fff && segments[1] & 0xf000 == 0)
            || first & 0xe000 != 0x2000 =>
        {
            Refusal::Reserved // everything outside 2000::/3 is not global unicast
        }
        _ => return None,
    })
}

/// One exception the operator allows: a host name (exact, case-insensitive) or a CIDR block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Allowed {
    Host(String),
    Network(IpNet),
}

impl Allowed {
    /// `"10.0.0.0/8"`, `"127.0.0.1"` (a single address), `"::1"`, or a host name.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if let Ok(network) = text.parse::<IpNet>() {
            return Ok(Self::Network(network.trunc()));
        }
        if let Ok(ip) = text.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>() {
            return Ok(Self::Network(IpNet::from(ip)));
        }
        let host = text.to_ascii_lowercase();
        let valid = !host.is_empty()
            && host.len() <= 253
            && host.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            });
        if valid {
            Ok(Self::Host(host))
        } else {
            Err(format!("{text:?} is neither a CIDR block, an address nor a host name"))
        }
    }
}

/// The operator's exceptions to the default refusals.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AddressPolicy {
    allowed: Vec<Allowed>,
}

impl AddressPolicy {
    pub fn new(allowed: Vec<Allowed>) -> Self {
        Self { allowed }
    }

    /// Whether `host` (as written in a URL, lowercase, without brackets) is allowed by name.
    pub fn allows_host(&self, host: &str) -> bool {
        self.allowed.iter().any(|allowed| matches!(allowed, Allowed::Host(name) if name.eq_ignore_ascii_case(host)))
    }

    /// Why a connection to `ip` is refused, `None` when it may go ahead.
    pub fn check(&self, ip: IpAddr) -> Option<Refusal> {
        let refusal = refusal(ip)?;
        let canonical = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            IpAddr::V4(_) => ip,
        };
        let allowed = self.allowed.iter().any(|allowed| match allowed {
            Allowed::Network(network) => network.contains(&ip) || network.contains(&canonical),
            Allowed::Host(_) => false,
        });
        (!allowed).then_some(refusal)
    }

    /// Checks every address `host` resolved to: all must be allowed (a name that resolves to a
    /// public and a private address is refused, since either may be used).
    pub fn check_resolved(&self, host: &str, addresses: &[IpAddr]) -> Result<(), String> {
        if self.allows_host(host) {
            return Ok(());
        }
        if addresses.is_empty() {
            return Err(format!("{host} does not resolve to any address"));
        }
        for &ip in addresses {
            if let Some(refusal) = self.check(ip) {
                return Err(format!(
                    "{host} resolves to {ip}, {refusal}, which webhooks may not reach \
                     (the operator can allow it with the `webhook_allow` configuration key)"
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn special_purpose_addresses_are_refused_with_their_reason() {
        use Refusal::*;
        let cases: &[(&str, Option<Refusal>)] = &[
            ("0.0.0.0", Some(Unspecified)),
            ("127.0.0.1", Some(Loopback)),
            ("127.255.1.2", Some(Loopback)),
            ("10.1.2.3", Some(Private)),
            ("172.16.0.1", Some(Private)),
            ("172.31.255.255", Some(Private)),
            ("172.32.0.1", None),
            ("192.168.1.1", Some(Private)),
            ("169.254.1.1", Some(LinkLocal)),
            ("169.254.169.254", Some(Metadata)),
            ("100.100.100.200", Some(Metadata)),
            ("192.0.0.192", Some(Metadata)),
            ("100.64.0.1", Some(Shared)),
            ("100.128.0.1", None),
            ("224.0.0.1", Some(Multicast)),
            ("255.255.255.255", Some(Broadcast)),
            ("240.0.0.1", Some(Reserved)),
            ("192.0.2.10", Some(Reserved)),
            ("198.18.0.1", Some(Reserved)),
            ("203.0.113.5", Some(Reserved)),
            ("8.8.8.8", None),
            ("93.184.216.34", None),
            ("::", Some(Unspecified)),
            ("::1", Some(Loopback)),
            ("::ffff:127.0.0.1", Some(Loopback)),
            ("::ffff:10.0.0.1", Some(Private)),
            ("::ffff:169.254.169.254", Some(Metadata)),
            ("::ffff:8.8.8.8", None),
            ("::127.0.0.1", Some(Loopback)),
            ("64:ff9b::7f00:1", Some(Loopback)),
            ("64:ff9b::a9fe:a9fe", Some(Metadata)),
            ("64:ff9b::808:808", None),
            ("2002:7f00:1::", Some(Loopback)),
            ("2002:c0a8:101::1", Some(Private)),
            ("2002:808:808::1", None),
            ("fc00::1", Some(Private)),
            ("fd12:3456::1", Some(Private)),
            ("fd00:ec2::254", Some(Metadata)),
            ("fe80::1", Some(LinkLocal)),
            ("febf::1", Some(LinkLocal)),
            ("fec0::1", Some(Private)),
            ("ff02::1", Some(Multicast)),
            ("2001:db8::1", Some(Reserved)),
            ("2001::1", Some(Reserved)),
            ("100::1", Some(Reserved)),
            ("3fff::1", Some(Reserved)),
            ("3fff:1000::1", None),
            ("2606:4700::1111", None),
            ("2a00:1450:4001::200e", None),
        ];
        for (text, expected) in cases {
            assert_eq!(refusal(ip(text)), *expected, "{text}");
        }
    }

    #[test]
    fn the_operator_allows_networks_and_host_names() {
        let policy = AddressPolicy::new(vec![
            Allowed::parse("127.0.0.1").unwrap(),
            Allowed::parse("10.20.0.0/16").unwrap(),
            Allowed::parse("Hooks.Internal").unwrap(),
            Allowed::parse("[::1]").unwrap(),
        ]);
        assert_eq!(policy.check(ip("127.0.0.1")), None);
        assert_eq!(policy.check(ip("::ffff:127.0.0.1")), None, "a mapped address is the address it maps");
        assert_eq!(policy.check(ip("127.0.0.2")), Some(Refusal::Loopback));
        assert_eq!(policy.check(ip("10.20.30.40")), None);
        assert_eq!(policy.check(ip("10.21.0.1")), Some(Refusal::Private));
        assert_eq!(policy.check(ip("::1")), None);
        assert_eq!(policy.check(ip("8.8.8.8")), None);
        assert!(policy.allows_host("hooks.internal"));
        assert!(!policy.allows_host("hooks.internal.evil"));
        assert!(policy.check_resolved("hooks.internal", &[ip("10.9.9.9")]).is_ok());
    }

    #[test]
    fn a_name_is_refused_when_any_address_it_resolves_to_is() {
        let policy = AddressPolicy::default();
        assert!(policy.check_resolved("deploy.example", &[ip("93.184.216.34")]).is_ok());
        let error = policy.check_resolved("rebind.example", &[ip("93.184.216.34"), ip("127.0.0.1")]).unwrap_err();
        assert!(error.contains("127.0.0.1, a loopback address"), "{error}");
        assert!(error.contains("webhook_allow"), "{error}");
        assert!(policy.check_resolved("nowhere.example", &[]).is_err());
    }

    #[test]
    fn allowances_parse_from_cidrs_addresses_and_names() {
        assert_eq!(Allowed::parse("10.0.0.0/8").unwrap(), Allowed::Network("10.0.0.0/8".parse().unwrap()));
        assert_eq!(Allowed::parse("10.1.2.3/8").unwrap(), Allowed::Network("10.0.0.0/8".parse().unwrap()));
        assert_eq!(Allowed::parse("::1").unwrap(), Allowed::Network("::1/128".parse().unwrap()));
        assert_eq!(Allowed::parse("LocalHost").unwrap(), Allowed::Host("localhost".into()));
        assert!(Allowed::parse("http://x").is_err());
        assert!(Allowed::parse("").is_err());
        assert!(Allowed::parse("a..b").is_err());
    }
}
