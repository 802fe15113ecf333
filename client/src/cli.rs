//! The command line, parsed by hand.
//!
//! Why not clap: `akscred token` runs once per kubectl command and the whole
//! program must cost little more than process start. Six commands and three
//! options do not need a framework, and a hand-written parser adds nothing to
//! start-up or binary size.

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
    /// Print help, general or for one command, to stdout.
    Help(Option<&'static Spec>),
    Version,
}

#[derive(Debug, PartialEq, Eq)]
pub struct Spec {
    pub name: &'static str,
    pub usage: &'static str,
    pub help: &'static str,
}

pub const TOKEN: Spec = Spec {
    name: "token",
    usage: "akscred token CLUSTER",
    help: "\
Print an ExecCredential for CLUSTER on stdout: the kubectl exec credential
plugin. The apiVersion (client.authentication.k8s.io/v1 or v1beta1) follows
KUBERNETES_EXEC_INFO, which kubectl sets; without it, v1.
",
};
pub const KUBECONFIG: Spec = Spec {
    name: "kubeconfig",
    usage: "akscred kubeconfig [CLUSTER] [--file PATH] [--merge]",
    help: "\
Print a kubeconfig for every configured cluster, or for CLUSTER only, whose
users run `akscred token`.

Options:
  --file PATH   write it to PATH instead (mode 0600, replaced atomically)
  --merge       merge into an existing kubeconfig (not supported yet)
",
};
pub const STATUS: Spec = Spec {
    name: "status",
    usage: "akscred status [--json]",
    help: "\
Show every cluster (state, how long its token stays valid, next refresh,
last error) and every identity. Exits 1 when a cluster is not ready.

Options:
  --json        print the daemon's answer as JSON
",
};
pub const REFRESH: Spec = Spec {
    name: "refresh",
    usage: "akscred refresh CLUSTER",
    help: "Refresh the token of CLUSTER now.\n",
};
pub const RETRY: Spec = Spec {
    name: "retry",
    usage: "akscred retry IDENTITY",
    help: "\
Clear needs_attention on IDENTITY (after fixing its password, say) and let
akscredd sign in once more.
",
};
pub const COMMANDS: [&Spec; 5] = [&TOKEN, &KUBECONFIG, &STATUS, &REFRESH, &RETRY];

/// The whole `--help` text.
pub fn help() -> String {
    format!(
        "\
akscred {version}: kubectl credentials for AKS clusters, served by akscredd

Usage:
  akscred token CLUSTER                    ExecCredential for kubectl (exec plugin)
  akscred status [--json]                  clusters and identities at a glance
  akscred kubeconfig [CLUSTER] [--file PATH] [--merge]
                                           kubeconfig whose users run `akscred token`
  akscred refresh CLUSTER                  refresh a cluster's token now
  akscred retry IDENTITY                   clear needs_attention, sign in once more
  akscred help [COMMAND] | --help | --version

Environment:
  AKSCRED_SOCKET        akscredd's socket; default $XDG_RUNTIME_DIR/akscred/akscred.sock,
                        else /run/user/UID/akscred/akscred.sock
  KUBERNETES_EXEC_INFO  set by kubectl: the ExecCredential apiVersion to answer in

Exit status:
  0  success
  1  akscredd answered with an error; for `status`, a cluster is not ready
  2  usage error, or a KUBERNETES_EXEC_INFO akscred cannot answer
  3  akscredd is not running or cannot be reached, or its answer is unreadable
  4  the output could not be written (stdout, --file)
",
        version = env!("CARGO_PKG_VERSION")
    )
}

