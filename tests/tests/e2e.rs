//! End to end: the real `akscredd` binary against the emulator, the real
//! `kubectl` running the real `akscred` plugin.
//!
//! The binaries of the other packages are found next to this package's own
//! (`target/debug`); `scripts/test.sh` builds them before the tests run.

mod support;

use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use akscred_tests::scenario::standard;
use akscred_tests::{Emulator, Scenario};
use support::{Daemon, bin, kubectl, ok, start_daemon_custom};

struct Identity<'a> {
    name: &'a str,
    upn: &'a str,
    password: &'a str,
}

const ALICE: Identity = Identity {
    name: "alice",
    upn: standard::ALICE,
    password: standard::PASSWORD,
};

/// A daemon for `identities`, each with its clusters (emulator names, found
/// through ARM); `extra` is appended to the config (more cluster tables).
fn start_daemon_with(emu: &Emulator, identities: &[(&Identity, &[String])], extra: &str) -> Daemon {
    let d = start_daemon_custom(emu, |dir| {
        let mut cfg = String::new();
        for (id, clusters) in identities {
            let pw = dir.join(format!("{}.password", id.name));
            std::fs::write(&pw, format!("{}\n", id.password)).unwrap();
            cfg.push_str(&format!(
                "\n[identities.{}]\ncloud = \"emulator\"\ntenant = \"{}\"\nusername = \"{}\"\npassword = {{ file = \"{}\" }}\n",
                id.name,
                standard::TENANT_DOMAIN,
                id.upn,
                pw.display()
            ));
            for c in clusters.iter() {
                cfg.push_str(&format!(
                    "\n[clusters.{c}]\nidentity = \"{}\"\nsubscription = \"{}\"\nresource_group = \"{}\"\nname = \"{c}\"\n",
                    id.name,
                    standard::SUBSCRIPTION,
                    standard::RESOURCE_GROUP,
                ));
            }
        }
        cfg.push_str(extra);
        cfg
    });
    let check = std::process::Command::new(bin("akscredd"))
        .args(["check-config", "--config"])
        .arg(d.dir.path().join("config.toml"))
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "check-config: {}",
        String::from_utf8_lossy(&check.stderr)
    );
    d
}

fn start_daemon(emu: &Emulator, identities: &[(&Identity, &[String])]) -> Daemon {
    start_daemon_with(emu, identities, "")
}

trait DaemonExt {
    fn kubeconfig(&self) -> PathBuf;
    fn kubeconfig_or_skeleton(&self) -> PathBuf;
}

impl DaemonExt for Daemon {
    /// The kubeconfig `akscred kubeconfig` prints, written to a file.
    fn kubeconfig(&self) -> PathBuf {
        let out = self.akscred(&["kubeconfig"]);
        let text = ok(&out, "akscred kubeconfig");
        let path = self.dir.path().join("kubeconfig");
        std::fs::write(&path, text).unwrap();
        path
    }

    /// With a wrong password ARM cannot be asked for the server, so build
    /// the kubeconfig by hand: the exec stanza is all this test needs.
    fn kubeconfig_or_skeleton(&self) -> PathBuf {
        let path = self.dir.path().join("kubeconfig");
        let yaml = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: https://127.0.0.1:1\n    insecure-skip-tls-verify: true\nusers:\n- name: u\n  user:\n    exec:\n      apiVersion: client.authentication.k8s.io/v1\n      command: {}\n      args: [token, aks-one]\n      interactiveMode: Never\n      env:\n      - name: AKSCRED_SOCKET\n        value: {}\ncontexts:\n- name: aks-one\n  context: {{cluster: c, user: u}}\ncurrent-context: aks-one\n",
            bin("akscred").display(),
            self.socket.display()
        );
        std::fs::write(&path, yaml).unwrap();
        path
    }
}

