//! The Entra ID login server: user realm, OIDC discovery, JWKS and the two
//! token endpoints. Paths are matched case-insensitively, as Entra does
//! (`/Common/oauth2/token` works; ADAL spells `UserRealm`).

use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method};
use axum::response::Response;
use serde_json::{Value, json};

use crate::aad_error::AadError;
use crate::emulator::{Fault, FaultTarget, Shared};
use crate::http::{self, form_pairs, query_param, read_body, segments};
use crate::scenario::Scenario;
use crate::time;
use crate::token::{self, Tenant, TokenRequest, Version, resolve_tenant};

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new().fallback(handle).with_state(shared)
}

async fn handle(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let segs = segments(&parts.uri);
    let lower: Vec<String> = segs.iter().map(|s| s.to_ascii_lowercase()).collect();
    let lower: Vec<&str> = lower.iter().map(String::as_str).collect();
    let get = parts.method == Method::GET;
    match lower.as_slice() {
        ["common", "userrealm", _] if get => {
            shared.state().counters.realm += 1;
            let api_version = query_param(&parts.uri, "api-version");
            let body = crate::adfs::user_realm(&shared, &segs[2], api_version.as_deref())
                .unwrap_or_else(|| user_realm(&shared.scenario, &segs[2], api_version.as_deref()));
            http::json(200, &body, &[])
        }
        [_, "v2.0", ".well-known", "openid-configuration"] if get => {
            shared.state().counters.oidc_discovery += 1;
            discovery(&shared, &segs[0], Version::V2)
        }
        [_, ".well-known", "openid-configuration"] if get => {
            shared.state().counters.oidc_discovery += 1;
            discovery(&shared, &segs[0], Version::V1)
        }
        [_, "discovery", "v2.0", "keys"] | [_, "discovery", "keys"] if get => {
            shared.state().counters.jwks += 1;
            let v2 = lower.len() == 4;
            jwks(&shared, &segs[0], v2)
        }
        [_, "oauth2", "token"] | [_, "oauth2", "v2.0", "token"] => {
            let version = if lower.len() == 4 {
                Version::V2
            } else {
                Version::V1
            };
            token_endpoint(&shared, version, &parts, &segs[0], body).await
        }
        _ => http::text(404, "Not Found"),
    }
}

async fn token_endpoint(
    shared: &Shared,
    version: Version,
    parts: &axum::http::request::Parts,
    tenant: &str,
    body: axum::body::Body,
) -> Response {
    {
        let counters = &mut shared.state().counters;
        match version {
            Version::V1 => counters.token_v1 += 1,
            Version::V2 => counters.token_v2 += 1,
        }
    }
    let correlation_id = correlation_id(&parts.headers);
    if parts.method != Method::POST {
        return aad_error(&AadError::post_only(parts.method.as_str()), &correlation_id);
    }
    let Some(body) = read_body(body).await else {
        // The rest of the body stays unread: the connection must go.
        let e = AadError {
            status: 413,
            ..AadError::malformed()
        };
        let mut response = aad_error(&e, &correlation_id);
        response.headers_mut().insert(
            axum::http::header::CONNECTION,
            axum::http::HeaderValue::from_static("close"),
        );
        return response;
    };
    let form = form_pairs(&body);
    let req = TokenRequest {
        version,
        tenant,
        form: &form,
    };
    let mut state = shared.state();
    if let Some(fault) = state.take_fault(FaultTarget::Token) {
        if let Some(answer) = fault.raw_answer() {
            return answer;
        }
        let e = match fault {
            Fault::TooManyRequests { retry_after } => AadError::throttled(retry_after.as_secs()),
            _ => AadError::temporarily_unavailable(),
        };
        return aad_error(&e, &correlation_id);
    }
    match token::token(shared, &mut state, &req, time::now_unix()) {
        Ok(body) => http::json(
            200,
            &body,
            &[
                ("cache-control", "no-store, no-cache".to_owned()),
                ("pragma", "no-cache".to_owned()),
                ("x-ms-request-id", http::request_id()),
                ("client-request-id", correlation_id),
            ],
        ),
        Err(e) => aad_error(&e, &correlation_id),
    }
}

