//! `AccessLog`: one line per public request, formatted by hand, appended to the log sink.
//!
//! The lines have the shape tracing-subscriber gives every other event (text or JSON, the
//! `jwks_edge::access` target, the connection's `conn` span), so they read and parse as
//! the rest of the log; formatting them directly costs a fraction of a generic event, on
//! the core that serves the request. `RUST_LOG=jwks_edge::access=off` still silences them.

use std::cell::RefCell;
use std::io::Write;
use std::net::SocketAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::model::timestamp;
use crate::telemetry::log_sink::SinkWriter;

/// The same formats as the rest of the log (`--log-format`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AccessFormat {
    Text,
    Json,
}

/// Where and how access lines are written.
#[derive(Clone)]
pub struct AccessLog {
    format: AccessFormat,
    sink: SinkWriter,
}

/// What one line says about one request.
pub struct AccessEntry<'a> {
    pub listener: &'a str,
    pub peer: SocketAddr,
    pub method: &'a str,
    pub host: &'a str,
    pub path: &'a str,
    pub status: u16,
    pub cache: &'a str,
    pub micros: u64,
}

thread_local! {
    /// Reused per thread, so formatting a line allocates nothing.
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch {
        line: Vec::with_capacity(512),
        stamp: Stamp::default(),
    });
}

/// One thread's line buffer and the timestamp of its last line.
struct Scratch {
    line: Vec<u8>,
    stamp: Stamp,
}

/// `YYYY-MM-DDTHH:MM:SS.ffffffZ` of the last line and the second it was formatted for:
/// lines within one second only rewrite the six digits of microseconds. The calendar
/// arithmetic was a tenth of a line's cost, at 100k lines a second, for the same 20 bytes.
#[derive(Default)]
struct Stamp {
    second: Option<u64>,
    text: Vec<u8>,
}

impl Stamp {
    fn at(&mut self, now: SystemTime) -> &[u8] {
        let now = timestamp::clamp(now);
        let since = now.duration_since(UNIX_EPOCH).unwrap_or_default();
        let second = since.as_secs();
        if self.second == Some(second) {
            let mut micros = since.subsec_micros();
            for digit in self.text[20..26].iter_mut().rev() {
                *digit = b'0' + (micros % 10) as u8;
                micros /= 10;
            }
        } else {
            self.text.clear();
            let _ = write!(self.text, "{}", timestamp::rfc3339_micros(now));
            // Only the fixed-width shape may be patched in place.
            self.second = (self.text.len() == STAMP_LEN).then_some(second);
        }
        &self.text
    }
}

const STAMP_LEN: usize = "1970-01-01T00:00:00.000000Z".len();

/// Writes `s` as the inside of a JSON string.
fn json_escaped(out: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    if !bytes.iter().any(|&b| b == b'"' || b == b'\\' || b < 0x20) {
        out.extend_from_slice(bytes);
        return;
    }
    for c in s.chars() {
        match c {
            '"' => out.extend_from_slice(b"\\\""),
            '\\' => out.extend_from_slice(b"\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => {
                let mut utf8 = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut utf8).as_bytes());
            }
        }
    }
}

