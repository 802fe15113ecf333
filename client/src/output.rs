//! Writing results: stdout in one write, files atomically and private.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::error::Error;

/// Writes `bytes` to stdout and flushes. One buffer, so kubectl (or a pipe)
/// gets the credential in a single `write` as long as the pipe has room.
pub fn stdout(bytes: &[u8]) -> Result<(), Error> {
    let mut out = io::stdout().lock();
    out.write_all(bytes)
        .and_then(|()| out.flush())
        .map_err(|error| Error::Output {
            what: "cannot write to stdout".to_owned(),
            error,
        })
}

/// Replaces `path` with `bytes`, mode 0600: a kubeconfig names the plugin
/// and the servers, which is nobody else's business. Written to a temporary
/// file in the same directory, synced, then renamed over the target, so a
/// reader never sees half a file and a crash never leaves one. A symlink
/// (dotfile managers) is followed and its target replaced.
pub fn write_file_atomically(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    replace_file(path, bytes, 0o600)
}

/// As [`write_file_atomically`], with the file's mode given: a merge keeps
/// the mode the user chose for their kubeconfig.
pub fn replace_file(path: &Path, bytes: &[u8], mode: u32) -> Result<(), Error> {
    let fail = |what: &str, error: io::Error| Error::Output {
        what: if what.is_empty() {
            format!("cannot write {}", path.display())
        } else {
            format!("cannot write {}: {what}", path.display())
        },
        error,
    };
    let target = resolve_symlink(path).map_err(|e| fail("cannot follow the symlink", e))?;
    let name = target
        .file_name()
        .ok_or_else(|| fail("not a file name", io::ErrorKind::InvalidInput.into()))?;
    let dir = match target.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| fail("cannot create its directory", e))?;

    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(".akscred-{}.tmp", std::process::id()));
    let tmp = dir.join(tmp_name);
    let result = write_new(&tmp, bytes, mode)
        .and_then(|()| fs::rename(&tmp, &target))
        .map_err(|e| fail("", e));
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
        return result;
    }
    // Make the rename itself durable; failing that only risks the old file
    // after a crash, so it is not worth an error.
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

fn write_new(tmp: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    let open = || {
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(tmp)
    };
    let mut file = match open() {
        // Left by an earlier run whose pid this one now has: that run is
        // dead, so the file is nobody's.
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            fs::remove_file(tmp)?;
            open()?
        }
        other => other?,
    };
    // Set explicitly: the mode given to open() is reduced by the umask.
    file.set_permissions(fs::Permissions::from_mode(mode))?;
    file.write_all(bytes)?;
    file.sync_all()
}

fn resolve_symlink(path: &Path) -> io::Result<PathBuf> {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_symlink() => fs::canonicalize(path),
        _ => Ok(path.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(path: &Path) -> io::Result<u32> {
        Ok(fs::metadata(path)?.permissions().mode() & 0o777)
    }

    #[test]
    fn writes_private_file_and_replaces_old_one() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("new/sub/config");
        write_file_atomically(&path, b"one\n").map_err(|e| e.report())?;
        assert_eq!(fs::read(&path)?, b"one\n");
        assert_eq!(mode(&path)?, 0o600);
        assert_eq!(mode(&dir.path().join("new/sub"))?, 0o700);

        fs::set_permissions(&path, fs::Permissions::from_mode(0o644))?;
        write_file_atomically(&path, b"two\n").map_err(|e| e.report())?;
        assert_eq!(fs::read(&path)?, b"two\n");
        assert_eq!(mode(&path)?, 0o600);
        // No temporary file is left behind.
        assert_eq!(fs::read_dir(dir.path().join("new/sub"))?.count(), 1);
        Ok(())
    }

    #[test]
    fn keeps_a_given_mode_whatever_the_umask() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("config");
        replace_file(&path, b"x", 0o644).map_err(|e| e.report())?;
        assert_eq!(mode(&path)?, 0o644);
        Ok(())
    }

    #[test]
    fn follows_a_symlink() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let real = dir.path().join("real");
        fs::write(&real, "old")?;
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&real, &link)?;
        write_file_atomically(&link, b"new").map_err(|e| e.report())?;
        assert!(fs::symlink_metadata(&link)?.file_type().is_symlink());
        assert_eq!(fs::read(&real)?, b"new");
        Ok(())
    }

    #[test]
    fn reports_the_path_on_failure() -> io::Result<()> {
        let dir = tempfile::tempdir()?;
        let blocker = dir.path().join("file");
        fs::write(&blocker, "")?;
        let path = blocker.join("config");
        match write_file_atomically(&path, b"x") {
            Err(e) => assert!(e.report().contains(&path.display().to_string())),
            Ok(()) => panic!("wrote below a file"),
        }
        Ok(())
    }
}
