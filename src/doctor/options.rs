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
}
