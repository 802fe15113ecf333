//! Hostile or broken upstream answers, served by the emulator to the real
//! daemon: each must give a clear error, in bounded memory, while the
//! daemon keeps serving the clusters that are fine. The parsers have their
//! own unit tests (daemon/src/entra, daemon/src/aks); this checks what the
//! running daemon makes of them.
//!
//! | input | where | what the daemon made of it (asserted below) |
//! |---|---|---|
//! | truncated JSON | token endpoint | "gave an unexpected answer: the answer is not the expected JSON object (error at line 1, column 17)"; old token still served |
//! | `[]` | token endpoint | "the answer is not the expected JSON object" |
//! | `{}` | token endpoint | "the answer has no access_token" |
//! | token without `expires_in`/`expires_on`, JWT without `exp` | token endpoint | "the answer has no usable expires_in or expires_on": no token of unknown lifetime is served |
//! | 64 MiB body | token endpoint | "the answer is larger than 1048576 bytes"; peak RSS of the daemon stays ~15 MiB |
//! | `value` not base64 | ARM | that cluster only: "the kubeconfig is not valid base64 (Invalid symbol 37, offset 0.)" |
//! | `value` base64 of non-YAML | ARM | that cluster only: "the kubeconfig is not valid YAML: unclosed bracket '[' at line 1, column 2" |
//! | kubeconfig with `certificate-authority: /etc/passwd` | ARM | that cluster only: "ARM's kubeconfig names a CA file (/etc/passwd) instead of carrying the CA"; the file is not read |
//! | 64 MiB body | ARM | that cluster only: "the answer is larger than 1048576 bytes" |
//! | `{"kubeconfigs": "x"}` | ARM | that cluster only: "the answer is not the expected JSON object" |
//!
//! None of the token-endpoint cases marks the identity `needs_attention`
//! (a broken answer is not a wrong password), and `aks-one` is served
//! throughout.
//!
//! XML with entity bombs (MEX, RSTR) is refused by the XML reader before
//! any entity is defined: see `daemon/src/entra/xml.rs` and `wstrust.rs`.

mod support;

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use akscred_tests::scenario::standard;
use akscred_tests::{Emulator, Fault, FaultTarget, Scenario};
use base64::Engine as _;
use support::{Daemon, ok, start_daemon, stderr};

fn post(d: &Daemon, target: &str) -> (u16, String) {
    let mut s = std::os::unix::net::UnixStream::connect(&d.socket).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        s,
        "POST {target} HTTP/1.1\r\nHost: akscred\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, body.to_string())
}

/// The good cluster keeps working.
fn still_serving(d: &Daemon, what: &str) {
    let out = d.akscred(&["token", "aks-one"]);
    assert!(
        out.status.success(),
        "after {what}, aks-one is no longer served: {}\n{}",
        stderr(&out),
        d.log()
    );
}

