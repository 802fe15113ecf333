//! What an operator touches, end to end with the real `akscredd`,
//! `akscred` and `kubectl`: merging into the kubeconfig they already have,
//! the errors `akscred token` prints, and `GET /metrics`.

mod support;

use std::collections::BTreeMap;

use akscred_tests::scenario::standard;
use akscred_tests::{Emulator, Scenario};
use support::{kubectl, ok, start_daemon, stderr};

/// A kubeconfig as kind, minikube and az leave it, with a stale entry of
/// the name akscred uses and keys only other tools read.
fn users_kubeconfig(stale_server: &str) -> String {
    format!(
        "\
apiVersion: v1
clusters:
- cluster:
    certificate-authority-data: QUJD
    server: https://127.0.0.1:1
  name: kind-kind
- cluster:
    server: {stale_server}
  name: aks-one
contexts:
- context:
    cluster: kind-kind
    namespace: \"0755\"
    user: kind-kind
  name: kind-kind
current-context: kind-kind
kind: Config
preferences:
  colors: true
users:
- name: kind-kind
  user:
    client-certificate-data: REVG
    client-key-data: R0hJ
- name: robot
  user:
    exec:
      apiVersion: client.authentication.k8s.io/v1beta1
      command: kubelogin
      args: [get-token, --server-id, \"6dae42f8\", --login, azurecli]
      env: null
      provideClusterInfo: false
extensions:
- name: tool
  extension: {{enabled: yes, retries: 010}}
"
    )
}

/// `kubectl config view --raw -o json`: how kubectl itself reads the file.
fn kubectl_view(path: &std::path::Path) -> serde_json::Value {
    let out = ok(
        &kubectl(path, &["config", "view", "--raw", "-o", "json"]),
        "kubectl config view",
    );
    serde_json::from_str(&out).expect("kubectl's JSON")
}

fn entries(view: &serde_json::Value, list: &str) -> BTreeMap<String, serde_json::Value> {
    view[list]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|e| (e["name"].as_str().unwrap_or("").to_owned(), e.clone()))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn merge_into_the_users_kubeconfig_as_kubectl_reads_it() {
    let emu = Emulator::start(Scenario::standard())
        .await
        .expect("emulator");
    let d = start_daemon(&emu, standard::PASSWORD, &["aks-one", "aks-two"]);
    d.wait_ready(2);
    let path = d.dir.path().join("config");
    std::fs::write(&path, users_kubeconfig("https://stale.example:443")).expect("write");
    let before = kubectl_view(&path);
    let file = path.to_str().expect("utf-8 path");

    let out = d.akscred(&["kubeconfig", "--merge", "--file", file]);
    let said = ok(&out, "akscred kubeconfig --merge");
    assert_eq!(
        said,
        format!("merged into {file}; added aks-two; updated aks-one\n")
    );
    let after = kubectl_view(&path);
    // Unrelated entries read, for kubectl, exactly as before.
    for list in ["clusters", "users", "contexts"] {
        let (b, a) = (entries(&before, list), entries(&after, list));
        for (name, entry) in &b {
            if name == "aks-one" {
                continue;
            }
            assert_eq!(a.get(name), Some(entry), "{list}/{name}");
        }
    }
    for key in ["current-context", "preferences", "extensions"] {
        assert_eq!(after[key], before[key], "{key}");
    }
    let text = std::fs::read_to_string(&path).expect("read");
    assert!(text.contains("enabled: yes"), "{text}");
    assert!(text.contains("retries: 010"), "{text}");

    // The merged contexts work, through the plugin, without switching.
    for c in ["aks-one", "aks-two"] {
        let out = ok(
            &kubectl(&path, &["--context", c, "get", "namespaces", "-o", "name"]),
            &format!("kubectl --context {c}"),
        );
        assert!(out.contains(&format!("namespace/{c}")), "{out}");
    }

    // Idempotent: the second run changes not a byte.
    let out = d.akscred(&["kubeconfig", "--merge", "--file", file]);
    assert_eq!(ok(&out, "second merge"), format!("{file} is up to date\n"));
    assert_eq!(std::fs::read_to_string(&path).expect("read"), text);

    // A dry run with --set-current shows the one line it would change.
    let out = d.akscred(&[
        "kubeconfig",
        "--merge",
        "--file",
        file,
        "--set-current",
        "aks-two",
        "--dry-run",
    ]);
    let diff = ok(&out, "dry run");
    assert!(
        diff.contains("\n-current-context: kind-kind\n+current-context: aks-two\n"),
        "{diff}"
    );
    assert_eq!(std::fs::read_to_string(&path).expect("read"), text);
    let out = d.akscred(&[
        "kubeconfig",
        "--merge",
        "--file",
        file,
        "--set-current",
        "aks-two",
    ]);
    ok(&out, "set-current");
    let current = ok(
        &kubectl(&path, &["config", "current-context"]),
        "kubectl config current-context",
    );
    assert_eq!(current, "aks-two\n");
    ok(
        &kubectl(&path, &["get", "namespaces"]),
        "kubectl on the current context",
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn every_token_error_says_what_to_do() {
    let emu = Emulator::start(Scenario::standard())
        .await
        .expect("emulator");

    // Daemon not running: the command that starts it.
    let dir = tempfile::tempdir().expect("tempdir");
    let out = std::process::Command::new(support::bin("akscred"))
        .args(["token", "aks-one"])
        .env("AKSCRED_SOCKET", dir.path().join("none.sock"))
        .output()
        .expect("akscred runs");
    assert_eq!(out.status.code(), Some(3));
    let err = stderr(&out);
    assert!(err.contains("akscredd is not running"), "{err}");
    assert!(
        err.contains("hint: start it with `systemctl --user start akscredd.socket`"),
        "{err}"
    );

    // Unknown cluster: the known ones.
    let d = start_daemon(&emu, "not the password", &["aks-one", "aks-two"]);
    let out = d.akscred(&["token", "aks-three"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    let err = stderr(&out);
    assert!(err.starts_with("akscred: "), "{err}");
    assert!(err.contains("aks-three"), "{err}");
    assert!(
        err.contains("\nhint: configured clusters: aks-one, aks-two\n"),
        "{err}"
    );

    // Identity needs attention: the reason and `akscred retry`.
    let out = d.akscred(&["token", "aks-one"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("needs attention"), "{err}");
    assert!(err.contains("50126"), "{err}");
    assert!(err.contains("akscred retry alice"), "{err}");
}

/// A strict line-by-line reading of the Prometheus text format (0.0.4),
/// independent of the daemon's code: every sample belongs to a family
/// declared by `# TYPE` before it, names and labels are well formed, values
/// are numbers, histograms have cumulative buckets ending in `+Inf` equal
/// to `_count`. Returns the samples by series.
fn parse_exposition(text: &str) -> BTreeMap<String, f64> {
    let mut types: BTreeMap<String, String> = BTreeMap::new();
    let mut samples = BTreeMap::new();
    let is_name = |s: &str| {
        !s.is_empty()
            && !s.starts_with(|c: char| c.is_ascii_digit())
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
    };
    for (i, line) in text.lines().enumerate() {
        let at = format!("line {}: {line}", i + 1);
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect(&at);
            assert!(is_name(name), "{at}");
            assert!(["counter", "gauge", "histogram"].contains(&kind), "{at}");
            assert!(
                types.insert(name.to_owned(), kind.to_owned()).is_none(),
                "{at}: declared twice"
            );
            continue;
        }
        if let Some(rest) = line.strip_prefix("# HELP ") {
            assert!(rest.split_once(' ').is_some(), "{at}");
            continue;
        }
        assert!(!line.starts_with('#') && !line.is_empty(), "{at}");
        let (series, value) = line.rsplit_once(' ').expect(&at);
        let value: f64 = value.parse().expect(&at);
        let name = series.split('{').next().unwrap_or("");
        assert!(is_name(name), "{at}");
        let family = [
            name,
            name.trim_end_matches("_bucket"),
            name.trim_end_matches("_sum"),
            name.trim_end_matches("_count"),
        ]
        .into_iter()
        .find(|f| types.contains_key(*f))
        .unwrap_or_else(|| panic!("{at}: no TYPE before it"));
        if family != name {
            assert_eq!(types[family], "histogram", "{at}");
        }
        if let Some(labels) = series.strip_prefix(name).filter(|l| !l.is_empty()) {
            let inner = labels
                .strip_prefix('{')
                .and_then(|l| l.strip_suffix('}'))
                .expect(&at);
            for pair in inner.split("\",").filter(|p| !p.is_empty()) {
                let (key, value) = pair.split_once("=\"").expect(&at);
                assert!(is_name(key), "{at}");
                assert!(!value.trim_end_matches('"').contains('\n'), "{at}");
            }
        }
        assert!(
            samples.insert(series.to_owned(), value).is_none(),
            "{at}: series twice"
        );
    }
    // Histograms: buckets cumulative, +Inf == _count.
    for (family, _) in types.iter().filter(|(_, k)| *k == "histogram") {
        let mut by_endpoint: BTreeMap<String, Vec<f64>> = BTreeMap::new();
        for (series, v) in &samples {
            if let Some(labels) = series.strip_prefix(&format!("{family}_bucket{{")) {
                let endpoint = labels.split(',').next().unwrap_or("").to_owned();
                by_endpoint.entry(endpoint).or_default().push(*v);
            }
        }
        for (endpoint, _) in by_endpoint {
            let le =
                |bound: &str| samples[&format!("{family}_bucket{{{endpoint},le=\"{bound}\"}}")];
            let count_key = format!("{family}_count{{{endpoint}}}");
            assert_eq!(le("+Inf"), samples[&count_key], "{endpoint}");
            assert!(le("0.1") <= le("1") && le("1") <= le("+Inf"), "{endpoint}");
        }
    }
    samples
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_are_prometheus_text_and_count_what_happened() {
    let emu = Emulator::start(Scenario::standard())
        .await
        .expect("emulator");
    let d = start_daemon(&emu, standard::PASSWORD, &["aks-one", "aks-two"]);
    d.wait_ready(2);
    let kc = d.kubeconfig_file();
    ok(
        &kubectl(&kc, &["--context", "aks-one", "get", "namespaces"]),
        "kubectl",
    );
    let out = d.akscred(&["token", "nope"]);
    assert!(!out.status.success());

    let (status, text) = d.get("/metrics");
    assert_eq!(status, 200, "{text}");
    let m = parse_exposition(&text);
    let get = |series: &str| {
        *m.get(series)
            .unwrap_or_else(|| panic!("no {series} in\n{text}"))
    };
    assert_eq!(get("akscred_clusters{state=\"ready\"}"), 2.0);
    assert_eq!(get("akscred_clusters{state=\"needs_attention\"}"), 0.0);
    assert_eq!(get("akscred_identities{state=\"ok\"}"), 1.0);
    for c in ["aks-one", "aks-two"] {
        let left = get(&format!("akscred_token_expiry_seconds{{cluster=\"{c}\"}}"));
        assert!(left > 60.0 && left <= 86_400.0, "{c}: {left}");
    }
    assert!(get("akscred_sign_ins_total{outcome=\"ok\"}") >= 2.0);
    assert_eq!(get("akscred_sign_ins_total{outcome=\"failed\"}"), 0.0);
    assert!(get("akscred_refreshes_total{outcome=\"ok\"}") >= 2.0);
    assert!(get("akscred_credential_requests_total{outcome=\"ok\"}") >= 1.0);
    assert!(get("akscred_credential_requests_total{outcome=\"error\"}") >= 1.0);
    for endpoint in ["realm", "token", "arm"] {
        let n = get(&format!(
            "akscred_upstream_request_duration_seconds_count{{endpoint=\"{endpoint}\"}}"
        ));
        assert!(n >= 1.0, "{endpoint}: {n}\n{text}");
    }
    assert_eq!(
        get("akscred_upstream_request_duration_seconds_count{endpoint=\"wstrust\"}"),
        0.0
    );
}
