//! The ceiling server: the same bytes from memory over the same hyper and rustls stack,
//! with no logic at all, so the proxy's cost shows as a ratio.

use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

use crate::common::JWKS;

/// The ceiling: the same bytes, from memory, with no logic at all.
pub fn ceiling() {
    let mut argv = std::env::args().skip(1);
    let cert = argv.next().unwrap();
    let key = argv.next().unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let key = jwks_edge::tls::load_certified_key(cert.as_ref(), key.as_ref()).unwrap();
        let mut config = rustls::ServerConfig::builder_with_provider(jwks_edge::tls::provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(jwks_edge::tls::resolver::CertResolver::new(
                jwks_edge::tls::resolver::CertSet::single(key),
            )));
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let https = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let plain = TcpListener::bind("127.0.0.1:0").await.unwrap();
        println!("https={}", https.local_addr().unwrap());
        println!("plain={}", plain.local_addr().unwrap());
        let body = Bytes::from_static(JWKS.as_bytes());
        let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
        let serve = |listener: TcpListener, tls: Option<tokio_rustls::TlsAcceptor>| {
            let builder = builder.clone();
            let body = body.clone();
            async move {
                loop {
                    let Ok((stream, _)) = listener.accept().await else {
                        continue;
                    };
                    let _ = stream.set_nodelay(true);
                    let builder = builder.clone();
                    let body = body.clone();
                    let tls = tls.clone();
                    tokio::spawn(async move {
                        let service = hyper::service::service_fn(move |_req: Request<hyper::body::Incoming>| {
                            let mut response = Response::new(Full::new(body.clone()));
                            let h = response.headers_mut();
                            h.insert("content-type", http::HeaderValue::from_static("application/json"));
                            h.insert("cache-control", http::HeaderValue::from_static("public, max-age=300"));
                            async move { Ok::<_, std::convert::Infallible>(response) }
                        });
                        match tls {
                            Some(acceptor) => {
                                if let Ok(stream) = acceptor.accept(stream).await {
                                    let _ = builder.serve_connection(TokioIo::new(stream), service).await;
                                }
                            }
                            None => {
                                let _ = builder.serve_connection(TokioIo::new(stream), service).await;
                            }
                        }
                    });
                }
            }
        };
        tokio::join!(serve(https, Some(acceptor)), serve(plain, None));
    });
}
