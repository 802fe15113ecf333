//! Where akscredd listens.
//!
//! `AKSCRED_SOCKET`, else `$XDG_RUNTIME_DIR/akscred/akscred.sock`, else
//! `/run/user/<uid>/akscred/akscred.sock` (what pam_systemd would have set
//! XDG_RUNTIME_DIR to; cron jobs and `sudo -u` shells often lack it).

use std::ffi::OsString;
use std::io;
use std::path::{Path, PathBuf};

use akscred_proto::SOCKET_ENV;

const RUNTIME_SUBPATH: &str = "akscred/akscred.sock";

/// `sun_path` holds 108 bytes including the terminating NUL.
pub const MAX_PATH_LEN: usize = 107;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "cannot find the akscredd socket: XDG_RUNTIME_DIR is not set and the user id is unknown ({0})"
    )]
    NoUid(io::Error),
}

pub fn from_env() -> Result<PathBuf, Error> {
    resolve(
        std::env::var_os(SOCKET_ENV),
        std::env::var_os("XDG_RUNTIME_DIR"),
        current_uid,
    )
}

/// The socket path from the environment's values; `uid` is only asked for
/// when neither variable helps.
pub fn resolve(
    explicit: Option<OsString>,
    runtime_dir: Option<OsString>,
    uid: impl FnOnce() -> io::Result<u32>,
) -> Result<PathBuf, Error> {
    if let Some(path) = explicit.filter(|p| !p.is_empty()) {
        return Ok(PathBuf::from(path));
    }
    // The XDG base directory spec says to ignore a relative value.
    if let Some(dir) = runtime_dir.map(PathBuf::from).filter(|d| d.is_absolute()) {
        return Ok(dir.join(RUNTIME_SUBPATH));
    }
    let uid = uid().map_err(Error::NoUid)?;
    Ok(Path::new("/run/user")
        .join(uid.to_string())
        .join(RUNTIME_SUBPATH))
}

/// The effective uid without `unsafe` (the workspace denies it) and without
/// parsing /proc/self/status: the kernel makes /proc/<pid> owned by the
/// process's effective uid, so one stat answers.
fn current_uid() -> io::Result<u32> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").map(|m| m.uid())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_uid() -> io::Result<u32> {
        panic!("uid looked up although not needed")
    }

    #[test]
    fn explicit_wins() {
        let p = resolve(
            Some("/tmp/x.sock".into()),
            Some("/run/user/5".into()),
            no_uid,
        );
        assert_eq!(p.ok(), Some(PathBuf::from("/tmp/x.sock")));
    }

    #[test]
    fn runtime_dir_next() {
        let p = resolve(Some("".into()), Some("/run/user/5".into()), no_uid);
        assert_eq!(
            p.ok(),
            Some(PathBuf::from("/run/user/5/akscred/akscred.sock"))
        );
    }

    #[test]
    fn uid_last() {
        for runtime_dir in [None, Some("".into()), Some("relative/dir".into())] {
            let p = resolve(None, runtime_dir, || Ok(1000));
            assert_eq!(
                p.ok(),
                Some(PathBuf::from("/run/user/1000/akscred/akscred.sock"))
            );
        }
    }

    #[test]
    fn unknown_uid_is_an_error() {
        let p = resolve(None, None, || Err(io::ErrorKind::NotFound.into()));
        assert!(matches!(p, Err(Error::NoUid(_))));
    }

    #[test]
    fn current_uid_matches_the_process() -> io::Result<()> {
        // /proc/self/status has "Uid:\treal\teffective\t...".
        let status = std::fs::read_to_string("/proc/self/status")?;
        let euid = status
            .lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|s| s.parse::<u32>().ok());
        assert_eq!(Some(current_uid()?), euid);
        Ok(())
    }
}
