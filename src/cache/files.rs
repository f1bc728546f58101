//! `files`: how jwks-edge keeps its own files (snapshots, the ACME cache) — directories
//! private to its user, atomic replacement through unguessable temporary files, and reads
//! that never follow a symbolic link.
//!
//! The threat is a link or file planted in one of our directories (a shared or
//! pre-existing volume, a directory left group-writable): it must not make us write
//! through it, read from elsewhere, or hang. A temporary file is created with `O_EXCL`,
//! which fails on anything already there, dangling links included; the final name is
//! reached by `rename`, which replaces a link instead of writing through it; reads open
//! with `O_NOFOLLOW | O_NONBLOCK` and accept regular files only, so neither a link to
//! `/dev/zero` nor a FIFO can exhaust memory or block the start.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use tracing::warn;

/// Names tried for one temporary file. 64 random bits do not collide by chance; a
/// second `AlreadyExists` means someone is planting names, and the write fails.
const TEMPORARY_ATTEMPTS: usize = 4;

/// The marker between a file's name and its temporary suffix: `<name>.tmp.<hex>`.
const TEMPORARY_MARK: &str = ".tmp.";

/// Creates `dir` and its missing parents with mode 0700. An existing directory is left as
/// it is (the operator's choice), with a warning when others may write to it.
pub fn create_private_dir(dir: &Path) -> io::Result<()> {
    fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    let mode = fs::metadata(dir)?.permissions().mode();
    if mode & 0o022 != 0 {
        warn!(
            dir = %dir.display(),
            mode = format!("{:o}", mode & 0o7777),
            "directory is writable by group or others, who could replace jwks-edge's files; chmod 700 it"
        );
    }
    Ok(())
}

/// A new directory `<parent>/<prefix><random>`, mode 0700, for files of this run only
/// (the demo's certificate): never one that already exists, never through a link.
pub fn create_unique_private_dir(parent: &Path, prefix: &str) -> io::Result<PathBuf> {
    let mut last = None;
    for _ in 0..TEMPORARY_ATTEMPTS {
        let dir = parent.join(format!("{prefix}{}", random_suffix()?));
        match fs::DirBuilder::new().mode(0o700).create(&dir) {
            Ok(()) => return Ok(dir),
            Err(err) if err.kind() == io::ErrorKind::AlreadyExists => last = Some(err),
            Err(err) => return Err(err),
        }
    }
    Err(last.unwrap_or_else(|| io::Error::from(io::ErrorKind::AlreadyExists)))
}

/// Writes `bytes` to `path` so that a crash leaves the old file or the new one, never a
/// mix: a new temporary file beside it, fsync, rename over, fsync of the directory. The
/// temporary file is removed on any failure. `private` files (keys) are created 0600,
/// others 0666 less the umask.
pub fn write_atomically(path: &Path, bytes: &[u8], private: bool) -> io::Result<()> {
    write_atomically_with(path, bytes, private, &mut random_suffix)
}

/// `write_atomically` with the temporary suffixes given, so tests can plant them.
fn write_atomically_with(
    path: &Path,
    bytes: &[u8],
    private: bool,
    suffix: &mut dyn FnMut() -> io::Result<String>,
) -> io::Result<()> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let (tmp, mut file) = create_temporary(path, private, suffix)?;
    let mut renamed = false;
    let mut write = || -> io::Result<()> {
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&tmp, path)?;
        renamed = true;
        File::open(dir)?.sync_all()
    };
    write().inspect_err(|_| {
        if !renamed {
            let _ = fs::remove_file(&tmp);
        }
    })
}

/// A new file `<path>.tmp.<suffix>`, never an existing one and never through a link.
fn create_temporary(
    path: &Path,
    private: bool,
    suffix: &mut dyn FnMut() -> io::Result<String>,
) -> io::Result<(PathBuf, File)> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    if private {
        options.mode(0o600);
    }
    let mut last = None;
    for _ in 0..TEMPORARY_ATTEMPTS {
        let mut name = path.as_os_str().to_owned();
        name.push(TEMPORARY_MARK);
        name.push(suffix()?);
        let tmp = PathBuf::from(name);
        match options.open(&tmp) {
            Ok(file) => return Ok((tmp, file)),
            Err(err) if err.kind() == io::ErrorKind::AlreadyExists => last = Some(err),
            Err(err) => return Err(err),
        }
    }
    Err(last.unwrap_or_else(|| io::Error::from(io::ErrorKind::AlreadyExists)))
}

