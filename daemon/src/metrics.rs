//! `GET /metrics`: the daemon's health in the Prometheus text format
//! (version 0.0.4), for the jump host's monitoring.
//!
//! Counters and histograms live in one process-wide registry of atomics:
//! the code that sees an event (a refresh in the broker, a request in
//! `entra` or `aks`) adds to it with a one-line call, without a handle
//! threaded through every layer, and nothing on those paths takes a lock.
//! Gauges (clusters and identities by state, token lifetimes) are not
//! stored: they are read from the broker's status at scrape time, so they
//! can never disagree with `akscred status`.
//!
//! Labels are fixed words, except cluster names in the expiry gauge, which
//! are escaped as the format requires. No token, user name or tenant is
//! ever a label.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use akscred_proto::Status;

use crate::broker::BrokerError;
use crate::entra::EntraError;
use crate::entra::error::ErrorClass;

/// The upstream endpoints whose latency is measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upstream {
    /// `GET {login}/common/userrealm/{upn}`.
    Realm,
    /// The federation server's metadata exchange document (MEX).
    Mex,
    /// The WS-Trust username/password endpoint.
    WsTrust,
    /// The Entra ID token endpoint.
    Token,
    /// ARM's `listClusterUserCredential`.
    Arm,
}

const UPSTREAMS: [(Upstream, &str); 5] = [
    (Upstream::Realm, "realm"),
    (Upstream::Mex, "mex"),
    (Upstream::WsTrust, "wstrust"),
    (Upstream::Token, "token"),
    (Upstream::Arm, "arm"),
];

/// How an attempt ended: `ok`; `transient` (network, 5xx, 429: retried by
/// itself); `failed` (needs a person, or a change, before it can work).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    Transient,
    Failed,
}

const OUTCOMES: [(Outcome, &str); 3] = [
    (Outcome::Ok, "ok"),
    (Outcome::Transient, "transient"),
    (Outcome::Failed, "failed"),
];

