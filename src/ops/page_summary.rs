//! The status page's summary at `/`: server-rendered from the same `Survey` as
//! `/readyz`, and small at thousands of issuers (the issuers needing attention first,
//! capped; every name compactly, a page at a time); then certificates, relying parties
//! and publish sinks.

use std::fmt::Write;
use std::time::SystemTime;

use http::{Response, StatusCode};

use crate::edge::connection::Body;
use crate::model::client_family::ClientFamily;
use crate::model::document::DocKind;
use crate::model::DocId;
use crate::ops::admin::Admin;
use crate::ops::page::{attention_class, cut, escape, html_response, issuer_link, shell, when};
use crate::ops::survey::{Attention, Survey};

/// How many issuers needing attention the summary lists in full (the others are named
/// in the compact list, and counted).
const ATTENTION_ROWS: usize = 50;
/// How many names each page of the compact list of every issuer holds.
const NAMES_PER_PAGE: usize = 200;

impl Admin {
    /// `GET /`: the summary; `page` (from 1) selects the slice of the compact name list.
    pub(super) fn status_page(&self, page: usize) -> Response<Body> {
        let now = SystemTime::now();
        let survey = self.survey(None, now);
        let (tls_all, tls_any, _) = self.tls(now);
        let (ready, status) = self.verdict(&survey, tls_all, tls_any);
        let mut b = String::with_capacity(16 * 1024);
        let class = if !ready {
            "bad"
        } else if status == "degraded" || status == "stale" {
            "stale"
        } else {
            "ok"
        };
        let _ = write!(
            b,
            "<h1>jwks-edge status</h1>\n<p class=\"status\">Readiness: <span class=\"{class}\">{status}</span> \
             ({}, mode <code>{}</code>) · <a href=\"/readyz?detail=full\">/readyz</a> · <a href=\"/metrics\">/metrics</a></p>\n",
            if ready { "ready" } else { "not ready" },
            self.readiness.as_str(),
        );
        let _ = writeln!(
            b,
            "<form method=\"get\" action=\"/\"><label>Issuer <input name=\"issuer\" size=\"30\" \
             placeholder=\"name\"></label> <button>Show</button></form>"
        );
        self.summary_counts(&mut b, &survey);
        self.attention_table(&mut b, &survey, now);
        self.name_list(&mut b, &survey, page);
        self.reach_totals(&mut b, now);
        self.certificates_section(&mut b, now);
        self.publish_section(&mut b, None, now);
        html_response(StatusCode::OK, shell("status", &b))
    }

    fn summary_counts(&self, b: &mut String, survey: &Survey) {
        let [fresh, stale, expired, missing] = survey.states;
        let _ = write!(
            b,
            "<h2 id=\"summary\">Summary</h2>\n<table><tr><th>issuers</th><th>needing attention</th><th>documents</th>\
             <th class=\"fresh\">fresh</th><th class=\"stale\">stale</th><th class=\"expired\">expired</th>\
             <th class=\"missing\">missing</th></tr>\n<tr><td>{}</td><td>{}</td><td>{}</td><td>{fresh}</td>\
             <td>{stale}</td><td>{expired}</td><td>{missing}</td></tr></table>\n",
            self.issuers.len(),
            survey.attention,
            survey.documents,
        );
    }

