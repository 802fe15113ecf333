//! Federated sign-in over the wire: akscredd's Entra client (user realm,
//! MEX, WS-Trust, SAML bearer grant) against the emulated AD FS and Entra
//! ID, and the emulator's own checks of what clients send it.
//!
//! MSAL for Python judges the same emulator independently
//! (`tests/msal/fidelity.py`), so these tests are not the daemon checking
//! itself.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use akscred_tests::{
    ARM_RESOURCE, AZURE_CLI_CLIENT_ID, AdfsFault, Emulator, MexOffer, SamlVersion, Scenario, jwt,
    standard,
};
use akscredd::cloud::Cloud;
use akscredd::entra::mex::{WsTrustEndpoint, WsTrustVersion};
use akscredd::entra::wstrust::build_rst;
use akscredd::entra::{
    AccountType, Endpoint, EntraClient, EntraError, ErrorClass, Grant, TokenGrant, TokenRequest,
    UserRealm,
};
use akscredd::secret::Secret;
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::Value;

const SAML11: &str = "urn:ietf:params:oauth:grant-type:saml1_1-bearer";
const SAML2: &str = "urn:ietf:params:oauth:grant-type:saml2-bearer";

struct Fed {
    emu: Emulator,
    entra: EntraClient,
    http: reqwest::Client,
    _dir: tempfile::TempDir,
}

impl Fed {
    async fn start() -> Fed {
        let emu = Emulator::start(Scenario::standard())
            .await
            .expect("emulator starts");
        let dir = tempfile::tempdir().expect("temp dir");
        let ca: PathBuf = dir.path().join("ca.pem");
        std::fs::write(&ca, emu.ca_pem()).expect("write CA");
        let http = akscredd::http::build_client(Some(&ca)).expect("client builds");
        Fed {
            entra: EntraClient::new(http.clone()),
            http,
            emu,
            _dir: dir,
        }
    }

    fn cloud(&self) -> Cloud {
        Cloud {
            name: "emulator".into(),
            login_endpoint: self.emu.login_url(),
            arm_endpoint: self.emu.arm_url(),
            arm_resource: ARM_RESOURCE.into(),
        }
    }

    async fn realm(&self, upn: &str) -> UserRealm {
        self.entra
            .user_realm(&self.cloud(), upn)
            .await
            .expect("user realm")
            .expect("realm discovery")
    }

    async fn federated_grant(&self, upn: &str, password: &str) -> Result<Grant, EntraError> {
        let realm = self.realm(upn).await;
        self.entra
            .federated_grant(
                &self.cloud(),
                &realm,
                upn,
                &Secret::new(password),
                SystemTime::now(),
            )
            .await
    }

    async fn redeem(&self, grant: Grant, endpoint: Endpoint) -> Result<TokenGrant, EntraError> {
        let req = TokenRequest {
            endpoint,
            tenant: standard::TENANT_DOMAIN.into(),
            client_id: AZURE_CLI_CLIENT_ID.into(),
            resource: ARM_RESOURCE.into(),
            grant,
        };
        self.entra
            .token(&self.cloud(), &req, SystemTime::now())
            .await
    }

    /// A SAML grant posted by hand, with the assertion encoded by `encode`.
    async fn post_assertion(&self, grant_type: &str, assertion: &str) -> (u16, Value) {
        let url = format!(
            "{}/{}/oauth2/v2.0/token",
            self.emu.login_url(),
            standard::TENANT_DOMAIN
        );
        let scope = format!("{ARM_RESOURCE}/.default openid offline_access profile");
        let resp = self
            .http
            .post(url)
            .form(&[
                ("client_id", AZURE_CLI_CLIENT_ID),
                ("grant_type", grant_type),
                ("scope", &scope),
                ("assertion", assertion),
            ])
            .send()
            .await
            .expect("token request");
        (
            resp.status().as_u16(),
            resp.json().await.expect("token answer is JSON"),
        )
    }

    fn endpoint(&self, version: WsTrustVersion) -> WsTrustEndpoint {
        let v = match version {
            WsTrustVersion::V13 => "13",
            WsTrustVersion::V2005 => "2005",
        };
        WsTrustEndpoint {
            url: format!(
                "{}/adfs/services/trust/{v}/usernamemixed",
                self.emu.adfs_url().expect("AD FS runs")
            ),
            version,
        }
    }

