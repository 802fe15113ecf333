//! End to end for identities that are not a person's password: service
//! principals (secret, PEM certificate, PKCS#12 certificate), workload
//! identity, and a local-account cluster served by client certificate.
//! The real daemon, plugin and kubectl against the emulator.

mod support;

use std::path::Path;
use std::time::Duration;

use akscred_tests::scenario::{TOKEN_EXCHANGE_AUDIENCE, standard};
use akscred_tests::{Emulator, Scenario};
use support::{Daemon, kubectl, ok, start_daemon_custom};

fn cluster(table: &str, identity: &str, aks: &str) -> String {
    format!(
        "\n[clusters.{table}]\nidentity = \"{identity}\"\nsubscription = \"{}\"\nresource_group = \"{}\"\nname = \"{aks}\"\n",
        standard::SUBSCRIPTION,
        standard::RESOURCE_GROUP
    )
}

fn identity(name: &str, body: &str) -> String {
    format!(
        "\n[identities.{name}]\ncloud = \"emulator\"\ntenant = \"{}\"\n{body}",
        standard::TENANT_DOMAIN
    )
}

fn write(dir: &Path, name: &str, content: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, content).unwrap();
    path.display().to_string()
}

fn apps_daemon(emu: &Emulator, sp_secret: &str) -> Daemon {
    let federated = emu.issue_federated_token(
        standard::WORKLOAD_SUBJECT,
        TOKEN_EXCHANGE_AUDIENCE,
        Duration::from_secs(3600),
    );
    start_daemon_custom(emu, |dir| {
        let mut cfg = String::new();
        cfg += &identity(
            "sp",
            &format!(
                "client_id = \"{}\"\nclient_secret = {{ file = \"{}\" }}\n",
                standard::SP_SECRET_CLIENT_ID,
                write(dir, "sp.secret", sp_secret)
            ),
        );
        cfg += &identity(
            "sppem",
            &format!(
                "client_id = \"{}\"\ncertificate = {{ file = \"{}\" }}\n",
                standard::SP_CERT_CLIENT_ID,
                standard::SP_CERT_PEM_PATH
            ),
        );
        cfg += &identity(
            "spp12",
            &format!(
                "client_id = \"{}\"\ncertificate = {{ file = \"{}\" }}\ncertificate_password = {{ file = \"{}\" }}\n",
                standard::SP_CERT_CLIENT_ID,
                standard::SP_CERT_P12_PATH,
                write(dir, "p12.password", standard::SP_CERT_P12_PASSWORD)
            ),
        );
        cfg += &identity(
            "wi",
            &format!(
                "client_id = \"{}\"\nfederated_token_file = \"{}\"\n",
                standard::WORKLOAD_CLIENT_ID,
                write(dir, "azure-identity-token", &federated)
            ),
        );
        cfg += &identity(
            "alice",
            &format!(
                "username = \"{}\"\npassword = {{ file = \"{}\" }}\n",
                standard::ALICE,
                write(dir, "alice.password", standard::PASSWORD)
            ),
        );
        cfg += &cluster("sp-one", "sp", "aks-one");
        cfg += &cluster("pem-two", "sppem", "aks-two");
        cfg += &cluster("p12-legacy", "spp12", "aks-legacy");
        cfg += &cluster("wi-one", "wi", "aks-one");
        cfg += &cluster("local", "alice", standard::LOCAL_CLUSTER);
        cfg
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn every_identity_kind_gets_kubectl_working() {
    let emu = Emulator::start(Scenario::standard()).await.unwrap();
    let d = apps_daemon(&emu, standard::SP_SECRET);
    d.wait_ready(5);
    let kc = d.kubeconfig_file();
    let text = std::fs::read_to_string(&kc).unwrap();
    assert!(!text.contains("PRIVATE KEY"), "a kubeconfig holds no key");

    for (table, aks, client) in [
        ("sp-one", "aks-one", standard::SP_SECRET_CLIENT_ID),
        ("pem-two", "aks-two", standard::SP_CERT_CLIENT_ID),
        ("p12-legacy", "aks-legacy", standard::SP_CERT_CLIENT_ID),
        ("wi-one", "aks-one", standard::WORKLOAD_CLIENT_ID),
    ] {
        let out = ok(
            &kubectl(
                &kc,
                &["--context", table, "get", "namespaces", "-o", "name"],
            ),
            &format!("kubectl on {table}"),
        );
        assert!(out.contains(&format!("namespace/{aks}")), "{table}: {out}");
        assert!(
            emu.counters().apiserver_calls_by(aks, client) > 0,
            "{table}: the API server saw {client}"
        );
    }
    let c = emu.counters();
    for client in [
        standard::SP_SECRET_CLIENT_ID,
        standard::SP_CERT_CLIENT_ID,
        standard::WORKLOAD_CLIENT_ID,
    ] {
        assert!(c.client_credential_grants(client) >= 1, "{client}: {c:?}");
    }
    // Only alice (for ARM, to discover aks-local) ever sent a password.
    assert_eq!(c.password_attempts(standard::ALICE), 1, "{c:?}");

    // The local-account cluster: a client certificate, no token, and the
    // key only in the plugin's answer.
    let out = ok(
        &kubectl(
            &kc,
            &["--context", "local", "get", "namespaces", "-o", "name"],
        ),
        "kubectl on the local-account cluster",
    );
    assert!(out.contains("namespace/aks-local"), "{out}");
    let cred = ok(&d.akscred(&["token", "local"]), "akscred token local");
    let v: serde_json::Value = serde_json::from_str(&cred).unwrap();
    let status = &v["status"];
    assert!(status.get("token").is_none(), "{status}");
    assert!(
        status["clientCertificateData"]
            .as_str()
            .unwrap()
            .starts_with("-----BEGIN CERTIFICATE-----")
    );
    assert!(
        status["clientKeyData"]
            .as_str()
            .unwrap()
            .contains("PRIVATE KEY")
    );
    let expected = emu
        .local_account_credential(standard::LOCAL_CLUSTER)
        .unwrap()
        .not_after;
    let stamp = humantime::parse_rfc3339(status["expirationTimestamp"].as_str().unwrap()).unwrap();
    assert!(stamp <= expected && stamp + Duration::from_secs(120) >= expected);
    // Nothing the daemon wrote holds the key.
    for entry in std::fs::read_dir(d.dir.path()).unwrap() {
        let path = entry.unwrap().path();
        if let Ok(text) = std::fs::read_to_string(&path) {
            assert!(
                !text.contains("PRIVATE KEY"),
                "{} holds a key",
                path.display()
            );
        }
    }
    let status = d.wait_status("status", |v| v["identities"].as_array().is_some());
    let kinds: Vec<&str> = status["identities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["kind"].as_str().unwrap_or_default())
        .collect();
    assert!(kinds.contains(&"service_principal") && kinds.contains(&"workload_identity"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_client_secret_is_sent_once() {
    let emu = Emulator::start(Scenario::standard()).await.unwrap();
    let d = apps_daemon(&emu, "not-the-secret");
    for _ in 0..5 {
        let out = d.akscred(&["token", "sp-one"]);
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("7000215") && err.contains("akscred retry sp"),
            "{err}"
        );
        assert!(!err.contains("not-the-secret"), "{err}");
    }
    assert_eq!(
        emu.counters()
            .client_credential_grants(standard::SP_SECRET_CLIENT_ID),
        1
    );
    // The right secret in the source: picked up on the next look.
    std::fs::write(d.dir.path().join("sp.secret"), standard::SP_SECRET).unwrap();
    d.wait_status("sp ready", |v| {
        v["clusters"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| c["name"] == "sp-one" && c["state"] == "ready")
    });
    assert_eq!(
        emu.counters()
            .client_credential_grants(standard::SP_SECRET_CLIENT_ID),
        3,
        "the refused one, then ARM and the AKS token with the new secret"
    );
}
