//! Pebble, the ACME test CA, on loopback: the ACME tests order real certificates from it.
//!
//! `pebble-challtestsrv` runs beside it as its DNS server only, answering every name with
//! 127.0.0.1 (and no AAAA), so pebble validates any test name against our loopback ports.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use http::StatusCode;

use crate::pebble_probe::{accepting, answers_loopback, dns_query, free_udp_and_tcp};
use crate::support::{get, TestCa, Transport, Wait, IO_TIMEOUT};

/// Pebble starts in about 0.2 s (two RSA keys for its CA); generous for a loaded machine,
/// as for the `serve` process.
const START_TIMEOUT: Duration = Duration::from_secs(20);
const POLL: Duration = Duration::from_millis(20);
const MAX_POLLS: u32 = 1_000;

/// Ports are picked by binding and releasing them; another process may take one before
/// pebble binds it, so a start that loses that race is retried this many times in all.
const START_ATTEMPTS: u32 = 3;

/// What pebble and challtestsrv log when a port was taken; challtestsrv keeps running
/// without its DNS server then, so the logs are checked, not only the exit.
const ADDR_IN_USE: &str = "address already in use";

/// The name the start-up check resolves: any name must resolve to 127.0.0.1.
const PROBE_NAME: &str = "probe.pebble.test";

/// Lines of each log shown when start-up fails.
const LOG_TAIL: usize = 40;

/// Environment that would change what pebble checks; cleared so the tests are hermetic.
const PEBBLE_ENV_CLEARED: &[&str] = &[
    "PEBBLE_VA_ALWAYS_VALID",
    "PEBBLE_VA_SLEEPTIME",
    "PEBBLE_CHAIN_LENGTH",
    "PEBBLE_ALTERNATE_ROOTS",
    "PEBBLE_WFE_ORDERS_PER_PAGE",
];

/// A running pebble and its DNS server, killed when dropped.
pub struct Pebble {
    /// The ACME directory URL, `https://127.0.0.1:<port>/dir`.
    pub directory: String,
    /// PEM file of the CA that signed pebble's own HTTPS certificate: the ACME client must
    /// trust it to talk to `directory` (it is not the CA pebble issues under).
    pub directory_ca: PathBuf,
    /// Pebble's management API (`/roots/0`, `/intermediates/0`), HTTPS with `ca`.
    management: SocketAddr,
    ca: TestCa,
    /// `(log name, process)`; emptied by `stop`.
    children: Vec<(&'static str, Child)>,
    /// How pebble itself was started, to start it again (`restart`).
    server: Command,
    listen: SocketAddr,
    /// Config, certificates and logs; removed after the processes are killed.
    dir: tempfile::TempDir,
}

/// Pebble's and challtestsrv's executables.
struct Binaries {
    pebble: PathBuf,
    challtestsrv: PathBuf,
}

/// The addresses one start uses, free when picked.
struct Ports {
    listen: SocketAddr,
    management: SocketAddr,
    /// challtestsrv answers DNS on both TCP and UDP here.
    dns: SocketAddr,
    dns_management: SocketAddr,
}

impl Pebble {
    /// Starts challtestsrv (DNS: every name -> 127.0.0.1) and pebble validating challenges on
    /// 127.0.0.1:`tls_port` (TLS-ALPN-01) and 127.0.0.1:`http_port` (HTTP-01). Waits (bounded)
    /// until the directory answers.
    ///
    /// Panics when pebble or challtestsrv is missing: a test that cannot run is never green
    /// (`.ci/install-test-deps` installs them).
    ///
    /// Every order is validated for real: no random validation sleeps, no rejected nonces and
    /// no reused authorizations. Pebble validates each challenge with three requests at once,
    /// so responders must answer more than once; HTTP-01 requests carry `Host: name:http_port`.
    ///
    /// `validity` shortens the certificates pebble issues (default five years).
    pub async fn start(tls_port: u16, http_port: u16, validity: Option<Duration>) -> Pebble {
        let binaries = Binaries::find();
        let mut attempt = 1;
        loop {
            match Pebble::launch(&binaries, tls_port, http_port, validity).await {
                Ok(pebble) => return pebble,
                Err(logs) if attempt < START_ATTEMPTS => {
                    eprintln!("pebble lost a port to another process (attempt {attempt}), retrying:\n{logs}");
                    attempt += 1;
                }
                Err(logs) => panic!("pebble lost a port to another process {START_ATTEMPTS} times:\n{logs}"),
            }
        }
    }

