//! The validated settings the program runs on, one type per section of the file.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::config::keys::{KeyCap, KeyPolicy};
use crate::config::limits::Limits;
use crate::model::base_url::BaseUrl;

/// The validated configuration. Paths are absolute or relative to the working directory
/// (relative paths in the file are resolved against the file's own directory).
#[derive(Clone, Debug)]
pub struct Config {
    pub server: Server,
    pub admin: Admin,
    pub cache: Cache,
    pub log: Log,
    pub issuers: Vec<Issuer>,
    /// `[[publish]]`: object storage sinks the issuers' documents are pushed to.
    pub publish: Vec<Publish>,
}

#[derive(Clone, Debug)]
pub struct Server {
    /// HTTPS listener; present exactly when `tls` is.
    pub listen: Option<SocketAddr>,
    pub listen_plain: Option<SocketAddr>,
    pub deadline: Duration,
    pub limits: Limits,
    pub tls: Option<ServerTls>,
}

/// The HTTPS listener's certificates: files, or obtained by ACME (then `certs` is empty).
#[derive(Clone, Debug)]
pub struct ServerTls {
    /// `[server.tls] cert/key` first (the default), then each `[[server.tls.certs]]`,
    /// chosen by the client's SNI.
    pub certs: Vec<Tls>,
    /// How often the files are checked for changes (SIGHUP reloads at once).
    pub reload_interval: Duration,
    pub acme: Option<Acme>,
}

/// Let's Encrypt's production directory, the default `[server.tls.acme] directory`.
pub const LETS_ENCRYPT: &str = "https://acme-v02.api.letsencrypt.org/directory";
/// Let's Encrypt's staging directory (untrusted certificates, generous rate limits).
pub const LETS_ENCRYPT_STAGING: &str = "https://acme-staging-v02.api.letsencrypt.org/directory";

/// `[server.tls.acme]`: certificates obtained and renewed from an ACME CA.
#[derive(Clone, Debug)]
pub struct Acme {
    pub directory: String,
    /// `mailto:` URIs for the account.
    pub contact: Vec<String>,
    /// Lower-case DNS names; by default every issuer's public host, in config order.
    pub domains: Vec<String>,
    /// Account key and certificates; must survive restarts (CA rate limits).
    pub cache_dir: PathBuf,
    /// PEM bundle trusted for the directory's HTTPS, besides the public roots.
    pub directory_ca: Option<PathBuf>,
    pub challenge: AcmeChallenge,
    /// One certificate per domain instead of one certificate naming them all.
    pub one_per_domain: bool,
    /// Renew this long before expiry; `None` is a third of each certificate's lifetime.
    pub renew_before: Option<Duration>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AcmeChallenge {
    /// Answered on the HTTPS listener itself (port 443 for public CAs).
    TlsAlpn01,
    /// Answered on the plain listener (port 80 for public CAs).
    Http01,
}

impl AcmeChallenge {
    pub fn as_str(self) -> &'static str {
        match self {
            AcmeChallenge::TlsAlpn01 => "tls-alpn-01",
            AcmeChallenge::Http01 => "http-01",
        }
    }
}

/// A certificate chain file (PEM, leaf first) and its private key file.
#[derive(Clone, Debug)]
pub struct Tls {
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Clone, Debug)]
pub struct Admin {
    pub listen: SocketAddr,
    /// Holds the bearer token that admin actions (`POST /admin/refresh`,
    /// `POST /admin/drop-retained`) require; without it, they are off (404).
    pub token_file: Option<PathBuf>,
    /// What `/readyz` (without `?issuer=`) requires after start-up.
    pub readiness: Readiness,
    /// How long `/readyz` says "starting" (503) while some document has no copy yet.
    pub startup_grace: Duration,
}

/// `admin.readiness`: when the process as a whole counts as ready.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Readiness {
    /// After start-up, ready while at least one document can be served: one broken
    /// issuer never takes a replica (and with it the healthy issuers) out of service.
    Any,
    /// Ready only while every document of every issuer can be served and every
    /// certificate is valid.
    All,
}

impl Readiness {
    pub fn as_str(self) -> &'static str {
        match self {
            Readiness::Any => "any",
            Readiness::All => "all",
        }
    }
}

#[derive(Clone, Debug)]
pub struct Log {
    /// One line per public request (method, host, path, status, cache status, duration).
    pub access: bool,
}

