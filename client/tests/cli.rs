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
fn kubeconfig_merge_points_to_file() {
    let fake = FakeDaemon::serve(vec![]);
    let out = fake.run(&["kubeconfig", "--merge"]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains("`--merge` is not supported yet"), "{err}");
    assert!(err.contains("--file"), "{err}");
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
