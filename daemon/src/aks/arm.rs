//! `listClusterUserCredential` on Azure Resource Manager (PROTOCOLS.md 6).

use std::fmt;
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_LENGTH, DATE, RETRY_AFTER, WWW_AUTHENTICATE};
use serde::Deserialize;

use super::kubeconfig::{ClusterAccess, KubeconfigError, parse_skeleton};
use crate::cloud::Cloud;
use crate::entra::error::{parse_http_date, parse_retry_after};
use crate::entra::token::encode_segment;
use crate::http::{HttpError, endpoint_of, read_capped};
use crate::secret::Secret;

pub const API_VERSION: &str = "2024-09-01";

/// A credential answer holds one or two base64 kubeconfigs of a few KiB.
pub const MAX_BODY: usize = 1024 * 1024;

/// `POST` target for the cluster user credential. `format` is `azure` or
/// `exec`; `server_fqdn` is e.g. `public` for private clusters.
pub fn credential_url(
    arm_endpoint: &str,
    subscription: &str,
    resource_group: &str,
    name: &str,
    format: Option<&str>,
    server_fqdn: Option<&str>,
) -> String {
    let mut url = format!(
        "{}/subscriptions/{}/resourceGroups/{}/providers/Microsoft.ContainerService/managedClusters/{}/listClusterUserCredential?api-version={API_VERSION}",
        arm_endpoint.trim_end_matches('/'),
        encode_segment(subscription),
        encode_segment(resource_group),
        encode_segment(name),
    );
    let mut query = url::form_urlencoded::Serializer::new(String::new());
    if let Some(format) = format {
        query.append_pair("format", format);
    }
    if let Some(fqdn) = server_fqdn {
        query.append_pair("server-fqdn", fqdn);
    }
    let query = query.finish();
    if !query.is_empty() {
        url.push('&');
        url.push_str(&query);
    }
    url
}

/// How the broker treats an ARM failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ArmErrorClass {
    /// Network, 5xx, 429, a garbled 2xx: try again later.
    Transient,
    /// ARM refused the token itself (expired, wrong audience): get a new ARM
    /// token, then try once more.
    TokenRejected,
    /// No retry helps: wrong names, missing role, MFA enforcement, a
    /// cluster without Entra ID.
    Permanent,
}

#[derive(Debug, thiserror::Error)]
pub enum ArmError {
    #[error(transparent)]
    Http(#[from] HttpError),
    /// ARM's error JSON. Boxed to keep the error small: it travels inside
    /// the broker's errors.
    #[error("{0}")]
    Arm(Box<ArmRefusal>),
    #[error("{endpoint} answered HTTP {status} without an ARM error")]
    Status {
        endpoint: String,
        status: u16,
        mfa_required: bool,
        retry_after: Option<Duration>,
    },
    #[error("{endpoint} gave an unexpected answer: {what}")]
    Malformed { endpoint: String, what: String },
    #[error("the kubeconfig from {endpoint}: {source}")]
    Kubeconfig {
        endpoint: String,
        source: KubeconfigError,
    },
}

/// An error answer of ARM: `{"error":{"code","message"}}`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{endpoint}: HTTP {status}: {code}: {message}")]
pub struct ArmRefusal {
    pub endpoint: String,
    pub status: u16,
    pub code: String,
    pub message: String,
    /// ARM asked for a token with more claims (multi-factor
    /// authentication), which a password sign-in cannot give.
    pub mfa_required: bool,
    pub retry_after: Option<Duration>,
}

const USE_KUBECONFIG: &str = "ARM requires multi-factor authentication for this account, which a password cannot give; \
     skip ARM: set `kubeconfig = \"path\"` for the cluster (a kubeconfig from `az aks get-credentials` \
     run once with MFA), or use a service principal";

impl ArmError {
    pub fn class(&self) -> ArmErrorClass {
        match self {
            ArmError::Http(HttpError::Transport { .. } | HttpError::TooLarge { .. }) => {
                ArmErrorClass::Transient
            }
            ArmError::Http(_) => ArmErrorClass::Permanent,
            ArmError::Arm(refusal) => {
                let ArmRefusal {
                    status,
                    code,
                    mfa_required,
                    ..
                } = refusal.as_ref();
                if *mfa_required {
                    ArmErrorClass::Permanent
                } else if is_transient_status(*status) {
                    ArmErrorClass::Transient
                } else if matches!(
                    code.as_str(),
                    "InvalidAuthenticationToken"
                        | "ExpiredAuthenticationToken"
                        | "InvalidAuthenticationTokenAudience"
                        | "AuthenticationFailed"
                ) {
                    ArmErrorClass::TokenRejected
                } else {
                    ArmErrorClass::Permanent
                }
            }
            ArmError::Status {
                status,
                mfa_required,
                ..
            } => {
                if *mfa_required {
                    ArmErrorClass::Permanent
                } else if is_transient_status(*status) {
                    ArmErrorClass::Transient
                } else if *status == 401 {
                    ArmErrorClass::TokenRejected
                } else {
                    ArmErrorClass::Permanent
                }
            }
            ArmError::Malformed { .. } => ArmErrorClass::Transient,
            ArmError::Kubeconfig { .. } => ArmErrorClass::Permanent,
        }
    }

