//! systemd integration: readiness and status notifications, the watchdog,
//! and the sockets of socket activation.
//!
//! Protocol (sd_notify(3)): datagrams of `KEY=VALUE` lines to the socket in
//! `$NOTIFY_SOCKET`. The daemon sends `READY=1` once the configuration is
//! loaded and the API socket listens (sign-ins go on in the background, as
//! kanidm's unixd does: bind first, then ready); `STATUS=` one line for
//! `systemctl status`; `WATCHDOG=1` from the scheduler task, so that a
//! stuck runtime or a deadlocked broker stops the pings and gets the
//! service restarted; `RELOADING=1` with `MONOTONIC_USEC=` and `READY=1`
//! around a reload; `STOPPING=1` when told to stop.
//!
//! [`Systemd::from_env`] reads `NOTIFY_SOCKET`, `WATCHDOG_USEC`/`WATCHDOG_PID`
//! and `LISTEN_PID`/`LISTEN_FDS`/`LISTEN_FDNAMES` once and removes them from
//! the environment, so a password `command` the daemon runs inherits neither
//! the notification socket nor the idea that sockets were passed to it.
//! Removing environment variables is only sound while the process has one
//! thread: `main` calls it before the runtime starts.

use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::sync::Mutex;
use std::time::Duration;

use akscred_proto::Status;

/// Everything systemd handed the process at start.
#[derive(Debug, Default)]
pub struct Systemd {
    pub notifier: Notifier,
    /// `WatchdogSec=` of the unit, when the watchdog is on for this process.
    pub watchdog: Option<Duration>,
    /// Sockets passed by socket activation, with their `FileDescriptorName=`.
    pub sockets: Vec<(OwnedFd, String)>,
    /// Problems worth a log line once logging is set up.
    pub warnings: Vec<String>,
}

impl Systemd {
    /// Not started by systemd: nothing to notify, no sockets (tests, a
    /// daemon started from a terminal).
    pub fn none() -> Systemd {
        Systemd::default()
    }

    /// Reads what systemd passed and clears it from the environment. Call
    /// it once, before any other thread exists.
    pub fn from_env() -> Systemd {
        let mut out = Systemd::default();
        match Notifier::from_env() {
            Ok(n) => out.notifier = n,
            Err(e) => out.warnings.push(e),
        }
        // Clears NOTIFY_SOCKET (sd-notify's `unset_env`), sending a first
        // status on the way.
        let _ = sd_notify::notify(true, &[sd_notify::NotifyState::Status("starting")]);

        let mut usec = 0;
        if sd_notify::watchdog_enabled(true, &mut usec) && usec > 0 {
            out.watchdog = Some(Duration::from_micros(usec));
        }

        match sd_notify::listen_fds_with_names(true) {
            Ok(fds) => {
                for (fd, name) in fds {
                    out.sockets.push((adopt_fd(fd), name));
                }
            }
            Err(e) => out
                .warnings
                .push(format!("ignoring the sockets systemd passed: {e}")),
        }
        out
    }
}

