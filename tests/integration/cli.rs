//! The binary: `check-config` exit codes and messages, and `demo` end to end.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::{ChildProcess, Wait};

const BIN: &str = env!("CARGO_BIN_EXE_jwks-edge");

/// Runs the binary to completion: exit code, stdout, stderr. A command that should end
/// but does not (a `serve` that starts instead of refusing) is killed after 20 s.
fn run(args: &[&str]) -> (i32, String, String) {
    use std::io::Read;
    let mut child = ChildProcess::spawn(
        Command::new(BIN)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
    );
    let drain = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = pipe.read_to_string(&mut text);
            text
        })
    };
    let stdout = drain(Box::new(child.stdout.take().unwrap()));
    let stderr = drain(Box::new(child.stderr.take().unwrap()));
    let status = child.exit_within_blocking(Duration::from_secs(20), &format!("jwks-edge {args:?} to exit"));
    (
        status.code().unwrap_or(-1),
        stdout.join().unwrap(),
        stderr.join().unwrap(),
    )
}

#[test]
fn example_config_passes_check_config() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/config.example.toml");
    let (code, stdout, stderr) = run(&["check-config", "--config", example]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains("public_url = \"https://auth.example.com/realms/prod\""),
        "{stdout}"
    );
    assert!(
        stdout.contains("refresh = \"1m\""),
        "effective config printed: {stdout}"
    );
}

#[test]
fn check_config_exits_2_naming_the_key_or_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("absent.toml");
    let (code, _, stderr) = run(&["check-config", "--config", missing.to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(
        stderr.contains("absent.toml") && stderr.contains("cannot read"),
        "{stderr}"
    );

    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "[server]\nlisten_plain = \"127.0.0.1:8080\"\n[cache]\nrefresh = \"soon\"\n[[issuer]]\npublic_url = \"https://a.example\"\nupstream = \"http://a\"\n",
    )
    .unwrap();
    let (code, _, stderr) = run(&["check-config", "--config", bad.to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(stderr.contains("cache.refresh = \"soon\""), "{stderr}");

    // A certificate file that is present but broken is an error, not a warning.
    let tls = dir.path().join("tls.toml");
    std::fs::write(dir.path().join("cert.pem"), "not a certificate").unwrap();
    std::fs::write(dir.path().join("key.pem"), "not a key").unwrap();
    std::fs::write(
        &tls,
        "[server.tls]\ncert = \"cert.pem\"\nkey = \"key.pem\"\n[[issuer]]\npublic_url = \"https://a.example\"\nupstream = \"http://a\"\n",
    )
    .unwrap();
    let (code, _, stderr) = run(&["check-config", "--config", tls.to_str().unwrap()]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("cert.pem"), "{stderr}");

    // The environment variable works as --config does.
    let out = Command::new(BIN)
        .arg("check-config")
        .env("JWKS_EDGE_CONFIG", bad.to_str().unwrap())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));

    let (code, _, _) = run(&["serve"]);
    assert_eq!(code, 2, "usage error without --config");
}

#[test]
fn check_config_refuses_a_bearer_token_for_a_plain_http_upstream() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("token.toml");
    let issuer = "[server]\nlisten_plain = \"127.0.0.1:8080\"\n[[issuer]]\npublic_url = \"https://a.example\"\n\
                  upstream = \"http://idp.internal\"\nupstream_bearer_token_file = \"/run/token\"\n";
    std::fs::write(&config, issuer).unwrap();
    let (code, _, stderr) = run(&["check-config", "--config", config.to_str().unwrap()]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("issuer[0].upstream_bearer_token_file = \"/run/token\"") && stderr.contains("clear text"),
        "{stderr}"
    );

    // The explicit opt-in is accepted, and shown in the effective config.
    std::fs::write(&config, format!("{issuer}upstream_bearer_token_over_http = true\n")).unwrap();
    let (code, stdout, stderr) = run(&["check-config", "--config", config.to_str().unwrap()]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("upstream_bearer_token_over_http = true"), "{stdout}");
}

fn curl_available() -> bool {
    Command::new("curl")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn demo_starts_and_its_printed_commands_work() {
    let mut child = ChildProcess::spawn(
        Command::new(BIN)
            .args(["demo", "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null()),
    );
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut commands = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let line = rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("demo prints its commands within 30 s");
        if let Some(command) = line.strip_prefix("  curl ") {
            commands.push(format!("curl --max-time 10 {command}"));
        }
        if line.contains("Ctrl-C") {
            break;
        }
    }
    assert_eq!(commands.len(), 6, "{commands:#?}");
    assert!(
        curl_available(),
        "curl is not installed, so the demo's printed commands cannot be tried: run .ci/install-test-deps"
    );
    let sh = |command: &str| {
        let out = Command::new("sh").arg("-c").arg(command).output().unwrap();
        String::from_utf8_lossy(&out.stdout).to_lowercase()
    };
    // The refreshers fetch at start-up; wait until readiness says so.
    let readyz = &commands[5];
    Wait::up_to(Duration::from_secs(20))
        .every(Duration::from_millis(100))
        .until_blocking("the demo to be ready", || sh(readyz).contains("\"ready\":true"));
    let idp = sh(&commands[0]);
    assert!(idp.contains("pragma: no-cache") && idp.contains("set-cookie"), "{idp}");
    let discovery = sh(&commands[1]);
    assert!(
        discovery.contains(" 200") && discovery.contains("cache-control: public"),
        "{discovery}"
    );
    assert!(
        !discovery.contains("pragma") && !discovery.contains("set-cookie"),
        "{discovery}"
    );
    assert!(!discovery.contains("\"jwks_uri\":\"http://127.0.0.1"), "{discovery}");
    let keys = sh(&commands[2]);
    assert!(keys.contains(" 200") && keys.contains("\"kty\":\"ec\""), "{keys}");
    let revalidated = sh(&commands[3]);
    assert!(revalidated.contains(" 304"), "{revalidated}");
    let refused = sh(&commands[4]);
    assert!(refused.contains(" 404"), "{refused}");
}

#[test]
fn serve_refuses_an_acme_cache_it_cannot_write_or_a_missing_directory_ca() {
    let dir = tempfile::tempdir().unwrap();
    // A directory cannot be made under a regular file, whoever runs the test.
    std::fs::write(dir.path().join("file"), "").unwrap();
    let issuer = "[[issuer]]\npublic_url = \"https://a.example.com\"\nupstream = \"http://a\"\n";
    let cases = [
        ("cache_dir = \"file/acme\"", "cannot use the ACME cache"),
        (
            "cache_dir = \"acme\"\ndirectory_ca = \"absent-ca.pem\"",
            "absent-ca.pem",
        ),
    ];
    for (i, (acme, expected)) in cases.iter().enumerate() {
        let config = dir.path().join(format!("acme{i}.toml"));
        std::fs::write(
            &config,
            format!("[server]\nlisten = \"127.0.0.1:0\"\n[admin]\nlisten = \"127.0.0.1:0\"\n[server.tls.acme]\n{acme}\n{issuer}"),
        )
        .unwrap();
        let (code, _, stderr) = run(&["serve", "--config", config.to_str().unwrap()]);
        assert_eq!(code, 2, "{stderr}");
        assert!(stderr.contains(expected), "expected {expected:?} in {stderr}");
    }
}
