//! A `jwks-edge serve` (or `publish`) child process: the real binary on a config file,
//! its listeners found in its log.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use super::{eventually, ChildProcess};

/// A `jwks-edge serve` child process, killed when dropped, with the addresses its
/// listeners logged.
pub struct Serve {
    child: ChildProcess,
    listeners: Vec<(String, SocketAddr)>,
    /// Every log line so far.
    pub log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    _config: tempfile::TempDir,
}

impl Serve {
    /// Starts `serve` on `config` (TOML) and waits for `expected` listeners to log.
    pub fn start(config: &str, expected: usize) -> Serve {
        Serve::start_with(&[], config, expected)
    }

    /// As `start`, with extra command-line arguments before `serve`.
    pub fn start_with(args: &[&str], config: &str, expected: usize) -> Serve {
        Serve::run(args, "serve", &[], config, expected)
    }

    /// `command` (`serve` or `publish`) with `env` added to the environment (a store's
    /// credentials), waiting for `expected` listeners to log.
    pub fn run(args: &[&str], command: &str, env: &[(String, String)], config: &str, expected: usize) -> Serve {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        std::fs::write(&path, config).unwrap();
        let mut child = ChildProcess::spawn(
            Command::new(env!("CARGO_BIN_EXE_jwks-edge"))
                .args(args)
                .args([command, "--config", path.to_str().unwrap()])
                .envs(env.iter().map(|(k, v)| (k, v)))
                .stdout(Stdio::null())
                .stderr(Stdio::piped()),
        );
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut listeners = Vec::new();
        let mut serve = Serve {
            child,
            listeners: Vec::new(),
            log: log.clone(),
            _config: dir,
        };
        // Bounded as a whole, not per line: a child that keeps logging other lines must
        // not keep the test waiting.
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while listeners.len() < expected {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let line = rx.recv_timeout(left).expect("serve logs its listeners within 20 s");
            log.lock().unwrap().push(line.clone());
            if line.starts_with('{') {
                let event: serde_json::Value = serde_json::from_str(&line).unwrap();
                let fields = &event["fields"];
                if fields["message"] == "accepting connections" {
                    let name = fields["listener"].as_str().unwrap().to_owned();
                    listeners.push((name, fields["listen"].as_str().unwrap().parse().unwrap()));
                }
            } else if let Some(rest) = line.split("accepting connections listener=\"").nth(1) {
                let name = rest.split('"').next().unwrap().to_owned();
                let addr = rest.split("listen=").nth(1).unwrap().split(' ').next().unwrap();
                listeners.push((name, addr.parse().unwrap()));
            }
        }
        // Keep collecting the log so the child never blocks on a full pipe.
        std::thread::spawn(move || {
            while let Ok(line) = rx.recv() {
                log.lock().unwrap().push(line);
            }
        });
        serve.listeners = listeners;
        serve
    }

    pub fn addr(&self, name: &str) -> SocketAddr {
        self.listeners.iter().find(|(n, _)| n == name).unwrap().1
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits (bounded) for the process to exit.
    pub async fn exit_status(&mut self, within: Duration) -> ExitStatus {
        self.child.exit_within(within, "serve to exit").await
    }

    /// The first logged JSON event that satisfies `matches` (bounded wait).
    pub async fn logged_event(&self, matches: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
        eventually(Duration::from_secs(10), "a matching log line", async || {
            self.log
                .lock()
                .unwrap()
                .iter()
                .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                .find(|e| matches(e))
        })
        .await
    }
}
