//! What the object-store servers have in common for the tests: where their tools are,
//! what an object looks like read back, and the order objects were written in.
//!
//! The servers themselves are `SeaweedFs` (S3, in `seaweedfs`) and `Azurite` (Azure Blob,
//! in `azurite`). There is no GCS server: object_store's GCS client speaks the XML API,
//! which neither PyPI emulator (gcp-storage-emulator, fake-gcs-server) implements for
//! writes (see docs/publish.md and the closing note).
//!
//! Tools live in the project-local prefix `target/test-tools/` that
//! `.ci/install-test-deps` fills: `venv/bin/{weed,aws,python}` and
//! `npm/node_modules/.bin/azurite-blob`. Nothing is looked up on PATH, so the pinned
//! versions are the ones run.

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::Duration;

/// How long a server may take to answer after it was started, on a loaded machine.
pub const STORE_START_TIMEOUT: Duration = Duration::from_secs(60);

/// One call of a server's own command-line tool or official client may take this long.
pub const TOOL_TIMEOUT: Duration = Duration::from_secs(30);

/// An object as the server holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredObject {
    pub bytes: Vec<u8>,
    pub content_type: Option<String>,
    pub cache_control: Option<String>,
    /// User metadata, names lowercased and without the protocol's prefix
    /// (`x-amz-meta-`, `x-ms-meta-`).
    pub metadata: BTreeMap<String, String>,
}

/// What happened to one object, in the order the server did it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreEvent {
    Written(String),
    Deleted(String),
}

/// An object to write by the server's own means (not by jwks-edge).
#[derive(Clone, Debug, Default)]
pub struct NewObject<'a> {
    pub bytes: &'a [u8],
    pub content_type: Option<&'a str>,
    pub cache_control: Option<&'a str>,
    pub metadata: &'a [(&'a str, &'a str)],
}

/// Keys written, in order, from a server's events.
pub fn written(events: &[StoreEvent]) -> Vec<String> {
    events
        .iter()
        .filter_map(|event| match event {
            StoreEvent::Written(key) => Some(key.clone()),
            StoreEvent::Deleted(_) => None,
        })
        .collect()
}

/// The project-local prefix `.ci/install-test-deps` installs the store tools into.
pub fn test_tools_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/test-tools")
}

/// A tool under `test_tools_dir()`; fails the test, naming the install script, when it
/// is not there.
pub fn test_tool(relative: &str) -> PathBuf {
    let path = test_tools_dir().join(relative);
    if !path.is_file() {
        panic!(
            "{} is not installed: run .ci/install-test-deps, which installs the object-store \
             servers and clients into target/test-tools/",
            path.display()
        );
    }
    path
}

/// Removes every variable a cloud SDK chain reads (`AWS_*`, `AZURE_*`, `GOOGLE_*` and
/// the few unprefixed ones) from `command`'s environment, so only what a test passes
/// (e.g. a server's `env()`) reaches the child: a developer's own cloud credentials
/// must neither leak into nor change a test.
pub fn clear_cloud_env(command: &mut Command) -> &mut Command {
    const UNPREFIXED: &[&str] = &["IDENTITY_ENDPOINT", "SERVICE_ACCOUNT", "AZURITE_BLOB_STORAGE_URL"];
    for (name, _) in std::env::vars_os() {
        let Some(name) = name.to_str() else { continue };
        if ["AWS_", "AZURE_", "GOOGLE_"].iter().any(|p| name.starts_with(p)) || UNPREFIXED.contains(&name) {
            command.env_remove(name);
        }
    }
    command
}

/// A loopback port that was free when picked. Another process may take it before the
/// server binds it; the servers' `start` retries with fresh ports when that happens.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("a free loopback port")
}

/// Runs a tool to completion off the async runtime, bounded by `TOOL_TIMEOUT`; fails the
/// test with its output when it does not succeed.
pub async fn run_tool(mut command: Command, what: &str) -> Output {
    let what = what.to_string();
    tokio::task::spawn_blocking(move || run_tool_blocking(&mut command, &what))
        .await
        .expect("the tool's thread")
}

/// As `run_tool`, without the runtime: for start-up, before any test code runs.
pub fn run_tool_blocking(command: &mut Command, what: &str) -> Output {
    let output = try_tool_blocking(command, what);
    if !output.status.success() {
        panic!(
            "{what} failed ({}): {}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    output
}

/// Runs a tool to completion, bounded by `TOOL_TIMEOUT`, and returns what it did
/// whether it succeeded or not.
pub fn try_tool_blocking(command: &mut Command, what: &str) -> Output {
    use std::process::Stdio;
    let mut child = super::ChildProcess::spawn(
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
    );
    // Read both pipes while waiting, so a chatty tool cannot block on a full pipe.
    let stdout = child.stdout.take().unwrap();
    let stderr = child.stderr.take().unwrap();
    let read = |mut pipe: Box<dyn std::io::Read + Send>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = pipe.read_to_end(&mut bytes);
            bytes
        })
    };
    let (stdout, stderr) = (read(Box::new(stdout)), read(Box::new(stderr)));
    let status = child.exit_within_blocking(TOOL_TIMEOUT, what);
    Output {
        status,
        stdout: stdout.join().unwrap(),
        stderr: stderr.join().unwrap(),
    }
}

/// Whether something accepts TCP connections at `addr` now.
pub fn accepts(addr: SocketAddr) -> bool {
    std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
}

/// Decodes `%XX` escapes in a URL path as the servers log it.
pub fn percent_decode(path: &str) -> String {
    let bytes = path.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A store as the tests see it: where it is, its credentials, and the objects it holds
/// and the writes it logged, read and written by its own means. One set of cases (the
/// harness's smoke test, the publisher's core cases) runs on every store.
pub trait Bucket {
    /// `scheme://bucket/prefix`.
    fn url(&self, prefix: &str) -> String;
    fn endpoint(&self) -> String;
    /// The credentials, for the child process's environment.
    fn env(&self) -> Vec<(String, String)>;
    async fn put(&self, key: &str, object: NewObject<'_>);
    async fn object(&self, key: &str) -> Option<StoredObject>;
    /// Every key, sorted.
    async fn keys(&self) -> Vec<String>;
    async fn delete(&self, key: &str);
    async fn events(&self) -> Vec<StoreEvent>;
}

/// `Bucket` through each server's own methods of the same names.
macro_rules! bucket_by_its_own_methods {
    ($($server:ty),*) => {$(
        impl Bucket for $server {
            fn url(&self, prefix: &str) -> String {
                <$server>::url(self, prefix)
            }
            fn endpoint(&self) -> String {
                <$server>::endpoint(self)
            }
            fn env(&self) -> Vec<(String, String)> {
                <$server>::env(self)
            }
            async fn put(&self, key: &str, object: NewObject<'_>) {
                <$server>::put(self, key, object).await
            }
            async fn object(&self, key: &str) -> Option<StoredObject> {
                <$server>::object(self, key).await
            }
            async fn keys(&self) -> Vec<String> {
                <$server>::keys(self).await
            }
            async fn delete(&self, key: &str) {
                <$server>::delete(self, key).await
            }
            async fn events(&self) -> Vec<StoreEvent> {
                <$server>::events(self).await
            }
        }
    )*};
}

bucket_by_its_own_methods!(super::SeaweedFs, super::Azurite);