/// MSAL and ADAL send `client-request-id`; Entra echoes it as the
/// correlation id.
fn correlation_id(headers: &HeaderMap) -> String {
    headers
        .get("client-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| uuid::Uuid::parse_str(v).is_ok())
        .map_or_else(http::request_id, str::to_owned)
}

fn aad_error(e: &AadError, correlation_id: &str) -> Response {
    let trace_id = http::request_id();
    let body = e.body(&trace_id, correlation_id, time::now_unix());
    let mut headers = vec![
        ("cache-control", "no-store, no-cache".to_owned()),
        ("x-ms-request-id", trace_id),
        ("client-request-id", correlation_id.to_owned()),
    ];
    if let Some(secs) = e.retry_after {
        headers.push(("retry-after", secs.to_string()));
    }
    http::json(e.status, &body, &headers)
}

/// PROTOCOLS.md section 1. Without `api-version` Entra answers an older
/// shape (`NameSpaceType`…); a client relying on it breaks here as there.
pub(crate) fn user_realm(scenario: &Scenario, upn: &str, api_version: Option<&str>) -> Value {
    let domain = upn.rsplit_once('@').map(|(_, d)| d).unwrap_or("");
    let managed = !domain.is_empty() && scenario.owns_domain(domain);
    if api_version.is_none() {
        return json!({
            "State": if managed { 4 } else { 1 },
            "UserState": if managed { 1 } else { 0 },
            "Login": upn,
            "NameSpaceType": if managed { "Managed" } else { "Unknown" },
            "DomainName": if managed { domain } else { "" },
            "CloudInstanceName": "microsoftonline.com",
        });
    }
    if managed {
        json!({
            "ver": "1.0",
            "account_type": "Managed",
            "domain_name": domain.to_ascii_lowercase(),
            "cloud_instance_name": "microsoftonline.com",
            "cloud_audience_urn": "urn:federation:MicrosoftOnline",
        })
    } else {
        json!({
            "ver": "1.0",
            "account_type": "Unknown",
            "cloud_instance_name": "microsoftonline.com",
        })
    }
}

/// Endpoints name the tenant GUID for a tenant given by domain, the
/// keyword for `common`/`organizations`; the issuer of a multi-tenant
/// document carries the literal `{tenantid}` placeholder.
fn discovery(shared: &Shared, segment: &str, version: Version) -> Response {
    let tenant = match resolve_tenant(shared, segment) {
        Ok(t) => t,
        Err(e) => {
            let e = AadError {
                error: "invalid_tenant",
                ..e
            };
            return aad_error(&e, &http::request_id());
        }
    };
    let login = &shared.login_url;
    let tid = &shared.scenario.tenant_id;
    let (seg, tid_for_issuer) = match tenant {
        Tenant::Home => (tid.as_str(), tid.as_str()),
        Tenant::Common | Tenant::Organizations => (segment, "{tenantid}"),
    };
    let claims = [
        "sub",
        "iss",
        "cloud_instance_name",
        "cloud_instance_host_name",
        "cloud_graph_host_name",
        "msgraph_host",
        "aud",
        "exp",
        "iat",
        "auth_time",
        "acr",
        "nonce",
        "preferred_username",
        "name",
        "tid",
        "ver",
        "at_hash",
        "c_hash",
        "email",
    ];
    let body = match version {
        Version::V2 => json!({
            "token_endpoint": format!("{login}/{seg}/oauth2/v2.0/token"),
            "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt", "client_secret_basic"],
            "jwks_uri": format!("{login}/{seg}/discovery/v2.0/keys"),
            "response_modes_supported": ["query", "fragment", "form_post"],
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
            "scopes_supported": ["openid", "profile", "email", "offline_access"],
            "issuer": format!("{login}/{tid_for_issuer}/v2.0"),
            "request_uri_parameter_supported": false,
            "userinfo_endpoint": "https://graph.microsoft.com/oidc/userinfo",
            "authorization_endpoint": format!("{login}/{seg}/oauth2/v2.0/authorize"),
            "device_authorization_endpoint": format!("{login}/{seg}/oauth2/v2.0/devicecode"),
            "http_logout_supported": true,
            "frontchannel_logout_supported": true,
            "end_session_endpoint": format!("{login}/{seg}/oauth2/v2.0/logout"),
            "claims_supported": claims,
            "kerberos_endpoint": format!("{login}/{seg}/kerberos"),
            "tenant_region_scope": "NA",
            "cloud_instance_name": "microsoftonline.com",
            "cloud_graph_host_name": "graph.windows.net",
            "msgraph_host": "graph.microsoft.com",
            "rbac_url": "https://pas.windows.net",
        }),
        Version::V1 => json!({
            "token_endpoint": format!("{login}/{seg}/oauth2/token"),
            "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt", "client_secret_basic"],
            "jwks_uri": format!("{login}/common/discovery/keys"),
            "response_modes_supported": ["query", "fragment", "form_post"],
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "response_types_supported": ["code", "id_token", "code id_token", "token id_token", "token"],
            "scopes_supported": ["openid"],
            "issuer": format!("https://sts.windows.net/{tid_for_issuer}/"),
            "microsoft_multi_refresh_token": true,
            "authorization_endpoint": format!("{login}/{seg}/oauth2/authorize"),
            "device_authorization_endpoint": format!("{login}/{seg}/oauth2/devicecode"),
            "http_logout_supported": true,
            "frontchannel_logout_supported": true,
            "end_session_endpoint": format!("{login}/{seg}/oauth2/logout"),
            "claims_supported": claims,
            "check_session_iframe": format!("{login}/{seg}/oauth2/checksession"),
            "userinfo_endpoint": format!("{login}/{seg}/openid/userinfo"),
            "kerberos_endpoint": format!("{login}/{seg}/kerberos"),
            "tenant_region_scope": "NA",
            "cloud_instance_name": "microsoftonline.com",
            "cloud_graph_host_name": "graph.windows.net",
            "msgraph_host": "graph.microsoft.com",
            "rbac_url": "https://pas.windows.net",
        }),
    };
    http::json(200, &body, &[])
}