    /// The issuers needing attention, most urgent first, at most `ATTENTION_ROWS`.
    fn attention_table(&self, b: &mut String, survey: &Survey, now: SystemTime) {
        let mut needing: Vec<_> = survey
            .ranked
            .iter()
            .filter(|(a, _)| *a != Attention::None)
            .copied()
            .collect();
        needing.sort_by_key(|&(attention, _)| std::cmp::Reverse(attention));
        let _ = writeln!(b, "<h2 id=\"attention\">Needing attention ({})</h2>", needing.len());
        if needing.is_empty() {
            b.push_str("<p class=\"ok\">Every issuer is fresh and its last fetches succeeded.</p>\n");
            return;
        }
        b.push_str(
            "<table><tr><th>issuer</th><th>why</th><th>discovery</th><th>key set</th><th>last error</th></tr>\n",
        );
        for &(attention, i) in needing.iter().take(ATTENTION_ROWS) {
            let view = self.issuer_view(i, attention, now);
            let class = attention_class(attention);
            b.push_str("<tr><td>");
            issuer_link(b, &self.issuers[i].name, class);
            let _ = write!(b, "</td><td class=\"{class}\">{}</td>", attention.label());
            for doc in [&view.discovery, &view.jwks] {
                let state = doc.state.as_str();
                let _ = write!(b, "<td class=\"{state}\">{state}");
                if doc.record.consecutive_failures > 0 {
                    let _ = write!(b, ", {} failed", doc.record.consecutive_failures);
                }
                b.push_str("</td>");
            }
            b.push_str("<td class=\"err\">");
            let error = view
                .discovery
                .record
                .last_error
                .as_deref()
                .or(view.jwks.record.last_error.as_deref());
            match (&view.mismatch, error) {
                (Some(upstream), _) => {
                    b.push_str("upstream names itself ");
                    escape(b, cut(upstream));
                }
                (None, Some(error)) => escape(b, cut(error)),
                (None, None) => {}
            }
            b.push_str("</td></tr>\n");
        }
        b.push_str("</table>\n");
        if needing.len() > ATTENTION_ROWS {
            let _ = writeln!(
                b,
                "<p>… and {} more, marked in the list below.</p>",
                needing.len() - ATTENTION_ROWS
            );
        }
    }

    /// Every issuer's name, coloured by attention, `NAMES_PER_PAGE` to a page.
    fn name_list(&self, b: &mut String, survey: &Survey, page: usize) {
        let pages = survey.ranked.len().div_ceil(NAMES_PER_PAGE).max(1);
        let page = page.clamp(1, pages);
        let _ = write!(b, "<h2 id=\"issuers\">All issuers</h2>\n<p class=\"names\">");
        for &(attention, i) in survey
            .ranked
            .iter()
            .skip((page - 1) * NAMES_PER_PAGE)
            .take(NAMES_PER_PAGE)
        {
            issuer_link(b, &self.issuers[i].name, attention_class(attention));
        }
        b.push_str("</p>\n");
        if pages > 1 {
            let _ = write!(b, "<nav>Page {page} of {pages}: ");
            if page > 1 {
                let _ = write!(b, "<a href=\"/?page={}\">previous</a>", page - 1);
            }
            if page < pages {
                let _ = write!(b, "<a href=\"/?page={}\">next</a>", page + 1);
            }
            b.push_str("</nav>\n");
        }
    }

    /// Relying-party requests over every document, by family; and how many documents no
    /// relying party fetched yet.
    fn reach_totals(&self, b: &mut String, now: SystemTime) {
        let mut totals = [(0u64, None::<SystemTime>); ClientFamily::ALL.len()];
        let (mut unfetched_keys, mut stale, mut unavailable) = (0, 0, 0);
        for i in 0..self.issuers.len() {
            for kind in [DocKind::Discovery, DocKind::Jwks] {
                let reach = self.reach.get(DocId { issuer: i, kind });
                if kind == DocKind::Jwks && reach.families.is_empty() {
                    unfetched_keys += 1;
                }
                stale += reach.stale;
                unavailable += reach.unavailable;
                for f in &reach.families {
                    let total = &mut totals[f.family as usize];
                    total.0 += f.requests;
                    total.1 = total.1.max(Some(f.last_seen));
                }
            }
        }
        b.push_str("<h2 id=\"relying-parties\">Relying parties</h2>\n");
        let _ = writeln!(
            b,
            "<p>Requests answered with a stale copy: {stale}; answered 503: {unavailable}. \
             Key sets no client has fetched since start: {unfetched_keys} of {}.</p>",
            self.issuers.len()
        );
        if totals.iter().all(|t| t.0 == 0) {
            b.push_str("<p>No client has fetched a document since start.</p>\n");
            return;
        }
        b.push_str("<table><tr><th>client family</th><th>requests</th><th>last</th></tr>\n");
        for (family, (requests, last)) in ClientFamily::ALL.iter().zip(totals) {
            if requests > 0 {
                let _ = write!(b, "<tr><td>{}</td><td>{requests}</td><td>", family.as_str());
                when(b, last, now);
                b.push_str("</td></tr>\n");
            }
        }
        b.push_str("</table>\n");
    }

