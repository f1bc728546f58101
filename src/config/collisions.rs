//! Config-time route integrity: no two issuers on one host claim the same document path,
//! and no two issuers published to one sink would write the same object.

use crate::config::error::{invalid, ConfigError};
use crate::config::settings::{Issuer, Publish};

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

/// Refuses two `[[publish]]` with one bucket and prefix, and two issuers of one sink whose
/// documents would be written to the same object (issuers on different hosts with the
/// same public path: a bucket has no hosts). Key set paths learned from discovery
/// documents are checked the same way when they are published.
pub(super) fn validate_objects(publish: &[Publish], issuers: &[Issuer]) -> Result<(), ConfigError> {
    for (i, sink) in publish.iter().enumerate() {
        if let Some(j) = publish[..i].iter().position(|other| {
            (other.cloud, &other.bucket, &other.prefix, &other.endpoint)
                == (sink.cloud, &sink.bucket, &sink.prefix, &sink.endpoint)
        }) {
            return Err(invalid(
                format!("publish[{i}].url"),
                &sink.url,
                format!("publish[{j}] already writes to this bucket and prefix; list both issuers in one [[publish]]"),
            ));
        }
        let mut objects: Vec<(String, usize, &str)> = Vec::new();
        for &index in &sink.issuers {
            let issuer = &issuers[index];
            let paths = [
                Some(("discovery document", issuer.discovery_path())),
                issuer.public_jwks_path.clone().map(|p| ("key set", p)),
            ];
            for (what, path) in paths.into_iter().flatten() {
                let object = sink.object_key(&path);
                if let Some((_, other, other_what)) = objects.iter().find(|(o, _, _)| *o == object) {
                    return Err(invalid(
                        format!("publish[{i}].issuers"),
                        &issuer.name,
                        format!(
                            "issuer {:?} ({what}) and issuer {:?} ({other_what}) would both be written to object {object:?} in {}: \
                             publish them to different prefixes (one [[publish]] each)",
                            issuer.name, issuers[*other].name, sink.url
                        ),
                    ));
                }
                objects.push((object, index, what));
            }
        }
    }
    Ok(())
}
