//! The command line: one static table of commands, arguments and options,
//! read by the parser, the help text, the man page and the shell
//! completions alike (see `docs.rs`), so none of them can drift from the
//! others.
//!
//! Why not clap: `akscred token` runs once per kubectl command and the whole
//! program must cost little more than process start. A dozen commands and
//! options do not need a framework, and a hand-written parser over a static
//! table adds nothing to start-up or binary size.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use crate::error::Error;

/// Longest cluster or identity name accepted. AKS names have at most 63
/// characters; the bound keeps every request far below a socket buffer, so
/// sending it never blocks.
pub const MAX_NAME_LEN: usize = 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Token {
        cluster: String,
    },
    Kubeconfig {
        cluster: Option<String>,
        file: Option<PathBuf>,
        merge: bool,
        set_current: Option<String>,
        dry_run: bool,
    },
    Status {
        json: bool,
    },
    Refresh {
        cluster: String,
    },
    Retry {
        identity: String,
    },
    Reload,
    Completions {
        shell: Shell,
    },
    Man,
    /// The names a shell completes (hidden: the completion scripts call it).
    Names(Names),
    /// Print help, general or for one command, to stdout.
    Help(Option<&'static Spec>),
    Version,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shell {
    Bash,
    Zsh,
    Fish,
}

/// What `akscred __complete` lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Names {
    Clusters,
    Identities,
}

/// What a value is, for completion: shells offer cluster names, files, ...
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Cluster,
    Identity,
    Context,
    Path,
    /// One of a fixed list of words.
    Choice(&'static [&'static str]),
}

/// A positional argument.
#[derive(Debug, PartialEq, Eq)]
pub struct Arg {
    pub name: &'static str,
    pub required: bool,
    pub kind: Kind,
    pub help: &'static str,
}

/// An option: `--long`, or `--long VALUE` / `--long=VALUE` when it takes a
/// value.
#[derive(Debug, PartialEq, Eq)]
pub struct Opt {
    pub long: &'static str,
    pub short: Option<char>,
    /// The value's name in help (`PATH`) and what it is.
    pub value: Option<(&'static str, Kind)>,
    pub help: &'static str,
}

#[derive(Debug, PartialEq, Eq)]
pub struct Spec {
    pub name: &'static str,
    /// One line, for the list of commands.
    pub summary: &'static str,
    /// Paragraphs separated by blank lines, for `help COMMAND` and the man
    /// page.
    pub about: &'static str,
    pub args: &'static [Arg],
    pub opts: &'static [Opt],
    /// Left out of help, man page and completions (`__complete`).
    pub hidden: bool,
}

/// Accepted by every command, and before any command.
pub const HELP: Opt = Opt {
    long: "help",
    short: Some('h'),
    value: None,
    help: "print help and exit",
};
pub const VERSION: Opt = Opt {
    long: "version",
    short: Some('V'),
    value: None,
    help: "print the version and exit",
};
pub const GLOBAL_OPTS: [&Opt; 2] = [&HELP, &VERSION];

const CLUSTER: Arg = Arg {
    name: "CLUSTER",
    required: true,
    kind: Kind::Cluster,
    help: "a cluster: the name of a [clusters.NAME] table in akscredd's config",
};

pub const TOKEN: Spec = Spec {
    name: "token",
    summary: "ExecCredential for kubectl (exec plugin)",
    about: "\
Print an ExecCredential for CLUSTER on stdout: the kubectl exec credential
plugin. The apiVersion (client.authentication.k8s.io/v1 or v1beta1) follows
KUBERNETES_EXEC_INFO, which kubectl sets; without it, v1.",
    args: &[CLUSTER],
    opts: &[],
    hidden: false,
};

pub const STATUS: Spec = Spec {
    name: "status",
    summary: "clusters and identities at a glance",
    about: "\
Show every cluster (state, how long its token stays valid, next refresh,
last error and what to do about it) and every identity. States are
coloured when stdout is a terminal (not with NO_COLOR or TERM=dumb).
Exits 1 when a cluster is not ready, so monitoring can run it.",
    args: &[],
    opts: &[Opt {
        long: "json",
        short: None,
        value: None,
        help: "print the daemon's answer as JSON, for scripts",
    }],
    hidden: false,
};

