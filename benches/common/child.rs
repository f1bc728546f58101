//! A `jwks-edge serve` child process: its listeners as it announces them, killed when
//! dropped. Included by path only by the benches that spawn the proxy this way, so the
//! others do not carry it unused.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The proxy process; killed and reaped when dropped.
pub struct Proxy {
    pub child: Child,
    /// Listener name (`plain`, `https`, `admin`) → bound address.
    pub listeners: HashMap<String, SocketAddr>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Proxy {
    /// Starts `jwks-edge serve --config CONFIG` and waits (at most `within`) until every
    /// listener in `wanted` is announced on stderr.
    pub fn start(config: &std::path::Path, wanted: &[&str], within: Duration) -> Result<Proxy, String> {
        let mut child = Command::new(env!("CARGO_BIN_EXE_jwks-edge"))
            .args(["serve", "--config", &config.display().to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("jwks-edge does not start: {e}"))?;
        let stderr = child.stderr.take().expect("stderr is piped");
        let mut proxy = Proxy {
            child,
            listeners: HashMap::new(),
        };
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                // Keep draining after the listeners are known, so the server never blocks.
                let _ = tx.send(line);
            }
        });
        let deadline = Instant::now() + within;
        let mut last = String::new();
        while wanted.iter().any(|w| !proxy.listeners.contains_key(*w)) {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = rx.recv_timeout(left).map_err(|e| match e {
                // stderr closed: the proxy exited, and its last line says why.
                std::sync::mpsc::RecvTimeoutError::Disconnected => format!("jwks-edge exited: {last}"),
                std::sync::mpsc::RecvTimeoutError::Timeout => {
                    format!(
                        "jwks-edge announced {:?} of {wanted:?} within {within:?}",
                        proxy.listeners
                    )
                }
            })?;
            last.clone_from(&line);
            if let Some(rest) = line.split("accepting connections listener=\"").nth(1) {
                let name = rest.split('"').next().unwrap_or_default().to_owned();
                let addr = rest
                    .split("listen=")
                    .nth(1)
                    .and_then(|r| r.split_whitespace().next())
                    .and_then(|a| a.parse().ok());
                if let Some(addr) = addr {
                    proxy.listeners.insert(name, addr);
                }
            }
        }
        Ok(proxy)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}
