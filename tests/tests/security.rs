//! Who may ask, what can leak, what the process lets others see: the
//! ssh-agent-like promises of akscredd, checked against the real binary.
//!
//! Several tests switch users with `setpriv` (util-linux) and so need root,
//! as CI has; they fail, saying so, without it. What each proves:
//!
//! - Peer check: a world-writable socket (`chmod 666`, directory opened up
//!   too) still refuses uid 65534 with 403 and a log line naming the uid,
//!   lets an `allow_uids` uid in, and keeps serving its owner.
//! - Not dumpable: the daemon, running as uid 65534, is inspected by
//!   another process of uid 65534 without capabilities (what a compromised
//!   program of the same user would be). The kernel shows the files in
//!   `/proc/PID` (`status`, `environ`, `mem`, ...) as owned by root: its
//!   sign of a non-dumpable process, as `/proc/PID/status` has no field for
//!   it (the directory itself keeps the uid). `/proc/PID/environ` cannot be
//!   read, and
//!   `ptrace(PTRACE_ATTACH)` fails with EPERM, while the same attach on a
//!   plain `sleep` of that user succeeds: the refusal comes from the
//!   dumpable flag, not from a Yama policy or a missing permission. Root
//!   (CAP_SYS_PTRACE) can still attach; nothing can stop root.
//!   `/proc/PID/limits` shows a core size of 0 (soft and hard).
//! - One daemon per socket (lock file), stale sockets replaced, private
//!   modes under `umask 000`, a config others can write refused.
//! - `HTTPS_PROXY` / `NO_PROXY` are honoured.
//! - Nothing written by akscred (logs at trace level, status, metrics,
//!   kubeconfigs) holds a password, client secret, access or refresh token
//!   or SAML assertion, after a flow with managed, federated and service
//!   principal identities, a wrong password, refreshes and an outage.

mod support;

use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use akscred_tests::scenario::standard;
use akscred_tests::{Emulator, Fault, FaultTarget, Scenario};
use support::{bin, ok};

const NOBODY: u32 = 65534;

fn test_uid() -> u32 {
    let f = tempfile::tempfile().unwrap();
    f.metadata().unwrap().uid()
}

