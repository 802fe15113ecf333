//! End to end for federated identities: the real `akscredd` signs a
//! `fabrikam.com` user in through the emulated AD FS (MEX, WS-Trust, SAML
//! bearer grant) and the real `kubectl` runs through the real `akscred`
//! plugin. The harness is the one of `e2e.rs`, cut down.
//!
//! Needs the binaries of the other packages (`cargo build --workspace
//! --bins`, which `scripts/test.sh` runs first) and `kubectl` on `PATH`.

mod support;

use std::path::PathBuf;

use akscred_tests::scenario::standard;
use akscred_tests::{AdfsFault, Emulator, MexOffer, SamlVersion, Scenario};
use support::{Daemon, bin, kubectl, ok, start_daemon_custom};

const SAML11: &str = "urn:ietf:params:oauth:grant-type:saml1_1-bearer";
const SAML2: &str = "urn:ietf:params:oauth:grant-type:saml2-bearer";

/// Starts akscredd with one identity, `bob`, signing in as `upn` with
/// `password` (from a file), for `clusters` of the emulator.
fn start_daemon(emu: &Emulator, upn: &str, password: &str, clusters: &[&str]) -> Daemon {
    start_daemon_custom(emu, |dir| {
        let pw = dir.join("bob.password");
        std::fs::write(&pw, format!("{password}\n")).unwrap();
        let mut cfg = format!(
            "\n[identities.bob]\ncloud = \"emulator\"\ntenant = \"{}\"\nusername = \"{upn}\"\npassword = {{ file = \"{}\" }}\n",
            standard::TENANT_DOMAIN,
            pw.display(),
        );
        for c in clusters {
            cfg.push_str(&format!(
                "\n[clusters.{c}]\nidentity = \"bob\"\nsubscription = \"{}\"\nresource_group = \"{}\"\nname = \"{c}\"\n",
                standard::SUBSCRIPTION,
                standard::RESOURCE_GROUP,
            ));
        }
        cfg
    })
}

trait FederatedDaemon {
    fn kubeconfig(&self) -> PathBuf;
    fn skeleton_kubeconfig(&self, cluster: &str) -> PathBuf;
}

impl FederatedDaemon for Daemon {
    fn kubeconfig(&self) -> PathBuf {
        let out = self.akscred(&["kubeconfig"]);
        let text = ok(&out, "akscred kubeconfig");
        let path = self.dir.path().join("kubeconfig");
        std::fs::write(&path, text).unwrap();
        path
    }

