//! The effective configuration rendered back as TOML, for `check-config`.

use std::fmt;
use std::time::Duration;

use crate::config::settings::Config;

/// Renders the effective configuration (defaults filled in) as TOML for `check-config`.
impl fmt::Display for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let dur = |d: Duration| humantime::format_duration(d).to_string();
        writeln!(f, "[server]")?;
        if let Some(listen) = self.server.listen {
            writeln!(f, "listen = \"{listen}\"")?;
        }
        if let Some(plain) = self.server.listen_plain {
            writeln!(f, "listen_plain = \"{plain}\"")?;
        }
        writeln!(f, "deadline = \"{}\"", dur(self.server.deadline))?;
        let l = &self.server.limits;
        writeln!(f, "max_connections = {}", l.max_connections)?;
        writeln!(f, "max_connections_per_address = {}", l.max_connections_per_address)?;
        writeln!(f, "tls_handshake_timeout = \"{}\"", dur(l.tls_handshake_timeout))?;
        writeln!(f, "header_timeout = \"{}\"", dur(l.header_timeout))?;
        writeln!(f, "idle_timeout = \"{}\"", dur(l.idle_timeout))?;
        writeln!(f, "send_timeout = \"{}\"", dur(l.send_timeout))?;
        writeln!(f, "send_buffer_bytes = {}", l.send_buffer_bytes)?;
        writeln!(f, "max_header_bytes = {}", l.max_header_bytes)?;
        writeln!(f, "max_concurrent_streams = {}", l.max_concurrent_streams)?;
        writeln!(f, "drain_timeout = \"{}\"", dur(l.drain_timeout))?;
        if let Some(acme) = self.server.tls.as_ref().and_then(|t| t.acme.as_ref()) {
            writeln!(f, "\n[server.tls.acme]")?;
            writeln!(f, "directory = {:?}", acme.directory)?;
            writeln!(f, "contact = {:?}", acme.contact)?;
            writeln!(f, "domains = {:?}", acme.domains)?;
            writeln!(f, "cache_dir = {:?}", acme.cache_dir.display().to_string())?;
            if let Some(ca) = &acme.directory_ca {
                writeln!(f, "directory_ca = {:?}", ca.display().to_string())?;
            }
            writeln!(f, "challenge = {:?}", acme.challenge.as_str())?;
            writeln!(f, "one_per_domain = {}", acme.one_per_domain)?;
            match acme.renew_before {
                Some(d) => writeln!(f, "renew_before = \"{}\"", dur(d))?,
                None => writeln!(f, "# renew_before: a third of each certificate's lifetime")?,
            }
        } else if let Some(tls) = &self.server.tls {
            writeln!(f, "\n[server.tls]")?;
            writeln!(f, "cert = {:?}", tls.certs[0].cert.display().to_string())?;
            writeln!(f, "key = {:?}", tls.certs[0].key.display().to_string())?;
            writeln!(f, "reload_interval = \"{}\"", dur(tls.reload_interval))?;
            for extra in &tls.certs[1..] {
                writeln!(f, "\n[[server.tls.certs]]")?;
                writeln!(f, "cert = {:?}", extra.cert.display().to_string())?;
                writeln!(f, "key = {:?}", extra.key.display().to_string())?;
            }
        }
        writeln!(f, "\n[admin]\nlisten = \"{}\"", self.admin.listen)?;
        if let Some(token) = &self.admin.token_file {
            writeln!(f, "token_file = {:?}", token.display().to_string())?;
        }
        writeln!(f, "readiness = {:?}", self.admin.readiness.as_str())?;
        writeln!(f, "startup_grace = \"{}\"", dur(self.admin.startup_grace))?;
        writeln!(f, "\n[log]\naccess = {}", self.log.access)?;
        let c = &self.cache;
        writeln!(f, "\n[cache]")?;
        writeln!(f, "max_age = \"{}\"", dur(c.max_age))?;
        writeln!(f, "refresh = \"{}\"", dur(c.refresh))?;
        writeln!(f, "stale_if_error = \"{}\"", dur(c.stale_if_error))?;
        writeln!(f, "fetch_timeout = \"{}\"", dur(c.fetch_timeout))?;
        writeln!(f, "keep_removed_keys = \"{}\"", dur(c.keep_removed_keys))?;
        writeln!(f, "revalidate_after = \"{}\"", dur(c.revalidate_after))?;
        writeln!(f, "max_document_bytes = {}", c.max_document_bytes)?;
        writeln!(f, "max_rsa_keys = {}", c.key_cap.rsa)?;
        writeln!(f, "max_ec_keys = {}", c.key_cap.ec)?;
        writeln!(f, "max_fetches_per_upstream = {}", c.max_fetches_per_upstream)?;
        if let Some(total) = c.key_cap.total {
            writeln!(f, "max_keys = {total}")?;
        }
        if let Some(dir) = &c.state_dir {
            writeln!(f, "state_dir = {:?}", dir.display().to_string())?;
        }
        for issuer in &self.issuers {
            writeln!(f, "\n[[issuer]]")?;
            writeln!(f, "name = {:?}", issuer.name)?;
            writeln!(f, "public_url = {:?}", issuer.public_url)?;
            writeln!(f, "upstream = \"{}\"", issuer.upstream)?;
            writeln!(
                f,
                "# discovery served at {}",
                issuer.public.join("/.well-known/openid-configuration")
            )?;
            if let Some(path) = &issuer.public_jwks_path {
                writeln!(f, "public_jwks_path = {path:?}")?;
            }
            if let Some(url) = &issuer.upstream_jwks_url {
                writeln!(f, "upstream_jwks_url = {url:?}")?;
            }
            if let Some(ca) = &issuer.upstream_ca {
                writeln!(f, "upstream_ca = {:?}", ca.display().to_string())?;
            }
            if let Some(auth) = &issuer.upstream_client_auth {
                writeln!(f, "upstream_client_cert = {:?}", auth.cert.display().to_string())?;
                writeln!(f, "upstream_client_key = {:?}", auth.key.display().to_string())?;
            }
            if let Some(token) = &issuer.upstream_bearer_token_file {
                writeln!(f, "upstream_bearer_token_file = {:?}", token.display().to_string())?;
            }
            if issuer.upstream_bearer_token_over_http {
                writeln!(f, "upstream_bearer_token_over_http = true")?;
            }
            if let Some(host) = &issuer.upstream_host {
                writeln!(f, "upstream_host = {host:?}")?;
            }
            if !issuer.withdrawn_kids.is_empty() {
                writeln!(f, "withdrawn_kids = {:?}", issuer.withdrawn_kids)?;
            }
            let keys = &issuer.key_policy;
            writeln!(f, "publish_keys = {:?}", keys.publish.as_str())?;
            writeln!(f, "fill_key_use = {}", keys.fill_use)?;
            writeln!(f, "fill_key_alg = {}", keys.fill_alg)?;
            if let Some(file) = &issuer.prepublished_jwks_file {
                writeln!(f, "prepublished_jwks_file = {:?}", file.display().to_string())?;
            }
        }
        for sink in &self.publish {
            writeln!(f, "\n[[publish]]")?;
            writeln!(f, "url = {:?}", sink.url)?;
            if let Some(endpoint) = &sink.endpoint {
                writeln!(f, "endpoint = {endpoint:?}")?;
            }
            if let Some(region) = &sink.region {
                writeln!(f, "region = {region:?}")?;
            }
            let names: Vec<&str> = sink.issuers.iter().map(|&i| self.issuers[i].name.as_str()).collect();
            writeln!(f, "issuers = {names:?}")?;
            if let Some(&first) = sink.issuers.first() {
                writeln!(
                    f,
                    "# {:?} discovery written to {:?}",
                    self.issuers[first].name,
                    sink.object_key(&self.issuers[first].discovery_path())
                )?;
            }
        }
        Ok(())
    }
}