    /// The root and the intermediate pebble issues under, as PEM, from the management API.
    ///
    /// Both are made afresh at each start. Issued chains (from the order's certificate URL)
    /// already hold the leaf and this intermediate, never the root: trust the root alone to
    /// check a served chain; the intermediate is here for checks that want the whole path.
    pub async fn issuing_roots_pem(&self) -> String {
        let mut pem = String::new();
        for path in ["/roots/0", "/intermediates/0"] {
            let reply = get(self.management, &self.transport(), "localhost", path).await;
            let body = String::from_utf8_lossy(&reply.body);
            assert_eq!(reply.status, StatusCode::OK, "pebble management {path}: {body}");
            assert!(
                body.contains("-----BEGIN CERTIFICATE-----"),
                "pebble management {path} is not PEM: {body}"
            );
            pem.push_str(body.trim_end());
            pem.push('\n');
        }
        pem
    }

    /// Restarts pebble (not its DNS server) on the same addresses: the directory URL stays,
    /// while every account, order and the issuing root are new, as when a private CA loses
    /// its database.
    pub async fn restart(&mut self) {
        let index = self.children.iter().position(|(log, _)| *log == "pebble.log").unwrap();
        let (_, mut old) = self.children.remove(index);
        let _ = old.kill();
        let _ = old.wait();
        let mut server = std::mem::replace(&mut self.server, Command::new("true"));
        self.spawn("pebble.log", &mut server);
        self.server = server;
        let (listen, management) = (self.listen, self.management);
        if let Err(logs) = self.until_listening(&[listen, management]).await {
            panic!("pebble could not listen again:\n{logs}");
        }
        self.check_directory(listen).await;
    }

    /// Kills both processes and waits for them (also done on drop).
    pub fn stop(&mut self) {
        for (_, child) in &mut self.children {
            let _ = child.kill();
        }
        for (_, mut child) in self.children.drain(..) {
            let _ = child.wait();
        }
    }

