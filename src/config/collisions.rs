//! Config-time route integrity: no two issuers on one host claim the same document path.

use crate::config::error::{invalid, ConfigError};
use crate::config::settings::Issuer;

/// Refuses a `public_jwks_path` that another issuer on the same host also publishes at,
/// or that is another issuer's discovery path: the first match would win the route and
/// the other issuer's relying parties would get the wrong document. Paths learned from
/// discovery documents are checked the same way at run time (`routes::Router::conflict`).
pub(super) fn validate_routes(issuers: &[Issuer]) -> Result<(), ConfigError> {
    for (i, issuer) in issuers.iter().enumerate() {
        let Some(path) = &issuer.public_jwks_path else {
            continue;
        };
        let key = format!("issuer[{i}].public_jwks_path");
        for (j, other) in issuers.iter().enumerate() {
            if j == i || other.public.host() != issuer.public.host() {
                continue;
            }
            let taken = if other.discovery_path() == *path {
                "discovery path"
            } else if j < i && other.public_jwks_path.as_ref() == Some(path) {
                "public_jwks_path"
            } else {
                continue;
            };
            return Err(invalid(
                key,
                path,
                format!(
                    "is also the {taken} of issuer[{j}] ({:?}) on host {}: each path serves one issuer (issuer[{i}] is {:?})",
                    other.name,
                    issuer.public.host(),
                    issuer.name
                ),
            ));
        }
    }
    Ok(())
}
