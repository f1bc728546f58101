//! The status page in a real browser: headless Chromium loads a running proxy's page for
//! a healthy and a failing issuer; the test reads the DOM it built and the pixels it drew,
//! and leaves the screenshots in target/status-page/.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::status_page::healthy_and_failing;
use crate::support::*;

/// Where the screenshots are left, as the test's artifacts.
const ARTIFACTS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/target/status-page");

const GREEN: [u8; 3] = [0x1a, 0x7f, 0x37];
const RED: [u8; 3] = [0xcf, 0x22, 0x2e];
/// A timeline tick is a solid bar at least this tall; no glyph of the page's text is.
const TICK: usize = 18;

fn find_chromium() -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/bin")])
        .map(|dir| dir.join("chromium"))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| {
            panic!("chromium is not installed (not on PATH nor in /usr/bin): run .ci/install-test-deps, which installs Debian's chromium package")
        })
}

/// Runs headless Chromium on `url` with `action` (`--dump-dom` or `--screenshot=FILE`),
/// bounded; returns what it printed on stdout.
async fn chromium(url: &str, action: &str) -> String {
    let profile = tempfile::tempdir().unwrap();
    let out = profile.path().join("stdout");
    let mut child = ChildProcess::spawn(
        Command::new(find_chromium())
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--hide-scrollbars",
                "--force-device-scale-factor=1",
                "--window-size=1200,900",
            ])
            .arg(format!("--user-data-dir={}", profile.path().join("profile").display()))
            .arg(action)
            .arg(url)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&out).unwrap())
            .stderr(Stdio::null()),
    );
    let status = child
        .exit_within(Duration::from_secs(60), &format!("chromium {action} {url}"))
        .await;
    assert!(status.success(), "chromium {action} {url}: {status}");
    std::fs::read_to_string(&out).unwrap()
}

/// Screenshots `url` into the artifacts as `name`, and returns the image's RGB rows.
async fn screenshot(url: &str, name: &str) -> (usize, usize, Vec<u8>) {
    std::fs::create_dir_all(ARTIFACTS).unwrap();
    let file = Path::new(ARTIFACTS).join(name);
    let _ = std::fs::remove_file(&file);
    chromium(url, &format!("--screenshot={}", file.display())).await;
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&file).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut pixels = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut pixels).unwrap();
    let channels = info.color_type.samples();
    assert!(channels >= 3, "{:?}", info.color_type);
    let rgb = pixels[..info.buffer_size()]
        .chunks(channels)
        .flat_map(|p| [p[0], p[1], p[2]])
        .collect();
    (info.width as usize, info.height as usize, rgb)
}

/// How many columns hold a vertical run of at least `TICK` pixels of exactly `color`:
/// the ticks the timeline drew in that colour.
fn tick_columns((width, height, rgb): &(usize, usize, Vec<u8>), color: [u8; 3]) -> usize {
    (0..*width)
        .filter(|&x| {
            let mut run = 0;
            (0..*height).any(|y| {
                let at = (y * width + x) * 3;
                run = if rgb[at..at + 3] == color { run + 1 } else { 0 };
                run >= TICK
            })
        })
        .count()
}

fn url(admin: SocketAddr, path: &str) -> String {
    format!("http://{admin}{path}")
}

#[tokio::test]
async fn a_browser_shows_the_failing_issuer_its_timeline_and_its_kids() {
    let (proxy, _gitlab, _k8s) = healthy_and_failing().await;

    // The DOM Chromium built from the summary: the failing issuer marked, nothing run.
    let dom = chromium(&url(proxy.admin, "/"), "--dump-dom").await;
    assert!(
        dom.contains("<a class=\"stale\" href=\"/?issuer=k8s\">k8s</a>"),
        "{dom}"
    );
    assert!(dom.contains("Needing attention (1)"), "{dom}");
    assert!(!dom.contains("<script"), "{dom}");
    assert!(dom.contains("&lt;script&gt;alert(1)&lt;/script&gt;"), "{dom}");

    let dom = chromium(&url(proxy.admin, "/?issuer=k8s"), "--dump-dom").await;
    assert!(dom.contains("<span class=\"attention stale\">stale</span>"), "{dom}");
    assert!(dom.contains("<svg class=\"timeline\""), "{dom}");
    assert!(dom.contains("class=\"fetch-failed\""), "{dom}");
    for kid in [
        "dLpmcNHM-0qvwfmFC2aJWU1hHfEZ7-piIoHDeMwoqd0",
        "w_otVYELxMJdX5pGiv9G1Bj0E7wnFAY3X6DRXDeCEHo",
    ] {
        assert!(dom.contains(kid), "{kid}\n{dom}");
    }

    // What it drew: the failing issuer's timeline has red ticks beside the green ones;
    // the healthy issuer's has green ticks only.
    let failing = screenshot(&url(proxy.admin, "/?issuer=k8s"), "issuer-failing.png").await;
    assert!(tick_columns(&failing, RED) >= 3, "no red ticks drawn");
    assert!(tick_columns(&failing, GREEN) >= 3, "no green ticks drawn");
    let healthy = screenshot(&url(proxy.admin, "/?issuer=gitlab"), "issuer-healthy.png").await;
    assert!(tick_columns(&healthy, GREEN) >= 3, "no green ticks drawn");
    assert_eq!(tick_columns(&healthy, RED), 0, "a red tick for a healthy issuer");
    let summary = screenshot(&url(proxy.admin, "/"), "summary.png").await;
    assert_eq!(tick_columns(&summary, RED), 0, "the summary draws no timeline");
}