    /// One start on freshly picked ports. `Err` (with the logs) when a process lost one of
    /// its ports to another process; any other failure panics with the logs.
    async fn launch(
        binaries: &Binaries,
        tls_port: u16,
        http_port: u16,
        validity: Option<Duration>,
    ) -> Result<Pebble, String> {
        let dir = tempfile::tempdir().unwrap();
        let ca = TestCa::new("pebble HTTPS test CA");
        let directory_ca = dir.path().join("pebble-ca.pem");
        std::fs::write(&directory_ca, ca.pem()).unwrap();
        let (cert, key) = ca.issue(&["127.0.0.1", "localhost"]).write(dir.path(), "pebble");

        let ports = Ports::pick();
        let mut config = serde_json::json!({
            "pebble": {
                "listenAddress": ports.listen.to_string(),
                "managementListenAddress": ports.management.to_string(),
                "certificate": cert,
                "privateKey": key,
                "httpPort": http_port,
                "tlsPort": tls_port,
                "ocspResponderURL": "",
                "externalAccountBindingRequired": false,
            }
        });
        if let Some(validity) = validity {
            // Pebble ignores misspelt keys; its start-up log confirms this one.
            config["pebble"]["certificateValidityPeriod"] = validity.as_secs().into();
        }
        let config_path = dir.path().join("pebble-config.json");
        std::fs::write(&config_path, serde_json::to_string_pretty(&config).unwrap()).unwrap();

        let mut pebble = Pebble {
            directory: format!("https://{}/dir", ports.listen),
            directory_ca,
            management: ports.management,
            ca,
            children: Vec::new(),
            server: Command::new(&binaries.pebble),
            listen: ports.listen,
            dir,
        };
        // An empty -management would make challtestsrv listen on *:80, so it gets a port too;
        // its HTTP-01, HTTPS and TLS-ALPN-01 responders are off so our proxy answers instead.
        let dns = ports.dns.to_string();
        let dns_management = ports.dns_management.to_string();
        let mut challtestsrv = pebble.command(&binaries.challtestsrv, "challtestsrv.log");
        challtestsrv.args([
            "-dns01",
            dns.as_str(),
            "-http01",
            "",
            "-https01",
            "",
            "-tlsalpn01",
            "",
            "-management",
            dns_management.as_str(),
            "-defaultIPv4",
            "127.0.0.1",
            "-defaultIPv6",
            "",
        ]);
        pebble.spawn("challtestsrv.log", &mut challtestsrv);
        let mut server = pebble.command(&binaries.pebble, "pebble.log");
        server
            .arg("-config")
            .arg(&config_path)
            .args(["-dnsserver", dns.as_str()])
            .env("PEBBLE_VA_NOSLEEP", "1")
            .env("PEBBLE_WFE_NONCEREJECT", "0")
            .env("PEBBLE_AUTHZREUSE", "0");
        for name in PEBBLE_ENV_CLEARED {
            server.env_remove(name);
        }
        pebble.spawn("pebble.log", &mut server);
        pebble.server = server;

        pebble
            .until_listening(&[ports.dns, ports.dns_management, ports.listen, ports.management])
            .await?;
        pebble.check_dns(ports.dns).await?;
        pebble.check_directory(ports.listen).await;
        Ok(pebble)
    }

    /// A command for `binary` in the temporary directory, its output to `log` there.
    fn command(&self, binary: &Path, log: &str) -> Command {
        let out = std::fs::File::create(self.dir.path().join(log)).unwrap();
        let err = out.try_clone().unwrap();
        let mut command = Command::new(binary);
        command
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        command
    }

    fn spawn(&mut self, log: &'static str, command: &mut Command) {
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {:?}: {e}", command.get_program()));
        self.children.push((log, child));
    }

    /// Waits (bounded) until every address accepts TCP; `Err` with the logs if a process
    /// found an address taken.
    async fn until_listening(&mut self, addrs: &[SocketAddr]) -> Result<(), String> {
        // Done once every address accepts (`Ok(Ok)`) or a port was taken (`Ok(Err(logs))`);
        // until then the logs, shown if the wait runs out.
        Wait::up_to(START_TIMEOUT)
            .every(POLL)
            .at_most(MAX_POLLS)
            .until(&format!("pebble to listen on {addrs:?}"), async || {
                let exited = self
                    .children
                    .iter_mut()
                    .find_map(|(log, child)| child.try_wait().unwrap().map(|status| (*log, status)));
                let logs = self.logs();
                if logs.contains(ADDR_IN_USE) {
                    return Ok(Err(logs));
                }
                if let Some((log, status)) = exited {
                    panic!("{log:?} process exited during start-up ({status}):\n{logs}");
                }
                if accepting(addrs).await {
                    return Ok(Ok(()));
                }
                Err(format!("\n{logs}"))
            })
            .await
    }

