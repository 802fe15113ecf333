//! The system under test: the real `akscredd` binary, configured for every
//! cluster of an in-process emulator, and what can be read from outside it
//! (readiness notification, socket, status, /proc).
//!
//! Everything here is blocking: the emulator's servers run on the tokio
//! runtime's worker threads on their own, so the measuring thread never
//! enters the runtime and its timings include no scheduling of ours.

use std::io::{Read, Write};
use std::os::unix::net::{UnixDatagram, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use akscred_tests::{Emulator, standard};

/// The binaries under test, next to this one in `target/release`.
pub struct Bins {
    pub akscredd: PathBuf,
    pub akscred: PathBuf,
    pub const_credential: PathBuf,
}

impl Bins {
    pub fn locate() -> Result<Bins, String> {
        let own = std::env::current_exe().map_err(|e| format!("cannot find myself: {e}"))?;
        let dir = own.parent().ok_or("no directory around the executable")?;
        let find = |name: &str| {
            let p = dir.join(name);
            if p.is_file() {
                Ok(p)
            } else {
                Err(format!(
                    "{} is missing: run `cargo build --release --workspace --bins` (bench/run.sh does)",
                    p.display()
                ))
            }
        };
        Ok(Bins {
            akscredd: find("akscredd")?,
            akscred: find("akscred")?,
            const_credential: find("bench-const-credential")?,
        })
    }
}

/// A running akscredd with a config for every cluster of the emulator.
pub struct Daemon {
    child: Child,
    pub dir: tempfile::TempDir,
    pub socket: PathBuf,
    pub started: Instant,
    /// When `READY=1` arrived on `NOTIFY_SOCKET`.
    ready: Arc<Mutex<Option<Instant>>>,
    pub clusters: usize,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Who signs in for which cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// alice for every cluster.
    OneIdentity,
    /// Cluster `i` has identity `u{i}` (emulator user `UserSpec` `i`, see
    /// [`identity_upn`]).
    IdentityPerCluster,
}

/// The UPN of the `i`-th extra user of [`Layout::IdentityPerCluster`].
pub fn identity_upn(i: usize) -> String {
    format!("user{i:04}@{}", standard::CUSTOM_DOMAIN)
}

/// The config akscredd gets: the emulator as a custom cloud, the
/// identities, and one ARM-discovered cluster table per emulated cluster.
/// `daemon_extra` goes into `[daemon]` (e.g. `refresh_before = "1s"`).
fn write_config(
    emu: &Emulator,
    dir: &Path,
    daemon_extra: &str,
    layout: Layout,
) -> Result<PathBuf, String> {
    let io =
        |e: std::io::Error| format!("cannot write the daemon config in {}: {e}", dir.display());
    std::fs::write(dir.join("ca.pem"), emu.ca_pem()).map_err(io)?;
    // Every emulated user has the standard password.
    std::fs::write(dir.join("password"), format!("{}\n", standard::PASSWORD)).map_err(io)?;
    let mut cfg = format!(
        "[daemon]\nsocket = \"{}\"\nca_file = \"ca.pem\"\n{daemon_extra}\n\n\
         [clouds.emulator]\nlogin_endpoint = \"{}\"\narm_endpoint = \"{}\"\n\
         arm_resource = \"https://management.core.windows.net/\"\n",
        dir.join("akscred.sock").display(),
        emu.login_url(),
        emu.arm_url(),
    );
    let identity = |cfg: &mut String, name: &str, upn: &str| {
        cfg.push_str(&format!(
            "\n[identities.{name}]\ncloud = \"emulator\"\ntenant = \"{}\"\nusername = \"{upn}\"\n\
             password = {{ file = \"password\" }}\n",
            standard::TENANT_DOMAIN,
        ));
    };
    if layout == Layout::OneIdentity {
        identity(&mut cfg, "alice", standard::ALICE);
    }
    for (i, c) in emu.scenario().clusters.iter().enumerate() {
        let who = match layout {
            Layout::OneIdentity => "alice".to_owned(),
            Layout::IdentityPerCluster => {
                let name = format!("u{i:04}");
                identity(&mut cfg, &name, &identity_upn(i));
                name
            }
        };
        cfg.push_str(&format!(
            "\n[clusters.{}]\nidentity = \"{who}\"\nsubscription = \"{}\"\nresource_group = \"{}\"\nname = \"{}\"\n",
            c.name, c.subscription, c.resource_group, c.name
        ));
    }
    let path = dir.join("config.toml");
    std::fs::write(&path, cfg).map_err(io)?;
    Ok(path)
}

impl Daemon {
    /// Writes the config and starts akscredd; returns at once (see
    /// [`Daemon::wait_ready`], [`Daemon::wait_all_ready`]). `started` is
    /// taken just before the process is spawned.
    pub fn start(
        bins: &Bins,
        emu: &Emulator,
        daemon_extra: &str,
        layout: Layout,
    ) -> Result<Daemon, String> {
        let dir = tempfile::Builder::new()
            .prefix("akscred-bench-")
            .tempdir()
            .map_err(|e| format!("cannot make a temporary directory: {e}"))?;
        let config = write_config(emu, dir.path(), daemon_extra, layout)?;
        let check = Command::new(&bins.akscredd)
            .args(["check-config", "--config"])
            .arg(&config)
            .output()
            .map_err(|e| format!("cannot run akscredd check-config: {e}"))?;
        if !check.status.success() {
            return Err(format!(
                "akscredd check-config refused the bench config: {}",
                String::from_utf8_lossy(&check.stderr)
            ));
        }

        let notify_path = dir.path().join("notify.sock");
        let notify = UnixDatagram::bind(&notify_path)
            .map_err(|e| format!("cannot bind {}: {e}", notify_path.display()))?;
        let ready = Arc::new(Mutex::new(None));
        let seen = ready.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = notify.recv(&mut buf) {
                let at = Instant::now();
                let text = String::from_utf8_lossy(&buf[..n]);
                if text.lines().any(|l| l == "READY=1") {
                    let mut r = seen.lock().unwrap_or_else(|p| p.into_inner());
                    r.get_or_insert(at);
                }
            }
        });

        let log = std::fs::File::create(dir.path().join("akscredd.log"))
            .map_err(|e| format!("cannot create the daemon log: {e}"))?;
        let mut cmd = Command::new(&bins.akscredd);
        cmd.arg("--config")
            .arg(&config)
            .env("NOTIFY_SOCKET", &notify_path)
            .env_remove("AKSCRED_SOCKET")
            .env_remove("LISTEN_FDS")
            .env_remove("LISTEN_PID")
            .env_remove("WATCHDOG_USEC")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        let started = Instant::now();
        let child = cmd
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", bins.akscredd.display()))?;
        Ok(Daemon {
            child,
            socket: dir.path().join("akscred.sock"),
            dir,
            started,
            ready,
            clusters: emu.scenario().clusters.len(),
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("akscredd.log")).unwrap_or_default()
    }

    fn check_alive(&mut self) -> Result<(), String> {
        match self.child.try_wait() {
            Ok(Some(status)) => Err(format!(
                "akscredd exited ({status}); its log:\n{}",
                tail(&self.log(), 30)
            )),
            _ => Ok(()),
        }
    }

    /// Time from spawn to `READY=1`, and from spawn to the socket's
    /// appearance (whichever comes later is when `akscred` can connect).
    pub fn wait_ready(&mut self, timeout: Duration) -> Result<(Duration, Duration), String> {
        let mut socket_at = None;
        loop {
            if socket_at.is_none() && self.socket.exists() {
                socket_at = Some(Instant::now());
            }
            let ready_at = *self.ready.lock().unwrap_or_else(|p| p.into_inner());
            if let (Some(r), Some(s)) = (ready_at, socket_at) {
                return Ok((r - self.started, s - self.started));
            }
            self.check_alive()?;
            if self.started.elapsed() > timeout {
                return Err(format!(
                    "akscredd not ready after {timeout:?} (READY=1: {}, socket: {})",
                    ready_at.is_some(),
                    socket_at.is_some()
                ));
            }
            std::thread::sleep(Duration::from_micros(200));
        }
    }

    /// Clusters in state `ready`, from `GET /v1/status`.
    pub fn ready_clusters(&self) -> Result<usize, String> {
        let (code, body) = http_get(&self.socket, "/v1/status")?;
        if code != 200 {
            return Err(format!("GET /v1/status answered {code}"));
        }
        let v: serde_json::Value = serde_json::from_slice(&body)
            .map_err(|e| format!("GET /v1/status is not JSON: {e}"))?;
        Ok(v["clusters"]
            .as_array()
            .map(|cs| cs.iter().filter(|c| c["state"] == "ready").count())
            .unwrap_or(0))
    }

    /// Polls status every `every` until every cluster is ready; the time
    /// since spawn when that was first seen.
    pub fn wait_all_ready(
        &mut self,
        every: Duration,
        timeout: Duration,
    ) -> Result<Duration, String> {
        loop {
            let ready = self.ready_clusters().unwrap_or(0);
            if ready == self.clusters {
                return Ok(self.started.elapsed());
            }
            self.check_alive()?;
            if self.started.elapsed() > timeout {
                return Err(format!(
                    "only {ready} of {} clusters ready after {timeout:?}; akscredd's log ends:\n{}",
                    self.clusters,
                    tail(&self.log(), 20)
                ));
            }
            std::thread::sleep(every);
        }
    }

    pub fn memory(&self) -> Result<Memory, String> {
        Memory::of(self.pid())
    }
}

