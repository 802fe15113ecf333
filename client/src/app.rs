//! The commands: each sends one request to akscredd and presents the answer.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use akscred_proto::Status;

use crate::cli::{self, Command};
use crate::error::Error;
use crate::http::{self, Method};
use crate::{exec_info, output, socket, status};

/// The daemon may be waiting on a refresh or a whole sign-in (WS-Trust and
/// token endpoint, with retries) before it can answer; kubectl itself has
/// no timeout on plugins, so be patient but not forever.
const TOKEN_TIMEOUT: Duration = Duration::from_secs(60);
/// `refresh` and `retry` answer once the sign-in they start is over.
const ACTION_TIMEOUT: Duration = Duration::from_secs(60);
/// A kubeconfig may need the clusters' discovery from ARM first.
const KUBECONFIG_TIMEOUT: Duration = Duration::from_secs(30);
/// Status is answered from memory.
const STATUS_TIMEOUT: Duration = Duration::from_secs(10);

pub fn run(command: Command) -> Result<(), Error> {
    match command {
        Command::Token { cluster } => token(&cluster),
        Command::Status { json } => show_status(json),
        Command::Kubeconfig {
            cluster,
            file,
            merge,
        } => kubeconfig(cluster.as_deref(), file, merge),
        Command::Refresh { cluster } => {
            let target = resource("/v1/clusters/", &cluster, "/refresh");
            action(&target, &format!("cluster `{cluster}`"), "refreshed")
        }
        Command::Retry { identity } => {
            let target = resource("/v1/identities/", &identity, "/retry");
            action(
                &target,
                &format!("identity `{identity}`"),
                "cleared needs_attention and signed in again",
            )
        }
        Command::Help(None) => output::stdout(cli::help().as_bytes()),
        Command::Help(Some(spec)) => output::stdout(cli::command_help(spec).as_bytes()),
        Command::Version => output::stdout(cli::version().as_bytes()),
    }
}

/// The exec plugin: kubectl waits on this, so it does the least possible.
/// The daemon's body already is the ExecCredential in the asked apiVersion
/// and goes to stdout untouched.
fn token(cluster: &str) -> Result<(), Error> {
    let api = exec_info::api_version(std::env::var_os(exec_info::ENV).as_deref())
        .map_err(Error::ExecInfo)?;
    let socket = socket::from_env().map_err(Error::Socket)?;
    let mut target = resource("/v1/clusters/", cluster, "/credential?api_version=");
    target.push_str(api.query());
    let answer = call(&socket, Method::Get, &target, TOKEN_TIMEOUT)?;
    // A cheap check that this is a JSON object, so kubectl never receives an
    // HTML page or an empty line; kubectl checks the rest.
    if !answer.body().trim_ascii_start().starts_with(b"{") {
        return Err(Error::BadAnswer {
            socket,
            what: "answered the credential request with something that is not an ExecCredential"
                .to_owned(),
        });
    }
    output::stdout(&answer.into_body_line())
}

fn show_status(json: bool) -> Result<(), Error> {
    let socket = socket::from_env().map_err(Error::Socket)?;
    let answer = call(&socket, Method::Get, "/v1/status", STATUS_TIMEOUT)?;
    let parsed = serde_json::from_slice::<Status>(answer.body());
    if json {
        // Asked for JSON: the daemon's own, even if akscred cannot read it.
        output::stdout(&answer.into_body_line())?;
    }
    let status = parsed.map_err(|e| Error::BadAnswer {
        socket,
        what: format!("sent a status akscred cannot read: {e}"),
    })?;
    if !json {
        output::stdout(status::render(&status, unix_now()).as_bytes())?;
    }
    if status.all_ready() {
        Ok(())
    } else {
        Err(Error::NotReady)
    }
}

