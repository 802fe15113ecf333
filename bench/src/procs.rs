//! Whole-process wall time, measured the way kubectl pays it: spawn, run,
//! read stdout through a pipe, reap. The commands run alternately (one round
//! runs each once, the order rotating every round), so a burst of load from
//! elsewhere on the machine hits all of them alike.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub struct Cmd {
    pub label: String,
    pub program: PathBuf,
    pub args: Vec<String>,
    /// Stdout must contain this for a run to count as a success.
    pub expect: Option<String>,
}

pub struct Timed {
    pub samples: Vec<Duration>,
    pub failures: usize,
    /// The first failure's stderr, to show in the report.
    pub first_failure: Option<String>,
}

fn command(c: &Cmd, env: &[(String, OsString)]) -> Command {
    let mut cmd = Command::new(&c.program);
    cmd.args(&c.args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null());
    cmd
}

fn run_once(c: &Cmd, env: &[(String, OsString)]) -> (Duration, Result<(), String>) {
    let mut cmd = command(c, env);
    let t = Instant::now();
    let out = cmd.output();
    let elapsed = t.elapsed();
    let verdict = match out {
        Err(e) => Err(format!("cannot run: {e}")),
        Ok(o) if !o.status.success() => Err(format!(
            "{}: {}",
            o.status,
            String::from_utf8_lossy(&o.stderr).trim()
        )),
        Ok(o) => match &c.expect {
            Some(want) if !String::from_utf8_lossy(&o.stdout).contains(want.as_str()) => {
                Err(format!(
                    "stdout lacks {want:?}: {}",
                    String::from_utf8_lossy(&o.stdout)
                ))
            }
            _ => Ok(()),
        },
    };
    (elapsed, verdict)
}

/// `warmup` untimed rounds, then `runs` timed rounds.
pub fn alternate(
    cmds: &[Cmd],
    env: &[(String, OsString)],
    warmup: usize,
    runs: usize,
) -> Vec<Timed> {
    let mut out: Vec<Timed> = cmds
        .iter()
        .map(|_| Timed {
            samples: Vec::with_capacity(runs),
            failures: 0,
            first_failure: None,
        })
        .collect();
    for round in 0..warmup + runs {
        for k in 0..cmds.len() {
            let i = (round + k) % cmds.len();
            let (elapsed, verdict) = run_once(&cmds[i], env);
            if round < warmup {
                continue;
            }
            match verdict {
                Ok(()) => out[i].samples.push(elapsed),
                Err(e) => {
                    out[i].failures += 1;
                    out[i].first_failure.get_or_insert(e);
                }
            }
        }
    }
    out
}

/// Peak RSS in KiB of one run, from GNU time's `%M` (the child's
/// `ru_maxrss`); the largest of `runs` runs.
pub fn peak_rss_kib(c: &Cmd, env: &[(String, OsString)], runs: usize) -> Result<u64, String> {
    let mut peak = 0;
    for _ in 0..runs {
        let out = Command::new("/usr/bin/time")
            .args(["-f", "maxrss=%M"])
            .arg(&c.program)
            .args(&c.args)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run /usr/bin/time: {e}"))?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        let kib: u64 = stderr
            .lines()
            .rev()
            .find_map(|l| l.strip_prefix("maxrss="))
            .and_then(|v| v.trim().parse().ok())
            .ok_or_else(|| format!("no maxrss from /usr/bin/time: {stderr}"))?;
        if !out.status.success() {
            return Err(format!("{} failed: {stderr}", c.label));
        }
        peak = peak.max(kib);
    }
    Ok(peak)
}