pub const KUBECONFIG: Spec = Spec {
    name: "kubeconfig",
    summary: "kubeconfig whose users run `akscred token`",
    about: "\
Print a kubeconfig for every configured cluster, or for CLUSTER only, whose
users run `akscred token`. It holds no secret.

With --merge, merge it into an existing kubeconfig, like `az aks
get-credentials`: the first file of KUBECONFIG, else ~/.kube/config, or
--file PATH. Only akscred's clusters, users (akscred-CLUSTER) and contexts
are added or updated; every other entry and setting is kept, and so is the
current context unless --set-current names another. The file is replaced
atomically under kubectl's lock file (FILE.lock) and keeps its mode; a new
file is made 0600. Running it twice changes nothing. Comments are not kept,
as with `kubectl config`. A file that is not a kubeconfig is never
overwritten.",
    args: &[Arg {
        name: "CLUSTER",
        required: false,
        kind: Kind::Cluster,
        help: "only this cluster (default: all)",
    }],
    opts: &[
        Opt {
            long: "file",
            short: None,
            value: Some(("PATH", Kind::Path)),
            help: "write to PATH (mode 0600, replaced atomically); with --merge, merge into PATH",
        },
        Opt {
            long: "merge",
            short: None,
            value: None,
            help: "merge into an existing kubeconfig instead of replacing it",
        },
        Opt {
            long: "set-current",
            short: None,
            value: Some(("CONTEXT", Kind::Context)),
            help: "with --merge: make CONTEXT the current context",
        },
        Opt {
            long: "dry-run",
            short: None,
            value: None,
            help: "with --merge: show what would change, as a diff, and write nothing",
        },
    ],
    hidden: false,
};

pub const REFRESH: Spec = Spec {
    name: "refresh",
    summary: "refresh a cluster's token now",
    about: "Refresh the token of CLUSTER now.",
    args: &[CLUSTER],
    opts: &[],
    hidden: false,
};

pub const RETRY: Spec = Spec {
    name: "retry",
    summary: "clear needs_attention, sign in once more",
    about: "\
Clear needs_attention on IDENTITY (after fixing its password, say) and let
akscredd sign in once more.",
    args: &[Arg {
        name: "IDENTITY",
        required: true,
        kind: Kind::Identity,
        help: "an identity: the name of an [identities.NAME] table in akscredd's config",
    }],
    opts: &[],
    hidden: false,
};

pub const RELOAD: Spec = Spec {
    name: "reload",
    summary: "make akscredd re-read its config",
    about: "\
Make akscredd re-read its configuration file, as SIGHUP does, and wait for
its answer: one line saying what was reloaded, or why the new file was
refused (exit 1). A refused file changes nothing: the running
configuration keeps serving. Tokens and refresh tokens of unchanged
identities carry over, so a reload costs no sign-in.

akscredd.service runs it as ExecReload=, so `systemctl --user reload
akscredd` returns once the new configuration is in effect, and fails when
it is refused.",
    args: &[],
    opts: &[],
    hidden: false,
};

pub const SHELLS: &[&str] = &["bash", "zsh", "fish"];

pub const COMPLETIONS: Spec = Spec {
    name: "completions",
    summary: "shell completion script",
    about: "\
Print the completion script for SHELL on stdout. For example:
  bash: akscred completions bash > ~/.local/share/bash-completion/completions/akscred
  zsh:  akscred completions zsh > \"${fpath[1]}/_akscred\"
  fish: akscred completions fish > ~/.config/fish/completions/akscred.fish",
    args: &[Arg {
        name: "SHELL",
        required: true,
        kind: Kind::Choice(SHELLS),
        help: "bash, zsh or fish",
    }],
    opts: &[],
    hidden: false,
};

pub const MAN: Spec = Spec {
    name: "man",
    summary: "manual page (roff)",
    about: "\
Print the manual page, in roff, on stdout. Read it with
`akscred man | man -l -`, or install it:
`akscred man > ~/.local/share/man/man1/akscred.1`.",
    args: &[],
    opts: &[],
    hidden: false,
};

pub const NAMES: Spec = Spec {
    name: "__complete",
    summary: "names for shell completion",
    about: "Print the configured clusters or identities, one a line.",
    args: &[Arg {
        name: "WHAT",
        required: true,
        kind: Kind::Choice(&["clusters", "identities"]),
        help: "clusters or identities",
    }],
    opts: &[],
    hidden: true,
};

