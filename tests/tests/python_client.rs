//! The official Kubernetes client for Python (`kubernetes` on PyPI) loads
//! the kubeconfig `akscred kubeconfig` writes and lists namespaces on the
//! emulator through the akscred plugin. Not a skip when the package is
//! missing: a failure that says how to install it (.ci/run does).

mod support;

use std::process::Command;

use akscred_tests::scenario::standard;
use akscred_tests::{Emulator, Scenario};

#[tokio::test(flavor = "multi_thread")]
async fn python_kubernetes_client_lists_namespaces_through_the_plugin() {
    let python = support::on_path("python3").expect("python3 is not on PATH");
    let probe = Command::new(&python)
        .args(["-c", "import kubernetes; print(kubernetes.__version__)"])
        .output()
        .expect("python3 runs");
    assert!(
        probe.status.success(),
        "the Python package `kubernetes` is missing: install it with `python3 -m pip install kubernetes` (.ci/run does)\n{}",
        String::from_utf8_lossy(&probe.stderr)
    );

    let emu = Emulator::start(Scenario::standard())
        .await
        .expect("emulator");
    let d = support::start_daemon(&emu, standard::PASSWORD, &["aks-one", "aks-legacy"]);
    let kubeconfig = d.kubeconfig_file();
    let script = support::repo().join("tests/python/list_namespaces.py");
    for cluster in ["aks-one", "aks-legacy"] {
        let out = Command::new(&python)
            .arg(&script)
            .arg(&kubeconfig)
            .arg(cluster)
            .env_remove("AKSCRED_SOCKET")
            .env_remove("KUBECONFIG")
            .output()
            .expect("python3 runs");
        let names = support::ok(&out, &format!("list_namespaces.py on {cluster}"));
        let names: Vec<&str> = names.lines().collect();
        // Each emulated cluster has a namespace named after itself: the
        // answer came from the right API server, with a token it accepted.
        assert!(names.contains(&cluster), "{cluster}: {names:?}");
        assert!(names.contains(&"kube-system"), "{cluster}: {names:?}");
    }
}
