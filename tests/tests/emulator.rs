//! The emulator over the wire, as a client sees it: a reqwest client that
//! trusts only the emulator's CA walks the whole akscred flow, and the real
//! kubectl talks to an emulated API server.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use akscred_tests::{
    AKS_CLIENT_APP_ID, AKS_SERVER_APP_ID, ARM_RESOURCE, AZURE_CLI_CLIENT_ID, Emulator, Fault,
    FaultTarget, Scenario, UserState, jwt, standard,
};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use serde_json::Value;

const ARM_SCOPE: &str =
    "https://management.core.windows.net//.default openid offline_access profile";

fn client(emu: &Emulator) -> reqwest::Client {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(emu.ca_pem().as_bytes()) {
        roots
            .add(cert.expect("CA PEM parses"))
            .expect("CA is a valid trust anchor");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("ring supports the default versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    reqwest::Client::builder()
        .tls_backend_preconfigured(config)
        .build()
        .expect("client builds")
}

struct Api {
    emu: Emulator,
    http: reqwest::Client,
}

impl Api {
    async fn start(scenario: Scenario) -> Api {
        let emu = Emulator::start(scenario).await.expect("emulator starts");
        let http = client(&emu);
        Api { emu, http }
    }

    async fn token(&self, path: &str, form: &[(&str, &str)]) -> (u16, Value) {
        let url = format!("{}/{path}", self.emu.login_url());
        let resp = self
            .http
            .post(url)
            .form(form)
            .send()
            .await
            .expect("token request");
        (
            resp.status().as_u16(),
            resp.json().await.expect("token answer is JSON"),
        )
    }

    async fn ropc_v2(
        &self,
        client_id: &str,
        upn: &str,
        password: &str,
        scope: &str,
    ) -> (u16, Value) {
        self.token(
            &format!("{}/oauth2/v2.0/token", standard::TENANT_DOMAIN),
            &[
                ("client_id", client_id),
                ("grant_type", "password"),
                ("username", upn),
                ("password", password),
                ("scope", scope),
                ("client_info", "1"),
            ],
        )
        .await
    }

    async fn list_credential(
        &self,
        bearer: Option<&str>,
        cluster: &str,
        query: &str,
    ) -> (u16, Value) {
        let url = format!(
            "{}/subscriptions/{}/resourceGroups/{}/providers/Microsoft.ContainerService/managedClusters/{cluster}/listClusterUserCredential{query}",
            self.emu.arm_url(),
            standard::SUBSCRIPTION,
            standard::RESOURCE_GROUP,
        );
        let mut req = self.http.post(url);
        if let Some(t) = bearer {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.expect("ARM request");
        (
            resp.status().as_u16(),
            resp.json().await.expect("ARM answer is JSON"),
        )
    }

    async fn get(&self, url: &str, bearer: &str) -> (u16, Value) {
        let resp = self
            .http
            .get(url)
            .bearer_auth(bearer)
            .send()
            .await
            .expect("GET");
        (
            resp.status().as_u16(),
            resp.json().await.expect("answer is JSON"),
        )
    }
}

fn str_of<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key]
        .as_str()
        .unwrap_or_else(|| panic!("{key} missing in {v}"))
}

fn claims(token: &str) -> jwt::Claims {
    jwt::decode_unverified(token).expect("a JWT")
}

/// The value of the first `key: value` line, or the list item after `- key`.
fn yaml_value(yaml: &str, key: &str) -> String {
    let mut lines = yaml.lines().map(str::trim);
    while let Some(line) = lines.next() {
        if let Some(v) = line.strip_prefix(&format!("{key}: ")) {
            return v.to_owned();
        }
        if line == format!("- {key}") {
            return lines
                .next()
                .unwrap_or_default()
                .trim_start_matches("- ")
                .to_owned();
        }
    }
    panic!("{key} not in\n{yaml}")
}

fn decode_kubeconfig(answer: &Value) -> String {
    assert_eq!(answer["kubeconfigs"][0]["name"], "clusterUser", "{answer}");
    let b64 = str_of(&answer["kubeconfigs"][0], "value");
    String::from_utf8(STANDARD.decode(b64).expect("base64")).expect("UTF-8")
}

#[tokio::test(flavor = "multi_thread")]
async fn realm_ropc_arm_kubeconfig_and_api_server() {
    let api = Api::start(Scenario::standard()).await;
    let emu = &api.emu;

    let realm: Value = api
        .http
        .get(format!(
            "{}/common/userrealm/{}?api-version=1.0",
            emu.login_url(),
            standard::ALICE
        ))
        .header("Accept", "application/json")
        .send()
        .await
        .expect("realm request")
        .json()
        .await
        .expect("realm JSON");
    assert_eq!(realm["account_type"], "Managed");

    let (status, arm) = api
        .ropc_v2(
            AZURE_CLI_CLIENT_ID,
            standard::ALICE,
            standard::PASSWORD,
            ARM_SCOPE,
        )
        .await;
    assert_eq!(status, 200, "{arm}");
    assert!(arm["expires_in"].is_u64(), "v2 numbers are integers: {arm}");
    assert!(arm.get("expires_on").is_none());
    assert!(
        arm["refresh_token"].is_string()
            && arm["id_token"].is_string()
            && arm["client_info"].is_string()
    );
    let arm_token = str_of(&arm, "access_token");
    let c = claims(arm_token);
    assert_eq!(c["aud"], ARM_RESOURCE);
    assert_eq!(c["tid"], standard::TENANT_ID);
    assert_eq!(c["upn"], standard::ALICE);
    assert_eq!(c["appid"], AZURE_CLI_CLIENT_ID);
    assert_eq!(
        c["iss"],
        format!("https://sts.windows.net/{}/", standard::TENANT_ID)
    );

    // aks-one defaults to the azure format.
    let (status, answer) = api
        .list_credential(
            Some(arm_token),
            "aks-one",
            "?api-version=2024-09-01&server-fqdn=public",
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    let yaml = decode_kubeconfig(&answer);
    assert_eq!(yaml_value(&yaml, "config-mode"), "'1'");
    let server = yaml_value(&yaml, "server");
    assert_eq!(Some(&server), emu.cluster_server("aks-one").as_ref());
    let ca = STANDARD
        .decode(yaml_value(&yaml, "certificate-authority-data"))
        .expect("CA base64");
    assert_eq!(ca, emu.ca_pem().as_bytes());
    assert_eq!(yaml_value(&yaml, "tenant-id"), standard::TENANT_ID);
    let server_id = yaml_value(&yaml, "apiserver-id");
    let client_id = yaml_value(&yaml, "client-id");
    assert_eq!(
        (server_id.as_str(), client_id.as_str()),
        (AKS_SERVER_APP_ID, AKS_CLIENT_APP_ID)
    );

    // The exec format names the same ids as kubelogin arguments.
    let (status, answer) = api
        .list_credential(
            Some(arm_token),
            "aks-one",
            "?api-version=2024-09-01&format=exec",
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    let exec = decode_kubeconfig(&answer);
    assert_eq!(yaml_value(&exec, "--server-id"), server_id);
    assert_eq!(yaml_value(&exec, "--client-id"), client_id);
    assert_eq!(yaml_value(&exec, "command"), "kubelogin");

    let scope = format!("{server_id}/.default openid offline_access profile");
    let (status, aks) = api
        .ropc_v2(&client_id, standard::ALICE, standard::PASSWORD, &scope)
        .await;
    assert_eq!(status, 200, "{aks}");
    let aks_token = str_of(&aks, "access_token");
    assert_eq!(claims(aks_token)["aud"], AKS_SERVER_APP_ID);

    let (status, list) = api
        .get(&format!("{server}/api/v1/namespaces"), aks_token)
        .await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(list["kind"], "NamespaceList");
    assert!(list.to_string().contains("\"name\":\"aks-one\""), "{list}");

    // A token for ARM is not a token for the cluster.
    let (status, body) = api
        .get(&format!("{server}/api/v1/namespaces"), arm_token)
        .await;
    assert_eq!(status, 401);
    assert_eq!(body["kind"], "Status");
    assert_eq!(body["reason"], "Unauthorized");

    // One AKS token serves every managed cluster of the tenant.
    let two = emu.cluster_server("aks-two").expect("aks-two");
    assert_eq!(api.get(&format!("{two}/version"), aks_token).await.0, 200);

    let counters = emu.counters();
    assert_eq!(counters.realm, 1);
    assert_eq!(counters.token_v2, 2);
    assert_eq!(counters.grants("password", ARM_RESOURCE), 1);
    assert_eq!(counters.token_requests_for_resource(AKS_SERVER_APP_ID), 1);
    assert_eq!(counters.password_attempts(standard::ALICE), 2);
    assert_eq!(counters.arm_requests(), 2);
    assert_eq!(counters.arm_by_cluster.get("aks-one"), Some(&2));
    assert_eq!(counters.apiserver_calls_by("aks-one", standard::ALICE), 1);
    assert_eq!(counters.apiserver_calls_by("aks-two", standard::ALICE), 1);
    assert_eq!(counters.apiserver, 3, "the 401 counts as a request");
}

async fn v1_password(api: &Api, resource: &str) -> (u16, Value) {
    api.token(
        &format!("{}/oauth2/token", standard::TENANT_ID),
        &[
            ("client_id", standard::LEGACY_CLIENT_ID),
            ("grant_type", "password"),
            ("username", standard::ALICE),
            ("password", standard::PASSWORD),
            ("resource", resource),
            ("scope", "openid"),
        ],
    )
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn legacy_clusters_want_the_spn_audience_from_the_v1_endpoint() {
    let api = Api::start(Scenario::standard()).await;
    let server = api.emu.cluster_server("aks-legacy").expect("aks-legacy");
    let spn = format!("spn:{}", standard::LEGACY_SERVER_ID);
    let spn = spn.as_str();
    let (status, body) = v1_password(&api, spn).await;
    assert_eq!(status, 200, "{body}");
    // v1 numbers are strings, with an absolute expiry.
    for key in ["expires_in", "ext_expires_in", "expires_on", "not_before"] {
        let n = str_of(&body, key);
        assert!(n.parse::<u64>().is_ok(), "{key}: {n}");
    }
    assert_eq!(body["resource"], spn);
    let token = str_of(&body, "access_token");
    assert_eq!(claims(token)["aud"], spn);
    let id_token = str_of(&body, "id_token");
    assert!(
        id_token.ends_with('.'),
        "v1 id_tokens are unsigned: {id_token}"
    );
    assert_eq!(
        api.get(&format!("{server}/api/v1/namespaces"), token)
            .await
            .0,
        200
    );

    let (status, body) = v1_password(&api, standard::LEGACY_SERVER_ID).await;
    assert_eq!(status, 200, "{body}");
    let (status, _) = api
        .get(
            &format!("{server}/api/v1/namespaces"),
            str_of(&body, "access_token"),
        )
        .await;
    assert_eq!(status, 401, "legacy clusters insist on spn:");
}

#[tokio::test(flavor = "multi_thread")]
async fn refresh_tokens_rotate_and_are_bound_to_their_client() {
    let api = Api::start(Scenario::standard()).await;
    let (_, first) = api
        .ropc_v2(
            AZURE_CLI_CLIENT_ID,
            standard::ALICE,
            standard::PASSWORD,
            ARM_SCOPE,
        )
        .await;
    let rt = str_of(&first, "refresh_token").to_owned();
    let refresh = |client: &'static str, rt: String, scope: &'static str| {
        let api = &api;
        async move {
            api.token(
                &format!("{}/oauth2/v2.0/token", standard::TENANT_ID),
                &[
                    ("client_id", client),
                    ("grant_type", "refresh_token"),
                    ("refresh_token", &rt),
                    ("scope", scope),
                ],
            )
            .await
        }
    };
    let (status, wrong_client) = refresh(AKS_CLIENT_APP_ID, rt.clone(), ARM_SCOPE).await;
    assert_eq!(
        (status, wrong_client["error"].as_str()),
        (400, Some("invalid_grant"))
    );

    // A refresh token also gets tokens for other resources.
    let aks_scope = "6dae42f8-4368-4678-94ff-3960e28e3630/.default offline_access";
    let (status, second) = refresh(AZURE_CLI_CLIENT_ID, rt.clone(), aks_scope).await;
    assert_eq!(status, 200, "{second}");
    assert_eq!(
        claims(str_of(&second, "access_token"))["aud"],
        AKS_SERVER_APP_ID
    );
    let rt2 = str_of(&second, "refresh_token").to_owned();
    assert_ne!(rt, rt2);

    let (status, spent) = refresh(AZURE_CLI_CLIENT_ID, rt, ARM_SCOPE).await;
    assert_eq!(status, 400);
    assert_eq!(spent["error_codes"][0], 70008, "{spent}");

    api.emu.set_password(standard::ALICE, "a new password");
    let (_, changed) = refresh(AZURE_CLI_CLIENT_ID, rt2, ARM_SCOPE).await;
    assert_eq!(changed["error_codes"][0], 50173, "{changed}");

    let (_, third) = api
        .ropc_v2(
            AZURE_CLI_CLIENT_ID,
            standard::ALICE,
            "a new password",
            ARM_SCOPE,
        )
        .await;
    api.emu.expire_refresh_tokens();
    let (_, expired) = refresh(
        AZURE_CLI_CLIENT_ID,
        str_of(&third, "refresh_token").to_owned(),
        ARM_SCOPE,
    )
    .await;
    assert_eq!(expired["error_codes"][0], 700082, "{expired}");
    assert_eq!(api.emu.counters().grants_of_type("refresh_token"), 5);
}

#[tokio::test(flavor = "multi_thread")]
async fn smart_lockout_after_ten_wrong_passwords() {
    let api = Api::start(Scenario::standard()).await;
    for i in 0..10 {
        let (status, body) = api
            .ropc_v2(
                AZURE_CLI_CLIENT_ID,
                standard::ALICE,
                &format!("guess {i}"),
                ARM_SCOPE,
            )
            .await;
        assert_eq!(status, 400);
        assert_eq!(body["error"], "invalid_grant");
        assert_eq!(body["error_codes"][0], 50126, "attempt {i}: {body}");
    }
    let (_, body) = api
        .ropc_v2(
            AZURE_CLI_CLIENT_ID,
            standard::ALICE,
            standard::PASSWORD,
            ARM_SCOPE,
        )
        .await;
    assert_eq!(body["error_codes"][0], 50053, "{body}");
    assert_eq!(api.emu.user_state(standard::ALICE), Some(UserState::Locked));
    let c = api.emu.counters();
    assert_eq!(
        (
            c.password_attempts(standard::ALICE),
            c.password_failures(standard::ALICE)
        ),
        (11, 10)
    );

    assert!(api.emu.set_user_state(standard::ALICE, UserState::Active));
    let (status, _) = api
        .ropc_v2(
            AZURE_CLI_CLIENT_ID,
            standard::ALICE,
            standard::PASSWORD,
            ARM_SCOPE,
        )
        .await;
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn errors_have_the_real_shape() {
    let api = Api::start(Scenario::standard()).await;
    let cases: [(&str, &str, &str, &str, u64); 7] = [
        (
            AZURE_CLI_CLIENT_ID,
            standard::MFA,
            standard::PASSWORD,
            ARM_SCOPE,
            50076,
        ),
        (
            AZURE_CLI_CLIENT_ID,
            standard::LOCKED,
            standard::PASSWORD,
            ARM_SCOPE,
            50053,
        ),
        (
            AZURE_CLI_CLIENT_ID,
            standard::DISABLED,
            standard::PASSWORD,
            ARM_SCOPE,
            50057,
        ),
        (
            AZURE_CLI_CLIENT_ID,
            "nobody@contoso.com",
            "x",
            ARM_SCOPE,
            50034,
        ),
        (
            AZURE_CLI_CLIENT_ID,
            "someone@fabrikam.com",
            "x",
            ARM_SCOPE,
            50034,
        ),
        (
            "11111111-2222-3333-4444-555555555555",
            standard::ALICE,
            standard::PASSWORD,
            ARM_SCOPE,
            700016,
        ),
        (
            AZURE_CLI_CLIENT_ID,
            standard::ALICE,
            standard::PASSWORD,
            "https://vault.azure.net/.default",
            500011,
        ),
    ];
    for (client, user, password, scope, code) in cases {
        let (status, body) = api.ropc_v2(client, user, password, scope).await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(body["error_codes"][0], code, "{body}");
        let description = str_of(&body, "error_description");
        assert!(
            description.starts_with(&format!("AADSTS{code}: ")),
            "{description}"
        );
        for key in ["trace_id", "correlation_id", "timestamp"] {
            assert!(
                description.contains(str_of(&body, key)),
                "{key} in {description}"
            );
        }
        assert_eq!(
            body["error_uri"],
            format!("https://login.microsoftonline.com/error?code={code}")
        );
    }

    let (_, mfa) = api
        .ropc_v2(
            AZURE_CLI_CLIENT_ID,
            standard::MFA,
            standard::PASSWORD,
            ARM_SCOPE,
        )
        .await;
    assert_eq!(mfa["suberror"], "basic_action");

    // ROPC on the v2 `common` endpoint is refused before the password is
    // looked at; v1 `common` works.
    let ropc = [
        ("client_id", AZURE_CLI_CLIENT_ID),
        ("grant_type", "password"),
        ("username", standard::ALICE),
        ("password", standard::PASSWORD),
        ("scope", ARM_SCOPE),
        ("resource", ARM_RESOURCE),
    ];
    let (status, body) = api.token("common/oauth2/v2.0/token", &ropc).await;
    assert_eq!(
        (status, body["error_codes"][0].as_u64()),
        (400, Some(9001023)),
        "{body}"
    );
    assert_eq!(body["error"], "invalid_request");
    let (status, body) = api.token("organizations/oauth2/v2.0/token", &ropc).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = api.token("Common/oauth2/token", &ropc).await;
    assert_eq!(status, 200, "{body}");

    let (_, body) = api
        .token(
            "contoso.com/oauth2/v2.0/token",
            &[("client_id", AZURE_CLI_CLIENT_ID)],
        )
        .await;
    assert_eq!(body["error_codes"][0], 900144, "{body}");
    let (_, body) = api.token("fabrikam.com/oauth2/v2.0/token", &ropc).await;
    assert_eq!(body["error_codes"][0], 90002, "{body}");
    let (_, body) = api
        .token(
            "contoso.com/oauth2/v2.0/token",
            &[("client_id", AZURE_CLI_CLIENT_ID), ("grant_type", "magic")],
        )
        .await;
    assert_eq!(body["error"], "unsupported_grant_type", "{body}");

    // Not a form at all, and the wrong method.
    let url = format!("{}/contoso.com/oauth2/v2.0/token", api.emu.login_url());
    let resp = api
        .http
        .post(&url)
        .header("content-type", "application/json")
        .body("{\"grant_type\": \"password\"}")
        .send()
        .await
        .expect("POST");
    assert_eq!(resp.status().as_u16(), 400);
    let body: Value = resp.json().await.expect("JSON");
    assert_eq!(body["error_codes"][0], 900144, "{body}");
    let body: Value = api
        .http
        .get(&url)
        .send()
        .await
        .expect("GET")
        .json()
        .await
        .expect("JSON");
    assert_eq!(body["error_codes"][0], 900561, "{body}");
    let resp = api
        .http
        .post(&url)
        .body(vec![b'a'; 1024 * 1024])
        .send()
        .await;
    // The client may see the answer or a reset while still sending.
    if let Ok(resp) = resp {
        assert_eq!(resp.status().as_u16(), 413, "oversized bodies are refused");
    }
    let (status, _) = api.token("organizations/oauth2/v2.0/token", &ropc).await;
    assert_eq!(status, 200, "the server survives an oversized body");
}

#[tokio::test(flavor = "multi_thread")]
async fn arm_refusals() {
    // Long enough to outlast the checks on a loaded machine, short enough
    // to wait out for the expiry check at the end.
    let lifetime = Duration::from_secs(5);
    let mut scenario = Scenario::standard();
    scenario.token_lifetime = lifetime;
    let api = Api::start(scenario).await;
    let emu = &api.emu;
    let q = "?api-version=2024-09-01";

    let (status, body) = api.list_credential(None, "aks-one", q).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (401, Some("AuthenticationFailed"))
    );
    let (status, body) = api.list_credential(Some("not-a-jwt"), "aks-one", q).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (401, Some("InvalidAuthenticationToken"))
    );

    let aks = emu
        .issue_access_token(standard::ALICE, AKS_CLIENT_APP_ID, AKS_SERVER_APP_ID)
        .expect("alice exists");
    let (status, body) = api.list_credential(Some(&aks), "aks-one", q).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (401, Some("InvalidAuthenticationTokenAudience"))
    );

    let issued = std::time::Instant::now();
    let arm = emu
        .issue_access_token(
            standard::ALICE,
            AZURE_CLI_CLIENT_ID,
            "https://management.azure.com",
        )
        .expect("alice exists");
    let (status, body) = api.list_credential(Some(&arm), "aks-nope", q).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("ResourceNotFound"))
    );
    let (status, body) = api.list_credential(Some(&arm), "aks-two", "").await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("MissingApiVersionParameter"))
    );
    let (status, body) = api.list_credential(Some(&arm), "aks-two", q).await;
    assert_eq!(status, 200, "{body}");
    assert!(
        decode_kubeconfig(&body).contains("command: kubelogin"),
        "aks-two defaults to exec"
    );
    let (status, body) = api
        .list_credential(Some(&arm), "aks-two", &format!("{q}&format=yaml"))
        .await;
    assert_eq!(status, 400, "{body}");

    emu.fail_next(FaultTarget::Arm, 1, Fault::ServiceUnavailable);
    assert_eq!(api.list_credential(Some(&arm), "aks-two", q).await.0, 503);

    // `exp` has whole seconds: a second more than the lifetime is past it.
    tokio::time::sleep(
        (issued + lifetime + Duration::from_millis(1100))
            .saturating_duration_since(std::time::Instant::now()),
    )
    .await;
    let (status, body) = api.list_credential(Some(&arm), "aks-one", q).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (401, Some("ExpiredAuthenticationToken"))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn throttling_and_discovery() {
    let api = Api::start(Scenario::standard()).await;
    let emu = &api.emu;
    emu.fail_next(
        FaultTarget::Token,
        1,
        Fault::TooManyRequests {
            retry_after: Duration::from_secs(7),
        },
    );
    let url = format!("{}/contoso.com/oauth2/v2.0/token", emu.login_url());
    let resp = api
        .http
        .post(&url)
        .form(&[("grant_type", "password")])
        .send()
        .await
        .expect("POST");
    assert_eq!(resp.status().as_u16(), 429);
    assert_eq!(resp.headers()["retry-after"], "7");
    let body: Value = resp.json().await.expect("JSON");
    assert_eq!(body["error"], "temporarily_unavailable");

    let doc: Value = api
        .http
        .get(format!(
            "{}/{}/v2.0/.well-known/openid-configuration",
            emu.login_url(),
            standard::TENANT_DOMAIN
        ))
        .send()
        .await
        .expect("discovery")
        .json()
        .await
        .expect("JSON");
    assert_eq!(
        doc["token_endpoint"],
        format!(
            "{}/{}/oauth2/v2.0/token",
            emu.login_url(),
            standard::TENANT_ID
        )
    );
    let keys: Value = api
        .http
        .get(str_of(&doc, "jwks_uri"))
        .send()
        .await
        .expect("JWKS")
        .json()
        .await
        .expect("JSON");
    let token = emu
        .issue_access_token(standard::ALICE, AZURE_CLI_CLIENT_ID, ARM_RESOURCE)
        .expect("alice exists");
    let header = token.split('.').next().unwrap_or_default();
    let header: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(header)
            .expect("base64url"),
    )
    .expect("JSON header");
    assert_eq!(keys["keys"][0]["kid"], header["kid"]);
    assert_eq!(keys["keys"][0]["kty"], "RSA");
    let counters = emu.counters();
    assert_eq!(
        (counters.oidc_discovery, counters.jwks, counters.token_v2),
        (1, 1, 1)
    );
}

