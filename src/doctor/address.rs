//! Which addresses a relying party on the internet can reach, and which the doctor may
//! connect to.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Why a relying party on the internet cannot reach an address: its class, as the report
/// and a refusal name it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NonPublic {
    Loopback,
    /// RFC 1918.
    Private,
    /// RFC 6598.
    Shared,
    LinkLocal,
    UniqueLocal,
    Unspecified,
    /// Broadcast, multicast, reserved.
    NotUnicast,
}

impl NonPublic {
    pub fn as_str(self) -> &'static str {
        match self {
            NonPublic::Loopback => "loopback",
            NonPublic::Private => "private, RFC 1918",
            NonPublic::Shared => "shared address space, RFC 6598",
            NonPublic::LinkLocal => "link-local",
            NonPublic::UniqueLocal => "unique-local",
            NonPublic::Unspecified => "unspecified",
            NonPublic::NotUnicast => "not unicast",
        }
    }
}

impl fmt::Display for NonPublic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a relying party on the internet cannot reach `ip`, or `None` for a public address.
///
/// Shared address space (100.64.0.0/10, RFC 6598) counts as private: it is carrier- or
/// tailnet-internal, and cloud metadata services live there (Alibaba's 100.100.100.200).
/// IPv4 embedded in IPv6 (mapped `::ffff:a.b.c.d`, compatible `::a.b.c.d`, NAT64
/// `64:ff9b::a.b.c.d`) is judged by its IPv4 address.
pub fn class(ip: IpAddr) -> Option<NonPublic> {
    match ip {
        IpAddr::V4(v4) => class_v4(v4),
        IpAddr::V6(v6) => class_v6(v6),
    }
}

fn class_v4(v4: Ipv4Addr) -> Option<NonPublic> {
    let [a, b, ..] = v4.octets();
    if v4.is_loopback() {
        Some(NonPublic::Loopback)
    } else if v4.is_private() {
        Some(NonPublic::Private)
    } else if a == 100 && (64..128).contains(&b) {
        Some(NonPublic::Shared)
    } else if v4.is_link_local() {
        Some(NonPublic::LinkLocal)
    } else if a == 0 {
        // 0.0.0.0 reaches this very host on Linux.
        Some(NonPublic::Unspecified)
    } else if v4.is_broadcast() || v4.is_multicast() || a >= 240 {
        Some(NonPublic::NotUnicast)
    } else {
        None
    }
}

fn class_v6(v6: Ipv6Addr) -> Option<NonPublic> {
    let segments = v6.segments();
    let embedded = |s: [u16; 8]| Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    if v6.is_loopback() {
        Some(NonPublic::Loopback)
    } else if v6.is_unspecified() {
        Some(NonPublic::Unspecified)
    } else if let Some(v4) = v6.to_ipv4_mapped() {
        class_v4(v4)
    } else if segments[..6] == [0; 6] || segments[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        class_v4(embedded(segments))
    } else if (segments[0] & 0xfe00) == 0xfc00 {
        Some(NonPublic::UniqueLocal)
    } else if (segments[0] & 0xffc0) == 0xfe80 || (segments[0] & 0xffc0) == 0xfec0 {
        Some(NonPublic::LinkLocal)
    } else if v6.is_multicast() {
        Some(NonPublic::NotUnicast)
    } else {
        None
    }
}

/// Loopback, private, shared, link-local, unique-local or unspecified: a relying party on
/// the internet cannot reach it.
pub fn is_private(ip: IpAddr) -> bool {
    class(ip).is_some()
}

/// Which addresses the doctor connects to.
#[derive(Clone, Debug, Default)]
pub struct AddressPolicy {
    /// `--allow-private`: connect to every address.
    pub allow_private: bool,
    /// Addresses treated as public whatever their class. No flag sets this: it exists so
    /// that tests, which only have loopback, can stand one address in for a public one
    /// and watch the others being refused.
    pub assume_public: Vec<IpAddr>,
}

impl AddressPolicy {
    /// `class`, except for the addresses assumed public.
    pub fn class(&self, ip: IpAddr) -> Option<NonPublic> {
        if self.assume_public.contains(&ip) {
            None
        } else {
            class(ip)
        }
    }

    /// The class that forbids connecting to `ip`, if any.
    pub fn refusal(&self, ip: IpAddr) -> Option<NonPublic> {
        if self.allow_private {
            None
        } else {
            self.class(ip)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn private_ranges() {
        for addr in [
            "127.0.0.1",
            "127.255.0.9",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "100.100.100.200",
            "0.0.0.0",
            "0.1.2.3",
            "255.255.255.255",
            "224.0.0.1",
            "::",
            "::1",
            "fd00::1",
            "fc00::1",
            "fd00:ec2::254",
            "fe80::1",
            "fec0::1",
            "ff02::1",
            "::ffff:10.0.0.1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "::127.0.0.1",
            "64:ff9b::a9fe:a9fe",
        ] {
            assert!(is_private(ip(addr)), "{addr}");
        }
        for addr in [
            "8.8.8.8",
            "52.94.236.248",
            "2606:4700::1111",
            "100.128.0.1",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
        ] {
            assert!(!is_private(ip(addr)), "{addr}");
        }
    }
}
