//! `jwks-edge demo`: a GitLab-shaped IdP on loopback with the proxy in front of it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jwks_edge::app::{App, Listeners};
use jwks_edge::config::Config;
use jwks_edge::edge::access_log::AccessLog;
use jwks_edge::fake_idp::{FakeIdp, Resource};
use serde_json::json;
use tokio::net::TcpListener;

/// A public EC P-256 key as a JWK, with its RFC 7638 thumbprint as `kid`.
fn fresh_ec_jwk() -> anyhow::Result<serde_json::Value> {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).context("cannot generate a key")?;
    // Uncompressed point: 0x04 || x (32 bytes) || y (32 bytes).
    let point = key.public_key_raw();
    anyhow::ensure!(
        point.len() == 65 && point[0] == 4,
        "unexpected P-256 public key encoding"
    );
    let x = URL_SAFE_NO_PAD.encode(&point[1..33]);
    let y = URL_SAFE_NO_PAD.encode(&point[33..]);
    let thumbprint_input = format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#);
    let kid = URL_SAFE_NO_PAD.encode(ring::digest::digest(&ring::digest::SHA256, thumbprint_input.as_bytes()));
    Ok(json!({"kty": "EC", "kid": kid, "use": "sig", "alg": "ES256", "crv": "P-256", "x": x, "y": y}))
}

/// GitLab's discovery document for an instance whose `external_url` is internal: every
/// endpoint and the key set on the IdP's own address, `issuer` already public.
fn gitlab_discovery(issuer: &str, idp: &str) -> serde_json::Value {
    json!({
        "issuer": issuer,
        "authorization_endpoint": format!("{idp}/oauth/authorize"),
        "token_endpoint": format!("{idp}/oauth/token"),
        "revocation_endpoint": format!("{idp}/oauth/revoke"),
        "introspection_endpoint": format!("{idp}/oauth/introspect"),
        "userinfo_endpoint": format!("{idp}/oauth/userinfo"),
        "jwks_uri": format!("{idp}/oauth/discovery/keys"),
        "scopes_supported": ["api", "read_api", "read_user", "openid", "profile", "email"],
        "response_types_supported": ["code"],
        "response_modes_supported": ["query", "fragment", "form_post"],
        "grant_types_supported": ["authorization_code", "client_credentials", "refresh_token"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["ES256"],
        "claim_types_supported": ["normal"],
        "claims_supported": ["iss", "sub", "aud", "exp", "iat", "project_path", "ref", "ref_type"],
        "code_challenge_methods_supported": ["plain", "S256"]
    })
}

/// Removes the demo's temporary directory when the demo ends.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn write_certificate(dir: &Path) -> anyhow::Result<(PathBuf, PathBuf)> {
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
        .context("cannot generate the demo certificate")?;
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    jwks_edge::cache::files::write_atomically(&cert, certified.cert.pem().as_bytes(), false)?;
    jwks_edge::cache::files::write_atomically(&key, certified.key_pair.serialize_pem().as_bytes(), true)?;
    Ok((cert, key))
}

pub async fn run(
    listen: SocketAddr,
    admin_listen: SocketAddr,
    listen_plain: Option<SocketAddr>,
    access_log: AccessLog,
) -> anyhow::Result<()> {
    let bind = |addr: SocketAddr| async move {
        TcpListener::bind(addr).await.with_context(|| {
            format!("cannot listen on {addr} (choose another with --listen/--admin-listen, port 0 picks a free one)")
        })
    };
    let https = bind(listen).await?;
    let admin = bind(admin_listen).await?;
    let plain = match listen_plain {
        Some(addr) => Some(bind(addr).await?),
        None => None,
    };
    let plain_line = match &plain {
        Some(listener) => format!("listen_plain = \"{}\"\n", listener.local_addr()?),
        None => String::new(),
    };
    let idp = FakeIdp::serve(bind("127.0.0.1:0".parse()?).await?)?;
    let port = https.local_addr()?.port();
    let admin_addr = admin.local_addr()?;
    let public_url = format!("https://localhost:{port}");

    // A fresh private directory: a predictable name in a shared /tmp could be planted
    // beforehand, with links where the key is written.
    let temp = std::env::temp_dir();
    let dir = TempDir(
        jwks_edge::cache::files::create_unique_private_dir(&temp, "jwks-edge-demo-")
            .with_context(|| format!("cannot create a directory in {}", temp.display()))?,
    );
    let (cert, key) = write_certificate(&dir.0)?;

    let idp_url = idp.base_url();
    let discovery = gitlab_discovery(&public_url, &idp_url);
    let jwks = json!({"keys": [fresh_ec_jwk()?, fresh_ec_jwk()?]});
    idp.put(
        "/.well-known/openid-configuration",
        Resource::json_with_idp_headers(serde_json::to_vec(&discovery)?),
    );
    idp.put(
        "/oauth/discovery/keys",
        Resource::json_with_idp_headers(serde_json::to_vec(&jwks)?),
    );

    let toml = format!(
        "[server]\nlisten = \"{https}\"\n{plain_line}deadline = \"2s\"\n\n[server.tls]\ncert = {cert:?}\nkey = {key:?}\n\n\
         [admin]\nlisten = \"{admin_addr}\"\n\n[cache]\nmax_age = \"5m\"\nrefresh = \"30s\"\n\n\
         [[issuer]]\nname = \"demo-gitlab\"\npublic_url = \"{public_url}\"\nupstream = \"{idp_url}\"\n",
        https = https.local_addr()?,
        cert = cert.display().to_string(),
        key = key.display().to_string(),
    );
    let config = Config::from_toml(&toml, &dir.0).context("the demo configuration is invalid")?;
    let mut app = App::new(config).context("cannot start the proxy")?;
    app.set_access_log(access_log);

    let ca = cert.display();
    println!("jwks-edge demo: a GitLab-shaped IdP on {idp_url}, and jwks-edge in front of it on {public_url}");
    println!("(self-signed certificate for localhost in {ca}; keys are fresh ES256 keys)");
    println!();
    println!("The IdP as it answers: no-cache, Pragma, Set-Cookie, and an internal jwks_uri:");
    println!("  curl -si {idp_url}/.well-known/openid-configuration");
    println!("The same document through jwks-edge: cacheable headers, jwks_uri on the public URL:");
    println!("  curl -si --cacert {ca} {public_url}/.well-known/openid-configuration");
    println!("The key set through jwks-edge, then again with its ETag for a 304:");
    println!("  curl -si --cacert {ca} {public_url}/oauth/discovery/keys");
    println!(
        "  curl -si --cacert {ca} -H \"If-None-Match: $(curl -s -o /dev/null -w '%header{{etag}}' --cacert {ca} {public_url}/oauth/discovery/keys)\" {public_url}/oauth/discovery/keys"
    );
    println!("Anything else is refused:");
    println!("  curl -si --cacert {ca} {public_url}/users/sign_in");
    if let Some(listener) = &plain {
        println!("Plain HTTP, as behind a TLS load balancer (the Host header selects the issuer):");
        println!(
            "  curl -si -H 'Host: localhost' http://{}/oauth/discovery/keys",
            listener.local_addr()?
        );
    }
    println!("Per-issuer readiness:");
    println!("  curl -s http://{admin_addr}/readyz");
    println!();
    println!("Press Ctrl-C to stop.");

    let listeners = Listeners {
        https: Some(https),
        plain,
        admin: Some(admin),
    };
    app.run(listeners, crate::shutdown::signal()).await?;
    drop(idp);
    Ok(())
}