    /// challtestsrv answers an A query for any name with 127.0.0.1 (over UDP, as pebble asks),
    /// so pebble will validate against our ports; `Err` with the logs if its port was taken.
    async fn check_dns(&self, dns: SocketAddr) -> Result<(), String> {
        let query = dns_query(PROBE_NAME);
        let exchange = async {
            let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await?;
            socket.connect(dns).await?;
            socket.send(&query).await?;
            let mut buf = [0u8; 512];
            let len = socket.recv(&mut buf).await?;
            Ok::<_, std::io::Error>(buf[..len].to_vec())
        };
        let reply = tokio::time::timeout(IO_TIMEOUT, exchange).await;
        if let Ok(Ok(reply)) = &reply {
            if answers_loopback(&query, reply) {
                return Ok(());
            }
        }
        let logs = self.logs();
        if logs.contains(ADDR_IN_USE) {
            return Err(logs);
        }
        panic!("challtestsrv did not resolve {PROBE_NAME} to 127.0.0.1 ({reply:?}):\n{logs}");
    }

    /// The directory answers over HTTPS with our CA: the certificate, key and config work.
    async fn check_directory(&self, listen: SocketAddr) {
        let transport = self.transport();
        // In a task so a failed handshake or request (which `get` panics on) shows the logs.
        let reply = tokio::spawn(async move { get(listen, &transport, "localhost", "/dir").await }).await;
        let reply = reply.unwrap_or_else(|e| panic!("pebble's directory did not answer ({e}):\n{}", self.logs()));
        let body = String::from_utf8_lossy(&reply.body);
        assert!(
            reply.status == StatusCode::OK && body.contains("newOrder"),
            "pebble's directory answered {} {body}:\n{}",
            reply.status,
            self.logs()
        );
    }

    /// HTTPS to pebble's own listeners, trusting the CA made for them.
    fn transport(&self) -> Transport {
        Transport::Tls {
            config: self.ca.client_config(&[b"http/1.1"]),
            sni: "localhost".into(),
        }
    }

    /// The last lines of each process's log.
    fn logs(&self) -> String {
        let mut out = String::new();
        for (log, _) in &self.children {
            let text = std::fs::read_to_string(self.dir.path().join(log)).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            let tail = &lines[lines.len().saturating_sub(LOG_TAIL)..];
            out.push_str(&format!("--- {log} (last {} lines) ---\n", tail.len()));
            for line in tail {
                out.push_str(line);
                out.push('\n');
            }
        }
        out
    }
}

impl Drop for Pebble {
    fn drop(&mut self) {
        self.stop();
    }
}

impl Binaries {
    /// Both executables on `PATH` or in /usr/bin (Debian's `pebble` package).
    fn find() -> Binaries {
        let pebble = find_executable("pebble");
        let challtestsrv = find_executable("pebble-challtestsrv");
        if let (Some(pebble), Some(challtestsrv)) = (&pebble, &challtestsrv) {
            return Binaries {
                pebble: pebble.clone(),
                challtestsrv: challtestsrv.clone(),
            };
        }
        let missing: Vec<&str> = [("pebble", &pebble), ("pebble-challtestsrv", &challtestsrv)]
            .into_iter()
            .filter(|(_, found)| found.is_none())
            .map(|(name, _)| name)
            .collect();
        panic!(
            "{} is not installed (not on PATH nor in /usr/bin): run .ci/install-test-deps, which installs Debian's pebble",
            missing.join(" and ")
        );
    }
}

fn find_executable(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/bin")])
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

impl Ports {
    /// Four distinct free loopback ports, released on return for the processes to bind.
    fn pick() -> Ports {
        let listen = TcpListener::bind("127.0.0.1:0").unwrap();
        let management = TcpListener::bind("127.0.0.1:0").unwrap();
        let dns_management = TcpListener::bind("127.0.0.1:0").unwrap();
        let (dns_udp, dns_tcp) = free_udp_and_tcp();
        let ports = Ports {
            listen: listen.local_addr().unwrap(),
            management: management.local_addr().unwrap(),
            dns: dns_udp.local_addr().unwrap(),
            dns_management: dns_management.local_addr().unwrap(),
        };
        drop((listen, management, dns_management, dns_udp, dns_tcp));
        ports
    }
}
