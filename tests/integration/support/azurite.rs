//! Azurite on loopback as the Azure Blob server: its blob service, one container, and
//! Microsoft's Python SDK (support/azure_blob.py) to write, read back, list and delete.
//!
//! The write order comes from Azurite's access log (one line per request, in the order
//! the replies completed): a blob's `Last-Modified` has only whole seconds.

use std::collections::BTreeMap;
use std::fs::File;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use base64::Engine as _;

use super::stores::{clear_cloud_env, run_tool, test_tool, NewObject, StoreEvent, StoredObject, STORE_START_TIMEOUT};
use super::{eventually, ChildProcess, Conn, Transport, Wait};

/// Azurite's well-known development account and key (public, in Microsoft's docs).
pub const AZURITE_ACCOUNT: &str = "devstoreaccount1";
pub const AZURITE_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";
const CONTAINER: &str = "jwks-edge";
/// What Azurite prints once it listens; the port follows.
const LISTENING: &str = "successfully listens on http://";

/// A running Azurite blob service with one empty container; killed when dropped, its
/// data and access log in a temporary directory.
pub struct Azurite {
    /// Dropped first: the process goes before its directory.
    _child: ChildProcess,
    addr: SocketAddr,
    access_log: PathBuf,
    /// Numbers the marker requests `events` makes, so each is found once.
    markers: AtomicU32,
    dir: tempfile::TempDir,
}

impl Azurite {
    /// Starts Azurite on an ephemeral port (it binds port 0 itself and logs the port),
    /// waits (bounded) until it answers, and creates the container. Fails the test naming
    /// `.ci/install-test-deps` when Azurite or the SDK is missing.
    pub async fn start() -> Azurite {
        let azurite = test_tool("npm/node_modules/.bin/azurite-blob");
        test_tool("venv/bin/python");
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir(&data).unwrap();
        let access_log = dir.path().join("access.log");
        let child = ChildProcess::spawn(
            Command::new(azurite)
                .current_dir(dir.path())
                .args(["--blobHost", "127.0.0.1", "--blobPort", "0", "--location"])
                .arg(&data)
                // Telemetry would try to reach the internet.
                .args(["--disableTelemetry", "--skipApiVersionCheck"])
                .stdin(Stdio::null())
                .stdout(File::create(&access_log).unwrap())
                .stderr(File::create(dir.path().join("stderr.log")).unwrap()),
        );
        let addr = Wait::up_to(STORE_START_TIMEOUT)
            .every(Duration::from_millis(50))
            .until("Azurite to log its port", async || listening_addr(&access_log))
            .await;
        let azurite = Azurite {
            _child: child,
            addr,
            access_log,
            markers: AtomicU32::new(0),
            dir,
        };
        azurite.blob(&["create-container"]).await;
        azurite
    }

    /// The account's blob endpoint, for `[[publish]] endpoint`: object_store's
    /// `with_endpoint` takes it whole, the account as the first path segment.
    pub fn endpoint(&self) -> String {
        format!("http://{}/{AZURITE_ACCOUNT}", self.addr)
    }

    pub fn container(&self) -> &str {
        CONTAINER
    }

    /// `az://container/prefix` (`prefix` without slashes around it; empty for none).
    pub fn url(&self, prefix: &str) -> String {
        format!("az://{CONTAINER}/{prefix}")
    }

