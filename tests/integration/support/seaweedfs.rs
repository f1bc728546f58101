//! SeaweedFS on loopback as the S3 server: `weed server` with its S3 gateway, one bucket,
//! and the filer's own HTTP API to read objects back, list and delete them by hand.
//!
//! The write order comes from the filer's metadata log (`weed filer.meta.tail`), which
//! records every create, update and delete with a nanosecond timestamp: an object's
//! S3 `Last-Modified` has only whole seconds, too coarse for "the key set first".

use std::collections::BTreeMap;
use std::fs::File;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use base64::Engine as _;
use http::{Method, StatusCode};

use super::stores::{
    accepts, free_port, percent_decode, run_tool, test_tool, try_tool_blocking, NewObject, StoreEvent, StoredObject,
    STORE_START_TIMEOUT,
};
use super::{ChildProcess, Conn, Reply, Transport, Wait};

/// Ports are picked by binding and releasing them; a start that lost one to another
/// process is retried with fresh ports, this many times in all.
const START_ATTEMPTS: u32 = 3;
/// The most entries `keys` walks, so a runaway listing still ends.
const MAX_ENTRIES: usize = 10_000;
/// Lines of the server's log shown when it fails to start.
const LOG_TAIL: usize = 30;
const ACCESS_KEY: &str = "jwks-edge-test";
const SECRET_KEY: &str = "jwks-edge-test-secret";
const REGION: &str = "us-east-1";
const BUCKET: &str = "jwks-edge";
/// `os.ModeDir` in the filer's `Mode`.
const MODE_DIR: u64 = 1 << 31;

/// A running SeaweedFS (master, volume server, filer, S3 gateway in one process) with one
/// empty bucket; killed when dropped, its data in a temporary directory.
pub struct SeaweedFs {
    /// Dropped first: the process goes before its directory.
    _child: ChildProcess,
    s3: SocketAddr,
    filer: SocketAddr,
    filer_grpc: u16,
    /// `(service, port)` of its gRPC listeners, whose unix sockets it puts in /tmp.
    grpc: Vec<(&'static str, u16)>,
    started: Instant,
    /// Numbers the body files `put` writes.
    puts: AtomicU32,
    dir: tempfile::TempDir,
}

impl SeaweedFs {
    /// Starts SeaweedFS, waits (bounded) until it can store objects, and creates the
    /// bucket. Fails the test naming `.ci/install-test-deps` when `weed` is missing.
    pub async fn start() -> SeaweedFs {
        let weed = test_tool("venv/bin/weed");
        let mut last_log = String::new();
        for _ in 0..START_ATTEMPTS {
            match tokio::task::spawn_blocking({
                let weed = weed.clone();
                move || SeaweedFs::try_start(&weed)
            })
            .await
            .unwrap()
            {
                Ok(server) => {
                    server.create_bucket().await;
                    return server;
                }
                Err(log) => last_log = log,
            }
        }
        panic!("SeaweedFS did not start in {START_ATTEMPTS} attempts; its log ends:\n{last_log}");
    }

