//! The signals that end `serve` and `demo`: both drain the same way.

/// Completes on SIGTERM or SIGINT.
pub async fn signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("a signal handler can be installed");
    let mut int = signal(SignalKind::interrupt()).expect("a signal handler can be installed");
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        _ = int.recv() => tracing::info!("SIGINT received"),
    }
}
