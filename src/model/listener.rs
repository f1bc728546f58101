//! `Listener`: which of the proxy's listening sockets a connection came on, named once for logs and metrics.

/// One of the listeners `app` may start. `as_str` is the `listener` label of the
/// connection metrics and the `listener` field of log lines and access lines. Its
/// series are made when the listener starts, so a listener not configured has none.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Listener {
    /// `server.listen` with TLS.
    Https,
    /// `server.listen_plain`, without TLS.
    Plain,
    /// `admin.listen`.
    Admin,
}

impl Listener {
    pub fn as_str(self) -> &'static str {
        match self {
            Listener::Https => "https",
            Listener::Plain => "plain",
            Listener::Admin => "admin",
        }
    }
}
