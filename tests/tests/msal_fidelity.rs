//! Fidelity of the emulated Entra ID, judged by MSAL for Python
//! (`tests/msal/fidelity.py`): sign-in, refresh, errors. It needs `python3`
//! with `msal` (`python3 -m pip install msal`); without them this test
//! fails, it never skips.

use std::path::Path;

use akscred_tests::{ARM_RESOURCE, Emulator, Scenario, standard};

#[tokio::test(flavor = "multi_thread")]
async fn msal_for_python_accepts_the_emulator() {
    let emu = Emulator::start(Scenario::standard())
        .await
        .expect("emulator starts");
    let dir = tempfile::tempdir().expect("temp dir");
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, emu.ca_pem()).expect("write CA");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("msal/fidelity.py");

    let out = tokio::process::Command::new("python3")
        .arg(&script)
        .env("AKSCRED_EMU_LOGIN_URL", emu.login_url())
        .env("AKSCRED_EMU_TENANT", standard::TENANT_DOMAIN)
        .env("AKSCRED_EMU_TENANT_ID", standard::TENANT_ID)
        .env("AKSCRED_EMU_CA", &ca)
        .env("AKSCRED_EMU_USER", standard::ALICE)
        .env("AKSCRED_EMU_PASSWORD", standard::PASSWORD)
        .output()
        .await
        .unwrap_or_else(|e| {
            panic!(
                "cannot run python3 ({e}): the MSAL fidelity test needs python3 with msal \
                 (python3 -m pip install msal)"
            )
        });
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_ne!(
        out.status.code(),
        Some(3),
        "MSAL for Python is not installed: python3 -m pip install msal\n{stderr}"
    );
    assert!(
        out.status.success(),
        "MSAL found the emulator unfaithful ({}):\n{stdout}\n{stderr}",
        out.status
    );
    assert!(stdout.contains("all checks passed"), "{stdout}");

    // What MSAL did, seen from the emulator's side.
    let c = emu.counters();
    assert_eq!(c.realm, 3, "one user realm lookup per ROPC: {c:?}");
    assert_eq!(c.grants("password", ARM_RESOURCE), 3, "{c:?}");
    assert_eq!(c.grants_of_type("refresh_token"), 3, "{c:?}");
    assert_eq!(c.password_failures(standard::ALICE), 1, "{c:?}");
    assert_eq!(c.token_v1, 0, "MSAL only uses the v2 endpoint: {c:?}");
}
