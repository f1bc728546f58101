//! `--cloud`: Azure's RS256-only, exact-issuer and audience rules, and GCP's public CA
//! and audience limits, each named with that cloud's error.

use super::*;

/// An ES256 key with its public JWK, signing compact JWS.
struct EcSigner {
    pair: ring::signature::EcdsaKeyPair,
    jwk: Value,
}

impl EcSigner {
    fn new(kid: &str) -> EcSigner {
        use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng).unwrap();
        let point = pair.public_key().as_ref();
        let jwk = json!({"kty": "EC", "crv": "P-256", "alg": "ES256", "use": "sig", "kid": kid,
                         "x": URL_SAFE_NO_PAD.encode(&point[1..33]), "y": URL_SAFE_NO_PAD.encode(&point[33..])});
        EcSigner { pair, jwk }
    }

    fn sign(&self, claims: &Value) -> String {
        let header = json!({"alg": "ES256", "kid": self.jwk["kid"]});
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let signature = self
            .pair
            .sign(&ring::rand::SystemRandom::new(), input.as_bytes())
            .unwrap();
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature.as_ref()))
    }
}

#[tokio::test]
async fn an_es256_token_under_azure_fails_naming_rs256() {
    let signer = Signer::new("key-1", 2048);
    let (_ca, idp) = healthy(&signer).await;
    let ec = EcSigner::new("ec-1");
    idp.serve_keys(
        json!({"keys": [signer.jwk, ec.jwk]}),
        &[("cache-control", "public, max-age=300")],
    );
    let mut azure_claims = claims(&idp.issuer);
    azure_claims["aud"] = json!("api://AzureADTokenExchange");
    let run = |token: String, cloud: doctor::Cloud| {
        let mut options = idp.options();
        options.token = Some(token);
        options.cloud = cloud;
        doctor::run(options)
    };

    let report = run(ec.sign(&azure_claims), doctor::Cloud::Azure).await;
    let text = report.render(false);
    // AWS accepts it: the signature verifies.
    assert_eq!(status(&report, "token.alg"), Status::Pass, "{text}");
    assert_eq!(status(&report, "token.signature"), Status::Pass, "{text}");
    let alg = report.get("azure.alg").unwrap();
    assert_eq!(alg.status, Status::Fail, "{text}");
    assert!(
        alg.message.contains("ES256") && alg.message.contains("only RS256"),
        "{}",
        alg.message
    );
    assert_eq!(alg.sts_error, Some(doctor::Sts::AzureSignature));
    assert!(alg.sts_error.unwrap().as_str().starts_with("AADSTS7000272"));
    assert_eq!(
        status(&report, "azure.keys"),
        Status::Pass,
        "the key set has an RSA key"
    );
    assert_eq!(status(&report, "azure.audience"), Status::Pass, "{text}");
    assert_eq!(status(&report, "azure.issuer"), Status::Pass, "{text}");
    // The test CA is private: Entra cannot fetch the documents.
    let tls = report.get("azure.tls").unwrap();
    assert_eq!(tls.status, Status::Fail, "{text}");
    assert!(tls.sts_error.unwrap().as_str().contains("AADSTS50166"));

    // An RS256 token for AWS's audience: the audience is the one failure Azure names.
    let report = run(
        signer.sign(&json!({"alg": "RS256", "kid": "key-1"}), &claims(&idp.issuer)),
        doctor::Cloud::Azure,
    )
    .await;
    assert_eq!(status(&report, "azure.alg"), Status::Pass);
    let audience = report.get("azure.audience").unwrap();
    assert_eq!(audience.status, Status::Fail, "{}", report.render(false));
    assert!(audience.message.contains("api://AzureADTokenExchange"));
    assert!(audience.sts_error.unwrap().as_str().starts_with("AADSTS70021"));

    // Under the default (aws), no Azure check runs.
    let report = run(ec.sign(&azure_claims), doctor::Cloud::Aws).await;
    assert!(report
        .checks
        .iter()
        .all(|c| !c.id.starts_with("azure.") && !c.id.starts_with("gcp.")));
}

#[tokio::test]
async fn a_self_signed_issuer_under_gcp_fails() {
    let signer = Signer::new("key-1", 2048);
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec![HOST.to_owned()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let issued = Issued {
        chain_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    };
    let idp = idp_trusting(&cert.pem(), &issued, &signer).await;
    let mut options = idp.options();
    options.token = Some(signer.sign(&json!({"alg": "RS256", "kid": "key-1"}), &claims(&idp.issuer)));
    options.cloud = doctor::Cloud::Gcp;
    options.provider_audiences = (0..11).map(|i| format!("aud-{i}")).collect();
    let report = doctor::run(options).await;
    let text = report.render(false);
    let tls = report.get("gcp.tls").unwrap();
    assert_eq!(tls.status, Status::Fail, "{text}");
    assert!(tls.message.contains("self-signed"), "{}", tls.message);
    assert_eq!(tls.sts_error, Some(doctor::Sts::GcpInvalidGrant));
    assert!(tls.sts_error.unwrap().as_str().starts_with("invalid_grant"));
    let audiences = report.get("gcp.audiences").unwrap();
    assert_eq!(audiences.status, Status::Fail, "{text}");
    assert!(audiences.message.contains("at most 10"), "{}", audiences.message);
    assert!(report.get("azure.alg").is_none(), "gcp runs GCP's checks only");

    // `all` runs both clouds' checks.
    let mut options = idp.options();
    options.cloud = doctor::Cloud::All;
    let report = doctor::run(options).await;
    assert!(report.get("gcp.tls").is_some() && report.get("azure.tls").is_some());
}

#[test]
fn the_readme_error_table_names_every_new_check() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let table: String = readme
        .lines()
        .filter(|l| l.starts_with("| "))
        .collect::<Vec<_>>()
        .join("\n");
    for message in [
        "AccessDenied: Not authorized to perform sts:AssumeRoleWithWebIdentity",
        "InvalidIdentityToken: Incorrect token audience",
        "doesn't match configured thumbprint",
        "AADSTS70021",
        "AADSTS7000272",
        "AADSTS50166",
        "AADSTS90061",
        "invalid_grant",
    ] {
        assert!(table.contains(message), "the README's error table lacks {message:?}");
    }
    for id in [
        "policy.provider_audience",
        "policy.statements",
        "policy.parse",
        "tls.thumbprint",
        "jwks.thumbprint",
        "tls.thumbprint_expiry",
        "azure.alg",
        "azure.keys",
        "azure.issuer",
        "azure.audience",
        "azure.tls",
        "gcp.tls",
        "gcp.audiences",
    ] {
        assert!(
            table.contains(&format!("`{id}`")),
            "the README's error table lacks `{id}`"
        );
    }
}