pub fn command_help(spec: &Spec) -> String {
    format!("Usage: {}\n\n{}", spec.usage, spec.help)
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
        b"help" => match args.next() {
            None => Ok(Command::Help(None)),
            Some(topic) => find(&topic)
                .map(|spec| Command::Help(Some(spec)))
                .ok_or_else(|| general_usage(&format!("no help on `{}`", topic.display()))),
        },
        _ => match find(&first) {
            Some(spec) => parse_command(spec, args),
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

fn parse_command(
    spec: &'static Spec,
    mut args: impl Iterator<Item = OsString>,
) -> Result<Command, Error> {
    let mut positional: Vec<OsString> = Vec::new();
    let (mut json, mut merge, mut file) = (false, false, None);
    let mut options_done = false;
    while let Some(arg) = args.next() {
        let bytes = arg.as_bytes();
        if options_done || bytes == b"-" || !bytes.starts_with(b"-") {
            positional.push(arg);
            continue;
        }
        match bytes {
            b"--" => options_done = true,
            b"-h" | b"--help" => return Ok(Command::Help(Some(spec))),
            b"--json" if *spec == STATUS => json = true,
            b"--merge" if *spec == KUBECONFIG => merge = true,
            b"--file" if *spec == KUBECONFIG => {
                let path = args
                    .next()
                    .ok_or_else(|| command_usage(spec, "`--file` needs a PATH"))?;
                file = Some(nonempty_path(spec, path)?);
            }
            _ if *spec == KUBECONFIG && bytes.starts_with(b"--file=") => {
                let path = OsStr::from_bytes(&bytes[b"--file=".len()..]);
                file = Some(nonempty_path(spec, path.to_owned())?);
            }
            _ => {
                return Err(command_usage(
                    spec,
                    &format!("unknown option `{}`", arg.display()),
                ));
            }
        }
    }

    let mut positional = positional.into_iter();
    let mut name = |what: &str, required: bool| -> Result<Option<String>, Error> {
        match positional.next() {
            None if required => Err(command_usage(spec, &format!("missing {what}"))),
            None => Ok(None),
            Some(arg) => match arg.into_string() {
                Ok(s) if s.is_empty() => Err(command_usage(spec, &format!("empty {what}"))),
                Ok(s) if s.len() > MAX_NAME_LEN => Err(command_usage(
                    spec,
                    &format!("{what} is longer than {MAX_NAME_LEN} bytes"),
                )),
                Ok(s) => Ok(Some(s)),
                // Names come from the TOML config, which is UTF-8.
                Err(arg) => Err(command_usage(
                    spec,
                    &format!("{what} `{}` is not valid UTF-8", arg.display()),
                )),
            },
        }
    };
    let required = |name: Result<Option<String>, Error>| name.map(Option::unwrap_or_default);
    let command = match spec.name {
        "token" => Command::Token {
            cluster: required(name("CLUSTER", true))?,
        },
        "kubeconfig" => Command::Kubeconfig {
            cluster: name("CLUSTER", false)?,
            file,
            merge,
        },
        "status" => Command::Status { json },
        "refresh" => Command::Refresh {
            cluster: required(name("CLUSTER", true))?,
        },
        _ => Command::Retry {
            identity: required(name("IDENTITY", true))?,
        },
    };
    if let Some(extra) = positional.next() {
        return Err(command_usage(
            spec,
            &format!("unexpected argument `{}`", extra.display()),
        ));
    }
    Ok(command)
}

fn nonempty_path(spec: &Spec, path: OsString) -> Result<PathBuf, Error> {
    if path.is_empty() {
        return Err(command_usage(spec, "`--file` needs a PATH"));
    }
    Ok(PathBuf::from(path))
}

fn general_usage(problem: &str) -> Error {
    let mut text = format!("akscred: {problem}\n\nUsage:\n");
    for spec in COMMANDS {
        text.push_str("  ");
        text.push_str(spec.usage);
        text.push('\n');
    }
    text.push_str("\nRun `akscred --help` for details.\n");
    Error::Usage(text)
}

fn command_usage(spec: &Spec, problem: &str) -> Error {
    Error::Usage(format!(
        "akscred {}: {problem}\nUsage: {}\nRun `akscred help {}` for details.\n",
        spec.name, spec.usage, spec.name
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

    #[test]
    fn commands() {
        let ok = |args: &[&str]| parse_strs(args).unwrap_or_else(|e| panic!("{e:?}"));
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
        assert_eq!(
            ok(&["kubeconfig"]),
            Command::Kubeconfig {
                cluster: None,
                file: None,
                merge: false
            }
        );
        assert_eq!(
            ok(&["kubeconfig", "--file", "/tmp/k", "prod", "--merge"]),
            Command::Kubeconfig {
                cluster: Some("prod".into()),
                file: Some("/tmp/k".into()),
                merge: true
            }
        );
        assert_eq!(
            ok(&["kubeconfig", "--file=/tmp/k"]),
            Command::Kubeconfig {
                cluster: None,
                file: Some("/tmp/k".into()),
                merge: false
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
    }

    #[test]
    fn help_and_version() {
        let ok = |args: &[&str]| parse_strs(args).unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(ok(&["--help"]), Command::Help(None));
        assert_eq!(ok(&["-h"]), Command::Help(None));
        assert_eq!(ok(&["help"]), Command::Help(None));
        assert_eq!(ok(&["help", "token"]), Command::Help(Some(&TOKEN)));
        assert_eq!(ok(&["status", "--help"]), Command::Help(Some(&STATUS)));
        assert_eq!(ok(&["token", "-h"]), Command::Help(Some(&TOKEN)));
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
        assert!(usage_text(&["help", "frob"]).contains("no help on `frob`"));
        assert!(usage_text(&["token"]).contains("akscred token: missing CLUSTER"));
        assert!(usage_text(&["token", ""]).contains("empty CLUSTER"));
        assert!(usage_text(&["token", "a", "b"]).contains("unexpected argument `b`"));
        assert!(usage_text(&["token", "--json", "a"]).contains("unknown option `--json`"));
        assert!(usage_text(&["status", "prod"]).contains("unexpected argument `prod`"));
        assert!(usage_text(&["kubeconfig", "--file"]).contains("`--file` needs a PATH"));
        assert!(usage_text(&["kubeconfig", "--file="]).contains("`--file` needs a PATH"));
        assert!(usage_text(&["retry"]).contains("missing IDENTITY"));
        let long = "a".repeat(MAX_NAME_LEN + 1);
        assert!(usage_text(&["refresh", &long]).contains("longer than 1024 bytes"));
        assert!(parse_strs(&["refresh", &long[1..]]).is_ok());
        let bad = OsStr::from_bytes(b"\xffprod").to_owned();
        match parse([OsString::from("token"), bad]) {
            Err(Error::Usage(text)) => assert!(text.contains("not valid UTF-8"), "{text}"),
            other => panic!("{other:?}"),
        }
    }
}
