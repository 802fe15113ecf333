//! The API socket: where it lives, who may create it, and who may talk to it.
//!
//! The directory is 0700 and the socket 0600, but file modes are not the
//! guard: every request's peer uid is checked with SO_PEERCRED, so a
//! socket made world-writable by mistake still only serves its owner.
//!
//! One daemon per socket: a lock file next to the socket (`flock`, held for
//! the life of the process) decides who owns the path. A second daemon
//! refuses to start and names the first; a socket file left by a daemon
//! that died is replaced, since whoever holds the lock knows no one else
//! serves it. Probing with `connect` instead would race two daemons
//! starting together and steal a socket whose owner is merely slow.

use std::fs::File;
use std::io::{self, Read, Seek, Write};
use std::os::fd::OwnedFd;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use axum::extract::connect_info::Connected;
use axum::serve::IncomingStream;
use tokio::net::UnixListener;

#[derive(Debug, thiserror::Error)]
pub enum SocketError {
    #[error("cannot create the socket directory {path}: {source}")]
    Dir { path: PathBuf, source: io::Error },
    #[error(
        "the socket directory {path} belongs to uid {owner}, not to this user (uid {own}): whoever owns it can replace the socket; choose a directory of your own"
    )]
    DirOwner { path: PathBuf, owner: u32, own: u32 },
    #[error(
        "another akscredd{} is already serving {path}; stop it first (systemctl --user stop akscredd.service akscredd.socket) or set [daemon] socket to another path",
        holder.map(|p| format!(" (pid {p})")).unwrap_or_default()
    )]
    InUse { path: PathBuf, holder: Option<u32> },
    #[error("cannot lock {path}: {source}")]
    Lock { path: PathBuf, source: io::Error },
    #[error(
        "something still listens on {path} (akscredd.socket?); stop it (systemctl --user stop akscredd.socket) or set [daemon] socket to another path"
    )]
    Listening { path: PathBuf },
    #[error(
        "{path} exists and is not a socket; move it away or set [daemon] socket to another path"
    )]
    NotASocket { path: PathBuf },
    #[error("cannot listen on {path}: {source}")]
    Bind { path: PathBuf, source: io::Error },
    #[error(
        "cannot tell where the socket goes: neither [daemon] socket, AKSCRED_SOCKET nor XDG_RUNTIME_DIR is set"
    )]
    NoPath,
    #[error(
        "systemd passed {count} sockets and none is named `{FD_NAME}`; set FileDescriptorName={FD_NAME} in akscredd.socket"
    )]
    NoNamedSocket { count: usize },
    #[error(
        "the socket systemd passed ({name}) is not a listening Unix stream socket; akscredd.socket needs ListenStream=%t/akscred/akscred.sock"
    )]
    WrongSocketKind { name: String },
}

/// `FileDescriptorName=` of the API socket in `akscredd.socket`.
pub const FD_NAME: &str = "akscred";

/// The uid this process runs as.
pub fn own_uid() -> u32 {
    crate::process::own_uid()
}

/// `$XDG_RUNTIME_DIR/akscred/akscred.sock` (or `/run/user/UID/...`).
pub fn default_path() -> Option<PathBuf> {
    let runtime = std::env::var_os("XDG_RUNTIME_DIR")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            let dir = PathBuf::from(format!("/run/user/{}", own_uid()));
            dir.is_dir().then_some(dir)
        })?;
    Some(runtime.join("akscred").join("akscred.sock"))
}

/// `[daemon] socket`, then `AKSCRED_SOCKET`, then [`default_path`].
pub fn socket_path(configured: Option<&Path>) -> Result<PathBuf, SocketError> {
    if let Some(p) = configured {
        return Ok(p.to_path_buf());
    }
    if let Some(p) = std::env::var_os(akscred_proto::SOCKET_ENV).filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(p));
    }
    default_path().ok_or(SocketError::NoPath)
}

/// Proof that this process owns a socket path: the lock is held until it
/// is dropped (or the process ends, whichever way it ends).
#[derive(Debug)]
pub struct PathLock {
    _file: File,
    pub path: PathBuf,
}

/// `<socket>.lock`, next to the socket so it shares its private directory.
fn lock_path(socket: &Path) -> PathBuf {
    let mut name = socket.as_os_str().to_owned();
    name.push(".lock");
    PathBuf::from(name)
}

/// Takes the lock of `socket`, or says which process holds it.
pub fn lock(socket: &Path) -> Result<PathLock, SocketError> {
    let path = lock_path(socket);
    let lock_error = |source| SocketError::Lock {
        path: path.clone(),
        source,
    };
    let mut file = File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&path)
        .map_err(lock_error)?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let mut text = String::new();
            let _ = file.read_to_string(&mut text);
            return Err(SocketError::InUse {
                path: socket.to_path_buf(),
                holder: text.trim().parse().ok(),
            });
        }
        Err(std::fs::TryLockError::Error(e)) => return Err(lock_error(e)),
    }
    // The pid is only for the message a second daemon prints.
    let written = file
        .set_len(0)
        .and_then(|()| file.rewind())
        .and_then(|()| writeln!(file, "{}", std::process::id()));
    if let Err(e) = written {
        tracing::debug!(error = %e, path = %path.display(), "cannot write the pid into the lock file");
    }
    Ok(PathLock { _file: file, path })
}