fn kubeconfig(cluster: Option<&str>, file: Option<PathBuf>, merge: bool) -> Result<(), Error> {
    if merge {
        return Err(Error::Unsupported {
            message: "`--merge` is not supported yet".to_owned(),
            hint: "write a kubeconfig of its own with `akscred kubeconfig --file ~/.kube/akscred.yaml` \
                   and list it in KUBECONFIG, e.g. KUBECONFIG=~/.kube/config:~/.kube/akscred.yaml"
                .to_owned(),
        });
    }
    let mut target = match cluster {
        Some(name) => resource("/v1/clusters/", name, "/kubeconfig"),
        None => "/v1/kubeconfig".to_owned(),
    };
    // The kubeconfig should run this very binary, by absolute path (kubectl
    // 1.35 can allow-list plugins by path, and PATH differs between shells
    // and services). Without it the daemon guesses.
    if let Some(exe) = own_path() {
        target.push_str("?command=");
        http::push_encoded(&mut target, &exe);
    }
    let socket = socket::from_env().map_err(Error::Socket)?;
    let answer = call(&socket, Method::Get, &target, KUBECONFIG_TIMEOUT)?;
    match file {
        None => output::stdout(&answer.into_body_line()),
        Some(path) => {
            output::write_file_atomically(&path, &answer.into_body_line())?;
            output::stdout(format!("wrote {}\n", path.display()).as_bytes())
        }
    }
}

/// `refresh` and `retry`: one POST, one line of confirmation.
fn action(target: &str, subject: &str, done: &str) -> Result<(), Error> {
    let socket = socket::from_env().map_err(Error::Socket)?;
    let answer = call(&socket, Method::Post, target, ACTION_TIMEOUT)?;
    let line = confirmation(answer.status, answer.body(), subject, done);
    output::stdout(format!("{}\n", status::clean(&line)).as_bytes())
}

/// The daemon's own words when it sends a `message`, else the state it
/// reports, else what the status code says.
fn confirmation(code: u16, body: &[u8], subject: &str, done: &str) -> String {
    let value: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    if let Some(message) = value.get("message").and_then(|m| m.as_str()) {
        return message.to_owned();
    }
    let mut line = match (code, value.get("state").and_then(|s| s.as_str())) {
        (_, Some(state)) => format!("{subject}: {state}"),
        (202, None) => format!("{subject}: started; see `akscred status`"),
        (_, None) => format!("{subject}: {done}"),
    };
    if let Some(secs) = value.get("token_valid_for_secs").and_then(|s| s.as_i64()) {
        line.push_str(", token valid for ");
        line.push_str(&status::format_duration(secs));
    }
    line
}

/// This executable's absolute path, if it still exists under that name
/// (after an upgrade replaced it, /proc/self/exe ends in " (deleted)").
fn own_path() -> Option<String> {
    let exe = std::env::current_exe().ok()?;
    if !exe.is_absolute() || !exe.is_file() {
        return None;
    }
    exe.into_os_string().into_string().ok()
}

/// `{prefix}{percent-encoded name}{suffix}`.
fn resource(prefix: &str, name: &str, suffix: &str) -> String {
    let mut target = String::with_capacity(prefix.len() + name.len() + suffix.len() + 16);
    target.push_str(prefix);
    http::push_encoded(&mut target, name);
    target.push_str(suffix);
    target
}

fn call(
    socket: &Path,
    method: Method,
    target: &str,
    timeout: Duration,
) -> Result<http::Response, Error> {
    let answer =
        http::exchange(socket, method, target, timeout).map_err(|error| Error::Transport {
            socket: socket.to_owned(),
            error,
        })?;
    if !answer.is_success() {
        return Err(Error::from_answer(&answer));
    }
    Ok(answer)
}

/// The wall clock, read here at the edge so rendering stays pure.
fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn confirmations() {
        let c =
            |code, body: &str| confirmation(code, body.as_bytes(), "cluster `prod`", "refreshed");
        assert_eq!(c(200, ""), "cluster `prod`: refreshed");
        assert_eq!(c(204, ""), "cluster `prod`: refreshed");
        assert_eq!(
            c(202, "{}"),
            "cluster `prod`: started; see `akscred status`"
        );
        assert_eq!(c(200, r#"{"message":"refresh queued"}"#), "refresh queued");
        assert_eq!(
            c(
                200,
                r#"{"name":"prod","state":"ready","token_valid_for_secs":3540}"#
            ),
            "cluster `prod`: ready, token valid for 59m"
        );
        assert_eq!(c(200, "[1,2]"), "cluster `prod`: refreshed");
    }

    #[test]
    fn resources_are_encoded() {
        assert_eq!(
            resource("/v1/clusters/", "a b", "/refresh"),
            "/v1/clusters/a%20b/refresh"
        );
    }
}
