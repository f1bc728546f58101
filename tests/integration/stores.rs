//! The object-store harness itself: each server starts, takes an object written by its
//! own client, gives it back with its headers, lists it, logs the write and deletes it.

use std::collections::BTreeMap;

use crate::support::{test_tool, written, Azurite, Bucket, NewObject, SeaweedFs, StoreEvent, StoredObject};

const KEY: &str = "prefix/.well-known/openid-configuration";
const LATER_KEY: &str = "prefix/oauth/discovery/keys";
const BODY: &[u8] = br#"{"issuer":"https://gitlab.example"}"#;

fn document() -> NewObject<'static> {
    NewObject {
        bytes: BODY,
        content_type: Some("application/json"),
        cache_control: Some("public, max-age=300"),
        metadata: &[("sha256", "abc123")],
    }
}

fn expected() -> StoredObject {
    StoredObject {
        bytes: BODY.to_vec(),
        content_type: Some("application/json".into()),
        cache_control: Some("public, max-age=300".into()),
        metadata: BTreeMap::from([("sha256".into(), "abc123".into())]),
    }
}

/// Starts empty, takes two objects by the server's own means, gives the first back with
/// its headers, lists both, logs both writes in order, and deletes one.
async fn round_trip(store: &impl Bucket) {
    assert!(store.keys().await.is_empty());

    store.put(KEY, document()).await;
    store
        .put(
            LATER_KEY,
            NewObject {
                bytes: b"{}",
                ..document()
            },
        )
        .await;

    assert_eq!(store.object(KEY).await, Some(expected()));
    assert_eq!(store.keys().await, [KEY, LATER_KEY]);
    assert_eq!(written(&store.events().await), [KEY, LATER_KEY]);

    store.delete(KEY).await;
    assert_eq!(store.object(KEY).await, None);
    assert_eq!(store.keys().await, [LATER_KEY]);
    assert_eq!(store.events().await.last(), Some(&StoreEvent::Deleted(KEY.into())));
}

#[tokio::test]
async fn seaweedfs_stores_an_object_with_its_headers_and_logs_writes_in_order() {
    let store = SeaweedFs::start().await;
    assert!(store.endpoint().starts_with("http://127.0.0.1:"));
    assert_eq!(store.url("prefix"), format!("s3://{}/prefix", store.bucket()));
    assert_eq!(store.region(), "us-east-1");
    assert!(store.env().iter().any(|(name, _)| name == "AWS_SECRET_ACCESS_KEY"));
    round_trip(&store).await;
}

#[tokio::test]
async fn azurite_stores_a_blob_with_its_headers_and_logs_writes_in_order() {
    let store = Azurite::start().await;
    assert!(store.endpoint().ends_with("/devstoreaccount1"));
    assert_eq!(store.url("prefix"), format!("az://{}/prefix", store.container()));
    assert!(store.env().iter().any(|(name, _)| name == "AZURE_STORAGE_ACCOUNT_KEY"));
    assert!(store
        .emulator_env()
        .iter()
        .any(|(name, _)| name == "AZURITE_BLOB_STORAGE_URL"));
    round_trip(&store).await;
}

#[test]
#[should_panic(expected = "run .ci/install-test-deps")]
fn a_missing_store_tool_fails_naming_the_install_script() {
    test_tool("venv/bin/no-such-tool");
}
