//! Everything that can stop a command, what the user reads about it, and the
//! exit code it maps to.
//!
//! Every failure is printed as `akscred: <message>` and, when there is
//! something to do about it, `hint: <hint>` on stderr. kubectl shows the
//! plugin's stderr as is, so these lines are what a user sees when
//! `kubectl get pods` fails.

use std::io;
use std::path::PathBuf;

use akscred_proto::{ApiError, ErrorBody};

use crate::status::clean;
use crate::{exec_info, http, socket};

/// Exit codes, documented in `--help` and the crate doc.
pub mod exit {
    pub const OK: u8 = 0;
    /// akscredd answered with an error; for `status`, a cluster is not ready.
    pub const DAEMON: u8 = 1;
    /// Bad arguments or environment (an unsupported `KUBERNETES_EXEC_INFO`),
    /// or a kubeconfig akscred will not overwrite.
    pub const USAGE: u8 = 2;
    /// akscredd could not be reached or its answer could not be read.
    pub const UNREACHABLE: u8 = 3;
    /// Writing the output (stdout, `--file`) failed, or its lock is held.
    pub const OUTPUT: u8 = 4;
}

const START_HINT: &str = "start it with `systemctl --user start akscredd.socket` (or run `akscredd`); \
set AKSCRED_SOCKET if it listens elsewhere";
const JOURNAL_HINT: &str = "see `journalctl --user -u akscredd`";

#[derive(Debug)]
pub enum Error {
    /// The command line is wrong; the text includes the usage to print.
    Usage(String),
    /// A kubeconfig to merge into that akscred will not overwrite (not
    /// YAML, not a kubeconfig), or that cannot be found.
    BadKubeconfig {
        message: String,
        hint: String,
    },
    /// Another writer holds kubectl's lock file on the kubeconfig.
    Locked {
        lock: PathBuf,
    },
    ExecInfo(exec_info::Error),
    Socket(socket::Error),
    /// Talking to the daemon failed.
    Transport {
        socket: PathBuf,
        error: http::Error,
    },
    /// The daemon answered non-2xx.
    Daemon {
        status: u16,
        error: ApiError,
    },
    /// A 2xx answer that is not what the endpoint promises.
    BadAnswer {
        socket: PathBuf,
        what: String,
    },
    Output {
        what: String,
        error: io::Error,
    },
    /// `status` found a cluster that is not ready; the table already says
    /// which, so nothing more is printed.
    NotReady,
}

impl Error {
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Usage(_) | Error::BadKubeconfig { .. } | Error::ExecInfo(_) => exit::USAGE,
            Error::Daemon { .. } | Error::NotReady => exit::DAEMON,
            Error::Socket(_) | Error::Transport { .. } | Error::BadAnswer { .. } => {
                exit::UNREACHABLE
            }
            Error::Output { .. } | Error::Locked { .. } => exit::OUTPUT,
        }
    }

    /// The whole stderr text, built once so it goes out in one write.
    pub fn report(&self) -> String {
        let (message, hint) = self.message_and_hint();
        let mut out = String::with_capacity(message.len() + hint.len() + 24);
        if let Error::Usage(text) = self {
            // Usage text is ours and already formatted.
            out.push_str(text);
            return out;
        }
        if message.is_empty() {
            return out;
        }
        out.push_str("akscred: ");
        out.push_str(&clean(&message));
        out.push('\n');
        if !hint.is_empty() {
            out.push_str("hint: ");
            out.push_str(&clean(&hint));
            out.push('\n');
        }
        out
    }

    fn message_and_hint(&self) -> (String, String) {
        match self {
            Error::Usage(_) | Error::NotReady => (String::new(), String::new()),
            Error::BadKubeconfig { message, hint } => (message.clone(), hint.clone()),
            Error::Locked { lock } => (
                format!(
                    "{} exists: another kubectl or akscred is writing the kubeconfig",
                    lock.display()
                ),
                format!(
                    "try again; if nothing is writing it, a crashed writer left the lock behind: remove {}",
                    lock.display()
                ),
            ),
            Error::ExecInfo(e) => (
                e.to_string(),
                match e {
                    exec_info::Error::Unsupported(_) => format!(
                        "set apiVersion: {} (or {}) in the exec section of the kubeconfig",
                        akscred_proto::EXEC_API_V1,
                        akscred_proto::EXEC_API_V1BETA1
                    ),
                    _ => "kubectl sets this variable; unset it to run `akscred token` by hand"
                        .to_owned(),
                },
            ),
            Error::Socket(e) => (
                e.to_string(),
                format!(
                    "set {} to the socket of akscredd",
                    akscred_proto::SOCKET_ENV
                ),
            ),
            Error::Transport { socket, error } => transport_report(socket, error),
            Error::Daemon { status, error } if error.message.trim().is_empty() => (
                format!("akscredd answered {status} ({})", error.code),
                error.hint.clone(),
            ),
            Error::Daemon { error, .. } => (error.message.clone(), error.hint.clone()),
            Error::BadAnswer { socket, what } => (
                format!("akscredd at {} {what}", socket.display()),
                format!("check that akscred and akscredd are the same version; {JOURNAL_HINT}"),
            ),
            Error::Output { what, error } => (format!("{what}: {error}"), String::new()),
        }
    }

    /// A non-2xx answer: the daemon's own `{"error": ...}` when it sent one,
    /// else the status line and the start of whatever came instead.
    pub fn from_answer(answer: &http::Response) -> Error {
        if let Ok(body) = serde_json::from_slice::<ErrorBody>(answer.body()) {
            return Error::Daemon {
                status: answer.status,
                error: body.error,
            };
        }
        let mut message = format!("akscredd answered {} {}", answer.status, answer.reason());
        let text = String::from_utf8_lossy(answer.body());
        let text = text.trim();
        if !text.is_empty() {
            message.push_str(": ");
            message.extend(text.chars().take(200));
        }
        Error::Daemon {
            status: answer.status,
            error: ApiError {
                code: "http_error".to_owned(),
                message: message.trim_end().to_owned(),
                hint: JOURNAL_HINT.to_owned(),
            },
        }
    }
}

