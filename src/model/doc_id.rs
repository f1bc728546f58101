//! `DocId`: names one document of one issuer, everywhere a document is stored, counted or shown.

use crate::model::document::DocKind;

/// Names one document: issuer index (order in the config) and kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DocId {
    pub issuer: usize,
    pub kind: DocKind,
}

impl DocId {
    pub fn discovery(issuer: usize) -> DocId {
        DocId {
            issuer,
            kind: DocKind::Discovery,
        }
    }

    pub fn jwks(issuer: usize) -> DocId {
        DocId {
            issuer,
            kind: DocKind::Jwks,
        }
    }

    /// Position in per-document vectors (store slots, health records).
    pub fn slot(self) -> usize {
        self.issuer * 2
            + match self.kind {
                DocKind::Discovery => 0,
                DocKind::Jwks => 1,
            }
    }
}