/// 16 hex digits from the operating system's randomness (through `ring`, already here
/// for keys): unguessable, unlike a pid, which is 1 in every container.
fn random_suffix() -> io::Result<String> {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 8];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| io::Error::other("the system has no randomness to name a temporary file"))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Whether `name` is a temporary file of `write_atomically` (or of earlier versions,
/// which used the pid as suffix).
fn is_temporary(name: &str) -> bool {
    name.rsplit_once(TEMPORARY_MARK).is_some_and(|(stem, suffix)| {
        !stem.is_empty() && (1..=16).contains(&suffix.len()) && suffix.bytes().all(|b| b.is_ascii_hexdigit())
    })
}

/// Removes the temporary files a crash left in `dir` (random names no longer overwrite
/// each other); returns how many. Links are removed, never followed; directories stay.
pub fn remove_stale_temporaries(dir: &Path) -> usize {
    let Ok(entries) = fs::read_dir(dir) else {
        return 0;
    };
    let mut removed = 0;
    for entry in entries.filter_map(Result::ok) {
        let stale = entry.file_name().to_str().is_some_and(is_temporary)
            && entry.file_type().is_ok_and(|t| !t.is_dir())
            && fs::remove_file(entry.path()).is_ok();
        removed += usize::from(stale);
    }
    removed
}

/// Reads a whole file of ours: a regular file at `path` itself, never a link's target, a
/// FIFO or a device. A missing file is `NotFound`, as with `fs::read`.
pub fn read_regular(path: &Path) -> io::Result<Vec<u8>> {
    let mut file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .map_err(|err| {
            // Linux says ELOOP, the BSDs EMLINK: say what it is instead.
            if fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink()) {
                io::Error::other("it is a symbolic link, which jwks-edge never follows to its own files")
            } else {
                err
            }
        })?;
    let metadata = file.metadata()?;
    if !metadata.is_file() {
        return Err(io::Error::other("it is not a regular file"));
    }
    let mut bytes = Vec::with_capacity(usize::try_from(metadata.len()).unwrap_or(0));
    file.read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// `read_regular` as UTF-8 text.
pub fn read_regular_to_string(path: &Path) -> io::Result<String> {
    String::from_utf8(read_regular(path)?).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn suffixes(list: &'static [&'static str]) -> impl FnMut() -> io::Result<String> {
        let mut next = list.iter().cycle();
        move || Ok(next.next().unwrap().to_string())
    }

    fn mode(path: &Path) -> u32 {
        fs::symlink_metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn a_link_planted_at_the_temporary_name_is_not_written_through() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let victim = outside.path().join("victim");
        fs::write(&victim, b"precious").unwrap();
        let path = dir.path().join("doc.json");
        let planted = dir.path().join("doc.json.tmp.aaaa");
        symlink(&victim, &planted).unwrap();
        // A dangling link too: O_EXCL refuses it as well, instead of creating its target.
        let dangling_target = outside.path().join("created-through-link");
        symlink(&dangling_target, dir.path().join("doc.json.tmp.bbbb")).unwrap();

        write_atomically_with(&path, b"new", true, &mut suffixes(&["aaaa", "bbbb", "cccc"])).unwrap();
        assert_eq!(fs::read(&victim).unwrap(), b"precious");
        assert!(!dangling_target.exists());
        assert_eq!(fs::read(&path).unwrap(), b"new");
        assert_eq!(mode(&path), 0o600);
        assert!(
            fs::symlink_metadata(&planted).unwrap().file_type().is_symlink(),
            "left alone"
        );
        assert!(!dir.path().join("doc.json.tmp.cccc").exists(), "renamed away");

        // Every name taken: the write fails, touches nothing, and removes nothing it did
        // not create.
        let err = write_atomically_with(&path, b"newer", false, &mut suffixes(&["aaaa"])).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(fs::read(&victim).unwrap(), b"precious");
        assert_eq!(fs::read(&path).unwrap(), b"new");
        assert!(fs::symlink_metadata(&planted).is_ok());
    }

    #[test]
    fn a_link_planted_at_the_final_name_is_replaced_not_written_through() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let victim = outside.path().join("victim");
        fs::write(&victim, b"precious").unwrap();
        let path = dir.path().join("doc.json");
        symlink(&victim, &path).unwrap();

        write_atomically(&path, b"new", false).unwrap();
        assert_eq!(fs::read(&victim).unwrap(), b"precious");
        assert!(fs::symlink_metadata(&path).unwrap().file_type().is_file());
        assert_eq!(fs::read(&path).unwrap(), b"new");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1, "no temporary file left");
    }

    #[test]
    fn a_failed_write_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        // A non-empty directory at the final name: the rename fails.
        let path = dir.path().join("doc.json");
        fs::create_dir(&path).unwrap();
        fs::write(path.join("inside"), b"").unwrap();
        assert!(write_atomically(&path, b"new", true).is_err());
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["doc.json"]);
    }

    #[test]
    fn temporary_names_are_random() {
        let a = random_suffix().unwrap();
        let b = random_suffix().unwrap();
        assert_eq!(a.len(), 16);
        assert_ne!(a, b);
        assert!(is_temporary(&format!("x.json{TEMPORARY_MARK}{a}")));
        assert!(is_temporary("x.json.tmp.1"), "the pid names of earlier versions");
        assert!(!is_temporary("x.json"));
        assert!(!is_temporary(".tmp.abc"));
        assert!(!is_temporary("x.tmp.not-hex"));
    }

    #[test]
    fn stale_temporaries_are_removed_and_links_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let victim = outside.path().join("victim");
        fs::write(&victim, b"precious").unwrap();
        fs::write(dir.path().join("a.json"), b"kept").unwrap();
        fs::write(dir.path().join("a.json.tmp.0123456789abcdef"), b"").unwrap();
        fs::write(dir.path().join("a.json.tmp.1"), b"").unwrap();
        symlink(&victim, dir.path().join("b.json.tmp.ff")).unwrap();
        fs::create_dir(dir.path().join("c.tmp.ff")).unwrap();
        assert_eq!(remove_stale_temporaries(dir.path()), 3);
        let mut names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["a.json", "c.tmp.ff"]);
        assert_eq!(fs::read(&victim).unwrap(), b"precious");
    }

    #[test]
    fn reads_refuse_links_fifos_and_directories() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let secret = outside.path().join("secret");
        fs::write(&secret, b"secret").unwrap();
        let file = dir.path().join("file");
        fs::write(&file, b"ours").unwrap();
        assert_eq!(read_regular(&file).unwrap(), b"ours");
        assert_eq!(read_regular_to_string(&file).unwrap(), "ours");
        assert_eq!(
            read_regular(&dir.path().join("missing")).unwrap_err().kind(),
            io::ErrorKind::NotFound
        );

        let link = dir.path().join("link");
        symlink(&secret, &link).unwrap();
        let err = read_regular(&link).unwrap_err();
        assert!(err.to_string().contains("symbolic link"), "{err}");
        let zero = dir.path().join("zero");
        symlink("/dev/zero", &zero).unwrap();
        assert!(read_regular(&zero).is_err());

        let fifo = dir.path().join("fifo");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status().unwrap();
        assert!(made.success());
        // Without O_NONBLOCK this open would wait for a writer forever.
        let err = read_regular(&fifo).unwrap_err();
        assert!(err.to_string().contains("not a regular file"), "{err}");
        assert!(read_regular(dir.path())
            .unwrap_err()
            .to_string()
            .contains("not a regular file"));
    }

    #[test]
    fn unique_directories_are_new_and_private() {
        let parent = tempfile::tempdir().unwrap();
        let a = create_unique_private_dir(parent.path(), "run-").unwrap();
        let b = create_unique_private_dir(parent.path(), "run-").unwrap();
        assert_ne!(a, b);
        assert_eq!(mode(&a), 0o700);
        assert!(a.file_name().unwrap().to_str().unwrap().starts_with("run-"));
    }

    #[test]
    fn directories_are_created_private_and_existing_ones_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let nested = dir.path().join("a/b/c");
        create_private_dir(&nested).unwrap();
        assert_eq!(mode(&nested), 0o700);
        assert_eq!(mode(&dir.path().join("a")), 0o700, "parents too");
        let existing = dir.path().join("existing");
        fs::create_dir(&existing).unwrap();
        fs::set_permissions(&existing, fs::Permissions::from_mode(0o750)).unwrap();
        create_private_dir(&existing).unwrap();
        assert_eq!(mode(&existing), 0o750);
        // A file where the directory should be is an error, not a directory.
        let file = dir.path().join("file");
        fs::write(&file, b"").unwrap();
        assert!(create_private_dir(&file).is_err());
    }
}