fn need_root(what: &str) {
    assert_eq!(
        test_uid(),
        0,
        "{what} switches users with setpriv and needs root (CI runs as root)"
    );
    assert!(
        support::on_path("setpriv").is_some(),
        "{what} needs setpriv (util-linux; .ci/run installs it)"
    );
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn chown_tree(path: &Path, uid: u32) {
    std::os::unix::fs::lchown(path, Some(uid), Some(uid)).unwrap();
    if path.is_dir() {
        for e in std::fs::read_dir(path).unwrap() {
            chown_tree(&e.unwrap().path(), uid);
        }
    }
}

/// `program args` as `uid` (and gid), without any capability.
fn as_uid(uid: u32, program: &Path) -> Command {
    let mut cmd = Command::new("setpriv");
    cmd.args([
        format!("--reuid={uid}"),
        format!("--regid={uid}"),
        "--clear-groups".into(),
        "--inh-caps=-all".into(),
        "--".into(),
    ])
    .arg(program);
    cmd
}

/// A daemon started however the test needs, stopped when dropped.
struct Daemon {
    child: Child,
    socket: PathBuf,
    log: PathBuf,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Daemon {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn akscred(&self, args: &[&str]) -> Output {
        Command::new(bin("akscred"))
            .args(args)
            .env("AKSCRED_SOCKET", &self.socket)
            .env_remove("KUBECONFIG")
            .output()
            .unwrap()
    }

    fn wait_socket(&mut self) {
        let start = Instant::now();
        while !self.socket.exists()
            || std::os::unix::net::UnixStream::connect(&self.socket).is_err()
        {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("akscredd exited ({status}): {}", self.log());
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "no socket after 20 s: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn wait_ready(&self, clusters: &[&str]) -> serde_json::Value {
        let start = Instant::now();
        loop {
            let out = self.akscred(&["status", "--json"]);
            if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&out.stdout) {
                let ready = clusters.iter().all(|c| {
                    v["clusters"]
                        .as_array()
                        .is_some_and(|a| a.iter().any(|x| x["name"] == *c && x["state"] == "ready"))
                });
                if ready {
                    return v;
                }
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "clusters {clusters:?} not ready: {}\n{}",
                String::from_utf8_lossy(&out.stdout),
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// One HTTP/1.1 request on the socket; (status, body).
    fn request(&self, method: &str, target: &str) -> (u16, String) {
        raw_request(&self.socket, method, target)
    }
}

fn raw_request(socket: &Path, method: &str, target: &str) -> (u16, String) {
    let mut s = std::os::unix::net::UnixStream::connect(socket).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        s,
        "{method} {target} HTTP/1.1\r\nHost: akscred\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, body.to_string())
}

fn cloud(emu: &Emulator, dir: &Path, socket: &Path, extra: &str) -> String {
    std::fs::write(dir.join("ca.pem"), emu.ca_pem()).unwrap();
    format!(
        "[daemon]\nsocket = \"{}\"\nca_file = \"ca.pem\"\ntick = \"1s\"\n{extra}\n[clouds.emulator]\nlogin_endpoint = \"{}\"\narm_endpoint = \"{}\"\narm_resource = \"https://management.core.windows.net/\"\n",
        socket.display(),
        emu.login_url(),
        emu.arm_url(),
    )
}

fn identity(dir: &Path, name: &str, upn: &str, password: &str) -> String {
    let pw = dir.join(format!("{name}.password"));
    std::fs::write(&pw, format!("{password}\n")).unwrap();
    chmod(&pw, 0o600);
    format!(
        "\n[identities.{name}]\ncloud = \"emulator\"\ntenant = \"{}\"\nusername = \"{upn}\"\npassword = {{ file = \"{}\" }}\n",
        standard::TENANT_DOMAIN,
        pw.display()
    )
}

fn cluster(table: &str, identity: &str, aks: &str) -> String {
    format!(
        "\n[clusters.{table}]\nidentity = \"{identity}\"\nsubscription = \"{}\"\nresource_group = \"{}\"\nname = \"{aks}\"\n",
        standard::SUBSCRIPTION,
        standard::RESOURCE_GROUP,
    )
}

/// alice with `clusters`, in `dir`, socket `dir/akscred.sock`.
fn alice_config(emu: &Emulator, dir: &Path, extra_daemon: &str, clusters: &[&str]) -> PathBuf {
    let socket = dir.join("akscred.sock");
    let mut cfg = cloud(emu, dir, &socket, extra_daemon);
    cfg += &identity(dir, "alice", standard::ALICE, standard::PASSWORD);
    for c in clusters {
        cfg += &cluster(c, "alice", c);
    }
    let path = dir.join("config.toml");
    std::fs::write(&path, cfg).unwrap();
    path
}

/// Starts `akscredd --config CONFIG` through `command` (the daemon binary
/// is appended with its arguments); logs to `dir/akscredd.log`.
fn spawn(
    mut command: Command,
    dir: &Path,
    config: &Path,
    socket: &Path,
    log_level: &str,
) -> Daemon {
    let log = dir.join("akscredd.log");
    let file = std::fs::File::create(&log).unwrap();
    let child = command
        .arg("--config")
        .arg(config)
        .env("AKSCRED_LOG", log_level)
        .env_remove("JOURNAL_STREAM")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(file)
        .spawn()
        .unwrap();
    let mut d = Daemon {
        child,
        socket: socket.to_path_buf(),
        log,
    };
    d.wait_socket();
    d
}

fn start(emu: &Emulator, dir: &Path, extra_daemon: &str, clusters: &[&str]) -> Daemon {
    let config = alice_config(emu, dir, extra_daemon, clusters);
    spawn(
        Command::new(bin("akscredd")),
        dir,
        &config,
        &dir.join("akscred.sock"),
        "info",
    )
}

const RAW_GET: &str = r#"
import socket, sys
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
s.sendall(b"GET /v1/status HTTP/1.1\r\nHost: akscred\r\nConnection: close\r\n\r\n")
data = b""
while True:
    chunk = s.recv(65536)
    if not chunk:
        break
    data += chunk
sys.stdout.write(data.decode("utf-8", "replace"))
"#;

/// A python3 other users may run: the system one, not a shim in root's
/// home (pyenv).
fn python() -> PathBuf {
    ["/usr/bin/python3", "/usr/local/bin/python3"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .expect("/usr/bin/python3 is needed: the tests run it as another user")
}

/// `GET /v1/status` as `uid`, through a world-writable socket.
fn get_status_as(uid: u32, socket: &Path) -> String {
    let out = as_uid(uid, &python())
        .args(["-c", RAW_GET])
        .arg(socket)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "python as uid {uid}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn another_uid_is_refused_even_through_a_world_writable_socket() {
    need_root("the peer check test");
    let emu = Emulator::start(Scenario::standard()).await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let d = start(&emu, tmp.path(), "allow_uids = [65533]\n", &["aks-one"]);
    d.wait_ready(&["aks-one"]);

    // File modes opened up by mistake: only SO_PEERCRED stands in the way.
    chmod(tmp.path(), 0o755);
    chmod(&d.socket, 0o666);

    let refused = get_status_as(NOBODY, &d.socket);
    assert!(refused.starts_with("HTTP/1.1 403"), "{refused}");
    assert!(
        refused.contains("uid 65534 may not use this akscredd"),
        "{refused}"
    );
    assert!(!refused.contains("aks-one"), "status leaked: {refused}");
    // The client says so too.
    let plugin = tmp.path().join("akscred");
    std::fs::copy(bin("akscred"), &plugin).unwrap();
    chmod(&plugin, 0o755);
    let out = as_uid(NOBODY, &plugin)
        .args(["token", "aks-one"])
        .env("AKSCRED_SOCKET", &d.socket)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(out.stdout.is_empty(), "a token for another user!");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("65534"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let log = d.log();
    assert!(log.contains("refused a request from uid 65534"), "{log}");

    // allow_uids lets that one uid in, and the owner still gets served.
    let allowed = get_status_as(65533, &d.socket);
    assert!(allowed.starts_with("HTTP/1.1 200"), "{allowed}");
    ok(
        &d.akscred(&["token", "aks-one"]),
        "the owner's akscred token",
    );
}

const PTRACE_ATTACH: &str = r#"
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p]
pid = int(sys.argv[1])
if libc.ptrace(16, pid, None, None) == 0:  # PTRACE_ATTACH
    os.waitpid(pid, 0x40000000)  # __WALL
    libc.ptrace(17, pid, None, None)  # PTRACE_DETACH
    print("attached")
else:
    print("refused errno", ctypes.get_errno())
"#;

fn ptrace_as(uid: u32, pid: u32) -> String {
    let out = as_uid(uid, &python())
        .args(["-c", PTRACE_ATTACH, &pid.to_string()])
        .output()
        .unwrap();
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout).trim(),
        String::from_utf8_lossy(&out.stderr).trim()
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn the_daemon_is_not_dumpable_and_its_own_user_cannot_trace_it() {
    need_root("the dumpable test");
    let emu = Emulator::start(Scenario::standard()).await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let config = alice_config(&emu, dir, "", &["aks-one"]);
    let daemon_bin = dir.join("akscredd");
    std::fs::copy(bin("akscredd"), &daemon_bin).unwrap();
    chmod(&daemon_bin, 0o755);
    chown_tree(dir, NOBODY);
    let d = spawn(
        as_uid(NOBODY, &daemon_bin),
        dir,
        &config,
        &dir.join("akscred.sock"),
        "info",
    );
    d.wait_ready(&["aks-one"]);
    let pid = d.child.id();

    // The kernel's sign: the files in /proc/PID of a non-dumpable process
    // belong to root (task_dump_owner); the directory keeps the process's
    // uid, as does the Uid: line.
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    assert!(
        status
            .lines()
            .any(|l| l.starts_with("Uid:") && l.contains("65534")),
        "{status}"
    );
    assert_eq!(
        std::fs::metadata(format!("/proc/{pid}")).unwrap().uid(),
        NOBODY
    );
    for file in ["status", "environ", "mem", "maps"] {
        let owner = std::fs::metadata(format!("/proc/{pid}/{file}"))
            .unwrap()
            .uid();
        assert_eq!(
            owner, 0,
            "/proc/{pid}/{file} belongs to uid {owner}: the daemon is dumpable"
        );
    }
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let core = limits
        .lines()
        .find(|l| l.starts_with("Max core file size"))
        .unwrap();
    assert_eq!(
        core.split_whitespace().collect::<Vec<_>>()[4..6],
        ["0", "0"],
        "{core}"
    );

    // Its own user, without capabilities, can read nothing and attach to
    // nothing.
    let cat = as_uid(NOBODY, Path::new("/bin/cat"))
        .arg(format!("/proc/{pid}/environ"))
        .output()
        .unwrap();
    assert!(!cat.status.success(), "environ was readable");
    assert!(
        String::from_utf8_lossy(&cat.stderr).contains("Permission denied"),
        "{}",
        String::from_utf8_lossy(&cat.stderr)
    );
    let attach = ptrace_as(NOBODY, pid);
    assert!(attach.contains("refused errno 1"), "ptrace: {attach}");

    // The control: the same user attaches to an ordinary process of its own,
    // so the refusal above is the daemon's doing.
    let mut sleeper = as_uid(NOBODY, Path::new("/bin/sleep"))
        .arg("30")
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let control = ptrace_as(NOBODY, sleeper.id());
    let _ = sleeper.kill();
    let _ = sleeper.wait();
    assert_eq!(
        control, "attached",
        "this machine forbids same-user ptrace altogether (Yama?), so the test proves nothing"
    );

    // And it still works.
    ok(&d.akscred(&["token", "aks-one"]), "akscred token");
    assert!(d.log().contains("dumpable=false"), "{}", d.log());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_daemon_refuses_the_socket_and_a_stale_one_is_replaced() {
    let emu = Emulator::start(Scenario::standard()).await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let mut first = start(&emu, tmp.path(), "", &["aks-one"]);
    first.wait_ready(&["aks-one"]);

    let second = Command::new(bin("akscredd"))
        .arg("--config")
        .arg(tmp.path().join("config.toml"))
        .env("AKSCRED_LOG", "info")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&second.stderr);
    assert_eq!(second.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!(
            "another akscredd (pid {}) is already serving",
            first.child.id()
        )),
        "{err}"
    );
    // The first one was not disturbed.
    ok(&first.akscred(&["token", "aks-one"]), "the first daemon");

    // It dies without cleaning up: its socket file stays behind...
    first.child.kill().unwrap();
    first.child.wait().unwrap();
    assert!(first.socket.exists());
    assert!(std::os::unix::net::UnixStream::connect(&first.socket).is_err());
    // ...and the next daemon takes its place.
    let config = tmp.path().join("config.toml");
    let log = tmp.path().join("akscredd-2.log");
    let mut third = Daemon {
        child: Command::new(bin("akscredd"))
            .arg("--config")
            .arg(&config)
            .env("AKSCRED_LOG", "info")
            .stdin(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
        socket: first.socket.clone(),
        log,
    };
    third.wait_socket();
    third.wait_ready(&["aks-one"]);
    assert!(
        third.log().contains("replaced the stale socket"),
        "{}",
        third.log()
    );
    drop(first);
}

#[tokio::test(flavor = "multi_thread")]
async fn umask_000_still_gives_a_private_directory_socket_and_lock() {
    let emu = Emulator::start(Scenario::standard()).await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let socket = dir.join("run/akscred/akscred.sock");
    let mut cfg = cloud(&emu, dir, &socket, "");
    cfg += &identity(dir, "alice", standard::ALICE, standard::PASSWORD);
    cfg += &cluster("aks-one", "alice", "aks-one");
    std::fs::write(dir.join("config.toml"), cfg).unwrap();
    let mut sh = Command::new("/bin/sh");
    sh.args(["-c", "umask 000; exec \"$0\" \"$@\""])
        .arg(bin("akscredd"));
    let d = spawn(sh, dir, &dir.join("config.toml"), &socket, "info");
    let mode = |p: &Path| std::fs::metadata(p).unwrap().mode() & 0o777;
    assert_eq!(mode(&dir.join("run")), 0o700);
    assert_eq!(mode(&dir.join("run/akscred")), 0o700);
    assert_eq!(mode(&socket), 0o600);
    assert_eq!(mode(&dir.join("run/akscred/akscred.sock.lock")), 0o600);
    drop(d);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_config_others_can_write_is_refused() {
    let emu = Emulator::start(Scenario::standard()).await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let config = alice_config(&emu, tmp.path(), "", &["aks-one"]);
    chmod(&config, 0o666);
    for args in [vec!["check-config", "--config"], vec!["--config"]] {
        let out = Command::new(bin("akscredd"))
            .args(&args)
            .arg(&config)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains("writable by"), "{err}");
        assert!(err.contains("chmod go-w"), "{err}");
    }
    assert!(!tmp.path().join("akscred.sock").exists());
}

/// A password file other users can read is named, with the fix, by
/// check-config, the log and status; the daemon keeps working (a warning,
/// not a refusal), and the warning goes once the mode is fixed.
#[tokio::test(flavor = "multi_thread")]
async fn a_password_file_others_can_read_is_named_with_the_fix() {
    let emu = Emulator::start(Scenario::standard()).await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    // Every directory above it searchable by all (/tmp is 1777).
    chmod(tmp.path(), 0o755);
    let config = alice_config(&emu, tmp.path(), "", &["aks-one"]);
    let password = tmp.path().join("alice.password");
    chmod(&password, 0o644);

    let out = Command::new(bin("akscredd"))
        .args(["check-config", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "still a valid config: {err}");
    assert!(
        err.contains("warning: identity alice: password:")
            && err.contains("readable by every user")
            && err.contains(&format!("chmod 600 {}", password.display())),
        "{err}"
    );

    let d = spawn(
        Command::new(bin("akscredd")),
        tmp.path(),
        &config,
        &tmp.path().join("akscred.sock"),
        "info",
    );
    let status = d.wait_ready(&["aks-one"]);
    let warning = status["identities"][0]["warning"].as_str().unwrap_or("");
    assert!(warning.contains("chmod 600"), "{status}");
    ok(&d.akscred(&["token", "aks-one"]), "akscred token");
    assert!(d.log().contains("readable by every user"), "{}", d.log());

    chmod(&password, 0o600);
    let (code, body) = d.request("GET", "/v1/status");
    assert_eq!(code, 200, "{body}");
    let status: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(status["identities"][0]["warning"].is_null(), "{status}");
}

/// An HTTP CONNECT proxy that records where it was asked to connect.
async fn connect_proxy() -> (String, Arc<Mutex<Vec<String>>>) {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    tokio::spawn(async move {
        while let Ok((sock, _)) = listener.accept().await {
            let record = record.clone();
            tokio::spawn(async move {
                let mut reader = BufReader::new(sock);
                let mut line = String::new();
                if reader.read_line(&mut line).await.is_err() {
                    return;
                }
                // The rest of the request head.
                loop {
                    let mut h = String::new();
                    match reader.read_line(&mut h).await {
                        Ok(0) | Err(_) => return,
                        Ok(_) if h == "\r\n" => break,
                        Ok(_) => {}
                    }
                }
                let mut parts = line.split_whitespace();
                let (Some("CONNECT"), Some(target)) = (parts.next(), parts.next()) else {
                    return;
                };
                record.lock().unwrap().push(target.to_string());
                let Ok(mut upstream) = tokio::net::TcpStream::connect(target).await else {
                    return;
                };
                let mut client = reader.into_inner();
                if client
                    .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
                    .await
                    .is_err()
                {
                    return;
                }
                let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
            });
        }
    });
    (url, seen)
}

#[tokio::test(flavor = "multi_thread")]
async fn https_proxy_and_no_proxy_are_honoured() {
    let emu = Emulator::start(Scenario::standard()).await.unwrap();
    let (proxy, seen) = connect_proxy().await;
    let login_port = emu.login_url().rsplit(':').next().unwrap().to_string();

    for (no_proxy, through_proxy) in [(None, true), (Some("127.0.0.1"), false)] {
        seen.lock().unwrap().clear();
        let tmp = tempfile::tempdir().unwrap();
        let config = alice_config(&emu, tmp.path(), "", &["aks-one"]);
        let mut cmd = Command::new(bin("akscredd"));
        cmd.env("HTTPS_PROXY", &proxy)
            .env_remove("https_proxy")
            .env_remove("ALL_PROXY")
            .env_remove("all_proxy")
            .env_remove("no_proxy");
        match no_proxy {
            Some(v) => cmd.env("NO_PROXY", v),
            None => cmd.env_remove("NO_PROXY"),
        };
        let d = spawn(
            cmd,
            tmp.path(),
            &config,
            &tmp.path().join("akscred.sock"),
            "info",
        );
        d.wait_ready(&["aks-one"]);
        let targets = seen.lock().unwrap().clone();
        if through_proxy {
            assert!(
                targets
                    .iter()
                    .any(|t| t.ends_with(&format!(":{login_port}"))),
                "HTTPS_PROXY was not used for the login endpoint: {targets:?}\n{}",
                d.log()
            );
        } else {
            assert!(targets.is_empty(), "NO_PROXY was ignored: {targets:?}");
        }
    }
}

/// Every string that must never be written anywhere.
struct Secrets {
    fixed: Vec<String>,
    tokens: Vec<String>,
}

impl Secrets {
    /// The first secret found in `text` (named, not shown), if any.
    fn find_in(&self, text: &str) -> Option<String> {
        for s in &self.fixed {
            if text.contains(s.as_str()) {
                return Some(format!("a password or client secret ({} chars)", s.len()));
            }
        }
        for t in &self.tokens {
            if text.contains(t.as_str()) {
                return Some("an access token the plugin received".into());
            }
        }
        // Any JWT (access tokens, client assertions), any emulator refresh
        // token (`0.A` + base64url), any SAML assertion, raw or base64.
        if text.contains("eyJ") {
            return Some("something shaped like a JWT (eyJ...)".into());
        }
        let bytes = text.as_bytes();
        for (i, w) in bytes.windows(3).enumerate() {
            if w == b"0.A"
                && bytes[i + 3..]
                    .iter()
                    .take(20)
                    .filter(|c| c.is_ascii_alphanumeric() || **c == b'-' || **c == b'_')
                    .count()
                    == 20
            {
                return Some("something shaped like a refresh token (0.A...)".into());
            }
        }
        for marker in [
            "saml:Assertion",
            "saml2:Assertion",
            "<Assertion",
            "PHNhbWw",
            "PEFzc2VydGlvb",
        ] {
            if text.contains(marker) {
                return Some(format!("a SAML assertion ({marker})"));
            }
        }
        None
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn nothing_written_by_akscred_holds_a_secret() {
    let emu = Emulator::start(Scenario::standard()).await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let socket = dir.join("akscred.sock");
    const WRONG: &str = "not-the-password-Qz7!";
    let mut cfg = cloud(&emu, dir, &socket, "");
    cfg += &identity(dir, "alice", standard::ALICE, standard::PASSWORD);
    cfg += &identity(dir, "bob", standard::BOB, standard::FEDERATED_PASSWORD);
    cfg += &identity(dir, "mallory", standard::MFA, WRONG);
    let secret_file = dir.join("sp.secret");
    std::fs::write(&secret_file, standard::SP_SECRET).unwrap();
    chmod(&secret_file, 0o600);
    cfg += &format!(
        "\n[identities.sp]\ncloud = \"emulator\"\ntenant = \"{}\"\nclient_id = \"{}\"\nclient_secret = {{ file = \"{}\" }}\n",
        standard::TENANT_DOMAIN,
        standard::SP_SECRET_CLIENT_ID,
        secret_file.display()
    );
    cfg += &cluster("aks-one", "alice", "aks-one");
    cfg += &cluster("aks-two", "alice", "aks-two");
    cfg += &cluster("bob-one", "bob", "aks-one");
    cfg += &cluster("mallory-legacy", "mallory", "aks-legacy");
    cfg += &cluster("sp-two", "sp", "aks-two");
    let config = dir.join("config.toml");
    std::fs::write(&config, cfg).unwrap();
    let d = spawn(
        Command::new(bin("akscredd")),
        dir,
        &config,
        &socket,
        "trace",
    );
    let good = ["aks-one", "aks-two", "bob-one", "sp-two"];
    d.wait_ready(&good);

    let mut tokens = Vec::new();
    let mut take_token = |d: &Daemon, c: &str| {
        let body = ok(&d.akscred(&["token", c]), "akscred token");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        tokens.push(v["status"]["token"].as_str().unwrap().to_string());
    };
    for c in good {
        take_token(&d, c);
    }
    // The wrong password: refused once, the identity needs attention.
    let out = d.akscred(&["token", "mallory-legacy"]);
    assert!(!out.status.success());
    // Refreshes (refresh-token grants), and one that hits an outage.
    ok(&d.akscred(&["refresh", "aks-one"]), "akscred refresh");
    take_token(&d, "aks-one");
    emu.fail_next(FaultTarget::Token, 1, Fault::ServiceUnavailable);
    let outage = d.akscred(&["refresh", "bob-one"]);
    assert!(!outage.status.success(), "the outage was not noticed");
    // The valid token keeps being served through the outage.
    take_token(&d, "bob-one");
    ok(&d.akscred(&["refresh", "sp-two"]), "akscred refresh sp");
    take_token(&d, "sp-two");
    ok(&d.akscred(&["retry", "alice"]), "akscred retry");

    let secrets = Secrets {
        fixed: vec![
            standard::PASSWORD.into(),
            standard::FEDERATED_PASSWORD.into(),
            WRONG.into(),
            standard::SP_SECRET.into(),
        ],
        tokens,
    };
    assert!(
        secrets.tokens.iter().all(|t| t.starts_with("eyJ")),
        "the check for JWTs relies on their prefix"
    );
    // The check finds what it looks for: the plugin's own output holds a token.
    let exec_credential = ok(&d.akscred(&["token", "aks-one"]), "akscred token");
    assert!(secrets.find_in(&exec_credential).is_some());
    assert!(
        secrets
            .find_in(&format!("x {} y", standard::PASSWORD))
            .is_some()
    );
    assert!(
        secrets
            .find_in("refresh 0.AXkAabcdefghij_klmnopqrstu-vwx")
            .is_some()
    );

    let mut written: Vec<(String, String)> = Vec::new();
    let status = d.akscred(&["status"]);
    written.push((
        "akscred status".into(),
        String::from_utf8_lossy(&status.stdout).into(),
    ));
    let json = d.akscred(&["status", "--json"]);
    let json_text = String::from_utf8_lossy(&json.stdout).into_owned();
    assert!(json_text.contains("needs_attention"), "{json_text}");
    written.push(("akscred status --json".into(), json_text));
    let (code, metrics) = d.request("GET", "/metrics");
    assert_eq!(code, 200);
    written.push(("/metrics".into(), metrics));
    written.push((
        "akscred kubeconfig".into(),
        ok(&d.akscred(&["kubeconfig"]), "akscred kubeconfig"),
    ));
    let file = dir.join("kubeconfig");
    ok(
        &d.akscred(&["kubeconfig", "--file", file.to_str().unwrap()]),
        "akscred kubeconfig --file",
    );
    written.push((
        "kubeconfig --file".into(),
        std::fs::read_to_string(&file).unwrap(),
    ));
    let (code, one) = d.request("GET", "/v1/clusters/aks-one/kubeconfig");
    assert_eq!(code, 200);
    written.push(("GET /v1/clusters/aks-one/kubeconfig".into(), one));
    let log = d.log();
    assert!(
        log.contains("TRACE") || log.lines().count() > 50,
        "trace logging did not happen: {log}"
    );
    written.push(("the daemon's trace log".into(), log));

    for (what, text) in &written {
        if let Some(found) = secrets.find_in(text) {
            panic!("{what} holds {found}");
        }
    }
}
