//! The files `serve` keeps: directories created 0700, and snapshots and ACME retry records
//! with absurd timestamps loaded without a panic, `/readyz` still well-formed.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use http::StatusCode;
use jwks_edge::fake_idp::Fault;

use crate::support::*;

const GITLAB: &str = "gitlab.example.com";
const DISCOVERY: &str = "/.well-known/openid-configuration";
const KEYS: &str = "/oauth/discovery/keys";

/// Milliseconds of 10000-01-01T00:00:00Z, one past what RFC 3339 can write.
const YEAR_10000_MS: u64 = 253_402_300_800_000;

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

/// Every file under `dir`, temporary ones included.
fn walk(dir: &Path) -> Vec<PathBuf> {
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

/// Files under `dir` whose name ends with `suffix`, once there are `count` of them.
async fn until_files(dir: &Path, suffix: &str, count: usize) -> Vec<PathBuf> {
    let found = || {
        walk(dir)
            .into_iter()
            .filter(|p| p.to_str().unwrap().ends_with(suffix))
            .collect::<Vec<_>>()
    };
    eventually(Duration::from_secs(30), "the files to be written", async || {
        found().len() == count
    })
    .await;
    found()
}

/// Replaces one numeric field of a JSON file with the number `value` (any size: the
/// file is edited as text, as a corrupting disk or a careless operator would).
fn set_number(file: &Path, field: &str, value: &str) {
    let text = std::fs::read_to_string(file).unwrap();
    let mut json: serde_json::Value = serde_json::from_str(&text).unwrap();
    json[field] = serde_json::Value::from(0u8);
    let edited = serde_json::to_string(&json)
        .unwrap()
        .replace(&format!("\"{field}\":0"), &format!("\"{field}\":{value}"));
    assert!(edited.contains(value), "{edited}");
    std::fs::write(file, edited).unwrap();
}

/// A time `/readyz` reported: well-formed RFC 3339, and when.
fn time(value: &serde_json::Value) -> SystemTime {
    let text = value.as_str().unwrap_or_else(|| panic!("not a time: {value}"));
    humantime::parse_rfc3339(text).unwrap_or_else(|e| panic!("{text}: {e}"))
}

fn assert_no_panic(serve: &Serve) {
    let log = serve.log.lock().unwrap();
    assert!(!log.iter().any(|l| l.contains("panicked")), "{log:#?}");
}

async fn stop(mut serve: Serve) {
    serve.signal("TERM");
    assert_eq!(serve.exit_status(Duration::from_secs(15)).await.code(), Some(0));
    assert_no_panic(&serve);
}

#[tokio::test]
async fn snapshots_from_the_far_future_are_served_aged_now_and_readyz_stays_well_formed() {
    let idp = gitlab_idp().await;
    let root = tempfile::tempdir().unwrap();
    // Nested and missing: created, parents too, readable by the owner only.
    let state = root.path().join("var/state");
    let config = format!(
        "[server]\nlisten_plain = \"127.0.0.1:0\"\n[admin]\nlisten = \"127.0.0.1:0\"\n\
         [cache]\nstate_dir = {state:?}\n{}",
        Issuer::gitlab(&idp)
    );
    let serve = Serve::start(&config, 2);
    until_served(serve.addr("plain"), GITLAB, DISCOVERY).await;
    until_served(serve.addr("plain"), GITLAB, KEYS).await;
    let snapshots = until_files(&state, ".json", 2).await;
    stop(serve).await;
    assert_eq!(mode(&state), 0o700);
    assert_eq!(mode(&root.path().join("var")), 0o700);

    // The IdP is gone: only the snapshots can serve.
    idp.set_fault(Fault::Refuse);
    let discovery = snapshots
        .iter()
        .find(|p| p.to_str().unwrap().ends_with(".discovery.json"));
    let jwks = snapshots.iter().find(|p| p.to_str().unwrap().ends_with(".jwks.json"));
    let (discovery, jwks) = (discovery.unwrap(), jwks.unwrap());
    let year_2500_ms = 16_725_225_600_000u64;
    for (discovery_at, jwks_at) in [
        (u64::MAX.to_string(), (YEAR_10000_MS + 86_400_000).to_string()),
        (year_2500_ms.to_string(), YEAR_10000_MS.to_string()),
    ] {
        set_number(discovery, "fetched_at_unix_ms", &discovery_at);
        set_number(jwks, "fetched_at_unix_ms", &jwks_at);
        let started = SystemTime::now();
        let serve = Serve::start(&config, 2);
        let plain = serve.addr("plain");
        for path in [DISCOVERY, KEYS] {
            let reply = get(plain, &Transport::Plain, GITLAB, path).await;
            assert_eq!(reply.status, StatusCode::OK, "{path} from the snapshot");
            assert!(reply.header("age").is_some_and(|age| age.parse::<u64>().unwrap() < 60));
        }
        let (status, body) = readyz(serve.addr("admin")).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        for kind in ["discovery", "jwks"] {
            let doc = &body["issuers"][0][kind];
            // A future fetch time counts as the time of loading: never newer than now.
            let fetched_at = time(&doc["fetched_at"]);
            assert!(fetched_at >= started - Duration::from_secs(1), "{doc}");
            assert!(fetched_at <= SystemTime::now() + Duration::from_secs(1), "{doc}");
            assert_eq!(doc["state"], "fresh", "{doc}");
        }
        stop(serve).await;
    }
}

#[tokio::test]
async fn an_existing_state_dir_keeps_its_mode_and_a_writable_one_is_warned_about() {
    let idp = gitlab_idp().await;
    let state = tempfile::tempdir().unwrap();
    std::fs::set_permissions(state.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let config = format!(
        "[server]\nlisten_plain = \"127.0.0.1:0\"\n[admin]\nlisten = \"127.0.0.1:0\"\n\
         [cache]\nstate_dir = {:?}\n{}",
        state.path(),
        Issuer::gitlab(&idp)
    );
    let serve = Serve::start(&config, 2);
    until_served(serve.addr("plain"), GITLAB, DISCOVERY).await;
    {
        let log = serve.log.lock().unwrap();
        assert!(
            log.iter()
                .any(|l| l.contains("writable by group or others") && l.contains("777")),
            "{log:#?}"
        );
    }
    stop(serve).await;
    assert_eq!(mode(state.path()), 0o777, "the operator's mode is kept");
}

#[tokio::test]
async fn acme_retry_records_from_the_far_future_neither_crash_the_start_nor_readyz() {
    // A CA that refuses connections (bound, never listening): the first order fails at
    // once and leaves its retry record.
    let closed = tokio::net::TcpSocket::new_v4().unwrap();
    closed.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let directory = format!("https://{}/dir", closed.local_addr().unwrap());
    let idp = gitlab_idp().await;
    let root = tempfile::tempdir().unwrap();
    let cache = root.path().join("acme/cache");
    let config = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nlisten_plain = \"127.0.0.1:0\"\n\
         [server.tls.acme]\ndirectory = {directory:?}\ncache_dir = {cache:?}\n\
         [admin]\nlisten = \"127.0.0.1:0\"\n{}",
        Issuer::gitlab(&idp)
    );
    let serve = Serve::start(&config, 3);
    let records = until_files(&cache, ".retry.json", 1).await;
    stop(serve).await;
    assert_eq!(mode(&cache), 0o700);
    assert_eq!(mode(&root.path().join("acme")), 0o700);
    assert_eq!(mode(records[0].parent().unwrap()), 0o700, "the per-CA directory");

    // u64::MAX overflowed `UNIX_EPOCH + secs` at start-up (a crash loop); year 10000
    // made `/readyz` panic formatting it.
    for far in [u64::MAX, YEAR_10000_MS / 1000, 1 << 40] {
        set_number(&records[0], "next_attempt_unix", &far.to_string());
        set_number(&records[0], "last_attempt_unix", &far.to_string());
        let started = SystemTime::now();
        let serve = Serve::start(&config, 3);
        let admin = serve.addr("admin");
        for _ in 0..2 {
            let (status, body) = readyz(admin).await;
            assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "no certificate yet: {body}");
            let cert = &body["tls"]["acme"]["certificates"][0];
            assert_eq!(cert["state"], "missing", "{cert}");
            assert_eq!(cert["consecutive_failures"], 1, "the record was read: {cert}");
            // The next order waits at most the longest backoff (an hour), whatever the
            // file says; the last attempt cannot be later than now.
            let next = time(&cert["next_attempt"]);
            assert!(next <= SystemTime::now() + Duration::from_secs(3600), "{cert}");
            assert!(next >= started + Duration::from_secs(3590), "{cert}");
            assert!(time(&cert["last_attempt"]) <= SystemTime::now(), "{cert}");
        }
        // The documents are still served on the plain listener.
        until_served(serve.addr("plain"), GITLAB, DISCOVERY).await;
        stop(serve).await;
    }
}
