//! A proxy running in this test process, built in sentences and stopped when dropped:
//! `Proxy::builder().issuer(Issuer::gitlab(&idp)).refresh("1s").start().await`.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use jwks_edge::app::{App, Listeners};
use jwks_edge::config::Config;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::config::{quoted, quoted_path, Tables};
use super::{Issuer, TestCerts, IO_TIMEOUT};

/// A proxy running in this process on ephemeral loopback ports. Stops when dropped.
pub struct Proxy {
    /// With `tls`, `tls_files` or `on_listeners`.
    pub https: Option<SocketAddr>,
    pub plain: Option<SocketAddr>,
    pub admin: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
    _certs: Option<Arc<TestCerts>>,
}

/// A proxy's config, said key by key; methods are named after the config keys (README,
/// `config.example.toml`) and take their values as written there (`"300ms"`).
///
/// Plain HTTP and the admin listener are always on, on ephemeral loopback ports.
pub struct ProxyBuilder {
    tables: Tables,
    /// Array tables: `[[server.tls.certs]]`, `[[publish]]`.
    array_tables: Vec<String>,
    issuers: Vec<Issuer>,
    /// Kept alive while the proxy reads its files.
    certs: Option<Arc<TestCerts>>,
    /// Bound by the test (`https`, `plain`).
    listeners: Option<(TcpListener, TcpListener)>,
}

impl Proxy {
    pub fn builder() -> ProxyBuilder {
        let mut tables = Tables::default();
        tables.set("server", "listen_plain", quoted("127.0.0.1:0"));
        tables.set("admin", "listen", quoted("127.0.0.1:0"));
        ProxyBuilder {
            tables,
            array_tables: Vec::new(),
            issuers: Vec::new(),
            certs: None,
            listeners: None,
        }
    }