fn number(out: &mut Vec<u8>, n: impl itoa::Integer) {
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

/// `0` to `255` as text, for IPv4 peers: one copy per octet instead of a division loop.
static OCTETS: [([u8; 3], u8); 256] = {
    let mut table = [([0u8; 3], 0u8); 256];
    let mut n = 0;
    while n < 256 {
        let digits = [(n / 100) as u8, (n / 10 % 10) as u8, (n % 10) as u8];
        let len: u8 = if n >= 100 {
            3
        } else if n >= 10 {
            2
        } else {
            1
        };
        let mut text = [0u8; 3];
        let mut i = 0;
        while i < len as usize {
            text[i] = b'0' + digits[3 - len as usize + i];
            i += 1;
        }
        table[n] = (text, len);
        n += 1;
    }
    table
};

/// The peer as `SocketAddr`'s `Display` writes it; IPv4 without the formatting machinery,
/// which pads and buffers and cost more than the rest of the line.
fn peer(out: &mut Vec<u8>, peer: SocketAddr) {
    match peer {
        SocketAddr::V4(v4) => {
            for (i, octet) in v4.ip().octets().into_iter().enumerate() {
                if i > 0 {
                    out.push(b'.');
                }
                let (text, len) = &OCTETS[usize::from(octet)];
                out.extend_from_slice(&text[..usize::from(*len)]);
            }
            out.push(b':');
            number(out, v4.port());
        }
        SocketAddr::V6(_) => {
            let _ = write!(out, "{peer}");
        }
    }
}

impl AccessLog {
    pub fn new(format: AccessFormat, sink: SinkWriter) -> AccessLog {
        AccessLog { format, sink }
    }

    /// Appends the line for `entry`, stamped `now` (the request's own clock read).
    pub fn record(&self, entry: &AccessEntry<'_>, now: SystemTime) {
        if !tracing::enabled!(target: "jwks_edge::access", tracing::Level::INFO) {
            return;
        }
        SCRATCH.with(|scratch| {
            let Scratch { line, stamp } = &mut *scratch.borrow_mut();
            line.clear();
            // One capacity check for the common line instead of one per piece.
            line.reserve(256);
            self.format(line, entry, stamp.at(now));
            self.sink.append(line);
        });
    }

    /// Appends the line, built by hand: `write!` with eight arguments cost more than
    /// the request it described.
    fn format(&self, out: &mut Vec<u8>, e: &AccessEntry<'_>, timestamp: &[u8]) {
        match self.format {
            AccessFormat::Text => {
                out.extend_from_slice(timestamp);
                out.extend_from_slice(b"  INFO conn{peer=");
                peer(out, e.peer);
                out.extend_from_slice(b" listener=\"");
                out.extend_from_slice(e.listener.as_bytes());
                out.extend_from_slice(b"\"}: jwks_edge::access: method=");
                out.extend_from_slice(e.method.as_bytes());
                out.extend_from_slice(b" host=");
                out.extend_from_slice(e.host.as_bytes());
                out.extend_from_slice(b" path=");
                out.extend_from_slice(e.path.as_bytes());
                out.extend_from_slice(b" status=");
                number(out, e.status);
                out.extend_from_slice(b" cache=");
                out.extend_from_slice(e.cache.as_bytes());
                out.extend_from_slice(b" micros=");
                number(out, e.micros);
                out.push(b'\n');
            }
            AccessFormat::Json => {
                out.extend_from_slice(b"{\"timestamp\":\"");
                out.extend_from_slice(timestamp);
                out.extend_from_slice(b"\",\"level\":\"INFO\",\"fields\":{\"method\":\"");
                json_escaped(out, e.method);
                out.extend_from_slice(b"\",\"host\":\"");
                json_escaped(out, e.host);
                out.extend_from_slice(b"\",\"path\":\"");
                json_escaped(out, e.path);
                out.extend_from_slice(b"\",\"status\":");
                number(out, e.status);
                out.extend_from_slice(b",\"cache\":\"");
                out.extend_from_slice(e.cache.as_bytes());
                out.extend_from_slice(b"\",\"micros\":");
                number(out, e.micros);
                out.extend_from_slice(b"},\"target\":\"jwks_edge::access\",\"span\":{\"peer\":\"");
                peer(out, e.peer);
                out.extend_from_slice(b"\",\"listener\":\"");
                out.extend_from_slice(e.listener.as_bytes());
                out.extend_from_slice(b"\",\"name\":\"conn\"}}\n");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::log_sink::LogSink;
    use std::time::Duration;

    fn entry(path: &str) -> AccessEntry<'_> {
        AccessEntry {
            listener: "plain",
            peer: "127.0.0.1:40000".parse().unwrap(),
            method: "GET",
            host: "gitlab.example.com",
            path,
            status: 200,
            cache: "hit",
            micros: 12,
        }
    }

    #[test]
    fn json_lines_parse_and_escape_what_a_client_sent() {
        let sink = LogSink::start_with(std::io::sink());
        let log = AccessLog::new(AccessFormat::Json, sink.handle());
        let mut out = Vec::new();
        let at = SystemTime::UNIX_EPOCH + Duration::from_micros(1_764_000_000_123_456);
        log.format(&mut out, &entry("/a\"b\\c\u{1}"), Stamp::default().at(at));
        let line: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(line["fields"]["path"], "/a\"b\\c\u{1}");
        assert_eq!(line["fields"]["status"], 200);
        assert_eq!(line["target"], "jwks_edge::access");
        assert_eq!(line["span"]["peer"], "127.0.0.1:40000");
        assert_eq!(line["timestamp"], "2025-11-24T16:00:00.123456Z");
    }

    #[test]
    fn text_lines_read_like_other_events() {
        let sink = LogSink::start_with(std::io::sink());
        let log = AccessLog::new(AccessFormat::Text, sink.handle());
        let mut out = Vec::new();
        log.format(&mut out, &entry("/x"), Stamp::default().at(SystemTime::UNIX_EPOCH));
        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            text,
            "1970-01-01T00:00:00.000000Z  INFO conn{peer=127.0.0.1:40000 listener=\"plain\"}: jwks_edge::access: method=GET host=gitlab.example.com path=/x status=200 cache=hit micros=12\n"
        );
    }

    /// The line as `write!` formats it: what the hand-built one must equal.
    fn reference(e: &AccessEntry<'_>, now: SystemTime) -> String {
        format!(
            "{}  INFO conn{{peer={} listener=\"{}\"}}: jwks_edge::access: method={} host={} path={} status={} cache={} micros={}\n",
            timestamp::rfc3339_micros(now), e.peer, e.listener, e.method, e.host, e.path, e.status, e.cache, e.micros
        )
    }

    proptest::proptest! {
        #[test]
        fn hand_built_lines_equal_the_formatted_ones(
            start in 0u64..300_000_000_000_000_000,
            steps in proptest::collection::vec(0u64..3_000_000, 1..8),
            v4 in proptest::prelude::any::<std::net::SocketAddrV4>(),
            v6 in proptest::prelude::any::<std::net::SocketAddrV6>(),
            status in proptest::prelude::any::<u16>(),
            micros in proptest::prelude::any::<u64>(),
        ) {
            let sink = LogSink::start_with(std::io::sink());
            let log = AccessLog::new(AccessFormat::Text, sink.handle());
            // One stamp across lines, some within one second and some not, as on a thread.
            let mut stamp = Stamp::default();
            let mut at = SystemTime::UNIX_EPOCH + Duration::from_micros(start);
            for (i, step) in steps.into_iter().enumerate() {
                at += Duration::from_micros(step);
                let mut e = entry("/realms/a/protocol/openid-connect/certs");
                e.peer = if i % 2 == 0 { SocketAddr::V4(v4) } else { SocketAddr::V6(v6) };
                e.status = status;
                e.micros = micros;
                let mut out = Vec::new();
                log.format(&mut out, &e, stamp.at(at));
                proptest::prop_assert_eq!(String::from_utf8(out).unwrap(), reference(&e, at));
            }
        }
    }

    #[test]
    fn times_beyond_the_calendar_are_clamped_not_patched() {
        let mut stamp = Stamp::default();
        let far = SystemTime::UNIX_EPOCH + Duration::from_secs(400_000_000_000);
        assert_eq!(stamp.at(far), b"9999-12-31T23:59:59.000000Z");
        let before = SystemTime::UNIX_EPOCH - Duration::from_secs(5);
        assert_eq!(stamp.at(before), b"1970-01-01T00:00:00.000000Z");
    }
}
