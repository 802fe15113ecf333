//! Service principals, workload identity and local-account clusters on the
//! emulator, over the wire: client credentials with a secret, with a
//! certificate-signed client assertion built here with ring, and with a
//! federated token; app-only tokens at ARM and an API server; and the real
//! kubectl on `aks-local` with the client certificate of its kubeconfig.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use akscred_tests::{
    AKS_SERVER_APP_ID, ARM_RESOURCE, AZURE_CLI_CLIENT_ID, Emulator, Scenario,
    TOKEN_EXCHANGE_AUDIENCE, jwt, standard,
};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ring::rand::SystemRandom;
use ring::signature::{RSA_PKCS1_SHA256, RSA_PSS_SHA256, RsaEncoding, RsaKeyPair};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use serde_json::{Value, json};

const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
const AKS_SCOPE: &str = "6dae42f8-4368-4678-94ff-3960e28e3630/.default";
const ARM_SCOPE: &str = "https://management.core.windows.net//.default";

fn roots(pem: &str) -> rustls::RootCertStore {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
        roots
            .add(cert.expect("CA PEM parses"))
            .expect("CA is a valid trust anchor");
    }
    roots
}

/// A client that trusts only the emulator CA, with a client certificate
/// when given one (`(certificate PEM, key PEM)`).
fn client(emu: &Emulator, identity: Option<(&str, &str)>) -> reqwest::Client {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("ring supports the default versions")
        .with_root_certificates(roots(emu.ca_pem()));
    let config = match identity {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => {
            let chain = CertificateDer::pem_slice_iter(cert.as_bytes())
                .collect::<Result<Vec<_>, _>>()
                .expect("certificate PEM");
            let key = PrivateKeyDer::from_pem_slice(key.as_bytes()).expect("key PEM");
            builder
                .with_client_auth_cert(chain, key)
                .expect("certificate and key match")
        }
    };
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
    async fn start() -> Api {
        let emu = Emulator::start(Scenario::standard())
            .await
            .expect("emulator starts");
        let http = client(&emu, None);
        Api { emu, http }
    }

    fn v2_url(&self) -> String {
        format!(
            "{}/{}/oauth2/v2.0/token",
            self.emu.login_url(),
            standard::TENANT_ID
        )
    }

    fn v1_url(&self) -> String {
        format!(
            "{}/{}/oauth2/token",
            self.emu.login_url(),
            standard::TENANT_ID
        )
    }

    async fn post(&self, url: &str, form: &[(&str, &str)]) -> (u16, Value) {
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

    async fn secret_v2(&self, client_id: &str, secret: &str, scope: &str) -> (u16, Value) {
        self.post(
            &self.v2_url(),
            &[
                ("grant_type", "client_credentials"),
                ("client_id", client_id),
                ("client_secret", secret),
                ("scope", scope),
            ],
        )
        .await
    }

    async fn assertion_v2(&self, client_id: &str, assertion: &str, scope: &str) -> (u16, Value) {
        self.post(
            &self.v2_url(),
            &[
                ("grant_type", "client_credentials"),
                ("client_id", client_id),
                ("client_assertion_type", JWT_BEARER),
                ("client_assertion", assertion),
                ("scope", scope),
            ],
        )
        .await
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

fn code(body: &Value) -> u64 {
    body["error_codes"][0].as_u64().unwrap_or(0)
}

fn claims(token: &str) -> jwt::Claims {
    jwt::decode_unverified(token).expect("a JWT")
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The test certificate of `SP_CERT_CLIENT_ID` and its key.
struct Signer {
    cert_der: Vec<u8>,
    key: RsaKeyPair,
}

impl Signer {
    fn standard() -> Signer {
        let pem = standard::SP_CERT_PEM.as_bytes();
        let cert_der = CertificateDer::from_pem_slice(pem)
            .expect("certificate in the PEM")
            .to_vec();
        let key = PrivatePkcs8KeyDer::from_pem_slice(pem).expect("PKCS#8 key in the PEM");
        let key = RsaKeyPair::from_pkcs8(key.secret_pkcs8_der()).expect("RSA key");
        Signer { cert_der, key }
    }

    fn x5t(&self) -> String {
        let d = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, &self.cert_der);
        URL_SAFE_NO_PAD.encode(d.as_ref())
    }

    fn x5t_s256(&self) -> String {
        let d = ring::digest::digest(&ring::digest::SHA256, &self.cert_der);
        URL_SAFE_NO_PAD.encode(d.as_ref())
    }

    fn sign(&self, header: &Value, claims: &Value) -> String {
        let encoding: &'static dyn RsaEncoding = if header["alg"] == "PS256" {
            &RSA_PSS_SHA256
        } else {
            &RSA_PKCS1_SHA256
        };
        let b64 = |v: &Value| URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).expect("JSON"));
        let input = format!("{}.{}", b64(header), b64(claims));
        let mut sig = vec![0; self.key.public().modulus_len()];
        self.key
            .sign(encoding, &SystemRandom::new(), input.as_bytes(), &mut sig)
            .expect("RSA signing");
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig))
    }

    /// What MSAL sends: RS256, `x5t`, `aud` = the token endpoint, ten
    /// minutes, a fresh `jti`.
    fn assertion(&self, aud: &str) -> (Value, Value) {
        let now = now();
        (
            json!({"alg": "RS256", "typ": "JWT", "x5t": self.x5t()}),
            json!({
                "aud": aud,
                "iss": standard::SP_CERT_CLIENT_ID,
                "sub": standard::SP_CERT_CLIENT_ID,
                "jti": uuid_like(),
                "nbf": now,
                "iat": now,
                "exp": now + 600,
            }),
        )
    }
}

