//! `akscredd [--config PATH]` and `akscredd check-config [--config PATH]`.
//!
//! Exit codes: 0 clean stop or valid config, 1 runtime failure, 2 usage or
//! invalid config.

use std::path::PathBuf;
use std::process::ExitCode;

use akscredd::config::Config;
use akscredd::service::Options;
use akscredd::systemd::Systemd;

const USAGE: &str = "usage: akscredd [--config PATH]
       akscredd check-config [--config PATH]

Keeps AKS (Microsoft Entra ID) cluster tokens fresh and serves them to the
akscred kubectl plugin over a Unix socket.

  --config PATH   config file (default $XDG_CONFIG_HOME/akscred/config.toml)
  AKSCRED_SOCKET  socket path, when [daemon] socket is not set
  AKSCRED_LOG     log filter (default info), e.g. debug or akscredd=trace";

enum Command {
    Run,
    CheckConfig,
}

fn parse_args() -> Result<(Command, PathBuf), String> {
    let mut command = Command::Run;
    let mut config = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "check-config" => command = Command::CheckConfig,
            "--config" | "-c" => {
                config = Some(PathBuf::from(args.next().ok_or("--config needs a path")?));
            }
            s if s.starts_with("--config=") => config = Some(PathBuf::from(&s[9..])),
            "--help" | "-h" | "help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            "--version" | "-V" => {
                println!("akscredd {}", env!("CARGO_PKG_VERSION"));
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument `{other}`")),
        }
    }
    Ok((command, config.unwrap_or_else(Config::default_path)))
}

fn main() -> ExitCode {
    let (command, path) = match parse_args() {
        Ok(v) => v,
        Err(e) => {
            eprintln!("akscredd: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    if let Command::CheckConfig = command {
        return match Config::load(&path) {
            Ok(config) => {
                println!(
                    "{}: ok ({} identities, {} clusters)",
                    path.display(),
                    config.identities.len(),
                    config.clusters.len()
                );
                // Valid all the same: the daemon runs with it, and says so
                // in its log and status.
                for (name, identity) in &config.identities {
                    for warning in identity.exposed_secrets() {
                        eprintln!("akscredd: warning: identity {name}: {warning}");
                    }
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("akscredd: invalid configuration: {e}");
                ExitCode::from(2)
            }
        };
    }

    // Before any secret is read and before any thread exists (the systemd
    // variables are removed from the environment).
    let hardening = akscredd::process::harden();
    let systemd = Systemd::from_env();
    akscredd::logging::init();
    for warning in hardening.warnings.iter().chain(&systemd.warnings) {
        tracing::warn!("{warning}");
    }

    let config = match Config::load(&path) {
        Ok(c) => c,
        Err(e) => {
            akscredd::logging::fatal(&format!("invalid configuration: {e}"));
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            akscredd::logging::fatal(&format!("cannot start the runtime: {e}"));
            return ExitCode::FAILURE;
        }
    };
    let options = Options {
        systemd,
        ..Options::default()
    };
    let result = runtime.block_on(async {
        let shutdown = akscredd::signals::shutdown();
        akscredd::service::run_with(config, options, shutdown).await
    });
    // Tasks still running (a password command, a sign-in) get a moment,
    // not the rest of systemd's stop timeout.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            ExitCode::FAILURE
        }
    }
}
