//! Probes pebble's start-up is checked with: a port free for UDP and TCP, a DNS query
//! for the test names, and whether pebble's listeners accept connections.

use std::net::{SocketAddr, TcpListener, UdpSocket};

use crate::support::IO_TIMEOUT;

/// A loopback port free for both UDP and TCP, held by both sockets.
pub(crate) fn free_udp_and_tcp() -> (UdpSocket, TcpListener) {
    for _ in 0..50 {
        let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
        if let Ok(tcp) = TcpListener::bind(udp.local_addr().unwrap()) {
            return (udp, tcp);
        }
    }
    panic!("no loopback port free for both UDP and TCP in 50 tries");
}

/// A recursive A query for `name`.
pub(crate) fn dns_query(name: &str) -> Vec<u8> {
    // ID, flags (RD), one question, no other records.
    let mut query = vec![0x6a, 0x65, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    for label in name.split('.') {
        query.push(label.len() as u8);
        query.extend_from_slice(label.as_bytes());
    }
    // Root label, type A, class IN.
    query.extend_from_slice(&[0, 0, 1, 0, 1]);
    query
}

/// Whether `reply` answers `query` without error and its first answer is A 127.0.0.1.
pub(crate) fn answers_loopback(query: &[u8], reply: &[u8]) -> bool {
    let header_ok =
        reply.len() > query.len() && reply[..2] == query[..2] && reply[3] & 0x0f == 0 && reply[6..8] != [0, 0];
    if !header_ok {
        return false;
    }
    // The question comes back as sent; then the answer's name, as labels (challtestsrv does
    // not compress) or a compression pointer.
    let mut at = query.len();
    loop {
        match reply.get(at) {
            Some(0) => {
                at += 1;
                break;
            }
            Some(len) if len & 0xc0 == 0xc0 => {
                at += 2;
                break;
            }
            Some(len) => at += 1 + usize::from(*len),
            None => return false,
        }
    }
    // Type, class, TTL, data length, address.
    reply
        .get(at..at + 14)
        .is_some_and(|rr| rr[..2] == [0, 1] && rr[8..] == [0, 4, 127, 0, 0, 1])
}

/// Whether every address accepts a TCP connection now.
pub(crate) async fn accepting(addrs: &[SocketAddr]) -> bool {
    for addr in addrs {
        let connect = tokio::time::timeout(IO_TIMEOUT, tokio::net::TcpStream::connect(addr)).await;
        if !matches!(connect, Ok(Ok(_))) {
            return false;
        }
    }
    true
}
