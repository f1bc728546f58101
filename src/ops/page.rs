//! The status page's shell, shared by the summary (`page_summary`) and the issuer detail
//! (`page_issuer`): escaping, times as people read them, the document and its headers.

use std::fmt::Write;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Response, StatusCode};
use http_body_util::Full;

use crate::edge::connection::Body;
use crate::ops::survey::Attention;

/// A last error is cut to this many characters in the summary; the detail has it whole.
const ERROR_CHARS: usize = 160;

/// No script, no external anything: styles inline, images only as data, forms only here.
const CSP: &str =
    "default-src 'none'; style-src 'unsafe-inline'; img-src data:; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

const STYLE: &str = "body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222;max-width:72em}\
h1{font-size:1.4em}h2{font-size:1.1em;margin-top:1.6em;border-bottom:1px solid #ccc}\
table{border-collapse:collapse}td,th{padding:.2em .6em;text-align:left;border-bottom:1px solid #eee;vertical-align:top}\
.ok,.fresh{color:#1a7f37}.stale,.failing{color:#9a6700}.unservable,.expired,.missing,.issuer_mismatch,.bad{color:#cf222e;font-weight:bold}\
.names a{margin-right:.6em;white-space:nowrap}code{font-size:.95em}.err{font-family:monospace;word-break:break-all}\
.status{font-size:1.2em}.docs{display:flex;flex-wrap:wrap;gap:0 2em}.doc{flex:1 1 30em;min-width:0}\
.timeline{display:block;margin:.8em 0 0;max-width:100%}.legend{margin-top:.2em}nav a{margin-right:1em}";

/// Appends `text` with every character HTML gives meaning to escaped: issuer names,
/// errors and `kid`s come from config files and upstreams.
pub(super) fn escape(out: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
}

/// Appends `text` escaped for a URL query value (then HTML-safe as well).
pub(super) fn escape_query(out: &mut String, text: &str) {
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
}

/// A duration as a person reads it: `42s`, `5m 3s`, `2h 10m`, `3d 4h`.
pub(super) fn human(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m {}s", s / 60, s % 60),
        3600..86400 => format!("{}h {}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d {}h", s / 86400, s % 86400 / 3600),
    }
}

/// A time, and how long ago it was; `never` for none.
pub(super) fn when(out: &mut String, t: Option<SystemTime>, now: SystemTime) {
    match t {
        None => out.push_str("never"),
        Some(t) => {
            let _ = write!(out, "{}", crate::model::timestamp::rfc3339_seconds(t));
            match now.duration_since(t) {
                Ok(ago) => {
                    let _ = write!(out, " ({} ago)", human(ago));
                }
                Err(ahead) => {
                    let _ = write!(out, " (in {})", human(ahead.duration()));
                }
            }
        }
    }
}

/// The document around a page's `body`.
pub(super) fn shell(title: &str, body: &str) -> String {
    let mut out = String::with_capacity(body.len() + STYLE.len() + 300);
    out.push_str("<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">");
    out.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>");
    escape(&mut out, title);
    out.push_str(" — jwks-edge</title><style>");
    out.push_str(STYLE);
    out.push_str("</style></head><body>\n");
    out.push_str(body);
    out.push_str("</body></html>\n");
    out
}

/// An HTML answer with the page's headers: strict CSP, no sniffing, no caching, no framing.
pub(super) fn html_response(status: StatusCode, html: String) -> Response<Body> {
    let mut response = Response::new(Full::new(Bytes::from(html)));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    response
}

/// The issuer's name as a link to its detail.
pub(super) fn issuer_link(out: &mut String, name: &str, class: &str) {
    out.push_str("<a class=\"");
    out.push_str(class);
    out.push_str("\" href=\"/?issuer=");
    escape_query(out, name);
    out.push_str("\">");
    escape(out, name);
    out.push_str("</a>");
}

/// The CSS class of an attention.
pub(super) fn attention_class(attention: Attention) -> &'static str {
    attention.as_str()
}

/// The head of an error text, for the summary.
pub(super) fn cut(text: &str) -> &str {
    match text.char_indices().nth(ERROR_CHARS) {
        Some((at, _)) => &text[..at],
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_upstreams_say_cannot_become_markup() {
        let mut out = String::new();
        escape(&mut out, "<a href='x'>\"&amp;\"</a>");
        assert_eq!(out, "&lt;a href=&#39;x&#39;&gt;&quot;&amp;amp;&quot;&lt;/a&gt;");
        let mut query = String::new();
        escape_query(&mut query, "a b&\"<é");
        assert_eq!(query, "a%20b%26%22%3C%C3%A9");
    }

    #[test]
    fn durations_read_as_people_say_them() {
        assert_eq!(human(Duration::from_secs(42)), "42s");
        assert_eq!(human(Duration::from_secs(303)), "5m 3s");
        assert_eq!(human(Duration::from_secs(7800)), "2h 10m");
        assert_eq!(human(Duration::from_secs(3 * 86400 + 4 * 3600)), "3d 4h");
        assert_eq!(cut(&"é".repeat(500)).chars().count(), ERROR_CHARS);
    }
}
