//! The key set settings: how many keys a set may hold, and an issuer's key policy. What
//! they do to a key set is `upstream::keyset`'s.

/// The most keys a published set may hold (`cache.max_rsa_keys`, `cache.max_ec_keys`,
/// `cache.max_keys`). The default is AWS STS's limit: at most 100 RSA and 100 EC keys, or
/// it cannot find the token's key. Read by the key set step, which refuses an upstream set
/// over it, and by retention, which drops the oldest retained keys to stay under it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeyCap {
    pub rsa: usize,
    pub ec: usize,
    /// All keys together, whatever their type; `None` is no such limit.
    pub total: Option<usize>,
}

impl Default for KeyCap {
    fn default() -> KeyCap {
        KeyCap {
            rsa: 100,
            ec: 100,
            total: None,
        }
    }
}

/// `[[issuer]] publish_keys`: which keys of the upstream set are published.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PublishKeys {
    /// Every key, as the upstream publishes it.
    #[default]
    All,
    /// Signing keys only: encryption keys (`use: enc`, a JWE `alg`, X25519/X448) are
    /// dropped. Keycloak's `RSA-OAEP` key breaks clients that take every RSA key of the
    /// set for a signing key.
    Signing,
}

impl PublishKeys {
    pub fn as_str(self) -> &'static str {
        match self {
            PublishKeys::All => "all",
            PublishKeys::Signing => "signing",
        }
    }
}

/// One issuer's key policy (`publish_keys`, `fill_key_use`, `fill_key_alg`). The default
/// changes nothing, so the upstream's bytes are published as they are.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KeyPolicy {
    pub publish: PublishKeys,
    /// A signing key without `use` (and without `key_ops`, which RFC 7517 §4.3 says not
    /// to combine with it) gets `"use": "sig"`.
    pub fill_use: bool,
    /// A signing key without `alg` gets the one its type implies (see `derived_alg`).
    pub fill_alg: bool,
}
