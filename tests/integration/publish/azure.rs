//! `[[publish]]` to Azure Blob, on Azurite: the core cases with `publish --once`.

use super::*;

#[tokio::test]
async fn publish_once_to_azure_blob_writes_what_the_proxy_serves_key_set_first_and_only_what_changed() {
    let store = Azurite::start().await;
    core_cases(&store).await;
}