    /// The certificates served, days to expiry, and with ACME each one's renewal state.
    fn certificates_section(&self, b: &mut String, now: SystemTime) {
        let Some(resolver) = &self.certs else {
            return;
        };
        b.push_str("<h2 id=\"certificates\">Certificates</h2>\n<table><tr><th>names</th><th>file</th><th>expires</th><th>days left</th></tr>\n");
        for cert in &resolver.current().certs {
            let days = cert.not_after.duration_since(now).map_or(0, |d| d.as_secs() / 86400);
            let class = if days < 14 { "bad" } else { "ok" };
            b.push_str("<tr><td>");
            escape(b, &cert.names.join(", "));
            b.push_str("</td><td><code>");
            escape(b, &cert.cert_file.display().to_string());
            b.push_str("</code></td><td>");
            when(b, Some(cert.not_after), now);
            let _ = writeln!(b, "</td><td class=\"{class}\">{days}</td></tr>");
        }
        b.push_str("</table>\n");
        if let Some(error) = resolver.last_error() {
            b.push_str("<p class=\"bad\">Last refused reload: <span class=\"err\">");
            escape(b, &error);
            b.push_str("</span></p>\n");
        }
        let Some(acme) = &self.acme else {
            return;
        };
        b.push_str("<h3>ACME</h3>\n<table><tr><th>names</th><th>state</th><th>renew at</th><th>failures</th><th>last error</th></tr>\n");
        for record in acme.records() {
            let state = record.state(now);
            b.push_str("<tr><td>");
            escape(b, &record.names.join(", "));
            let class = if state.serves() { "ok" } else { "bad" };
            let _ = write!(b, "</td><td class=\"{class}\">{}</td><td>", state.as_str());
            when(b, record.renew_at, now);
            let _ = write!(b, "</td><td>{}</td><td class=\"err\">", record.consecutive_failures);
            escape(b, record.last_error.as_deref().unwrap_or(""));
            b.push_str("</td></tr>\n");
        }
        b.push_str("</table>\n");
    }

    /// The `[[publish]]` sinks: per sink, how many issuers are current and failing; with
    /// `only`, that issuer's pairs in full.
    pub(super) fn publish_section(&self, b: &mut String, only: Option<usize>, now: SystemTime) {
        let Some(board) = &self.publish else {
            return;
        };
        b.push_str("<h2 id=\"publish\">Publish sinks</h2>\n<table><tr><th>sink</th><th>issuers</th><th>failing</th><th>last success</th><th>last error</th></tr>\n");
        let mut sinks: Vec<&str> = board.pairs().iter().map(|p| p.sink.as_str()).collect();
        sinks.sort_unstable();
        sinks.dedup();
        for sink in sinks {
            let (mut issuers, mut failing, mut last_success, mut last_error) = (0, 0, None, None::<String>);
            for (n, pair) in board.pairs().iter().enumerate() {
                if pair.sink != sink || only.is_some_and(|i| i != pair.issuer) {
                    continue;
                }
                let record = board.get(n);
                issuers += 1;
                if record.consecutive_failures > 0 {
                    failing += 1;
                    last_error = last_error.or(record.last_error);
                }
                last_success = last_success.max(record.last_success);
            }
            if issuers == 0 {
                continue;
            }
            let class = if failing > 0 { "bad" } else { "ok" };
            b.push_str("<tr><td>");
            escape(b, sink);
            let _ = write!(b, "</td><td>{issuers}</td><td class=\"{class}\">{failing}</td><td>");
            when(b, last_success, now);
            b.push_str("</td><td class=\"err\">");
            escape(b, cut(last_error.as_deref().unwrap_or("")));
            b.push_str("</td></tr>\n");
        }
        b.push_str("</table>\n");
    }
}
