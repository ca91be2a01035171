//! Private state: the state directory is 0700 and the files in it 0600 (the pid file may be 0644),
//! and temporary files are created so that a symlink planted at their path is never followed.
//!
//! The daemon also sets its umask to 077 (`main`), so files that sled creates later (snapshots,
//! blobs) are private from birth; [`tighten`] fixes what an older version or another tool left.

use std::fs::{self, DirBuilder, File, OpenOptions, Permissions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use super::layout::{DIR_MODE, FILE_MODE, LEGACY_FILE, SLED_DIR};

/// How deep [`tighten`] looks (`<dir>/sled/blobs/<file>`).
const MAX_DEPTH: usize = 3;

/// Creates `dir` (0700; missing parents with the default mode) if it does not exist.
pub fn create_dir(dir: &Path) -> io::Result<()> {
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::create_dir_all(parent)?;
    }
    match DirBuilder::new().mode(DIR_MODE).create(dir) {
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && dir.is_dir() => Ok(()),
        other => other,
    }
}

/// Sets `dir` to 0700, everything in its sled directory to 0700 (directories) / 0600 (files), and
/// the JSON export and its temp files in `dir` to 0600. Other files an operator keeps in the
/// directory are left alone, and so is a directory with the sticky bit (a `--state-dir /tmp` mistake
/// must not lock everyone out of /tmp). Symlinks are neither followed nor changed.
pub fn tighten(dir: &Path) -> io::Result<()> {
    let meta = fs::symlink_metadata(dir)?;
    if meta.permissions().mode() & 0o1000 != 0 {
        tracing::warn!(dir = %dir.display(), "state directory has the sticky bit (shared?): its mode is left as it is");
    } else {
        set_mode(dir, DIR_MODE)?;
    }
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let ft = entry.file_type()?; // lstat: a symlink is reported as one
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if ft.is_dir() && name == SLED_DIR {
            set_mode(&entry.path(), DIR_MODE)?;
            tighten_all(&entry.path(), 2)?;
        } else if ft.is_file()
            && (name.starts_with(LEGACY_FILE) || name.starts_with(&format!(".{LEGACY_FILE}")))
        {
            set_mode(&entry.path(), FILE_MODE)?;
        }
    }
    Ok(())
}

/// Every directory below `dir` to 0700 and every file to 0600.
fn tighten_all(dir: &Path, depth: usize) -> io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let ft = entry.file_type()?;
        let path = entry.path();
        if ft.is_dir() {
            set_mode(&path, DIR_MODE)?;
            if depth < MAX_DEPTH {
                tighten_all(&path, depth + 1)?;
            }
        } else if ft.is_file() {
            set_mode(&path, FILE_MODE)?;
        }
    }
    Ok(())
}

fn set_mode(path: &Path, mode: u32) -> io::Result<()> {
    let meta = fs::symlink_metadata(path)?;
    if meta.file_type().is_symlink() || meta.permissions().mode() & 0o7777 == mode {
        return Ok(());
    }
    fs::set_permissions(path, Permissions::from_mode(mode))
}

/// Creates `path` for writing, 0600, failing rather than following or reusing anything already
/// there (`O_CREAT | O_EXCL | O_NOFOLLOW`). A leftover at that path (a temp file of a crashed run
/// with the same pid, or a planted symlink) is unlinked — which never follows a symlink — and the
/// exclusive create retried once.
pub fn create_temp(path: &Path) -> io::Result<File> {
    let open = || {
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(FILE_MODE)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(path)
    };
    match open() {
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            fs::remove_file(path)?;
            open()
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::super::layout::LOCK_FILE;
    use super::*;

    fn mode(p: &Path) -> u32 {
        fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn a_new_dir_is_0700_and_tighten_fixes_old_modes() {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("a/state");
        create_dir(&dir).unwrap();
        assert_eq!(mode(&dir), 0o700);
        create_dir(&dir).unwrap(); // existing: fine
        fs::set_permissions(&dir, Permissions::from_mode(0o755)).unwrap();
        fs::create_dir_all(dir.join("sled/blobs")).unwrap();
        for f in [
            "port_state.json",
            "sled/db",
            "sled/blobs/1",
            LOCK_FILE,
            "operator.txt",
        ] {
            fs::write(dir.join(f), b"x").unwrap();
            fs::set_permissions(dir.join(f), Permissions::from_mode(0o644)).unwrap();
        }
        let victim = t.path().join("victim");
        fs::write(&victim, b"v").unwrap();
        fs::set_permissions(&victim, Permissions::from_mode(0o644)).unwrap();
        std::os::unix::fs::symlink(&victim, dir.join("link")).unwrap();
        tighten(&dir).unwrap();
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&dir.join("sled")), 0o700);
        assert_eq!(mode(&dir.join("sled/blobs")), 0o700);
        for f in ["port_state.json", "sled/db", "sled/blobs/1"] {
            assert_eq!(mode(&dir.join(f)), 0o600, "{f}");
        }
        assert_eq!(
            mode(&dir.join(LOCK_FILE)),
            0o644,
            "the pid file may stay readable"
        );
        assert_eq!(
            mode(&dir.join("operator.txt")),
            0o644,
            "not ours: left alone"
        );
        assert_eq!(mode(&victim), 0o644, "a symlink's target is not touched");
    }

    #[test]
    fn a_sticky_directory_keeps_its_mode() {
        let t = tempfile::tempdir().unwrap();
        fs::set_permissions(t.path(), Permissions::from_mode(0o1777)).unwrap();
        tighten(t.path()).unwrap();
        assert_eq!(mode(t.path()), 0o1777);
    }

    #[test]
    fn a_planted_symlink_at_the_temp_path_is_not_followed() {
        let t = tempfile::tempdir().unwrap();
        let victim = t.path().join("victim");
        fs::write(&victim, b"precious").unwrap();
        let tmp = t.path().join(".x.tmp-1");
        std::os::unix::fs::symlink(&victim, &tmp).unwrap();
        {
            use std::io::Write;
            let mut f = create_temp(&tmp).unwrap();
            f.write_all(b"new").unwrap();
        }
        assert_eq!(fs::read(&victim).unwrap(), b"precious");
        assert!(!fs::symlink_metadata(&tmp).unwrap().file_type().is_symlink());
        assert_eq!(fs::read(&tmp).unwrap(), b"new");
        assert_eq!(mode(&tmp), 0o600);
    }

    #[test]
    fn the_json_export_never_writes_through_a_planted_temp_symlink() {
        let t = tempfile::tempdir().unwrap();
        let victim = t.path().join("victim");
        fs::write(&victim, b"precious").unwrap();
        let dest = t.path().join("port_state.json");
        let tmp = t
            .path()
            .join(format!(".port_state.json.tmp-{}", std::process::id()));
        std::os::unix::fs::symlink(&victim, &tmp).unwrap();
        super::super::durable::write_atomic(&dest, b"{}").unwrap();
        assert_eq!(fs::read(&victim).unwrap(), b"precious");
        assert_eq!(fs::read(&dest).unwrap(), b"{}");
        assert_eq!(mode(&dest), 0o600);
    }
}