#[allow(unsafe_code)]
fn adopt_fd(fd: RawFd) -> OwnedFd {
    // SAFETY: sd_notify::listen_fds_with_names only yields the descriptors
    // systemd passed to this process (LISTEN_PID checked), numbered from 3
    // and counted by LISTEN_FDS; nothing else in the process owns them, and
    // this runs once, before any other code could open or close them.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

/// Sends notifications to systemd; does nothing when not started by it.
#[derive(Debug, Default)]
pub struct Notifier {
    target: Option<(UnixDatagram, SocketAddr)>,
    /// The last `STATUS=` sent, so an unchanged line is not sent again.
    last_status: Mutex<String>,
}

impl Notifier {
    fn from_env() -> Result<Notifier, String> {
        let Some(raw) = std::env::var_os("NOTIFY_SOCKET") else {
            return Ok(Notifier::default());
        };
        let bytes = raw.as_encoded_bytes();
        let addr = match bytes.first() {
            // An abstract socket (systemd's default for user managers).
            Some(b'@') => SocketAddr::from_abstract_name(&bytes[1..]),
            Some(b'/') => SocketAddr::from_pathname(&raw),
            _ => {
                return Err(format!(
                    "NOTIFY_SOCKET={} is neither a path nor an abstract socket; systemd will not hear from this daemon",
                    raw.to_string_lossy()
                ));
            }
        }
        .map_err(|e| format!("NOTIFY_SOCKET={}: {e}", raw.to_string_lossy()))?;
        let sock = UnixDatagram::unbound()
            .map_err(|e| format!("cannot create the notification socket: {e}"))?;
        Ok(Notifier {
            target: Some((sock, addr)),
            last_status: Mutex::new(String::new()),
        })
    }

    pub fn is_enabled(&self) -> bool {
        self.target.is_some()
    }

    fn send(&self, message: &str) {
        if let Some((sock, addr)) = &self.target
            && let Err(e) = sock.send_to_addr(message.as_bytes(), addr)
        {
            tracing::debug!(error = %e, "cannot notify systemd");
        }
    }

    /// `READY=1` with the current status line.
    pub fn ready(&self, status: &str) {
        self.send(&format!("READY=1\nSTATUS={}", self.remember(status)));
    }

    /// `RELOADING=1`; the monotonic timestamp lets systemd ≥ 253 match it
    /// with the reload it asked for (older versions ignore it).
    pub fn reloading(&self) {
        let mut msg = String::from("RELOADING=1\nSTATUS=reloading the configuration");
        if let Ok(t) = sd_notify::NotifyState::monotonic_usec_now() {
            msg.push('\n');
            msg.push_str(&t.to_string());
        }
        self.send(&msg);
    }

    pub fn stopping(&self) {
        self.send("STOPPING=1\nSTATUS=stopping");
    }

    /// `STATUS=`, only when it changed.
    pub fn status(&self, status: &str) {
        if !self.is_enabled() {
            return;
        }
        let line = one_line(status);
        let mut last = self.last_status.lock().unwrap_or_else(|p| p.into_inner());
        if *last != line {
            self.send(&format!("STATUS={line}"));
            *last = line;
        }
    }

    pub fn watchdog(&self) {
        self.send("WATCHDOG=1");
    }

    fn remember(&self, status: &str) -> String {
        let line = one_line(status);
        *self.last_status.lock().unwrap_or_else(|p| p.into_inner()) = line.clone();
        line
    }
}

/// systemd shows one line; long ones are cut at a character boundary.
fn one_line(s: &str) -> String {
    const MAX: usize = 300;
    let mut line: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if line.len() > MAX {
        let cut = line.floor_char_boundary(MAX - 3);
        line.truncate(cut);
        line.push('…');
    }
    line
}

/// How often the scheduler pings the watchdog and refreshes `STATUS=`:
/// at half the watchdog interval (systemd's advice), and at least every
/// two seconds so the status line follows sign-ins closely.
pub fn heartbeat_period(watchdog: Option<Duration>) -> Duration {
    const STATUS_EVERY: Duration = Duration::from_secs(2);
    watchdog
        .map(|w| (w / 2).max(Duration::from_millis(100)))
        .map_or(STATUS_EVERY, |w| w.min(STATUS_EVERY))
}

/// The `STATUS=` line: `4/5 clusters ready; alice needs attention:
/// AADSTS50126: ...`, then other errors, then `n signing in`.
pub fn status_line(status: &Status) -> String {
    let total = status.clusters.len();
    if total == 0 {
        return "no clusters configured".into();
    }
    let ready = status
        .clusters
        .iter()
        .filter(|c| c.state == "ready")
        .count();
    let mut parts = vec![format!("{ready}/{total} clusters ready")];
    for id in &status.identities {
        if id.state == "needs_attention" {
            let why = id
                .last_error
                .as_ref()
                .map(|e| e.message.as_str())
                .unwrap_or("");
            parts.push(format!("{} needs attention: {why}", id.name));
        }
    }
    let failed: Vec<_> = status
        .clusters
        .iter()
        .filter(|c| c.state == "error")
        .collect();
    if let Some(first) = failed.first() {
        let why = first
            .last_error
            .as_ref()
            .map(|e| e.message.as_str())
            .unwrap_or("");
        let others = match failed.len() {
            1 => String::new(),
            n => format!(" (and {} more)", n - 1),
        };
        parts.push(format!("{} failing{others}: {why}", first.name));
    }
    let pending = status
        .clusters
        .iter()
        .filter(|c| c.state == "pending")
        .count();
    if pending > 0 {
        parts.push(format!("{pending} signing in"));
    }
    one_line(&parts.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use akscred_proto::{ApiError, ClusterStatus, IdentityStatus};

    // Built from JSON so fields added to the wire types later keep their
    // defaults here.
    fn cluster(name: &str, state: &str, error: Option<&str>) -> ClusterStatus {
        let mut c: ClusterStatus = serde_json::from_value(serde_json::json!({
            "name": name, "identity": "alice", "state": state,
        }))
        .unwrap();
        c.last_error = error.map(|m| ApiError {
            code: "error".into(),
            message: m.into(),
            hint: String::new(),
        });
        c
    }

    fn identity(name: &str, state: &str, error: Option<&str>) -> IdentityStatus {
        let mut id: IdentityStatus = serde_json::from_value(serde_json::json!({
            "name": name, "username": format!("{name}@contoso.com"), "state": state,
        }))
        .unwrap();
        id.last_error = error.map(|m| ApiError {
            code: "needs_attention".into(),
            message: m.into(),
            hint: "run akscred retry".into(),
        });
        id
    }

    #[test]
    fn status_line_counts_and_names_the_identity_to_fix() {
        let s = Status {
            identities: vec![
                identity(
                    "alice",
                    "needs_attention",
                    Some("AADSTS50126: wrong password"),
                ),
                identity("bob", "ok", None),
            ],
            clusters: vec![
                cluster("a", "ready", None),
                cluster("b", "ready", None),
                cluster("c", "ready", None),
                cluster("d", "ready", None),
                cluster("e", "needs_attention", None),
            ],
        };
        assert_eq!(
            status_line(&s),
            "4/5 clusters ready; alice needs attention: AADSTS50126: wrong password"
        );
    }

    #[test]
    fn status_line_errors_and_pending() {
        let s = Status {
            identities: vec![identity("alice", "ok", None)],
            clusters: vec![
                cluster("a", "error", Some("ARM said 503\nsecond line")),
                cluster("b", "error", Some("x")),
                cluster("c", "pending", None),
            ],
        };
        let line = status_line(&s);
        assert_eq!(
            line,
            "0/3 clusters ready; a failing (and 1 more): ARM said 503 second line; 1 signing in"
        );
        assert!(!line.contains('\n'));
        assert_eq!(status_line(&Status::default()), "no clusters configured");
    }

    #[test]
    fn long_lines_are_cut_on_a_char_boundary() {
        let line = one_line(&"é".repeat(400));
        assert!(line.len() <= 300 && line.ends_with('…'), "{}", line.len());
    }

    #[test]
    fn heartbeat_is_half_the_watchdog_and_at_most_two_seconds() {
        assert_eq!(heartbeat_period(None), Duration::from_secs(2));
        assert_eq!(
            heartbeat_period(Some(Duration::from_secs(60))),
            Duration::from_secs(2)
        );
        assert_eq!(
            heartbeat_period(Some(Duration::from_secs(3))),
            Duration::from_millis(1500)
        );
    }

    #[test]
    fn notifier_sends_to_a_path_socket_and_skips_unchanged_status() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let server = UnixDatagram::bind(&path).unwrap();
        server
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let n = Notifier {
            target: Some((
                UnixDatagram::unbound().unwrap(),
                SocketAddr::from_pathname(&path).unwrap(),
            )),
            last_status: Mutex::new(String::new()),
        };
        let mut buf = [0u8; 512];
        let mut recv = || {
            let len = server.recv(&mut buf).unwrap();
            String::from_utf8_lossy(&buf[..len]).into_owned()
        };
        n.ready("1/1 clusters ready");
        assert_eq!(recv(), "READY=1\nSTATUS=1/1 clusters ready");
        n.status("1/1 clusters ready");
        n.status("0/1 clusters ready");
        assert_eq!(recv(), "STATUS=0/1 clusters ready");
        n.reloading();
        let msg = recv();
        assert!(msg.starts_with("RELOADING=1\n"), "{msg}");
        assert!(msg.contains("\nMONOTONIC_USEC="), "{msg}");
        n.watchdog();
        assert_eq!(recv(), "WATCHDOG=1");
        n.stopping();
        assert!(recv().starts_with("STOPPING=1"));
    }
}
