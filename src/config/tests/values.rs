//! The bound every duration in the file has, whatever its section.

use crate::config::tests::fixtures::{error_of, with, ISSUER};

#[test]
fn durations_are_bounded_so_that_no_clock_arithmetic_can_overflow() {
    for (section, key) in [
        ("server", "idle_timeout"),
        ("cache", "refresh"),
        ("cache", "keep_removed_keys"),
        ("cache", "max_age"),
    ] {
        let text = if section == "server" {
            with(&format!("{key} = \"9999999999years\""), "", ISSUER)
        } else {
            with("", &format!("{key} = \"9999999999years\""), ISSUER)
        };
        let msg = error_of(&text);
        assert!(
            msg.contains(&format!("{section}.{key} = \"9999999999years\": must be at most 3650d")),
            "{msg}"
        );
    }
}
