//! `Options`: what the command line asks doctor to check, and how.

use std::path::PathBuf;
use std::time::Duration;

use super::resolver::ResolveOverride;

/// Everything the command line passes in.
#[derive(Clone, Debug)]
pub struct Options {
    pub issuer: String,
    /// The token's text, when one is to be checked.
    pub token: Option<String>,
    pub audiences: Vec<String>,
    /// Trust only this PEM bundle instead of the system roots.
    pub ca_file: Option<PathBuf>,
    pub resolve: Vec<ResolveOverride>,
    pub timeout: Duration,
    pub allow_private: bool,
    /// Addresses treated as public although they are not. The command line always leaves
    /// this empty (no flag sets it): tests on loopback use it to stand one address in for
    /// a public one, so that the refusal of the others can be seen.
    pub assume_public: Vec<std::net::IpAddr>,
    /// How many times the key set is fetched, to catch replicas that disagree.
    pub jwks_fetches: usize,
    /// The role's trust policy document (JSON text), evaluated against the token.
    pub trust_policy: Option<String>,
    /// The IAM OIDC provider's client ID list, which STS checks before the trust policy.
    pub provider_audiences: Vec<String>,
    /// The IAM OIDC provider's thumbprints (SHA-1 hex, either case, colons allowed).
    pub thumbprints: Vec<String>,
    pub cloud: Cloud,
}

/// Whose relying party's limits to check on top of what every relying party needs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Cloud {
    #[default]
    Aws,
    Gcp,
    Azure,
    All,
}

impl Cloud {
    pub fn includes(self, other: Cloud) -> bool {
        self == other || self == Cloud::All
    }
}

/// `--cloud` names none of aws, gcp, azure, all.
#[derive(Debug, thiserror::Error)]
#[error("unknown cloud {0:?}: expected aws, gcp, azure or all")]
pub struct UnknownCloud(String);

impl std::str::FromStr for Cloud {
    type Err = UnknownCloud;

    fn from_str(s: &str) -> Result<Cloud, UnknownCloud> {
        match s.to_ascii_lowercase().as_str() {
            "aws" => Ok(Cloud::Aws),
            "gcp" => Ok(Cloud::Gcp),
            "azure" => Ok(Cloud::Azure),
            "all" => Ok(Cloud::All),
            _ => Err(UnknownCloud(s.to_owned())),
        }
    }
}
