//! The fleet under test: N Keycloak-shaped issuers (`i0.example.test` …) spread over a
//! few fake IdPs in this process, and the proxy config that serves them.

use std::time::Duration;

use jwks_edge::fake_idp::{FakeIdp, Resource};
use tokio::net::TcpListener;

use crate::common::JWKS;

const DISCOVERY: &str = include_str!("../../tests/fixtures/keycloak/openid-configuration.json");
/// The fixture's own public and backend realm URLs, replaced per issuer.
const FIXTURE_PUBLIC: &str = "https://auth.example.com/realms/prod";
const FIXTURE_BACKEND: &str = "http://keycloak.internal:8080/realms/prod";

pub fn host(i: usize) -> String {
    format!("i{i}.example.test")
}

/// The key set path of issuer `i`, on its public host and on its IdP alike.
pub fn jwks_path(i: usize) -> String {
    format!("/realms/r{i}/protocol/openid-connect/certs")
}

pub fn discovery_path(i: usize) -> String {
    format!("/realms/r{i}/.well-known/openid-configuration")
}

pub struct Fleet {
    pub idps: Vec<FakeIdp>,
    pub issuers: usize,
}

impl Fleet {
    /// Issuer `i` lives on IdP `i % idps`, under realm `r{i}`.
    pub async fn start(issuers: usize, idps: usize) -> Fleet {
        let mut servers = Vec::with_capacity(idps);
        for _ in 0..idps.max(1) {
            let listener = TcpListener::bind("127.0.0.1:0").await.expect("loopback binds");
            servers.push(FakeIdp::serve(listener).expect("the fake IdP starts"));
        }
        for i in 0..issuers {
            let idp = &servers[i % servers.len()];
            let public = format!("https://{}/realms/r{i}", host(i));
            let backend = format!("{}/realms/r{i}", idp.base_url());
            let discovery = DISCOVERY
                .replace(FIXTURE_PUBLIC, &public)
                .replace(FIXTURE_BACKEND, &backend);
            idp.put(&discovery_path(i), Resource::json_with_idp_headers(discovery));
            idp.put(&jwks_path(i), Resource::json_with_idp_headers(JWKS));
        }
        Fleet { idps: servers, issuers }
    }

    pub fn upstream_hits(&self) -> u64 {
        self.idps.iter().map(FakeIdp::total_hits).sum()
    }

    /// A plain listener for the load (room for the generator's connections and little
    /// more: the open-file check also reserves descriptors per issuer), an admin listener, the access log off (its cost is
    /// the load bench's subject), `refresh` as given and the other cache timings defaults.
    pub fn config(&self, refresh: Duration) -> String {
        let mut config = String::from(
            "[server]\nlisten_plain = \"127.0.0.1:0\"\nmax_connections = 256\n\
             max_connections_per_address = 256\n[admin]\nlisten = \"127.0.0.1:0\"\n\
             [log]\naccess = false\n[cache]\nfetch_timeout = \"5s\"\n",
        );
        config.push_str(&format!("refresh = \"{}\"\n", humantime::format_duration(refresh)));
        for i in 0..self.issuers {
            let idp = &self.idps[i % self.idps.len()];
            config.push_str(&format!(
                "[[issuer]]\nname = \"i{i}\"\npublic_url = \"https://{}/realms/r{i}\"\nupstream = \"{}/realms/r{i}\"\n",
                host(i),
                idp.base_url()
            ));
        }
        config
    }
}
