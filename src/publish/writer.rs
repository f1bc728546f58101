//! `write`: one document to one object, only when what the object holds differs, with
//! the headers the proxy would send and the content hash kept in the object's metadata.

use http::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE};
use object_store::path::Path;
use object_store::{Attribute, AttributeValue, Attributes, GetOptions, ObjectStore, PutOptions, PutPayload};

use crate::model::document::Document;
use crate::telemetry::publish::UploadOutcome;

/// The metadata entry holding the hex SHA-256 of the body (`x-amz-meta-sha256`,
/// `x-goog-meta-sha256`, `x-ms-meta-sha256`): compared before every write, so an
/// unchanged document costs one HEAD and no upload, and an object edited by hand (whose
/// upload tool drops or keeps a stale hash) is rewritten.
pub const HASH_METADATA: &str = "sha256";

#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("cannot read object {key}")]
    Head {
        key: String,
        #[source]
        source: object_store::Error,
    },
    #[error("cannot write object {key}")]
    Put {
        key: String,
        #[source]
        source: object_store::Error,
    },
}

/// What an object should hold: the body, its hash, and the headers a CDN in front of
/// the bucket passes on (the proxy's own `Content-Type` and `Cache-Control`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Wanted {
    pub body: bytes::Bytes,
    pub hash: String,
    pub content_type: String,
    pub cache_control: String,
}

impl Wanted {
    pub fn of(doc: &Document) -> Wanted {
        let text = |value: Option<&HeaderValue>| value.and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
        let digest = ring::digest::digest(&ring::digest::SHA256, &doc.body);
        Wanted {
            body: doc.body.clone(),
            hash: digest.as_ref().iter().map(|b| format!("{b:02x}")).collect(),
            content_type: text(doc.header(&CONTENT_TYPE)),
            cache_control: text(doc.header(&CACHE_CONTROL)),
        }
    }

    fn attributes(&self) -> Attributes {
        Attributes::from_iter([
            (Attribute::ContentType, AttributeValue::from(self.content_type.clone())),
            (
                Attribute::CacheControl,
                AttributeValue::from(self.cache_control.clone()),
            ),
            (
                Attribute::Metadata(HASH_METADATA.into()),
                AttributeValue::from(self.hash.clone()),
            ),
        ])
    }

    /// Whether an object with these attributes already holds this document.
    pub fn held_by(&self, held: &Attributes) -> bool {
        let is = |attribute: &Attribute, value: &str| held.get(attribute).is_some_and(|v| v.as_ref() == value);
        is(&Attribute::Metadata(HASH_METADATA.into()), &self.hash)
            && is(&Attribute::ContentType, &self.content_type)
            && is(&Attribute::CacheControl, &self.cache_control)
    }
}

