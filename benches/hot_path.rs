//! Micro-benchmarks of the request hot path: route lookup, a whole response built from
//! a stored document, `If-None-Match` matching, and the discovery rewrite (done once per
//! refresh, not per request, but worth keeping small).

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use criterion::{black_box, criterion_group, criterion_main, Criterion};
use http::{HeaderValue, Request};
use http_body_util::Empty;
use jwks_edge::cache::routes::Router;
use jwks_edge::cache::store::DocumentStore;
use jwks_edge::config::Config;
use jwks_edge::edge::access_log::{AccessFormat, AccessLog};
use jwks_edge::edge::connection::ConnInfo;
use jwks_edge::edge::proxy::Proxy;
use jwks_edge::model::client_family::ClientFamily;
use jwks_edge::model::document::{CachePolicy, DocKind, Document};
use jwks_edge::model::listener::Listener;
use jwks_edge::model::DocId;
use jwks_edge::telemetry::metrics::Metrics;
use jwks_edge::telemetry::reach::ReachBoard;
use jwks_edge::upstream::rewrite::rewrite_discovery;

const KEYCLOAK_DISCOVERY: &str = include_str!("../tests/fixtures/keycloak/openid-configuration.json");
const KEYCLOAK_JWKS: &str = include_str!("../tests/fixtures/keycloak/jwks.json");

fn config() -> Config {
    let text = "[server]\nlisten_plain = \"127.0.0.1:1\"\n\
        [[issuer]]\npublic_url = \"https://auth.example.com/realms/prod\"\nupstream = \"http://keycloak.internal:8080/realms/prod\"\n\
        [[issuer]]\npublic_url = \"https://auth.example.com/realms/dev\"\nupstream = \"http://keycloak.internal:8080/realms/dev\"\n\
        [[issuer]]\npublic_url = \"https://gitlab.example.com\"\nupstream = \"http://gitlab.internal:8080\"\n";
    Config::from_toml(text, Path::new(".")).unwrap()
}

fn policy() -> CachePolicy {
    CachePolicy {
        max_age: Duration::from_secs(300),
        refresh: Duration::from_secs(60),
        fetch_timeout: Duration::from_secs(5),
        stale_if_error: Duration::from_secs(86400),
    }
}

/// A store warm with the Keycloak realm's two documents.
fn warm_store(config: &Config) -> Arc<DocumentStore> {
    let store = Arc::new(DocumentStore::new(config.issuers.len()));
    let public = rewrite_discovery(&config.issuers[0], KEYCLOAK_DISCOVERY.as_bytes()).unwrap();
    let now = SystemTime::now();
    let discovery = Document::new(DocKind::Discovery, public.body, now, Some(public.jwks), &policy());
    store.put(DocId::discovery(0), Arc::new(discovery));
    let jwks = Document::new(
        DocKind::Jwks,
        Bytes::from_static(KEYCLOAK_JWKS.as_bytes()),
        now,
        None,
        &policy(),
    );
    store.put(DocId::jwks(0), Arc::new(jwks));
    store
}

/// A routing table that has learned the Keycloak realm's key set path, as its discovery
/// refresher publishes it.
fn warm_router(config: &Config, store: &DocumentStore) -> Arc<Router> {
    let router = Router::new(&config.issuers);
    let discovery = store.get(DocId::discovery(0)).unwrap();
    router.claim(0, discovery.jwks.as_ref()).unwrap();
    Arc::new(router)
}

fn benches(c: &mut Criterion) {
    let config = config();
    let store = warm_store(&config);
    let router = warm_router(&config, &store);
    let jwks_path = "/realms/prod/protocol/openid-connect/certs";

    c.bench_function("route: key set of the first realm", |b| {
        b.iter(|| router.route(black_box("auth.example.com"), black_box(jwks_path)))
    });
    c.bench_function("route: unknown path", |b| {
        b.iter(|| router.route(black_box("auth.example.com"), black_box("/realms/prod/other")))
    });

    // The worst a client can make of it: every examined byte starts a token ("a…" starts
    // five), none matches.
    let unknown = [b'a'; 200];
    c.bench_function("client family: unknown 200-byte user agent", |b| {
        b.iter(|| ClientFamily::classify(black_box(Some(&unknown[..]))))
    });
    c.bench_function("client family: Go-http-client", |b| {
        b.iter(|| ClientFamily::classify(black_box(Some(&b"Go-http-client/1.1"[..]))))
    });

    let doc = store.get(DocId::jwks(0)).unwrap();
    let etag = doc.etag.clone();
    let other = HeaderValue::from_static("\"0123456789abcdef0123456789abcdef\", W/\"x\"");
    c.bench_function("if-none-match: hit", |b| b.iter(|| doc.matches(black_box(&etag))));
    c.bench_function("if-none-match: miss", |b| b.iter(|| doc.matches(black_box(&other))));

    let metrics = Arc::new(Metrics::new(config.issuers.iter().map(|i| i.name.clone()).collect()));
    // Counting relying parties by family is part of every document request in service.
    let proxy = Proxy::new(
        warm_router(&config, &store),
        store.clone(),
        policy(),
        Duration::from_secs(2),
        metrics,
        None,
    )
    .with_reach(Arc::new(ReachBoard::new(config.issuers.len())));
    let conn = ConnInfo {
        peer: "127.0.0.1:50000".parse().unwrap(),
        listener: Listener::Plain,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let request = || {
        Request::get(jwks_path)
            .header("host", "auth.example.com")
            .header("user-agent", "Go-http-client/1.1")
            .body(Empty::<Bytes>::new())
            .unwrap()
    };
    c.bench_function("respond: 3 KB key set, 200", |b| {
        b.iter(|| runtime.block_on(proxy.respond(request(), conn)))
    });
    c.bench_function("respond: 304", |b| {
        b.iter(|| {
            let mut req = request();
            req.headers_mut().insert("if-none-match", etag.clone());
            runtime.block_on(proxy.respond(req, conn))
        })
    });
    c.bench_function("respond: 404", |b| {
        b.iter(|| {
            let req = Request::get("/nope")
                .header("host", "auth.example.com")
                .body(Empty::<Bytes>::new())
                .unwrap();
            runtime.block_on(proxy.respond(req, conn))
        })
    });

    // The same 200 with the access log on (the line is formatted on the request's core
    // and appended to the log sink's buffer; the sink writes it out elsewhere).
    let sink = jwks_edge::telemetry::log_sink::LogSink::start_with(std::io::sink());
    let logged = Proxy::new(
        warm_router(&config, &store),
        store.clone(),
        policy(),
        Duration::from_secs(2),
        Arc::new(Metrics::new(config.issuers.iter().map(|i| i.name.clone()).collect())),
        Some(AccessLog::new(AccessFormat::Text, sink.handle())),
    );
    let subscriber = tracing_subscriber::fmt().with_writer(std::io::sink).finish();
    tracing::subscriber::with_default(subscriber, || {
        c.bench_function("respond: 200 with the access log (text)", |b| {
            b.iter(|| runtime.block_on(logged.respond(request(), conn)))
        });
    });

    let issuer = &config.issuers[0];
    c.bench_function("rewrite: 6.5 KB Keycloak discovery", |b| {
        b.iter(|| rewrite_discovery(issuer, black_box(KEYCLOAK_DISCOVERY.as_bytes())).unwrap())
    });
}

criterion_group!(hot_path, benches);
criterion_main!(hot_path);
