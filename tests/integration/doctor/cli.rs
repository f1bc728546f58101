//! The doctor's command line: exit codes, the text and JSON renderings, and what they
//! escape.

use super::*;

#[tokio::test]
async fn json_output_parses_and_matches_the_readable_report() {
    let signer = Signer::new("key-1", 2048);
    let (_ca, idp) = healthy(&signer).await;
    idp.serve_discovery(&idp.issuer, &[("cache-control", "no-cache")]);
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    let mut bad_aud = claims(&idp.issuer);
    bad_aud["aud"] = json!("other");
    std::fs::write(
        &token_file,
        signer.sign(&json!({"alg": "RS256", "kid": "key-1"}), &bad_aud),
    )
    .unwrap();
    let args = |json: bool| {
        let token = token_file.display().to_string();
        let mut args = vec!["doctor".to_owned()];
        args.extend(idp.cli_args(&["--audience", "sts.amazonaws.com", "--token", &token]));
        if json {
            args.push("--json".into());
        }
        args
    };
    let run = |args: Vec<String>| {
        tokio::task::spawn_blocking(move || {
            std::process::Command::new(env!("CARGO_BIN_EXE_jwks-edge"))
                .args(args)
                .output()
                .unwrap()
        })
    };
    let text = run(args(false)).await.unwrap();
    let json_out = run(args(true)).await.unwrap();
    assert_eq!(text.status.code(), Some(1), "a failed check exits 1");
    assert_eq!(json_out.status.code(), Some(1));
    let text = String::from_utf8(text.stdout).unwrap();
    let doc: Value = serde_json::from_slice(&json_out.stdout).unwrap();
    assert_eq!(doc["status"], "fail");
    let checks = doc["checks"].as_array().unwrap();
    assert!(checks.len() > 20);
    for check in checks {
        let symbol = match check["status"].as_str().unwrap() {
            "pass" => "✓",
            "warn" => "!",
            "fail" => "✗",
            _ => "-",
        };
        let id = check["id"].as_str().unwrap();
        assert!(
            text.lines()
                .any(|l| l.starts_with(symbol) && l.split_whitespace().nth(1) == Some(id)),
            "{symbol} {id} missing from\n{text}"
        );
        assert!(check["message"].is_string());
        if check["status"] == "fail" {
            assert!(check["fix"].is_string() && check["sts_error"].is_string(), "{check}");
        }
    }
    let aud = checks.iter().find(|c| c["id"] == "token.aud").unwrap();
    assert_eq!(aud["status"], "fail");
    assert!(aud["sts_error"].as_str().unwrap().contains("Incorrect token audience"));
    assert!(text.trim_end().lines().last().unwrap().starts_with("FAIL"));
    assert_eq!(
        doc["verdict"].as_str().unwrap(),
        text.trim_end().lines().last().unwrap()
    );
}

#[test]
fn doctor_usage_errors_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.pem");
    std::fs::write(&empty, "").unwrap();
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_jwks-edge"))
            .args(args)
            .output()
            .unwrap()
    };
    let out = run(&["doctor", "https://idp.test", "--ca-file", empty.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("holds no certificate"));
    let out = run(&["doctor", "https://idp.test", "--token", "/nonexistent/token"]);
    assert_eq!(out.status.code(), Some(2));
    let out = run(&["doctor", "https://idp.test", "--resolve", "idp.test:443"]);
    assert_eq!(out.status.code(), Some(2), "a malformed --resolve is a usage error");
    let out = run(&["doctor"]);
    assert_eq!(out.status.code(), Some(2));
}

/// Runs `jwks-edge doctor ARGS` to completion off the runtime (the fake IdPs live on it):
/// exit code, stdout bytes, stderr. Killed after 30 s: the doctor bounds every step.
async fn doctor_cli(args: Vec<String>) -> (Option<i32>, Vec<u8>, String) {
    tokio::task::spawn_blocking(move || {
        use std::io::Read;
        use std::process::{Command, Stdio};
        let mut child = ChildProcess::spawn(
            Command::new(env!("CARGO_BIN_EXE_jwks-edge"))
                .arg("doctor")
                .args(&args)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped()),
        );
        let mut stdout_pipe = child.stdout.take().unwrap();
        let mut stderr_pipe = child.stderr.take().unwrap();
        let stdout = std::thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = stdout_pipe.read_to_end(&mut bytes);
            bytes
        });
        let stderr = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = stderr_pipe.read_to_string(&mut text);
            text
        });
        let status = child.exit_within_blocking(Duration::from_secs(30), &format!("jwks-edge doctor {args:?} to exit"));
        (status.code(), stdout.join().unwrap(), stderr.join().unwrap())
    })
    .await
    .unwrap()
}