/// Writes `wanted` to `key` unless the object already holds it: `Written` or `Unchanged`.
///
/// `last_written` is the hash this process last wrote there. It decides only when the
/// sink refuses to be read (credentials allowed to write objects, not to read them, as
/// a tight bucket policy grants): then a document is written once per process and again
/// when it changes, and drift cannot be seen.
pub async fn write(
    store: &dyn ObjectStore,
    key: &Path,
    wanted: &Wanted,
    last_written: Option<&str>,
) -> Result<UploadOutcome, WriteError> {
    let head = GetOptions {
        head: true,
        ..GetOptions::default()
    };
    match store.get_opts(key, head).await {
        Ok(found) if wanted.held_by(&found.attributes) && found.meta.size == wanted.body.len() as u64 => {
            return Ok(UploadOutcome::Unchanged)
        }
        Ok(_) | Err(object_store::Error::NotFound { .. }) => {}
        Err(object_store::Error::PermissionDenied { .. } | object_store::Error::Unauthenticated { .. })
            if last_written == Some(wanted.hash.as_str()) =>
        {
            return Ok(UploadOutcome::Unchanged)
        }
        // Write-only credentials; if they cannot write either, the write says so.
        Err(object_store::Error::PermissionDenied { .. } | object_store::Error::Unauthenticated { .. }) => {}
        Err(source) => {
            return Err(WriteError::Head {
                key: key.to_string(),
                source,
            })
        }
    }
    let options = PutOptions {
        attributes: wanted.attributes(),
        ..PutOptions::default()
    };
    store
        .put_opts(key, PutPayload::from_bytes(wanted.body.clone()), options)
        .await
        .map_err(|source| WriteError::Put {
            key: key.to_string(),
            source,
        })?;
    Ok(UploadOutcome::Written)
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use bytes::Bytes;

    use super::*;
    use crate::model::document::{CachePolicy, DocKind};

    fn doc(body: &'static [u8]) -> Document {
        let policy = CachePolicy {
            max_age: Duration::from_secs(300),
            refresh: Duration::from_secs(60),
            fetch_timeout: Duration::from_secs(5),
            stale_if_error: Duration::from_secs(86_400),
        };
        Document::new(
            DocKind::Jwks,
            Bytes::from_static(body),
            SystemTime::now(),
            None,
            &policy,
        )
    }

    #[test]
    fn an_object_holds_a_document_only_with_its_hash_and_both_headers() {
        let wanted = Wanted::of(&doc(b"{\"keys\":[]}"));
        assert_eq!(wanted.content_type, "application/json");
        assert_eq!(
            wanted.cache_control,
            "public, max-age=300, stale-while-revalidate=60, stale-if-error=86400"
        );
        assert_eq!(wanted.hash.len(), 64);
        assert!(wanted.held_by(&wanted.attributes()));
        let other = Wanted::of(&doc(b"{\"keys\":[{}]}"));
        assert!(!other.held_by(&wanted.attributes()), "other bytes");
        for dropped in [
            Attribute::ContentType,
            Attribute::CacheControl,
            Attribute::Metadata(HASH_METADATA.into()),
        ] {
            let mut held = wanted.attributes();
            held.remove(&dropped);
            assert!(!wanted.held_by(&held), "without {dropped:?}");
        }
        let mut retyped = wanted.attributes();
        retyped.insert(Attribute::ContentType, "binary/octet-stream".into());
        assert!(!wanted.held_by(&retyped));
    }

    #[tokio::test]
    async fn a_document_is_written_once_and_again_only_after_it_changed_or_drifted() {
        use object_store::memory::InMemory;
        use object_store::ObjectStoreExt;
        let store = InMemory::new();
        let key = Path::from("p/oauth/discovery/keys");
        let first = Wanted::of(&doc(b"{\"keys\":[]}"));
        assert_eq!(write(&store, &key, &first, None).await.unwrap(), UploadOutcome::Written);
        assert_eq!(
            write(&store, &key, &first, None).await.unwrap(),
            UploadOutcome::Unchanged
        );
        let held = store.get(&key).await.unwrap();
        assert!(first.held_by(&held.attributes));
        let second = Wanted::of(&doc(b"{\"keys\":[{}]}"));
        assert_eq!(
            write(&store, &key, &second, None).await.unwrap(),
            UploadOutcome::Written
        );
        assert_eq!(store.get(&key).await.unwrap().bytes().await.unwrap(), second.body);
        // Edited by hand (no hash, other type), then deleted by hand: repaired each time.
        store.put(&key, PutPayload::from_static(b"{}")).await.unwrap();
        assert_eq!(
            write(&store, &key, &second, None).await.unwrap(),
            UploadOutcome::Written
        );
        store.delete(&key).await.unwrap();
        assert_eq!(
            write(&store, &key, &second, None).await.unwrap(),
            UploadOutcome::Written
        );
        assert_eq!(
            write(&store, &key, &second, None).await.unwrap(),
            UploadOutcome::Unchanged
        );
    }
}
