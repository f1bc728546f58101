//! The configuration file exactly as written: a serde mirror that rejects unknown keys.

use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default)]
    pub server: RawServer,
    #[serde(default)]
    pub admin: RawAdmin,
    #[serde(default)]
    pub cache: RawCache,
    #[serde(default)]
    pub log: RawLog,
    #[serde(default)]
    pub issuer: Vec<RawIssuer>,
    #[serde(default)]
    pub publish: Vec<RawPublish>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPublish {
    pub url: String,
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub issuers: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    pub listen: Option<String>,
    pub listen_plain: Option<String>,
    pub deadline: Option<String>,
    pub max_connections: Option<i64>,
    pub max_connections_per_address: Option<i64>,
    pub tls_handshake_timeout: Option<String>,
    pub header_timeout: Option<String>,
    pub idle_timeout: Option<String>,
    pub send_timeout: Option<String>,
    pub send_buffer_bytes: Option<i64>,
    pub max_header_bytes: Option<i64>,
    pub max_concurrent_streams: Option<i64>,
    pub drain_timeout: Option<String>,
    pub tls: Option<RawTls>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    pub cert: Option<String>,
    pub key: Option<String>,
    pub reload_interval: Option<String>,
    #[serde(default)]
    pub certs: Vec<RawCertPair>,
    pub acme: Option<RawAcme>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAcme {
    pub directory: Option<String>,
    pub contact: Option<Vec<String>>,
    pub domains: Option<Vec<String>>,
    pub cache_dir: Option<String>,
    pub directory_ca: Option<String>,
    pub challenge: Option<String>,
    pub one_per_domain: Option<bool>,
    pub renew_before: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCertPair {
    pub cert: String,
    pub key: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAdmin {
    pub listen: Option<String>,
    pub token_file: Option<String>,
    pub readiness: Option<String>,
    pub startup_grace: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLog {
    pub access: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCache {
    pub max_age: Option<String>,
    pub refresh: Option<String>,
    pub stale_if_error: Option<String>,
    pub fetch_timeout: Option<String>,
    pub keep_removed_keys: Option<String>,
    pub revalidate_after: Option<String>,
    pub max_document_bytes: Option<i64>,
    pub state_dir: Option<String>,
    pub max_rsa_keys: Option<i64>,
    pub max_ec_keys: Option<i64>,
    pub max_keys: Option<i64>,
    pub max_fetches_per_upstream: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawIssuer {
    pub name: Option<String>,
    pub public_url: String,
    pub upstream: String,
    pub public_jwks_path: Option<String>,
    pub upstream_jwks_url: Option<String>,
    pub upstream_ca: Option<String>,
    pub upstream_client_cert: Option<String>,
    pub upstream_client_key: Option<String>,
    pub upstream_bearer_token_file: Option<String>,
    pub upstream_bearer_token_over_http: Option<bool>,
    pub upstream_host: Option<String>,
    pub withdrawn_kids: Option<Vec<String>>,
    pub publish_keys: Option<String>,
    pub fill_key_use: Option<bool>,
    pub fill_key_alg: Option<bool>,
    pub prepublished_jwks_file: Option<String>,
}
