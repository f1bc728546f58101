//! The status page's issuer detail (`/?issuer=NAME`): both documents with their fetch
//! last outcomes as inline SVG, the relying parties that fetched them, the keys and their history.

use std::fmt::Write;
use std::time::SystemTime;

use http::{Response, StatusCode};

use crate::cache::health::RECENT_MARKS;
use crate::edge::connection::Body;
use crate::model::document::DocKind;
use crate::model::key_event::KeyEventKind;
use crate::model::keys::KeyState;
use crate::ops::admin::Admin;
use crate::ops::page::{attention_class, escape, html_response, shell, when};
use crate::ops::survey::{DocView, IssuerView};

const SVG_WIDTH: u64 = 480;
const SVG_HEIGHT: u64 = 28;

/// The fetch outcomes of the last hour, one slot each (at most `RECENT_MARKS`), newest
/// at the right: green for a success, red and taller for a failure. Slots rather than a
/// time axis, so a burst of retries stays readable; the span is written under it.
fn timeline(b: &mut String, view: &DocView, now: SystemTime) {
    let ok = view.timeline.iter().filter(|m| m.ok).count();
    let failed = view.timeline.len() - ok;
    let slot = SVG_WIDTH / RECENT_MARKS as u64;
    let _ = write!(
        b,
        "<svg class=\"timeline\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{SVG_WIDTH}\" height=\"{SVG_HEIGHT}\" \
         viewBox=\"0 0 {SVG_WIDTH} {SVG_HEIGHT}\" role=\"img\" aria-label=\"last fetches: {ok} succeeded, {failed} failed\">\
         <title>last fetches: {ok} succeeded, {failed} failed</title>\
         <rect x=\"0\" y=\"0\" width=\"{SVG_WIDTH}\" height=\"{SVG_HEIGHT}\" fill=\"#f6f8fa\" stroke=\"#d0d7de\"/>"
    );
    let first = RECENT_MARKS - view.timeline.len();
    for (n, mark) in view.timeline.iter().enumerate() {
        let x = (first + n) as u64 * slot + 1;
        let (fill, y, h) = if mark.ok {
            ("#1a7f37", 4, SVG_HEIGHT - 8)
        } else {
            ("#cf222e", 1, SVG_HEIGHT - 2)
        };
        let _ = write!(
            b,
            "<rect class=\"{}\" x=\"{x}\" y=\"{y}\" width=\"{}\" height=\"{h}\" fill=\"{fill}\"/>",
            if mark.ok { "fetch-ok" } else { "fetch-failed" },
            slot - 2,
        );
    }
    b.push_str("</svg>\n<p class=\"legend\">");
    match view.timeline.first() {
        Some(oldest) => {
            b.push_str("Since ");
            when(b, Some(oldest.at), now);
            let _ = write!(b, ", newest at the right: {ok} succeeded, ");
        }
        None => b.push_str("No fetch in the last hour: 0 succeeded, "),
    }
    let _ = writeln!(
        b,
        "<span class=\"{}\">{failed} failed</span>.</p>",
        if failed > 0 { "bad" } else { "ok" }
    );
}

fn document(b: &mut String, view: &DocView, now: SystemTime) {
    let title = match view.kind {
        DocKind::Discovery => "Discovery document",
        DocKind::Jwks => "Key set",
    };
    let state = view.state.as_str();
    let _ = write!(
        b,
        "<section class=\"doc\"><h2>{title}: <span class=\"{state}\">{state}</span></h2>\n<table>"
    );
    b.push_str("<tr><th>age</th><td>");
    match view.age {
        Some(age) => b.push_str(&crate::ops::page::human(age)),
        None => b.push_str("no copy"),
    }
    b.push_str("</td></tr><tr><th>last success</th><td>");
    when(b, view.record.last_success, now);
    b.push_str("</td></tr><tr><th>last attempt</th><td>");
    when(b, view.record.last_attempt, now);
    let failures = view.record.consecutive_failures;
    let _ = write!(
        b,
        "</td></tr><tr><th>consecutive failures</th><td class=\"{}\">{failures}</td></tr>\
         <tr><th>failures since start</th><td>{}</td></tr><tr><th>last error</th><td class=\"err\">",
        if failures > 0 { "bad" } else { "ok" },
        view.record.failures_total,
    );
    match &view.record.last_error {
        Some(error) => escape(b, error),
        None => b.push_str("none"),
    }
    b.push_str("</td></tr></table>\n");
    timeline(b, view, now);
    let reach = &view.reach;
    let _ = write!(
        b,
        "<h3>Relying parties</h3>\n<p>{} requests since start, last ",
        reach.requests()
    );
    when(b, reach.last_seen(), now);
    let _ = writeln!(
        b,
        "; answered with a stale copy: {}; answered 503: {}.</p>",
        reach.stale, reach.unavailable
    );
    if !reach.families.is_empty() {
        b.push_str("<table><tr><th>client family</th><th>requests</th><th>last</th></tr>\n");
        for f in &reach.families {
            let _ = write!(b, "<tr><td>{}</td><td>{}</td><td>", f.family.as_str(), f.requests);
            when(b, Some(f.last_seen), now);
            b.push_str("</td></tr>\n");
        }
        b.push_str("</table>\n");
    }
    b.push_str("</section>\n");
}

