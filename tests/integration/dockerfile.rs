//! The Dockerfile's build stage replayed without Docker (CI cannot pull images): its COPY
//! lines copy exactly those files into a clean directory and its RUN lines run there, with
//! `cargo build` made a `cargo check`, so a manifest and a Dockerfile that disagree fail.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::*;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
/// Shared by every replay, so that only the first one checks the dependencies.
const TARGET: &str = concat!(env!("CARGO_TARGET_TMPDIR"), "/dockerfile-check");
/// A first replay checks every dependency in the release profile.
const RUN_LIMIT: Duration = Duration::from_secs(600);

/// `cargo build` becomes `cargo check` (the same manifest, lockfile and compile errors,
/// no code generation), offline; every other subcommand runs as written.
const CARGO_SHIM: &str = r#"#!/bin/sh
sub=$1; shift
[ "$sub" = build ] && sub=check
exec "$REAL_CARGO" "$sub" --offline "$@"
"#;
/// A check makes no binary to strip: record what would have been stripped.
const STRIP_SHIM: &str = "#!/bin/sh\necho \"$*\" >> \"$STRIPPED\"\n";

/// A Dockerfile's instructions: keyword (upper case) and arguments, continuation lines
/// joined and comments dropped, as Docker reads them.
pub(crate) fn instructions(dockerfile: &str) -> Vec<(String, String)> {
    let mut instructions = Vec::new();
    let mut pending = String::new();
    for line in dockerfile.lines() {
        if line.trim_start().starts_with('#') || (pending.is_empty() && line.trim().is_empty()) {
            continue;
        }
        match line.strip_suffix('\\') {
            Some(part) => pending.push_str(part),
            None => {
                pending.push_str(line);
                let text = std::mem::take(&mut pending);
                let (keyword, args) = text.trim().split_once(char::is_whitespace).unwrap_or((text.trim(), ""));
                instructions.push((keyword.to_ascii_uppercase(), args.trim().to_owned()));
            }
        }
    }
    assert!(pending.is_empty(), "the Dockerfile ends in a continuation");
    instructions
}

/// The instructions of each stage, in order, each stage opening with its FROM.
pub(crate) fn stages(dockerfile: &str) -> Vec<Vec<(String, String)>> {
    let mut stages: Vec<Vec<(String, String)>> = Vec::new();
    for instruction in instructions(dockerfile) {
        if instruction.0 == "FROM" {
            stages.push(Vec::new());
        }
        stages
            .last_mut()
            .expect("the Dockerfile starts with FROM")
            .push(instruction);
    }
    stages
}

/// Paths `.dockerignore` keeps out of the context. Only plain paths: a pattern this check
/// cannot read fails it rather than be misread.
fn ignored(context: &Path) -> Vec<PathBuf> {
    let Ok(text) = std::fs::read_to_string(context.join(".dockerignore")) else {
        return Vec::new();
    };
    let patterns: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    for pattern in &patterns {
        assert!(
            !pattern.contains(['*', '?', '[', '!']),
            ".dockerignore pattern {pattern:?}: tests/integration/dockerfile.rs reads plain paths only"
        );
    }
    patterns.iter().map(|p| PathBuf::from(p.trim_matches('/'))).collect()
}

fn copy(context: &Path, relative: &Path, to: &Path, ignored: &[PathBuf]) {
    if ignored.iter().any(|i| relative.starts_with(i)) {
        return;
    }
    let from = context.join(relative);
    if from.is_dir() {
        std::fs::create_dir_all(to).unwrap();
        for entry in std::fs::read_dir(&from).unwrap() {
            let name = entry.unwrap().file_name();
            copy(context, &relative.join(&name), &to.join(&name), ignored);
        }
    } else {
        assert!(
            from.is_file(),
            "COPY source {} is not in the context",
            relative.display()
        );
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(&from, to).unwrap();
        // Docker keeps the context's modification times; so must the replay, or it would
        // hide a stage whose sources look older than the stub build (cargo: "Fresh").
        let modified = std::fs::metadata(&from).unwrap().modified().unwrap();
        std::fs::File::options()
            .write(true)
            .open(to)
            .unwrap()
            .set_modified(modified)
            .unwrap();
    }
}