    /// Runs `config` on listeners already bound.
    async fn run(config: Config, listeners: Listeners, certs: Option<Arc<TestCerts>>) -> Proxy {
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
        Proxy {
            https,
            plain,
            admin,
            stop: Some(stop),
            task,
            _certs: certs,
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

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl ProxyBuilder {
    /// Serves `issuer` too.
    pub fn issuer(mut self, issuer: Issuer) -> ProxyBuilder {
        self.issuers.push(issuer);
        self
    }

    fn set(mut self, table: &str, key: &str, value: String) -> ProxyBuilder {
        self.tables.set(table, key, value);
        self
    }

    /// Raw TOML `lines` in `[table]`, for a key no method names (the same key set twice
    /// is a config error).
    pub fn toml(mut self, table: &str, lines: &str) -> ProxyBuilder {
        self.tables.raw(table, lines);
        self
    }

    // [server]

    pub fn deadline(self, duration: &str) -> ProxyBuilder {
        self.set("server", "deadline", quoted(duration))
    }

    pub fn header_timeout(self, duration: &str) -> ProxyBuilder {
        self.set("server", "header_timeout", quoted(duration))
    }

    pub fn idle_timeout(self, duration: &str) -> ProxyBuilder {
        self.set("server", "idle_timeout", quoted(duration))
    }

    pub fn send_timeout(self, duration: &str) -> ProxyBuilder {
        self.set("server", "send_timeout", quoted(duration))
    }

    pub fn tls_handshake_timeout(self, duration: &str) -> ProxyBuilder {
        self.set("server", "tls_handshake_timeout", quoted(duration))
    }

    pub fn max_connections(self, count: u32) -> ProxyBuilder {
        self.set("server", "max_connections", count.to_string())
    }

    pub fn max_connections_per_address(self, count: u32) -> ProxyBuilder {
        self.set("server", "max_connections_per_address", count.to_string())
    }

    /// On ports the test bound: `listen` and `listen_plain` are theirs.
    pub fn on_listeners(self, https: TcpListener, plain: TcpListener) -> ProxyBuilder {
        let https_addr = https.local_addr().unwrap().to_string();
        let plain_addr = plain.local_addr().unwrap().to_string();
        let mut builder =
            self.set("server", "listen", quoted(&https_addr))
                .set("server", "listen_plain", quoted(&plain_addr));
        builder.listeners = Some((https, plain));
        builder
    }

    // [server.tls]

    /// HTTPS too, with the server certificate of `certs`.
    pub fn tls(self, certs: Arc<TestCerts>) -> ProxyBuilder {
        let mut builder = self.tls_files(&certs.cert, &certs.key);
        builder.certs = Some(certs);
        builder
    }

    /// HTTPS too, with the certificate chain and key in these files.
    pub fn tls_files(self, cert: &Path, key: &Path) -> ProxyBuilder {
        self.set("server", "listen", quoted("127.0.0.1:0"))
            .set("server.tls", "cert", quoted_path(cert))
            .set("server.tls", "key", quoted_path(key))
    }

    pub fn reload_interval(self, duration: &str) -> ProxyBuilder {
        self.set("server.tls", "reload_interval", quoted(duration))
    }

    /// One more certificate (`[[server.tls.certs]]`), chosen by SNI.
    pub fn sni_certificate(mut self, cert: &Path, key: &Path) -> ProxyBuilder {
        self.array_tables.push(format!(
            "[[server.tls.certs]]\ncert = {}\nkey = {}\n",
            quoted_path(cert),
            quoted_path(key)
        ));
        self
    }

    // [[publish]]

    /// Publishes every issuer to the object store at `url`, through `endpoint`.
    pub fn publish_to(mut self, url: &str, endpoint: &str) -> ProxyBuilder {
        self.array_tables.push(format!(
            "[[publish]]\nurl = {}\nendpoint = {}\n",
            quoted(url),
            quoted(endpoint)
        ));
        self
    }

    // [admin]

    /// `admin.token_file`: admin actions on, with the bearer token in `file`.
    pub fn admin_token_file(self, file: &Path) -> ProxyBuilder {
        self.set("admin", "token_file", quoted_path(file))
    }

    pub fn startup_grace(self, duration: &str) -> ProxyBuilder {
        self.set("admin", "startup_grace", quoted(duration))
    }

    /// `"any"` or `"all"`.
    pub fn readiness(self, rule: &str) -> ProxyBuilder {
        self.set("admin", "readiness", quoted(rule))
    }

    // [cache]

    pub fn refresh(self, duration: &str) -> ProxyBuilder {
        self.set("cache", "refresh", quoted(duration))
    }

    pub fn fetch_timeout(self, duration: &str) -> ProxyBuilder {
        self.set("cache", "fetch_timeout", quoted(duration))
    }

    pub fn stale_if_error(self, duration: &str) -> ProxyBuilder {
        self.set("cache", "stale_if_error", quoted(duration))
    }

    pub fn keep_removed_keys(self, duration: &str) -> ProxyBuilder {
        self.set("cache", "keep_removed_keys", quoted(duration))
    }

    pub fn revalidate_after(self, duration: &str) -> ProxyBuilder {
        self.set("cache", "revalidate_after", quoted(duration))
    }

    pub fn max_rsa_keys(self, count: u32) -> ProxyBuilder {
        self.set("cache", "max_rsa_keys", count.to_string())
    }

    pub fn max_fetches_per_upstream(self, count: u32) -> ProxyBuilder {
        self.set("cache", "max_fetches_per_upstream", count.to_string())
    }

    /// Snapshots written to and loaded from `dir`.
    pub fn state_dir(self, dir: &Path) -> ProxyBuilder {
        self.set("cache", "state_dir", quoted_path(dir))
    }

    /// The config file this builder says.
    fn toml_text(&self) -> String {
        let mut text = self.tables.to_string();
        for table in &self.array_tables {
            text.push_str(table);
        }
        for issuer in &self.issuers {
            text.push_str(&issuer.to_string());
        }
        text
    }

    /// Starts the proxy; a config the proxy refuses fails the test, showing the text.
    pub async fn start(self) -> Proxy {
        let text = self.toml_text();
        let config = Config::from_toml(&text, Path::new(".")).unwrap_or_else(|e| panic!("{e}\n{text}"));
        let listeners = match self.listeners {
            Some((https, plain)) => Listeners {
                https: Some(https),
                plain: Some(plain),
                admin: Some(TcpListener::bind("127.0.0.1:0").await.unwrap()),
            },
            None => Listeners::bind(&config).await.unwrap(),
        };
        Proxy::run(config, listeners, self.certs).await
    }
}
