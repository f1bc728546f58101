//! Plain HTTP/1.1 over loopback, by hand: one GET with its body counted, and a closed-loop
//! keep-alive load whose requests go round every issuer's host.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::fleet::{discovery_path, host, jwks_path};

/// No single exchange may take longer than this.
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(10);

/// Reads one response (status line, headers, a `Content-Length` body) from `reader`.
async fn read_response(reader: &mut BufReader<TcpStream>) -> std::io::Result<(u16, Vec<u8>)> {
    let mut line = String::new();
    reader.read_line(&mut line).await?;
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("not a status line: {line:?}")))?;
    let mut length = None;
    loop {
        line.clear();
        if reader.read_line(&mut line).await? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        if line == "\r\n" {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse::<usize>().ok();
            }
        }
    }
    let length = length.ok_or_else(|| std::io::Error::other("no Content-Length"))?;
    let mut body = vec![0; length];
    reader.read_exact(&mut body).await?;
    Ok((status, body))
}

/// One GET on a fresh connection: the status, the body, and how long it took.
pub async fn get(addr: SocketAddr, host: &str, path: &str) -> std::io::Result<(u16, Vec<u8>, Duration)> {
    let started = Instant::now();
    tokio::time::timeout(EXCHANGE_TIMEOUT, async {
        let mut tcp = TcpStream::connect(addr).await?;
        let request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
        tcp.write_all(request.as_bytes()).await?;
        let (status, body) = read_response(&mut BufReader::new(tcp)).await?;
        Ok((status, body, started.elapsed()))
    })
    .await
    .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))?
}

#[derive(Default)]
pub struct Load {
    pub ok: u64,
    pub errors: u64,
    pub elapsed: Duration,
}

impl Load {
    pub fn rps(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// `connections` keep-alive connections, each sending its next request when the last one
/// is answered, for `duration`. Connection `c`'s `k`th request goes to issuer
/// `(c + k·connections) mod issuers`, alternating key set and discovery, so every host is
/// asked. A failed exchange counts as an error and the connection is opened again.
pub async fn load(addr: SocketAddr, issuers: usize, connections: usize, duration: Duration) -> Load {
    let started = Instant::now();
    let deadline = started + duration;
    let mut tasks = Vec::with_capacity(connections);
    for c in 0..connections {
        tasks.push(tokio::spawn(async move {
            let (mut ok, mut errors) = (0u64, 0u64);
            let mut k = 0usize;
            let mut conn: Option<BufReader<TcpStream>> = None;
            while Instant::now() < deadline {
                let i = (c + k * connections) % issuers;
                let path = if k % 2 == 0 { jwks_path(i) } else { discovery_path(i) };
                k += 1;
                let exchange = async {
                    if conn.is_none() {
                        conn = Some(BufReader::new(TcpStream::connect(addr).await?));
                    }
                    let reader = conn.as_mut().expect("just connected");
                    let request = format!("GET {path} HTTP/1.1\r\nHost: {}\r\n\r\n", host(i));
                    reader.get_mut().write_all(request.as_bytes()).await?;
                    read_response(reader).await
                };
                match tokio::time::timeout(EXCHANGE_TIMEOUT, exchange).await {
                    Ok(Ok((200, _))) => ok += 1,
                    Ok(Ok(_)) => errors += 1,
                    _ => {
                        errors += 1;
                        conn = None;
                    }
                }
            }
            (ok, errors)
        }));
    }
    let mut load = Load::default();
    for task in tasks {
        if let Ok((ok, errors)) = task.await {
            load.ok += ok;
            load.errors += errors;
        }
    }
    load.elapsed = started.elapsed();
    load
}