    pub fn is_transient(&self) -> bool {
        self.class() == ArmErrorClass::Transient
    }

    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            ArmError::Arm(refusal) => refusal.retry_after,
            ArmError::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// The ARM error code (`AuthorizationFailed`, ...), for status reports.
    pub fn code(&self) -> Option<&str> {
        match self {
            ArmError::Arm(refusal) => Some(&refusal.code),
            _ => None,
        }
    }

    /// What a person should do.
    pub fn hint(&self) -> &'static str {
        match self {
            ArmError::Arm(refusal) if refusal.mfa_required => USE_KUBECONFIG,
            ArmError::Status {
                mfa_required: true, ..
            } => USE_KUBECONFIG,
            ArmError::Arm(refusal) => match refusal.code.as_str() {
                "AuthorizationFailed" | "LinkedAuthorizationFailed" => {
                    "the identity needs the \"Azure Kubernetes Service Cluster User Role\" on the cluster \
                     (action Microsoft.ContainerService/managedClusters/listClusterUserCredential/action), \
                     or set `kubeconfig = \"path\"` to skip ARM"
                }
                "ResourceNotFound" | "ResourceGroupNotFound" | "NotFound" => {
                    "check `subscription`, `resource_group` and `name` of the cluster"
                }
                "SubscriptionNotFound" | "InvalidSubscriptionId" => {
                    "check `subscription` of the cluster, and that the identity's tenant owns it"
                }
                "RequestDisallowedByPolicy" => {
                    "an Azure Policy blocks the call; ask its owner, or set `kubeconfig = \"path\"` to skip ARM"
                }
                _ => match self.class() {
                    ArmErrorClass::Transient => "none needed: akscred retries by itself",
                    ArmErrorClass::TokenRejected => {
                        "none needed: akscred gets a new ARM token and tries again"
                    }
                    ArmErrorClass::Permanent => {
                        "fix the cause ARM names, or set `kubeconfig = \"path\"` to skip ARM"
                    }
                },
            },
            ArmError::Kubeconfig { .. } => {
                "the cluster's kubeconfig cannot be used as is; see the message"
            }
            ArmError::Http(HttpError::Transport { .. }) => {
                "check the network, proxy (HTTPS_PROXY) and ca_file; akscred retries by itself"
            }
            _ => match self.class() {
                ArmErrorClass::Transient => "none needed: akscred retries by itself",
                ArmErrorClass::TokenRejected => {
                    "none needed: akscred gets a new ARM token and tries again"
                }
                ArmErrorClass::Permanent => "check arm_endpoint and any proxy in between",
            },
        }
    }
}

impl fmt::Display for ArmErrorClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ArmErrorClass::Transient => "transient",
            ArmErrorClass::TokenRejected => "token rejected",
            ArmErrorClass::Permanent => "permanent",
        })
    }
}

