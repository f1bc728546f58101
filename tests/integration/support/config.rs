//! Config text in the tests' words: `[[issuer]]` tables, and the tables a proxy starts from.

use std::fmt;
use std::path::Path;

use jwks_edge::fake_idp::FakeIdp;

/// A TOML string: quoted and escaped.
pub(super) fn quoted(text: &str) -> String {
    toml::Value::String(text.to_owned()).to_string()
}

/// A path as a TOML string.
pub(super) fn quoted_path(path: &Path) -> String {
    quoted(path.to_str().expect("test paths are UTF-8"))
}

/// One `[[issuer]]` table, e.g. `Issuer::gitlab(&idp).name("gitlab")`. Its `Display` is
/// the TOML, for config files written by hand.
#[derive(Clone, Debug)]
pub struct Issuer {
    public_url: String,
    upstream: String,
    /// `key = value` lines, and raw TOML, in the order given.
    lines: Vec<String>,
}

impl Issuer {
    pub fn new(public_url: &str, upstream: &str) -> Issuer {
        Issuer {
            public_url: public_url.to_owned(),
            upstream: upstream.to_owned(),
            lines: Vec::new(),
        }
    }

    /// GitLab's public URL, `https://gitlab.example.com`, in front of `idp` (a
    /// `gitlab_idp`, or any IdP serving the root of its address).
    pub fn gitlab(idp: &FakeIdp) -> Issuer {
        Issuer::new("https://gitlab.example.com", &idp.base_url())
    }

    /// Keycloak's `realm` at `https://auth.example.com/realms/<realm>`, in front of that
    /// realm on `idp` (a `keycloak_idp`).
    pub fn keycloak(idp: &FakeIdp, realm: &str) -> Issuer {
        Issuer::new(
            &format!("https://auth.example.com/realms/{realm}"),
            &format!("{}/realms/{realm}", idp.base_url()),
        )
    }

    /// A Kubernetes service-account issuer at `https://oidc.k8s.example.com`, in front of
    /// `idp` (a `kubernetes_idp`).
    pub fn kubernetes(idp: &FakeIdp) -> Issuer {
        Issuer::new("https://oidc.k8s.example.com", &idp.base_url())
    }

    fn set(mut self, key: &str, value: String) -> Issuer {
        self.lines.push(format!("{key} = {value}"));
        self
    }

    pub fn name(self, name: &str) -> Issuer {
        self.set("name", quoted(name))
    }

    pub fn public_jwks_path(self, path: &str) -> Issuer {
        self.set("public_jwks_path", quoted(path))
    }

    /// `"all"` or `"signing"`.
    pub fn publish_keys(self, which: &str) -> Issuer {
        self.set("publish_keys", quoted(which))
    }

    pub fn fill_key_use(self) -> Issuer {
        self.set("fill_key_use", "true".to_owned())
    }

    pub fn fill_key_alg(self) -> Issuer {
        self.set("fill_key_alg", "true".to_owned())
    }

    pub fn withdrawn_kids(self, kids: &[&str]) -> Issuer {
        let kids: Vec<String> = kids.iter().map(|kid| quoted(kid)).collect();
        self.set("withdrawn_kids", format!("[{}]", kids.join(", ")))
    }

    pub fn prepublished_jwks_file(self, file: &Path) -> Issuer {
        self.set("prepublished_jwks_file", quoted_path(file))
    }

    pub fn upstream_ca(self, file: &Path) -> Issuer {
        self.set("upstream_ca", quoted_path(file))
    }

    /// `upstream_client_cert` and `upstream_client_key`, for an upstream that requires
    /// mutual TLS.
    pub fn upstream_client_certificate(self, cert: &Path, key: &Path) -> Issuer {
        self.set("upstream_client_cert", quoted_path(cert))
            .set("upstream_client_key", quoted_path(key))
    }

    pub fn upstream_bearer_token_file(self, file: &Path) -> Issuer {
        self.set("upstream_bearer_token_file", quoted_path(file))
    }

    pub fn upstream_host(self, host: &str) -> Issuer {
        self.set("upstream_host", quoted(host))
    }
}

impl fmt::Display for Issuer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "[[issuer]]")?;
        writeln!(f, "public_url = {}", quoted(&self.public_url))?;
        writeln!(f, "upstream = {}", quoted(&self.upstream))?;
        for line in &self.lines {
            writeln!(f, "{line}")?;
        }
        Ok(())
    }
}

/// Plain tables (`[server]`, `[cache]`...) in the order first named, each holding its
/// keys in the order first set; a key set again takes the new value.
#[derive(Debug, Default)]
pub(super) struct Tables {
    tables: Vec<Table>,
}

#[derive(Debug)]
struct Table {
    name: String,
    keys: Vec<(String, String)>,
    /// Lines given as TOML, after the keys.
    raw: Vec<String>,
}

impl Tables {
    fn table(&mut self, name: &str) -> &mut Table {
        let index = match self.tables.iter().position(|t| t.name == name) {
            Some(index) => index,
            None => {
                self.tables.push(Table {
                    name: name.to_owned(),
                    keys: Vec::new(),
                    raw: Vec::new(),
                });
                self.tables.len() - 1
            }
        };
        &mut self.tables[index]
    }

    /// `key = value` in `[table]`; `value` is TOML (quote strings with `quoted`).
    pub(super) fn set(&mut self, table: &str, key: &str, value: String) {
        let keys = &mut self.table(table).keys;
        match keys.iter_mut().find(|(k, _)| k == key) {
            Some((_, old)) => *old = value,
            None => keys.push((key.to_owned(), value)),
        }
    }

    /// Raw TOML lines in `[table]`.
    pub(super) fn raw(&mut self, table: &str, lines: &str) {
        self.table(table).raw.push(lines.to_owned());
    }
}

impl fmt::Display for Tables {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for table in &self.tables {
            writeln!(f, "[{}]", table.name)?;
            for (key, value) in &table.keys {
                writeln!(f, "{key} = {value}")?;
            }
            for lines in &table.raw {
                writeln!(f, "{lines}")?;
            }
        }
        Ok(())
    }
}
