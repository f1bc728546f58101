//! `BaseUrl`: an absolute http(s) URL used as a prefix (an issuer's public or upstream base).

use std::fmt;

/// An absolute `http`/`https` URL without query, fragment or user info, kept as a base
/// under which other URLs are recognised and rebuilt.
///
/// Scheme and host are lower-cased; the path never ends with `/` (the root is `""`), so
/// `join("/x")` never doubles a slash.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BaseUrl {
    scheme: String,
    /// `host[:port]` as it appears in URLs built from this base.
    authority: String,
    /// The host alone (IPv6 literals keep their brackets), the key used for routing.
    host: String,
    path: String,
}

impl BaseUrl {
    /// Parses `text`; the error is a reason fit to follow the quoted value in a message.
    pub fn parse(text: &str) -> Result<BaseUrl, &'static str> {
        let (scheme, rest) = text
            .split_once("://")
            .ok_or("expected an absolute URL such as \"https://host/path\"")?;
        let scheme = scheme.to_ascii_lowercase();
        if scheme != "http" && scheme != "https" {
            return Err("the scheme must be http or https");
        }
        if rest.contains(['?', '#']) {
            return Err("a query or fragment is not allowed here");
        }
        if rest.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err("whitespace is not allowed in a URL");
        }
        let (authority, path) = match rest.find('/') {
            Some(i) => rest.split_at(i),
            None => (rest, ""),
        };
        if authority.is_empty() {
            return Err("the URL has no host");
        }
        if authority.contains('@') {
            return Err("user info (user:password@) is not allowed in a URL");
        }
        // Let the http crate check the authority's syntax (port range, bad bytes).
        let parsed: http::uri::Authority = authority.parse().map_err(|_| "the host or port is not valid")?;
        if parsed
            .as_str()
            .rsplit_once(':')
            .is_some_and(|(h, p)| !h.ends_with(':') && !p.ends_with(']') && p.parse::<u16>().is_err())
        {
            return Err("the port is not a number between 0 and 65535");
        }
        let host = parsed.host().to_ascii_lowercase();
        if host.is_empty() {
            return Err("the URL has no host");
        }
        let authority = match parsed.port_u16() {
            Some(port) => format!("{host}:{port}"),
            None => host.clone(),
        };
        if path.contains("//") || path.split('/').any(|seg| seg == "." || seg == "..") {
            return Err("the path must not contain empty, \".\" or \"..\" segments");
        }
        Ok(BaseUrl {
            scheme,
            authority,
            host,
            path: path.trim_end_matches('/').to_owned(),
        })
    }

    pub fn scheme(&self) -> &str {
        &self.scheme
    }

    pub fn is_https(&self) -> bool {
        self.scheme == "https"
    }

    /// Host without port, lower-case.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// Path without trailing slash; `""` for the root.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// `scheme://authority` with no path.
    pub fn origin(&self) -> String {
        format!("{}://{}", self.scheme, self.authority)
    }

    /// This base followed by `rest`, which is expected to start with `/` (or be empty).
    pub fn join(&self, rest: &str) -> String {
        format!("{}://{}{}{}", self.scheme, self.authority, self.path, rest)
    }

    /// If `url` lies under this base, the part after it (empty, or starting with `/`, `?`
    /// or `#`). Scheme and authority compare case-insensitively, the path exactly.
    pub fn strip_prefix<'a>(&self, url: &'a str) -> Option<&'a str> {
        let (scheme, rest) = url.split_once("://")?;
        if !scheme.eq_ignore_ascii_case(&self.scheme) {
            return None;
        }
        let authority = rest.get(..self.authority.len())?;
        if !authority.eq_ignore_ascii_case(&self.authority) {
            return None;
        }
        let rest = rest[self.authority.len()..].strip_prefix(self.path.as_str())?;
        match rest.as_bytes().first() {
            None | Some(b'/' | b'?' | b'#') => Some(rest),
            Some(_) => None,
        }
    }
}

impl fmt::Display for BaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}{}", self.scheme, self.authority, self.path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_case_and_trailing_slash() {
        let base = BaseUrl::parse("HTTPS://Auth.Example.com:8443/realms/prod/").unwrap();
        assert_eq!(base.to_string(), "https://auth.example.com:8443/realms/prod");
        assert_eq!(base.host(), "auth.example.com");
        assert_eq!(base.path(), "/realms/prod");
        assert_eq!(base.origin(), "https://auth.example.com:8443");
    }

    #[test]
    fn strip_prefix_respects_segment_boundaries() {
        let base = BaseUrl::parse("http://kc.internal:8080/realms/prod").unwrap();
        assert_eq!(
            base.strip_prefix("http://KC.internal:8080/realms/prod/protocol/certs"),
            Some("/protocol/certs")
        );
        assert_eq!(base.strip_prefix("http://kc.internal:8080/realms/prod"), Some(""));
        assert_eq!(base.strip_prefix("http://kc.internal:8080/realms/production/x"), None);
        assert_eq!(base.strip_prefix("https://kc.internal:8080/realms/prod/x"), None);
        assert_eq!(base.strip_prefix("http://kc.internal:80800/realms/prod/x"), None);
        assert_eq!(base.strip_prefix("not a url"), None);
    }

    #[test]
    fn ipv6_hosts_keep_brackets() {
        let base = BaseUrl::parse("http://[::1]:8080").unwrap();
        assert_eq!(base.host(), "[::1]");
        assert_eq!(base.join("/x"), "http://[::1]:8080/x");
    }

    #[test]
    fn rejects_what_cannot_be_a_base() {
        for bad in [
            "gitlab.example.com",
            "ftp://x",
            "https://x/?a=1",
            "https://x/#f",
            "https://user:pw@x",
            "https://",
            "https://x/a/../b",
            "https://x:99999",
        ] {
            assert!(BaseUrl::parse(bad).is_err(), "{bad} should be rejected");
        }
    }
}