fn is_transient_status(status: u16) -> bool {
    status == 408 || status == 429 || (500..=599).contains(&status)
}

#[derive(Deserialize)]
struct RawCredentials {
    kubeconfigs: Option<Vec<RawKubeconfig>>,
}

#[derive(Deserialize)]
struct RawKubeconfig {
    name: Option<String>,
    value: Option<String>,
}

/// The kubeconfig YAML of a 2xx answer: the one named `clusterUser`, else
/// the first.
pub fn parse_credential_response(body: &[u8]) -> Result<Vec<u8>, ArmError> {
    let malformed = |what: String| ArmError::Malformed {
        endpoint: "listClusterUserCredential".into(),
        what,
    };
    let raw: RawCredentials = serde_json::from_slice(body).map_err(|e| {
        malformed(format!(
            "the answer is not the expected JSON object (error at line {}, column {})",
            e.line(),
            e.column()
        ))
    })?;
    let list = raw.kubeconfigs.unwrap_or_default();
    let chosen = list
        .iter()
        .find(|k| {
            k.name
                .as_deref()
                .is_some_and(|n| n.eq_ignore_ascii_case("clusterUser"))
        })
        .or_else(|| list.first())
        .ok_or_else(|| malformed("the answer holds no kubeconfig".into()))?;
    let value = chosen
        .value
        .as_deref()
        .filter(|v| !v.is_empty())
        .ok_or_else(|| malformed("the kubeconfig in the answer is empty".into()))?;
    let compact: String = value.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    base64::engine::general_purpose::STANDARD
        .decode(compact)
        .map_err(|e| malformed(format!("the kubeconfig is not valid base64 ({e})")))
}

#[derive(Deserialize)]
struct RawArmError {
    error: Option<RawArmErrorBody>,
}

#[derive(Deserialize)]
struct RawArmErrorBody {
    code: Option<String>,
    message: Option<String>,
}

/// ARM's `{"error":{"code","message"}}`; `None` for anything else.
pub fn parse_arm_error(body: &[u8]) -> Option<(String, String)> {
    let raw: RawArmError = serde_json::from_slice(body).ok()?;
    let error = raw.error?;
    let code = error.code.filter(|c| !c.is_empty())?;
    Some((code, error.message.unwrap_or_default()))
}

/// Does a refusal mean "this needs MFA"? ARM says so either with a claims
/// challenge in `WWW-Authenticate` (`error="insufficient_claims"`) or, in
/// the policy form, with a message about MFA.
fn mfa_required(www_authenticate: Option<&str>, code: Option<&str>, message: &str) -> bool {
    let challenge = www_authenticate
        .is_some_and(|h| h.contains("insufficient_claims") || h.contains("claims="));
    let lower = message.to_ascii_lowercase();
    let policy = code
        .is_some_and(|c| c == "RequestDisallowedByPolicy" || c == "RequestDisallowedByAzure")
        && (lower.contains("mfa")
            || lower.contains("multi-factor")
            || lower.contains("multifactor"));
    challenge || policy
}

