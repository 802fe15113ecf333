//! What the end-to-end tests share: the real `akscredd` started against the
//! emulator, the real `akscred`, kubectl, and a few helpers.
#![allow(dead_code)] // Each test binary uses a part.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use akscred_tests::Emulator;
use akscred_tests::scenario::standard;

/// A binary of the workspace, next to this package's own.
pub fn bin(name: &str) -> PathBuf {
    let own = PathBuf::from(env!("CARGO_BIN_EXE_akscred-emulator"));
    let path = own.with_file_name(name);
    assert!(
        path.is_file(),
        "{} is missing: run `cargo build --workspace --bins` first (scripts/test.sh does)",
        path.display()
    );
    path
}

/// akscred as it is installed: linked static-pie by
/// `scripts/static-client.sh`, which `scripts/test.sh` runs before the tests
/// (into `target/static/debug`, next to the workspace's `target/debug`).
pub fn static_client() -> PathBuf {
    let own = PathBuf::from(env!("CARGO_BIN_EXE_akscred-emulator"));
    let path = own
        .parent()
        .and_then(Path::parent)
        .map(|target| target.join("static/debug/akscred"))
        .unwrap_or_default();
    assert!(
        path.is_file(),
        "{} is missing: run `bash scripts/static-client.sh` first (scripts/test.sh does)",
        path.display()
    );
    path
}

/// Whether the ELF file at `path` names a program interpreter (`PT_INTERP`,
/// i.e. it needs ld.so): false for static and static-pie executables.
pub fn needs_dynamic_loader(path: &Path) -> bool {
    let elf = std::fs::read(path).expect("read the executable");
    assert!(
        elf.len() > 64 && &elf[..4] == b"\x7fELF" && elf[4] == 2,
        "{}: not a 64-bit ELF file",
        path.display()
    );
    let u16_at = |o: usize| usize::from(u16::from_le_bytes([elf[o], elf[o + 1]]));
    let mut phoff = [0u8; 8];
    phoff.copy_from_slice(&elf[0x20..0x28]);
    let phoff = usize::try_from(u64::from_le_bytes(phoff)).expect("offset");
    let (size, count) = (u16_at(0x36), u16_at(0x38));
    (0..count).any(|i| {
        let at = phoff + i * size;
        const PT_INTERP: u32 = 3;
        u32::from_le_bytes([elf[at], elf[at + 1], elf[at + 2], elf[at + 3]]) == PT_INTERP
    })
}

/// The repository's root (this package is `tests/`).
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// `program` on PATH, if there.
pub fn on_path(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(program))
            .find(|p| p.is_file())
    })
}