/// From `/proc/PID/status`, in KiB.
#[derive(Debug, Clone, Copy)]
pub struct Memory {
    pub rss_kib: u64,
    pub hwm_kib: u64,
    pub anon_kib: u64,
    pub threads: u64,
}

impl Memory {
    pub fn of(pid: u32) -> Result<Memory, String> {
        let text = std::fs::read_to_string(format!("/proc/{pid}/status"))
            .map_err(|e| format!("cannot read /proc/{pid}/status: {e}"))?;
        let field = |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
                .unwrap_or(0)
        };
        Ok(Memory {
            rss_kib: field("VmRSS:"),
            hwm_kib: field("VmHWM:"),
            anon_kib: field("RssAnon:"),
            threads: field("Threads:"),
        })
    }
}

/// User plus system CPU time a process has used so far, from
/// `/proc/PID/stat` (clock ticks of 10 ms: `USER_HZ` is 100 on Linux).
pub fn cpu_time(pid: &str) -> Duration {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The command name may hold spaces: fields are counted after its `)`.
    let rest = text.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // utime and stime are fields 14 and 15 of stat(5), 12 and 13 after `)`.
    Duration::from_millis((ticks(11) + ticks(12)) * 10)
}

pub fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

pub fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// One `GET` over the socket with `Connection: close`: status and body.
/// Enough HTTP for akscredd's answers (Content-Length or chunked).
pub fn http_get(socket: &Path, target: &str) -> Result<(u16, Vec<u8>), String> {
    let fail = |e: std::io::Error| format!("{}: {e}", socket.display());
    let mut s = UnixStream::connect(socket).map_err(fail)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(fail)?;
    write!(
        s,
        "GET {target} HTTP/1.1\r\nHost: akscred\r\nConnection: close\r\n\r\n"
    )
    .map_err(fail)?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).map_err(fail)?;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("an answer without a header end")?;
    let head = String::from_utf8_lossy(&raw[..split]).to_ascii_lowercase();
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or("an answer without a status")?;
    let mut body = raw[split + 4..].to_vec();
    if head.contains("transfer-encoding: chunked") {
        body = dechunk(&body).ok_or("a malformed chunked body")?;
    }
    Ok((code, body))
}

fn dechunk(mut rest: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let eol = rest.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&rest[..eol]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        rest = &rest[eol + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(rest.get(..size)?);
        rest = rest.get(size + 2..)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunked_bodies() {
        assert_eq!(
            dechunk(b"3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n").as_deref(),
            Some(&b"abcde"[..])
        );
        assert_eq!(dechunk(b"5\r\nab"), None);
    }
}