fn transport_report(socket: &std::path::Path, error: &http::Error) -> (String, String) {
    let at = socket.display();
    match error {
        http::Error::Connect(e) => match e.kind() {
            io::ErrorKind::NotFound => (
                format!("akscredd is not running: no socket at {at}"),
                START_HINT.to_owned(),
            ),
            io::ErrorKind::ConnectionRefused => (
                format!("akscredd is not running: nothing listens on {at}"),
                START_HINT.to_owned(),
            ),
            io::ErrorKind::PermissionDenied => (
                format!("permission denied on the akscredd socket {at}"),
                "the socket belongs to the user who runs akscredd: run akscred as that user, \
                 or set AKSCRED_SOCKET to your own daemon's socket"
                    .to_owned(),
            ),
            _ if socket.as_os_str().len() > socket::MAX_PATH_LEN => (
                format!(
                    "the socket path {at} is longer than the {} bytes a Unix socket allows",
                    socket::MAX_PATH_LEN
                ),
                "set AKSCRED_SOCKET to a shorter path".to_owned(),
            ),
            _ => (
                format!("cannot connect to akscredd at {at}: {e}"),
                START_HINT.to_owned(),
            ),
        },
        http::Error::Timeout(_) => (
            format!("akscredd at {at} did not answer: {error}"),
            format!("it may be stuck signing in; run `akscred status` and {JOURNAL_HINT}"),
        ),
        http::Error::Closed => (
            format!("akscredd at {at} closed the connection without answering"),
            format!(
                "it refuses users other than its own, root and `allow_uids`, or it crashed; {JOURNAL_HINT}"
            ),
        ),
        http::Error::Malformed(_) | http::Error::TooLarge | http::Error::Truncated => (
            format!("cannot read the answer of akscredd at {at}: {error}"),
            format!(
                "check that {at} is akscredd's socket and that akscred and akscredd are the same version"
            ),
        ),
        http::Error::Send(_) | http::Error::Receive(_) => (
            format!("cannot talk to akscredd at {at}: {error}"),
            JOURNAL_HINT.to_owned(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn transport(kind: io::ErrorKind) -> Error {
        Error::Transport {
            socket: "/run/user/1000/akscred/akscred.sock".into(),
            error: http::Error::Connect(kind.into()),
        }
    }

    #[test]
    fn daemon_down_names_the_socket_and_how_to_start_it() {
        for kind in [io::ErrorKind::NotFound, io::ErrorKind::ConnectionRefused] {
            let e = transport(kind);
            assert_eq!(e.exit_code(), exit::UNREACHABLE);
            let text = e.report();
            assert!(
                text.starts_with("akscred: akscredd is not running"),
                "{text}"
            );
            assert!(
                text.contains("/run/user/1000/akscred/akscred.sock"),
                "{text}"
            );
            assert!(
                text.contains("\nhint: start it with `systemctl --user start akscredd.socket`"),
                "{text}"
            );
        }
    }

    #[test]
    fn permission_denied_says_so() {
        let text = transport(io::ErrorKind::PermissionDenied).report();
        assert!(
            text.starts_with(
                "akscred: permission denied on the akscredd socket /run/user/1000/akscred/akscred.sock\n"
            ),
            "{text}"
        );
    }

    #[test]
    fn daemon_error_body_is_message_and_hint() {
        let body = r#"{"error":{"code":"unknown_cluster","message":"no cluster `x`","hint":"see `akscred status`"}}"#;
        let raw = format!(
            "HTTP/1.1 404 Not Found\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let answer = http::parse(raw.as_bytes());
        let e = Error::from_answer(&answer.expect("parses"));
        assert_eq!(e.exit_code(), exit::DAEMON);
        assert_eq!(
            e.report(),
            "akscred: no cluster `x`\nhint: see `akscred status`\n"
        );
    }

    #[test]
    fn other_error_answers_show_status_and_body() {
        let answer =
            http::parse(b"HTTP/1.1 502 Bad Gateway\r\n\r\n<html>upstream\x1b[2J down</html>\n");
        let text = Error::from_answer(&answer.expect("parses")).report();
        assert_eq!(
            text,
            "akscred: akscredd answered 502 Bad Gateway: <html>upstream\u{fffd}[2J down</html>\nhint: see `journalctl --user -u akscredd`\n"
        );
    }

    #[test]
    fn not_ready_is_silent() {
        assert_eq!(Error::NotReady.report(), "");
        assert_eq!(Error::NotReady.exit_code(), exit::DAEMON);
    }
}