    /// One start on fresh ports: `Err(log tail)` when the process exited first (a port
    /// taken, most likely).
    fn try_start(weed: &PathBuf) -> Result<SeaweedFs, String> {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir(&data).unwrap();
        let identities = dir.path().join("s3.json");
        let identity = serde_json::json!({"identities": [{
            "name": ACCESS_KEY,
            "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
        }]});
        std::fs::write(&identities, identity.to_string()).unwrap();
        let ports: Vec<u16> = (0..8).map(|_| free_port()).collect();
        let [master, master_grpc, volume, volume_grpc, filer, filer_grpc, s3, s3_grpc] = ports[..] else {
            unreachable!()
        };
        let log = dir.path().join("weed.log");
        let mut command = Command::new(weed);
        command
            .current_dir(dir.path())
            .arg("server")
            .arg(format!("-dir={}", data.display()))
            .args(["-ip=127.0.0.1", "-ip.bind=127.0.0.1"])
            .arg(format!("-master.port={master}"))
            .arg(format!("-master.port.grpc={master_grpc}"))
            // Small volumes: the default preallocates 30 GB of volume limit.
            .args(["-master.volumeSizeLimitMB=64", "-volume.max=8"])
            .arg(format!("-volume.port={volume}"))
            .arg(format!("-volume.port.grpc={volume_grpc}"))
            .arg("-filer")
            .arg(format!("-filer.port={filer}"))
            .arg(format!("-filer.port.grpc={filer_grpc}"))
            .arg("-s3")
            .arg(format!("-s3.port={s3}"))
            .arg(format!("-s3.port.grpc={s3_grpc}"))
            // The Iceberg and Lance catalogs would listen on fixed ports.
            .args(["-s3.port.iceberg=0", "-s3.port.lance=0"])
            .arg(format!("-s3.config={}", identities.display()))
            // Its unix sockets go to /tmp by default and outlive a killed server.
            .arg(format!(
                "-filer.localSocket={}",
                dir.path().join("filer.sock").display()
            ))
            .arg(format!("-s3.localSocket={}", dir.path().join("s3.sock").display()))
            .stdin(Stdio::null())
            .stdout(File::create(&log).unwrap())
            .stderr(File::create(&log).unwrap());
        let mut child = ChildProcess::spawn(&mut command);
        let filer_addr = SocketAddr::from(([127, 0, 0, 1], filer));
        let s3_addr = SocketAddr::from(([127, 0, 0, 1], s3));
        let master_addr = SocketAddr::from(([127, 0, 0, 1], master));
        let ready = Wait::up_to(STORE_START_TIMEOUT)
            .every(Duration::from_millis(100))
            .until_blocking("SeaweedFS to answer and assign volumes", || {
                if let Some(status) = child.try_wait().unwrap() {
                    return Ok(Err(status));
                }
                if accepts(filer_addr) && accepts(s3_addr) && assigns_volumes(master_addr) {
                    Ok(Ok(()))
                } else {
                    Err("not yet")
                }
            });
        match ready {
            Ok(()) => Ok(SeaweedFs {
                _child: child,
                s3: s3_addr,
                filer: filer_addr,
                filer_grpc,
                grpc: vec![
                    ("master", master_grpc),
                    ("volume", volume_grpc),
                    ("filer", filer_grpc),
                    ("s3", s3_grpc),
                ],
                started: Instant::now(),
                puts: AtomicU32::new(0),
                dir,
            }),
            Err(_) => Err(log_tail(&log)),
        }
    }

    /// The S3 endpoint, for `[[publish]] endpoint`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.s3)
    }

    pub fn bucket(&self) -> &str {
        BUCKET
    }

    pub fn region(&self) -> &str {
        REGION
    }

    /// `s3://bucket/prefix` (`prefix` without slashes around it; empty for none).
    pub fn url(&self, prefix: &str) -> String {
        format!("s3://{BUCKET}/{prefix}")
    }

