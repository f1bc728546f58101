//! Connections per client address: a count per address, held only while it has connections.
//!
//! An address is in the table exactly while it holds at least one open connection, so the
//! table never has more entries than the listener has connections (`max_connections`),
//! whatever spray of source addresses arrives, and no entry can be evicted while its
//! address still holds connections: the count is exact, not an estimate.
//!
//! IPv6 clients are counted per /64, the smallest prefix a site is normally given: one
//! host can pick any of its 2^64 addresses, so counting single IPv6 addresses would limit
//! nothing.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Arc, Mutex, PoisonError};

/// What connections are counted under: an IPv4 address, or an IPv6 /64 prefix.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub struct ClientKey(IpAddr);

impl ClientKey {
    pub fn of(addr: IpAddr) -> ClientKey {
        match addr {
            IpAddr::V4(v4) => ClientKey(IpAddr::V4(v4)),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                // An IPv4 client on a dual-stack ([::]) listener.
                Some(v4) => ClientKey(IpAddr::V4(v4)),
                None => {
                    let prefix = u128::from(v6) & !((1u128 << 64) - 1);
                    ClientKey(IpAddr::V6(Ipv6Addr::from(prefix)))
                }
            },
        }
    }
}

impl std::fmt::Display for ClientKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            IpAddr::V4(v4) => write!(f, "{v4}"),
            IpAddr::V6(v6) => write!(f, "{v6}/64"),
        }
    }
}

/// Open connections per client, for one listener.
#[derive(Debug)]
pub struct AddressLimit {
    max: usize,
    /// Written on every accept (by the accept loop) and every close (by the connection's
    /// task, dropping its `AddressSlot`); held for one map operation only.
    open: Mutex<HashMap<ClientKey, usize>>,
}

/// One connection counted against its client; dropping it gives the slot back.
#[derive(Debug)]
pub struct AddressSlot {
    limit: Arc<AddressLimit>,
    key: ClientKey,
}

impl AddressLimit {
    pub fn new(max: usize) -> Arc<AddressLimit> {
        Arc::new(AddressLimit {
            max,
            open: Mutex::new(HashMap::new()),
        })
    }

    /// Counts a new connection from `addr`, or `None` when its client already holds `max`.
    pub fn admit(self: &Arc<Self>, addr: IpAddr) -> Option<AddressSlot> {
        let key = ClientKey::of(addr);
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        let count = open.entry(key).or_insert(0);
        if *count >= self.max {
            return None;
        }
        *count += 1;
        Some(AddressSlot {
            limit: self.clone(),
            key,
        })
    }

    /// Clients holding at least one connection (the table's size).
    pub fn clients(&self) -> usize {
        self.open.lock().unwrap_or_else(PoisonError::into_inner).len()
    }

    /// Connections open from `addr`'s client.
    pub fn open_from(&self, addr: IpAddr) -> usize {
        let open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        open.get(&ClientKey::of(addr)).copied().unwrap_or(0)
    }
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        let mut open = self.limit.open.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = open.get_mut(&self.key) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.key);
            }
        }
        // Shrink after a spray, so the table's memory follows the open connections too.
        if open.capacity() > 1024 && open.len() * 4 < open.capacity() {
            let keep = open.len() * 2;
            open.shrink_to(keep);
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
    fn an_address_gets_max_connections_and_others_are_not_affected() {
        let limit = AddressLimit::new(2);
        let a = [limit.admit(ip("192.0.2.1")), limit.admit(ip("192.0.2.1"))];
        assert!(a.iter().all(Option::is_some));
        assert!(limit.admit(ip("192.0.2.1")).is_none(), "the third is refused");
        assert!(limit.admit(ip("192.0.2.2")).is_some(), "another address is served");
        drop(a);
        assert_eq!(limit.open_from(ip("192.0.2.1")), 0);
        assert!(limit.admit(ip("192.0.2.1")).is_some(), "closing gives the slots back");
    }

    #[test]
    fn the_table_holds_only_clients_with_open_connections() {
        let limit = AddressLimit::new(1);
        let mut held = Vec::new();
        for i in 0..5000u32 {
            let addr = IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + i));
            let slot = limit.admit(addr).unwrap();
            if i % 100 == 0 {
                held.push(slot);
            }
        }
        assert_eq!(limit.clients(), held.len());
        drop(held);
        assert_eq!(limit.clients(), 0);
        assert!(limit.open.lock().unwrap().capacity() <= 1024 * 2);
    }

    #[test]
    fn ipv6_counts_per_64_and_mapped_ipv4_as_ipv4() {
        let limit = AddressLimit::new(1);
        let _a = limit.admit(ip("2001:db8:1:2::1")).unwrap();
        assert!(limit.admit(ip("2001:db8:1:2:ffff::9")).is_none(), "same /64");
        assert!(limit.admit(ip("2001:db8:1:3::1")).is_some(), "another /64");
        let _b = limit.admit(ip("192.0.2.7")).unwrap();
        assert!(limit.admit(ip("::ffff:192.0.2.7")).is_none(), "the same IPv4 client");
        assert_eq!(ClientKey::of(ip("2001:db8:1:2::1")).to_string(), "2001:db8:1:2::/64");
    }
}