pub const HELP_COMMAND: Spec = Spec {
    name: "help",
    summary: "help on akscred or one command",
    about: "Print help on akscred, or on COMMAND.",
    args: &[Arg {
        name: "COMMAND",
        required: false,
        kind: Kind::Choice(&[
            "token",
            "status",
            "kubeconfig",
            "refresh",
            "retry",
            "reload",
            "completions",
            "man",
        ]),
        help: "a command",
    }],
    opts: &[],
    hidden: false,
};

/// Every command, in the order help lists them.
pub const COMMANDS: [&Spec; 10] = [
    &TOKEN,
    &STATUS,
    &KUBECONFIG,
    &REFRESH,
    &RETRY,
    &RELOAD,
    &COMPLETIONS,
    &MAN,
    &HELP_COMMAND,
    &NAMES,
];

pub const ABOUT: &str = "kubectl credentials for AKS clusters, served by akscredd";

pub const DESCRIPTION: &str = "\
akscred asks akscredd, a daemon that keeps Microsoft Entra ID tokens fresh
for Azure Kubernetes Service clusters, over its Unix socket. kubectl and
every other Kubernetes client run `akscred token CLUSTER` as their exec
credential plugin; the other commands are for people and scripts.";

/// (name, meaning) for help and the man page.
pub const ENVIRONMENT: [(&str, &str); 5] = [
    (
        "AKSCRED_SOCKET",
        "akscredd's socket; default $XDG_RUNTIME_DIR/akscred/akscred.sock, else /run/user/UID/akscred/akscred.sock",
    ),
    (
        "KUBERNETES_EXEC_INFO",
        "set by kubectl: the ExecCredential apiVersion to answer in",
    ),
    (
        "KUBECONFIG",
        "`kubeconfig --merge` merges into its first file (default ~/.kube/config)",
    ),
    (
        "NO_COLOR",
        "when set and not empty, `status` uses no colour",
    ),
    ("TERM", "`dumb` turns colour off too"),
];

/// (code, meaning); the values are `error::exit`'s.
pub const EXIT_STATUS: [(u8, &str); 5] = [
    (0, "success"),
    (
        1,
        "akscredd answered with an error; for `status`, a cluster is not ready",
    ),
    (
        2,
        "usage error, a KUBERNETES_EXEC_INFO akscred cannot answer, or a kubeconfig akscred will not overwrite",
    ),
    (
        3,
        "akscredd is not running or cannot be reached, or its answer is unreadable",
    ),
    (4, "the output could not be written (stdout, --file)"),
];

impl Spec {
    /// `akscred kubeconfig [CLUSTER] [--file PATH] ...`
    pub fn usage(&self) -> String {
        let mut s = format!("akscred {}", self.name);
        for arg in self.args {
            if arg.required {
                s.push(' ');
                s.push_str(arg.name);
            } else {
                s.push_str(&format!(" [{}]", arg.name));
            }
        }
        for opt in self.opts {
            match opt.value {
                Some((value, _)) => s.push_str(&format!(" [--{} {value}]", opt.long)),
                None => s.push_str(&format!(" [--{}]", opt.long)),
            }
        }
        s
    }

    pub fn visible() -> impl Iterator<Item = &'static Spec> {
        COMMANDS.into_iter().filter(|s| !s.hidden)
    }
}

impl Opt {
    /// `--file PATH`, `-h, --help`.
    pub fn label(&self) -> String {
        let mut s = String::new();
        if let Some(c) = self.short {
            s.push_str(&format!("-{c}, "));
        }
        s.push_str("--");
        s.push_str(self.long);
        if let Some((value, _)) = self.value {
            s.push(' ');
            s.push_str(value);
        }
        s
    }
}

/// Two-column lines: `  left  right`, the right column aligned.
fn columns(out: &mut String, rows: &[(String, &str)]) {
    let width = rows.iter().map(|(l, _)| l.len()).max().unwrap_or(0).min(40);
    for (left, right) in rows {
        if left.len() > width {
            out.push_str(&format!("  {left}\n  {:width$}  {right}\n", ""));
        } else {
            out.push_str(&format!("  {left:width$}  {right}\n"));
        }
    }
}

