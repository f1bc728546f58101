//! ACME against pebble, a real RFC 8555 CA, on loopback: pebble validates each challenge by
//! connecting back to the proxy (TLS-ALPN-01 on its HTTPS port, HTTP-01 on its plain port).

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use http::StatusCode;
use jwks_edge::fake_idp::FakeIdp;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use tokio::net::{TcpListener, TcpSocket};

use crate::pebble::Pebble;
use crate::support::*;

pub(crate) const GITLAB: &str = "gitlab.example.com";
pub(crate) const AUTH: &str = "auth.example.com";
pub(crate) const DISCOVERY: &str = "/.well-known/openid-configuration";
pub(crate) const GITLAB_KEYS: &str = "/oauth/discovery/keys";

/// Issuance takes about a second here; generous for a loaded machine.
pub(crate) const ISSUANCE: Duration = Duration::from_secs(60);

/// A loopback listener on `port` (0: any), reusable at once after the previous one closed,
/// so a restarted proxy is where pebble validates.
pub(crate) fn listen(port: u16) -> TcpListener {
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_reuseaddr(true).unwrap();
    socket.bind(SocketAddr::from(([127, 0, 0, 1], port))).unwrap();
    socket.listen(1024).unwrap()
}

/// A client that trusts only the root pebble issues under (as a relying party trusts a
/// public CA), offering `h2` and `http/1.1`.
pub(crate) fn trusting(roots_pem: &str, sni: &str) -> Transport {
    let mut roots = rustls::RootCertStore::empty();
    let root = CertificateDer::pem_slice_iter(roots_pem.as_bytes())
        .next()
        .unwrap()
        .unwrap();
    roots.add(root).unwrap();
    let mut config = rustls::ClientConfig::builder_with_provider(jwks_edge::tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Transport::Tls {
        config: Arc::new(config),
        sni: sni.to_owned(),
    }
}

/// The DNS names of a certificate.
pub(crate) fn names(cert: &CertificateDer<'_>) -> Vec<String> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert).unwrap();
    let san = parsed.subject_alternative_name().unwrap().unwrap();
    san.value
        .general_names
        .iter()
        .filter_map(|n| match n {
            x509_parser::extensions::GeneralName::DNSName(d) => Some(d.to_string()),
            _ => None,
        })
        .collect()
}

/// The value of one `jwks_edge_acme_orders_total` series.
pub(crate) async fn orders(admin: SocketAddr, outcome: &str) -> u64 {
    let reply = get(admin, &Transport::Plain, "localhost", "/metrics").await;
    let text = String::from_utf8_lossy(&reply.body).into_owned();
    let prefix = format!("jwks_edge_acme_orders_total{{outcome=\"{outcome}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(prefix.as_str()))
        .unwrap_or_else(|| panic!("no {prefix} in\n{text}"))
        .parse()
        .unwrap()
}

/// The ACME certificates `/readyz` reports.
pub(crate) async fn acme_certificates(admin: SocketAddr) -> (StatusCode, Vec<serde_json::Value>) {
    let (status, body) = readyz(admin).await;
    let certs = body["tls"]["acme"]["certificates"].as_array().unwrap().clone();
    (status, certs)
}

/// Waits (bounded) until every ACME certificate of the proxy is in `state`; the failure
/// shows what `/readyz` said last.
pub(crate) async fn until_all(admin: SocketAddr, state: &str, limit: Duration) {
    Wait::up_to(limit)
        .every(Duration::from_millis(50))
        .until(&format!("every certificate to be {state}"), async || {
            let (_, certs) = acme_certificates(admin).await;
            if certs.iter().all(|c| c["state"] == state) {
                Ok(())
            } else {
                Err(format!("{certs:#?}"))
            }
        })
        .await
}

/// Waits (bounded) until `/readyz` says 200: documents fetched and certificates valid.
pub(crate) async fn until_ready(admin: SocketAddr) {
    eventually(ISSUANCE, "the proxy to be ready", async || {
        readyz(admin).await.0 == StatusCode::OK
    })
    .await;
}

pub(crate) struct Setup {
    gitlab: FakeIdp,
    keycloak: FakeIdp,
    cache: tempfile::TempDir,
}

impl Setup {
    pub(crate) async fn new() -> Setup {
        Setup {
            gitlab: gitlab_idp().await,
            keycloak: keycloak_idp("a").await,
            cache: tempfile::tempdir().unwrap(),
        }
    }

    /// A proxy on `https` and `plain` ordering from `pebble`, with `[server.tls.acme]`
    /// lines `acme`.
    async fn start(&self, https: TcpListener, plain: TcpListener, pebble: &Pebble, acme: &str) -> Proxy {
        let ca = format!("directory_ca = {:?}\n{acme}", pebble.directory_ca);
        self.start_with(https, plain, &pebble.directory, &ca).await
    }

    pub(crate) async fn start_with(
        &self,
        https: TcpListener,
        plain: TcpListener,
        directory: &str,
        acme: &str,
    ) -> Proxy {
        let cache_dir = self.cache.path();
        let acme =
            format!("directory = {directory:?}\ncontact = [\"ops@example.com\"]\ncache_dir = {cache_dir:?}\n{acme}");
        Proxy::builder()
            .on_listeners(https, plain)
            .toml("server.tls.acme", &acme)
            .issuer(Issuer::gitlab(&self.gitlab))
            .issuer(Issuer::keycloak(&self.keycloak, "a"))
            .start()
            .await
    }
}

/// Waits (bounded) until every ACME certificate has been replaced by a new one (a later
/// `not_after` in `/readyz`), polling gently: handshakes in a tight loop would load the
/// machine the other tests share.
pub(crate) async fn until_renewed(admin: SocketAddr, limit: Duration) {
    let (_, before) = acme_certificates(admin).await;
    Wait::up_to(limit)
        .every(Duration::from_millis(200))
        .until("every certificate to be renewed", async || {
            let (_, now) = acme_certificates(admin).await;
            let renewed = now.iter().zip(&before).all(|(now, before)| {
                before["not_after"].is_string() && time(now, "not_after") > time(before, "not_after")
            });
            if renewed {
                Ok(())
            } else {
                Err(format!("{now:#?}"))
            }
        })
        .await
}

/// Serves both documents of both issuers over HTTPS with the certificate for each name;
/// returns the leaf served for each name.
pub(crate) async fn serves_both(https: SocketAddr, roots: &str) -> Vec<CertificateDer<'static>> {
    let mut leaves = Vec::new();
    for (host, paths) in [
        (GITLAB, [DISCOVERY.to_owned(), GITLAB_KEYS.to_owned()]),
        (
            AUTH,
            [
                format!("/realms/a{DISCOVERY}"),
                "/realms/a/protocol/openid-connect/certs".to_owned(),
            ],
        ),
    ] {
        let mut conn = Conn::open(https, &trusting(roots, host)).await;
        for path in &paths {
            let reply = conn.get(host, path).await;
            assert_eq!(reply.status, StatusCode::OK, "https://{host}{path}: {:?}", reply.body);
        }
        leaves.push(conn.peer_cert.clone().unwrap());
    }
    leaves
}

/// One `/readyz` time field.
pub(crate) fn time(cert: &serde_json::Value, key: &str) -> std::time::SystemTime {
    humantime::parse_rfc3339(cert[key].as_str().unwrap_or_else(|| panic!("no {key} in {cert}"))).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
pub(crate) async fn tls_alpn_certificates_are_obtained_reused_renewed_and_kept_when_the_ca_fails() {
    // One pebble, one proxy restarted along the way, one cache: each step starts from what
    // the previous one left, as in production.
    let https = listen(0);
    let port = https.local_addr().unwrap().port();
    let unused = listen(0);
    // 40-second certificates renewed 20 s before expiry: a renewal within the test, and
    // 20 s of margin for it on a loaded machine.
    let lifetime = Duration::from_secs(40);
    let mut pebble = Pebble::start(port, unused.local_addr().unwrap().port(), Some(lifetime)).await;
    let roots = pebble.issuing_roots_pem().await;
    let setup = Setup::new().await;
    let per_domain = "one_per_domain = true\nrenew_before = \"20s\"";

    // 1. Nothing cached: one order per domain, validated by pebble on our HTTPS port.
    let proxy = setup.start(https, listen(0), &pebble, per_domain).await;
    until_all(proxy.admin, "valid", ISSUANCE).await;
    until_ready(proxy.admin).await;
    let first = serves_both(proxy.https.unwrap(), &roots).await;
    assert_eq!(names(&first[0]), [GITLAB], "one certificate per domain");
    assert_eq!(names(&first[1]), [AUTH]);
    assert_eq!(orders(proxy.admin, "issued").await, 2);
    for cert in acme_certificates(proxy.admin).await.1 {
        let before = time(&cert, "not_after").duration_since(time(&cert, "renew_at"));
        assert_eq!(before.unwrap(), Duration::from_secs(20), "renew_before: {cert}");
    }
    // A validation handshake for a name with no pending challenge gets no certificate,
    // and a client offering only acme-tls/1 never reaches the documents.
    let probe = any_certificate(b"acme-tls/1");
    assert!(try_handshake(proxy.https.unwrap(), &probe).await.is_err());
    // The account key and certificates are cached, readable by the owner only.
    let cached = walk(setup.cache.path());
    assert_eq!(
        cached.iter().filter(|p| p.ends_with("account.json")).count(),
        1,
        "{cached:?}"
    );
    assert_eq!(
        cached
            .iter()
            .filter(|p| p.extension().is_some_and(|e| e == "pem"))
            .count(),
        2
    );
    for file in &cached {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{file:?}");
    }
    proxy.shutdown().await;

    // 2. Restart: the cached certificates serve at once, with no order.
    let proxy = setup.start(listen(port), listen(0), &pebble, per_domain).await;
    let (_, certs) = acme_certificates(proxy.admin).await;
    assert!(
        certs.iter().all(|c| c["state"] == "valid"),
        "loaded before any order: {certs:?}"
    );
    until_ready(proxy.admin).await;
    assert_eq!(serves_both(proxy.https.unwrap(), &roots).await, first);
    assert_eq!(orders(proxy.admin, "issued").await, 0);
    assert_eq!(orders(proxy.admin, "failed").await, 0);

    // 3. The CA loses its database (pebble restarts: same directory URL, no accounts, a
    // new root), then renewal comes due: the unknown account is replaced and both
    // certificates renew, without a restart, while serving.
    let account_file = cached.iter().find(|p| p.ends_with("account.json")).unwrap();
    let account = std::fs::read(account_file).unwrap();
    pebble.restart().await;
    let roots = pebble.issuing_roots_pem().await;
    until_renewed(proxy.admin, lifetime).await;
    let renewed = serves_both(proxy.https.unwrap(), &roots).await;
    assert!(renewed[0] != first[0] && renewed[1] != first[1]);
    assert_eq!(orders(proxy.admin, "issued").await, 2);
    assert_eq!(orders(proxy.admin, "failed").await, 0, "recovered within the renewal");
    assert_ne!(std::fs::read(account_file).unwrap(), account, "a new account is cached");
    proxy.shutdown().await;

    // 4. The CA is gone, and the config now wants one certificate for both names: nothing
    // cached fits, so the two per-domain certificates keep serving while the order for
    // the new one fails, is counted and reported, and backs off.
    pebble.stop();
    let proxy = setup.start(listen(port), listen(0), &pebble, "").await;
    let (_, certs) = acme_certificates(proxy.admin).await;
    assert_eq!(certs.len(), 1);
    assert_eq!(certs[0]["names"], serde_json::json!([GITLAB, AUTH]));
    until_all(proxy.admin, "renewal_failing", ISSUANCE).await;
    until_ready(proxy.admin).await;
    let (_, certs) = acme_certificates(proxy.admin).await;
    let cert = &certs[0];
    let error = cert["last_error"].as_str().unwrap();
    assert!(
        error.contains("ACME") && error.contains("Connection refused"),
        "{error}"
    );
    assert_eq!(cert["consecutive_failures"], 1);
    // The first retry waits two minutes (then 4, 8, ... up to an hour).
    let wait = time(cert, "next_attempt")
        .duration_since(time(cert, "last_attempt"))
        .unwrap();
    assert!(
        (Duration::from_secs(110)..=Duration::from_secs(130)).contains(&wait),
        "{wait:?}"
    );
    assert_eq!(orders(proxy.admin, "failed").await, 1);
    assert_eq!(serves_both(proxy.https.unwrap(), &roots).await, renewed);
    proxy.shutdown().await;

    // 5. A restart keeps the backoff: no order at start, the failure still reported.
    let proxy = setup.start(listen(port), listen(0), &pebble, "").await;
    let (_, restarted) = acme_certificates(proxy.admin).await;
    assert_eq!(restarted[0]["state"], "renewal_failing", "{restarted:?}");
    assert_eq!(restarted[0]["next_attempt"], cert["next_attempt"]);
    assert_eq!(restarted[0]["last_error"], cert["last_error"]);
    until_ready(proxy.admin).await;
    assert_eq!(orders(proxy.admin, "failed").await, 0, "no order before the retry time");
    assert_eq!(serves_both(proxy.https.unwrap(), &roots).await, renewed);
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
pub(crate) async fn http01_on_the_plain_listener_gets_one_certificate_for_every_name() {
    let plain = listen(0);
    let unused = listen(0);
    let pebble = Pebble::start(
        unused.local_addr().unwrap().port(),
        plain.local_addr().unwrap().port(),
        None,
    )
    .await;
    let roots = pebble.issuing_roots_pem().await;
    let setup = Setup::new().await;
    let proxy = setup.start(listen(0), plain, &pebble, "challenge = \"http-01\"").await;
    // No challenge is pending for an unknown token: the usual 404.
    let reply = get(
        proxy.plain.unwrap(),
        &Transport::Plain,
        GITLAB,
        "/.well-known/acme-challenge/unknown",
    )
    .await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    until_all(proxy.admin, "valid", ISSUANCE).await;
    let leaves = serves_both(proxy.https.unwrap(), &roots).await;
    assert_eq!(leaves[0], leaves[1], "one certificate for every name");
    assert_eq!(names(&leaves[0]), [GITLAB, AUTH]);
    assert_eq!(orders(proxy.admin, "issued").await, 1);
    // The documents stay on plain HTTP too.
    until_served(proxy.plain.unwrap(), GITLAB, DISCOVERY).await;
    proxy.shutdown().await;
}

/// Every file under `dir`.
pub(crate) fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}

/// A client for `GITLAB` offering only `alpn` that accepts any certificate: it asks only
/// whether a handshake gets one at all.
pub(crate) fn any_certificate(alpn: &[u8]) -> Transport {
    let mut config = rustls::ClientConfig::builder_with_provider(jwks_edge::tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAnything))
        .with_no_client_auth();
    config.alpn_protocols = vec![alpn.to_vec()];
    Transport::Tls {
        config: Arc::new(config),
        sni: GITLAB.into(),
    }
}