fn uuid_like() -> String {
    let mut b = [0u8; 16];
    ring::rand::SecureRandom::fill(&SystemRandom::new(), &mut b).expect("random");
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn client_secret_grants() {
    let api = Api::start().await;
    let emu = &api.emu;
    let id = standard::SP_SECRET_CLIENT_ID;

    let (status, body) = api.secret_v2(id, standard::SP_SECRET, ARM_SCOPE).await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body["expires_in"].is_u64(),
        "v2 numbers are integers: {body}"
    );
    assert!(body.get("refresh_token").is_none() && body.get("id_token").is_none());
    let c = claims(body["access_token"].as_str().unwrap_or_default());
    assert_eq!(c["aud"], ARM_RESOURCE);
    assert_eq!(c["idtyp"], "app");
    assert_eq!(c["appid"], id);
    assert_eq!(c["appidacr"], "1");
    assert_eq!(c["sub"], c["oid"]);
    assert!(c.get("upn").is_none() && c.get("scp").is_none());

    let (status, body) = api
        .post(
            &api.v1_url(),
            &[
                ("grant_type", "client_credentials"),
                ("client_id", id),
                ("client_secret", standard::SP_SECRET),
                ("resource", AKS_SERVER_APP_ID),
            ],
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body["expires_in"].is_string(),
        "v1 numbers are strings: {body}"
    );
    assert_eq!(body["resource"], AKS_SERVER_APP_ID);

    let (status, body) = api.secret_v2(id, "not the secret", ARM_SCOPE).await;
    assert_eq!((status, code(&body)), (401, 7_000_215), "{body}");
    assert_eq!(body["error"], "invalid_client");
    let description = body["error_description"].as_str().unwrap_or_default();
    assert!(
        description.starts_with("AADSTS7000215: Invalid client secret provided.")
            && description.contains(id),
        "{description}"
    );

    let (status, body) = api
        .secret_v2("00000000-1111-2222-3333-444444444444", "x", ARM_SCOPE)
        .await;
    assert_eq!((status, code(&body)), (400, 700_016), "{body}");

    let (status, body) = api
        .secret_v2(id, standard::SP_SECRET, &format!("{ARM_SCOPE} openid"))
        .await;
    assert_eq!((status, code(&body)), (400, 1_002_012), "{body}");
    assert_eq!(body["error"], "invalid_scope");

    let (status, body) = api
        .post(
            &api.v2_url(),
            &[
                ("grant_type", "client_credentials"),
                ("client_id", id),
                ("scope", ARM_SCOPE),
            ],
        )
        .await;
    assert_eq!((status, code(&body)), (401, 7_000_218), "{body}");

    let common = format!("{}/common/oauth2/v2.0/token", emu.login_url());
    let (status, body) = api
        .post(
            &common,
            &[
                ("grant_type", "client_credentials"),
                ("client_id", id),
                ("client_secret", standard::SP_SECRET),
                ("scope", ARM_SCOPE),
            ],
        )
        .await;
    assert_eq!((status, code(&body)), (400, 9_001_023), "{body}");

    assert!(emu.expire_client_secret(id));
    let (status, body) = api.secret_v2(id, standard::SP_SECRET, ARM_SCOPE).await;
    assert_eq!((status, code(&body)), (401, 7_000_222), "{body}");
    assert!(emu.set_client_secret(id, "rotated"));
    assert_eq!(api.secret_v2(id, "rotated", ARM_SCOPE).await.0, 200);
    assert_eq!(
        code(&api.secret_v2(id, standard::SP_SECRET, ARM_SCOPE).await.1),
        7_000_215
    );
    assert!(!emu.expire_client_secret(AZURE_CLI_CLIENT_ID), "not an SP");

    let c = emu.counters();
    assert_eq!(c.client_credential_grants(id), 8);
    assert_eq!(c.client_credential_failures(&id.to_uppercase()), 4);
    assert_eq!(c.grants("client_credentials", ARM_RESOURCE), 9);
    assert_eq!(c.password_attempts(standard::ALICE), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn certificate_assertions() {
    let api = Api::start().await;
    let emu = &api.emu;
    let signer = Signer::standard();
    let id = standard::SP_CERT_CLIENT_ID;
    let v2 = api.v2_url();

    let (h, c) = signer.assertion(&v2);
    let good = signer.sign(&h, &c);
    let (status, body) = api.assertion_v2(id, &good, AKS_SCOPE).await;
    assert_eq!(status, 200, "{body}");
    let token = claims(body["access_token"].as_str().unwrap_or_default());
    assert_eq!(
        (token["appid"].as_str(), token["appidacr"].as_str()),
        (Some(id), Some("2"))
    );
    assert_eq!(token["aud"], AKS_SERVER_APP_ID);

    // The same assertion again: refused and counted.
    let (status, body) = api.assertion_v2(id, &good, AKS_SCOPE).await;
    assert_eq!((status, code(&body)), (401, 50_013), "{body}");
    assert_eq!(emu.counters().assertion_replays(id), 1);

    // The v1 endpoint URL (and the tenant's domain) is a good `aud` too, on
    // either endpoint.
    let v1_by_domain = format!(
        "{}/{}/oauth2/token",
        api.emu.login_url(),
        standard::CUSTOM_DOMAIN
    );
    let (h, c) = signer.assertion(&v1_by_domain);
    let (status, body) = api.assertion_v2(id, &signer.sign(&h, &c), AKS_SCOPE).await;
    assert_eq!(status, 200, "{body}");
    let (h, c) = signer.assertion(&v2);
    let (status, body) = api
        .post(
            &api.v1_url(),
            &[
                ("grant_type", "client_credentials"),
                ("client_id", id),
                ("client_assertion_type", JWT_BEARER),
                ("client_assertion", &signer.sign(&h, &c)),
                ("resource", ARM_RESOURCE),
            ],
        )
        .await;
    assert_eq!(status, 200, "{body}");

    // Wrong audience.
    let (h, c) = signer.assertion("https://login.microsoftonline.com/common/oauth2/v2.0/token");
    let (status, body) = api.assertion_v2(id, &signer.sign(&h, &c), AKS_SCOPE).await;
    assert_eq!((status, code(&body)), (401, 700_023), "{body}");

    // Bad signature: the claims changed after signing.
    let (h, c) = signer.assertion(&v2);
    let signed = signer.sign(&h, &c);
    let mut forged_claims = c.clone();
    forged_claims["exp"] = json!(now() + 86_400);
    let parts: Vec<&str> = signed.split('.').collect();
    let forged = format!(
        "{}.{}.{}",
        parts[0],
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(&forged_claims).expect("JSON")),
        parts[2]
    );
    let (status, body) = api.assertion_v2(id, &forged, AKS_SCOPE).await;
    assert_eq!((status, code(&body)), (401, 700_027), "{body}");
    let description = body["error_description"].as_str().unwrap_or_default();
    assert!(
        description.contains("did not match the expected signature value"),
        "{description}"
    );

    // Only the SHA-256 thumbprint, and PS256: fine.
    let (_, c) = signer.assertion(&v2);
    let h = json!({"alg": "PS256", "typ": "JWT", "x5t#S256": signer.x5t_s256()});
    let (status, body) = api.assertion_v2(id, &signer.sign(&h, &c), AKS_SCOPE).await;
    assert_eq!(status, 200, "{body}");

    // Another certificate's thumbprint, no thumbprint, another algorithm.
    let (_, c) = signer.assertion(&v2);
    let h = json!({"alg": "RS256", "typ": "JWT", "x5t": URL_SAFE_NO_PAD.encode([7u8; 20])});
    let (status, body) = api.assertion_v2(id, &signer.sign(&h, &c), AKS_SCOPE).await;
    assert_eq!((status, code(&body)), (401, 700_027), "{body}");
    assert!(
        body["error_description"]
            .as_str()
            .is_some_and(|d| d.contains("The key was not found.")),
        "{body}"
    );
    let h = json!({"alg": "RS256", "typ": "JWT"});
    let (status, body) = api.assertion_v2(id, &signer.sign(&h, &c), AKS_SCOPE).await;
    assert_eq!((status, code(&body)), (401, 50_027), "{body}");
    let h = json!({"alg": "RS512", "typ": "JWT", "x5t": signer.x5t()});
    let (status, body) = api.assertion_v2(id, &signer.sign(&h, &c), AKS_SCOPE).await;
    assert_eq!((status, code(&body)), (401, 5_002_738), "{body}");

    // Expired assertion; wrong subject; garbage.
    let (h, mut c) = signer.assertion(&v2);
    c["exp"] = json!(now() - 1);
    let (status, body) = api.assertion_v2(id, &signer.sign(&h, &c), AKS_SCOPE).await;
    assert_eq!((status, code(&body)), (401, 700_024), "{body}");
    let (h, mut c) = signer.assertion(&v2);
    c["sub"] = json!(standard::SP_SECRET_CLIENT_ID);
    let (status, body) = api.assertion_v2(id, &signer.sign(&h, &c), AKS_SCOPE).await;
    assert_eq!((status, code(&body)), (401, 700_021), "{body}");
    for garbage in ["", "x", "a.b.c", "e30.e30.e30", "....", "%%%.%%%.%%%"] {
        let (status, body) = api.assertion_v2(id, garbage, AKS_SCOPE).await;
        assert!(status == 400 || status == 401, "{garbage}: {status} {body}");
    }

    // Replays counted but allowed, as Entra does.
    emu.set_assertion_replay_check(false);
    let (h, c) = signer.assertion(&v2);
    let once = signer.sign(&h, &c);
    assert_eq!(api.assertion_v2(id, &once, AKS_SCOPE).await.0, 200);
    assert_eq!(api.assertion_v2(id, &once, AKS_SCOPE).await.0, 200);
    emu.set_assertion_replay_check(true);

    // The registered certificate expires.
    assert!(emu.expire_certificate(id));
    let (h, c) = signer.assertion(&v2);
    let (status, body) = api.assertion_v2(id, &signer.sign(&h, &c), AKS_SCOPE).await;
    assert_eq!((status, code(&body)), (401, 700_027), "{body}");
    assert!(
        body["error_description"]
            .as_str()
            .is_some_and(|d| d.contains("The key used is expired.")),
        "{body}"
    );

    let counters = emu.counters();
    assert_eq!(counters.assertion_replays(id), 2);
    assert_eq!(counters.assertion_failures(id), 14, "{counters:?}");
    let longest = counters.longest_assertion_lifetime(id).unwrap_or(0);
    assert!((590..=600).contains(&longest), "{longest}");
}

#[tokio::test(flavor = "multi_thread")]
async fn workload_identity() {
    let api = Api::start().await;
    let emu = &api.emu;
    let id = standard::WORKLOAD_CLIENT_ID;
    let hour = Duration::from_secs(3600);

    let token =
        emu.issue_federated_token(standard::WORKLOAD_SUBJECT, TOKEN_EXCHANGE_AUDIENCE, hour);
    assert_eq!(claims(&token)["iss"], standard::WORKLOAD_ISSUER);
    let (status, body) = api.assertion_v2(id, &token, ARM_SCOPE).await;
    assert_eq!(status, 200, "{body}");
    let at = claims(body["access_token"].as_str().unwrap_or_default());
    assert_eq!(
        (at["appid"].as_str(), at["idtyp"].as_str()),
        (Some(id), Some("app"))
    );
    // The token file is read again on the next sign-in: same token, fine.
    assert_eq!(api.assertion_v2(id, &token, ARM_SCOPE).await.0, 200);

    let other = emu.issue_federated_token(
        "system:serviceaccount:ci:someone-else",
        TOKEN_EXCHANGE_AUDIENCE,
        hour,
    );
    let (status, body) = api.assertion_v2(id, &other, ARM_SCOPE).await;
    assert_eq!((status, code(&body)), (400, 70_021), "{body}");
    assert_eq!(body["error"], "invalid_request");
    let description = body["error_description"].as_str().unwrap_or_default();
    assert!(
        description.contains("Assertion Subject: 'system:serviceaccount:ci:someone-else'"),
        "{description}"
    );

    let wrong_issuer = emu.issue_federated_token_from(
        "https://token.actions.githubusercontent.com",
        standard::WORKLOAD_SUBJECT,
        TOKEN_EXCHANGE_AUDIENCE,
        hour,
    );
    assert_eq!(
        code(&api.assertion_v2(id, &wrong_issuer, ARM_SCOPE).await.1),
        70_021
    );

    let expired = emu.issue_federated_token(
        standard::WORKLOAD_SUBJECT,
        TOKEN_EXCHANGE_AUDIENCE,
        Duration::ZERO,
    );
    let (status, body) = api.assertion_v2(id, &expired, ARM_SCOPE).await;
    assert_eq!((status, code(&body)), (401, 700_024), "{body}");

    // A federated token is no use to another app.
    let (status, body) = api
        .assertion_v2(standard::SP_SECRET_CLIENT_ID, &token, ARM_SCOPE)
        .await;
    assert_eq!((status, code(&body)), (401, 700_021), "{body}");

    let c = emu.counters();
    assert_eq!(c.client_credential_grants(id), 5);
    assert_eq!(c.assertion_failures(id), 3);
    assert_eq!(c.assertion_replays(id), 0, "federated tokens may repeat");
    assert_eq!(emu.federated_issuer_jwks()["keys"][0]["kty"], "RSA");
}

#[tokio::test(flavor = "multi_thread")]
async fn app_tokens_work_at_arm_and_the_api_server() {
    let api = Api::start().await;
    let emu = &api.emu;
    let id = standard::SP_SECRET_CLIENT_ID;

    let (status, body) = api.secret_v2(id, standard::SP_SECRET, AKS_SCOPE).await;
    assert_eq!(status, 200, "{body}");
    let aks = body["access_token"].as_str().unwrap_or_default().to_owned();
    let server = emu.cluster_server("aks-one").expect("aks-one");
    let (status, list) = api.get(&format!("{server}/api/v1/namespaces"), &aks).await;
    assert_eq!(status, 200, "{list}");
    assert!(
        list["items"]
            .as_array()
            .is_some_and(|items| items.iter().any(|i| i["metadata"]["name"] == "aks-one")),
        "{list}"
    );
    assert_eq!(emu.counters().apiserver_calls_by("aks-one", id), 1);

    let (status, body) = api.secret_v2(id, standard::SP_SECRET, ARM_SCOPE).await;
    assert_eq!(status, 200, "{body}");
    let arm = body["access_token"].as_str().unwrap_or_default().to_owned();
    let url = format!(
        "{}/subscriptions/{}/resourceGroups/{}/providers/Microsoft.ContainerService/managedClusters/aks-one/listClusterUserCredential?api-version=2024-09-01",
        emu.arm_url(),
        standard::SUBSCRIPTION,
        standard::RESOURCE_GROUP,
    );
    let resp = api
        .http
        .post(&url)
        .bearer_auth(&arm)
        .send()
        .await
        .expect("ARM");
    assert_eq!(resp.status().as_u16(), 200);

    let minted = emu
        .issue_app_token(standard::SP_CERT_CLIENT_ID, AKS_SERVER_APP_ID)
        .expect("an SP");
    let (status, _) = api
        .get(&format!("{server}/api/v1/namespaces"), &minted)
        .await;
    assert_eq!(status, 200);
    assert!(
        emu.issue_app_token(AZURE_CLI_CLIENT_ID, ARM_RESOURCE)
            .is_none()
    );
    // An app token for aks-one is no good on the local-accounts cluster.
    let local = emu
        .cluster_server(standard::LOCAL_CLUSTER)
        .expect("aks-local");
    let (status, body) = api.get(&format!("{local}/api/v1/namespaces"), &aks).await;
    assert_eq!(
        (status, body["reason"].as_str()),
        (401, Some("Unauthorized"))
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
async fn local_accounts_cluster_takes_its_client_certificate() {
    let api = Api::start().await;
    let emu = &api.emu;
    let arm = emu
        .issue_access_token(standard::ALICE, AZURE_CLI_CLIENT_ID, ARM_RESOURCE)
        .expect("alice exists");
    let url = format!(
        "{}/subscriptions/{}/resourceGroups/{}/providers/Microsoft.ContainerService/managedClusters/{}/listClusterUserCredential?api-version=2024-09-01&format=exec",
        emu.arm_url(),
        standard::SUBSCRIPTION,
        standard::RESOURCE_GROUP,
        standard::LOCAL_CLUSTER,
    );
    let answer: Value = api
        .http
        .post(&url)
        .bearer_auth(&arm)
        .send()
        .await
        .expect("ARM")
        .json()
        .await
        .expect("JSON");
    let yaml = String::from_utf8(
        STANDARD
            .decode(
                answer["kubeconfigs"][0]["value"]
                    .as_str()
                    .unwrap_or_default(),
            )
            .expect("base64"),
    )
    .expect("UTF-8");
    assert!(
        yaml.contains("    client-certificate-data: ") && yaml.contains("    client-key-data: "),
        "{yaml}"
    );
    assert!(!yaml.contains("kubelogin") && !yaml.contains("auth-provider"));
    assert_eq!(
        Some(yaml.clone()),
        emu.kubeconfig_for(standard::LOCAL_CLUSTER, None)
    );
    let credential = emu
        .local_account_credential(standard::LOCAL_CLUSTER)
        .expect("aks-local is a local-accounts cluster");
    assert!(emu.local_account_credential("aks-one").is_none());
    let two_years = Duration::from_secs(2 * 365 * 86_400);
    let left = credential
        .not_after
        .duration_since(std::time::SystemTime::now())
        .expect("valid");
    assert!(left > two_years - Duration::from_secs(60) && left <= two_years);

    // The real kubectl with that kubeconfig.
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("kubeconfig");
    std::fs::write(&path, &yaml).expect("write kubeconfig");
    let kubectl = kubectl();
    let run = |args: &'static [&'static str], kubeconfig: PathBuf| {
        let kubectl = kubectl.clone();
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
    let out = run(&["get", "namespaces", "-o", "name"], path.clone())
        .await
        .expect("join");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("namespace/aks-local"), "{stdout}");
    assert!(
        emu.counters()
            .apiserver_calls_by(standard::LOCAL_CLUSTER, "clusterUser")
            >= 1
    );

    // Without the certificate kubectl is refused.
    let server = emu
        .cluster_server(standard::LOCAL_CLUSTER)
        .expect("aks-local");
    let bare = dir.path().join("bare");
    std::fs::write(
        &bare,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: {server}\n    certificate-authority-data: {}\nusers:\n- name: u\n  user:\n    token: {arm}\ncontexts:\n- name: x\n  context: {{cluster: c, user: u}}\ncurrent-context: x\n",
            STANDARD.encode(emu.ca_pem())
        ),
    )
    .expect("write kubeconfig");
    let out = run(&["get", "namespaces"], bare).await.expect("join");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Unauthorized"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // reqwest: no certificate, the right one, one from another cluster CA.
    let ns = format!("{server}/api/v1/namespaces");
    let resp = api.http.get(&ns).send().await.expect("GET");
    assert_eq!(resp.status().as_u16(), 401);
    let status: Value = resp.json().await.expect("Status JSON");
    assert_eq!(
        (status["kind"].as_str(), status["code"].as_u64()),
        (Some("Status"), Some(401))
    );
    let with_cert = client(
        emu,
        Some((&credential.certificate_pem, &credential.key_pem)),
    );
    assert_eq!(
        with_cert
            .get(&ns)
            .send()
            .await
            .expect("GET")
            .status()
            .as_u16(),
        200
    );

    let other = Emulator::start(Scenario::standard())
        .await
        .expect("second emulator");
    let foreign = other
        .local_account_credential(standard::LOCAL_CLUSTER)
        .expect("aks-local");
    let with_foreign = client(emu, Some((&foreign.certificate_pem, &foreign.key_pem)));
    let resp = with_foreign.get(&ns).send().await.expect("GET");
    assert_eq!(resp.status().as_u16(), 401, "a certificate from another CA");
}

/// MSAL for Python's confidential client (`tests/msal/confidential.py`)
/// against the emulator: its secrets, certificate assertions (PEM and
/// PKCS#12) and federated tokens must all pass, and its refusals read.
#[tokio::test(flavor = "multi_thread")]
async fn msal_for_python_confidential_clients() {
    let emu = Emulator::start(Scenario::standard())
        .await
        .expect("emulator starts");
    let dir = tempfile::tempdir().expect("temp dir");
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, emu.ca_pem()).expect("write CA");
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("msal/confidential.py");
    let federated = emu.issue_federated_token(
        standard::WORKLOAD_SUBJECT,
        TOKEN_EXCHANGE_AUDIENCE,
        Duration::from_secs(3600),
    );
    let out = tokio::process::Command::new("python3")
        .arg(&script)
        .env("AKSCRED_EMU_LOGIN_URL", emu.login_url())
        .env("AKSCRED_EMU_TENANT", standard::TENANT_DOMAIN)
        .env("AKSCRED_EMU_CA", &ca)
        .env("AKSCRED_EMU_SECRET_ID", standard::SP_SECRET_CLIENT_ID)
        .env("AKSCRED_EMU_SECRET", standard::SP_SECRET)
        .env("AKSCRED_EMU_CERT_ID", standard::SP_CERT_CLIENT_ID)
        .env("AKSCRED_EMU_CERT_PEM", standard::SP_CERT_PEM_PATH)
        .env("AKSCRED_EMU_CERT_P12", standard::SP_CERT_P12_PATH)
        .env(
            "AKSCRED_EMU_CERT_P12_PASSWORD",
            standard::SP_CERT_P12_PASSWORD,
        )
        .env("AKSCRED_EMU_WORKLOAD_ID", standard::WORKLOAD_CLIENT_ID)
        .env("AKSCRED_EMU_FEDERATED_TOKEN", &federated)
        .output()
        .await
        .unwrap_or_else(|e| panic!("cannot run python3 ({e}): this test needs python3 with msal"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_ne!(
        out.status.code(),
        Some(3),
        "MSAL for Python is not installed: python3 -m pip install msal\n{stderr}"
    );
    assert!(
        out.status.success() && stdout.contains("all checks passed"),
        "MSAL found the emulator unfaithful ({}):\n{stdout}\n{stderr}",
        out.status
    );
    let c = emu.counters();
    assert_eq!(c.assertion_replays(standard::SP_CERT_CLIENT_ID), 0, "{c:?}");
    assert_eq!(c.client_credential_grants(standard::SP_CERT_CLIENT_ID), 3);
    assert_eq!(
        c.client_credential_failures(standard::SP_SECRET_CLIENT_ID),
        1
    );
}