/// The whole `--help` text.
pub fn help() -> String {
    let mut out = format!("akscred {}: {ABOUT}\n\nUsage:\n", env!("CARGO_PKG_VERSION"));
    let mut rows: Vec<(String, &str)> = Spec::visible()
        .filter(|s| s.name != "help")
        .map(|s| (s.usage(), s.summary))
        .collect();
    rows.push((
        "akscred help [COMMAND] | --help | --version".to_owned(),
        HELP_COMMAND.summary,
    ));
    columns(&mut out, &rows);
    out.push_str("\nEnvironment:\n");
    let env: Vec<(String, &str)> = ENVIRONMENT
        .iter()
        .map(|(n, m)| ((*n).to_owned(), *m))
        .collect();
    columns(&mut out, &env);
    out.push_str("\nExit status:\n");
    for (code, meaning) in EXIT_STATUS {
        out.push_str(&format!("  {code}  {meaning}\n"));
    }
    out
}

pub fn command_help(spec: &Spec) -> String {
    let mut out = format!("Usage: {}\n\n{}\n", spec.usage(), spec.about);
    if !spec.args.is_empty() {
        out.push_str("\nArguments:\n");
        let rows: Vec<(String, &str)> = spec
            .args
            .iter()
            .map(|a| (a.name.to_owned(), a.help))
            .collect();
        columns(&mut out, &rows);
    }
    out.push_str("\nOptions:\n");
    let rows: Vec<(String, &str)> = spec
        .opts
        .iter()
        .chain([&HELP])
        .map(|o| (o.label(), o.help))
        .collect();
    columns(&mut out, &rows);
    out
}

pub fn version() -> String {
    format!("akscred {}\n", env!("CARGO_PKG_VERSION"))
}

/// Parses the arguments after the program name.
pub fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Command, Error> {
    let mut args = args.into_iter();
    let Some(first) = args.next() else {
        return Err(general_usage("no command given"));
    };
    match first.as_bytes() {
        b"-h" | b"--help" => Ok(Command::Help(None)),
        b"-V" | b"--version" => Ok(Command::Version),
        _ => match find(&first) {
            Some(spec) => build(spec, scan(spec, args)?),
            None if first.as_bytes().starts_with(b"-") => Err(general_usage(&format!(
                "unknown option `{}`",
                first.display()
            ))),
            None => Err(general_usage(&format!(
                "unknown command `{}`",
                first.display()
            ))),
        },
    }
}

fn find(name: &OsStr) -> Option<&'static Spec> {
    COMMANDS
        .into_iter()
        .find(|spec| spec.name.as_bytes() == name.as_bytes())
}

/// What the command line held for one command, checked against its spec.
#[derive(Default)]
struct Matches {
    positional: Vec<String>,
    opts: Vec<(&'static str, Option<OsString>)>,
    help: bool,
}

impl Matches {
    fn flag(&self, long: &str) -> bool {
        self.opts.iter().any(|(l, _)| *l == long)
    }

    /// The last value given to `--long` (a later one overrides, as usual).
    fn value(&self, long: &str) -> Option<&OsString> {
        self.opts
            .iter()
            .rev()
            .find(|(l, _)| *l == long)
            .and_then(|(_, v)| v.as_ref())
    }

