//! The commands: each sends one request to akscredd and presents the answer.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use akscred_proto::Status;

use crate::cli::{self, Command, Names};
use crate::error::Error;
use crate::http::{self, Method};
use crate::{docs, exec_info, merge, output, socket, status, yaml};

/// The daemon may be waiting on a refresh or a whole sign-in (WS-Trust and
/// token endpoint, with retries) before it can answer; kubectl itself has
/// no timeout on plugins, so be patient but not forever.
const TOKEN_TIMEOUT: Duration = Duration::from_secs(60);
/// `refresh` and `retry` answer once the sign-in they start is over;
/// `reload` once the new configuration is in place (sign-ins it needs go on
/// in the background), unless another reload is in progress.
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
            set_current,
            dry_run,
        } => {
            let answer = fetch_kubeconfig(cluster.as_deref())?;
            if merge {
                merge_kubeconfig(file, answer, set_current.as_deref(), dry_run)
            } else {
                write_kubeconfig(file, answer)
            }
        }
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
        // The daemon's answer names the file and what changed.
        Command::Reload => action("/v1/reload", "configuration", "reloaded"),
        Command::Completions { shell } => output::stdout(docs::completions(shell).as_bytes()),
        Command::Man => output::stdout(docs::man().as_bytes()),
        Command::Names(what) => names(what),
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
        let colour = status::colour_wanted(
            std::io::stdout().is_terminal(),
            std::env::var_os("NO_COLOR").as_deref(),
            std::env::var_os("TERM").as_deref(),
        );
        output::stdout(status::render(&status, unix_now(), colour).as_bytes())?;
    }
    if status.all_ready() {
        Ok(())
    } else {
        Err(Error::NotReady)
    }
}

/// `akscred __complete clusters|identities`: names for the shell, one a
/// line. Shells hide its stderr, so a daemon that is down just completes
/// nothing.
fn names(what: Names) -> Result<(), Error> {
    let socket = socket::from_env().map_err(Error::Socket)?;
    let answer = call(&socket, Method::Get, "/v1/status", STATUS_TIMEOUT)?;
    let status: Status = serde_json::from_slice(answer.body()).map_err(|e| Error::BadAnswer {
        socket,
        what: format!("sent a status akscred cannot read: {e}"),
    })?;
    let names: Vec<&str> = match what {
        Names::Clusters => status.clusters.iter().map(|c| c.name.as_str()).collect(),
        Names::Identities => status.identities.iter().map(|i| i.name.as_str()).collect(),
    };
    let mut out = String::new();
    for name in names {
        out.push_str(&status::clean(name));
        out.push('\n');
    }
    output::stdout(out.as_bytes())
}

/// The daemon's kubeconfig for every cluster, or one.
fn fetch_kubeconfig(cluster: Option<&str>) -> Result<http::Response, Error> {
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
    call(&socket, Method::Get, &target, KUBECONFIG_TIMEOUT)
}

fn write_kubeconfig(file: Option<PathBuf>, answer: http::Response) -> Result<(), Error> {
    match file {
        None => output::stdout(&answer.into_body_line()),
        Some(path) => {
            output::write_file_atomically(&path, &answer.into_body_line())?;
            output::stdout(format!("wrote {}\n", path.display()).as_bytes())
        }
    }
}

/// `kubeconfig --merge`: see `merge`. The daemon is asked first, outside the
/// lock (it may be slow discovering clusters); read, merge and replace
/// happen under it.
fn merge_kubeconfig(
    file: Option<PathBuf>,
    answer: http::Response,
    set_current: Option<&str>,
    dry_run: bool,
) -> Result<(), Error> {
    let bad_answer = |what: String| Error::BadAnswer {
        socket: socket::from_env().unwrap_or_default(),
        what,
    };
    let body = std::str::from_utf8(answer.body())
        .map_err(|_| bad_answer("sent a kubeconfig that is not UTF-8".to_owned()))?;
    // The daemon names the clusters it could not describe in comments.
    let mut warnings = String::new();
    for line in body.lines().filter_map(|l| l.strip_prefix("# ")) {
        warnings.push_str("akscred: warning: ");
        warnings.push_str(&status::clean(line));
        warnings.push('\n');
    }
    if !warnings.is_empty() {
        // Only a warning: the merge goes on if stderr is gone.
        let _ = std::io::stderr().write_all(warnings.as_bytes());
    }
    let ours = match yaml::parse(body) {
        Ok(Some(node)) => node,
        Ok(None) => return Err(bad_answer("sent an empty kubeconfig".to_owned())),
        Err(e) => {
            return Err(bad_answer(format!(
                "sent a kubeconfig akscred cannot read (line {}: {})",
                e.line, e.message
            )));
        }
    };

    let path = merge::target(
        file,
        std::env::var_os("KUBECONFIG"),
        std::env::var_os("HOME"),
    )?;
    // A dry run writes nothing, so it takes no lock either.
    let _lock = if dry_run {
        None
    } else {
        Some(merge::Lock::acquire(&path)?)
    };
    let (old, mode) = match merge::read_existing(&path)? {
        Some((text, mode)) => (Some(text), mode),
        None => (None, 0o600),
    };
    let node = match &old {
        None => None,
        Some(text) => yaml::parse(text).map_err(|e| {
            merge::broken(
                &path,
                e.line,
                &format!("it is not valid YAML ({})", e.message),
            )
        })?,
    };
    let (doc, changes) = merge::merge(node, &ours, set_current).map_err(|p| {
        if p.argument {
            Error::BadKubeconfig {
                message: format!("{}: {}", path.display(), p.message),
                hint: "--set-current takes one of the contexts listed".to_owned(),
            }
        } else {
            merge::broken(&path, p.line, &p.message)
        }
    })?;
    let text = merge::render(&doc).map_err(|p| merge::broken(&path, p.line, &p.message))?;
    let shown = path.display().to_string();
    if old.as_deref() == Some(text.as_str()) {
        return output::stdout(format!("{shown} is up to date\n").as_bytes());
    }
    if dry_run {
        let diff = merge::diff(
            old.as_deref().unwrap_or(""),
            &text,
            &shown,
            &format!("{shown} (merged)"),
        );
        return output::stdout(diff.as_bytes());
    }
    merge::write(&path, &text, mode)?;
    let mut line = format!("merged into {shown}");
    if !changes.added.is_empty() {
        line.push_str(&format!("; added {}", changes.added.join(", ")));
    }
    if !changes.updated.is_empty() {
        line.push_str(&format!("; updated {}", changes.updated.join(", ")));
    }
    if let Some(current) = &changes.current {
        line.push_str(&format!("; current context: {current}"));
    }
    output::stdout(format!("{}\n", status::clean(&line)).as_bytes())
}

/// `refresh`, `retry` and `reload`: one POST, one line of confirmation.
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