pub struct Daemon {
    child: Child,
    pub dir: tempfile::TempDir,
    pub socket: PathBuf,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A config for `clusters` (emulator names) of alice, with the emulator as
/// a custom cloud and its CA as the extra trust anchor.
fn write_config(emu: &Emulator, dir: &Path, password: &str, clusters: &[&str]) -> PathBuf {
    std::fs::write(dir.join("ca.pem"), emu.ca_pem()).expect("write the CA");
    let pw = dir.join("alice.password");
    std::fs::write(&pw, format!("{password}\n")).expect("write the password");
    let mut cfg = format!(
        "[daemon]\nsocket = \"{}\"\nca_file = \"ca.pem\"\ntick = \"1s\"\n\n\
         [clouds.emulator]\nlogin_endpoint = \"{}\"\narm_endpoint = \"{}\"\narm_resource = \"https://management.core.windows.net/\"\n\n\
         [identities.alice]\ncloud = \"emulator\"\ntenant = \"{}\"\nusername = \"{}\"\npassword = {{ file = \"{}\" }}\n",
        dir.join("akscred.sock").display(),
        emu.login_url(),
        emu.arm_url(),
        standard::TENANT_DOMAIN,
        standard::ALICE,
        pw.display()
    );
    for c in clusters {
        cfg.push_str(&format!(
            "\n[clusters.{c}]\nidentity = \"alice\"\nsubscription = \"{}\"\nresource_group = \"{}\"\nname = \"{c}\"\n",
            standard::SUBSCRIPTION,
            standard::RESOURCE_GROUP,
        ));
    }
    let path = dir.join("config.toml");
    std::fs::write(&path, cfg).expect("write the config");
    path
}

/// `[daemon]` and `[clouds.emulator]` for a daemon in `dir`.
pub fn base_config(emu: &Emulator, dir: &Path) -> String {
    std::fs::write(dir.join("ca.pem"), emu.ca_pem()).expect("write the CA");
    format!(
        "[daemon]\nsocket = \"{}\"\nca_file = \"ca.pem\"\ntick = \"1s\"\n\n\
         [clouds.emulator]\nlogin_endpoint = \"{}\"\narm_endpoint = \"{}\"\narm_resource = \"https://management.core.windows.net/\"\n",
        dir.join("akscred.sock").display(),
        emu.login_url(),
        emu.arm_url(),
    )
}

/// Starts akscredd with `[daemon]`, the emulator cloud and what `body`
/// writes (identities and clusters; it may put files in the directory).
pub fn start_daemon_custom(emu: &Emulator, body: impl FnOnce(&Path) -> String) -> Daemon {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = base_config(emu, dir.path());
    cfg.push_str(&body(dir.path()));
    let config = dir.path().join("config.toml");
    std::fs::write(&config, cfg).expect("write the config");
    spawn_daemon(dir, &config)
}

/// Starts akscredd for alice (with `password`) and waits for its socket.
pub fn start_daemon(emu: &Emulator, password: &str, clusters: &[&str]) -> Daemon {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_config(emu, dir.path(), password, clusters);
    spawn_daemon(dir, &config)
}

fn spawn_daemon(dir: tempfile::TempDir, config: &Path) -> Daemon {
    let log = std::fs::File::create(dir.path().join("akscredd.log")).expect("log file");
    let child = Command::new(bin("akscredd"))
        .arg("--config")
        .arg(config)
        // Debug for the protocol layer: tests also check that no secret
        // reaches the log, at the level that says the most.
        .env("AKSCRED_LOG", "info,akscredd::entra=debug")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("akscredd starts");
    let socket = dir.path().join("akscred.sock");
    let mut d = Daemon { child, dir, socket };
    let start = Instant::now();
    while !d.socket.exists() {
        if let Ok(Some(status)) = d.child.try_wait() {
            panic!("akscredd exited ({status}): {}", d.log());
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "no socket after 20 s: {}",
            d.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    d
}

impl Daemon {
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("akscredd.log")).unwrap_or_default()
    }

    pub fn akscred(&self, args: &[&str]) -> Output {
        self.akscred_exec(args, None)
    }

    /// `akscred` as kubectl runs it, with `KUBERNETES_EXEC_INFO` when given.
    pub fn akscred_exec(&self, args: &[&str], exec_info: Option<&str>) -> Output {
        let mut cmd = Command::new(bin("akscred"));
        cmd.args(args)
            .env("AKSCRED_SOCKET", &self.socket)
            .env_remove("KUBERNETES_EXEC_INFO")
            .env_remove("KUBECONFIG");
        if let Some(info) = exec_info {
            cmd.env("KUBERNETES_EXEC_INFO", info);
        }
        cmd.output().expect("akscred runs")
    }

    /// Polls `akscred status --json` until `done` holds (or 30 s pass).
    pub fn wait_status(
        &self,
        what: &str,
        done: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let start = Instant::now();
        loop {
            let out = self.akscred(&["status", "--json"]);
            if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&out.stdout)
                && done(&v)
            {
                return v;
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "timed out waiting for {what}: {}\n{}",
                String::from_utf8_lossy(&out.stdout),
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn wait_ready(&self, n: usize) {
        self.wait_status("clusters ready", |v| {
            v["clusters"]
                .as_array()
                .is_some_and(|c| c.len() == n && c.iter().all(|c| c["state"] == "ready"))
        });
    }

    /// `akscred kubeconfig --file PATH`: the file other clients load.
    pub fn kubeconfig_file(&self) -> PathBuf {
        let path = self.dir.path().join("kubeconfig");
        let out = self.akscred(&["kubeconfig", "--file", path.to_str().expect("utf-8 path")]);
        ok(&out, "akscred kubeconfig --file");
        path
    }

    /// A plain HTTP/1.1 GET on the socket, as a scraper would send it.
    pub fn get(&self, target: &str) -> (u16, String) {
        let mut s = UnixStream::connect(&self.socket).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(30)))
            .expect("timeout");
        write!(
            s,
            "GET {target} HTTP/1.1\r\nHost: akscred\r\nConnection: close\r\n\r\n"
        )
        .expect("send");
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).expect("read");
        let text = String::from_utf8_lossy(&raw).into_owned();
        let (head, body) = text.split_once("\r\n\r\n").expect("an HTTP answer");
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .expect("a status code");
        let body = if head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked")
        {
            dechunk(body)
        } else {
            body.to_owned()
        };
        (status, body)
    }
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).expect("chunk size");
        if n == 0 {
            break;
        }
        out.push_str(&rest[..n]);
        body = &rest[n + 2..];
    }
    out
}

pub fn ok(out: &Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// kubectl, found on PATH (.ci/run installs it).
pub fn kubectl(kubeconfig: &Path, args: &[&str]) -> Output {
    let kubectl = on_path("kubectl")
        .expect("kubectl is not on PATH: these tests run the real kubectl (.ci/run installs it)");
    Command::new(kubectl)
        .env("KUBECONFIG", kubeconfig)
        .env_remove("AKSCRED_SOCKET")
        .args(args)
        .output()
        .expect("kubectl runs")
}
