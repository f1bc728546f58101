//! `Report`: the doctor's checks, rendered as an aligned text report or one JSON document.
//!
//! Messages carry remote data; both renderings escape what a terminal would obey.

use serde_json::json;

use super::escape;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Status {
    Pass,
    /// Informational: a check that could not run because an earlier one failed.
    Skip,
    Warn,
    Fail,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pass => "pass",
            Status::Skip => "skip",
            Status::Warn => "warn",
            Status::Fail => "fail",
        }
    }

    fn symbol(self) -> &'static str {
        match self {
            Status::Pass => "✓",
            Status::Skip => "-",
            Status::Warn => "!",
            Status::Fail => "✗",
        }
    }

    fn colour(self) -> &'static str {
        match self {
            Status::Pass => "\x1b[32m",
            Status::Skip => "\x1b[2m",
            Status::Warn => "\x1b[33m",
            Status::Fail => "\x1b[31m",
        }
    }
}

/// What AWS STS answers when a check of this kind fails: the relying party's error, as
/// both renderings print it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sts {
    Unreachable,
    NoProvider,
    Audience,
    Expired,
    NotValidated,
    Throttled,
    /// The role's trust policy refuses the token (after the provider accepted it).
    AccessDenied,
    /// IAM falls back to thumbprints for this chain, and none matches.
    Thumbprint,
    /// Azure: no federated credential matches the token's issuer, subject or audience.
    AzureNoMatch,
    /// Azure: the assertion's signature cannot be validated (RS256 only).
    AzureSignature,
    /// Azure: the issuer's discovery document or keys cannot be fetched (public TLS needed).
    AzureEndpoint,
    /// GCP: the STS token exchange is refused.
    GcpInvalidGrant,
}

impl Sts {
    pub fn as_str(self) -> &'static str {
        match self {
            Sts::Unreachable => "InvalidIdentityToken: Couldn't retrieve verification key from your identity provider",
            Sts::NoProvider => "InvalidIdentityToken: No OpenIDConnect provider found in your account for <iss>",
            Sts::Audience => "InvalidIdentityToken: Incorrect token audience",
            Sts::Expired => "ExpiredTokenException: Token expired",
            Sts::NotValidated => {
                "InvalidIdentityToken: The web identity token that was passed could not be validated by AWS"
            }
            Sts::Throttled => {
                "IDPCommunicationError / InvalidIdentityToken under load (STS re-fetches and is throttled)"
            }
            Sts::AccessDenied => "AccessDenied: Not authorized to perform sts:AssumeRoleWithWebIdentity",
            Sts::Thumbprint => {
                "InvalidIdentityToken: OpenIDConnect provider's HTTPS certificate doesn't match configured thumbprint"
            }
            Sts::AzureNoMatch => "AADSTS70021: No matching federated identity record found for presented assertion",
            Sts::AzureSignature => {
                "AADSTS7000272: the assertion's signature cannot be validated with the issuer's keys (Azure accepts RS256 only)"
            }
            Sts::AzureEndpoint => "AADSTS50166 / AADSTS90061: Request to External OIDC endpoint failed",
            Sts::GcpInvalidGrant => "invalid_grant (GCP STS token exchange refused)",
        }
    }
}

/// One check's outcome.
#[derive(Clone, Debug)]
pub struct Check {
    pub id: &'static str,
    pub status: Status,
    pub message: String,
    /// How to fix it (for warnings and failures).
    pub fix: Option<String>,
    /// The relying party's error this failure causes.
    pub sts_error: Option<Sts>,
}

/// Every check, in the order they ran.
#[derive(Debug, Default)]
pub struct Report {
    pub issuer: String,
    pub checks: Vec<Check>,
}

impl Report {
    pub fn pass(&mut self, id: &'static str, message: impl Into<String>) {
        self.push(id, Status::Pass, message.into(), None, None);
    }

    pub fn warn(&mut self, id: &'static str, message: impl Into<String>, fix: impl Into<String>, sts: Option<Sts>) {
        self.push(id, Status::Warn, message.into(), Some(fix.into()), sts);
    }

    pub fn fail(&mut self, id: &'static str, message: impl Into<String>, fix: impl Into<String>, sts: Sts) {
        self.push(id, Status::Fail, message.into(), Some(fix.into()), Some(sts));
    }

