//! `Sink`: one `[[publish]]` bucket as an object store, its credentials from the environment.

use std::sync::Arc;
use std::time::Duration;

use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::azure::{AzureConfigKey, MicrosoftAzureBuilder};
use object_store::gcp::{GoogleCloudStorageBuilder, GoogleConfigKey};
use object_store::{BackoffConfig, ClientConfigKey, ObjectStore, RetryConfig};

use crate::config::{Cloud, Publish};
use crate::publish::transport::Transport;

/// One request to the store, including object_store's own retries of a transient
/// failure; the publisher retries past it with its own backoff.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(20);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
#[error("cannot set up {url} (credentials and settings come from the environment)")]
pub struct SinkError {
    pub url: String,
    #[source]
    pub source: object_store::Error,
}

/// A configured sink, ready to write to.
#[derive(Clone, Debug)]
pub struct Sink {
    /// Its configuration: url (its name everywhere), prefix, issuers.
    pub config: Arc<Publish>,
    pub store: Arc<dyn ObjectStore>,
}

impl Sink {
    /// Builds the store the way each cloud's SDKs find their settings: the environment
    /// (`AWS_*`, `GOOGLE_*`, `AZURE_*`), then web identity / workload identity token
    /// files and the instance metadata service. Nothing is contacted yet.
    pub fn open(config: &Publish, tls: rustls::ClientConfig) -> Result<Sink, SinkError> {
        let transport = Transport::new(tls);
        let plain_endpoint = config.endpoint.as_deref().is_some_and(|e| e.starts_with("http://"));
        // Set key by key: replacing the client options would drop those the environment
        // gave (`AWS_ALLOW_HTTP`, proxies...).
        let timeout = humantime::format_duration(REQUEST_TIMEOUT).to_string();
        let connect_timeout = humantime::format_duration(CONNECT_TIMEOUT).to_string();
        // Few, quick retries inside one attempt; the publisher's backoff does the rest,
        // and records each failed attempt where /readyz shows it.
        let retry = RetryConfig {
            backoff: BackoffConfig {
                init_backoff: Duration::from_millis(200),
                max_backoff: Duration::from_secs(2),
                base: 2.0,
            },
            max_retries: 2,
            retry_timeout: Duration::from_secs(10),
        };
        let built: object_store::Result<Arc<dyn ObjectStore>> = match config.cloud {
            Cloud::S3 => {
                let mut builder = AmazonS3Builder::from_env()
                    .with_bucket_name(&config.bucket)
                    .with_config(AmazonS3ConfigKey::Client(ClientConfigKey::Timeout), &timeout)
                    .with_config(
                        AmazonS3ConfigKey::Client(ClientConfigKey::ConnectTimeout),
                        &connect_timeout,
                    )
                    .with_retry(retry)
                    .with_http_connector(transport);
                if let Some(endpoint) = &config.endpoint {
                    builder = builder.with_endpoint(endpoint);
                }
                if plain_endpoint {
                    builder = builder.with_allow_http(true);
                }
                if let Some(region) = &config.region {
                    builder = builder.with_region(region);
                }
                builder.build().map(|s| Arc::new(s) as _)
            }
            Cloud::Gcs => {
                let mut builder = GoogleCloudStorageBuilder::from_env()
                    .with_bucket_name(&config.bucket)
                    .with_config(GoogleConfigKey::Client(ClientConfigKey::Timeout), &timeout)
                    .with_config(
                        GoogleConfigKey::Client(ClientConfigKey::ConnectTimeout),
                        &connect_timeout,
                    )
                    .with_retry(retry)
                    .with_http_connector(transport);
                if let Some(endpoint) = &config.endpoint {
                    builder = builder.with_base_url(endpoint);
                }
                if plain_endpoint {
                    builder = builder.with_config(GoogleConfigKey::Client(ClientConfigKey::AllowHttp), "true");
                }
                builder.build().map(|s| Arc::new(s) as _)
            }
            Cloud::Azure => {
                let mut builder = MicrosoftAzureBuilder::from_env()
                    .with_container_name(&config.bucket)
                    .with_config(AzureConfigKey::Client(ClientConfigKey::Timeout), &timeout)
                    .with_config(
                        AzureConfigKey::Client(ClientConfigKey::ConnectTimeout),
                        &connect_timeout,
                    )
                    .with_retry(retry)
                    .with_http_connector(transport);
                if let Some(endpoint) = &config.endpoint {
                    builder = builder.with_endpoint(endpoint.clone());
                }
                if plain_endpoint {
                    builder = builder.with_allow_http(true);
                }
                builder.build().map(|s| Arc::new(s) as _)
            }
        };
        let store = built.map_err(|source| SinkError {
            url: config.url.clone(),
            source,
        })?;
        Ok(Sink {
            config: Arc::new(config.clone()),
            store,
        })
    }

    /// The sink's name in logs, metrics and `/readyz`: its url as configured.
    pub fn url(&self) -> &str {
        &self.config.url
    }
}