fn peak_rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn daemon_pid(d: &Daemon) -> u32 {
    // The daemon logs nothing with its pid; the lock file next to the
    // socket holds it.
    let mut lock = d.socket.as_os_str().to_owned();
    lock.push(".lock");
    std::fs::read_to_string(lock)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_upstream_answers_give_clear_errors_and_spare_the_other_clusters() {
    let emu = Emulator::start(Scenario::standard()).await.unwrap();
    let d = start_daemon(&emu, standard::PASSWORD, &["aks-one"]);
    d.wait_ready(1);
    let pid = daemon_pid(&d);
    let mut table = Vec::new();

    // Token endpoint: a forced refresh meets the broken answer (twice: the
    // refresh-token grant, then the password grant it falls back to).
    let token_cases: [(&str, Fault, &[&str]); 5] = [
        (
            "truncated JSON",
            Fault::Body("{\"access_token\": "),
            &["not the expected json object"],
        ),
        (
            "an array",
            Fault::Body("[]"),
            &["not the expected json object"],
        ),
        ("an empty object", Fault::Body("{}"), &["no access_token"]),
        (
            "a token without any expiry",
            Fault::Body(
                "{\"token_type\":\"Bearer\",\"access_token\":\"eyJhbGciOiJub25lIn0.eyJhdWQiOiJ4In0.c2ln\"}",
            ),
            &["no usable expires_in or expires_on"],
        ),
        (
            "64 MiB of JSON",
            Fault::Enormous(64 << 20),
            &["larger than 1048576 bytes"],
        ),
    ];
    for (what, fault, expect) in token_cases {
        emu.fail_next(FaultTarget::Token, 2, fault);
        let out = d.akscred(&["refresh", "aks-one"]);
        emu.clear_faults();
        let err = stderr(&out);
        assert!(!out.status.success(), "{what}: the refresh succeeded");
        for e in expect {
            assert!(
                err.to_lowercase().contains(e),
                "{what}: expected `{e}` in: {err}"
            );
        }
        still_serving(&d, what);
        let status = d.akscred(&["status", "--json"]);
        let v: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
        assert_ne!(
            v["identities"][0]["state"], "needs_attention",
            "{what}: a broken answer is not a wrong password: {v}"
        );
        table.push(format!("token endpoint, {what}: {}", err.trim()));
    }

    // ARM: each case adds a cluster by reload; its discovery meets the
    // broken answer, the cluster that was there keeps working.
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let file_ca = leak(b64(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: https://127.0.0.1:1\n    certificate-authority: /etc/passwd\nusers:\n- name: u\n  user:\n    exec:\n      apiVersion: client.authentication.k8s.io/v1beta1\n      command: kubelogin\n      args: [get-token, --server-id, 6dae42f8-4368-4678-94ff-3960e28e3630, --client-id, 80faf920-1908-4b52-b5ef-a8e7bedfc67a, --tenant-id, t]\ncontexts:\n- name: c\n  context: {cluster: c, user: u}\ncurrent-context: c\n",
    ));
    let arm_cases: [(&str, Fault, &[&str]); 5] = [
        (
            "a value that is not base64",
            Fault::Kubeconfig("%%% not base64 %%%"),
            &["not valid base64"],
        ),
        (
            "base64 of something not YAML",
            Fault::Kubeconfig(leak(b64("{[: this is not yaml"))),
            &["not valid yaml"],
        ),
        (
            "a kubeconfig naming a CA file",
            Fault::Kubeconfig(file_ca),
            &["names a ca file (/etc/passwd) instead of carrying the ca"],
        ),
        (
            "64 MiB of JSON",
            Fault::Enormous(64 << 20),
            &["larger than 1048576 bytes"],
        ),
        (
            "the wrong shape",
            Fault::Body("{\"kubeconfigs\": \"x\"}"),
            &["not the expected json object"],
        ),
    ];
    let config = d.dir.path().join("config.toml");
    let base = std::fs::read_to_string(&config).unwrap();
    for (i, (what, fault, expect)) in arm_cases.into_iter().enumerate() {
        let victim = format!("victim-{i}");
        std::fs::write(
            &config,
            format!(
                "{base}\n[clusters.{victim}]\nidentity = \"alice\"\nsubscription = \"{}\"\nresource_group = \"{}\"\nname = \"aks-two\"\n",
                standard::SUBSCRIPTION,
                standard::RESOURCE_GROUP
            ),
        )
        .unwrap();
        emu.fail_next(FaultTarget::Arm, 1, fault);
        let (code, body) = post(&d, "/v1/reload");
        assert_eq!(code, 200, "{body}");
        let start = Instant::now();
        let message = loop {
            let out = d.akscred(&["status", "--json"]);
            let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
            let c = v["clusters"]
                .as_array()
                .and_then(|a| a.iter().find(|c| c["name"] == victim.as_str()).cloned());
            if let Some(m) = c.as_ref().and_then(|c| c["last_error"]["message"].as_str()) {
                break m.to_string();
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "{what}: no error for {victim}: {v}\n{}",
                d.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        emu.clear_faults();
        for e in expect {
            assert!(
                message.to_lowercase().contains(e),
                "{what}: expected `{e}` in: {message}"
            );
        }
        still_serving(&d, what);
        table.push(format!("ARM, {what}: {message}"));
    }

    // Nothing above was buffered whole: 64 MiB answers left no 64 MiB peak.
    let peak = peak_rss_kib(pid);
    assert!(
        peak > 0 && peak < 160 * 1024,
        "the daemon's peak memory is {peak} KiB"
    );
    table.push(format!(
        "daemon peak RSS after all cases: {} MiB",
        peak / 1024
    ));
    ok(&d.akscred(&["token", "aks-one"]), "the end");
    eprintln!("{}", table.join("\n"));
}