/// What a replay saw: how long it took, what each RUN printed, and the paths the stage
/// strips.
#[derive(Debug)]
struct Replay {
    took: Duration,
    printed: Vec<String>,
    stripped: Vec<String>,
    workdir: String,
}

impl Replay {
    /// Whether the last RUN compiled the crate, rather than find the stub build fresh.
    fn checked_the_sources_last(&self) -> bool {
        self.printed
            .last()
            .is_some_and(|out| out.contains("Checking jwks-edge v"))
    }
}

/// Replays the build stage (the first) of `dockerfile` on the files of `context` it
/// copies, in a clean directory. Err holds the failed RUN and what it printed.
fn replay(context: &Path, dockerfile: &str) -> Result<Replay, String> {
    let started = Instant::now();
    let root = tempfile::tempdir().unwrap();
    let shims = root.path().join("shims");
    std::fs::create_dir(&shims).unwrap();
    for (name, script) in [("cargo", CARGO_SHIM), ("strip", STRIP_SHIM)] {
        std::fs::write(shims.join(name), script).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(shims.join(name), std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let stripped = root.path().join("stripped");
    std::fs::write(&stripped, "").unwrap();
    let ignored = ignored(context);
    let stage = stages(dockerfile).into_iter().next().expect("a build stage");
    let mut workdir: Option<(String, PathBuf)> = None;
    let mut printed = Vec::new();
    for (keyword, args) in &stage {
        match keyword.as_str() {
            "FROM" => {}
            "WORKDIR" => {
                let dir = root.path().join("fs").join(args.trim_start_matches('/'));
                std::fs::create_dir_all(&dir).unwrap();
                workdir = Some((args.clone(), dir));
            }
            "COPY" => {
                let dir = &workdir.as_ref().expect("WORKDIR before COPY").1;
                let mut words: Vec<&str> = args.split_whitespace().collect();
                assert!(
                    !words.iter().any(|w| w.starts_with("--")),
                    "COPY flags in the build stage: {args}"
                );
                let dest = words.pop().expect("COPY has a destination");
                assert!(!words.is_empty(), "COPY {args} has a source");
                for source in words {
                    let source = Path::new(source);
                    assert!(
                        source.is_relative() && !source.starts_with(".."),
                        "COPY source {source:?}"
                    );
                    // An absolute destination is in the image's root, never this machine's.
                    let dest_dir = match dest.strip_prefix('/') {
                        Some(absolute) => root.path().join("fs").join(absolute),
                        None => dir.join(dest),
                    };
                    let into_dir = dest.ends_with('/') && !context.join(source).is_dir();
                    let to = match into_dir {
                        true => dest_dir.join(source.file_name().unwrap()),
                        false => dest_dir,
                    };
                    copy(context, source, &to, &ignored);
                }
            }
            "RUN" => {
                assert!(!args.starts_with('['), "RUN {args}: only the shell form is replayed");
                let dir = &workdir.as_ref().expect("WORKDIR before RUN").1;
                printed.push(run(args, dir, &shims, &stripped, root.path())?);
            }
            other => panic!("{other} in the build stage: teach tests/integration/dockerfile.rs what it means"),
        }
    }
    let stripped = std::fs::read_to_string(&stripped).unwrap();
    Ok(Replay {
        took: started.elapsed(),
        printed,
        stripped: stripped.lines().map(str::to_owned).collect(),
        workdir: workdir.expect("a WORKDIR").0,
    })
}

/// One RUN line through `sh -c`, as Docker runs the shell form, with the shims first on
/// PATH and cargo's variables of this test process removed (a build has none).
fn run(command: &str, dir: &Path, shims: &Path, stripped: &Path, scratch: &Path) -> Result<String, String> {
    let real_cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let path = std::env::join_paths(
        [shims.to_owned()]
            .into_iter()
            .chain(std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())),
    )
    .unwrap();
    let log = scratch.join("run.log");
    let mut sh = Command::new("sh");
    sh.arg("-c").arg(command).current_dir(dir).stdin(Stdio::null());
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy().into_owned();
        if name.starts_with("CARGO") && name != "CARGO_HOME" || name.starts_with("RUSTC") {
            sh.env_remove(name);
        }
    }
    sh.env("PATH", path)
        .env("REAL_CARGO", real_cargo)
        .env("CARGO_TARGET_DIR", TARGET)
        .env("STRIPPED", stripped);
    // One file for both streams, in order: open it once and share the descriptor.
    let file = std::fs::File::create(&log).unwrap();
    sh.stdout(file.try_clone().unwrap()).stderr(file);
    let status = ChildProcess::spawn(&mut sh).exit_within_blocking(RUN_LIMIT, &format!("RUN {command}"));
    let printed = std::fs::read_to_string(&log).unwrap();
    match status.success() {
        true => Ok(printed),
        false => Err(format!("RUN {command}\n{printed}")),
    }
}

