//! The HTTPS client `instant-acme` talks to the CA through: the public roots plus
//! `directory_ca`, each request bounded in time.

use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use instant_acme::{BodyWrapper, BytesResponse, HttpClient};

/// Every request to the CA gets its response head within this (bodies are small; the
/// whole order is bounded by `order::ORDER_TIMEOUT`).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// HTTPS to the CA with `trust`, every request bounded.
pub(super) fn client(trust: &rustls::ClientConfig) -> Box<dyn HttpClient> {
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(trust.clone())
        .https_only()
        .enable_http1()
        .enable_http2()
        .build();
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .timer(hyper_util::rt::TokioTimer::new())
        .pool_idle_timeout(Duration::from_secs(30))
        .build(connector);
    Box::new(BoundedClient(client))
}

/// The HTTP client `instant-acme` talks through, with each request bounded in time (the
/// crate's own client waits as long as the CA does).
struct BoundedClient(
    hyper_util::client::legacy::Client<
        hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
        BodyWrapper<Bytes>,
    >,
);

impl HttpClient for BoundedClient {
    fn request(
        &self,
        request: http::Request<BodyWrapper<Bytes>>,
    ) -> Pin<Box<dyn std::future::Future<Output = Result<BytesResponse, instant_acme::Error>> + Send>> {
        let response = self.0.request(request);
        Box::pin(async move {
            match tokio::time::timeout(REQUEST_TIMEOUT, response).await {
                Ok(Ok(response)) => Ok(BytesResponse::from(response)),
                Ok(Err(err)) => Err(instant_acme::Error::Other(Box::new(err))),
                Err(_) => Err(instant_acme::Error::Other(
                    format!("the CA did not answer within {REQUEST_TIMEOUT:?}").into(),
                )),
            }
        })
    }
}