/// The doctor's text and JSON outputs carry no byte a terminal would act on.
fn assert_terminal_safe(output: &[u8]) {
    let text = String::from_utf8(output.to_vec()).expect("the report is UTF-8");
    let bad: Vec<char> = text
        .chars()
        .filter(|c| (c.is_control() && *c != '\n') || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'))
        .collect();
    assert!(bad.is_empty(), "raw {bad:?} in\n{text}");
}

#[tokio::test]
async fn hostile_remote_strings_are_escaped_in_both_reports() {
    let signer = Signer::new("key-1", 2048);
    let (_ca, idp) = healthy(&signer).await;
    let kid = "\x1b[31mevil\r\x1b]0;owned\x07";
    let mut hostile = signer.jwk.clone();
    hostile["kid"] = json!(kid);
    hostile["alg"] = json!("RS256\u{9b}2J\u{202e}");
    // Twice, so that the duplicate-kid check names it.
    idp.serve_keys(json!({"keys": [hostile, hostile]}), &[]);
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(
        &token_file,
        signer.sign(
            &json!({"alg": "RS256", "kid": "\u{202e}gnp.exe\x1b[2J"}),
            &claims(&idp.issuer),
        ),
    )
    .unwrap();
    let args = |json: bool| {
        let mut args = idp.cli_args(&["--token", &token_file.display().to_string()]);
        if json {
            args.push("--json".into());
        }
        args
    };

    let (code, stdout, stderr) = doctor_cli(args(false)).await;
    assert_eq!(code, Some(1), "{stderr}");
    assert_terminal_safe(&stdout);
    let text = String::from_utf8(stdout).unwrap();
    let line = |id: &str| {
        text.lines()
            .find(|l| l.split_whitespace().nth(1) == Some(id))
            .unwrap_or_else(|| panic!("no {id} in\n{text}"))
            .to_owned()
    };
    assert!(
        line("jwks.kid").contains(r#""\x1b[31mevil\r\x1b]0;owned\x07""#),
        "{text}"
    );
    assert!(line("jwks.alg").contains(r#""RS256\u{009b}2J\u{202e}""#), "{text}");
    assert!(line("token.kid").contains(r#""\u{202e}gnp.exe\x1b[2J""#), "{text}");

    let (code, stdout, stderr) = doctor_cli(args(true)).await;
    assert_eq!(code, Some(1), "{stderr}");
    assert_terminal_safe(&stdout);
    // The JSON document is escaped for the terminal, yet parses as valid JSON.
    let doc: Value = serde_json::from_slice(&stdout).unwrap();
    let kid_check = doc["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == "jwks.kid")
        .unwrap();
    assert!(kid_check["message"].as_str().unwrap().contains("evil"));
}

#[tokio::test]
async fn a_plain_http_issuer_gets_every_problem_reported_in_one_run() {
    let idp = FakeIdp::serve(TcpListener::bind("127.0.0.1:0").await.unwrap()).unwrap();
    let port = idp.addr().port();
    let issuer = format!("http://{HOST}:{port}");
    let signer = Signer::new("key-1", 2048);
    // GitLab before jwks-edge: no-cache headers, and an issuer that is not this URL.
    let discovery = json!({
        "issuer": format!("https://{HOST}"),
        "jwks_uri": format!("{issuer}{KEYS}"),
        "response_types_supported": ["id_token"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
    });
    idp.put(
        "/.well-known/openid-configuration",
        Resource::json_with_idp_headers(discovery.to_string()),
    );
    idp.put(
        KEYS,
        Resource::json_with_idp_headers(json!({"keys": [signer.jwk]}).to_string()),
    );

    let (code, stdout, stderr) = doctor_cli(vec![
        issuer.clone(),
        "--resolve".into(),
        format!("{HOST}:{port}:127.0.0.1"),
        "--allow-private".into(),
        "--json".into(),
    ])
    .await;
    assert_eq!(code, Some(1), "{stderr}");
    let doc: Value = serde_json::from_slice(&stdout).unwrap();
    let status_of = |id: &str| {
        doc["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["id"] == id)
            .unwrap_or_else(|| panic!("no {id} in {doc:#}"))["status"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    assert_eq!(status_of("url.https"), "fail");
    assert_eq!(status_of("discovery.caching"), "warn");
    assert_eq!(status_of("discovery.issuer"), "fail");
    assert_eq!(status_of("discovery.jwks_uri"), "fail");
    assert_eq!(status_of("jwks.caching"), "warn");
    assert_eq!(status_of("jwks.count"), "pass");
    assert_eq!(status_of("tls.chain"), "skip");
    // Port 80 is not assumed for http: the doctor asked the IdP itself.
    assert_eq!(idp.hits("/.well-known/openid-configuration"), 1);
    assert_eq!(idp.hits(KEYS), 3);
}

#[tokio::test]
async fn extreme_token_times_through_the_cli_do_not_panic() {
    let signer = Signer::new("key-1", 2048);
    let (_ca, idp) = healthy(&signer).await;
    let dir = tempfile::tempdir().unwrap();
    let header = URL_SAFE_NO_PAD.encode(json!({"alg": "RS256", "kid": "key-1"}).to_string());
    let cases = [
        // exp u64::MAX, iat 1e300, nbf below i64::MIN: valid until the end of time, and
        // issued in the far future (a failure, not a panic).
        (
            r#""exp":18446744073709551615,"iat":1e300,"nbf":-9223372036854775809"#.to_owned(),
            Some(1),
        ),
        (format!(r#""exp":{},"iat":-1e300"#, i64::MAX), Some(0)),
    ];
    for (times, expected) in cases {
        let claims = format!(
            r#"{{"iss":"{}","sub":"s","aud":"sts.amazonaws.com",{times}}}"#,
            idp.issuer
        );
        // Signed over the raw claims text, so that the numbers reach the doctor as written.
        let input = format!("{header}.{}", URL_SAFE_NO_PAD.encode(&claims));
        let mut signature = vec![0u8; signer.pair.public().modulus_len()];
        signer
            .pair
            .sign(
                &ring::signature::RSA_PKCS1_SHA256,
                &ring::rand::SystemRandom::new(),
                input.as_bytes(),
                &mut signature,
            )
            .unwrap();
        let token_file = dir.path().join("token");
        std::fs::write(&token_file, format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature))).unwrap();
        let token = token_file.display().to_string();
        let args = idp.cli_args(&["--audience", "sts.amazonaws.com", "--token", &token]);
        let (code, stdout, stderr) = doctor_cli(args).await;
        let text = String::from_utf8(stdout).unwrap();
        assert!(!stderr.contains("panicked"), "{times}: {stderr}");
        assert_eq!(code, expected, "{times}:\n{text}\n{stderr}");
        let exp = text.lines().find(|l| l.contains("token.exp")).unwrap();
        assert!(
            exp.starts_with('✓') && exp.contains("after 9999-12-31T23:59:59Z"),
            "{exp}"
        );
        assert!(text.contains("token.signature"), "{text}");
    }
}

#[tokio::test]
async fn the_contract_flags_reach_the_json_report() {
    let signer = Signer::new("key-1", 2048);
    let (_ca, idp) = healthy(&signer).await;
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(
        &token_file,
        signer.sign(&json!({"alg": "RS256", "kid": "key-1"}), &claims(&idp.issuer)),
    )
    .unwrap();
    let provider = idp.issuer.trim_start_matches("https://").to_owned();
    let policy_file = dir.path().join("trust.json");
    let policy = json!({"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow",
        "Principal": {"Federated": format!("arn:aws:iam::123456789012:oidc-provider/{provider}")},
        "Action": ["sts:AssumeRoleWithWebIdentity", "sts:TagSession"],
        "Condition": {"StringEquals": {format!("{provider}:aud"): "sts.amazonaws.com"}},
    }]});
    std::fs::write(&policy_file, policy.to_string()).unwrap();
    let token = token_file.display().to_string();
    let policy = policy_file.display().to_string();
    let thumbprint = "AB".repeat(20);
    let args = idp.cli_args(&[
        "--token",
        &token,
        "--trust-policy",
        &policy,
        "--provider-audience",
        "other",
        "--provider-audience",
        "sts.amazonaws.com",
        "--thumbprint",
        &thumbprint,
        "--cloud",
        "all",
        "--json",
    ]);
    let (code, stdout, stderr) = doctor_cli(args).await;
    assert_eq!(code, Some(1), "{stderr}");
    let doc: Value = serde_json::from_slice(&stdout).unwrap();
    let find = |id: &str| {
        doc["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["id"] == id)
            .unwrap_or_else(|| panic!("no {id} in {doc:#}"))
            .clone()
    };
    assert_eq!(find("policy.provider_audience")["status"], "pass");
    assert_eq!(find("policy.statements")["status"], "pass");
    let thumb = find("tls.thumbprint");
    assert_eq!(thumb["status"], "fail", "{thumb}");
    assert!(thumb["sts_error"].as_str().unwrap().contains("thumbprint"));
    for id in [
        "tls.thumbprint_expiry",
        "azure.alg",
        "azure.issuer",
        "azure.audience",
        "gcp.tls",
        "gcp.audiences",
    ] {
        find(id);
    }

    // Malformed values are usage errors, exit 2.
    for bad in [
        idp.cli_args(&["--cloud", "oracle"]),
        idp.cli_args(&["--thumbprint", "not-hex"]),
        idp.cli_args(&["--trust-policy", "/nonexistent/trust.json"]),
    ] {
        let (code, _, stderr) = doctor_cli(bad).await;
        assert_eq!(code, Some(2), "{stderr}");
    }
}
