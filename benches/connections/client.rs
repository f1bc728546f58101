//! The clients: one connection of a kind opened and left in its state, idle after one
//! answer or a slow reader with responses queued, held open by a task.

use std::future::Future as _;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpSocket, TcpStream};
use tokio::task::JoinSet;

use crate::common::{HOST, PATH};
use crate::server::Server;
use crate::{Kind, ETHERNET_MSS, PIPELINED, SLOW_BYTES, SLOW_EVERY, SLOW_RCVBUF, STREAMS};

/// A stream whose reads can be throttled to `SLOW_BYTES` every `SLOW_EVERY`, below TLS.
struct SlowRead {
    inner: TcpStream,
    slow: Arc<AtomicBool>,
    next: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl AsyncRead for SlowRead {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if !this.slow.load(Ordering::Relaxed) {
            return Pin::new(&mut this.inner).poll_read(cx, buf);
        }
        let next = this
            .next
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(SLOW_EVERY)));
        if next.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        let mut small = [0u8; SLOW_BYTES];
        let mut small_buf = ReadBuf::new(&mut small[..SLOW_BYTES.min(buf.remaining())]);
        match Pin::new(&mut this.inner).poll_read(cx, &mut small_buf) {
            Poll::Ready(Ok(())) => {
                buf.put_slice(small_buf.filled());
                next.as_mut().reset(tokio::time::Instant::now() + SLOW_EVERY);
                Poll::Ready(Ok(()))
            }
            other => other,
        }
    }
}

impl AsyncWrite for SlowRead {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send + 'static {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> Io for T {}

/// Connects (with a small receive buffer for slow readers) and does TLS when asked, the
/// reads unthrottled until the returned switch is set.
async fn connect(kind: Kind, addr: SocketAddr, tls: &Arc<rustls::ClientConfig>) -> (Box<dyn Io>, Arc<AtomicBool>) {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    // The server sends segments of an Ethernet path, as it would to a real client.
    socket.set_tcp_mss(ETHERNET_MSS).unwrap();
    if kind.slow {
        socket.set_recv_buffer_size(SLOW_RCVBUF).unwrap();
    }
    socket.set_nonblocking(true).unwrap();
    let socket = TcpSocket::from_std_stream(socket.into());
    let tcp = socket.connect(addr).await.expect("connect");
    let _ = tcp.set_nodelay(true);
    let slow = Arc::new(AtomicBool::new(false));
    let io = SlowRead {
        inner: tcp,
        slow: slow.clone(),
        next: None,
    };
    if kind.tls {
        let name = ServerName::try_from(HOST).unwrap();
        let stream = tokio_rustls::TlsConnector::from(tls.clone())
            .connect(name, io)
            .await
            .expect("TLS handshake");
        (Box::new(stream), slow)
    } else {
        (Box::new(io), slow)
    }
}

fn h1_request() -> String {
    format!("GET {PATH} HTTP/1.1\r\nHost: {HOST}\r\n\r\n")
}

/// Reads one whole HTTP/1.1 response (Content-Length framed).
async fn read_response(io: &mut Box<dyn Io>) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        let n = io.read(&mut chunk).await.expect("read");
        assert!(n > 0, "the server closed the connection");
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            if buf.len() >= end + 4 + length {
                return;
            }
        }
    }
}

/// Opens one connection of `kind` and leaves it in its state, held by tasks in `held`.
pub async fn open(kind: Kind, server: &Server, tls: &Arc<rustls::ClientConfig>, held: &mut JoinSet<()>) {
    let addr = if kind.tls { server.https } else { server.plain };
    let (mut io, slow) = connect(kind, addr, tls).await;
    if !kind.h2 {
        if kind.slow {
            let pipelined = h1_request().repeat(PIPELINED);
            io.write_all(pipelined.as_bytes()).await.unwrap();
            slow.store(true, Ordering::Relaxed);
            held.spawn(async move {
                let mut sink = [0u8; 64];
                while matches!(io.read(&mut sink).await, Ok(n) if n > 0) {}
            });
        } else {
            io.write_all(h1_request().as_bytes()).await.unwrap();
            read_response(&mut io).await;
            held.spawn(async move {
                let mut sink = [0u8; 64];
                let _ = io.read(&mut sink).await;
            });
        }
        return;
    }
    let mut builder = hyper::client::conn::http2::Builder::new(TokioExecutor::new());
    // Windows large enough that the server is held up by TCP, not by flow control.
    builder
        .initial_stream_window_size(1 << 20)
        .initial_connection_window_size(16 << 20);
    let (mut sender, conn) = builder.handshake(TokioIo::new(io)).await.expect("h2 handshake");
    held.spawn(async move {
        let _ = conn.await;
    });
    let request = || {
        Request::get(format!("https://{HOST}{PATH}"))
            .body(Empty::<Bytes>::new())
            .unwrap()
    };
    let response = sender.send_request(request()).await.expect("h2 request");
    response.into_body().collect().await.expect("h2 body");
    if kind.slow {
        slow.store(true, Ordering::Relaxed);
        for _ in 0..STREAMS {
            let sent = sender.send_request(request());
            held.spawn(async move {
                if let Ok(response) = sent.await {
                    let _ = response.into_body().collect().await;
                }
            });
        }
    } else {
        held.spawn(async move {
            let _keep = sender;
            std::future::pending::<()>().await;
        });
    }
}