    pub fn skip(&mut self, id: &'static str, message: impl Into<String>) {
        self.push(id, Status::Skip, message.into(), None, None);
    }

    fn push(&mut self, id: &'static str, status: Status, message: String, fix: Option<String>, sts: Option<Sts>) {
        self.checks.push(Check {
            id,
            status,
            message,
            fix,
            sts_error: sts,
        });
    }

    pub fn worst(&self) -> Status {
        self.checks.iter().map(|c| c.status).max().unwrap_or(Status::Pass)
    }

    pub fn get(&self, id: &str) -> Option<&Check> {
        self.checks.iter().find(|c| c.id == id)
    }

    fn counts(&self) -> (usize, usize, usize) {
        let count = |s| self.checks.iter().filter(|c| c.status == s).count();
        (count(Status::Pass), count(Status::Warn), count(Status::Fail))
    }

    pub fn verdict(&self) -> String {
        let (pass, warn, fail) = self.counts();
        match self.worst() {
            Status::Fail => format!(
                "FAIL: {fail} check(s) failed, {warn} warning(s): relying parties will refuse tokens from {}",
                self.issuer
            ),
            Status::Warn => format!("PASS with {warn} warning(s): {pass} checks passed for {}", self.issuer),
            _ => format!("PASS: all {pass} checks passed for {}", self.issuer),
        }
    }

    /// The readable report; `colour` adds ANSI colours (for a terminal).
    pub fn render(&self, colour: bool) -> String {
        let width = self.checks.iter().map(|c| c.id.len()).max().unwrap_or(0);
        let mut out = format!("jwks-edge doctor {}\n\n", escape::text(&self.issuer));
        for check in &self.checks {
            let (on, off) = if colour {
                (check.status.colour(), "\x1b[0m")
            } else {
                ("", "")
            };
            out.push_str(&format!(
                "{on}{} {:<width$}{off}  {}\n",
                check.status.symbol(),
                check.id,
                escape::text(&check.message)
            ));
            if matches!(check.status, Status::Warn | Status::Fail) {
                let pad = " ".repeat(width + 4);
                if let Some(sts) = check.sts_error {
                    out.push_str(&format!("{pad}relying party: {}\n", sts.as_str()));
                }
                if let Some(fix) = &check.fix {
                    out.push_str(&format!("{pad}fix: {}\n", escape::text(fix)));
                }
            }
        }
        out.push('\n');
        out.push_str(&escape::text(&self.verdict()));
        out.push('\n');
        out
    }

    /// The JSON document as text, safe to print to a terminal (see `escape::json`).
    pub fn to_json_text(&self) -> String {
        escape::json(&serde_json::to_string_pretty(&self.to_json()).expect("JSON serialises"))
    }

    pub fn to_json(&self) -> serde_json::Value {
        let checks: Vec<_> = self
            .checks
            .iter()
            .map(|c| {
                json!({
                    "id": c.id,
                    "status": c.status.as_str(),
                    "message": c.message,
                    "fix": c.fix,
                    "sts_error": c.sts_error.map(Sts::as_str),
                })
            })
            .collect();
        json!({
            "issuer": self.issuer,
            "status": self.worst().as_str(),
            "verdict": self.verdict(),
            "checks": checks,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_quoting_remote_data_raw_are_escaped_when_rendered() {
        // As a certificate subject or a TLS library's error would arrive: unquoted.
        let mut report = Report {
            issuer: "https://idp.test/\x1b]8;;evil\x07".into(),
            ..Report::default()
        };
        report.fail(
            "tls.chain",
            "the certificate is not trusted: CN=\x1b[2J\u{9b}31m\u{202e}moc.elpmaxe\r",
            "fix\x1b[0m",
            Sts::Unreachable,
        );
        let text = report.render(false);
        assert!(!text.chars().any(|c| c != '\n' && escape::dangerous(c)), "{text:?}");
        assert!(text.contains(r"CN=\x1b[2J\u{009b}31m\u{202e}moc.elpmaxe\r"), "{text}");
        let json = report.to_json_text();
        assert!(!json.chars().any(|c| c != '\n' && escape::dangerous(c)), "{json:?}");
        let parsed: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(parsed["checks"][0]["message"], report.checks[0].message.as_str());
    }
}