#[derive(Clone, Debug)]
pub struct Cache {
    pub max_age: Duration,
    pub refresh: Duration,
    pub stale_if_error: Duration,
    pub fetch_timeout: Duration,
    /// How long keys that vanished upstream stay published; zero is off.
    pub keep_removed_keys: Duration,
    /// A request that finds a key set copy at least this old wakes its refresher, at
    /// most once per this interval; zero is off.
    pub revalidate_after: Duration,
    pub max_document_bytes: usize,
    pub state_dir: Option<PathBuf>,
    /// `max_rsa_keys`, `max_ec_keys`, `max_keys`: the most keys a published set holds.
    pub key_cap: KeyCap,
    /// The most fetches in flight at once to one upstream authority (scheme, host,
    /// port), whichever issuers and documents they are for.
    pub max_fetches_per_upstream: usize,
}

#[derive(Clone, Debug)]
pub struct Issuer {
    /// Short name for logs and admin actions; defaults to the public URL's host and path.
    pub name: String,
    /// Exactly the tokens' `iss`, as configured.
    pub public_url: String,
    pub public: BaseUrl,
    pub upstream: BaseUrl,
    /// Absolute path on the public host where the key set is published.
    pub public_jwks_path: Option<String>,
    /// Where the key set is fetched, overriding what the discovery document implies.
    pub upstream_jwks_url: Option<String>,
    pub upstream_ca: Option<PathBuf>,
    /// Client certificate chain and key for upstreams that require mutual TLS.
    pub upstream_client_auth: Option<Tls>,
    /// Read before every fetch and sent as `Authorization: Bearer` (Kubernetes rotates
    /// service-account tokens on disk).
    pub upstream_bearer_token_file: Option<PathBuf>,
    /// `Host` header sent upstream instead of the URL's authority.
    pub upstream_host: Option<String>,
    /// The operator accepted that the bearer token crosses the network in clear text.
    pub upstream_bearer_token_over_http: bool,
    /// `kid`s never published, whatever the upstream or a snapshot holds (a withdrawn,
    /// perhaps compromised key); the same list on every replica.
    pub withdrawn_kids: Vec<String>,
    /// `publish_keys`, `fill_key_use`, `fill_key_alg`.
    pub key_policy: KeyPolicy,
    /// A JWKS file whose keys are published beside the upstream's (read by `App::new`).
    pub prepublished_jwks_file: Option<PathBuf>,
}

impl Issuer {
    /// The public path of the discovery document.
    pub fn discovery_path(&self) -> String {
        format!("{}/.well-known/openid-configuration", self.public.path())
    }

    /// The upstream URL of the discovery document.
    pub fn upstream_discovery_url(&self) -> String {
        self.upstream.join("/.well-known/openid-configuration")
    }

    /// Whether some document of this issuer is fetched over plain http.
    pub fn fetches_over_http(&self) -> bool {
        !self.upstream.is_https()
            || self
                .upstream_jwks_url
                .as_deref()
                .is_some_and(|u| u.starts_with("http://"))
    }
}

/// The object storage services a `[[publish]]` url can name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cloud {
    /// `s3://bucket/prefix`: AWS S3 or an S3-compatible store (`endpoint`).
    S3,
    /// `gs://bucket/prefix`: Google Cloud Storage.
    Gcs,
    /// `az://container/prefix`: Azure Blob Storage (the account comes from the environment).
    Azure,
}

impl Cloud {
    /// The url scheme.
    pub fn as_str(self) -> &'static str {
        match self {
            Cloud::S3 => "s3",
            Cloud::Gcs => "gs",
            Cloud::Azure => "az",
        }
    }
}

/// `[[publish]]`: one bucket (or container) and prefix the documents are written to.
#[derive(Clone, Debug)]
pub struct Publish {
    /// As written: the sink's name in metrics, `/readyz` and errors.
    pub url: String,
    pub cloud: Cloud,
    /// The bucket (S3, GCS) or container (Azure).
    pub bucket: String,
    /// Segments joined by `/`, without a leading or trailing one; empty for the bucket root.
    pub prefix: String,
    /// Another service than the cloud's own (an S3-compatible store, an emulator).
    pub endpoint: Option<String>,
    /// S3 only.
    pub region: Option<String>,
    /// The issuers published here, as indexes into `Config::issuers`, in config order.
    pub issuers: Vec<usize>,
}

impl Publish {
    /// The object a document published at `public_path` (absolute, on the issuer's
    /// host) is written to: the prefix, then the path, so that a bucket website or CDN
    /// on the issuer's host serves it at the URL relying parties use.
    pub fn object_key(&self, public_path: &str) -> String {
        let path = public_path.trim_start_matches('/');
        if self.prefix.is_empty() {
            path.to_owned()
        } else {
            format!("{}/{path}", self.prefix)
        }
    }
}