    /// Posts a raw WS-Trust request; returns status and body.
    async fn post_rst(&self, url: &str, content_type: &str, body: String) -> (u16, String) {
        let resp = self
            .http
            .post(url)
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .expect("WS-Trust request");
        (
            resp.status().as_u16(),
            resp.text().await.expect("WS-Trust answer"),
        )
    }
}

fn saml(grant: &Grant) -> (akscredd::entra::SamlVersion, String) {
    match grant {
        Grant::Saml {
            grant_type,
            assertion,
        } => (*grant_type, assertion.expose().to_owned()),
        other => panic!("not a SAML grant: {:?}", other.kind()),
    }
}

fn upn_of(token: &TokenGrant) -> String {
    let claims = jwt::decode_unverified(token.access_token.expose()).expect("a JWT");
    claims["upn"].as_str().unwrap_or_default().to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_realm_names_the_adfs() {
    let fed = Fed::start().await;
    let realm = fed.realm(standard::BOB).await;
    assert_eq!(realm.account_type, AccountType::Federated);
    assert_eq!(realm.domain_name.as_deref(), Some("fabrikam.com"));
    let adfs = fed.emu.adfs_url().unwrap();
    assert_eq!(
        realm.federation_metadata_url,
        Some(format!("{adfs}/adfs/services/trust/mex"))
    );
    assert_eq!(
        realm.federation_active_auth_url,
        Some(format!("{adfs}/adfs/services/trust/2005/usernamemixed"))
    );
    assert_eq!(realm.cloud_audience_urn, "urn:federation:MicrosoftOnline");
    // Managed users are unchanged.
    assert_eq!(
        fed.realm(standard::ALICE).await.account_type,
        AccountType::Managed
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn both_wstrust_versions_and_both_saml_versions_sign_in() {
    let fed = Fed::start().await;
    for (offer, version_label) in [(MexOffer::Both, "1.3"), (MexOffer::Only2005, "2005")] {
        for (saml_version, grant_type) in
            [(SamlVersion::Saml11, SAML11), (SamlVersion::Saml20, SAML2)]
        {
            fed.emu.reset_counters();
            fed.emu.set_mex_offer(offer);
            fed.emu.set_saml_version(saml_version);
            for endpoint in [Endpoint::V1, Endpoint::V2] {
                let grant = fed
                    .federated_grant(standard::BOB, standard::FEDERATED_PASSWORD)
                    .await
                    .unwrap_or_else(|e| panic!("{offer:?} {saml_version:?}: {e}"));
                let (v, assertion) = saml(&grant);
                assert_eq!(v.grant_type(), grant_type);
                assert!(assertion.contains("bob@fabrikam.com"), "{assertion}");
                let token = fed
                    .redeem(grant, endpoint)
                    .await
                    .unwrap_or_else(|e| panic!("{offer:?} {saml_version:?} {endpoint:?}: {e}"));
                assert_eq!(upn_of(&token), standard::BOB);
                assert!(token.refresh_token.is_some());
            }
            let c = fed.emu.counters();
            assert_eq!(c.mex, 2, "{c:?}");
            assert_eq!(c.wstrust_requests(standard::BOB), 2, "{c:?}");
            assert_eq!(
                c.wstrust_by_version.get(version_label).copied(),
                Some(2),
                "{c:?}"
            );
            assert_eq!(c.grants_of_type(grant_type), 2, "{c:?}");
            assert_eq!(c.wstrust_failures(standard::BOB), 0);
            assert_eq!(c.password_attempts(standard::BOB), 0, "no ROPC: {c:?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn metadata_that_breaks_msal_still_works() {
    let fed = Fed::start().await;
    fed.emu.set_mex_offer(MexOffer::PaddedInEnvelope);
    let grant = fed
        .federated_grant(standard::BOB, standard::FEDERATED_PASSWORD)
        .await
        .expect("padded addresses in a SOAP envelope are understood");
    fed.redeem(grant, Endpoint::V2).await.expect("redeemed");
    let c = fed.emu.counters();
    assert_eq!(c.wstrust_by_version.get("1.3").copied(), Some(1), "{c:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn unusable_metadata_falls_back_to_the_realms_endpoint() {
    let fed = Fed::start().await;
    for offer in [MexOffer::Unavailable, MexOffer::Malformed] {
        fed.emu.reset_counters();
        fed.emu.set_mex_offer(offer);
        let grant = fed
            .federated_grant(standard::BOB, standard::FEDERATED_PASSWORD)
            .await
            .unwrap_or_else(|e| panic!("{offer:?}: {e}"));
        fed.redeem(grant, Endpoint::V1).await.expect("redeemed");
        let c = fed.emu.counters();
        assert_eq!(c.mex, 1, "{c:?}");
        // federation_active_auth_url names the 2005 endpoint.
        assert_eq!(
            c.wstrust_by_version.get("2005").copied(),
            Some(1),
            "{offer:?}: {c:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_password_is_one_request_and_a_permanent_error() {
    let fed = Fed::start().await;
    let err = fed
        .federated_grant(standard::BOB, "not the password")
        .await
        .unwrap_err();
    assert_eq!(err.class(), ErrorClass::Permanent, "{err}");
    let text = err.to_string();
    assert!(
        text.contains("refused the username or password")
            && text.contains("a:FailedAuthentication")
            && text.contains("ID3242"),
        "{text}"
    );
    assert!(!text.contains("not the password") && !format!("{err:?}").contains("not the password"));
    assert!(err.hint().contains("akscred retry"), "{}", err.hint());
    let c = fed.emu.counters();
    assert_eq!(c.wstrust_requests(standard::BOB), 1, "{c:?}");
    assert_eq!(c.wstrust_failures(standard::BOB), 1, "{c:?}");
    assert_eq!(c.token_v1 + c.token_v2, 0, "{c:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn adfs_trouble_is_transient_access_denied_is_final_each_sent_once() {
    let fed = Fed::start().await;
    fed.emu.adfs_fail_next(1, AdfsFault::ServiceUnavailable);
    let err = fed
        .federated_grant(standard::BOB, standard::FEDERATED_PASSWORD)
        .await
        .unwrap_err();
    assert_eq!(err.class(), ErrorClass::Transient, "{err}");
    assert!(
        err.to_string().contains("HTTP 503 without a SOAP fault"),
        "{err}"
    );

    // "Access denied" (AD FS's extranet lockout answers so): sending the
    // password again could only prolong a lockout.
    fed.emu.adfs_fail_next(1, AdfsFault::RequestFailed);
    let err = fed
        .federated_grant(standard::BOB, standard::FEDERATED_PASSWORD)
        .await
        .unwrap_err();
    assert_eq!(err.class(), ErrorClass::Permanent, "{err}");
    assert!(
        err.to_string()
            .contains("refused the username or password: a:RequestFailed (MSIS7068"),
        "{err}"
    );
    assert_eq!(fed.emu.counters().wstrust_requests(standard::BOB), 2);

    // And then it works again.
    let grant = fed
        .federated_grant(standard::BOB, standard::FEDERATED_PASSWORD)
        .await
        .expect("AD FS is back");
    fed.redeem(grant, Endpoint::V2).await.expect("redeemed");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_token_endpoint_takes_both_encodings_and_refuses_what_adfs_did_not_issue() {
    let fed = Fed::start().await;
    let grant = fed
        .federated_grant(standard::BOB, standard::FEDERATED_PASSWORD)
        .await
        .expect("assertion");
    let (_, assertion) = saml(&grant);

    // URL-safe without padding (MSAL for Python) and standard with padding.
    for encoded in [
        URL_SAFE_NO_PAD.encode(&assertion),
        STANDARD.encode(&assertion),
    ] {
        let (status, body) = fed.post_assertion(SAML11, &encoded).await;
        assert_eq!(status, 200, "{body}");
        let claims = jwt::decode_unverified(body["access_token"].as_str().unwrap()).unwrap();
        assert_eq!(claims["upn"], standard::BOB);
    }

    let refused = |body: &Value, code: u64| {
        body["error"] == "invalid_grant"
            && body["error_codes"][0] == code
            && body["error_description"].as_str().is_some_and(|d| {
                d.starts_with(&format!("AADSTS{code}: ")) && d.contains("Trace ID: ")
            })
    };

    // Re-serialised (here: attribute quotes changed): the signature breaks.
    let reserialised = assertion.replace('"', "'");
    let (status, body) = fed
        .post_assertion(SAML11, &STANDARD.encode(&reserialised))
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(refused(&body, 50006), "{body}");

    // Not issued here.
    let foreign = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../daemon/src/entra/testdata/wstrust/common.base64.encoded.assertion.txt"
    ))
    .expect("fixture");
    let (status, body) = fed.post_assertion(SAML11, foreign.trim()).await;
    assert_eq!(status, 400, "{body}");
    assert!(refused(&body, 50107), "{body}");

    // The grant type must match the assertion's version.
    let (status, body) = fed
        .post_assertion(SAML2, &STANDARD.encode(&assertion))
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(refused(&body, 50008), "{body}");

    let (status, body) = fed.post_assertion(SAML11, "%%% not base64").await;
    assert_eq!(status, 400, "{body}");
    assert!(refused(&body, 50008), "{body}");

    // Expired.
    fed.emu.expire_assertions();
    let (status, body) = fed
        .post_assertion(SAML11, &STANDARD.encode(&assertion))
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(refused(&body, 500133), "{body}");
    let err = fed.redeem(grant, Endpoint::V2).await.unwrap_err();
    assert_eq!(err.class(), ErrorClass::Permanent, "{err}");
    assert_eq!(err.code(), Some(500133));
}

#[tokio::test(flavor = "multi_thread")]
async fn adfs_checks_the_request() {
    let fed = Fed::start().await;
    let soap = "application/soap+xml; charset=utf-8";
    let v13 = fed.endpoint(WsTrustVersion::V13);
    let v2005 = fed.endpoint(WsTrustVersion::V2005);
    let rst = |endpoint: &WsTrustEndpoint, applies_to: &str, now: SystemTime| {
        build_rst(
            endpoint,
            standard::BOB,
            &Secret::new(standard::FEDERATED_PASSWORD),
            applies_to,
            uuid::Uuid::new_v4(),
            now,
        )
        .expect("RST builds")
        .expose()
        .to_owned()
    };
    let mso = "urn:federation:MicrosoftOnline";
    let now = SystemTime::now();

    let (status, body) = fed.post_rst(&v13.url, soap, rst(&v13, mso, now)).await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains("RequestSecurityTokenResponseCollection"),
        "{body}"
    );
    let (status, body) = fed.post_rst(&v2005.url, soap, rst(&v2005, mso, now)).await;
    assert_eq!(status, 200, "{body}");

    let cases: Vec<(&str, String, String, &str, &str)> = vec![
        (
            "a 1.3 request to the 2005 endpoint",
            v2005.url.clone(),
            rst(&v13, mso, now),
            soap,
            "a:ActionNotSupported",
        ),
        (
            "To naming another endpoint",
            v13.url.clone(),
            rst(&v13, mso, now).replace(
                &v13.url,
                "https://elsewhere.example/adfs/services/trust/13/usernamemixed",
            ),
            soap,
            "a:DestinationUnreachable",
        ),
        (
            "another relying party",
            v13.url.clone(),
            rst(&v13, "urn:other:party", now),
            soap,
            "a:RequestFailed",
        ),
        (
            "an expired timestamp",
            v13.url.clone(),
            rst(&v13, mso, now - Duration::from_secs(3600)),
            soap,
            "a:InvalidSecurity",
        ),
        (
            "no password",
            v13.url.clone(),
            rst(&v13, mso, now)
                .replace("<wsse:Password>", "<wsse:Pass>")
                .replace("</wsse:Password>", "</wsse:Pass>"),
            soap,
            "a:InvalidSecurity",
        ),
        (
            "a 2005 key type at the 1.3 endpoint",
            v13.url.clone(),
            rst(&v13, mso, now).replace(
                "http://docs.oasis-open.org/ws-sx/ws-trust/200512/Bearer",
                "http://schemas.xmlsoap.org/ws/2005/05/identity/NoProofKey",
            ),
            soap,
            "a:InvalidRequest",
        ),
        (
            "a DTD",
            v13.url.clone(),
            format!("<!DOCTYPE x []>{}", rst(&v13, mso, now)),
            soap,
            "a:InvalidRequest",
        ),
    ];
    for (what, url, body, content_type, subcode) in cases {
        let (status, answer) = fed.post_rst(&url, content_type, body).await;
        assert_eq!(status, 500, "{what}: {answer}");
        assert!(answer.contains(subcode), "{what}: {answer}");
    }
    let (status, _) = fed
        .post_rst(&v13.url, "text/xml; charset=utf-8", rst(&v13, mso, now))
        .await;
    assert_eq!(status, 415);
    // None of that was a wrong password.
    assert_eq!(fed.emu.counters().wstrust_failures(standard::BOB), 0);
}
