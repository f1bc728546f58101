//! `Layout`: which object each of an issuer's documents goes to in a sink, key set first,
//! and `Claims`, which keeps two issuers of one sink off the same object.

use std::collections::HashMap;
use std::sync::Mutex;

use object_store::path::Path;

use crate::config::{Issuer, Publish};
use crate::model::document::{DocKind, Document};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LayoutError {
    #[error("the discovery document names no key set")]
    NoKeySet,
    #[error("object name {0:?} is not usable in object storage")]
    BadKey(String),
    #[error("object {key:?} is already written for issuer {other:?}: publish them to different prefixes")]
    Taken { key: String, other: String },
}

/// One object to write: the document kind and its object key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Object {
    pub kind: DocKind,
    pub key: Path,
}

/// The objects of one issuer in one sink, in the order they are written: the key set
/// first, so that no relying party ever reads a discovery document whose `jwks_uri`
/// points at a key set not yet there (or an older one without the new key).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    pub objects: [Object; 2],
}

impl Layout {
    /// The layout for the issuer's current discovery document, which says where the
    /// key set is published (`jwks.public_path`).
    pub fn of(sink: &Publish, issuer: &Issuer, discovery: &Document) -> Result<Layout, LayoutError> {
        let jwks = discovery.jwks.as_ref().ok_or(LayoutError::NoKeySet)?;
        Ok(Layout {
            objects: [
                object(sink, DocKind::Jwks, &jwks.public_path)?,
                object(sink, DocKind::Discovery, &issuer.discovery_path())?,
            ],
        })
    }
}

fn object(sink: &Publish, kind: DocKind, public_path: &str) -> Result<Object, LayoutError> {
    let key = sink.object_key(public_path);
    // Parsed, not built segment by segment: a path object_store would re-encode is
    // refused rather than written where no CDN URL reaches it.
    match Path::parse(&key) {
        Ok(path) if path.as_ref() == key && !key.is_empty() => Ok(Object { kind, key: path }),
        _ => Err(LayoutError::BadKey(key)),
    }
}

/// The objects each issuer of one sink writes, so that a key set path learned from a
/// discovery document (unknown when the config was checked) never overwrites another
/// issuer's object. Shared by the sink's publishers; the lock is never held across an await.
#[derive(Debug, Default)]
pub struct Claims {
    /// Object key → (issuer index, issuer name).
    owners: Mutex<HashMap<String, (usize, String)>>,
}

impl Claims {
    /// Records `layout` as `issuer`'s, releasing its previous objects, unless another
    /// issuer holds one of them.
    pub fn claim(&self, issuer: usize, name: &str, layout: &Layout) -> Result<(), LayoutError> {
        let mut owners = self.owners.lock().unwrap_or_else(|e| e.into_inner());
        for object in &layout.objects {
            if let Some((other, other_name)) = owners.get(object.key.as_ref()) {
                if *other != issuer {
                    return Err(LayoutError::Taken {
                        key: object.key.to_string(),
                        other: other_name.clone(),
                    });
                }
            }
        }
        owners.retain(|_, (owner, _)| *owner != issuer);
        for object in &layout.objects {
            owners.insert(object.key.to_string(), (issuer, name.to_owned()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path as FsPath;
    use std::time::{Duration, SystemTime};

    use bytes::Bytes;

    use super::*;
    use crate::config::Config;
    use crate::model::document::CachePolicy;
    use crate::model::jwks_target::{JwksShape, JwksTarget};

    fn config(url: &str) -> Config {
        let text = format!(
            "[[issuer]]\nname = \"gitlab\"\npublic_url = \"https://gitlab.example.com\"\nupstream = \"http://gitlab:8080\"\n\
             [[issuer]]\nname = \"prod\"\npublic_url = \"https://auth.example.com/realms/prod\"\nupstream = \"http://kc:8080/realms/prod\"\n\
             [[publish]]\nurl = {url:?}\n"
        );
        Config::from_toml(&text, FsPath::new("/")).unwrap()
    }

    fn discovery(public_path: &str) -> Document {
        let policy = CachePolicy {
            max_age: Duration::from_secs(300),
            refresh: Duration::from_secs(60),
            fetch_timeout: Duration::from_secs(5),
            stale_if_error: Duration::from_secs(3600),
        };
        let jwks = JwksTarget {
            shape: JwksShape::UnderUpstream,
            public_url: format!("https://example.com{public_path}"),
            public_path: public_path.to_owned(),
            upstream_url: format!("http://upstream{public_path}"),
        };
        Document::new(
            DocKind::Discovery,
            Bytes::from_static(b"{}"),
            SystemTime::now(),
            Some(jwks),
            &policy,
        )
    }

    fn keys(layout: &Layout) -> Vec<(DocKind, String)> {
        layout.objects.iter().map(|o| (o.kind, o.key.to_string())).collect()
    }

    #[test]
    fn objects_are_the_prefix_and_the_public_path_key_set_first() {
        for (url, prefix) in [("s3://b/oidc/", "oidc/"), ("gs://b/a/b", "a/b/"), ("az://c", "")] {
            let config = config(url);
            let sink = &config.publish[0];
            let gitlab = Layout::of(sink, &config.issuers[0], &discovery("/oauth/discovery/keys")).unwrap();
            assert_eq!(
                keys(&gitlab),
                [
                    (DocKind::Jwks, format!("{prefix}oauth/discovery/keys")),
                    (DocKind::Discovery, format!("{prefix}.well-known/openid-configuration")),
                ],
                "{url}"
            );
            let realm = Layout::of(
                sink,
                &config.issuers[1],
                &discovery("/realms/prod/protocol/openid-connect/certs"),
            )
            .unwrap();
            assert_eq!(
                keys(&realm),
                [
                    (
                        DocKind::Jwks,
                        format!("{prefix}realms/prod/protocol/openid-connect/certs")
                    ),
                    (
                        DocKind::Discovery,
                        format!("{prefix}realms/prod/.well-known/openid-configuration")
                    ),
                ]
            );
        }
    }

    #[test]
    fn a_path_object_storage_would_rename_is_refused() {
        let config = config("s3://b/p");
        let sink = &config.publish[0];
        for path in ["/keys//x", "/a/../keys", "/"] {
            assert!(
                matches!(
                    Layout::of(sink, &config.issuers[0], &discovery(path)),
                    Err(LayoutError::BadKey(_))
                ),
                "{path}"
            );
        }
        let mut no_jwks = discovery("/k");
        no_jwks.jwks = None;
        assert_eq!(
            Layout::of(sink, &config.issuers[0], &no_jwks),
            Err(LayoutError::NoKeySet)
        );
    }

    #[test]
    fn a_learned_key_set_path_cannot_take_another_issuers_object() {
        let config = config("s3://b");
        let sink = &config.publish[0];
        let claims = Claims::default();
        let gitlab = Layout::of(sink, &config.issuers[0], &discovery("/keys")).unwrap();
        claims.claim(0, "gitlab", &gitlab).unwrap();
        let clash = Layout::of(sink, &config.issuers[1], &discovery("/keys")).unwrap();
        assert_eq!(
            claims.claim(1, "prod", &clash),
            Err(LayoutError::Taken {
                key: "keys".into(),
                other: "gitlab".into()
            })
        );
        // Once gitlab's key set moves, its old object is free.
        let moved = Layout::of(sink, &config.issuers[0], &discovery("/oauth/keys")).unwrap();
        claims.claim(0, "gitlab", &moved).unwrap();
        claims.claim(1, "prod", &clash).unwrap();
        claims.claim(1, "prod", &clash).unwrap();
    }
}
