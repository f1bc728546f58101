//! The ceiling server: the same bytes from memory over the same hyper and rustls stack,
//! with no logic at all, so the proxy's cost shows as a ratio. "The same bytes" includes
//! the headers (the proxy's own, captured from one of its responses) and the TLS policy
//! (the proxy's own `server_config`: versions, ALPN, session cache and tickets).

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
    let headers_file = argv.next().unwrap();
    let headers = read_headers(&headers_file);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let key = jwks_edge::tls::load_certified_key(cert.as_ref(), key.as_ref()).unwrap();
        let resolver = Arc::new(jwks_edge::tls::resolver::CertResolver::new(
            jwks_edge::tls::resolver::CertSet::single(key),
        ));
        let acceptor = tokio_rustls::TlsAcceptor::from(jwks_edge::tls::server_config(resolver, false).unwrap());
        let https = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let plain = TcpListener::bind("127.0.0.1:0").await.unwrap();
        println!("https={}", https.local_addr().unwrap());
        println!("plain={}", plain.local_addr().unwrap());
        let body = Bytes::from_static(JWKS.as_bytes());
        let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
        let serve = |listener: TcpListener, tls: Option<tokio_rustls::TlsAcceptor>| {
            let builder = builder.clone();
            let body = body.clone();
            let headers = headers.clone();
            async move {
                loop {
                    let Ok((stream, _)) = listener.accept().await else {
                        continue;
                    };
                    let _ = stream.set_nodelay(true);
                    let builder = builder.clone();
                    let body = body.clone();
                    let headers = headers.clone();
                    let tls = tls.clone();
                    tokio::spawn(async move {
                        let service = hyper::service::service_fn(move |_req: Request<hyper::body::Incoming>| {
                            let mut response = Response::new(Full::new(body.clone()));
                            *response.headers_mut() = headers.clone();
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

/// The headers to send, one `name: value` per line (`Date` and `Content-Length` are left
/// to hyper, as for the proxy).
fn read_headers(path: &str) -> http::HeaderMap {
    let text = std::fs::read_to_string(path).expect("the headers file is readable");
    let mut headers = http::HeaderMap::new();
    for line in text.lines() {
        let (name, value) = line.split_once(": ").expect("a header line");
        headers.append(
            http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            http::HeaderValue::from_str(value).unwrap(),
        );
    }
    headers
}

/// Writes the headers of a proxy response for `read_headers`.
pub fn write_headers(path: &std::path::Path, headers: &http::HeaderMap) {
    let mut text = String::new();
    for (name, value) in headers {
        if name == http::header::DATE || name == http::header::CONTENT_LENGTH {
            continue;
        }
        text.push_str(&format!("{name}: {}\n", value.to_str().unwrap()));
    }
    std::fs::write(path, text).unwrap();
}