fn kubectl() -> PathBuf {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("kubectl"))
            .find(|p| p.is_file())
    });
    found.expect("kubectl is not on PATH: this test runs the real kubectl")
}

#[tokio::test(flavor = "multi_thread")]
async fn real_kubectl_discovers_and_lists() {
    let kubectl = kubectl();
    let emu = Emulator::start(Scenario::standard())
        .await
        .expect("emulator starts");
    let token = emu
        .issue_access_token(standard::ALICE, AKS_CLIENT_APP_ID, AKS_SERVER_APP_ID)
        .expect("alice exists");
    let server = emu.cluster_server("aks-two").expect("aks-two");
    let dir = tempfile::tempdir().expect("temp dir");
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: {server}\n    certificate-authority-data: {}\nusers:\n- name: u\n  user:\n    token: {token}\ncontexts:\n- name: x\n  context: {{cluster: c, user: u}}\ncurrent-context: x\n",
            STANDARD.encode(emu.ca_pem())
        ),
    )
    .expect("write kubeconfig");
    let run = |args: &'static [&'static str]| {
        let kubectl = kubectl.clone();
        let kubeconfig = kubeconfig.clone();
        tokio::task::spawn_blocking(move || {
            Command::new(kubectl)
                .arg("--kubeconfig")
                .arg(kubeconfig)
                .args(args)
                .env("HOME", "/nonexistent")
                .stdin(Stdio::null())
                .output()
                .expect("kubectl runs")
        })
    };
    let out = run(&["get", "namespaces", "-o", "name"])
        .await
        .expect("join");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("namespace/aks-two") && stdout.contains("namespace/kube-system"),
        "{stdout}"
    );

    let out = run(&["version", "-o", "json"]).await.expect("join");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(v["serverVersion"]["gitVersion"], "v1.32.4");

    let out = run(&["get", "secrets", "-A"]).await.expect("join");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    assert!(
        emu.counters()
            .apiserver_calls_by("aks-two", standard::ALICE)
            >= 3
    );
}

