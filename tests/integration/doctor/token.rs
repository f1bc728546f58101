//! What the doctor finds in a token: audience, times, kid, signature, algorithm.

use super::*;

#[tokio::test]
async fn token_failures_are_detected() {
    let signer = Signer::new("key-1", 2048);
    let (_ca, idp) = healthy(&signer).await;
    let header = json!({"alg": "RS256", "kid": "key-1"});
    let check = |token: String| {
        let mut options = idp.options();
        options.token = Some(token);
        doctor::run(options)
    };

    let mut wrong_aud = claims(&idp.issuer);
    wrong_aud["aud"] = json!("https://gitlab.example.com");
    assert_eq!(
        status(&check(signer.sign(&header, &wrong_aud)).await, "token.aud"),
        Status::Fail
    );

    let mut expired = claims(&idp.issuer);
    expired["exp"] = json!(expired["iat"].as_i64().unwrap() - 3600);
    assert_eq!(
        status(&check(signer.sign(&header, &expired)).await, "token.exp"),
        Status::Fail
    );

    let good = signer.sign(&header, &claims(&idp.issuer));
    let (rest, _) = good.rsplit_once('.').unwrap();
    let mut tampered_claims = claims(&idp.issuer);
    tampered_claims["sub"] = json!("someone-else");
    let (_, sig) = good.rsplit_once('.').unwrap();
    let tampered = format!(
        "{}.{}.{sig}",
        rest.split('.').next().unwrap(),
        URL_SAFE_NO_PAD.encode(tampered_claims.to_string())
    );
    assert_eq!(status(&check(tampered).await, "token.signature"), Status::Fail);

    let unknown = signer.sign(&json!({"alg": "RS256", "kid": "rotated-away"}), &claims(&idp.issuer));
    let report = check(unknown).await;
    assert_eq!(status(&report, "token.kid"), Status::Fail);
    assert!(report.get("token.kid").unwrap().message.contains("rotated-away"));

    let mut wrong_iss = claims(&idp.issuer);
    wrong_iss["iss"] = json!("https://gitlab.internal");
    assert_eq!(
        status(&check(signer.sign(&header, &wrong_iss)).await, "token.iss"),
        Status::Fail
    );

    assert_eq!(status(&check("not a token".into()).await, "token.decode"), Status::Fail);
}

#[tokio::test]
async fn okp_keys_are_counted_and_an_eddsa_token_is_explained_as_refused_by_sts() {
    use ring::signature::{Ed25519KeyPair, KeyPair};
    let signer = Signer::new("rsa-1", 2048);
    let (_ca, idp) = healthy(&signer).await;
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&ring::rand::SystemRandom::new()).unwrap();
    let ed = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
    let okp = json!({"kty": "OKP", "crv": "Ed25519", "kid": "ed-1", "alg": "EdDSA", "use": "sig",
                     "x": URL_SAFE_NO_PAD.encode(ed.public_key().as_ref())});
    idp.serve_keys(
        json!({"keys": [signer.jwk, okp]}),
        &[("cache-control", "public, max-age=300")],
    );
    let header = json!({"alg": "EdDSA", "kid": "ed-1"});
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims(&idp.issuer).to_string())
    );
    let token = format!("{input}.{}", URL_SAFE_NO_PAD.encode(ed.sign(input.as_bytes()).as_ref()));
    let mut options = idp.options();
    options.token = Some(token.clone());
    let report = doctor::run(options).await;
    let text = report.render(false);

    let count = report.get("jwks.count").unwrap();
    assert_eq!(count.status, Status::Pass, "{text}");
    assert!(
        count.message.contains("2 keys: 1 RSA, 0 EC, 1 OKP"),
        "{}",
        count.message
    );
    let alg = report.get("token.alg").unwrap();
    assert_eq!(alg.status, Status::Fail, "{text}");
    assert!(
        alg.message.contains("EdDSA") && alg.message.contains("not accepted by AWS STS"),
        "{}",
        alg.message
    );
    assert_eq!(status(&report, "token.signature"), Status::Pass, "{text}");
    assert!(
        !text.contains("altered"),
        "a valid EdDSA signature is not a tampered token:\n{text}"
    );

    // A tampered EdDSA signature is still caught.
    let mut options = idp.options();
    let (head, _) = token.rsplit_once('.').unwrap();
    options.token = Some(format!("{head}.{}", URL_SAFE_NO_PAD.encode([7u8; 64])));
    assert_eq!(status(&doctor::run(options).await, "token.signature"), Status::Fail);
}
