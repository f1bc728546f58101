//! `JwksTarget`: where an issuer's key set is published and fetched, as its discovery
//! document and config decide (`upstream::rewrite` derives it).

/// Which of the three `jwks_uri` shapes an upstream advertises.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JwksShape {
    /// Under the upstream base (Keycloak's backend URL).
    UnderUpstream,
    /// Already under the public base (GitLab whose `external_url` is public).
    AlreadyPublic,
    /// Anywhere else (a Kubernetes in-cluster address).
    Elsewhere,
}

impl JwksShape {
    pub fn as_str(self) -> &'static str {
        match self {
            JwksShape::UnderUpstream => "under-upstream",
            JwksShape::AlreadyPublic => "already-public",
            JwksShape::Elsewhere => "elsewhere",
        }
    }
}

/// Where an issuer's key set lives, derived from its discovery document and config.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JwksTarget {
    pub shape: JwksShape,
    /// What the public discovery document says `jwks_uri` is.
    pub public_url: String,
    /// The path the proxy serves the key set at, on the issuer's public host.
    pub public_path: String,
    /// Where the proxy fetches the key set. Never the public URL: that would loop back
    /// through the proxy.
    pub upstream_url: String,
}