/// Creates the socket's directory (0700) when missing. `private` says the
/// directory is akscred's own (the default `$XDG_RUNTIME_DIR/akscred`): an
/// existing one is then tightened to 0700. A directory named by the user
/// (`[daemon] socket`) may be shared and is left as it is, as long as it
/// belongs to this user or root.
fn prepare_dir(dir: &Path, private: bool) -> Result<(), SocketError> {
    let dir_error = |source| SocketError::Dir {
        path: dir.to_path_buf(),
        source,
    };
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(dir_error)?;
    let meta = std::fs::metadata(dir).map_err(dir_error)?;
    let own = own_uid();
    if meta.uid() != own && meta.uid() != 0 {
        return Err(SocketError::DirOwner {
            path: dir.to_path_buf(),
            owner: meta.uid(),
            own,
        });
    }
    if private && meta.uid() == own && meta.mode() & 0o077 != 0 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(dir_error)?;
    }
    Ok(())
}

/// Binds the socket at `path` (0600, in a 0700 directory when akscred
/// creates it), after taking its lock. `private_dir`: see [`prepare_dir`].
pub fn bind(path: &Path, private_dir: bool) -> Result<(UnixListener, PathLock), SocketError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        prepare_dir(dir, private_dir)?;
    }
    let lock = lock(path)?;
    match std::fs::symlink_metadata(path) {
        // We hold the lock, so no akscredd serves it; but systemd's socket
        // unit may listen there while its service is stopped, and
        // connecting to find out would start that service.
        Ok(m) if m.file_type().is_socket() && is_listening(path) => {
            return Err(SocketError::Listening {
                path: path.to_path_buf(),
            });
        }
        // Left by a daemon that died without cleaning up.
        Ok(m) if m.file_type().is_socket() => {
            std::fs::remove_file(path).map_err(|source| SocketError::Bind {
                path: path.to_path_buf(),
                source,
            })?;
            tracing::info!(socket = %path.display(), "replaced the stale socket of a daemon that is gone");
        }
        Ok(_) => {
            return Err(SocketError::NotASocket {
                path: path.to_path_buf(),
            });
        }
        Err(_) => {}
    }
    let bind_error = |source| SocketError::Bind {
        path: path.to_path_buf(),
        source,
    };
    let listener = UnixListener::bind(path).map_err(bind_error)?;
    // The process umask is 0077 (see `process`), so the socket is born
    // private; the chmod makes sure of it for callers that did not set it.
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(bind_error)?;
    Ok((listener, lock))
}

/// Whether a listening socket is bound to `path`, from `/proc/net/unix`
/// (flag `__SO_ACCEPTCON`, 0x10000). Unreadable: assume not.
fn is_listening(path: &Path) -> bool {
    let Ok(table) = std::fs::read_to_string("/proc/net/unix") else {
        return false;
    };
    let wanted = path.as_os_str().as_encoded_bytes();
    table.lines().skip(1).any(|line| {
        // Seven fields, then the path, which may hold spaces.
        let mut rest = line;
        let mut flags = None;
        for i in 0..7 {
            rest = rest.trim_start();
            let end = rest.find(' ').unwrap_or(rest.len());
            if i == 3 {
                flags = u32::from_str_radix(&rest[..end], 16).ok();
            }
            rest = &rest[end..];
        }
        let listening = flags.is_some_and(|f| f & 0x10000 != 0);
        listening && rest.strip_prefix(' ').map(str::as_bytes) == Some(wanted)
    })
}