/// Fetches and reads the kubeconfig of one cluster.
#[allow(clippy::too_many_arguments)]
pub async fn list_cluster_user_credential(
    http: &reqwest::Client,
    cloud: &Cloud,
    arm_token: &Secret,
    subscription: &str,
    resource_group: &str,
    name: &str,
    format: Option<&str>,
    server_fqdn: Option<&str>,
) -> Result<ClusterAccess, ArmError> {
    let _timer = crate::metrics::upstream(crate::metrics::Upstream::Arm);
    let url = credential_url(
        &cloud.arm_endpoint,
        subscription,
        resource_group,
        name,
        format,
        server_fqdn,
    );
    let endpoint = url::Url::parse(&url).map_or_else(|_| url.clone(), |u| endpoint_of(&u));
    let resp = http
        .post(&url)
        .header(ACCEPT, "application/json")
        .header(AUTHORIZATION, format!("Bearer {}", arm_token.expose()))
        .header(CONTENT_LENGTH, "0")
        .body(Vec::new())
        .send()
        .await
        .map_err(|e| HttpError::transport(&endpoint, e))?;
    let status = resp.status();
    tracing::debug!(%endpoint, status = status.as_u16(), "listClusterUserCredential");
    if status.is_success() {
        let body = read_capped(resp, MAX_BODY).await?;
        let yaml = parse_credential_response(&body).map_err(|e| match e {
            ArmError::Malformed { what, .. } => ArmError::Malformed {
                endpoint: endpoint.clone(),
                what,
            },
            other => other,
        })?;
        return parse_skeleton(&yaml, None).map_err(|source| ArmError::Kubeconfig {
            endpoint: endpoint.clone(),
            source,
        });
    }
    let header = |name| resp.headers().get(name).and_then(|v| v.to_str().ok());
    let retry_after = header(RETRY_AFTER).and_then(|value| {
        // A date is counted from the server's own Date header: no clock
        // skew, and no clock needed here. Delay-seconds ignore the reference.
        let reference = match header(DATE).and_then(parse_http_date) {
            Some(date) => date,
            None if value.trim().parse::<u64>().is_ok() => SystemTime::UNIX_EPOCH,
            None => return None,
        };
        parse_retry_after(value, reference)
    });
    let challenge = header(WWW_AUTHENTICATE).map(str::to_string);
    let body = read_capped(resp, MAX_BODY).await.unwrap_or_default();
    match parse_arm_error(&body) {
        Some((code, message)) => Err(ArmError::Arm(Box::new(ArmRefusal {
            mfa_required: mfa_required(challenge.as_deref(), Some(&code), &message),
            endpoint,
            status: status.as_u16(),
            code,
            message,
            retry_after,
        }))),
        None => Err(ArmError::Status {
            endpoint,
            status: status.as_u16(),
            mfa_required: mfa_required(challenge.as_deref(), None, ""),
            retry_after,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_with_and_without_options() {
        assert_eq!(
            credential_url(
                "https://management.azure.com",
                "00000000-0000-0000-0000-000000000000",
                "rg-prod",
                "aks-prod",
                None,
                None
            ),
            "https://management.azure.com/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg-prod/providers/Microsoft.ContainerService/managedClusters/aks-prod/listClusterUserCredential?api-version=2024-09-01"
        );
        assert_eq!(
            credential_url("https://m/", "s", "rg", "n", Some("exec"), Some("public")),
            "https://m/subscriptions/s/resourceGroups/rg/providers/Microsoft.ContainerService/managedClusters/n/listClusterUserCredential?api-version=2024-09-01&format=exec&server-fqdn=public"
        );
    }

    #[test]
    fn url_segments_are_encoded() {
        let url = credential_url("https://m", "s", "rg (prod)/x", "a?b#c", Some("a&b"), None);
        assert_eq!(
            url,
            "https://m/subscriptions/s/resourceGroups/rg%20%28prod%29%2Fx/providers/Microsoft.ContainerService/managedClusters/a%3Fb%23c/listClusterUserCredential?api-version=2024-09-01&format=a%26b"
        );
        let parsed = url::Url::parse(&url).unwrap();
        assert_eq!(parsed.path_segments().unwrap().count(), 9);
    }

    fn answer(kubeconfigs: &[(&str, &[u8])]) -> Vec<u8> {
        let list: Vec<serde_json::Value> = kubeconfigs
            .iter()
            .map(|(name, yaml)| {
                serde_json::json!({
                    "name": name,
                    "value": base64::engine::general_purpose::STANDARD.encode(yaml),
                })
            })
            .collect();
        serde_json::to_vec(&serde_json::json!({ "kubeconfigs": list })).unwrap()
    }

    #[test]
    fn prefers_cluster_user() {
        let body = answer(&[("clusterAdmin", b"admin: 1"), ("clusterUser", b"user: 1")]);
        assert_eq!(parse_credential_response(&body).unwrap(), b"user: 1");
        let body = answer(&[("other", b"first: 1"), ("another", b"second: 1")]);
        assert_eq!(parse_credential_response(&body).unwrap(), b"first: 1");
    }

    #[test]
    fn decodes_a_real_shaped_answer() {
        let yaml = std::fs::read(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("src/aks/testdata/managed-exec.yaml"),
        )
        .unwrap();
        let body = answer(&[("clusterUser", &yaml)]);
        let decoded = parse_credential_response(&body).unwrap();
        let access = parse_skeleton(&decoded, None).unwrap();
        assert_eq!(
            access.auth.aad().unwrap().server_id,
            "6dae42f8-4368-4678-94ff-3960e28e3630"
        );
    }

    #[test]
    fn bad_answers() {
        let cases: &[(&[u8], &str)] = &[
            (br#"{"kubeconfigs":[]}"#, "no kubeconfig"),
            (br#"{}"#, "no kubeconfig"),
            (br#"{"kubeconfigs":null}"#, "no kubeconfig"),
            (br#"{"kubeconfigs":[{"name":"clusterUser"}]}"#, "empty"),
            (
                br#"{"kubeconfigs":[{"name":"clusterUser","value":"%%%"}]}"#,
                "not valid base64",
            ),
            (b"<html/>", "not the expected JSON"),
            (b"", "not the expected JSON"),
        ];
        for (body, want) in cases {
            let err = parse_credential_response(body).unwrap_err();
            assert!(err.to_string().contains(want), "{err}");
            assert!(err.is_transient());
        }
    }

    #[test]
    fn arm_errors() {
        let body = br#"{"error":{"code":"AuthorizationFailed","message":"The client 'alice@contoso.com' with object id '...' does not have authorization to perform action 'Microsoft.ContainerService/managedClusters/listClusterUserCredential/action'."}}"#;
        let (code, message) = parse_arm_error(body).unwrap();
        assert_eq!(code, "AuthorizationFailed");
        assert!(message.contains("does not have authorization"));
        assert!(parse_arm_error(b"<html/>").is_none());
        assert!(parse_arm_error(br#"{"error":"x"}"#).is_none());
        assert!(parse_arm_error(br#"{"error":{"message":"no code"}}"#).is_none());
    }

    fn arm(status: u16, code: &str, mfa: bool) -> ArmError {
        ArmError::Arm(Box::new(ArmRefusal {
            endpoint: "https://m/x".into(),
            status,
            code: code.into(),
            message: "m".into(),
            mfa_required: mfa,
            retry_after: None,
        }))
    }

    #[test]
    fn classes_and_hints() {
        use ArmErrorClass::*;
        let table = [
            (403, "AuthorizationFailed", false, Permanent),
            (404, "ResourceNotFound", false, Permanent),
            (404, "ResourceGroupNotFound", false, Permanent),
            (401, "InvalidAuthenticationToken", false, TokenRejected),
            (401, "ExpiredAuthenticationToken", false, TokenRejected),
            (401, "InvalidAuthenticationToken", true, Permanent),
            (429, "TooManyRequests", false, Transient),
            (500, "InternalServerError", false, Transient),
            (503, "ServiceUnavailable", false, Transient),
            (400, "BadRequest", false, Permanent),
        ];
        for (status, code, mfa, want) in table {
            assert_eq!(arm(status, code, mfa).class(), want, "{status} {code}");
        }
        assert!(
            arm(403, "AuthorizationFailed", false)
                .hint()
                .contains("Cluster User Role")
        );
        assert!(
            arm(401, "InvalidAuthenticationToken", true)
                .hint()
                .contains("kubeconfig = \"path\"")
        );
        let e = arm(403, "AuthorizationFailed", false);
        assert_eq!(
            e.to_string(),
            "https://m/x: HTTP 403: AuthorizationFailed: m"
        );
        let status = |status, mfa| ArmError::Status {
            endpoint: "e".into(),
            status,
            mfa_required: mfa,
            retry_after: None,
        };
        assert_eq!(status(502, false).class(), Transient);
        assert_eq!(status(401, false).class(), TokenRejected);
        assert_eq!(status(401, true).class(), Permanent);
        assert!(status(401, true).hint().contains("kubeconfig = \"path\""));
        assert_eq!(status(403, false).class(), Permanent);
    }

    use crate::http::fake::{Canned, client, serve};

    fn cloud(base: &str) -> Cloud {
        Cloud {
            name: "lab".into(),
            login_endpoint: base.into(),
            arm_endpoint: base.into(),
            arm_resource: "https://management.core.windows.net/".into(),
        }
    }

    #[tokio::test]
    async fn exchange() {
        let yaml = std::fs::read(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("src/aks/testdata/managed-azure.yaml"),
        )
        .unwrap();
        let ok = String::from_utf8(answer(&[("clusterUser", &yaml)])).unwrap();
        let (base, mut seen) = serve(vec![
            Canned::json(200, &ok),
            Canned::json(
                403,
                r#"{"error":{"code":"AuthorizationFailed","message":"The client does not have authorization."}}"#,
            ),
            Canned::json(
                401,
                r#"{"error":{"code":"InvalidAuthenticationToken","message":"The access token has insufficient claims."}}"#,
            )
            .header(
                "WWW-Authenticate",
                r#"Bearer authorization_uri="https://login.microsoftonline.com/common/oauth2/authorize", error="insufficient_claims", claims="eyJ9""#,
            ),
            Canned::json(503, "busy")
                .header("Retry-After", "Tue, 14 Nov 2023 22:14:20 GMT")
                .header("Date", "Tue, 14 Nov 2023 22:13:20 GMT"),
        ])
        .await;
        let http = client();
        let c = cloud(&base);
        let token = Secret::new("arm-token-value");
        let call = |format| {
            list_cluster_user_credential(&http, &c, &token, "sub", "rg", "aks", format, None)
        };

        let access = call(Some("azure")).await.unwrap();
        assert_eq!(
            access.auth.aad().unwrap().server_id,
            "6dae42f8-4368-4678-94ff-3960e28e3630"
        );
        let req = seen.recv().await.unwrap();
        assert_eq!(
            req.request_line,
            "POST /subscriptions/sub/resourceGroups/rg/providers/Microsoft.ContainerService/managedClusters/aks/listClusterUserCredential?api-version=2024-09-01&format=azure HTTP/1.1"
        );
        assert_eq!(req.header("authorization"), Some("Bearer arm-token-value"));
        assert_eq!(req.header("content-length"), Some("0"));

        let err = call(None).await.unwrap_err();
        assert_eq!(err.code(), Some("AuthorizationFailed"));
        assert_eq!(err.class(), ArmErrorClass::Permanent);
        assert!(!err.to_string().contains("arm-token-value"));

        let err = call(None).await.unwrap_err();
        assert_eq!(err.class(), ArmErrorClass::Permanent, "{err}");
        assert!(err.hint().contains("kubeconfig = \"path\""));

        let err = call(None).await.unwrap_err();
        assert!(err.is_transient(), "{err}");
        assert_eq!(err.retry_after(), Some(Duration::from_secs(60)));
    }

    #[test]
    fn mfa_detection() {
        let challenge = r#"Bearer authorization_uri="https://login.microsoftonline.com/common/oauth2/authorize", error="insufficient_claims", claims="eyJhY2Nlc3NfdG9rZW4iOnsiYWNycyI6eyJlc3NlbnRpYWwiOnRydWUsInZhbHVlcyI6WyJwMSJdfX19""#;
        assert!(mfa_required(
            Some(challenge),
            Some("InvalidAuthenticationToken"),
            ""
        ));
        assert!(mfa_required(
            None,
            Some("RequestDisallowedByPolicy"),
            "Resource was disallowed by policy. Reasons: MFA is required."
        ));
        assert!(!mfa_required(
            None,
            Some("RequestDisallowedByPolicy"),
            "Resource was disallowed by policy. Reasons: allowed locations."
        ));
        assert!(!mfa_required(
            Some(r#"Bearer authorization_uri="https://login.microsoftonline.com/common""#),
            Some("InvalidAuthenticationToken"),
            ""
        ));
    }
}
