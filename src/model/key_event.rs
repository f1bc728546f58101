//! `KeyEventKind`: the kinds of change to an issuer's published keys, named once for metrics,
//! logs and the status page's `KeyChange` list.

/// What kind of change an `upstream::rotation::KeyEvent` is. `as_str` is the `event` label
/// of `key_rotations` and the `event` field of its log line; `ALL` pre-registers every
/// series.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KeyEventKind {
    Added,
    Removed,
    Expired,
    Withdrawn,
}

impl KeyEventKind {
    /// Every kind, in declaration order (so `kind as usize` indexes it).
    pub const ALL: [KeyEventKind; 4] = [
        KeyEventKind::Added,
        KeyEventKind::Removed,
        KeyEventKind::Expired,
        KeyEventKind::Withdrawn,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            KeyEventKind::Added => "added",
            KeyEventKind::Removed => "removed",
            KeyEventKind::Expired => "expired",
            KeyEventKind::Withdrawn => "withdrawn",
        }
    }
}

/// One change to an issuer's published keys as the status page lists it: when, what, and
/// the key's `kid` (`None` for a key without one).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyChange {
    pub at: std::time::SystemTime,
    pub kind: KeyEventKind,
    pub kid: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_lists_each_kind_once_at_its_own_index() {
        for (index, kind) in KeyEventKind::ALL.into_iter().enumerate() {
            assert_eq!(kind as usize, index, "{kind:?}");
        }
        let mut labels: Vec<&str> = KeyEventKind::ALL.iter().map(|k| k.as_str()).collect();
        labels.sort_unstable();
        labels.dedup();
        assert_eq!(labels.len(), KeyEventKind::ALL.len());
    }
}