/// Upper bounds of the latency buckets, in seconds: Entra ID answers in
/// 0.1-0.5 s, federation servers and ARM can take seconds, and the HTTP
/// client gives up at 30 s.
const BUCKETS: [f64; 10] = [0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

struct Histogram {
    /// Per bucket, not cumulative (summed when rendered); the last slot
    /// counts what is above every bound.
    buckets: [AtomicU64; BUCKETS.len() + 1],
    sum_micros: AtomicU64,
}

impl Histogram {
    const fn new() -> Histogram {
        Histogram {
            buckets: [const { AtomicU64::new(0) }; BUCKETS.len() + 1],
            sum_micros: AtomicU64::new(0),
        }
    }

    fn observe(&self, seconds: f64) {
        let slot = BUCKETS
            .iter()
            .position(|&bound| seconds <= bound)
            .unwrap_or(BUCKETS.len());
        self.buckets[slot].fetch_add(1, Ordering::Relaxed);
        // Whole microseconds: an atomic float would need a CAS loop.
        let micros = (seconds * 1e6).round().clamp(0.0, u64::MAX as f64) as u64;
        self.sum_micros.fetch_add(micros, Ordering::Relaxed);
    }
}

struct Registry {
    refreshes: [AtomicU64; OUTCOMES.len()],
    sign_ins: [AtomicU64; OUTCOMES.len()],
    credentials: [AtomicU64; 2],
    upstream: [Histogram; UPSTREAMS.len()],
}

static REGISTRY: Registry = Registry {
    refreshes: [const { AtomicU64::new(0) }; OUTCOMES.len()],
    sign_ins: [const { AtomicU64::new(0) }; OUTCOMES.len()],
    credentials: [const { AtomicU64::new(0) }; 2],
    upstream: [const { Histogram::new() }; UPSTREAMS.len()],
};

fn outcome_index(outcome: Outcome) -> usize {
    OUTCOMES
        .iter()
        .position(|(o, _)| *o == outcome)
        .unwrap_or(0)
}

/// One token acquisition for a slot (refresh token or sign-in), as the
/// broker's `fetch` ends.
pub fn refresh<T>(result: &Result<T, BrokerError>) {
    let outcome = match result {
        Ok(_) => Outcome::Ok,
        Err(e) if e.is_transient() => Outcome::Transient,
        Err(_) => Outcome::Failed,
    };
    REGISTRY.refreshes[outcome_index(outcome)].fetch_add(1, Ordering::Relaxed);
}

/// A sign-in with the identity's secret (password grant or federated
/// assertion). Passes the result through, so the call site stays one
/// expression.
pub fn sign_in<T>(result: Result<T, EntraError>) -> Result<T, EntraError> {
    let outcome = match &result {
        Ok(_) => Outcome::Ok,
        Err(e) if e.class() == ErrorClass::Transient => Outcome::Transient,
        Err(_) => Outcome::Failed,
    };
    REGISTRY.sign_ins[outcome_index(outcome)].fetch_add(1, Ordering::Relaxed);
    result
}

/// A credential request answered over the socket (`ok`) or refused.
pub fn credential(ok: bool) {
    REGISTRY.credentials[usize::from(!ok)].fetch_add(1, Ordering::Relaxed);
}

/// Times one upstream exchange: from this call until the guard is dropped
/// (`let _timer = metrics::upstream(Upstream::Token);` at the top of the
/// function that talks to it: every return path is measured).
#[must_use = "the exchange is measured until the guard is dropped"]
pub fn upstream(endpoint: Upstream) -> Timer {
    Timer {
        endpoint,
        started: Instant::now(),
    }
}

pub struct Timer {
    endpoint: Upstream,
    started: Instant,
}

impl Drop for Timer {
    fn drop(&mut self) {
        let i = UPSTREAMS
            .iter()
            .position(|(u, _)| *u == self.endpoint)
            .unwrap_or(0);
        REGISTRY.upstream[i].observe(self.started.elapsed().as_secs_f64());
    }
}

/// States the daemon reports, listed even at zero so a dashboard's series
/// exist before the first event.
const CLUSTER_STATES: [&str; 4] = ["ready", "pending", "error", "needs_attention"];
const IDENTITY_STATES: [&str; 4] = ["ok", "new", "error", "needs_attention"];

/// A label value: backslash, double quote and line feed escaped.
fn label(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// Counts by state: the known states first (zero included), then any
/// other the daemon reported, in order of first appearance.
fn by_state<'a>(out: &mut String, name: &str, known: &[&'a str], states: &[&'a str]) {
    let mut seen: Vec<&str> = known.to_vec();
    for s in states {
        if !seen.contains(s) {
            seen.push(s);
        }
    }
    for s in seen {
        let n = states.iter().filter(|x| **x == s).count();
        let _ = writeln!(out, "{name}{{state=\"{}\"}} {n}", label(s));
    }
}

/// The whole exposition: gauges from `status`, then the registry.
pub fn render(status: &Status) -> String {
    let mut out = String::with_capacity(4096);
    header(
        &mut out,
        "akscred_build_info",
        "gauge",
        "akscredd's version (always 1).",
    );
    let _ = writeln!(
        out,
        "akscred_build_info{{version=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION")
    );

    header(
        &mut out,
        "akscred_clusters",
        "gauge",
        "Configured clusters by state.",
    );
    let states: Vec<&str> = status.clusters.iter().map(|c| c.state.as_str()).collect();
    by_state(&mut out, "akscred_clusters", &CLUSTER_STATES, &states);

    header(
        &mut out,
        "akscred_identities",
        "gauge",
        "Configured identities by state.",
    );
    let states: Vec<&str> = status.identities.iter().map(|i| i.state.as_str()).collect();
    by_state(&mut out, "akscred_identities", &IDENTITY_STATES, &states);

    header(
        &mut out,
        "akscred_token_expiry_seconds",
        "gauge",
        "Seconds until the token a cluster uses expires (negative once expired).",
    );
    for c in &status.clusters {
        if let Some(s) = c.token_valid_for_secs {
            let _ = writeln!(
                out,
                "akscred_token_expiry_seconds{{cluster=\"{}\"}} {s}",
                label(&c.name)
            );
        }
    }

    header(
        &mut out,
        "akscred_refreshes_total",
        "counter",
        "Token acquisitions (refresh token or sign-in) by outcome.",
    );
    for (i, (_, name)) in OUTCOMES.iter().enumerate() {
        let n = REGISTRY.refreshes[i].load(Ordering::Relaxed);
        let _ = writeln!(out, "akscred_refreshes_total{{outcome=\"{name}\"}} {n}");
    }

    header(
        &mut out,
        "akscred_sign_ins_total",
        "counter",
        "Sign-ins with an identity's password by outcome.",
    );
    for (i, (_, name)) in OUTCOMES.iter().enumerate() {
        let n = REGISTRY.sign_ins[i].load(Ordering::Relaxed);
        let _ = writeln!(out, "akscred_sign_ins_total{{outcome=\"{name}\"}} {n}");
    }

    header(
        &mut out,
        "akscred_credential_requests_total",
        "counter",
        "ExecCredential requests answered, by outcome.",
    );
    for (i, name) in ["ok", "error"].iter().enumerate() {
        let n = REGISTRY.credentials[i].load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "akscred_credential_requests_total{{outcome=\"{name}\"}} {n}"
        );
    }

    let name = "akscred_upstream_request_duration_seconds";
    header(
        &mut out,
        name,
        "histogram",
        "Duration of requests to Entra ID, federation servers and ARM, by endpoint.",
    );
    for (i, (_, endpoint)) in UPSTREAMS.iter().enumerate() {
        let h = &REGISTRY.upstream[i];
        let mut cumulative = 0;
        for (j, bound) in BUCKETS.iter().enumerate() {
            cumulative += h.buckets[j].load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "{name}_bucket{{endpoint=\"{endpoint}\",le=\"{bound}\"}} {cumulative}"
            );
        }
        cumulative += h.buckets[BUCKETS.len()].load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "{name}_bucket{{endpoint=\"{endpoint}\",le=\"+Inf\"}} {cumulative}"
        );
        let sum = h.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum{{endpoint=\"{endpoint}\"}} {sum}");
        let _ = writeln!(out, "{name}_count{{endpoint=\"{endpoint}\"}} {cumulative}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use akscred_proto::{ClusterStatus, IdentityStatus};

    fn cluster(name: &str, state: &str, secs: Option<i64>) -> ClusterStatus {
        ClusterStatus {
            name: name.into(),
            identity: "alice".into(),
            state: state.into(),
            server: None,
            token_expires: None,
            token_valid_for_secs: secs,
            next_refresh: None,
            last_refresh: None,
            last_error: None,
        }
    }

    /// A strict reading of the text format: comments are HELP or TYPE of a
    /// metric family seen once, samples are `name{labels} value` of a family
    /// declared before, names and labels well formed, values numbers.
    fn check_exposition(text: &str) -> Result<usize, String> {
        let mut families: Vec<(String, String)> = Vec::new();
        let mut samples = 0;
        for (n, line) in text.lines().enumerate() {
            let at = |m: &str| format!("line {}: {m}: {line}", n + 1);
            if let Some(rest) = line.strip_prefix("# ") {
                let mut parts = rest.splitn(3, ' ');
                let (kw, name, tail) = (parts.next(), parts.next(), parts.next());
                let name = name.ok_or_else(|| at("comment without a name"))?;
                match (kw, tail) {
                    (Some("HELP"), Some(_)) => {}
                    (Some("TYPE"), Some(kind)) => {
                        if !["counter", "gauge", "histogram"].contains(&kind) {
                            return Err(at("unknown type"));
                        }
                        if families.iter().any(|(f, _)| f == name) {
                            return Err(at("family declared twice"));
                        }
                        families.push((name.to_owned(), kind.to_owned()));
                    }
                    _ => return Err(at("bad comment")),
                }
                continue;
            }
            let (series, value) = line.rsplit_once(' ').ok_or_else(|| at("no value"))?;
            if value != "+Inf" && value.parse::<f64>().is_err() {
                return Err(at("value is not a number"));
            }
            let (name, labels) = match series.split_once('{') {
                Some((name, rest)) => (
                    name,
                    rest.strip_suffix('}')
                        .ok_or_else(|| at("unclosed labels"))?,
                ),
                None => (series, ""),
            };
            if name.is_empty()
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
            {
                return Err(at("bad metric name"));
            }
            let family = families
                .iter()
                .find(|(f, kind)| {
                    name == f
                        || (kind == "histogram"
                            && [
                                format!("{f}_bucket"),
                                format!("{f}_sum"),
                                format!("{f}_count"),
                            ]
                            .iter()
                            .any(|s| s == name))
                })
                .ok_or_else(|| at("sample before its TYPE"))?;
            let _ = family;
            let mut rest = labels;
            while !rest.is_empty() {
                let (key, after) = rest.split_once("=\"").ok_or_else(|| at("bad label"))?;
                if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                    return Err(at("bad label name"));
                }
                let mut end = None;
                let mut escaped = false;
                for (i, c) in after.char_indices() {
                    match (escaped, c) {
                        (true, '\\' | '"' | 'n') => escaped = false,
                        (true, _) => return Err(at("bad escape")),
                        (false, '\\') => escaped = true,
                        (false, '"') => {
                            end = Some(i);
                            break;
                        }
                        (false, _) => {}
                    }
                }
                let end = end.ok_or_else(|| at("unterminated label value"))?;
                rest = &after[end + 1..];
                rest = rest.strip_prefix(',').unwrap_or(rest);
            }
            samples += 1;
        }
        Ok(samples)
    }

    #[test]
    fn exposition_is_well_formed_and_counts() {
        let status = Status {
            identities: vec![IdentityStatus {
                name: "alice".into(),
                username: "alice@contoso.com".into(),
                kind: "user".into(),
                state: "ok".into(),
                last_sign_in: None,
                warning: None,
                last_error: None,
            }],
            clusters: vec![
                cluster("prod", "ready", Some(3000)),
                cluster("odd \"name\"\\\n", "ready", Some(-5)),
                cluster("new", "pending", None),
                cluster("x", "refreshing", Some(10)),
            ],
        };
        credential(true);
        refresh::<()>(&Ok(()));
        {
            let _t = upstream(Upstream::Token);
        }
        let text = render(&status);
        let samples = check_exposition(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert!(samples > 60, "{text}");
        assert!(
            text.contains("akscred_clusters{state=\"ready\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("akscred_clusters{state=\"needs_attention\"} 0\n"),
            "{text}"
        );
        assert!(
            text.contains("akscred_clusters{state=\"refreshing\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("akscred_identities{state=\"ok\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("akscred_token_expiry_seconds{cluster=\"odd \\\"name\\\"\\\\\\n\"} -5\n"),
            "{text}"
        );
        assert!(
            text.contains(
                "akscred_upstream_request_duration_seconds_bucket{endpoint=\"arm\",le=\"+Inf\"} "
            ),
            "{text}"
        );
        // Other tests in this process add to the registry too: at least.
        let count = |prefix: &str| -> u64 {
            text.lines()
                .find_map(|l| l.strip_prefix(prefix))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0)
        };
        assert!(count("akscred_credential_requests_total{outcome=\"ok\"}") >= 1);
        assert!(count("akscred_refreshes_total{outcome=\"ok\"}") >= 1);
        assert!(count("akscred_upstream_request_duration_seconds_count{endpoint=\"token\"}") >= 1);
    }

    #[test]
    fn the_checker_refuses_what_prometheus_would() {
        for bad in [
            "akscred_x 1\n",
            "# TYPE a counter\na{l=\"x} 1\n",
            "# TYPE a counter\na{l=\"x\"} one\n",
            "# TYPE a counter\n# TYPE a counter\n",
            "# TYPE a summary\n",
            "# TYPE a gauge\na-b 1\n",
        ] {
            assert!(check_exposition(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn histogram_buckets_are_cumulative() {
        let h = Histogram::new();
        h.observe(0.01);
        h.observe(0.3);
        h.observe(100.0);
        assert_eq!(h.buckets[0].load(Ordering::Relaxed), 1);
        assert_eq!(h.buckets[4].load(Ordering::Relaxed), 1);
        assert_eq!(h.buckets[BUCKETS.len()].load(Ordering::Relaxed), 1);
        assert_eq!(h.sum_micros.load(Ordering::Relaxed), 100_310_000);
    }
}