    fn positional(&self, i: usize) -> Option<String> {
        self.positional.get(i).cloned()
    }
}

/// Reads options and positional arguments by the spec's table.
fn scan(spec: &'static Spec, mut args: impl Iterator<Item = OsString>) -> Result<Matches, Error> {
    let mut m = Matches::default();
    let mut raw_positional: Vec<OsString> = Vec::new();
    let mut options_done = false;
    while let Some(arg) = args.next() {
        let bytes = arg.as_bytes();
        if options_done || bytes == b"-" || !bytes.starts_with(b"-") {
            raw_positional.push(arg);
            continue;
        }
        if bytes == b"--" {
            options_done = true;
            continue;
        }
        if bytes == b"-h" || bytes == b"--help" {
            m.help = true;
            continue;
        }
        let (name, inline) = match bytes.strip_prefix(b"--") {
            Some(rest) => match rest.iter().position(|&b| b == b'=') {
                Some(eq) => (&rest[..eq], Some(OsStr::from_bytes(&rest[eq + 1..]))),
                None => (rest, None),
            },
            None => (&b""[..], None),
        };
        let Some(opt) = spec.opts.iter().find(|o| o.long.as_bytes() == name) else {
            return Err(command_usage(
                spec,
                &format!("unknown option `{}`", arg.display()),
            ));
        };
        let value = match (opt.value, inline) {
            (None, None) => None,
            (None, Some(_)) => {
                return Err(command_usage(
                    spec,
                    &format!("`--{}` takes no value", opt.long),
                ));
            }
            (Some((value, _)), inline) => {
                let given = match inline {
                    Some(v) => Some(v.to_owned()),
                    None => args.next(),
                };
                match given {
                    Some(v) if !v.is_empty() => Some(v),
                    _ => {
                        return Err(command_usage(
                            spec,
                            &format!("`--{}` needs a {value}", opt.long),
                        ));
                    }
                }
            }
        };
        m.opts.push((opt.long, value));
    }
    if m.help {
        return Ok(m);
    }
    if raw_positional.len() > spec.args.len() {
        return Err(command_usage(
            spec,
            &format!(
                "unexpected argument `{}`",
                raw_positional[spec.args.len()].display()
            ),
        ));
    }
    for (i, arg) in spec.args.iter().enumerate() {
        match raw_positional.get(i) {
            None if arg.required => {
                return Err(command_usage(spec, &format!("missing {}", arg.name)));
            }
            None => {}
            Some(raw) => m.positional.push(name(spec, arg, raw)?),
        }
    }
    Ok(m)
}

/// A positional value: UTF-8 (names come from the TOML config), not empty,
/// bounded, and one of the choices when there are choices.
fn name(spec: &Spec, arg: &Arg, raw: &OsStr) -> Result<String, Error> {
    let what = arg.name;
    let s = raw.to_str().ok_or_else(|| {
        command_usage(
            spec,
            &format!("{what} `{}` is not valid UTF-8", raw.display()),
        )
    })?;
    if s.is_empty() {
        return Err(command_usage(spec, &format!("empty {what}")));
    }
    if s.len() > MAX_NAME_LEN {
        return Err(command_usage(
            spec,
            &format!("{what} is longer than {MAX_NAME_LEN} bytes"),
        ));
    }
    if let Kind::Choice(choices) = arg.kind
        && !choices.contains(&s)
    {
        return Err(command_usage(
            spec,
            &format!("{what} must be one of {}, not `{s}`", choices.join(", ")),
        ));
    }
    Ok(s.to_owned())
}

fn path_value(m: &Matches, long: &str) -> Option<PathBuf> {
    m.value(long).map(PathBuf::from)
}

fn string_value(spec: &Spec, m: &Matches, long: &str) -> Result<Option<String>, Error> {
    match m.value(long) {
        None => Ok(None),
        Some(v) => match v.to_str() {
            Some(s) if s.len() <= MAX_NAME_LEN => Ok(Some(s.to_owned())),
            Some(_) => Err(command_usage(
                spec,
                &format!("the value of `--{long}` is longer than {MAX_NAME_LEN} bytes"),
            )),
            None => Err(command_usage(
                spec,
                &format!("the value of `--{long}` is not valid UTF-8"),
            )),
        },
    }
}

/// The typed command from what `scan` accepted.
fn build(spec: &'static Spec, m: Matches) -> Result<Command, Error> {
    if m.help {
        return Ok(Command::Help(Some(spec)));
    }
    let first = || m.positional(0).unwrap_or_default();
    Ok(match spec.name {
        "token" => Command::Token { cluster: first() },
        "status" => Command::Status {
            json: m.flag("json"),
        },
        "kubeconfig" => {
            let merge = m.flag("merge");
            for needs_merge in ["set-current", "dry-run"] {
                if !merge && m.flag(needs_merge) {
                    return Err(command_usage(
                        spec,
                        &format!("`--{needs_merge}` only goes with `--merge`"),
                    ));
                }
            }
            Command::Kubeconfig {
                cluster: m.positional(0),
                file: path_value(&m, "file"),
                merge,
                set_current: string_value(spec, &m, "set-current")?,
                dry_run: m.flag("dry-run"),
            }
        }
        "refresh" => Command::Refresh { cluster: first() },
        "retry" => Command::Retry { identity: first() },
        "reload" => Command::Reload,
        "completions" => Command::Completions {
            shell: match first().as_str() {
                "zsh" => Shell::Zsh,
                "fish" => Shell::Fish,
                _ => Shell::Bash,
            },
        },
        "man" => Command::Man,
        "__complete" => Command::Names(if first() == "identities" {
            Names::Identities
        } else {
            Names::Clusters
        }),
        // "help"
        _ => match m.positional(0) {
            None => Command::Help(None),
            // Checked against the choices already.
            Some(topic) => Command::Help(find(OsStr::new(&topic))),
        },
    })
}

fn general_usage(problem: &str) -> Error {
    let mut text = format!("akscred: {problem}\n\nUsage:\n");
    for spec in Spec::visible() {
        text.push_str("  ");
        text.push_str(&spec.usage());
        text.push('\n');
    }
    text.push_str("\nRun `akscred --help` for details.\n");
    Error::Usage(text)
}

fn command_usage(spec: &Spec, problem: &str) -> Error {
    Error::Usage(format!(
        "akscred {}: {problem}\nUsage: {}\nRun `akscred help {}` for details.\n",
        spec.name,
        spec.usage(),
        spec.name
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_strs(args: &[&str]) -> Result<Command, Error> {
        parse(args.iter().map(OsString::from))
    }

    fn usage_text(args: &[&str]) -> String {
        match parse_strs(args) {
            Err(Error::Usage(text)) => text,
            other => panic!("{args:?} gave {other:?}"),
        }
    }

    fn ok(args: &[&str]) -> Command {
        parse_strs(args).unwrap_or_else(|e| panic!("{args:?}: {e:?}"))
    }

    fn kubeconfig() -> Command {
        Command::Kubeconfig {
            cluster: None,
            file: None,
            merge: false,
            set_current: None,
            dry_run: false,
        }
    }

    #[test]
    fn commands() {
        assert_eq!(
            ok(&["token", "prod"]),
            Command::Token {
                cluster: "prod".into()
            }
        );
        assert_eq!(
            ok(&["token", "--", "-odd-name"]),
            Command::Token {
                cluster: "-odd-name".into()
            }
        );
        assert_eq!(ok(&["status"]), Command::Status { json: false });
        assert_eq!(ok(&["status", "--json"]), Command::Status { json: true });
        assert_eq!(ok(&["kubeconfig"]), kubeconfig());
        assert_eq!(
            ok(&["kubeconfig", "--file", "/tmp/k", "prod", "--merge"]),
            Command::Kubeconfig {
                cluster: Some("prod".into()),
                file: Some("/tmp/k".into()),
                merge: true,
                set_current: None,
                dry_run: false,
            }
        );
        assert_eq!(
            ok(&["kubeconfig", "--file=/tmp/k"]),
            Command::Kubeconfig {
                cluster: None,
                file: Some("/tmp/k".into()),
                merge: false,
                set_current: None,
                dry_run: false,
            }
        );
        assert_eq!(
            ok(&[
                "kubeconfig",
                "--merge",
                "--set-current=prod",
                "--dry-run",
                "--file",
                "a",
                "--file",
                "b"
            ]),
            Command::Kubeconfig {
                cluster: None,
                file: Some("b".into()),
                merge: true,
                set_current: Some("prod".into()),
                dry_run: true,
            }
        );
        assert_eq!(
            ok(&["refresh", "prod"]),
            Command::Refresh {
                cluster: "prod".into()
            }
        );
        assert_eq!(
            ok(&["retry", "alice"]),
            Command::Retry {
                identity: "alice".into()
            }
        );
        assert_eq!(ok(&["reload"]), Command::Reload);
        assert_eq!(
            ok(&["completions", "zsh"]),
            Command::Completions { shell: Shell::Zsh }
        );
        assert_eq!(ok(&["man"]), Command::Man);
        assert_eq!(
            ok(&["__complete", "identities"]),
            Command::Names(Names::Identities)
        );
    }

    #[test]
    fn help_and_version() {
        assert_eq!(ok(&["--help"]), Command::Help(None));
        assert_eq!(ok(&["-h"]), Command::Help(None));
        assert_eq!(ok(&["help"]), Command::Help(None));
        assert_eq!(ok(&["help", "token"]), Command::Help(Some(&TOKEN)));
        assert_eq!(ok(&["status", "--help"]), Command::Help(Some(&STATUS)));
        assert_eq!(ok(&["token", "-h"]), Command::Help(Some(&TOKEN)));
        // Help wins over what else is wrong on the line.
        assert_eq!(ok(&["token", "-h", "a", "b"]), Command::Help(Some(&TOKEN)));
        assert_eq!(ok(&["--version"]), Command::Version);
        assert_eq!(ok(&["-V"]), Command::Version);
        let text = help();
        for code in [
            "0  success",
            "1  akscredd",
            "2  usage",
            "3  akscredd",
            "4  the output",
        ] {
            assert!(text.contains(code), "{code}");
        }
        for spec in Spec::visible() {
            assert!(text.contains(&format!("akscred {}", spec.name)), "{text}");
        }
        assert!(!text.contains("__complete"), "{text}");
    }

    #[test]
    fn command_help_lists_every_option() {
        for spec in COMMANDS {
            let text = command_help(spec);
            assert!(text.starts_with(&format!("Usage: akscred {}", spec.name)));
            for opt in spec.opts {
                assert!(text.contains(&opt.label()), "{text}");
            }
            for arg in spec.args {
                assert!(text.contains(arg.name), "{text}");
            }
            assert!(text.contains("-h, --help"), "{text}");
        }
        assert!(
            command_help(&KUBECONFIG).starts_with(
                "Usage: akscred kubeconfig [CLUSTER] [--file PATH] [--merge] [--set-current CONTEXT] [--dry-run]\n"
            )
        );
    }

    #[test]
    fn exit_codes_match_the_error_module() {
        use crate::error::exit;
        let codes: Vec<u8> = EXIT_STATUS.iter().map(|(c, _)| *c).collect();
        assert_eq!(
            codes,
            [
                exit::OK,
                exit::DAEMON,
                exit::USAGE,
                exit::UNREACHABLE,
                exit::OUTPUT
            ]
        );
    }

    #[test]
    fn mistakes() {
        assert!(usage_text(&[]).contains("no command given"));
        let text = usage_text(&["frobnicate"]);
        assert!(
            text.starts_with("akscred: unknown command `frobnicate`\n"),
            "{text}"
        );
        assert!(text.contains("  akscred token CLUSTER\n"), "{text}");
        assert!(usage_text(&["--frob"]).contains("unknown option `--frob`"));
        assert!(usage_text(&["help", "frob"]).contains("COMMAND must be one of"));
        assert!(usage_text(&["token"]).contains("akscred token: missing CLUSTER"));
        assert!(usage_text(&["token", ""]).contains("empty CLUSTER"));
        assert!(usage_text(&["token", "a", "b"]).contains("unexpected argument `b`"));
        assert!(usage_text(&["token", "--json", "a"]).contains("unknown option `--json`"));
        assert!(usage_text(&["status", "prod"]).contains("unexpected argument `prod`"));
        assert!(usage_text(&["status", "--json=yes"]).contains("`--json` takes no value"));
        assert!(usage_text(&["kubeconfig", "--file"]).contains("`--file` needs a PATH"));
        assert!(usage_text(&["kubeconfig", "--file="]).contains("`--file` needs a PATH"));
        assert!(
            usage_text(&["kubeconfig", "--dry-run"])
                .contains("`--dry-run` only goes with `--merge`")
        );
        assert!(
            usage_text(&["kubeconfig", "--set-current", "x"])
                .contains("`--set-current` only goes with `--merge`")
        );
        assert!(
            usage_text(&["kubeconfig", "--merge", "--set-current"])
                .contains("`--set-current` needs a CONTEXT")
        );
        assert!(usage_text(&["completions", "tcsh"]).contains("bash, zsh, fish, not `tcsh`"));
        assert!(usage_text(&["retry"]).contains("missing IDENTITY"));
        assert!(usage_text(&["reload", "prod"]).contains("unexpected argument `prod`"));
        let long = "a".repeat(MAX_NAME_LEN + 1);
        assert!(usage_text(&["refresh", &long]).contains("longer than 1024 bytes"));
        assert!(parse_strs(&["refresh", &long[1..]]).is_ok());
        let bad = OsStr::from_bytes(b"\xffprod").to_owned();
        match parse([OsString::from("token"), bad]) {
            Err(Error::Usage(text)) => assert!(text.contains("not valid UTF-8"), "{text}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn help_topics_are_the_visible_commands() {
        let Kind::Choice(topics) = HELP_COMMAND.args[0].kind else {
            panic!("help takes a choice");
        };
        let visible: Vec<&str> = Spec::visible()
            .map(|s| s.name)
            .filter(|n| *n != "help")
            .collect();
        assert_eq!(topics, visible.as_slice());
    }
}
