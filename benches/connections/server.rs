//! The server under measurement: a `jwks-edge serve` child process, its listeners as it
//! announces them, whether it serves the key set, and how many connections it counts open.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::{HOST, PATH};

/// Kills the server when dropped.
pub struct Server {
    pub child: Child,
    pub plain: SocketAddr,
    pub https: SocketAddr,
    pub admin: SocketAddr,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn start_server(config: &std::path::Path) -> Server {
    let mut child = Command::new(env!("CARGO_BIN_EXE_jwks-edge"))
        .args(["serve", "--config", &config.display().to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the server starts");
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            // Keep draining after the listeners are known, so the server never blocks.
            let _ = tx.send(line);
        }
    });
    let mut found = std::collections::HashMap::new();
    while found.len() < 3 {
        let line = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("the server announces its listeners");
        if let Some(rest) = line.split("accepting connections listener=\"").nth(1) {
            let name = rest.split('"').next().unwrap().to_owned();
            let addr: SocketAddr = rest
                .split("listen=")
                .nth(1)
                .unwrap()
                .split(' ')
                .next()
                .unwrap()
                .parse()
                .unwrap();
            found.insert(name, addr);
        }
    }
    Server {
        child,
        plain: found["plain"],
        https: found["https"],
        admin: found["admin"],
    }
}

/// Whether the plain listener answers the key set with a 200.
pub async fn serves(server: &Server) -> bool {
    let Ok(mut tcp) = TcpStream::connect(server.plain).await else {
        return false;
    };
    let request = format!("GET {PATH} HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n");
    if tcp.write_all(request.as_bytes()).await.is_err() {
        return false;
    }
    let mut head = [0u8; 12];
    let read = tokio::time::timeout(Duration::from_secs(2), tcp.read_exact(&mut head)).await;
    matches!(read, Ok(Ok(_))) && &head[9..12] == b"200"
}

/// The server's open connections on `listener`, from its metrics.
pub async fn open_connections(server: &Server, listener: &str) -> usize {
    let Ok(tcp) = TcpStream::connect(server.admin).await else {
        return 0;
    };
    let Ok((mut sender, conn)) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await else {
        return 0;
    };
    tokio::spawn(conn);
    let request = Request::get("/metrics")
        .header("host", "localhost")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let Ok(response) = sender.send_request(request).await else {
        return 0;
    };
    let body = response
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let wanted = format!("jwks_edge_open_connections{{listener=\"{listener}\"}} ");
    String::from_utf8_lossy(&body)
        .lines()
        .find_map(|l| l.strip_prefix(&wanted))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}
