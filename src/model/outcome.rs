//! `FetchOutcome`: how one upstream fetch ended, named once for metrics and logs.

/// How one upstream fetch ended. `as_str` is the `outcome` label of `upstream_fetches` and
/// the `reason` field of the fetch-failure log line; `ALL` pre-registers every series.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FetchOutcome {
    /// A usable document.
    Ok,
    Timeout,
    /// Refused, reset or failed TLS: the connection never carried an answer.
    Refused,
    /// An answer other than 200 (redirects included).
    Status,
    /// Not a valid document, or a key set with no key at all.
    Invalid,
    TooLarge,
    /// The body could not be read.
    Body,
    /// The bearer token file could not be read.
    Token,
    /// The discovery document names a key set path another issuer's routes hold.
    RouteConflict,
    BadUrl,
    /// A valid key set that leaves nothing to publish once withdrawn keys are taken out.
    Withdrawn,
}

impl FetchOutcome {
    /// Every outcome, in declaration order (so `outcome as usize` indexes it).
    pub const ALL: [FetchOutcome; 11] = [
        FetchOutcome::Ok,
        FetchOutcome::Timeout,
        FetchOutcome::Refused,
        FetchOutcome::Status,
        FetchOutcome::Invalid,
        FetchOutcome::TooLarge,
        FetchOutcome::Body,
        FetchOutcome::Token,
        FetchOutcome::RouteConflict,
        FetchOutcome::BadUrl,
        FetchOutcome::Withdrawn,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            FetchOutcome::Ok => "ok",
            FetchOutcome::Timeout => "timeout",
            FetchOutcome::Refused => "refused",
            FetchOutcome::Status => "status",
            FetchOutcome::Invalid => "invalid",
            FetchOutcome::TooLarge => "too_large",
            FetchOutcome::Body => "body",
            FetchOutcome::Token => "token",
            FetchOutcome::RouteConflict => "route_conflict",
            FetchOutcome::BadUrl => "bad_url",
            FetchOutcome::Withdrawn => "withdrawn",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_lists_each_outcome_once_at_its_own_index() {
        for (index, outcome) in FetchOutcome::ALL.into_iter().enumerate() {
            assert_eq!(outcome as usize, index, "{outcome:?}");
        }
        let mut labels: Vec<&str> = FetchOutcome::ALL.iter().map(|o| o.as_str()).collect();
        labels.sort_unstable();
        labels.dedup();
        assert_eq!(labels.len(), FetchOutcome::ALL.len());
    }
}