    /// What object_store's `AmazonS3Builder::from_env` reads: the bucket's credentials,
    /// the region, and `AWS_ALLOW_HTTP`, since the endpoint is plain HTTP.
    pub fn env(&self) -> Vec<(String, String)> {
        [
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY),
            ("AWS_SECRET_ACCESS_KEY", SECRET_KEY),
            ("AWS_REGION", REGION),
            ("AWS_ALLOW_HTTP", "true"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .to_vec()
    }

    /// Writes an object over signed S3 with AWS's own CLI, as another client would.
    pub async fn put(&self, key: &str, object: NewObject<'_>) {
        let body = self
            .dir
            .path()
            .join(format!("put-{}", self.puts.fetch_add(1, Ordering::Relaxed)));
        std::fs::write(&body, object.bytes).unwrap();
        let mut command = self.aws();
        command.args(["s3api", "put-object", "--bucket", BUCKET, "--key", key, "--body"]);
        command.arg(&body);
        if let Some(content_type) = object.content_type {
            command.args(["--content-type", content_type]);
        }
        if let Some(cache_control) = object.cache_control {
            command.args(["--cache-control", cache_control]);
        }
        if !object.metadata.is_empty() {
            let pairs: Vec<String> = object.metadata.iter().map(|(k, v)| format!("{k}={v}")).collect();
            command.args(["--metadata", &pairs.join(",")]);
        }
        run_tool(command, &format!("aws s3api put-object {key}")).await;
    }

    /// The object at `key` as the filer holds it, or `None` when there is none.
    pub async fn object(&self, key: &str) -> Option<StoredObject> {
        let path = self.filer_path(key);
        let reply = self.filer(Method::GET, &path, &[]).await;
        if reply.status == StatusCode::NOT_FOUND {
            return None;
        }
        assert_eq!(reply.status, StatusCode::OK, "filer GET {path}");
        let entry = self
            .filer(Method::GET, &format!("{path}?metadata=true"), &[])
            .await
            .json();
        let extended = |name: &str| extended_value(&entry, name);
        let metadata = entry["Extended"]
            .as_object()
            .into_iter()
            .flatten()
            .filter_map(|(name, _)| {
                let user = name.to_ascii_lowercase().strip_prefix("x-amz-meta-")?.to_string();
                Some((user, extended(name)?))
            })
            .collect::<BTreeMap<_, _>>();
        Some(StoredObject {
            bytes: reply.body.to_vec(),
            content_type: entry["Mime"].as_str().filter(|m| !m.is_empty()).map(str::to_string),
            cache_control: extended("Cache-Control"),
            metadata,
        })
    }

    /// Every key in the bucket, sorted.
    pub async fn keys(&self) -> Vec<String> {
        let root = format!("/buckets/{BUCKET}");
        let mut dirs = vec![root.clone()];
        let mut keys = Vec::new();
        let mut seen = 0;
        while let Some(dir) = dirs.pop() {
            let mut last = String::new();
            loop {
                let listing = self
                    .filer(
                        Method::GET,
                        &format!("{dir}/?limit=1000&lastFileName={last}"),
                        &[("accept", "application/json")],
                    )
                    .await
                    .json();
                let entries = listing["Entries"].as_array().cloned().unwrap_or_default();
                seen += entries.len();
                assert!(seen <= MAX_ENTRIES, "more than {MAX_ENTRIES} entries under {root}");
                for entry in &entries {
                    let full = entry["FullPath"].as_str().unwrap().to_string();
                    if entry["Mode"].as_u64().unwrap_or(0) & MODE_DIR != 0 {
                        dirs.push(full);
                    } else {
                        keys.push(full[root.len() + 1..].to_string());
                    }
                }
                match listing["LastFileName"].as_str() {
                    Some(name) if listing["ShouldDisplayLoadMore"] == true && !entries.is_empty() => {
                        last = name.to_string()
                    }
                    _ => break,
                }
            }
        }
        keys.sort();
        keys
    }

    /// Deletes the object at `key` through the filer, as an operator would by hand.
    pub async fn delete(&self, key: &str) {
        let path = self.filer_path(key);
        let reply = self.filer(Method::DELETE, &path, &[]).await;
        assert!(reply.status.is_success(), "filer DELETE {path}: {}", reply.status);
    }

    /// Every write and delete in the bucket since the server started, in order, from the
    /// filer's metadata log.
    pub async fn events(&self) -> Vec<StoreEvent> {
        let weed = test_tool("venv/bin/weed");
        let prefix = format!("/buckets/{BUCKET}/");
        let mut command = Command::new(weed);
        command
            .arg("filer.meta.tail")
            .arg(format!("-filer={}.{}", self.filer, self.filer_grpc))
            .arg(format!("-pathPrefix={prefix}"))
            .arg(format!("-timeAgo={}ms", self.started.elapsed().as_millis() + 60_000))
            // Without an end it follows the log forever.
            .arg("-untilTimeAgo=1ns");
        let output = run_tool(command, "weed filer.meta.tail").await;
        let text = String::from_utf8(output.stdout).unwrap();
        serde_json::Deserializer::from_str(&text)
            .into_iter::<serde_json::Value>()
            .filter_map(|event| meta_event(&event.unwrap(), &prefix))
            .collect()
    }

    /// The AWS CLI, hermetic: only this server's credentials, no config files.
    fn aws(&self) -> Command {
        let mut command = Command::new(test_tool("venv/bin/aws"));
        command
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env("AWS_CONFIG_FILE", "/dev/null")
            .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
            .env("AWS_DEFAULT_REGION", REGION)
            .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
            .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
            .arg("--endpoint-url")
            .arg(self.endpoint());
        command
    }

    async fn create_bucket(&self) {
        let mut command = self.aws();
        command.args(["s3api", "create-bucket", "--bucket", BUCKET]);
        run_tool(command, "aws s3api create-bucket").await;
    }

    fn filer_path(&self, key: &str) -> String {
        format!("/buckets/{BUCKET}/{key}")
    }

    async fn filer(&self, method: Method, path: &str, headers: &[(&str, &str)]) -> Reply {
        let host = self.filer.to_string();
        Conn::open(self.filer, &Transport::Plain)
            .await
            .send(method, &host, path, headers)
            .await
    }
}

impl Drop for SeaweedFs {
    /// Removes the gRPC unix sockets weed makes in /tmp whatever TMPDIR says (the
    /// process itself is killed after this, when its field is dropped).
    fn drop(&mut self) {
        for (service, port) in &self.grpc {
            let _ = std::fs::remove_file(format!("/tmp/seaweedfs-{service}-grpc-{port}.sock"));
        }
    }
}

/// Whether the master hands out file ids: volumes are there, so writes will succeed.
fn assigns_volumes(master: SocketAddr) -> bool {
    let mut command = Command::new("curl");
    command
        .args(["-sf", "--max-time", "2"])
        .arg(format!("http://{master}/dir/assign"));
    let output = try_tool_blocking(&mut command, "the master's /dir/assign");
    output.status.success() && String::from_utf8_lossy(&output.stdout).contains("\"fid\"")
}

/// A base64 value of the filer entry's `Extended` attributes, decoded.
fn extended_value(entry: &serde_json::Value, name: &str) -> Option<String> {
    let encoded = entry["Extended"].get(name)?.as_str()?;
    let bytes = base64::engine::general_purpose::STANDARD.decode(encoded).ok()?;
    String::from_utf8(bytes).ok()
}

/// One metadata-log event as a write or delete of a key under `prefix`; `None` for
/// directories.
fn meta_event(event: &serde_json::Value, prefix: &str) -> Option<StoreEvent> {
    let notification = &event["eventNotification"];
    let directory = event["directory"].as_str()?;
    let key_in = |dir: &str, entry: &serde_json::Value| {
        let full = format!("{dir}/{}", entry["name"].as_str()?);
        full.strip_prefix(prefix).map(percent_decode)
    };
    let is_file = |entry: &serde_json::Value| entry.is_object() && entry["isDirectory"] != true;
    let new = &notification["newEntry"];
    let old = &notification["oldEntry"];
    if is_file(new) {
        let parent = notification["newParentPath"]
            .as_str()
            .filter(|p| !p.is_empty())
            .unwrap_or(directory);
        return key_in(parent, new).map(StoreEvent::Written);
    }
    if is_file(old) && new.is_null() {
        return key_in(directory, old).map(StoreEvent::Deleted);
    }
    None
}

fn log_tail(path: &std::path::Path) -> String {
    let log = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(LOG_TAIL)..].join("\n")
}
