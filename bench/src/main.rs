//! `akscred-bench`: the measurements behind BENCHMARKS.md, printed as
//! Markdown on stdout. `bench/run.sh` builds everything in release mode,
//! prints the machine and versions, runs this and saves the whole report.
//!
//! The emulator runs in this process (the akscred-tests library), so its
//! request counters are read directly; akscredd, akscred, the constant
//! ExecCredential printer and gke-gcloud-auth-plugin run as the real
//! binaries. Benchmarks report, they do not assert: a missed budget is a
//! line in the report, and the exit code is 0 whenever every figure could be
//! measured.
//!
//! ```text
//! akscred-bench [--runs N] [--warmup N] [--measure SECS] [--load-threads N]
//!               [--cold-runs N] [--burst-clusters N] [--burst-lifetime SECS]
//!               [--only 1,2,3,4,5,6] [--client PATH] [--extra-client PATH] [--const-static PATH]
//! akscred-bench load SOCKET CLUSTER CONNS [close] [SECS]
//! ```

mod harness;
mod load;
mod procs;
mod stats;

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use akscred_tests::{AKS_SERVER_APP_ID, ClusterAad, Counters, Emulator, Scenario, standard};

use harness::{Bins, Daemon, Layout, Memory, mib};
use stats::{LoadSpan, Summary, dur, ms, ratio, verdict};

const USAGE: &str = "usage: akscred-bench [--runs N] [--warmup N] [--measure SECS] [--load-threads N] [--cold-runs N] [--burst-clusters N] [--burst-lifetime SECS] [--only 1,2,...] [--client PATH] [--extra-client PATH] [--const-static PATH]\n       akscred-bench load SOCKET CLUSTER CONNS [close] [SECS]";

struct Options {
    runs: usize,
    warmup: usize,
    measure: Duration,
    load_threads: usize,
    cold_runs: usize,
    burst_clusters: usize,
    burst_lifetime: u64,
    only: Option<Vec<u32>>,
    /// The akscred under test, if not the one next to this binary
    /// (bench/run.sh passes the shipped, static-pie build).
    client: Option<std::path::PathBuf>,
    /// Another build of akscred to time next to it (bench/run.sh passes the
    /// dynamically linked one of `cargo build --release`).
    extra_client: Option<std::path::PathBuf>,
    /// The trivial Rust binary linked static-pie, the floor for a static
    /// client (bench/run.sh builds it).
    const_static: Option<std::path::PathBuf>,
}

impl Options {
    fn wants(&self, figure: u32) -> bool {
        self.only.as_ref().is_none_or(|o| o.contains(&figure))
    }
}