/// The API socket among those systemd passed (socket activation): the one
/// named [`FD_NAME`], or the only one. Checked to be a listening Unix
/// stream socket, so a unit with the wrong `ListenStream=` fails clearly.
pub fn from_systemd(sockets: Vec<(OwnedFd, String)>) -> Result<Option<UnixListener>, SocketError> {
    let count = sockets.len();
    let chosen = if count == 1 {
        sockets.into_iter().next()
    } else {
        sockets.into_iter().find(|(_, name)| name == FD_NAME)
    };
    let Some((fd, name)) = chosen else {
        return match count {
            0 => Ok(None),
            count => Err(SocketError::NoNamedSocket { count }),
        };
    };
    use rustix::net::{AddressFamily, SocketType, sockopt};
    let is_listening_unix_stream = sockopt::socket_domain(&fd).ok() == Some(AddressFamily::UNIX)
        && sockopt::socket_type(&fd).ok() == Some(SocketType::STREAM)
        && sockopt::socket_acceptconn(&fd).unwrap_or(false);
    if !is_listening_unix_stream {
        return Err(SocketError::WrongSocketKind { name });
    }
    let std_listener = std::os::unix::net::UnixListener::from(fd);
    let bind_error = |source| SocketError::Bind {
        path: PathBuf::from(format!("the socket systemd passed ({name})")),
        source,
    };
    std_listener.set_nonblocking(true).map_err(bind_error)?;
    UnixListener::from_std(std_listener)
        .map_err(bind_error)
        .map(Some)
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
///
/// There is no `allow_groups`: SO_PEERCRED carries the peer's primary gid
/// only, and its supplementary groups would have to be read from
/// `/proc/PID/status`, where the pid may already belong to another process.
#[derive(Debug, Clone)]
pub struct PeerPolicy {
    pub own_uid: u32,
    pub allow_uids: Vec<u32>,
}

impl PeerPolicy {
    pub fn allows(&self, uid: Option<u32>) -> bool {
        uid.is_some_and(|u| Self::allowed(self.own_uid, &self.allow_uids, u))
    }

    /// The rule itself, for callers that hold `allow_uids` elsewhere.
    pub fn allowed(own_uid: u32, allow_uids: &[u32], uid: u32) -> bool {
        uid == 0 || uid == own_uid || allow_uids.contains(&uid)
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

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().mode() & 0o777
    }

    #[tokio::test]
    async fn bind_makes_private_dir_and_socket_and_replaces_stale_ones() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("run/akscred.sock");
        let (l, lock) = bind(&path, true).unwrap();
        assert_eq!(mode(path.parent().unwrap()), 0o700);
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(&lock.path), 0o600);
        // A second daemon is refused while the first holds the lock, and is
        // told who holds it.
        match bind(&path, true) {
            Err(SocketError::InUse { holder, .. }) => {
                assert_eq!(holder, Some(std::process::id()))
            }
            other => panic!("expected InUse, got {other:?}"),
        }
        // The first dies without removing its socket: the next one replaces it.
        drop(l);
        drop(lock);
        assert!(path.exists());
        let (_l, _lock) = bind(&path, true).unwrap();
    }

    #[tokio::test]
    async fn an_existing_private_dir_is_tightened_a_shared_one_is_not() {
        let tmp = tempfile::tempdir().unwrap();
        let private = tmp.path().join("akscred");
        std::fs::create_dir(&private).unwrap();
        std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o755)).unwrap();
        let _a = bind(&private.join("akscred.sock"), true).unwrap();
        assert_eq!(mode(&private), 0o700);

        let shared = tmp.path().join("shared");
        std::fs::create_dir(&shared).unwrap();
        std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o755)).unwrap();
        let (_b, _lock) = bind(&shared.join("akscred.sock"), false).unwrap();
        assert_eq!(mode(&shared), 0o755);
        assert_eq!(mode(&shared.join("akscred.sock")), 0o600);
    }

    #[tokio::test]
    async fn a_socket_systemd_listens_on_is_not_taken() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("with space/akscred.sock");
        std::fs::create_dir(path.parent().unwrap()).unwrap();
        // Like akscredd.socket: listening, no daemon, no lock held.
        let systemd = std::os::unix::net::UnixListener::bind(&path).unwrap();
        assert!(matches!(
            bind(&path, false),
            Err(SocketError::Listening { .. })
        ));
        drop(systemd);
        let (_l, _lock) = bind(&path, false).unwrap();
    }

    #[tokio::test]
    async fn a_regular_file_in_the_way_is_not_deleted() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("akscred.sock");
        std::fs::write(&path, "precious").unwrap();
        assert!(matches!(
            bind(&path, false),
            Err(SocketError::NotASocket { .. })
        ));
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "precious");
    }

    #[tokio::test]
    async fn passed_sockets_are_chosen_by_name_and_checked() {
        let tmp = tempfile::tempdir().unwrap();
        let listening = |name: &str| {
            let l = std::os::unix::net::UnixListener::bind(tmp.path().join(name)).unwrap();
            OwnedFd::from(l)
        };
        assert!(from_systemd(vec![]).unwrap().is_none());
        let only = from_systemd(vec![(listening("a"), "akscredd.socket".into())]).unwrap();
        assert!(only.is_some());
        let named = from_systemd(vec![
            (listening("b"), "other".into()),
            (listening("c"), FD_NAME.into()),
        ])
        .unwrap()
        .unwrap();
        assert!(
            named
                .local_addr()
                .unwrap()
                .as_pathname()
                .unwrap()
                .ends_with("c")
        );
        assert!(matches!(
            from_systemd(vec![
                (listening("d"), "x".into()),
                (listening("e"), "y".into())
            ]),
            Err(SocketError::NoNamedSocket { count: 2 })
        ));
        let dgram = std::os::unix::net::UnixDatagram::bind(tmp.path().join("f")).unwrap();
        assert!(matches!(
            from_systemd(vec![(OwnedFd::from(dgram), FD_NAME.into())]),
            Err(SocketError::WrongSocketKind { .. })
        ));
    }
}
