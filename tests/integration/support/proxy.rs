//! A proxy running in this test process: started from config, stopped when dropped.

use std::net::SocketAddr;
use std::sync::Arc;

use jwks_edge::app::{App, Listeners};
use jwks_edge::config::Config;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::{TestCerts, IO_TIMEOUT};

/// A proxy running in this process on ephemeral loopback ports. Stops when dropped.
pub struct RunningProxy {
    pub https: Option<SocketAddr>,
    pub plain: Option<SocketAddr>,
    pub admin: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
    _certs: Option<Arc<TestCerts>>,
}

impl RunningProxy {
    /// Starts the proxy on `issuers` (TOML `[[issuer]]` tables) with extra `[server]`
    /// and `[cache]` lines; HTTPS when `certs` is given, plain HTTP always.
    pub async fn start(issuers: &str, server: &str, cache: &str, certs: Option<Arc<TestCerts>>) -> RunningProxy {
        RunningProxy::start_with_admin(issuers, server, cache, "", certs).await
    }

    /// As `start`, with extra `[admin]` lines.
    pub async fn start_with_admin(
        issuers: &str,
        server: &str,
        cache: &str,
        admin: &str,
        certs: Option<Arc<TestCerts>>,
    ) -> RunningProxy {
        let tls = certs
            .as_ref()
            .map(|c| {
                format!(
                    "listen = \"127.0.0.1:0\"\n[server.tls]\ncert = {:?}\nkey = {:?}\n",
                    c.cert, c.key
                )
            })
            .unwrap_or_default();
        let text = format!(
            "[server]\nlisten_plain = \"127.0.0.1:0\"\n{server}\n{tls}\n[admin]\nlisten = \"127.0.0.1:0\"\n{admin}\n[cache]\n{cache}\n{issuers}"
        );
        let config = Config::from_toml(&text, std::path::Path::new(".")).unwrap_or_else(|e| panic!("{e}\n{text}"));
        let listeners = Listeners::bind(&config).await.unwrap();
        let mut proxy = RunningProxy::run(config, listeners).await;
        proxy._certs = certs;
        proxy
    }

    /// Runs `config` on listeners the caller bound.
    pub async fn run(config: Config, listeners: Listeners) -> RunningProxy {
        let https = listeners.https.as_ref().map(|l| l.local_addr().unwrap());
        let plain = listeners.plain.as_ref().map(|l| l.local_addr().unwrap());
        let admin = listeners.admin.as_ref().unwrap().local_addr().unwrap();
        let app = App::new(config).unwrap();
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(async move {
            app.run(listeners, async {
                let _ = stopped.await;
            })
            .await
            .unwrap();
        });
        RunningProxy {
            https,
            plain,
            admin,
            stop: Some(stop),
            task,
            _certs: None,
        }
    }

    /// Stops accepting, drains, and waits for the proxy to finish.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        tokio::time::timeout(IO_TIMEOUT, &mut self.task)
            .await
            .expect("proxy stops within the drain timeout")
            .unwrap();
    }
}

impl Drop for RunningProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// An `[[issuer]]` table.
pub fn issuer(public_url: &str, upstream: &str, extra: &str) -> String {
    format!("[[issuer]]\npublic_url = \"{public_url}\"\nupstream = \"{upstream}\"\n{extra}\n")
}