#[test]
fn the_binary_announces_itself_and_stops_on_sigterm() {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().expect("temp dir");
    let mut child = Command::new(env!("CARGO_BIN_EXE_akscred-emulator"))
        .arg("--dir")
        .arg(dir.path())
        .args(["--scenario", "many:3", "--token-lifetime", "120"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("emulator binary starts");
    let mut line = String::new();
    let stdout = child.stdout.take().expect("piped stdout");
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("READY line");
    let info_path = dir.path().join("emulator.json");
    assert_eq!(line, format!("READY {}\n", info_path.display()));
    let info: Value =
        serde_json::from_str(&std::fs::read_to_string(&info_path).expect("emulator.json"))
            .expect("JSON");
    assert_eq!(info["clusters"].as_object().map(|c| c.len()), Some(3));
    assert!(str_of(&info["clusters"], "aks-000").starts_with("https://127.0.0.1:"));
    assert_eq!(info["tenant_id"], standard::TENANT_ID);
    assert_eq!(info["token_lifetime_secs"], 120);
    assert_eq!(info["users"][0]["upn"], standard::ALICE);
    // Only the active users: alice, and bob of the federated domain.
    assert_eq!(info["users"][1]["upn"], standard::BOB);
    assert_eq!(
        info["users"].as_array().map(Vec::len),
        Some(2),
        "only the active users"
    );
    assert!(str_of(&info, "adfs_url").starts_with("https://127.0.0.1:"));
    let ca = std::fs::read_to_string(dir.path().join("ca.pem")).expect("ca.pem");
    assert!(ca.starts_with("-----BEGIN CERTIFICATE-----"));

    let kill = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(kill.success());
    let status = child.wait().expect("emulator exits");
    assert!(status.success(), "{status}");

    let bad = Command::new(env!("CARGO_BIN_EXE_akscred-emulator"))
        .args(["--scenario", "huge"])
        .output()
        .expect("emulator binary runs");
    assert_eq!(bad.status.code(), Some(2));
}
