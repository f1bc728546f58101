//! `Watched`: a connection's stream that tells its `Activity` about reads and writes, and
//! fails a write blocked for `send_timeout` (hyper has no write timeout of its own).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

use crate::edge::activity::Activity;

/// The connection's stream, watched: reads tell `Activity` that a head has begun, and a
/// write (or flush) that stays blocked for `send_timeout` fails with `TimedOut`, which
/// ends the connection. hyper has no write timeout of its own.
///
/// It wraps the stream above TLS, so reads are request bytes, not TLS records, and a
/// write blocks once rustls' buffer is full and the socket takes nothing.
pub(super) struct Watched<S> {
    inner: S,
    activity: Arc<Activity>,
    send_timeout: Duration,
    /// Runs while a write is blocked; made on the first block, reset on later ones.
    stall: Option<Pin<Box<Sleep>>>,
    stalled: bool,
    read_any: bool,
}

impl<S> Watched<S> {
    pub(super) fn new(inner: S, activity: Arc<Activity>, send_timeout: Duration) -> Watched<S> {
        Watched {
            inner,
            activity,
            send_timeout,
            stall: None,
            stalled: false,
            read_any: false,
        }
    }

    fn after_write<T>(&mut self, cx: &mut Context<'_>, result: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        match result {
            Poll::Ready(result) => {
                if self.stalled {
                    self.stalled = false;
                    self.activity.write_resumed();
                }
                Poll::Ready(result)
            }
            Poll::Pending => {
                if !self.stalled {
                    self.stalled = true;
                    self.activity.write_blocked();
                    let until = Instant::now() + self.send_timeout;
                    match &mut self.stall {
                        Some(sleep) => sleep.as_mut().reset(until),
                        None => self.stall = Some(Box::pin(tokio::time::sleep_until(until))),
                    }
                }
                let expired = self.stall.as_mut().is_some_and(|s| s.as_mut().poll(cx).is_ready());
                if expired {
                    self.activity.send_timed_out();
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("the client read nothing for {:?} (send timeout)", self.send_timeout),
                    )));
                }
                Poll::Pending
            }
        }
    }
}

/// How an HTTP/2 connection without TLS (prior knowledge) begins.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0";

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let result = Pin::new(&mut this.inner).poll_read(cx, buf);
        if matches!(result, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            if !this.read_any {
                this.read_any = true;
                // Known before the first request, an idle HTTP/2 connection gets a GOAWAY.
                if buf.filled()[before..].starts_with(H2_PREFACE) {
                    this.activity.saw_h2_preface();
                }
            }
            this.activity.read();
        }
        result
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.after_write(cx, result)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.after_write(cx, result)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.inner).poll_flush(cx);
        this.after_write(cx, result)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.inner).poll_shutdown(cx);
        this.after_write(cx, result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_write_blocked_for_send_timeout_fails_and_one_that_resumes_does_not() {
        // A pipe whose reader never reads: the writer fills it, then blocks.
        let (client, server) = tokio::io::duplex(1024);
        let activity = Arc::new(Activity::new(false));
        let mut watched = Watched::new(server, activity.clone(), Duration::from_secs(5));
        use tokio::io::AsyncWriteExt;
        watched.write_all(&[0u8; 1024]).await.unwrap();
        let started = Instant::now();
        let err = watched.write_all(&[0u8; 1]).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert_eq!(started.elapsed(), Duration::from_secs(5));
        assert!(activity.ended_by_send_timeout());
        drop(client);

        let (mut client, server) = tokio::io::duplex(1024);
        let activity = Arc::new(Activity::new(false));
        let mut watched = Watched::new(server, activity.clone(), Duration::from_secs(5));
        watched.write_all(&[0u8; 1024]).await.unwrap();
        let reader = tokio::spawn(async move {
            use tokio::io::AsyncReadExt;
            // Reads a little every 4 s: slow, but never blocked for 5 s at once.
            let mut buf = [0u8; 512];
            for _ in 0..3 {
                tokio::time::sleep(Duration::from_secs(4)).await;
                client.read_exact(&mut buf).await.unwrap();
            }
            client
        });
        watched.write_all(&[0u8; 1024]).await.unwrap();
        assert!(!activity.ended_by_send_timeout());
        assert!(!activity.write_is_blocked());
        drop(reader);
    }
}
