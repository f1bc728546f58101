//! `[[publish]]`: one object storage sink, its optional endpoint and region, and the issuers it holds.

use crate::config::error::{invalid, ConfigError};
use crate::config::raw::RawPublish;
use crate::config::settings::{Cloud, Issuer, Publish};

/// Validates `publish[i]` against the issuers already validated (whose names it may list).
pub(in crate::config) fn validate_publish(
    i: usize,
    raw: RawPublish,
    issuers: &[Issuer],
) -> Result<Publish, ConfigError> {
    let key = |k: &str| format!("publish[{i}].{k}");
    let (cloud, bucket, prefix) = parse_url(&raw.url).map_err(|reason| invalid(key("url"), &raw.url, reason))?;
    let endpoint = match raw.endpoint {
        None => None,
        Some(endpoint) => {
            let Some(rest) = endpoint
                .strip_prefix("https://")
                .or_else(|| endpoint.strip_prefix("http://"))
            else {
                return Err(invalid(
                    key("endpoint"),
                    &endpoint,
                    "expected an http:// or https:// URL",
                ));
            };
            let authority = rest.split('/').next().unwrap_or_default();
            if authority.is_empty() || rest.contains(['?', '#']) || endpoint.parse::<http::Uri>().is_err() {
                return Err(invalid(
                    key("endpoint"),
                    &endpoint,
                    "expected a URL such as \"http://127.0.0.1:8333\" or \"https://s3.example.com\", without query",
                ));
            }
            Some(endpoint.trim_end_matches('/').to_owned())
        }
    };
    let region = match raw.region {
        None => None,
        Some(region) if cloud != Cloud::S3 => {
            return Err(invalid(
                key("region"),
                region,
                format!("only s3:// sinks have a region, not {}://", cloud.as_str()),
            ))
        }
        Some(region) if region.is_empty() || !region.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') => {
            return Err(invalid(
                key("region"),
                region,
                "expected a region name such as \"us-east-1\"",
            ))
        }
        Some(region) => Some(region),
    };
    let chosen = match raw.issuers {
        None => (0..issuers.len()).collect(),
        Some(names) if names.is_empty() => {
            return Err(invalid(
                key("issuers"),
                "[]",
                "names no issuer: leave it out to publish every issuer",
            ))
        }
        Some(names) => {
            let mut chosen: Vec<usize> = Vec::with_capacity(names.len());
            for name in &names {
                let Some(index) = issuers.iter().position(|issuer| &issuer.name == name) else {
                    let known: Vec<&str> = issuers.iter().map(|i| i.name.as_str()).take(10).collect();
                    return Err(invalid(
                        key("issuers"),
                        name,
                        format!("is no issuer's name (names: {})", known.join(", ")),
                    ));
                };
                if chosen.contains(&index) {
                    return Err(invalid(key("issuers"), name, "is listed twice"));
                }
                chosen.push(index);
            }
            chosen.sort_unstable();
            chosen
        }
    };
    Ok(Publish {
        url: raw.url,
        cloud,
        bucket,
        prefix,
        endpoint,
        region,
        issuers: chosen,
    })
}

/// `scheme://bucket/prefix` into its parts; the prefix without leading or trailing `/`.
fn parse_url(url: &str) -> Result<(Cloud, String, String), String> {
    let Some((scheme, rest)) = url.split_once("://") else {
        return Err("expected s3://bucket/prefix, gs://bucket/prefix or az://container/prefix".into());
    };
    let cloud = match scheme {
        "s3" => Cloud::S3,
        "gs" => Cloud::Gcs,
        "az" => Cloud::Azure,
        other => {
            return Err(format!(
                "unknown scheme {other:?}: expected s3://bucket/prefix, gs://bucket/prefix or az://container/prefix"
            ))
        }
    };
    if rest.contains(['?', '#', '%', ' ', '\\']) {
        return Err("the bucket and prefix may not hold '?', '#', '%', spaces or '\\'".into());
    }
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    // `$web` is the container an Azure storage account's static website serves.
    let bucket_ok = (cloud == Cloud::Azure && bucket == "$web")
        || !bucket.is_empty()
            && bucket
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '.' | '_'));
    if !bucket_ok {
        return Err(format!(
            "{bucket:?} is not a bucket name: lower-case letters, digits, '-', '.' and '_'"
        ));
    }
    let prefix = prefix.trim_end_matches('/');
    if !prefix.is_empty() && prefix.split('/').any(|s| s.is_empty() || s == "." || s == "..") {
        return Err(format!("the prefix {prefix:?} has an empty, '.' or '..' segment"));
    }
    Ok((cloud, bucket.to_owned(), prefix.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::parse_url;
    use crate::config::settings::Cloud;

    #[test]
    fn urls_split_into_cloud_bucket_and_prefix() {
        let parts = |url| parse_url(url).unwrap();
        assert_eq!(parts("s3://b"), (Cloud::S3, "b".into(), "".into()));
        assert_eq!(parts("s3://b/"), (Cloud::S3, "b".into(), "".into()));
        assert_eq!(
            parts("gs://my-bucket/a/b/"),
            (Cloud::Gcs, "my-bucket".into(), "a/b".into())
        );
        assert_eq!(parts("az://docs/oidc"), (Cloud::Azure, "docs".into(), "oidc".into()));
        assert_eq!(parts("az://$web"), (Cloud::Azure, "$web".into(), "".into()));
        for bad in [
            "s3://$web",
            "https://b/x",
            "s3:/b",
            "s3://",
            "s3://B",
            "s3://b//x",
            "s3://b/../x",
            "s3://b/x?y",
            "s3://b/a%2f",
        ] {
            assert!(parse_url(bad).is_err(), "{bad}");
        }
    }
}