    /// What object_store's `MicrosoftAzureBuilder::from_env` reads for a shared-key
    /// account on a plain-HTTP endpoint (the endpoint itself goes in the config).
    pub fn env(&self) -> Vec<(String, String)> {
        [
            ("AZURE_STORAGE_ACCOUNT_NAME", AZURITE_ACCOUNT),
            ("AZURE_STORAGE_ACCOUNT_KEY", AZURITE_KEY),
            ("AZURE_ALLOW_HTTP", "true"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .to_vec()
    }

    /// The alternative: object_store's emulator mode, where the URL comes from
    /// `AZURITE_BLOB_STORAGE_URL` and any configured endpoint is ignored.
    pub fn emulator_env(&self) -> Vec<(String, String)> {
        vec![
            ("AZURE_STORAGE_USE_EMULATOR".to_string(), "true".to_string()),
            ("AZURITE_BLOB_STORAGE_URL".to_string(), format!("http://{}", self.addr)),
        ]
    }

    /// Writes a blob with Microsoft's SDK, as another client would.
    pub async fn put(&self, key: &str, object: NewObject<'_>) {
        let body = self
            .dir
            .path()
            .join(format!("put-{}", self.markers.fetch_add(1, Ordering::Relaxed)));
        std::fs::write(&body, object.bytes).unwrap();
        let metadata: BTreeMap<&str, &str> = object.metadata.iter().copied().collect();
        let options = serde_json::json!({
            "content_type": object.content_type,
            "cache_control": object.cache_control,
            "metadata": metadata,
        });
        self.blob(&["put", key, body.to_str().unwrap(), &options.to_string()])
            .await;
    }

    /// The blob at `key`, or `None` when there is none.
    pub async fn object(&self, key: &str) -> Option<StoredObject> {
        let output = self.blob(&["get", key]).await;
        let found: serde_json::Value = serde_json::from_slice(&output).unwrap();
        if found.is_null() {
            return None;
        }
        let text = |name: &str| found[name].as_str().map(str::to_string);
        let metadata = found["metadata"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(k, v)| (k.to_ascii_lowercase(), v.as_str().unwrap_or_default().to_string()))
            .collect();
        Some(StoredObject {
            bytes: base64::engine::general_purpose::STANDARD
                .decode(found["body"].as_str().unwrap())
                .unwrap(),
            content_type: text("content_type"),
            cache_control: text("cache_control"),
            metadata,
        })
    }

    /// Every blob name in the container, sorted.
    pub async fn keys(&self) -> Vec<String> {
        serde_json::from_slice(&self.blob(&["list"]).await).unwrap()
    }

    /// Deletes the blob at `key`, as an operator would by hand.
    pub async fn delete(&self, key: &str) {
        self.blob(&["delete", key]).await;
    }

    /// Every successful write and delete of a blob in the container, in order, from the
    /// access log. A marker request is logged first, so every reply sent before this call
    /// is in the log when it is read.
    pub async fn events(&self) -> Vec<StoreEvent> {
        let marker = format!(
            "/{AZURITE_ACCOUNT}/{CONTAINER}/.jwks-edge-harness-marker-{}",
            self.markers.fetch_add(1, Ordering::Relaxed)
        );
        let host = self.addr.to_string();
        // Anonymous: answered 404, which is all the marker needs.
        Conn::open(self.addr, &Transport::Plain).await.get(&host, &marker).await;
        let log = eventually(
            Duration::from_secs(10),
            "Azurite to log the marker request",
            async || {
                let log = std::fs::read_to_string(&self.access_log).unwrap_or_default();
                log.contains(&marker).then_some(log)
            },
        )
        .await;
        let prefix = format!("/{AZURITE_ACCOUNT}/{CONTAINER}/");
        log.lines().filter_map(|line| access_event(line, &prefix)).collect()
    }

    /// Runs support/azure_blob.py with this account and container; its stdout.
    async fn blob(&self, args: &[&str]) -> Vec<u8> {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/integration/support/azure_blob.py");
        let connection = format!(
            "DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};AccountKey={AZURITE_KEY};\
             BlobEndpoint={};",
            self.endpoint()
        );
        let mut command = Command::new(test_tool("venv/bin/python"));
        clear_cloud_env(&mut command);
        command.arg(script).args([&connection, CONTAINER]).args(args);
        run_tool(command, &format!("azure_blob.py {}", args[0])).await.stdout
    }
}

/// The address in Azurite's "successfully listens on http://127.0.0.1:PORT" line.
fn listening_addr(log: &Path) -> Option<SocketAddr> {
    let log = std::fs::read_to_string(log).ok()?;
    let rest = &log[log.find(LISTENING)? + LISTENING.len()..];
    rest.lines().next()?.trim().parse().ok()
}

/// One access-log line as a write or delete of a blob under `prefix`:
/// `127.0.0.1 - - [date] "PUT /account/container/key?query HTTP/1.1" 201 -`.
/// Put Block (`comp=block`) only stages data; the blob changes at Put Block List.
fn access_event(line: &str, prefix: &str) -> Option<StoreEvent> {
    let request = line.split('"').nth(1)?;
    let status: u16 = line.split('"').nth(2)?.split_whitespace().next()?.parse().ok()?;
    if !(200..300).contains(&status) {
        return None;
    }
    let mut parts = request.split(' ');
    let (method, target) = (parts.next()?, parts.next()?);
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let key = super::stores::percent_decode(path.strip_prefix(prefix)?);
    let comp = query.split('&').find_map(|pair| pair.strip_prefix("comp="));
    match (method, comp) {
        ("PUT", None | Some("blocklist" | "properties" | "metadata")) => Some(StoreEvent::Written(key)),
        ("DELETE", None) => Some(StoreEvent::Deleted(key)),
        _ => None,
    }
}
