//! `[admin]`: what readiness requires.

use std::time::Duration;

use crate::config::settings::Readiness;
use crate::config::tests::fixtures::{error_of, load, MINIMAL};

#[test]
fn readiness_keys_are_checked() {
    let config = load(MINIMAL).unwrap();
    assert_eq!(config.admin.readiness, Readiness::Any);
    assert_eq!(config.admin.startup_grace, Duration::from_secs(30));
    let admin = |lines: &str| format!("{MINIMAL}\n[admin]\n{lines}\n");
    assert_eq!(
        load(&admin("readiness = \"all\"")).unwrap().admin.readiness,
        Readiness::All
    );
    let msg = error_of(&admin("readiness = \"most\""));
    assert!(msg.contains("admin.readiness = \"most\""), "{msg}");
    let msg = error_of(&admin("startup_grace = \"1h\""));
    assert!(
        msg.contains("admin.startup_grace = \"1h\": must be at most 10m"),
        "{msg}"
    );
    let msg = error_of(&admin("startup_grace = \"soon\""));
    assert!(msg.contains("admin.startup_grace = \"soon\""), "{msg}");
}
