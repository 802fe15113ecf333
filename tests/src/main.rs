//! `akscred-emulator --dir DIR [--scenario standard|many:N] [--token-lifetime SECS]`
//!
//! Starts the emulator, writes `DIR/ca.pem` and `DIR/emulator.json`, prints
//! `READY DIR/emulator.json` on stdout once every server listens, and runs
//! until SIGTERM or SIGINT. Exit codes: 0 after a signal, 1 when it cannot
//! start, 2 for bad arguments.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use akscred_tests::{Emulator, Scenario, UserState};
use serde_json::json;

const USAGE: &str =
    "usage: akscred-emulator --dir DIR [--scenario standard|many:N] [--token-lifetime SECS]";

struct Args {
    dir: PathBuf,
    scenario: Scenario,
}

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut dir = None;
    let mut scenario = Scenario::standard();
    let mut lifetime = None;
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or_else(|| format!("{name} needs a value"));
        match arg.as_str() {
            "--dir" => dir = Some(PathBuf::from(value("--dir")?)),
            "--scenario" => {
                let v = value("--scenario")?;
                scenario = match v.split_once(':') {
                    None if v == "standard" => Scenario::standard(),
                    Some(("many", n)) => Scenario::many_managed(
                        n.parse()
                            .map_err(|_| format!("--scenario many:N needs a number, not {n:?}"))?,
                    ),
                    _ => return Err(format!("unknown scenario {v:?}")),
                };
            }
            "--token-lifetime" => {
                let v = value("--token-lifetime")?;
                let secs: u64 = v
                    .parse()
                    .map_err(|_| format!("--token-lifetime needs seconds, not {v:?}"))?;
                lifetime = Some(Duration::from_secs(secs.max(1)));
            }
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unexpected argument {other:?}")),
        }
    }
    if let Some(lifetime) = lifetime {
        scenario.token_lifetime = lifetime;
    }
    let dir = dir.ok_or("--dir is required")?;
    Ok(Args { dir, scenario })
}

fn main() -> ExitCode {
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(a) => a,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("akscred-emulator: {e}");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("AKSCRED_EMULATOR_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("akscred-emulator: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("akscred-emulator: {e}");
            ExitCode::from(1)
        }
    }
}

async fn run(args: Args) -> Result<(), String> {
    let emu = Emulator::start(args.scenario)
        .await
        .map_err(|e| format!("cannot start the emulator: {e}"))?;
    let dir = &args.dir;
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let ca_path = dir.join("ca.pem");
    std::fs::write(&ca_path, emu.ca_pem())
        .map_err(|e| format!("cannot write {}: {e}", ca_path.display()))?;

    let s = emu.scenario();
    let first = s.clusters.first();
    let clusters: serde_json::Map<String, serde_json::Value> = s
        .clusters
        .iter()
        .filter_map(|c| Some((c.name.clone(), emu.cluster_server(&c.name)?.into())))
        .collect();
    let users: Vec<_> = s
        .users
        .iter()
        .filter(|u| u.state == UserState::Active)
        .map(|u| json!({"upn": u.upn, "password": u.password}))
        .collect();
    let info = json!({
        "login_url": emu.login_url(),
        "arm_url": emu.arm_url(),
        "adfs_url": emu.adfs_url(),
        "ca_file": ca_path,
        "tenant_id": s.tenant_id,
        "tenant_domain": s.tenant_domain,
        "subscription": first.map(|c| c.subscription.as_str()),
        "resource_group": first.map(|c| c.resource_group.as_str()),
        "environment": s.environment,
        "token_lifetime_secs": s.token_lifetime.as_secs(),
        "clusters": clusters,
        "users": users,
    });
    let info_path = dir.join("emulator.json");
    let text = serde_json::to_string_pretty(&info).map_err(|e| e.to_string())?;
    // Write then rename, so a script polling for the file never reads half.
    let tmp = dir.join(".emulator.json.tmp");
    std::fs::write(&tmp, text + "\n")
        .and_then(|()| std::fs::rename(&tmp, &info_path))
        .map_err(|e| format!("cannot write {}: {e}", info_path.display()))?;
    // Handlers first: a script that sends SIGTERM right after READY must
    // find them installed.
    let signals = signals()?;
    println!("READY {}", info_path.display());

    wait_for_signal(signals).await?;
    emu.shutdown().await;
    Ok(())
}

type Signals = (tokio::signal::unix::Signal, tokio::signal::unix::Signal);

fn signals() -> Result<Signals, String> {
    use tokio::signal::unix::{SignalKind, signal};
    let term = signal(SignalKind::terminate()).map_err(|e| format!("cannot catch SIGTERM: {e}"))?;
    let int = signal(SignalKind::interrupt()).map_err(|e| format!("cannot catch SIGINT: {e}"))?;
    Ok((term, int))
}

async fn wait_for_signal((mut term, mut int): Signals) -> Result<(), String> {
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    Ok(())
}