fn dockerfile() -> String {
    std::fs::read_to_string(Path::new(ROOT).join("Dockerfile")).unwrap()
}

/// A context holding the files the Dockerfile copies, with `Cargo.toml` as `manifest`.
fn context_with_manifest(manifest: &str) -> tempfile::TempDir {
    let context = tempfile::tempdir().unwrap();
    std::fs::write(context.path().join("Cargo.toml"), manifest).unwrap();
    for file in ["Cargo.lock", ".dockerignore"] {
        std::fs::copy(Path::new(ROOT).join(file), context.path().join(file)).unwrap();
    }
    copy(Path::new(ROOT), Path::new("src"), &context.path().join("src"), &[]);
    context
}

#[test]
fn the_build_stage_builds_from_exactly_the_files_it_copies() {
    let replay = replay(Path::new(ROOT), &dockerfile()).unwrap_or_else(|e| panic!("{e}"));
    eprintln!("replayed the Dockerfile's build stage in {:.1?}", replay.took);
    assert!(
        replay.checked_the_sources_last(),
        "the sources were not compiled: {:#?}",
        replay.printed
    );
    // What the final stage takes from the build stage is what the build stage made.
    assert_eq!(replay.stripped, ["target/release/jwks-edge"]);
    let taken = format!("--from=build {}/target/release/jwks-edge ", replay.workdir);
    let stages = stages(&dockerfile());
    let last = stages.last().unwrap();
    assert!(
        last.iter().any(|(k, a)| k == "COPY" && a.starts_with(&taken)),
        "the final stage copies {taken}: {last:?}"
    );
}

#[test]
fn a_build_stage_that_does_not_stub_the_benches_fails() {
    // The Dockerfile before the fix: Cargo.toml copied, its [[bench]] files not.
    let unfixed: String = dockerfile()
        .lines()
        .filter(|line| !(line.contains("for bench") || line.contains("$bench") || line.trim() == "done \\"))
        .map(|line| format!("{line}\n"))
        .collect();
    assert_eq!(
        dockerfile().lines().count() - unfixed.lines().count(),
        3,
        "the three lines of the stub loop were found and taken out"
    );
    let error = replay(Path::new(ROOT), &unfixed).expect_err("a manifest whose benches are missing");
    // Cargo names the first bench it misses, in no order of the manifest's.
    assert!(
        error.contains("can't find `") && error.contains("` bench at `benches/"),
        "{error}"
    );
}

#[test]
fn a_declared_target_the_build_stage_does_not_provide_fails() {
    // A test target at the inferred path, which the stage neither copies nor stubs. (A
    // target with an explicit `path` is not planted: cargo looks for its file only when
    // it builds that target, which `cargo build` does not for benches and tests, so the
    // image would build.)
    let manifest =
        std::fs::read_to_string(Path::new(ROOT).join("Cargo.toml")).unwrap() + "\n[[test]]\nname = \"planted\"\n";
    let context = context_with_manifest(&manifest);
    let error = replay(context.path(), &dockerfile()).expect_err("a declared test with no file");
    assert!(error.contains("can't find `planted` test"), "{error}");
}

#[test]
fn a_build_stage_whose_sources_look_older_than_the_stubs_is_caught() {
    // Without the touch, the copied sources keep their older times and cargo finds the
    // stub build fresh: the image would ship `fn main() {}`.
    let untouched = dockerfile().replace("RUN touch src/main.rs src/lib.rs && ", "RUN ");
    assert_ne!(untouched, dockerfile(), "the touch was found and taken out");
    let replay = replay(Path::new(ROOT), &untouched).unwrap_or_else(|e| panic!("{e}"));
    assert!(!replay.checked_the_sources_last(), "{:#?}", replay.printed);
}
