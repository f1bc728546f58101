//! `AcmeError`: why obtaining a certificate, or setting ACME up, failed.

use std::path::PathBuf;
use std::time::Duration;

use instant_acme::{AuthorizationStatus, OrderStatus};

use crate::tls::material::TlsError;
use crate::tls::resolver::CertError;

#[derive(Debug, thiserror::Error)]
pub enum AcmeError {
    #[error("the ACME exchange with the CA failed")]
    Protocol(#[from] instant_acme::Error),
    #[error("cannot use the ACME cache {path:?}")]
    Cache {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read the ACME account in {path:?}")]
    Account {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("cannot set up trust for the ACME directory")]
    Trust(#[source] TlsError),
    #[error("the CA offers no {challenge} challenge for {domain}")]
    NoChallenge { challenge: &'static str, domain: String },
    #[error("the authorization for {domain} is {status:?}")]
    Authorization {
        domain: String,
        status: AuthorizationStatus,
    },
    #[error("the order became {status:?}{}", details.iter().map(|d| format!("; {d}")).collect::<String>())]
    Order { status: OrderStatus, details: Vec<String> },
    #[error("cannot make a key or certificate request")]
    Csr(#[source] rcgen::Error),
    #[error("the CA's certificate cannot be used")]
    Certificate(#[source] CertError),
    #[error("the order took longer than {0:?}")]
    Timeout(Duration),
}
