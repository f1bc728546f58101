//! `Transport`: object_store's HTTP over the hyper-util client and rustls (ring) the
//! upstream fetches use, instead of its reqwest transport, which would bring aws-lc-rs.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use http::header::{HeaderValue, USER_AGENT};
use http_body_util::{BodyExt, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector as TcpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use object_store::client::{
    ClientConfigKey, ClientOptions, HttpClient, HttpConnector, HttpError, HttpErrorKind, HttpRequest, HttpRequestBody,
    HttpResponse, HttpResponseBody, HttpService,
};

/// Bounds one exchange, connect included, when the store's options name none.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// The largest response body read: the stores answer a PUT or HEAD with a few bytes, and
/// the documents they hold are bounded by `cache.max_document_bytes` far below this.
const MAX_RESPONSE_BYTES: usize = 8 << 20;

const AGENT: &str = concat!("jwks-edge/", env!("CARGO_PKG_VERSION"));

/// Builds one pooled client per store (object_store asks once per credential source and
/// once for the store itself), trusting what `tls` trusts.
#[derive(Debug, Clone)]
pub struct Transport {
    tls: rustls::ClientConfig,
}

impl Transport {
    pub fn new(tls: rustls::ClientConfig) -> Transport {
        Transport { tls }
    }
}

impl HttpConnector for Transport {
    fn connect(&self, options: &ClientOptions) -> object_store::Result<HttpClient> {
        let duration = |key| {
            options
                .get_config_value(&key)
                .and_then(|v| humantime::parse_duration(&v).ok())
        };
        let timeout = duration(ClientConfigKey::Timeout).unwrap_or(DEFAULT_TIMEOUT);
        let connect_timeout = duration(ClientConfigKey::ConnectTimeout).unwrap_or(DEFAULT_CONNECT_TIMEOUT);
        let allow_http = options
            .get_config_value(&ClientConfigKey::AllowHttp)
            .is_some_and(|v| v == "true");
        let mut tcp = TcpConnector::new();
        tcp.enforce_http(false);
        tcp.set_nodelay(true);
        tcp.set_connect_timeout(Some(connect_timeout));
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(self.tls.clone())
            .https_or_http()
            .enable_http1()
            .wrap_connector(tcp);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(4)
            .build(https);
        Ok(HttpClient::new(Service {
            client,
            timeout,
            allow_http,
            default_headers: options.get_default_headers().cloned().unwrap_or_default(),
        }))
    }
}

#[derive(Debug)]
struct Service {
    client: Client<HttpsConnector<TcpConnector>, HttpRequestBody>,
    timeout: Duration,
    /// Plain http only where the builder allowed it (an `http://` endpoint, the cloud's
    /// instance metadata service): credentials must not cross a network in clear text.
    allow_http: bool,
    default_headers: http::HeaderMap,
}

#[derive(Debug, thiserror::Error)]
enum TransportError {
    #[error("plain http to {0} is not allowed")]
    PlainHttp(String),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("response body larger than {MAX_RESPONSE_BYTES} bytes")]
    TooLarge,
}

/// What `#[async_trait]` would write for `async fn call`, spelled out to spare the macro.
type Call<'a> = Pin<Box<dyn Future<Output = Result<HttpResponse, HttpError>> + Send + 'a>>;

impl HttpService for Service {
    fn call<'s, 'a>(&'s self, request: HttpRequest) -> Call<'a>
    where
        's: 'a,
        Self: 'a,
    {
        Box::pin(self.send(request))
    }
}

impl Service {
    async fn send(&self, mut request: HttpRequest) -> Result<HttpResponse, HttpError> {
        if request.uri().scheme_str() != Some("https") && !self.allow_http {
            let host = request.uri().host().unwrap_or_default().to_owned();
            return Err(HttpError::new(HttpErrorKind::Connect, TransportError::PlainHttp(host)));
        }
        for (name, value) in &self.default_headers {
            if !request.headers().contains_key(name) {
                request.headers_mut().insert(name, value.clone());
            }
        }
        if !request.headers().contains_key(USER_AGENT) {
            request
                .headers_mut()
                .insert(USER_AGENT, HeaderValue::from_static(AGENT));
        }
        let exchange = async {
            let response = self.client.request(request).await.map_err(|err| {
                let kind = if err.is_connect() {
                    HttpErrorKind::Connect
                } else {
                    HttpErrorKind::Request
                };
                HttpError::new(kind, err)
            })?;
            let (parts, body) = response.into_parts();
            // Read whole: the answers are small, and a buffered body is what the
            // response type can hold without a streaming adapter of our own.
            let body = Limited::new(body, MAX_RESPONSE_BYTES)
                .collect()
                .await
                .map_err(|err| {
                    if err.is::<http_body_util::LengthLimitError>() {
                        HttpError::new(HttpErrorKind::Decode, TransportError::TooLarge)
                    } else {
                        HttpError::new_boxed(HttpErrorKind::Interrupted, err)
                    }
                })?
                .to_bytes();
            Ok::<_, HttpError>(HttpResponse::from_parts(parts, HttpResponseBody::from(body)))
        };
        match tokio::time::timeout(self.timeout, exchange).await {
            Ok(result) => result,
            Err(_) => Err(HttpError::new(
                HttpErrorKind::Timeout,
                TransportError::Timeout(self.timeout),
            )),
        }
    }
}
