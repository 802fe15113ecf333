//! Azure Resource Manager, as far as akscred needs it:
//! `POST …/managedClusters/{name}/listClusterUserCredential`.
//! ARM matches paths case-insensitively and answers every failure with
//! `{"error":{"code","message"}}`; the codes are ARM's own.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::Method;
use axum::response::Response;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

use crate::counters::Counters;
use crate::emulator::{Fault, FaultTarget, Shared};
use crate::http::{self, Bearer, bearer, query_param, segments};
use crate::jwt::{Claims, TimeError, check_times};
use crate::kubeconfig;
use crate::scenario::{ARM_AUDIENCES, KubeconfigFormat};
use crate::time;

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new().fallback(handle).with_state(shared)
}

#[derive(Debug, PartialEq, Eq)]
struct ArmError {
    status: u16,
    code: &'static str,
    message: String,
    /// `WWW-Authenticate` for 401s.
    challenge: Option<String>,
}

impl ArmError {
    fn new(status: u16, code: &'static str, message: impl Into<String>) -> ArmError {
        ArmError {
            status,
            code,
            message: message.into(),
            challenge: None,
        }
    }

    fn unauthorized(code: &'static str, message: impl Into<String>, description: &str) -> ArmError {
        ArmError {
            challenge: Some(format!(
                "Bearer authorization_uri=\"https://login.microsoftonline.com/\", \
                 error=\"invalid_token\", error_description=\"{description}\""
            )),
            ..ArmError::new(401, code, message)
        }
    }
}

async fn handle(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let (parts, _body) = request.into_parts();
    let request_id = http::request_id();
    let result = {
        let mut state = shared.state();
        state.counters.arm += 1;
        let fault = state.take_fault(FaultTarget::Arm);
        if let Some(answer) = fault.and_then(Fault::raw_answer) {
            return answer;
        }
        match fault {
            Some(Fault::ServiceUnavailable) => Err(ArmError::new(
                503,
                "ServiceUnavailable",
                "The service is temporarily unavailable. Please retry later.",
            )),
            Some(Fault::TooManyRequests { retry_after }) => {
                return http::json(
                    429,
                    &json!({"error": {"code": "TooManyRequests",
                        "message": "The request is being throttled. Please retry later."}}),
                    &[
                        ("retry-after", retry_after.as_secs().to_string()),
                        ("x-ms-request-id", request_id),
                    ],
                );
            }
            other => {
                drop(state);
                let answer = list_credential(
                    &shared,
                    &parts.method,
                    &parts.uri,
                    &parts.headers,
                    time::now_unix(),
                );
                match (other, answer) {
                    (Some(Fault::Kubeconfig(value)), Ok(mut body)) => {
                        body["kubeconfigs"][0]["value"] = json!(value);
                        Ok(body)
                    }
                    (_, answer) => answer,
                }
            }
        }
    };
    match result {
        Ok(body) => http::json(
            200,
            &body,
            &[
                ("x-ms-request-id", request_id.clone()),
                ("x-ms-correlation-request-id", request_id),
            ],
        ),
        Err(e) => {
            let mut headers = vec![
                ("x-ms-request-id", request_id.clone()),
                ("x-ms-correlation-request-id", request_id),
            ];
            if let Some(challenge) = e.challenge {
                headers.push(("www-authenticate", challenge));
            }
            http::json(
                e.status,
                &json!({"error": {"code": e.code, "message": e.message}}),
                &headers,
            )
        }
    }
}

