//! `AccessLog`: one line per public request, formatted by hand, appended to the log sink.
//!
//! The lines have the shape tracing-subscriber gives every other event (text or JSON, the
//! `jwks_edge::access` target, the connection's `conn` span), so they read and parse as
//! the rest of the log; formatting them directly costs a fraction of a generic event, on
//! the core that serves the request. `RUST_LOG=jwks_edge::access=off` still silences them.

use std::cell::RefCell;
use std::io::Write;
use std::net::SocketAddr;
use std::time::SystemTime;

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
    static LINE: RefCell<Vec<u8>> = RefCell::new(Vec::with_capacity(512));
}

/// Writes `s` as the inside of a JSON string.
fn json_escaped(out: &mut Vec<u8>, s: &str) {
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

impl AccessLog {
    pub fn new(format: AccessFormat, sink: SinkWriter) -> AccessLog {
        AccessLog { format, sink }
    }

    pub fn record(&self, entry: &AccessEntry<'_>) {
        if !tracing::enabled!(target: "jwks_edge::access", tracing::Level::INFO) {
            return;
        }
        LINE.with(|line| {
            let mut line = line.borrow_mut();
            line.clear();
            self.format(&mut line, entry, SystemTime::now());
            self.sink.append(&line);
        });
    }

    fn format(&self, out: &mut Vec<u8>, e: &AccessEntry<'_>, now: SystemTime) {
        let timestamp = crate::model::timestamp::rfc3339_micros(now);
        match self.format {
            AccessFormat::Text => {
                let _ = writeln!(
                    out,
                    "{timestamp}  INFO conn{{peer={} listener=\"{}\"}}: jwks_edge::access: method={} host={} path={} status={} cache={} micros={}",
                    e.peer, e.listener, e.method, e.host, e.path, e.status, e.cache, e.micros
                );
            }
            AccessFormat::Json => {
                let _ = write!(
                    out,
                    "{{\"timestamp\":\"{timestamp}\",\"level\":\"INFO\",\"fields\":{{\"method\":\""
                );
                json_escaped(out, e.method);
                out.extend_from_slice(b"\",\"host\":\"");
                json_escaped(out, e.host);
                out.extend_from_slice(b"\",\"path\":\"");
                json_escaped(out, e.path);
                let _ = writeln!(
                    out,
                    "\",\"status\":{},\"cache\":\"{}\",\"micros\":{}}},\"target\":\"jwks_edge::access\",\"span\":{{\"peer\":\"{}\",\"listener\":\"{}\",\"name\":\"conn\"}}}}",
                    e.status, e.cache, e.micros, e.peer, e.listener
                );
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
        log.format(&mut out, &entry("/a\"b\\c\u{1}"), at);
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
        log.format(&mut out, &entry("/x"), SystemTime::UNIX_EPOCH);
        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            text,
            "1970-01-01T00:00:00.000000Z  INFO conn{peer=127.0.0.1:40000 listener=\"plain\"}: jwks_edge::access: method=GET host=gitlab.example.com path=/x status=200 cache=hit micros=12\n"
        );
    }
}