    /// Without a sign-in ARM cannot be asked for the server, so the
    /// kubeconfig is built by hand: the exec stanza is all that matters.
    fn skeleton_kubeconfig(&self, cluster: &str) -> PathBuf {
        let path = self.dir.path().join("kubeconfig-skeleton");
        let yaml = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: https://127.0.0.1:1\n    insecure-skip-tls-verify: true\nusers:\n- name: u\n  user:\n    exec:\n      apiVersion: client.authentication.k8s.io/v1\n      command: {}\n      args: [token, {cluster}]\n      interactiveMode: Never\n      env:\n      - name: AKSCRED_SOCKET\n        value: {}\ncontexts:\n- name: {cluster}\n  context: {{cluster: c, user: u}}\ncurrent-context: {cluster}\n",
            bin("akscred").display(),
            self.socket.display()
        );
        std::fs::write(&path, yaml).unwrap();
        path
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn kubectl_works_for_a_federated_identity_through_both_wstrust_and_saml_versions() {
    let emu = Emulator::start(Scenario::standard()).await.unwrap();
    let clusters = ["aks-one", "aks-two", "aks-legacy"];
    for (offer, version) in [(MexOffer::Both, "1.3"), (MexOffer::Only2005, "2005")] {
        for (saml, grant) in [(SamlVersion::Saml11, SAML11), (SamlVersion::Saml20, SAML2)] {
            let what = format!("WS-Trust {version}, {saml:?}");
            emu.set_mex_offer(offer);
            emu.set_saml_version(saml);
            emu.reset_counters();
            let d = start_daemon(&emu, standard::BOB, standard::FEDERATED_PASSWORD, &clusters);
            d.wait_status(&format!("{what}: all clusters ready"), |v| {
                v["clusters"]
                    .as_array()
                    .is_some_and(|c| c.iter().all(|c| c["state"] == "ready"))
            });
            let kc = d.kubeconfig();
            for c in clusters {
                let out = ok(
                    &kubectl(&kc, &["--context", c, "get", "namespaces", "-o", "name"]),
                    &format!("{what}: kubectl get namespaces on {c}"),
                );
                assert!(out.contains(&format!("namespace/{c}")), "{what} {c}: {out}");
                let c_counters = emu.counters();
                assert!(
                    c_counters.apiserver_calls_by(c, standard::BOB) > 0,
                    "{what}: {c} saw bob: {c_counters:?}"
                );
            }
            let c = emu.counters();
            let wstrust = c.wstrust_requests(standard::BOB);
            assert!(wstrust >= 1, "{what}: {c:?}");
            assert_eq!(
                c.wstrust_by_version.get(version).copied(),
                Some(wstrust),
                "{what}: every request went to the {version} endpoint: {c:?}"
            );
            // One WS-Trust request per SAML grant: nothing retried.
            assert_eq!(c.grants_of_type(grant), wstrust, "{what}: {c:?}");
            assert_eq!(c.wstrust_failures(standard::BOB), 0, "{what}: {c:?}");
            assert_eq!(
                c.password_attempts(standard::BOB),
                0,
                "{what}: no ROPC: {c:?}"
            );
            let log = d.log();
            assert!(!log.contains(standard::FEDERATED_PASSWORD), "{log}");
            assert!(
                !log.contains("saml:Assertion") && !log.contains("<Assertion"),
                "{log}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn metadata_that_breaks_msal_or_is_missing_still_gets_kubectl_working() {
    let emu = Emulator::start(Scenario::standard()).await.unwrap();
    for offer in [MexOffer::PaddedInEnvelope, MexOffer::Unavailable] {
        emu.set_mex_offer(offer);
        emu.reset_counters();
        let d = start_daemon(
            &emu,
            standard::BOB,
            standard::FEDERATED_PASSWORD,
            &["aks-one"],
        );
        d.wait_status(&format!("{offer:?}: ready"), |v| {
            v["clusters"][0]["state"] == "ready"
        });
        let kc = d.kubeconfig();
        ok(
            &kubectl(&kc, &["--context", "aks-one", "get", "namespaces"]),
            &format!("{offer:?}: kubectl"),
        );
        if offer == MexOffer::Unavailable {
            assert!(
                d.log()
                    .contains("falling back to the user realm's federation_active_auth_url"),
                "the fallback is logged: {}",
                d.log()
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_federated_password_is_sent_once_and_named_in_the_status() {
    let emu = Emulator::start(Scenario::standard()).await.unwrap();
    let d = start_daemon(
        &emu,
        standard::BOB,
        "not the password",
        &["aks-one", "aks-two"],
    );
    let kc = d.skeleton_kubeconfig("aks-one");
    for _ in 0..5 {
        let out = kubectl(&kc, &["--context", "aks-one", "get", "namespaces"]);
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("needs attention") && err.contains("akscred retry bob"),
            "{err}"
        );
        let out = d.akscred(&["token", "aks-two"]);
        assert!(!out.status.success() && out.stdout.is_empty());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("refused the username or password")
                && err.contains("a:FailedAuthentication")
                && err.contains("ID3242")
                && err.contains("akscred retry bob"),
            "a clear message from akscred token: {err}"
        );
        assert!(!err.contains("not the password"), "{err}");
    }
    let c = emu.counters();
    assert_eq!(
        c.wstrust_requests(standard::BOB),
        1,
        "exactly one WS-Trust request: {c:?}"
    );
    assert_eq!(c.wstrust_failures(standard::BOB), 1, "{c:?}");
    assert_eq!(
        c.grants_of_type(SAML11) + c.grants_of_type(SAML2),
        0,
        "{c:?}"
    );

    let status = d.wait_status("needs_attention", |v| {
        v["identities"][0]["state"] == "needs_attention"
    });
    let message = status["identities"][0]["last_error"]["message"]
        .as_str()
        .unwrap_or_default();
    assert!(
        message.contains("a:FailedAuthentication") && message.contains("ID3242"),
        "the status names the IdP's fault: {status}"
    );
    let hint = status["identities"][0]["last_error"]["hint"]
        .as_str()
        .unwrap_or_default();
    assert!(hint.contains("federation server"), "{status}");
    assert!(!d.akscred(&["status"]).status.success());

    // Fixed: one more attempt, which works.
    std::fs::write(
        d.dir.path().join("bob.password"),
        format!("{}\n", standard::FEDERATED_PASSWORD),
    )
    .unwrap();
    ok(&d.akscred(&["retry", "bob"]), "akscred retry");
    let kc = d.kubeconfig();
    ok(
        &kubectl(&kc, &["--context", "aks-one", "get", "namespaces"]),
        "kubectl after retry",
    );
    assert_eq!(emu.counters().wstrust_failures(standard::BOB), 1);
}

/// AD FS's "access denied" (`a:RequestFailed`, `MSIS7068`, what its
/// extranet lockout answers) with the right password: a refusal like a
/// wrong password. One WS-Trust request, `needs_attention`, and nothing more
/// until the operator says to try again.
#[tokio::test(flavor = "multi_thread")]
async fn access_denied_by_adfs_is_not_retried_until_the_operator_says_so() {
    let emu = Emulator::start(Scenario::standard()).await.unwrap();
    emu.adfs_fail_next(1, AdfsFault::RequestFailed);
    let d = start_daemon(
        &emu,
        standard::BOB,
        standard::FEDERATED_PASSWORD,
        &["aks-one"],
    );
    for _ in 0..5 {
        let out = d.akscred(&["token", "aks-one"]);
        assert!(!out.status.success() && out.stdout.is_empty());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("a:RequestFailed") && err.contains("MSIS7068"),
            "{err}"
        );
        assert!(err.contains("akscred retry bob"), "{err}");
    }
    let status = d.wait_status("needs_attention", |v| {
        v["identities"][0]["state"] == "needs_attention"
    });
    assert!(
        status["identities"][0]["last_error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("MSIS7068")),
        "{status}"
    );
    assert_eq!(
        emu.counters().wstrust_requests(standard::BOB),
        1,
        "the password went to AD FS once"
    );

    // The operator (or AD FS's lockout window) has cleared it: one more try.
    ok(&d.akscred(&["retry", "bob"]), "akscred retry");
    ok(
        &d.akscred(&["token", "aks-one"]),
        "akscred token after retry",
    );
    // Then one sign-in for ARM's client and one for the AKS client
    // (refresh tokens are per client), as in a first start.
    assert_eq!(emu.counters().wstrust_requests(standard::BOB), 3);
}
