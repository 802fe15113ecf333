//! Runs the real `akscred` binary against a fake akscredd: a std
//! UnixListener in a thread that records each request and answers with
//! canned bytes. No daemon, no runtime.

use std::io::{self, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::mpsc;
use std::time::Duration;

use tempfile::TempDir;

const V1: &str = "client.authentication.k8s.io/v1";
const V1BETA1: &str = "client.authentication.k8s.io/v1beta1";

/// A fake daemon answering one connection per canned answer, in order.
struct FakeDaemon {
    dir: TempDir,
    socket: PathBuf,
    requests: mpsc::Receiver<String>,
}

impl FakeDaemon {
    fn serve(answers: Vec<Vec<u8>>) -> FakeDaemon {
        let dir = tempfile::tempdir().expect("tempdir");
        let socket = dir.path().join("akscred.sock");
        let listener = UnixListener::bind(&socket).expect("bind");
        let (tx, requests) = mpsc::channel();
        // Never joined: a test whose client never connects would block it in
        // accept(); it dies with the test process.
        std::thread::spawn(move || {
            for answer in answers {
                let Ok((mut conn, _)) = listener.accept() else {
                    return;
                };
                let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
                // Read the whole request head before answering: closing a
                // Unix socket with unread data resets the connection.
                let Ok(head) = read_head(&mut conn) else {
                    return;
                };
                let _ = tx.send(head);
                let _ = conn.write_all(&answer);
            }
        });
        FakeDaemon {
            dir,
            socket,
            requests,
        }
    }

    /// The head of the next request the fake received.
    fn request(&self) -> String {
        self.requests
            .recv_timeout(Duration::from_secs(10))
            .expect("a request reached the fake daemon")
    }

    fn run(&self, args: &[&str]) -> Output {
        run(&self.socket, None, args)
    }
}

fn read_head(conn: &mut impl Read) -> io::Result<String> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if conn.read(&mut byte)? == 0 {
            break;
        }
        head.push(byte[0]);
    }
    Ok(String::from_utf8_lossy(&head).into_owned())
}

