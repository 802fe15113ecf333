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

/// The federated path, judged by MSAL: it discovers the AD FS from the user
/// realm, reads the emulator's MEX, picks the endpoint, builds the RST,
/// parses the RSTR and redeems the SAML assertion itself. Once with both
/// WS-Trust versions offered and SAML 1.1 issued, once with only 2005 and
/// SAML 2.0.
#[tokio::test(flavor = "multi_thread")]
async fn msal_for_python_signs_in_federated_users() {
    use akscred_tests::{MexOffer, SamlVersion};

    let emu = Emulator::start(Scenario::standard())
        .await
        .expect("emulator starts");
    let dir = tempfile::tempdir().expect("temp dir");
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, emu.ca_pem()).expect("write CA");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("msal/fidelity.py");

    for (offer, saml, version, grant) in [
        (
            MexOffer::Both,
            SamlVersion::Saml11,
            "1.3",
            "urn:ietf:params:oauth:grant-type:saml1_1-bearer",
        ),
        (
            MexOffer::Only2005,
            SamlVersion::Saml20,
            "2005",
            "urn:ietf:params:oauth:grant-type:saml2-bearer",
        ),
    ] {
        emu.set_mex_offer(offer);
        emu.set_saml_version(saml);
        emu.reset_counters();
        let out = tokio::process::Command::new("python3")
            .arg(&script)
            .env("AKSCRED_EMU_MODE", "federated")
            .env("AKSCRED_EMU_LOGIN_URL", emu.login_url())
            .env("AKSCRED_EMU_TENANT", standard::TENANT_DOMAIN)
            .env("AKSCRED_EMU_TENANT_ID", standard::TENANT_ID)
            .env("AKSCRED_EMU_CA", &ca)
            .env("AKSCRED_EMU_USER", standard::ALICE)
            .env("AKSCRED_EMU_PASSWORD", standard::PASSWORD)
            .env("AKSCRED_EMU_FED_USER", standard::BOB)
            .env("AKSCRED_EMU_FED_PASSWORD", standard::FEDERATED_PASSWORD)
            .output()
            .await
            .unwrap_or_else(|e| panic!("cannot run python3 ({e})"));
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_ne!(
            out.status.code(),
            Some(3),
            "MSAL for Python is not installed\n{stderr}"
        );
        assert!(
            out.status.success() && stdout.contains("all checks passed"),
            "MSAL found the emulated federation unfaithful ({offer:?}, {saml:?}, {}):\n{stdout}\n{stderr}",
            out.status
        );

        let c = emu.counters();
        assert_eq!(c.mex, 2, "one MEX read per sign-in: {c:?}");
        assert_eq!(c.wstrust_requests(standard::BOB), 2, "{c:?}");
        assert_eq!(c.wstrust_failures(standard::BOB), 1, "{c:?}");
        assert_eq!(c.wstrust_by_version.get(version).copied(), Some(2), "{c:?}");
        assert_eq!(c.grants_of_type(grant), 1, "{c:?}");
        assert_eq!(
            c.password_attempts(standard::BOB),
            0,
            "no ROPC at Entra: {c:?}"
        );
        assert_eq!(c.token_v1, 0, "MSAL only uses the v2 endpoint: {c:?}");
    }
}