/// The keys with their history, and the changes recorded since start, newest first.
fn keys(b: &mut String, view: &IssuerView, now: SystemTime) {
    let summary = &view.keys;
    let _ = writeln!(b, "<h2 id=\"keys\">Keys ({} published)</h2>", summary.published);
    if summary.keys.is_empty() {
        b.push_str("<p>No key known yet.</p>\n");
        return;
    }
    b.push_str("<table class=\"keys\"><tr><th>kid</th><th>type</th><th>state</th><th>first seen</th><th>last seen upstream</th><th>leaves</th></tr>\n");
    for key in &summary.keys {
        b.push_str("<tr><td><code class=\"kid\">");
        escape(b, key.kid.as_deref().unwrap_or("(no kid)"));
        b.push_str("</code></td><td>");
        escape(b, key.kty.as_deref().unwrap_or("?"));
        let class = match key.state {
            KeyState::Current => "ok",
            KeyState::Retained => "stale",
            KeyState::Withdrawn => "bad",
        };
        let _ = write!(b, "</td><td class=\"{class}\">{}</td><td>", key.state.as_str());
        when(b, Some(key.first_seen), now);
        b.push_str("</td><td>");
        when(b, Some(key.last_seen_upstream), now);
        b.push_str("</td><td>");
        if key.expires_at.is_some() {
            when(b, key.expires_at, now);
        }
        b.push_str("</td></tr>\n");
    }
    b.push_str("</table>\n");
    b.push_str("<h3>Rotation events since start</h3>\n");
    if view.key_changes.is_empty() {
        b.push_str("<p>None; the table has each key's history across restarts.</p>\n");
        return;
    }
    b.push_str("<ul class=\"rotations\">");
    for change in &view.key_changes {
        b.push_str("<li>");
        when(b, Some(change.at), now);
        b.push_str(": <code>");
        escape(b, change.kid.as_deref().unwrap_or("(no kid)"));
        let what = match change.kind {
            KeyEventKind::Added => "published",
            KeyEventKind::Removed => "left the upstream's set",
            KeyEventKind::Expired => "no longer published",
            KeyEventKind::Withdrawn => "withdrawn: never published",
        };
        let _ = write!(b, "</code> {what}</li>");
    }
    b.push_str("</ul>\n");
}

impl Admin {
    /// `GET /?issuer=NAME`: one issuer in full; 404 (still a page) for an unknown name.
    pub(super) fn issuer_page(&self, name: &str) -> Response<Body> {
        let now = SystemTime::now();
        let Some(index) = self.issuer_index(name) else {
            let mut b = String::from("<h1>Unknown issuer</h1>\n<p>No issuer is named <code>");
            escape(&mut b, name);
            b.push_str("</code>. <a href=\"/\">Back to the summary</a></p>\n");
            return html_response(StatusCode::NOT_FOUND, shell("unknown issuer", &b));
        };
        let survey = self.survey(Some(index), now);
        let view = self.issuer_view(index, survey.ranked[0].0, now);
        let issuer = &self.issuers[index];
        let mut b = String::with_capacity(16 * 1024);
        b.push_str("<p><a href=\"/\">← summary</a></p>\n<h1>Issuer <code>");
        escape(&mut b, &issuer.name);
        let class = attention_class(view.attention);
        let _ = write!(
            b,
            "</code>: <span class=\"attention {class}\">{}</span></h1>\n<p>Public URL <code>",
            view.attention.label()
        );
        escape(&mut b, &issuer.public_url);
        b.push_str("</code> · <a href=\"/readyz?issuer=");
        crate::ops::page::escape_query(&mut b, &issuer.name);
        b.push_str("\">as JSON</a></p>\n");
        if let Some(upstream) = &view.mismatch {
            b.push_str("<p class=\"bad\">The upstream names itself <code>");
            escape(&mut b, upstream);
            b.push_str("</code>, not the public URL: relying parties refuse its tokens.</p>\n");
        }
        // Side by side where the window is wide enough, so the keys show without scrolling.
        b.push_str("<div class=\"docs\">\n");
        document(&mut b, &view.discovery, now);
        document(&mut b, &view.jwks, now);
        b.push_str("</div>\n");
        keys(&mut b, &view, now);
        self.publish_section(&mut b, Some(index), now);
        html_response(StatusCode::OK, shell(&issuer.name, &b))
    }
}