fn run(socket: &Path, exec_info: Option<&str>, args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_akscred"));
    cmd.args(args).env_clear().env("AKSCRED_SOCKET", socket);
    if let Some(info) = exec_info {
        cmd.env("KUBERNETES_EXEC_INFO", info);
    }
    cmd.output().expect("akscred runs")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn json_answer(status: &str, body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\ndate: Sat, 29 Nov 2025 12:00:00 GMT\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

fn chunked_answer(body: &str) -> Vec<u8> {
    let mut answer =
        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n"
            .to_vec();
    for piece in body.as_bytes().chunks(7) {
        answer.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
        answer.extend_from_slice(piece);
        answer.extend_from_slice(b"\r\n");
    }
    answer.extend_from_slice(b"0\r\n\r\n");
    answer
}

/// RFC 3986: all but unreserved characters escaped.
fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn credential(api_version: &str) -> String {
    format!(
        r#"{{"apiVersion":"{api_version}","kind":"ExecCredential","status":{{"token":"eyJhbGciOiJSUzI1NiJ9.eyJhdWQiOiJ4In0.c2ln","expirationTimestamp":"2026-01-01T00:00:00Z"}}}}"#
    )
}

fn exec_info(api_version: &str) -> String {
    format!(
        r#"{{"kind":"ExecCredential","apiVersion":"{api_version}","spec":{{"interactive":false}}}}"#
    )
}

#[test]
fn token_v1_prints_exactly_the_body() {
    let body = credential(V1);
    let fake = FakeDaemon::serve(vec![json_answer("200 OK", &body)]);
    let out = run(&fake.socket, Some(&exec_info(V1)), &["token", "prod"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out), format!("{body}\n"));
    assert_eq!(stderr(&out), "");
    let request = fake.request();
    assert!(
        request.starts_with("GET /v1/clusters/prod/credential?api_version=v1 HTTP/1.1\r\n"),
        "{request}"
    );
    assert!(request.contains("\r\nHost: akscred\r\n"), "{request}");
    assert!(request.contains("\r\nConnection: close\r\n"), "{request}");
}

#[test]
fn token_v1beta1_asks_for_v1beta1() {
    let body = credential(V1BETA1);
    let fake = FakeDaemon::serve(vec![json_answer("200 OK", &body)]);
    let out = run(&fake.socket, Some(&exec_info(V1BETA1)), &["token", "prod"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out), format!("{body}\n"));
    let request = fake.request();
    assert!(
        request.starts_with("GET /v1/clusters/prod/credential?api_version=v1beta1 HTTP/1.1\r\n"),
        "{request}"
    );
}

#[test]
fn token_without_exec_info_asks_for_v1() {
    let body = credential(V1);
    let fake = FakeDaemon::serve(vec![json_answer("200 OK", &body)]);
    let out = fake.run(&["token", "prod"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(fake.request().contains("?api_version=v1 HTTP/1.1"));
}

#[test]
fn token_reads_a_chunked_answer_and_encodes_the_name() {
    let body = credential(V1);
    let fake = FakeDaemon::serve(vec![chunked_answer(&body)]);
    let out = run(
        &fake.socket,
        Some(&exec_info(V1)),
        &["token", "team a/prod"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out), format!("{body}\n"));
    assert!(
        fake.request()
            .starts_with("GET /v1/clusters/team%20a%2Fprod/credential?api_version=v1 ")
    );
}

#[test]
fn token_error_answer_goes_to_stderr() {
    let body = r#"{"error":{"code":"needs_attention","message":"identity `alice` needs attention: AADSTS50126 invalid username or password","hint":"fix the password, then run `akscred retry alice`"}}"#;
    let fake = FakeDaemon::serve(vec![json_answer("503 Service Unavailable", body)]);
    let out = run(&fake.socket, Some(&exec_info(V1)), &["token", "prod"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stdout(&out), "");
    assert_eq!(
        stderr(&out),
        "akscred: identity `alice` needs attention: AADSTS50126 invalid username or password\n\
         hint: fix the password, then run `akscred retry alice`\n"
    );
}

#[test]
fn token_refuses_a_body_that_is_not_json() {
    let fake = FakeDaemon::serve(vec![json_answer("200 OK", "<html>proxy</html>")]);
    let out = fake.run(&["token", "prod"]);
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(stdout(&out), "");
    assert!(
        stderr(&out).contains("not an ExecCredential"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn token_with_unknown_exec_api_version_names_it() {
    let fake = FakeDaemon::serve(vec![]);
    let out = run(
        &fake.socket,
        Some(&exec_info("client.authentication.k8s.io/v1alpha1")),
        &["token", "prod"],
    );
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(stdout(&out), "");
    assert!(
        stderr(&out).contains("`client.authentication.k8s.io/v1alpha1`"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn daemon_not_running() {
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("akscred.sock");
    let out = run(&socket, Some(&exec_info(V1)), &["token", "prod"]);
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(stdout(&out), "");
    let err = stderr(&out);
    assert!(err.contains(&socket.display().to_string()), "{err}");
    assert!(
        err.contains("systemctl --user start akscredd.socket"),
        "{err}"
    );
}

#[test]
fn stale_socket_is_daemon_not_running() {
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("akscred.sock");
    drop(UnixListener::bind(&socket).expect("bind"));
    let out = run(&socket, None, &["status"]);
    assert_eq!(out.status.code(), Some(3));
    let err = stderr(&out);
    assert!(err.contains("nothing listens on"), "{err}");
    assert!(
        err.contains("systemctl --user start akscredd.socket"),
        "{err}"
    );
}

#[test]
fn daemon_hanging_up_without_answer() {
    let fake = FakeDaemon::serve(vec![Vec::new()]);
    let out = fake.run(&["token", "prod"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(stderr(&out).contains("closed the connection without answering"));
}

#[test]
fn daemon_speaking_garbage() {
    let fake = FakeDaemon::serve(vec![b"SSH-2.0-OpenSSH_9.6\r\n".to_vec()]);
    let out = fake.run(&["token", "prod"]);
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(stdout(&out), "");
    assert!(
        stderr(&out).contains("not an HTTP answer"),
        "{}",
        stderr(&out)
    );
}

const STATUS_READY: &str = r#"{"identities":[{"name":"alice","username":"alice@contoso.com","state":"ok"}],
"clusters":[{"name":"prod","identity":"alice","state":"ready","token_valid_for_secs":3240}]}"#;

const STATUS_BROKEN: &str = r#"{"identities":[{"name":"bob","username":"bob@contoso.com","state":"needs_attention",
"last_error":{"code":"invalid_grant","message":"AADSTS50126: invalid username or password","hint":"fix it, then run `akscred retry bob`"}}],
"clusters":[{"name":"lab","identity":"bob","state":"needs_attention","token_valid_for_secs":-5}],"future_field":1}"#;

#[test]
fn status_table() {
    let fake = FakeDaemon::serve(vec![json_answer("200 OK", STATUS_READY)]);
    let out = fake.run(&["status"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        "\
CLUSTER  IDENTITY  STATE  VALID FOR  NEXT REFRESH  LAST ERROR
prod     alice     ready  54m        -             -

IDENTITY  USERNAME           STATE  LAST ERROR
alice     alice@contoso.com  ok     -
"
    );
    assert!(fake.request().starts_with("GET /v1/status HTTP/1.1\r\n"));
}

#[test]
fn status_not_ready_exits_1() {
    let fake = FakeDaemon::serve(vec![chunked_answer(STATUS_BROKEN)]);
    let out = fake.run(&["status"]);
    assert_eq!(out.status.code(), Some(1));
    let table = stdout(&out);
    assert!(
        table.contains("lab      bob       needs_attention  expired"),
        "{table}"
    );
    assert!(
        table.contains("AADSTS50126: invalid username or password\n"),
        "{table}"
    );
    assert!(
        table.contains("  hint: fix it, then run `akscred retry bob`\n"),
        "{table}"
    );
    assert_eq!(stderr(&out), "");
}

#[test]
fn status_json_prints_the_body() {
    let fake = FakeDaemon::serve(vec![
        json_answer("200 OK", STATUS_READY),
        json_answer("200 OK", STATUS_BROKEN),
    ]);
    let out = fake.run(&["status", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out), format!("{STATUS_READY}\n"));
    let out = fake.run(&["status", "--json"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stdout(&out), format!("{STATUS_BROKEN}\n"));
}

const KUBECONFIG: &str = "apiVersion: v1\nkind: Config\nclusters: []\ncontexts: []\nusers: []\n";

#[test]
fn kubeconfig_to_stdout() {
    let fake = FakeDaemon::serve(vec![
        json_answer("200 OK", KUBECONFIG),
        json_answer("200 OK", KUBECONFIG),
    ]);
    let out = fake.run(&["kubeconfig"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out), KUBECONFIG);
    // The kubeconfig is to run this very binary, by absolute path.
    let exe = Path::new(env!("CARGO_BIN_EXE_akscred"))
        .canonicalize()
        .expect("binary path");
    let command = percent_encode(exe.to_str().expect("utf-8 path"));
    let request = fake.request();
    assert!(
        request.starts_with(&format!(
            "GET /v1/kubeconfig?command={command} HTTP/1.1\r\n"
        )),
        "{request}"
    );
    let out = fake.run(&["kubeconfig", "prod"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let request = fake.request();
    assert!(
        request.starts_with(&format!(
            "GET /v1/clusters/prod/kubeconfig?command={command} HTTP/1.1\r\n"
        )),
        "{request}"
    );
}

#[test]
fn kubeconfig_file_is_private() {
    let fake = FakeDaemon::serve(vec![json_answer("200 OK", KUBECONFIG)]);
    let path = fake.dir.path().join("kube/akscred.yaml");
    let path_arg = path.to_str().expect("utf-8 temp path");
    let out = fake.run(&["kubeconfig", "--file", path_arg]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out), format!("wrote {path_arg}\n"));
    assert_eq!(std::fs::read_to_string(&path).expect("written"), KUBECONFIG);
    let mode = std::fs::metadata(&path)
        .expect("metadata")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
}

#[test]
fn refresh_and_retry_post() {
    let fake = FakeDaemon::serve(vec![
        json_answer(
            "200 OK",
            r#"{"name":"prod","identity":"alice","state":"ready","token_valid_for_secs":3599}"#,
        ),
        json_answer("202 Accepted", "{}"),
        json_answer(
            "404 Not Found",
            r#"{"error":{"code":"unknown_identity","message":"no identity `eve`"}}"#,
        ),
    ]);
    let out = fake.run(&["refresh", "prod"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out), "cluster `prod`: ready, token valid for 59m\n");
    let request = fake.request();
    assert!(
        request.starts_with("POST /v1/clusters/prod/refresh HTTP/1.1\r\n"),
        "{request}"
    );
    assert!(request.contains("\r\nContent-Length: 0\r\n"), "{request}");

    let out = fake.run(&["retry", "alice"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        "identity `alice`: started; see `akscred status`\n"
    );
    assert!(
        fake.request()
            .starts_with("POST /v1/identities/alice/retry HTTP/1.1\r\n")
    );

    let out = fake.run(&["retry", "eve"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stderr(&out), "akscred: no identity `eve`\n");
}

/// `POST /v1/reload` as akscredd answers it when it takes the new file.
const RELOADED: &str = r#"{"message":"reloaded /home/alice/.config/akscred/config.toml: 1 identities, 3 clusters; added aks-legacy"}"#;

/// And when it refuses it: 422 with the file, line and reason, and the
/// excerpt of the file on a second line.
const RELOAD_REFUSED: &str = r#"{"error":{"code":"invalid_config","message":"the new configuration was refused: /home/alice/.config/akscred/config.toml:2:18: daemon.refresh_before: `soon` is not a duration\n  2 | refresh_before = \"soon\"","hint":"fix the file (akscredd check-config shows the same error) and reload again; the previous configuration keeps running"}}"#;

#[test]
fn reload_posts_and_says_what_was_reloaded() {
    let fake = FakeDaemon::serve(vec![json_answer("200 OK", RELOADED)]);
    let out = fake.run(&["reload"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        "reloaded /home/alice/.config/akscred/config.toml: 1 identities, 3 clusters; added aks-legacy\n"
    );
    assert_eq!(stderr(&out), "");
    let request = fake.request();
    assert!(
        request.starts_with("POST /v1/reload HTTP/1.1\r\n"),
        "{request}"
    );
    assert!(request.contains("\r\nContent-Length: 0\r\n"), "{request}");
}

#[test]
fn reload_refused_exits_1_with_the_reason_and_hint() {
    let fake = FakeDaemon::serve(vec![json_answer(
        "422 Unprocessable Entity",
        RELOAD_REFUSED,
    )]);
    let out = fake.run(&["reload"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_eq!(stdout(&out), "");
    // One line each, as for every daemon error: the journal (ExecReload=)
    // keeps it as one entry.
    assert_eq!(
        stderr(&out),
        "akscred: the new configuration was refused: /home/alice/.config/akscred/config.toml:2:18: daemon.refresh_before: `soon` is not a duration   2 | refresh_before = \"soon\"\n\
         hint: fix the file (akscredd check-config shows the same error) and reload again; the previous configuration keeps running\n"
    );
    assert!(fake.request().starts_with("POST /v1/reload HTTP/1.1\r\n"));
}

#[test]
fn reload_without_a_daemon_exits_3() {
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("akscred.sock");
    let out = run(&socket, None, &["reload"]);
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(stdout(&out), "");
    let err = stderr(&out);
    assert!(
        err.starts_with(&format!(
            "akscred: akscredd is not running: no socket at {}\n",
            socket.display()
        )),
        "{err}"
    );
    assert!(
        err.contains("\nhint: start it with `systemctl --user start akscredd.socket`"),
        "{err}"
    );
}

#[test]
fn help_version_and_usage() {
    let nowhere = Path::new("/nonexistent/akscred.sock");
    for args in [&["--help"][..], &["help"], &["-h"]] {
        let out = run(nowhere, None, args);
        assert_eq!(out.status.code(), Some(0));
        let text = stdout(&out);
        assert!(text.contains("akscred token CLUSTER"), "{text}");
        assert!(text.contains("Exit status:"), "{text}");
    }
    let out = run(nowhere, None, &["token", "--help"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(stdout(&out).starts_with("Usage: akscred token CLUSTER\n"));

    let out = run(nowhere, None, &["--version"]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        stdout(&out),
        format!("akscred {}\n", env!("CARGO_PKG_VERSION"))
    );

    let out = run(nowhere, None, &["frobnicate"]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(stdout(&out), "");
    let err = stderr(&out);
    assert!(
        err.starts_with("akscred: unknown command `frobnicate`\n"),
        "{err}"
    );
    assert!(err.contains("Usage:"), "{err}");

    let out = run(nowhere, None, &[]);
    assert_eq!(out.status.code(), Some(2));
    let out = run(nowhere, None, &["token"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("missing CLUSTER"));
}

// ---- errors a kubectl user can meet ------------------------------------

#[test]
fn token_for_an_unknown_cluster_names_the_known_ones() {
    // The daemon's answer, as its broker words it.
    let body = r#"{"error":{"code":"unknown_cluster","message":"no cluster named `prd` is configured","hint":"configured clusters: prod, staging"}}"#;
    let fake = FakeDaemon::serve(vec![json_answer("404 Not Found", body)]);
    let out = run(&fake.socket, Some(&exec_info(V1)), &["token", "prd"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stdout(&out), "");
    assert_eq!(
        stderr(&out),
        "akscred: no cluster named `prd` is configured\nhint: configured clusters: prod, staging\n"
    );
}

#[test]
fn token_on_a_socket_of_another_user_says_permission_denied() {
    // Root passes every permission check, so drop to `nobody` when root;
    // others are refused by the mode alone.
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("akscred.sock");
    let _listener = UnixListener::bind(&socket).expect("bind");
    std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let bin_dir = tempfile::tempdir().expect("tempdir");
    let bin = bin_dir.path().join("akscred");
    std::fs::copy(env!("CARGO_BIN_EXE_akscred"), &bin).expect("copy the binary");
    for d in [dir.path(), bin_dir.path()] {
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    let root = std::fs::metadata("/proc/self").map(|m| {
        use std::os::unix::fs::MetadataExt;
        m.uid() == 0
    });
    let mut cmd = if root.unwrap_or(false) {
        let mut c = Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(&bin);
        c
    } else {
        Command::new(&bin)
    };
    let out = cmd
        .args(["token", "prod"])
        .env_clear()
        .env("AKSCRED_SOCKET", &socket)
        .output()
        .expect("akscred runs (setpriv from util-linux when root)");
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.starts_with(&format!(
            "akscred: permission denied on the akscredd socket {}\nhint: ",
            socket.display()
        )),
        "{err}"
    );
    assert!(err.contains("AKSCRED_SOCKET"), "{err}");
}

// ---- kubeconfig --merge --------------------------------------------------

/// What the daemon's `GET /v1/kubeconfig` sends (JSON-quoted strings).
const DAEMON_KUBECONFIG: &str = "# lab: skipped: cluster `lab`: ARM answered 403\n\
apiVersion: v1\nkind: Config\nclusters:\n\
- name: \"prod\"\n  cluster:\n    server: \"https://prod.example:443\"\n    certificate-authority-data: LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCg==\n\
- name: \"staging\"\n  cluster:\n    server: \"https://staging.example:443\"\n\
users:\n\
- name: \"akscred-prod\"\n  user:\n    exec:\n      apiVersion: client.authentication.k8s.io/v1\n      command: \"/usr/bin/akscred\"\n      args:\n      - token\n      - \"prod\"\n      interactiveMode: Never\n      provideClusterInfo: false\n      installHint: \"start akscredd (systemctl --user start akscredd.socket)\"\n\
- name: \"akscred-staging\"\n  user:\n    exec:\n      apiVersion: client.authentication.k8s.io/v1\n      command: \"/usr/bin/akscred\"\n      args:\n      - token\n      - \"staging\"\n      interactiveMode: Never\n      provideClusterInfo: false\n\
contexts:\n\
- name: \"prod\"\n  context:\n    cluster: \"prod\"\n    user: \"akscred-prod\"\n\
- name: \"staging\"\n  context:\n    cluster: \"staging\"\n    user: \"akscred-staging\"\n    namespace: \"web\"\n\
current-context: \"prod\"\n";

/// A kubeconfig as kubectl and az write them, with entries of its own, one
/// stale akscred cluster, and things kubectl leaves alone.
const USERS_KUBECONFIG: &str = "\
apiVersion: v1
clusters:
- cluster:
    certificate-authority-data: QUJD
    server: https://kind-control-plane:6443
  name: kind-kind
- cluster:
    server: https://old-prod.example:443
  name: prod
- cluster:
    insecure-skip-tls-verify: true
    server: 'https://10.0.0.1:6443'
    extensions:
    - extension: {last-update: 'Fri, 28 Nov 2025 10:00:00 UTC', provider: minikube.sigs.k8s.io, version: v1.34.0}
      name: cluster_info
  name: minikube
contexts:
- context:
    cluster: kind-kind
    user: kind-kind
  name: kind-kind
- context:
    cluster: minikube
    namespace: \"0755\"
    user: minikube
  name: minikube
current-context: kind-kind
kind: Config
preferences:
  colors: true
users:
- name: kind-kind
  user:
    client-certificate-data: REVG
    client-key-data: R0hJ
- name: minikube
  user:
    exec:
      apiVersion: client.authentication.k8s.io/v1beta1
      command: kubelogin
      args: [get-token, --server-id, \"6dae42f8\", --login, azurecli]
      env: null
      provideClusterInfo: false
- name: robot
  user:
    token: no
x-custom-tool:
  enabled: yes
  retries: 010
";

/// The file parsed by serde-saphyr (YAML 1.2, typed): an independent reader
/// to check that what the merge keeps means what it meant.
fn yaml_value(text: &str) -> serde_json::Value {
    serde_saphyr::from_str(text).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

fn by_name<'a>(doc: &'a serde_json::Value, list: &str, name: &str) -> &'a serde_json::Value {
    doc[list]
        .as_array()
        .and_then(|a| a.iter().find(|e| e["name"] == name))
        .unwrap_or_else(|| panic!("no {list} entry {name} in {doc}"))
}

#[test]
fn kubeconfig_merge_keeps_everything_else_and_is_idempotent() {
    let answers = (0..3)
        .map(|_| json_answer("200 OK", DAEMON_KUBECONFIG))
        .collect();
    let fake = FakeDaemon::serve(answers);
    let path = fake.dir.path().join("config");
    std::fs::write(&path, USERS_KUBECONFIG).expect("write");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).expect("chmod");
    let path_arg = path.to_str().expect("utf-8 temp path");

    let out = fake.run(&["kubeconfig", "--merge", "--file", path_arg]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        format!("merged into {path_arg}; added staging; updated prod\n")
    );
    // The daemon's note on a cluster it could not describe reaches the user.
    assert_eq!(
        stderr(&out),
        "akscred: warning: lab: skipped: cluster `lab`: ARM answered 403\n"
    );
    let merged = std::fs::read_to_string(&path).expect("read");
    let (before, after) = (yaml_value(USERS_KUBECONFIG), yaml_value(&merged));
    // Every unrelated entry, and every top-level key, reads as before.
    for (list, names) in [
        ("clusters", &["kind-kind", "minikube"][..]),
        ("users", &["kind-kind", "minikube", "robot"]),
        ("contexts", &["kind-kind", "minikube"]),
    ] {
        for name in names {
            assert_eq!(
                by_name(&after, list, name),
                by_name(&before, list, name),
                "{list}/{name}"
            );
        }
    }
    for key in [
        "preferences",
        "x-custom-tool",
        "apiVersion",
        "kind",
        "current-context",
    ] {
        assert_eq!(after[key], before[key], "{key}");
    }
    // akscred's entries are the daemon's; the stale `prod` was replaced
    // where it stood.
    assert_eq!(
        by_name(&after, "clusters", "prod")["cluster"]["server"],
        "https://prod.example:443"
    );
    let names: Vec<&str> = after["clusters"]
        .as_array()
        .expect("clusters")
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert_eq!(names, ["kind-kind", "prod", "minikube", "staging"]);
    assert_eq!(
        by_name(&after, "users", "akscred-staging")["user"]["exec"]["args"],
        serde_json::json!(["token", "staging"])
    );
    assert_eq!(
        by_name(&after, "contexts", "staging")["context"]["namespace"],
        "web"
    );
    // The mode the user gave the file is kept; the lock is gone.
    let mode = std::fs::metadata(&path).expect("stat").permissions().mode();
    assert_eq!(mode & 0o777, 0o640);
    assert!(!fake.dir.path().join("config.lock").exists());
    // Plain scalars keep their exact text (a YAML 1.1 reader, as kubectl's,
    // would read `yes` or `010` differently if they were rewritten).
    for kept in [
        "    token: no\n",
        "  enabled: yes\n",
        "  retries: 010\n",
        "namespace: \"0755\"\n",
    ] {
        assert!(merged.contains(kept), "{kept:?} in\n{merged}");
    }

    // Twice: nothing to do, not a byte changed.
    let out = fake.run(&["kubeconfig", "--merge", "--file", path_arg]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out), format!("{path_arg} is up to date\n"));
    assert_eq!(std::fs::read_to_string(&path).expect("read"), merged);

    // --set-current switches the context, and only that.
    let out = fake.run(&[
        "kubeconfig",
        "--merge",
        "--file",
        path_arg,
        "--set-current",
        "staging",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        format!("merged into {path_arg}; current context: staging\n")
    );
    let switched = std::fs::read_to_string(&path).expect("read");
    assert_eq!(
        switched,
        merged.replace("current-context: kind-kind\n", "current-context: staging\n")
    );
}

#[test]
fn kubeconfig_merge_dry_run_shows_a_diff_and_writes_nothing() {
    let fake = FakeDaemon::serve(vec![json_answer("200 OK", DAEMON_KUBECONFIG)]);
    let path = fake.dir.path().join("config");
    let theirs = "apiVersion: v1\nkind: Config\nclusters:\n- cluster:\n    server: https://a:443\n  name: a\ncontexts: []\nusers: []\ncurrent-context: a\n";
    std::fs::write(&path, theirs).expect("write");
    let path_arg = path.to_str().expect("utf-8 temp path");
    let out = fake.run(&["kubeconfig", "--merge", "--dry-run", "--file", path_arg]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let diff = stdout(&out);
    assert!(
        diff.starts_with(&format!("--- {path_arg}\n+++ {path_arg} (merged)\n@@ -")),
        "{diff}"
    );
    assert!(diff.contains("\n+- name: prod\n"), "{diff}");
    assert!(diff.contains("\n-contexts: []\n"), "{diff}");
    assert!(diff.contains("\n+contexts:\n+- name: prod\n"), "{diff}");
    assert!(diff.contains("\n current-context: a\n"), "{diff}");
    assert_eq!(std::fs::read_to_string(&path).expect("read"), theirs);
    assert!(!fake.dir.path().join("config.lock").exists());
}

#[test]
fn kubeconfig_merge_creates_the_first_kubeconfig_file_private() {
    let fake = FakeDaemon::serve(vec![json_answer("200 OK", DAEMON_KUBECONFIG)]);
    let first = fake.dir.path().join("kube/first");
    let second = fake.dir.path().join("second");
    let list = format!("{}:{}", first.display(), second.display());
    let out = Command::new(env!("CARGO_BIN_EXE_akscred"))
        .args(["kubeconfig", "--merge"])
        .env_clear()
        .env("AKSCRED_SOCKET", &fake.socket)
        .env("KUBECONFIG", &list)
        .output()
        .expect("akscred runs");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        format!(
            "merged into {}; added prod, staging; current context: prod\n",
            first.display()
        )
    );
    let text = std::fs::read_to_string(&first).expect("read");
    assert!(
        text.starts_with("apiVersion: v1\nkind: Config\nclusters:\n- name: prod\n"),
        "{text}"
    );
    let mode = std::fs::metadata(&first)
        .expect("stat")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    assert!(!second.exists());
}

#[test]
fn kubeconfig_merge_never_overwrites_a_broken_file() {
    for (broken, line, what) in [
        (
            &b"apiVersion: v1\nclusters: [\n  {name: a\n"[..],
            3,
            "not valid YAML",
        ),
        (
            b"apiVersion: v1\nclusters: 5\n",
            2,
            "`clusters` is a scalar, not a list",
        ),
        (b"- just\n- a list\n", 1, "not a kubeconfig"),
        (b"users:\n- name: a\n  user: {}\n\xff\n", 4, "not UTF-8"),
    ] {
        let fake = FakeDaemon::serve(vec![json_answer("200 OK", DAEMON_KUBECONFIG)]);
        let path = fake.dir.path().join("config");
        std::fs::write(&path, broken).expect("write");
        let path_arg = path.to_str().expect("utf-8 temp path");
        let out = fake.run(&["kubeconfig", "--merge", "--file", path_arg]);
        let shown = String::from_utf8_lossy(broken);
        assert_eq!(out.status.code(), Some(2), "{shown}: {}", stderr(&out));
        let err = stderr(&out);
        let at = format!("akscred: {path_arg}:{line}: ");
        assert!(err.contains(&at), "{shown}: want {at} in {err}");
        assert!(err.contains(what), "{shown}: want {what} in {err}");
        assert!(err.contains("it was left as it is"), "{err}");
        assert!(err.contains("\nhint: "), "{err}");
        assert_eq!(std::fs::read(&path).expect("read"), broken);
        assert!(!fake.dir.path().join("config.lock").exists());
    }
}

#[test]
fn kubeconfig_merge_waits_for_kubectls_lock_then_gives_up() {
    let fake = FakeDaemon::serve(vec![json_answer("200 OK", DAEMON_KUBECONFIG)]);
    let path = fake.dir.path().join("config");
    let lock = fake.dir.path().join("config.lock");
    std::fs::write(&lock, "").expect("lock");
    let out = fake.run(&[
        "kubeconfig",
        "--merge",
        "--file",
        path.to_str().expect("utf-8"),
    ]);
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains(&format!(
            "\nakscred: {} exists: another kubectl or akscred is writing the kubeconfig\n",
            lock.display()
        )),
        "{err}"
    );
    assert!(!path.exists());
    assert!(lock.exists(), "someone else's lock is not ours to remove");
}

#[test]
fn kubeconfig_merge_set_current_must_name_a_context() {
    let fake = FakeDaemon::serve(vec![json_answer("200 OK", DAEMON_KUBECONFIG)]);
    let path = fake.dir.path().join("config");
    let path_arg = path.to_str().expect("utf-8 temp path");
    let out = fake.run(&[
        "kubeconfig",
        "--merge",
        "--file",
        path_arg,
        "--set-current",
        "nope",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("no context `nope` to make current; contexts: prod, staging"),
        "{}",
        stderr(&out)
    );
    assert!(!path.exists());
}

// ---- status on a terminal -------------------------------------------------

/// Runs `akscred status` on a pseudo-terminal (`script` from util-linux).
fn status_on_a_terminal(fake: &FakeDaemon, no_color: bool) -> String {
    let mut cmd = Command::new("script");
    cmd.args([
        "-qec",
        &format!("{} status", env!("CARGO_BIN_EXE_akscred")),
        "/dev/null",
    ])
    .env_clear()
    .env("AKSCRED_SOCKET", &fake.socket)
    .env("TERM", "xterm")
    .env("PATH", "/usr/bin:/bin");
    if no_color {
        cmd.env("NO_COLOR", "1");
    }
    let out = cmd.output().expect("script (util-linux) runs");
    stdout(&out)
}

#[test]
fn status_is_coloured_on_a_terminal_only() {
    let fake = FakeDaemon::serve(vec![
        json_answer("200 OK", STATUS_BROKEN),
        json_answer("200 OK", STATUS_BROKEN),
        json_answer("200 OK", STATUS_BROKEN),
    ]);
    let tty = status_on_a_terminal(&fake, false);
    assert!(tty.contains("\x1b[31mneeds_attention\x1b[0m"), "{tty:?}");
    let tty = status_on_a_terminal(&fake, true);
    assert!(!tty.contains('\x1b'), "{tty:?}");
    assert!(tty.contains("needs_attention"), "{tty:?}");
    let piped = fake.run(&["status"]);
    assert!(!stdout(&piped).contains('\x1b'));
}

// ---- completions and man page --------------------------------------------

fn generated(args: &[&str]) -> String {
    let out = run(Path::new("/nonexistent/akscred.sock"), None, args);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    stdout(&out)
}

/// `shell -n` (syntax only) on `script`; the shells are installed by
/// .ci/run, and a missing one fails the test rather than skip it.
fn syntax_check(shell: &str, flag: &str, script: &str) {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("completion");
    std::fs::write(&file, script).expect("write");
    let out = Command::new(shell)
        .arg(flag)
        .arg(&file)
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run {shell} ({e}): install it (`apt-get install -y zsh fish`, as .ci/run does)")
        });
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "{shell} {flag}: {}\n{script}",
        stderr(&out)
    );
}

#[test]
fn completion_scripts_parse_in_their_shells() {
    syntax_check("bash", "-n", &generated(&["completions", "bash"]));
    syntax_check("zsh", "-n", &generated(&["completions", "zsh"]));
    syntax_check("fish", "--no-execute", &generated(&["completions", "fish"]));
}

/// Runs bash completion for the words typed so far (the last one being
/// completed), with `akscred` on PATH talking to `socket`.
fn bash_complete(socket: &Path, words: &[&str]) -> Vec<String> {
    let script = generated(&["completions", "bash"]);
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_akscred"))
        .parent()
        .expect("binary dir");
    let quoted: Vec<String> = words.iter().map(|w| format!("'{w}'")).collect();
    let program = format!(
        "{script}\nCOMP_WORDS=({})\nCOMP_CWORD={}\n_akscred\nprintf '%s\\n' \"${{COMPREPLY[@]}}\"\n",
        quoted.join(" "),
        words.len() - 1
    );
    let out = Command::new("bash")
        .args(["--norc", "-c", &program])
        .env_clear()
        .env("PATH", format!("{}:/usr/bin:/bin", bin_dir.display()))
        .env("AKSCRED_SOCKET", socket)
        .output()
        .expect("bash runs");
    assert!(out.status.success(), "{}", stderr(&out));
    stdout(&out)
        .lines()
        .map(str::to_owned)
        .filter(|l| !l.is_empty())
        .collect()
}

#[test]
fn bash_completion_completes_commands_options_and_cluster_names() {
    let fake = FakeDaemon::serve(vec![
        json_answer("200 OK", STATUS_READY),
        json_answer("200 OK", STATUS_READY),
        json_answer("200 OK", STATUS_BROKEN),
    ]);
    assert_eq!(
        bash_complete(&fake.socket, &["akscred", "kube"]),
        ["kubeconfig"]
    );
    assert_eq!(
        bash_complete(&fake.socket, &["akscred", "kubeconfig", "--s"]),
        ["--set-current"]
    );
    assert_eq!(bash_complete(&fake.socket, &["akscred", "rel"]), ["reload"]);
    assert_eq!(
        bash_complete(&fake.socket, &["akscred", "completions", "z"]),
        ["zsh"]
    );
    assert_eq!(
        bash_complete(&fake.socket, &["akscred", "token", ""]),
        ["prod"]
    );
    // A value of `--file` is not the CLUSTER argument.
    assert_eq!(
        bash_complete(&fake.socket, &["akscred", "kubeconfig", "--file", "x", "p"]),
        ["prod"]
    );
    assert_eq!(
        bash_complete(&fake.socket, &["akscred", "retry", "b"]),
        ["bob"]
    );
    // No daemon: nothing to offer, and no error text on the command line.
    assert!(bash_complete(Path::new("/nonexistent.sock"), &["akscred", "token", ""]).is_empty());
}

#[test]
fn man_page_renders_without_warnings() {
    let page = generated(&["man"]);
    assert!(page.starts_with(".TH AKSCRED 1 "), "{page}");
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("akscred.1");
    std::fs::write(&file, &page).expect("write");
    // groff (groff-base, which man-db needs) with every warning enabled.
    let out = Command::new("groff")
        .args(["-man", "-Tutf8", "-ww", "-z"])
        .arg(&file)
        .output()
        .expect("groff runs (apt-get install -y groff-base)");
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "{}",
        stderr(&out)
    );
    let out = Command::new("groff")
        // Plain text: no overstriking for bold or underline.
        .args(["-man", "-Tutf8", "-P-cbou"])
        .arg(&file)
        .output()
        .expect("groff runs");
    let text = String::from_utf8_lossy(&out.stdout).replace(['\u{2010}', '\u{2212}'], "-");
    for word in [
        "akscred token CLUSTER",
        "akscred reload",
        "--set-current CONTEXT",
        "--dry-run",
        "completions",
        "EXIT STATUS",
        "AKSCRED_SOCKET",
    ] {
        assert!(text.contains(word), "{word} in\n{text}");
    }
}

#[test]
fn fish_completion_completes_choices_and_cluster_names() {
    // fish asks for cluster names even while completing an option.
    let fake = FakeDaemon::serve(
        (0..4)
            .map(|_| json_answer("200 OK", STATUS_READY))
            .collect(),
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("akscred.fish");
    std::fs::write(&file, generated(&["completions", "fish"])).expect("write");
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_akscred"))
        .parent()
        .expect("binary dir");
    let complete = |line: &str| {
        let out = Command::new("fish")
            .arg("--no-config")
            .arg("-c")
            .arg(format!("source {}; complete -C '{line}'", file.display()))
            .env("PATH", format!("{}:/usr/bin:/bin", bin_dir.display()))
            .env("AKSCRED_SOCKET", &fake.socket)
            .output()
            .expect("fish runs (apt-get install -y fish, as .ci/run does)");
        assert!(out.status.success(), "{}", stderr(&out));
        let words: Vec<String> = stdout(&out)
            .lines()
            .map(|l| l.split('\t').next().unwrap_or("").to_owned())
            .collect();
        words
    };
    assert_eq!(complete("akscred completions "), ["bash", "fish", "zsh"]);
    assert_eq!(complete("akscred kubeconfig --dr"), ["--dry-run"]);
    assert_eq!(complete("akscred token "), ["prod"]);
}
