//! `LogSink`: log lines appended to a memory buffer that a thread writes to stderr in batches.
//!
//! Requests never wait on stderr and never wake another thread per line: at 100k
//! access-log lines a second, one write every 5 ms replaces 100k write(2) calls, and the
//! writes are small enough not to stall the request path's core. The buffer is bounded;
//! lines beyond it are dropped and the drop is reported.

use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// How often buffered lines are written out.
const FLUSH_EVERY: Duration = Duration::from_millis(5);
/// Most bytes held between flushes; beyond this, lines are dropped.
const CAPACITY: usize = 8 * 1024 * 1024;

struct Shared {
    /// Appended to by every logging thread, emptied by the flusher.
    buffer: Mutex<Vec<u8>>,
    dropped: AtomicU64,
    stop: AtomicBool,
}

/// A handle to append whole lines to the sink. Cheap to clone.
#[derive(Clone)]
pub struct SinkWriter(Arc<Shared>);

impl SinkWriter {
    /// Appends one or more whole lines; drops them if the buffer is full.
    pub fn append(&self, data: &[u8]) {
        let mut buffer = self.0.buffer.lock().unwrap_or_else(|e| e.into_inner());
        if buffer.len() + data.len() > CAPACITY {
            self.0.dropped.fetch_add(1, Ordering::Relaxed);
        } else {
            buffer.extend_from_slice(data);
        }
    }
}

impl Write for SinkWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.append(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Owns the flusher thread; dropping it writes what is left.
pub struct LogSink {
    shared: Arc<Shared>,
    flusher: Option<JoinHandle<()>>,
}

impl LogSink {
    /// Writes to standard error.
    pub fn start() -> LogSink {
        LogSink::start_with(std::io::stderr())
    }

    /// Writes to `out` (a file, or `std::io::sink()` in benchmarks).
    pub fn start_with<W: Write + Send + 'static>(mut out: W) -> LogSink {
        let shared = Arc::new(Shared {
            buffer: Mutex::new(Vec::with_capacity(64 * 1024)),
            dropped: AtomicU64::new(0),
            stop: AtomicBool::new(false),
        });
        let flusher = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("jwks-edge-log".into())
                .spawn(move || {
                    while !shared.stop.load(Ordering::Relaxed) {
                        std::thread::park_timeout(FLUSH_EVERY);
                        flush(&shared, &mut out);
                    }
                    flush(&shared, &mut out);
                })
                .expect("a thread can be started")
        };
        LogSink {
            shared,
            flusher: Some(flusher),
        }
    }

    /// A writer for one event (cheap: an `Arc` clone).
    pub fn writer(&self) -> impl Fn() -> SinkWriter + Send + Sync + 'static {
        let shared = self.shared.clone();
        move || SinkWriter(shared.clone())
    }

    /// A handle that appends lines directly (the access log).
    pub fn handle(&self) -> SinkWriter {
        SinkWriter(self.shared.clone())
    }
}

fn flush(shared: &Shared, out: &mut impl Write) {
    let pending = {
        let mut buffer = shared.buffer.lock().unwrap_or_else(|e| e.into_inner());
        std::mem::replace(&mut *buffer, Vec::with_capacity(64 * 1024))
    };
    if !pending.is_empty() {
        let _ = out.write_all(&pending);
    }
    let dropped = shared.dropped.swap(0, Ordering::Relaxed);
    if dropped > 0 {
        let _ = writeln!(out, "jwks-edge: {dropped} log lines dropped (log buffer full)");
    }
    let _ = out.flush();
}

impl Drop for LogSink {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        if let Some(flusher) = self.flusher.take() {
            flusher.thread().unpark();
            let _ = flusher.join();
        }
    }
}