fn names(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn kubectl_works_on_all_three_clusters_in_both_exec_versions() {
    let emu = Emulator::start(Scenario::standard()).await.unwrap();
    let clusters = names(&["aks-one", "aks-two", "aks-legacy"]);
    let d = start_daemon(&emu, &[(&ALICE, &clusters)]);
    let v1 = d.kubeconfig();
    let text = std::fs::read_to_string(&v1).unwrap();
    assert!(text.contains("client.authentication.k8s.io/v1\n"), "{text}");
    assert!(
        !text.contains("eyJ"),
        "a kubeconfig must hold no token: {text}"
    );
    let v1beta1 = d.dir.path().join("kubeconfig-v1beta1");
    std::fs::write(
        &v1beta1,
        text.replace(
            "apiVersion: client.authentication.k8s.io/v1\n",
            "apiVersion: client.authentication.k8s.io/v1beta1\n",
        ),
    )
    .unwrap();

    for kc in [&v1, &v1beta1] {
        for c in &clusters {
            let out = ok(
                &kubectl(kc, &["--context", c, "get", "namespaces", "-o", "name"]),
                &format!("kubectl get namespaces on {c} with {}", kc.display()),
            );
            // Each emulated cluster has a namespace named after itself: the
            // answer came from the right API server.
            assert!(out.contains(&format!("namespace/{c}")), "{c}: {out}");
            assert!(out.contains("namespace/kube-system"), "{c}: {out}");
            let version = ok(
                &kubectl(kc, &["--context", c, "version", "-o", "json"]),
                &format!("kubectl version on {c}"),
            );
            let v: serde_json::Value = serde_json::from_str(&version).unwrap();
            assert!(v["serverVersion"]["gitVersion"].is_string(), "{version}");
        }
    }

    // The plugin answers in the apiVersion kubectl asked for.
    for api in [
        "client.authentication.k8s.io/v1",
        "client.authentication.k8s.io/v1beta1",
    ] {
        let info = format!(
            r#"{{"apiVersion":"{api}","kind":"ExecCredential","spec":{{"interactive":false}}}}"#
        );
        let out = d.akscred_exec(&["token", "aks-one"], Some(&info));
        let body = ok(&out, "akscred token");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["apiVersion"], api);
        assert_eq!(v["kind"], "ExecCredential");
        assert!(v["status"]["token"].as_str().unwrap().starts_with("eyJ"));
        assert!(
            out.stderr.is_empty(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    // aks-one and aks-two share the AKS server id: one password sign-in for
    // ARM, one for the AKS client (both managed clusters), one for the
    // legacy cluster's own client. Refresh tokens are never needed here.
    let counters = emu.counters();
    assert_eq!(
        counters.password_attempts(standard::ALICE),
        3,
        "{counters:?}"
    );

    let status = d.wait_status("all clusters ready", |v| {
        v["clusters"]
            .as_array()
            .is_some_and(|c| c.iter().all(|c| c["state"] == "ready"))
    });
    assert_eq!(status["clusters"].as_array().unwrap().len(), 3);
    let table = d.akscred(&["status"]);
    let table = ok(&table, "akscred status");
    assert!(
        table.contains("aks-legacy") && table.contains("ready"),
        "{table}"
    );
}

/// The client as `scripts/release.sh` ships it, linked static-pie: kubectl
/// works through it, and it really needs no loader (what the benchmark's
/// figure 1 relies on).
#[tokio::test(flavor = "multi_thread")]
async fn the_static_pie_client_serves_kubectl() {
    let client = support::static_client();
    assert!(
        !support::needs_dynamic_loader(&client),
        "{} asks for ld.so: it was not linked static",
        client.display()
    );
    // The check itself can tell: the ordinary build does need the loader.
    assert!(support::needs_dynamic_loader(&bin("akscred")));

    let emu = Emulator::start(Scenario::standard()).await.unwrap();
    let d = start_daemon(&emu, &[(&ALICE, &names(&["aks-one", "aks-legacy"]))]);
    let out = std::process::Command::new(&client)
        .arg("kubeconfig")
        .env("AKSCRED_SOCKET", &d.socket)
        .output()
        .unwrap();
    let text = ok(&out, "static akscred kubeconfig");
    assert!(
        text.contains(&format!("command: \"{}\"", client.display())),
        "the kubeconfig must run the client that wrote it: {text}"
    );
    let kc = d.dir.path().join("kubeconfig-static");
    std::fs::write(&kc, text).unwrap();
    for c in ["aks-one", "aks-legacy"] {
        let out = ok(
            &kubectl(&kc, &["--context", c, "get", "namespaces", "-o", "name"]),
            &format!("kubectl get namespaces on {c} through the static client"),
        );
        assert!(out.contains(&format!("namespace/{c}")), "{c}: {out}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_password_is_sent_once_and_never_again() {
    let emu = Emulator::start(Scenario::standard()).await.unwrap();
    let wrong = Identity {
        name: "alice",
        upn: standard::ALICE,
        password: "not the password",
    };
    let d = start_daemon(&emu, &[(&wrong, &names(&["aks-one", "aks-two"]))]);
    let kc = d.kubeconfig_or_skeleton();
    for _ in 0..5 {
        let out = kubectl(&kc, &["--context", "aks-one", "get", "namespaces"]);
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("needs attention") && err.contains("akscred retry alice"),
            "{err}"
        );
        let out = d.akscred(&["token", "aks-two"]);
        assert!(!out.status.success() && out.stdout.is_empty());
    }
    assert_eq!(emu.counters().password_attempts(standard::ALICE), 1);
    let status = d.wait_status("needs_attention", |v| {
        v["identities"][0]["state"] == "needs_attention"
    });
    assert!(
        status["identities"][0]["last_error"]["message"]
            .as_str()
            .unwrap()
            .contains("50126"),
        "{status}"
    );
    // Status exits non-zero when a cluster is not ready.
    assert!(!d.akscred(&["status"]).status.success());

    // The operator fixes the password and says so: one more attempt, which works.
    std::fs::write(d.dir.path().join("alice.password"), standard::PASSWORD).unwrap();
    ok(&d.akscred(&["retry", "alice"]), "akscred retry");
    let kc = d.kubeconfig();
    ok(
        &kubectl(&kc, &["--context", "aks-one", "get", "namespaces"]),
        "kubectl after retry",
    );
    assert_eq!(emu.counters().password_attempts(standard::ALICE), 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn fifty_managed_clusters_cost_one_api_server_token() {
    let emu = Emulator::start(Scenario::many_managed(50)).await.unwrap();
    let clusters: Vec<String> = (0..50)
        .map(|i| emu.scenario().clusters[i].name.clone())
        .collect();
    let d = start_daemon(&emu, &[(&ALICE, &clusters)]);
    d.wait_status("50 clusters ready", |v| {
        v["clusters"]
            .as_array()
            .is_some_and(|c| c.len() == 50 && c.iter().all(|c| c["state"] == "ready"))
    });
    let kc = d.kubeconfig();
    for c in [&clusters[0], &clusters[49]] {
        ok(
            &kubectl(&kc, &["--context", c, "get", "namespaces", "-o", "name"]),
            "kubectl",
        );
    }
    let counters = emu.counters();
    assert_eq!(
        counters.token_requests_for_resource(akscred_tests::scenario::AKS_SERVER_APP_ID),
        1,
        "{counters:?}"
    );
    assert_eq!(counters.arm_requests(), 50, "{counters:?}");
}

/// Five minutes of 60-second tokens through the real daemon: every answer
/// of `akscred token` is accepted by the API server, refresh tokens carry
/// it, and the password is sent once. `AKSCRED_SOAK_SECS` shortens it for
/// local runs; CI runs the full five minutes.
#[tokio::test(flavor = "multi_thread")]
async fn sixty_second_tokens_stay_valid_for_five_minutes() {
    let secs: u64 = std::env::var("AKSCRED_SOAK_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    let mut scenario = Scenario::standard();
    scenario.token_lifetime = Duration::from_secs(60);
    let emu = Emulator::start(scenario).await.unwrap();
    // Imported from a kubeconfig: no ARM, so one client and one password.
    let kdir = tempfile::tempdir().unwrap();
    let imported = kdir.path().join("aks-one.yaml");
    std::fs::write(&imported, emu.kubeconfig_for("aks-one", None).unwrap()).unwrap();
    let extra = format!(
        "\n[clusters.aks-one]\nidentity = \"alice\"\nkubeconfig = \"{}\"\n",
        imported.display()
    );
    let d = start_daemon_with(&emu, &[(&ALICE, &[])], &extra);
    let kc = d.kubeconfig();
    let server = emu.cluster_server("aks-one").unwrap();
    // The daemon's own HTTP client, trusting the emulator's CA.
    let http = akscredd::http::build_client(Some(&d.dir.path().join("ca.pem"))).unwrap();

    let start = Instant::now();
    let mut checks = 0;
    let mut tokens = std::collections::HashSet::new();
    while start.elapsed() < Duration::from_secs(secs) {
        let out = d.akscred(&["token", "aks-one"]);
        let body = ok(&out, "akscred token");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        let token = v["status"]["token"].as_str().unwrap().to_string();
        let expiry =
            humantime::parse_rfc3339(v["status"]["expirationTimestamp"].as_str().unwrap()).unwrap();
        assert!(
            expiry > SystemTime::now(),
            "an expired credential was handed out: {body}"
        );
        let answer = http
            .get(format!("{server}/api/v1/namespaces"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(
            answer.status(),
            200,
            "the API server refused a token akscred served"
        );
        tokens.insert(token);
        if checks % 10 == 0 {
            ok(
                &kubectl(
                    &kc,
                    &["--context", "aks-one", "get", "namespaces", "-o", "name"],
                ),
                "kubectl",
            );
        }
        checks += 1;
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let c = emu.counters();
    assert_eq!(c.password_attempts(standard::ALICE), 1, "{c:?}");
    let refreshes = c.grants_of_type("refresh_token");
    // A refresh at about half of each 60 s token's life.
    assert!(
        refreshes >= secs / 40,
        "{refreshes} refreshes in {secs} s: {c:?}"
    );
    assert!(
        tokens.len() as u64 >= secs / 40,
        "{} distinct tokens",
        tokens.len()
    );
}

/// `POST /v1/reload` on the socket.
fn reload(d: &Daemon) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::os::unix::net::UnixStream::connect(&d.socket).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        s,
        "POST /v1/reload HTTP/1.1\r\nHost: akscred\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let status = raw
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, raw)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reload_adds_clusters_without_a_new_sign_in_and_a_bad_one_changes_nothing() {
    let emu = Emulator::start(Scenario::standard()).await.unwrap();
    let d = start_daemon(&emu, &[(&ALICE, &names(&["aks-one"]))]);
    ok(&d.akscred(&["token", "aks-one"]), "token before the reload");
    let before = emu.counters().password_attempts(standard::ALICE);
    assert_eq!(before, 2, "ARM and the AKS client");

    let config = d.dir.path().join("config.toml");
    let good = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        format!(
            "{good}\n[clusters.aks-two]\nidentity = \"alice\"\nsubscription = \"{}\"\nresource_group = \"{}\"\nname = \"aks-two\"\n",
            standard::SUBSCRIPTION,
            standard::RESOURCE_GROUP
        ),
    )
    .unwrap();
    let (status, body) = reload(&d);
    assert_eq!(status, 200, "{body}");
    d.wait_status("two clusters ready", |v| {
        v["clusters"]
            .as_array()
            .is_some_and(|c| c.len() == 2 && c.iter().all(|c| c["state"] == "ready"))
    });
    ok(
        &d.akscred(&["token", "aks-two"]),
        "token for the new cluster",
    );
    // The identity, its refresh tokens and the shared AKS token carried over.
    assert_eq!(emu.counters().password_attempts(standard::ALICE), before);

    std::fs::write(&config, "[daemon\nbroken").unwrap();
    let (status, body) = reload(&d);
    assert_eq!(status, 422, "{body}");
    assert!(
        body.contains("config.toml:1:"),
        "the error names file and line: {body}"
    );
    ok(
        &d.akscred(&["token", "aks-two"]),
        "the running config still serves",
    );
}