fn parse_args() -> Result<Options, String> {
    let mut o = Options {
        runs: 1000,
        warmup: 20,
        measure: Duration::from_secs(3),
        load_threads: 1,
        cold_runs: 5,
        burst_clusters: 1000,
        burst_lifetime: 60,
        only: None,
        client: None,
        extra_client: None,
        const_static: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{a} needs a value"));
        let number = |v: String| {
            v.parse::<u64>()
                .map_err(|_| format!("{v:?} is not a number"))
        };
        match a.as_str() {
            "--runs" => o.runs = number(value()?)? as usize,
            "--warmup" => o.warmup = number(value()?)? as usize,
            "--measure" => o.measure = Duration::from_secs(number(value()?)?.max(1)),
            "--load-threads" => o.load_threads = number(value()?)?.max(1) as usize,
            "--cold-runs" => o.cold_runs = number(value()?)?.max(1) as usize,
            "--burst-clusters" => o.burst_clusters = number(value()?)?.max(1) as usize,
            "--burst-lifetime" => o.burst_lifetime = number(value()?)?.max(10),
            "--only" => {
                let list = value()?;
                o.only = Some(
                    list.split(',')
                        .map(|f| f.trim().parse().map_err(|_| format!("bad figure {f:?}")))
                        .collect::<Result<_, _>>()?,
                );
            }
            "--client" => o.client = Some(value()?.into()),
            "--extra-client" => o.extra_client = Some(value()?.into()),
            "--const-static" => o.const_static = Some(value()?.into()),
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(o)
}

/// One budget line of the summary.
struct Budget {
    what: String,
    figure: String,
    verdict: String,
}

struct Report {
    budgets: Vec<Budget>,
}

impl Report {
    fn budget(&mut self, what: impl Into<String>, figure: impl Into<String>, ok: bool) {
        self.line(what, figure, verdict(ok));
    }

    /// A figure without a budget, or a verdict of another kind.
    fn line(&mut self, what: impl Into<String>, figure: impl Into<String>, verdict: &str) {
        self.budgets.push(Budget {
            what: what.into(),
            figure: figure.into(),
            verdict: verdict.into(),
        });
    }
}

/// `akscred-bench load SOCKET CLUSTER CONNS [close] [SECS]`: figure 3's
/// generator alone, against any running akscredd (for profiling it).
fn load_only(args: &[String]) -> Result<(), String> {
    let [socket, cluster, conns, rest @ ..] = args else {
        return Err("usage: akscred-bench load SOCKET CLUSTER CONNS [close] [SECS]".into());
    };
    let keepalive = !rest.iter().any(|a| a == "close");
    let secs = rest
        .iter()
        .find_map(|a| a.parse::<u64>().ok())
        .unwrap_or(10);
    let plan = load::Plan {
        conns: conns
            .parse()
            .map_err(|_| format!("{conns:?} is not a number"))?,
        keepalive,
        warmup: Duration::from_millis(500),
        measure: Duration::from_secs(secs),
        threads: 1,
    };
    let target = format!("/v1/clusters/{cluster}/credential?api_version=v1");
    let out = load::run(Path::new(socket), &target, &plan)?;
    let rate = out.per_second();
    let s = Summary::new(out.latencies);
    println!(
        "{} requests, {rate:.0} req/s, p50 {}, p99 {}, errors {}",
        s.len(),
        dur(s.median()),
        dur(s.p99()),
        out.errors
    );
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("load") {
        return match load_only(&args[1..]) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("akscred-bench: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let opts = match parse_args() {
        Ok(o) => o,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("akscred-bench: {e}");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(&opts) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("akscred-bench: {e}");
            println!("\n**The benchmark stopped early:** {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(opts: &Options) -> Result<(), String> {
    let mut bins = Bins::locate()?;
    if let Some(client) = &opts.client {
        if !client.is_file() {
            return Err(format!("--client {}: no such file", client.display()));
        }
        bins.akscred = client.clone();
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    let mut report = Report {
        budgets: Vec::new(),
    };

    if opts.wants(1) || opts.wants(2) || opts.wants(3) || opts.wants(4) {
        let emu = rt
            .block_on(Emulator::start(Scenario::many_managed(1)))
            .map_err(|e| format!("cannot start the emulator: {e}"))?;
        let mut daemon = Daemon::start(&bins, &emu, "", Layout::OneIdentity)?;
        daemon.wait_ready(Duration::from_secs(10))?;
        daemon.wait_all_ready(Duration::from_millis(10), Duration::from_secs(30))?;
        std::thread::sleep(Duration::from_secs(1));
        let idle = daemon.memory()?;
        let cluster = emu.scenario().clusters[0].name.clone();
        if opts.wants(1) || opts.wants(2) {
            process_times(opts, &bins, &daemon, &cluster, &mut report)?;
        }
        let mut after_load = None;
        if opts.wants(3) {
            throughput(opts, &daemon, &cluster, &mut report)?;
            after_load = Some(daemon.memory()?);
        }
        if opts.wants(4) {
            memory(&rt, &bins, idle, after_load, &mut report)?;
        }
        drop(daemon);
        drop(emu);
    }
    if opts.wants(5) {
        cold_start(opts, &rt, &bins, &mut report)?;
    }
    if opts.wants(6) {
        burst(opts, &rt, &bins, &mut report)?;
    }

    println!("\n## Budgets\n");
    println!("| budget | measured | verdict |\n|---|---|---|");
    for b in &report.budgets {
        println!("| {} | {} | {} |", b.what, b.figure, b.verdict);
    }
    Ok(())
}

/// A directory where `gke-gcloud-auth-plugin` finds a valid cache entry for
/// the kubeconfig's current context, and a `gcloud` that fails, first on
/// PATH, so that a cache miss shows up as a failed run instead of a
/// one-second `gcloud config config-helper`.
fn gke_cache(token: &str) -> Result<tempfile::TempDir, String> {
    let dir = tempfile::Builder::new()
        .prefix("akscred-bench-gke-")
        .tempdir()
        .map_err(|e| format!("cannot make a temporary directory: {e}"))?;
    let io = |e: std::io::Error| format!("cannot write the gke plugin's files: {e}");
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).map_err(io)?;
    let gcloud = bin.join("gcloud");
    std::fs::write(
        &gcloud,
        "#!/bin/sh\necho 'akscred-bench: gke-gcloud-auth-plugin missed its cache' >&2\nexit 1\n",
    )
    .map_err(io)?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&gcloud, std::fs::Permissions::from_mode(0o755)).map_err(io)?;
    std::fs::write(
        dir.path().join("kubeconfig"),
        "apiVersion: v1\nkind: Config\ncurrent-context: bench\ncontexts:\n- name: bench\n  context: {cluster: bench, user: bench}\nclusters:\n- name: bench\n  cluster: {server: \"https://127.0.0.1:1\"}\nusers:\n- name: bench\n  user:\n    exec:\n      apiVersion: client.authentication.k8s.io/v1beta1\n      command: gke-gcloud-auth-plugin\n",
    )
    .map_err(io)?;
    std::fs::write(
        dir.path().join("gke_gcloud_auth_plugin_cache"),
        serde_json::json!({
            "current_context": "bench",
            "access_token": token,
            "token_expiry": "2099-01-01T00:00:00Z",
            "extra_args": "",
        })
        .to_string(),
    )
    .map_err(io)?;
    Ok(dir)
}

fn find_on_path(name: &str) -> Option<std::path::PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// Figures 1 and 2, and the client's peak RSS (figure 4).
fn process_times(
    opts: &Options,
    bins: &Bins,
    daemon: &Daemon,
    cluster: &str,
    report: &mut Report,
) -> Result<(), String> {
    let gke_token = format!("ya29.bench-cache-hit-{}", "x".repeat(2027));
    let gke_dir = gke_cache(&gke_token)?;
    let gke = find_on_path("gke-gcloud-auth-plugin");
    let mut path = OsString::from(gke_dir.path().join("bin"));
    path.push(":");
    path.push(std::env::var_os("PATH").unwrap_or_default());
    // One environment for every command, as kubectl would set it.
    let env: Vec<(String, OsString)> = vec![
        ("AKSCRED_SOCKET".into(), daemon.socket.clone().into()),
        ("KUBECONFIG".into(), gke_dir.path().join("kubeconfig").into()),
        ("PATH".into(), path),
        (
            "KUBERNETES_EXEC_INFO".into(),
            r#"{"kind":"ExecCredential","apiVersion":"client.authentication.k8s.io/v1beta1","spec":{"interactive":false}}"#.into(),
        ),
    ];
    let mut cmds = vec![
        procs::Cmd {
            label: "`/bin/true`".into(),
            program: "/bin/true".into(),
            args: vec![],
            expect: None,
        },
        procs::Cmd {
            label: "trivial Rust binary (constant ExecCredential, dynamically linked)".into(),
            program: bins.const_credential.clone(),
            args: vec![],
            expect: Some("ExecCredential".into()),
        },
        procs::Cmd {
            label: format!(
                "`akscred token {cluster}`{}",
                if opts.client.is_some() {
                    ", as shipped (scripts/release.sh)"
                } else {
                    ""
                }
            ),
            program: bins.akscred.clone(),
            args: vec!["token".into(), cluster.into()],
            expect: Some("\"token\":\"ey".into()),
        },
    ];
    let extra = opts.extra_client.as_ref().filter(|p| p.is_file());
    if let Some(p) = extra {
        cmds.push(procs::Cmd {
            label: format!(
                "`akscred token {cluster}`, dynamically linked (`cargo build --release`)"
            ),
            program: p.clone(),
            args: vec!["token".into(), cluster.into()],
            expect: Some("\"token\":\"ey".into()),
        });
    }
    let const_static = opts.const_static.as_ref().filter(|p| p.is_file());
    let static_floor = const_static.map(|p| {
        cmds.push(procs::Cmd {
            label: "trivial Rust binary (constant ExecCredential, static-pie)".into(),
            program: p.clone(),
            args: vec![],
            expect: Some("ExecCredential".into()),
        });
        cmds.len() - 1
    });
    if let Some(p) = &gke {
        cmds.push(procs::Cmd {
            label: "`gke-gcloud-auth-plugin` (cache hit)".into(),
            program: p.clone(),
            args: vec![],
            expect: Some(gke_token.clone()),
        });
    }

    println!("\n## 1–2. `akscred token` as a whole process\n");
    println!(
        "Wall time from spawn to reaped exit, stdout read through a pipe (as kubectl does), \
         {} alternating rounds after {} warm-up rounds: each round runs every command once, \
         in an order that rotates every round. Same environment for all (`AKSCRED_SOCKET`, \
         `KUBECONFIG`, `KUBERNETES_EXEC_INFO` v1beta1, PATH with a failing `gcloud` first). \
         A run whose exit code or stdout is wrong is counted as a failure, not timed.\n",
        opts.runs, opts.warmup
    );
    let span = LoadSpan::start();
    let timed = procs::alternate(&cmds, &env, opts.warmup, opts.runs);
    let load = span.end();
    let sums: Vec<Summary> = timed
        .iter()
        .map(|t| Summary::new(t.samples.clone()))
        .collect();
    let floor = sums[0].median();
    let rust = sums[1].median();
    let rust_static = static_floor.map(|i| sums[i].median());
    let static_head = if rust_static.is_some() {
        (" median ÷ trivial Rust, static-pie |", "---|")
    } else {
        ("", "")
    };
    println!(
        "| command | runs | failures | median ms | p99 ms | mean ms | min ms | median ÷ `/bin/true` | median ÷ trivial Rust |{}",
        static_head.0
    );
    println!("|---|---|---|---|---|---|---|---|---|{}", static_head.1);
    for ((c, t), s) in cmds.iter().zip(&timed).zip(&sums) {
        let static_ratio = rust_static
            .map(|f| format!(" {:.2}× |", ratio(s.median(), f)))
            .unwrap_or_default();
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {:.2}× | {:.2}× |{static_ratio}",
            c.label,
            s.len(),
            t.failures,
            ms(s.median()),
            ms(s.p99()),
            ms(s.mean()),
            ms(s.min()),
            ratio(s.median(), floor),
            ratio(s.median(), rust),
        );
    }
    println!("\n{load}\n");
    for (c, t) in cmds.iter().zip(&timed) {
        if let Some(e) = &t.first_failure {
            println!(
                "- {} failed {} times; first: `{}`",
                c.label,
                t.failures,
                one_line(e)
            );
        }
    }
    let ak = &sums[2];
    let r_true = ratio(ak.median(), floor);
    report.budget(
        "1. `akscred token` median ≤ 1.5× `/bin/true`",
        format!(
            "{r_true:.3}× ({} vs {} ms, {load})",
            ms(ak.median()),
            ms(floor)
        ),
        r_true <= 1.5 && timed[2].failures == 0,
    );
    let gke_index = cmds.len() - 1;
    if gke.is_some() {
        let g = &sums[gke_index];
        let speedup = ratio(g.median(), ak.median());
        println!(
            "`akscred token` is {speedup:.2}× faster than the gke plugin's cache hit (medians), {:.2}× at p99.",
            ratio(g.p99(), ak.p99())
        );
        report.budget(
            "2. `akscred token` ≥ 4× faster than the gke plugin cache hit",
            format!(
                "{speedup:.3}× ({} vs {} ms, {load})",
                ms(g.median()),
                ms(ak.median())
            ),
            speedup >= 4.0 && timed[gke_index].failures == 0,
        );
        if extra.is_some() {
            let st = &sums[3];
            report.line(
                "1–2. dynamically linked `akscred` (plain `cargo build`): ÷ `/bin/true`, gke ÷ it",
                format!(
                    "{:.2}×, {:.2}× ({} ms)",
                    ratio(st.median(), floor),
                    ratio(g.median(), st.median()),
                    ms(st.median())
                ),
                "for comparison",
            );
        }
    } else {
        println!("gke-gcloud-auth-plugin is not on PATH: figure 2 skipped.");
    }

    println!("\n### Client peak RSS\n");
    println!("`ru_maxrss` from GNU time (`/usr/bin/time -f %M`), largest of 20 runs.\n");
    println!("| command | peak RSS |\n|---|---|");
    let span = LoadSpan::start();
    let mut akscred_peak = 0;
    for (i, c) in cmds.iter().enumerate() {
        let kib = procs::peak_rss_kib(c, &env, 20)?;
        if i == 2 {
            akscred_peak = kib;
        }
        println!("| {} | {} ({kib} KiB) |", c.label, mib(kib));
    }
    println!("\n{}", span.end());
    report.budget(
        "4. client peak RSS < 5 MiB",
        mib(akscred_peak),
        akscred_peak < 5 * 1024,
    );
    Ok(())
}

fn one_line(s: &str) -> String {
    let flat = s.replace(['\n', '`', '|'], " ");
    if flat.len() > 300 {
        format!("{}…", &flat[..flat.floor_char_boundary(300)])
    } else {
        flat
    }
}

/// Figure 3.
fn throughput(
    opts: &Options,
    daemon: &Daemon,
    cluster: &str,
    report: &mut Report,
) -> Result<(), String> {
    let target = format!("/v1/clusters/{cluster}/credential?api_version=v1");
    println!("\n## 3. Daemon throughput and latency over the Unix socket\n");
    println!(
        "`GET {target}` in a closed loop from a hyper client ({} thread{}, tokio), \
         {} s measured after 0.5 s of warm-up per row. Keep-alive: one connection per \
         worker, reused. Close: a new connection per request with `Connection: close` \
         (what `akscred token` does); its latency includes connect. The generator shares \
         the 2 cores with akscredd.\n",
        opts.load_threads,
        if opts.load_threads == 1 { "" } else { "s" },
        opts.measure.as_secs()
    );
    println!(
        "| connections | mode | requests | req/s | p50 | p99 | max | errors | akscredd CPU | generator CPU | akscredd CPU per request | load |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
    let pid = daemon.pid().to_string();
    for keepalive in [true, false] {
        for conns in [1usize, 8, 64] {
            let span = LoadSpan::start();
            let plan = load::Plan {
                conns,
                keepalive,
                warmup: Duration::from_millis(500),
                measure: opts.measure,
                threads: opts.load_threads,
            };
            let (d0, g0, t0) = (
                harness::cpu_time(&pid),
                harness::cpu_time("self"),
                Instant::now(),
            );
            let out = load::run(&daemon.socket, &target, &plan)?;
            let wall = t0.elapsed().as_secs_f64();
            let (d_cpu, g_cpu) = (harness::cpu_time(&pid) - d0, harness::cpu_time("self") - g0);
            let rate = out.per_second();
            let total = out.latencies.len() as f64 * (plan.warmup + plan.measure).as_secs_f64()
                / plan.measure.as_secs_f64();
            let s = Summary::new(out.latencies);
            let mode = if keepalive { "keep-alive" } else { "close" };
            println!(
                "| {conns} | {mode} | {} | {rate:.0} | {} | {} | {} | {} | {:.2} cores | {:.2} cores | {:.1} µs | {} |",
                s.len(),
                dur(s.median()),
                dur(s.p99()),
                dur(s.max()),
                out.errors,
                d_cpu.as_secs_f64() / wall,
                g_cpu.as_secs_f64() / wall,
                d_cpu.as_secs_f64() * 1e6 / total.max(1.0),
                span.end()
            );
            if let Some(e) = out.first_error {
                println!("\nfirst error: `{}`\n", one_line(&e));
            }
            if keepalive && conns == 64 {
                report.budget(
                    "3. ≥ 20,000 req/s at 64 keep-alive connections",
                    format!("{rate:.0} req/s ({})", span.end()),
                    rate >= 20_000.0 && out.errors == 0,
                );
                report.budget(
                    "3. p99 < 5 ms at 64 keep-alive connections",
                    format!("{} ({})", dur(s.p99()), span.end()),
                    s.p99() < Duration::from_millis(5),
                );
            }
        }
    }
    Ok(())
}

fn memory_row(clusters: usize, when: &str, m: &Memory, load: &str) {
    println!(
        "| {clusters} | {when} | {} | {} | {} | {} | {load} |",
        mib(m.rss_kib),
        mib(m.hwm_kib),
        mib(m.anon_kib),
        m.threads
    );
}

/// Figure 4 (daemon side): 1 cluster from the shared daemon, 100 and 1,000
/// from fresh ones.
fn memory(
    rt: &tokio::runtime::Runtime,
    bins: &Bins,
    idle: Memory,
    after_load: Option<Memory>,
    report: &mut Report,
) -> Result<(), String> {
    println!("\n## 4. Daemon resident memory\n");
    println!(
        "`/proc/PID/status` of akscredd once every cluster is ready and 1 s has passed \
         (AKS-managed clusters, `many:N`: N kubeconfigs discovered through ARM, one \
         API-server token and one ARM token held). VmHWM is the peak since start.\n"
    );
    println!("| clusters | when | VmRSS | VmHWM | RssAnon | threads | load |");
    println!("|---|---|---|---|---|---|---|");
    let span = LoadSpan::start();
    memory_row(1, "idle", &idle, &span.end());
    if let Some(m) = after_load {
        memory_row(1, "after figure 3's load", &m, &span.end());
    }
    let mut rss_1000 = None;
    for n in [100usize, 1000] {
        let span = LoadSpan::start();
        let emu = rt
            .block_on(Emulator::start(Scenario::many_managed(n)))
            .map_err(|e| format!("cannot start the emulator: {e}"))?;
        let mut d = Daemon::start(bins, &emu, "", Layout::OneIdentity)?;
        d.wait_ready(Duration::from_secs(10))?;
        let all = d.wait_all_ready(Duration::from_millis(20), Duration::from_secs(60))?;
        std::thread::sleep(Duration::from_secs(1));
        let m = d.memory()?;
        memory_row(
            n,
            &format!("ready ({} after start)", dur(all)),
            &m,
            &span.end(),
        );
        if n == 1000 {
            rss_1000 = Some(m.rss_kib);
        }
    }
    if let Some(kib) = rss_1000 {
        report.budget(
            "4. daemon RSS < 20 MiB with 1,000 clusters",
            mib(kib),
            kib < 20 * 1024,
        );
    }
    Ok(())
}

fn token_requests(c: &Counters) -> u64 {
    c.token_v1 + c.token_v2
}

/// Figure 5.
fn cold_start(
    opts: &Options,
    rt: &tokio::runtime::Runtime,
    bins: &Bins,
    report: &mut Report,
) -> Result<(), String> {
    const N: usize = 100;
    println!("\n## 5. Cold start with {N} clusters\n");
    println!(
        "A fresh akscredd against the emulator (`many:{N}`: {N} AKS-managed clusters of one \
         tenant, discovered through ARM), {} runs. Times are from spawn: `READY=1` on \
         `NOTIFY_SOCKET`, the socket file's appearance, and the first `GET /v1/status` \
         (polled every 5 ms) with every cluster `ready`. Upstream requests are the \
         emulator's counters at that moment.\n",
        opts.cold_runs
    );
    let emu = rt
        .block_on(Emulator::start(Scenario::many_managed(N)))
        .map_err(|e| format!("cannot start the emulator: {e}"))?;
    println!(
        "| run | `READY=1` | socket | all tokens | realm | OIDC | token (v1/v2) | ARM | password grants | API-server token requests | load |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    let mut alls = Vec::new();
    let mut last = Counters::default();
    let mut aks_tokens_max = 0;
    for run in 1..=opts.cold_runs {
        emu.reset_counters();
        let span = LoadSpan::start();
        let mut d = Daemon::start(bins, &emu, "", Layout::OneIdentity)?;
        let (ready, socket) = d.wait_ready(Duration::from_secs(10))?;
        let all = d.wait_all_ready(Duration::from_millis(5), Duration::from_secs(30))?;
        let c = emu.counters();
        let aks = c.token_requests_for_resource(AKS_SERVER_APP_ID);
        aks_tokens_max = aks_tokens_max.max(aks);
        println!(
            "| {run} | {} | {} | {} | {} | {} | {} ({}/{}) | {} | {} | {aks} | {} |",
            dur(ready),
            dur(socket),
            dur(all),
            c.realm,
            c.oidc_discovery,
            token_requests(&c),
            c.token_v1,
            c.token_v2,
            c.arm,
            c.password_attempts(standard::ALICE),
            span.end()
        );
        alls.push(all);
        // Anything still on its way once status says ready?
        std::thread::sleep(Duration::from_millis(500));
        last = emu.counters();
        drop(d);
    }
    println!(
        "\nToken requests of the last run by grant and resource, 0.5 s after all were ready:\n"
    );
    println!("| grant | resource | requests |\n|---|---|---|");
    for ((grant, resource), n) in &last.token_grants {
        println!("| {grant} | `{resource}` | {n} |");
    }
    let s = Summary::new(alls);
    report.budget(
        "5. all tokens within 3 s of start (100 clusters)",
        format!(
            "median {}, worst {} of {} runs",
            dur(s.median()),
            dur(s.max()),
            s.len()
        ),
        s.max() <= Duration::from_secs(3),
    );
    report.budget(
        "5. 100 AKS-managed clusters of one tenant: one API-server token",
        format!("{aks_tokens_max} token request(s) for the AKS server app (worst run)"),
        aks_tokens_max == 1,
    );
    Ok(())
}

/// A GUID-shaped id, distinct per `i`.
fn guid(kind: u32, i: usize) -> String {
    format!("{kind:08x}-0000-4000-8000-{i:012x}")
}

/// Figure 6: `n` distinct tokens, all obtained together at start and so all
/// due together, twice: first as `n` legacy-AAD clusters of one identity
/// (one server app each, one shared client app), then as `n` identities
/// with one AKS-managed cluster each.
fn burst(
    opts: &Options,
    rt: &tokio::runtime::Runtime,
    bins: &Bins,
    report: &mut Report,
) -> Result<(), String> {
    let n = opts.burst_clusters;
    let lifetime = Duration::from_secs(opts.burst_lifetime);
    println!("\n## 6. Refresh burst: {n} distinct tokens due together\n");
    println!(
        "The emulator issues {}-second tokens; every token is obtained at start, so all \
         come due together. The emulator's token-request counter (v1 + v2) is sampled \
         every 50 ms; the busiest second is the largest increase over any 1-second window.",
        lifetime.as_secs()
    );

    // 6a: one identity, n legacy clusters, one client app.
    let mut scenario = Scenario::many_managed(n);
    for (i, c) in scenario.clusters.iter_mut().enumerate() {
        c.aad = ClusterAad::LegacyAad {
            server_id: guid(0x5e77e7, i),
            client_id: standard::LEGACY_CLIENT_ID.to_owned(),
        };
    }
    scenario.token_lifetime = lifetime;
    let emu = rt
        .block_on(Emulator::start(scenario))
        .map_err(|e| format!("cannot start the emulator: {e}"))?;
    println!(
        "\n### 6a. One identity, {n} legacy-AAD clusters sharing one client app\n\n\
         Each cluster has its own server app (resource `spn:<id>`, v1 endpoint), so {n} \
         distinct tokens, all from one refresh token (identity, tenant, client app). \
         The emulator rotates refresh tokens (each is good for one redemption), as \
         documented in `tests/src/directory.rs`.\n"
    );
    let run = BurstRun {
        n,
        lifetime,
        ready_timeout: Duration::from_secs(30),
        layout: Layout::OneIdentity,
        daemon_extra: "",
    };
    let peak = burst_run(bins, &emu, &run)?;
    report.line(
        format!("6a. (correctness) {n} legacy clusters sharing a client app, default settings"),
        match peak {
            Some(p) => format!("all ready; busiest second of the refresh: {p} token requests"),
            None => "not every cluster became ready within 30 s".into(),
        },
        if peak.is_some() { "ok" } else { "**FAILS**" },
    );
    drop(emu);

    // 6b: n identities, one managed cluster each.
    let mut scenario = Scenario::many_managed(n);
    let template = scenario
        .users
        .iter()
        .find(|u| u.upn == standard::ALICE)
        .cloned()
        .ok_or("the standard scenario has no alice")?;
    for i in 0..n {
        let mut u = template.clone();
        u.upn = harness::identity_upn(i);
        scenario.users.push(u);
    }
    scenario.token_lifetime = lifetime;
    let emu = rt
        .block_on(Emulator::start(scenario))
        .map_err(|e| format!("cannot start the emulator: {e}"))?;
    println!(
        "\n### 6b. {n} identities, one AKS-managed cluster each\n\n\
         {n} users of one tenant, each with its own cluster: {n} distinct API-server \
         tokens (and {n} ARM tokens, which are fetched on demand and not refreshed).\n"
    );
    let variants = [
        ("default `[daemon]` settings", ""),
        (
            "`refresh_before = \"1s\"`, so that the 70–80 % jittered plan applies to a short token",
            "refresh_before = \"1s\"",
        ),
    ];
    for (label, extra) in variants {
        emu.reset_counters();
        println!("\n#### {label}\n");
        let run = BurstRun {
            n,
            lifetime,
            ready_timeout: Duration::from_secs(120),
            layout: Layout::IdentityPerCluster,
            daemon_extra: extra,
        };
        let peak = burst_run(bins, &emu, &run)?;
        report.line(
            format!("6b. refresh burst, {n} tokens due together, {label}"),
            match peak {
                Some(p) => format!("busiest second: {p} token requests"),
                None => "not every cluster became ready".into(),
            },
            "no budget",
        );
    }
    Ok(())
}

struct BurstRun<'a> {
    n: usize,
    lifetime: Duration,
    /// Give up when not every cluster is ready this long after start.
    ready_timeout: Duration,
    layout: Layout,
    daemon_extra: &'a str,
}

/// Starts akscredd against `emu`, watches the cold start and the first
/// round of refreshes, prints the table and the timeline, and returns the
/// busiest second of the refresh phase (`None` when not every cluster
/// became ready).
fn burst_run(bins: &Bins, emu: &Emulator, run: &BurstRun<'_>) -> Result<Option<u64>, String> {
    let n = run.n;
    let span = LoadSpan::start();
    let mut d = Daemon::start(bins, emu, run.daemon_extra, run.layout)?;
    d.wait_ready(Duration::from_secs(10))?;
    let obs = observe(&mut d, emu, n, run.lifetime, run.ready_timeout);
    let load = span.end();
    let ready_label = obs
        .all_ready
        .map(|t| format!("all ready after {}", dur(t)))
        .unwrap_or_else(|| "not all ready".into());
    let split = obs.all_ready.unwrap_or(Duration::MAX);
    let series: Vec<(Duration, u64)> = obs
        .samples
        .iter()
        .map(|(t, c)| (*t, token_requests(c)))
        .collect();
    let (cold, mut refresh): (Vec<_>, Vec<_>) =
        series.iter().copied().partition(|(t, _)| *t <= split);
    if let Some(last_cold) = cold.last() {
        refresh.insert(0, *last_cold);
    }
    let last = &obs.samples.last().ok_or("no samples")?.1;
    let at_ready = count_at(
        &series,
        split.min(obs.samples.last().map_or(split, |s| s.0)),
    );
    let grants_at_ready = |grant: &str| {
        obs.samples
            .iter()
            .rev()
            .find(|(t, _)| *t <= split)
            .map(|(_, c)| c.grants_of_type(grant))
            .unwrap_or(0)
    };
    let (pw, rt) = (
        grants_at_ready("password"),
        grants_at_ready("refresh_token"),
    );
    let ready_count = d.ready_clusters().unwrap_or(0);
    if let Some(note) = &obs.note {
        println!("{note}\n");
    }
    println!(
        "| phase | token requests (password / refresh token) | busiest second | clusters ready at end | load |"
    );
    println!("|---|---|---|---|---|");
    println!(
        "| cold start ({ready_label}) | {at_ready} ({pw} / {rt}) | {} | | |",
        busiest(&cold),
    );
    if obs.all_ready.is_none() {
        println!("| (no refresh phase) | | | {ready_count} of {n} | {load} |");
        let log = d.log();
        let mut seen = std::collections::BTreeSet::new();
        let distinct: Vec<&str> = log
            .lines()
            .filter(|l| l.contains("WARN") || l.contains("ERROR"))
            .filter(|l| seen.insert(warning_kind(l)))
            .take(6)
            .collect();
        println!(
            "\nNot every cluster got a token, so the refresh phase cannot be measured. \
             One line of each kind of warning in akscredd's log:\n\n```\n{}\n```",
            distinct.join("\n")
        );
        return Ok(None);
    }
    let peak = busiest(&refresh);
    println!(
        "| refresh (after all ready) | {} ({} / {}) | **{peak}** | {ready_count} of {n} | {load} |",
        token_requests(last) - at_ready,
        last.grants_of_type("password") - pw,
        last.grants_of_type("refresh_token") - rt,
    );
    println!(
        "\nToken requests per second of the refresh phase (seconds since akscredd started):\n"
    );
    println!("```\n{}```", per_second(&refresh));
    Ok(Some(peak))
}

/// The part of a log line that says what happened, without the time and
/// the fields that differ between clusters.
fn warning_kind(line: &str) -> String {
    line.split_whitespace()
        .skip(2)
        .take_while(|w| !w.contains('='))
        .collect::<Vec<_>>()
        .join(" ")
}

struct Observation {
    samples: Vec<(Duration, Counters)>,
    all_ready: Option<Duration>,
    note: Option<String>,
}

/// Samples the emulator's counters every 50 ms from the daemon's start
/// until every cluster is ready and then `refreshes` more token requests
/// have been made followed by 3 quiet seconds, or until it is clear that
/// this will not happen.
fn observe(
    d: &mut Daemon,
    emu: &Emulator,
    refreshes: usize,
    lifetime: Duration,
    ready_timeout: Duration,
) -> Observation {
    let mut samples: Vec<(Duration, Counters)> = Vec::new();
    let started = d.started;
    let mut all_ready: Option<Duration> = None;
    let mut next_status = Instant::now();
    let deadline = started + Duration::from_secs(120) + lifetime * 2;
    let mut quiet_since: Option<Instant> = None;
    let mut note = None;
    loop {
        let now = Instant::now();
        samples.push((now - started, emu.counters()));
        if all_ready.is_none() && now >= next_status {
            next_status = now + Duration::from_millis(100);
            if d.ready_clusters().unwrap_or(0) == d.clusters {
                all_ready = Some(now - started);
            }
        }
        if let Some(ready) = all_ready {
            let total = token_requests(&samples[samples.len() - 1].1);
            let series: Vec<(Duration, u64)> = samples
                .iter()
                .map(|(t, c)| (*t, token_requests(c)))
                .collect();
            let moved = samples.len() > 1 && token_requests(&samples[samples.len() - 2].1) != total;
            if total >= count_at(&series, ready) + refreshes as u64 && !moved {
                let since = *quiet_since.get_or_insert(now);
                if now - since > Duration::from_secs(3) {
                    break;
                }
            } else {
                quiet_since = None;
            }
        }
        let too_late = all_ready.is_none() && now - started > ready_timeout;
        if now > deadline || too_late {
            note = Some(format!(
                "(stopped after {}: {})",
                dur(now - started),
                if all_ready.is_none() {
                    "not every cluster became ready"
                } else {
                    "fewer refreshes than tokens"
                }
            ));
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Observation {
        samples,
        all_ready,
        note,
    }
}

/// The count at the last sample taken at or before `t`.
fn count_at(series: &[(Duration, u64)], t: Duration) -> u64 {
    series
        .iter()
        .rev()
        .find(|(s, _)| *s <= t)
        .map(|(_, n)| *n)
        .unwrap_or(0)
}

/// The largest increase over any window of one second.
fn busiest(series: &[(Duration, u64)]) -> u64 {
    let mut best = 0;
    let mut j = 0;
    for i in 0..series.len() {
        while series[i].0 - series[j].0 > Duration::from_secs(1) {
            j += 1;
        }
        best = best.max(series[i].1 - series[j].1);
    }
    best
}

/// `  31 s  ####### 412` lines for every second with requests.
fn per_second(series: &[(Duration, u64)]) -> String {
    let mut bins: BTreeMap<u64, u64> = BTreeMap::new();
    for w in series.windows(2) {
        let d = w[1].1 - w[0].1;
        if d > 0 {
            *bins.entry(w[1].0.as_secs()).or_default() += d;
        }
    }
    let max = bins.values().copied().max().unwrap_or(1).max(1);
    let mut out = String::new();
    for (s, n) in bins {
        let bar = "#".repeat(((n * 50).div_ceil(max)) as usize);
        out.push_str(&format!("{s:>4} s  {n:>5}  {bar}\n"));
    }
    if out.is_empty() {
        out.push_str("(none)\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busiest_window() {
        let s = |v: &[(u64, u64)]| -> Vec<(Duration, u64)> {
            v.iter()
                .map(|(ms, n)| (Duration::from_millis(*ms), *n))
                .collect()
        };
        assert_eq!(
            busiest(&s(&[
                (0, 0),
                (500, 10),
                (1000, 30),
                (1500, 31),
                (3000, 100)
            ])),
            30
        );
        assert_eq!(busiest(&s(&[(0, 5)])), 0);
    }
}
