//! `LogSink`: log lines appended to a memory buffer that a thread writes to stderr in batches.
//!
//! Requests never wait on stderr and never wake another thread per line: at 100k
//! access-log lines a second, one write every 50 ms replaces 100k write(2) calls. The
//! buffer is bounded; lines beyond it are dropped and the drop is reported.

use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// How often buffered lines are written out.
const FLUSH_EVERY: Duration = Duration::from_millis(50);
/// Most bytes held between flushes; beyond this, lines are dropped.
const CAPACITY: usize = 8 * 1024 * 1024;

struct Shared {
    /// Appended to by every logging thread, emptied by the flusher.
    buffer: Mutex<Vec<u8>>,
    dropped: AtomicU64,
    stop: AtomicBool,
}

/// A handle that tracing-subscriber writes one formatted event to at a time.
pub struct SinkWriter(Arc<Shared>);

impl Write for SinkWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let mut buffer = self.0.buffer.lock().unwrap_or_else(|e| e.into_inner());
        if buffer.len() + data.len() > CAPACITY {
            self.0.dropped.fetch_add(1, Ordering::Relaxed);
        } else {
            buffer.extend_from_slice(data);
        }
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
    pub fn start() -> LogSink {
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
                        flush(&shared);
                    }
                    flush(&shared);
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
}

fn flush(shared: &Shared) {
    let pending = {
        let mut buffer = shared.buffer.lock().unwrap_or_else(|e| e.into_inner());
        std::mem::replace(&mut *buffer, Vec::with_capacity(64 * 1024))
    };
    let mut stderr = std::io::stderr().lock();
    if !pending.is_empty() {
        let _ = stderr.write_all(&pending);
    }
    let dropped = shared.dropped.swap(0, Ordering::Relaxed);
    if dropped > 0 {
        let _ = writeln!(stderr, "jwks-edge: {dropped} log lines dropped (log buffer full)");
    }
    let _ = stderr.flush();
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