fn list_credential(
    shared: &Shared,
    method: &Method,
    uri: &axum::http::Uri,
    headers: &axum::http::HeaderMap,
    now: u64,
) -> Result<Value, ArmError> {
    // ARM authenticates before it looks at the path.
    authenticate(shared, headers, now)?;
    let api_version = query_param(uri, "api-version").ok_or_else(|| {
        ArmError::new(
            400,
            "MissingApiVersionParameter",
            "The api-version query parameter (?api-version=) is required for all requests.",
        )
    })?;
    let segs = segments(uri);
    let lower: Vec<String> = segs.iter().map(|s| s.to_ascii_lowercase()).collect();
    let lower: Vec<&str> = lower.iter().map(String::as_str).collect();
    let [
        "subscriptions",
        _,
        "resourcegroups",
        _,
        "providers",
        "microsoft.containerservice",
        "managedclusters",
        _,
        "listclusterusercredential",
    ] = lower.as_slice()
    else {
        return Err(ArmError::new(
            404,
            "NotFound",
            format!("The requested path '{}' was not found.", uri.path()),
        ));
    };
    if method != Method::POST {
        return Err(ArmError::new(
            405,
            "MethodNotAllowed",
            format!("The requested method '{method}' is not allowed for this resource."),
        ));
    }
    let (sub, rg, name) = (&segs[1], &segs[3], &segs[7]);
    let scenario = &shared.scenario;
    if !scenario
        .clusters
        .iter()
        .any(|c| c.subscription.eq_ignore_ascii_case(sub))
    {
        return Err(ArmError::new(
            404,
            "SubscriptionNotFound",
            format!("The subscription '{sub}' could not be found."),
        ));
    }
    if !scenario.clusters.iter().any(|c| {
        c.subscription.eq_ignore_ascii_case(sub) && c.resource_group.eq_ignore_ascii_case(rg)
    }) {
        return Err(ArmError::new(
            404,
            "ResourceGroupNotFound",
            format!("Resource group '{rg}' could not be found."),
        ));
    }
    let Some(cluster) = scenario.clusters.iter().find(|c| {
        c.subscription.eq_ignore_ascii_case(sub)
            && c.resource_group.eq_ignore_ascii_case(rg)
            && c.name.eq_ignore_ascii_case(name)
    }) else {
        return Err(ArmError::new(
            404,
            "ResourceNotFound",
            format!(
                "The Resource 'Microsoft.ContainerService/managedClusters/{name}' under resource \
                 group '{rg}' was not found. For more details please go to \
                 https://aka.ms/ARMResourceNotFoundFix"
            ),
        ));
    };
    // `format` exists from api-version 2022-01-01 on; older versions ignore it.
    let format = match query_param(uri, "format") {
        Some(f) if api_version.as_str() >= "2022-01-01" => {
            KubeconfigFormat::parse(&f).ok_or_else(|| {
                ArmError::new(
                    400,
                    "InvalidParameter",
                    format!("Invalid format '{f}': allowed values are 'azure' and 'exec'."),
                )
            })?
        }
        _ => cluster.default_format,
    };
    let server = shared.cluster_urls.get(&cluster.name).ok_or_else(|| {
        ArmError::new(500, "InternalServerError", "The cluster has no API server.")
    })?;
    Counters::bump(
        &mut shared.state().counters.arm_by_cluster,
        cluster.name.clone(),
    );
    // Clusters without Entra ID return a client certificate, whatever the
    // format asked for.
    let yaml = match shared.local_clusters.get(&cluster.name) {
        Some(local) => {
            crate::local_accounts::kubeconfig(cluster, server, &shared.ca_pem, &local.credential)
        }
        None => kubeconfig::cluster_user(
            cluster,
            server,
            &shared.ca_pem,
            &scenario.tenant_id,
            &scenario.environment,
            format,
        ),
    };
    Ok(json!({"kubeconfigs": [{"name": "clusterUser", "value": STANDARD.encode(yaml)}]}))
}

fn authenticate(
    shared: &Shared,
    headers: &axum::http::HeaderMap,
    now: u64,
) -> Result<Claims, ArmError> {
    let token = match bearer(headers) {
        Bearer::Token(t) => t,
        Bearer::Missing => {
            return Err(ArmError::unauthorized(
                "AuthenticationFailed",
                "Authentication failed. The 'Authorization' header is missing.",
                "The authentication failed because of missing 'Authorization' header.",
            ));
        }
        Bearer::OtherScheme => {
            return Err(ArmError::unauthorized(
                "AuthenticationFailedInvalidHeader",
                "Authentication failed. The 'Authorization' header is provided in an invalid format.",
                "The authentication failed because of invalid 'Authorization' header.",
            ));
        }
    };
    let invalid = || {
        ArmError::unauthorized(
            "InvalidAuthenticationToken",
            "The access token is invalid.",
            "The access token is invalid.",
        )
    };
    let claims = shared.key.verify(token).map_err(|_| invalid())?;
    match check_times(&claims, now) {
        Ok(()) => {}
        Err(TimeError::Expired { exp }) => {
            return Err(ArmError::unauthorized(
                "ExpiredAuthenticationToken",
                format!(
                    "The access token expiry UTC time '{}' is earlier than current UTC time '{}'.",
                    time::rfc3339(exp),
                    time::rfc3339(now)
                ),
                "The access token has expired.",
            ));
        }
        Err(_) => return Err(invalid()),
    }
    let aud = claims.get("aud").and_then(Value::as_str).unwrap_or("");
    if !ARM_AUDIENCES.contains(&aud) {
        return Err(ArmError::unauthorized(
            "InvalidAuthenticationTokenAudience",
            format!(
                "The access token has been obtained for wrong audience or resource '{aud}'. It \
                 should exactly match with one of the allowed audiences '{}'.",
                ARM_AUDIENCES.join("','")
            ),
            "The access token has been obtained for wrong audience or resource.",
        ));
    }
    let iss = claims.get("iss").and_then(Value::as_str).unwrap_or("");
    let tid = claims.get("tid").and_then(Value::as_str).unwrap_or("");
    if !(iss == shared.v1_issuer() || iss == shared.v2_issuer()) || tid != shared.scenario.tenant_id
    {
        return Err(ArmError::unauthorized(
            "InvalidAuthenticationTokenTenant",
            format!(
                "The access token is from the wrong issuer '{iss}'. It must match the tenant \
                 'https://sts.windows.net/{}/' associated with this subscription. Please use the \
                 authority (URL) 'https://login.windows.net/{}' to get the token.",
                shared.scenario.tenant_id, shared.scenario.tenant_id
            ),
            "The access token is from the wrong issuer.",
        ));
    }
    Ok(claims)
}