fn jwks(shared: &Shared, segment: &str, v2: bool) -> Response {
    let tenant = match resolve_tenant(shared, segment) {
        Ok(t) => t,
        Err(e) => return aad_error(&e, &http::request_id()),
    };
    let issuer = v2.then(|| match tenant {
        Tenant::Home => shared.v2_issuer(),
        Tenant::Common | Tenant::Organizations => format!("{}/{{tenantid}}/v2.0", shared.login_url),
    });
    let body = json!({"keys": [shared.key.jwk(issuer.as_deref())]});
    http::json(200, &body, &[])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn realm_answers() {
        let s = Scenario::standard();
        assert_eq!(
            user_realm(&s, "alice@Contoso.com", Some("1.0")),
            json!({
                "ver": "1.0",
                "account_type": "Managed",
                "domain_name": "contoso.com",
                "cloud_instance_name": "microsoftonline.com",
                "cloud_audience_urn": "urn:federation:MicrosoftOnline",
            })
        );
        assert_eq!(
            user_realm(&s, "bob@contoso.onmicrosoft.com", Some("1.0"))["account_type"],
            "Managed"
        );
        assert_eq!(
            user_realm(&s, "someone@fabrikam.com", Some("1.0")),
            json!({"ver": "1.0", "account_type": "Unknown", "cloud_instance_name": "microsoftonline.com"})
        );
        assert_eq!(
            user_realm(&s, "no-at-sign", Some("1.0"))["account_type"],
            "Unknown"
        );
        assert_eq!(
            user_realm(&s, "alice@contoso.com", None)["NameSpaceType"],
            "Managed"
        );
    }
}
