//! The API socket: where it lives, who may create it, and who may talk to it.
//!
//! The directory is 0700 and the socket 0600, but file modes are not the
//! guard: every connection's peer uid is checked with SO_PEERCRED, so a
//! socket made world-writable by mistake still only serves its owner.

use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use axum::extract::connect_info::Connected;
use axum::serve::IncomingStream;
use tokio::net::UnixListener;

#[derive(Debug, thiserror::Error)]
pub enum SocketError {
    #[error("cannot create the socket directory {path}: {source}")]
    Dir { path: PathBuf, source: io::Error },
    #[error(
        "another akscredd is already serving {0}; stop it first (systemctl --user stop akscredd) or set [daemon] socket to another path"
    )]
    InUse(PathBuf),
    #[error("cannot listen on {path}: {source}")]
    Bind { path: PathBuf, source: io::Error },
    #[error(
        "cannot tell where the socket goes: neither [daemon] socket, AKSCRED_SOCKET nor XDG_RUNTIME_DIR is set"
    )]
    NoPath,
}

/// The uid this process runs as (from /proc, to stay free of `unsafe`).
pub fn own_uid() -> u32 {
    std::fs::metadata("/proc/self")
        .map(|m| m.uid())
        .unwrap_or(u32::MAX)
}

/// `[daemon] socket`, then `AKSCRED_SOCKET`, then
/// `$XDG_RUNTIME_DIR/akscred/akscred.sock`, then `/run/user/UID/...`.
pub fn socket_path(configured: Option<&Path>) -> Result<PathBuf, SocketError> {
    if let Some(p) = configured {
        return Ok(p.to_path_buf());
    }
    if let Some(p) = std::env::var_os(akscred_proto::SOCKET_ENV).filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(p));
    }
    let runtime = std::env::var_os("XDG_RUNTIME_DIR")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            let dir = PathBuf::from(format!("/run/user/{}", own_uid()));
            dir.is_dir().then_some(dir)
        })
        .ok_or(SocketError::NoPath)?;
    Ok(runtime.join("akscred").join("akscred.sock"))
}

/// Binds the socket, replacing a stale one left by a dead daemon but never
/// one a live daemon still answers on.
pub fn bind(path: &Path) -> Result<UnixListener, SocketError> {
    if let Some(dir) = path.parent() {
        let made = std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir);
        made.and_then(|()| {
            // An existing directory keeps its mode: tighten it if it is ours.
            let meta = std::fs::metadata(dir)?;
            if meta.uid() == own_uid() && meta.mode() & 0o077 != 0 {
                std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
            }
            Ok(())
        })
        .map_err(|source| SocketError::Dir {
            path: dir.to_path_buf(),
            source,
        })?;
    }
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(SocketError::InUse(path.to_path_buf()));
        }
        let _ = std::fs::remove_file(path);
    }
    let listener = UnixListener::bind(path).map_err(|source| SocketError::Bind {
        path: path.to_path_buf(),
        source,
    })?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(|source| {
        SocketError::Bind {
            path: path.to_path_buf(),
            source,
        }
    })?;
    Ok(listener)
}

/// The listening socket systemd passed (`LISTEN_FDS`, socket activation),
/// if any. The unit's `SocketMode=0600` / `DirectoryMode=0700` set the modes.
pub fn from_systemd() -> Result<Option<UnixListener>, SocketError> {
    let fds = match sd_notify::listen_fds() {
        Ok(fds) => fds,
        Err(_) => return Ok(None),
    };
    let Some(fd) = fds.into_iter().next() else {
        return Ok(None);
    };
    let std_listener = adopt_fd(fd);
    let bind_error = |source| SocketError::Bind {
        path: PathBuf::from(format!("systemd socket (fd {fd})")),
        source,
    };
    std_listener.set_nonblocking(true).map_err(bind_error)?;
    UnixListener::from_std(std_listener)
        .map_err(bind_error)
        .map(Some)
}

#[allow(unsafe_code)]
fn adopt_fd(fd: std::os::fd::RawFd) -> std::os::unix::net::UnixListener {
    use std::os::fd::FromRawFd;
    // SAFETY: sd_notify::listen_fds only yields descriptors systemd passed
    // to this process (LISTEN_PID checked) starting at 3; nothing else in
    // the process owns them, and this is called once.
    unsafe { std::os::unix::net::UnixListener::from_raw_fd(fd) }
}

/// Who is on the other end of a connection.
#[derive(Debug, Clone, Copy)]
pub struct Peer {
    pub uid: Option<u32>,
    pub pid: Option<i32>,
}

impl Connected<IncomingStream<'_, UnixListener>> for Peer {
    fn connect_info(stream: IncomingStream<'_, UnixListener>) -> Self {
        let cred = stream.io().peer_cred().ok();
        Peer {
            uid: cred.map(|c| c.uid()),
            pid: cred.and_then(|c| c.pid()),
        }
    }
}

/// The daemon's own uid and root pass, plus `allow_uids`.
#[derive(Debug, Clone)]
pub struct PeerPolicy {
    pub own_uid: u32,
    pub allow_uids: Vec<u32>,
}

impl PeerPolicy {
    pub fn allows(&self, uid: Option<u32>) -> bool {
        uid.is_some_and(|u| u == 0 || u == self.own_uid || self.allow_uids.contains(&u))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_policy() {
        let p = PeerPolicy {
            own_uid: 1000,
            allow_uids: vec![1001],
        };
        assert!(p.allows(Some(0)));
        assert!(p.allows(Some(1000)));
        assert!(p.allows(Some(1001)));
        assert!(!p.allows(Some(1002)));
        assert!(!p.allows(None));
    }

    #[tokio::test]
    async fn bind_makes_private_dir_and_socket_and_replaces_stale_ones() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("run/akscred.sock");
        let l = bind(&path).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().mode() & 0o777;
        assert_eq!(mode(path.parent().unwrap()), 0o700);
        assert_eq!(mode(&path), 0o600);
        // A live listener is not stolen.
        assert!(matches!(bind(&path), Err(SocketError::InUse(_))));
        drop(l);
        // The dead one's file is replaced.
        assert!(path.exists());
        let _l = bind(&path).unwrap();
    }
}
