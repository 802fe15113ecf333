//! The token endpoints, v1 (`/oauth2/token`) and v2 (`/oauth2/v2.0/token`).
//!
//! A grant turns the form into an [`Identity`]; issuing tokens is common to
//! all grants. New grants (SAML bearer, client credentials) plug into
//! [`authenticate`] and reuse the rest.
//!
//! Token format follows the resource, not the endpoint, as in Entra (the
//! app manifest's `accessTokenAcceptedVersion`): ARM and the AKS server apps
//! take v1 tokens, so every access token here is v1-shaped (`iss`
//! `https://sts.windows.net/{tid}/`, `ver` 1.0, `appid`, `upn`), also when
//! asked for on the v2 endpoint. AKS's guard and legacy kube-apiserver OIDC
//! settings only accept that issuer. `aud` is the resource exactly as
//! requested: the v1 `resource`, or the v2 scope without its last
//! `/<permission>` (`https://management.core.windows.net//.default` gives
//! `https://management.core.windows.net/`, `<guid>/.default` gives `<guid>`).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

use crate::aad_error::AadError;
use crate::counters::Counters;
use crate::directory::{Identity, RefreshError, SignInError};
use crate::emulator::{Shared, State};
use crate::http::form_get;
use crate::jwt::{self, Claims};
use crate::scenario::{AKS_SERVER_APP_ID, ARM_AUDIENCES, AZURE_CLI_CLIENT_ID};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Version {
    V1,
    V2,
}

/// The tenant path segment, resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tenant {
    /// The GUID or one of the tenant's domains.
    Home,
    /// `common` or `consumers`: no ROPC on v2.
    Common,
    Organizations,
}

pub(crate) fn resolve_tenant(shared: &Shared, segment: &str) -> Result<Tenant, AadError> {
    if segment.eq_ignore_ascii_case(&shared.scenario.tenant_id)
        || shared.scenario.owns_domain(segment)
    {
        Ok(Tenant::Home)
    } else if segment.eq_ignore_ascii_case("common") || segment.eq_ignore_ascii_case("consumers") {
        Ok(Tenant::Common)
    } else if segment.eq_ignore_ascii_case("organizations") {
        Ok(Tenant::Organizations)
    } else {
        Err(AadError::tenant_not_found(segment))
    }
}

/// Grants [`authenticate`] knows.
const GRANTS: [&str; 4] = [
    "password",
    "refresh_token",
    crate::adfs::SAML11_GRANT,
    crate::adfs::SAML2_GRANT,
];

const OIDC_SCOPES: [&str; 4] = ["openid", "profile", "offline_access", "email"];

/// What a request asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Target {
    /// The resource as requested: becomes `aud`.
    resource: String,
    /// `scp` claim.
    permission: String,
    /// v2: resource scopes as requested, for the response's `scope`.
    scopes: Vec<String>,
    openid: bool,
    offline_access: bool,
}

/// Splits a v2 `scope` into the one resource and the OIDC extras.
fn parse_v2_scope(scope: &str) -> Result<Target, AadError> {
    let mut resource: Option<String> = None;
    let mut permission = String::new();
    let mut scopes = Vec::new();
    let (mut openid, mut offline_access) = (false, false);
    for s in scope.split_whitespace() {
        if OIDC_SCOPES.iter().any(|o| o.eq_ignore_ascii_case(s)) {
            openid |= s.eq_ignore_ascii_case("openid");
            offline_access |= s.eq_ignore_ascii_case("offline_access");
            continue;
        }
        let Some((r, p)) = s
            .rsplit_once('/')
            .filter(|(r, p)| !r.is_empty() && !p.is_empty())
        else {
            return Err(AadError::invalid_scope(s));
        };
        match &resource {
            Some(existing) if existing != r => return Err(AadError::several_resources()),
            _ => resource = Some(r.to_owned()),
        }
        if p != ".default" || permission.is_empty() {
            permission = if p == ".default" {
                "user_impersonation".to_owned()
            } else {
                p.to_owned()
            };
        }
        scopes.push(s.to_owned());
    }
    let resource = resource.ok_or_else(|| AadError::invalid_scope(scope))?;
    if scopes.iter().any(|s| s.ends_with("/.default")) {
        // Entra answers `.default` with the consented permission too.
        scopes = vec![
            format!("{resource}/user_impersonation"),
            format!("{resource}/.default"),
        ];
    }
    Ok(Target {
        resource,
        permission,
        scopes,
        openid,
        offline_access,
    })
}

fn v1_target(resource: &str, scope: Option<&str>) -> Target {
    Target {
        resource: resource.to_owned(),
        permission: "user_impersonation".to_owned(),
        scopes: Vec::new(),
        openid: scope.is_some_and(|s| {
            s.split_whitespace()
                .any(|s| s.eq_ignore_ascii_case("openid"))
        }),
        offline_access: true,
    }
}

/// Resources compare without `spn:` and trailing slashes, case-insensitively.
fn normalize_resource(r: &str) -> String {
    let r = r.trim();
    let r = match r.get(..4) {
        Some(p) if p.eq_ignore_ascii_case("spn:") => &r[4..],
        _ => r,
    };
    r.trim_end_matches('/').to_ascii_lowercase()
}

pub(crate) fn is_known_resource(shared: &Shared, resource: &str) -> bool {
    let r = normalize_resource(resource);
    ARM_AUDIENCES.iter().any(|a| normalize_resource(a) == r)
        || r == AKS_SERVER_APP_ID
        || shared
            .scenario
            .clusters
            .iter()
            .any(|c| normalize_resource(c.aad.server_id()) == r)
}

fn is_known_client(shared: &Shared, client_id: &str) -> bool {
    client_id.eq_ignore_ascii_case(AZURE_CLI_CLIENT_ID)
        || shared
            .scenario
            .clusters
            .iter()
            .any(|c| c.aad.client_id().eq_ignore_ascii_case(client_id))
}

/// The resource a request names, for counters, before any validation.
fn requested_resource(version: Version, form: &[(String, String)]) -> String {
    match version {
        Version::V1 => form_get(form, "resource").unwrap_or_default().to_owned(),
        Version::V2 => form_get(form, "scope")
            .and_then(|s| parse_v2_scope(s).ok())
            .map(|t| t.resource)
            .unwrap_or_default(),
    }
}

pub(crate) struct TokenRequest<'a> {
    pub version: Version,
    pub tenant: &'a str,
    pub form: &'a [(String, String)],
}

/// Answers a token request: the success body, or the Entra error.
pub(crate) fn token(
    shared: &Shared,
    state: &mut State,
    req: &TokenRequest<'_>,
    now: u64,
) -> Result<Value, AadError> {
    let grant_type = form_get(req.form, "grant_type");
    Counters::bump(
        &mut state.counters.token_grants,
        (
            grant_type.unwrap_or_default().to_owned(),
            requested_resource(req.version, req.form),
        ),
    );
    let tenant = resolve_tenant(shared, req.tenant)?;
    let grant_type = grant_type.ok_or_else(|| AadError::missing_parameter("grant_type"))?;
    if grant_type == "client_credentials" {
        return crate::client_credentials::token(shared, state, req, tenant, now);
    }
    let client_id =
        form_get(req.form, "client_id").ok_or_else(|| AadError::missing_parameter("client_id"))?;
    if !is_known_client(shared, client_id) {
        return Err(AadError::unknown_client(client_id, shared.tenant_name()));
    }
    if !GRANTS.contains(&grant_type) {
        return Err(AadError::unsupported_grant(grant_type));
    }
    let target = match req.version {
        Version::V1 => {
            // A v1 refresh may leave `resource` out: the original one is reused.
            let resource = form_get(req.form, "resource");
            if resource.is_none() && grant_type != "refresh_token" {
                return Err(AadError::missing_parameter("resource"));
            }
            resource.map(|r| v1_target(r, form_get(req.form, "scope")))
        }
        Version::V2 => {
            let scope =
                form_get(req.form, "scope").ok_or_else(|| AadError::missing_parameter("scope"))?;
            Some(parse_v2_scope(scope)?)
        }
    };
    if let Some(t) = &target
        && !is_known_resource(shared, &t.resource)
    {
        return Err(AadError::unknown_resource(
            &t.resource,
            shared.tenant_name(),
        ));
    }

    let (identity, target) = match grant_type {
        // Federated users: the assertion AD FS issued stands for the password.
        crate::adfs::SAML11_GRANT | crate::adfs::SAML2_GRANT => {
            if req.version == Version::V2 && tenant == Tenant::Common {
                return Err(AadError::grant_needs_tenant());
            }
            let target = target.ok_or_else(|| AadError::missing_parameter("resource"))?;
            let assertion = form_get(req.form, "assertion")
                .ok_or_else(|| AadError::missing_parameter("assertion"))?;
            let identity = crate::adfs::redeem(shared, state, grant_type, assertion, now)?;
            (identity, target)
        }
        _ => authenticate(shared, state, req, tenant, grant_type, client_id, target)?,
    };
    let refresh_token = (target.offline_access || grant_type == "refresh_token").then(|| {
        state
            .directory
            .issue_refresh_token(&identity.upn, client_id, &target.resource)
    });
    Ok(response(
        shared,
        req,
        &identity,
        client_id,
        &target,
        refresh_token,
        now,
    ))
}

/// Runs the grant; returns who signed in and, for a v1 refresh without
/// `resource`, the resource of the original grant.
fn authenticate(
    shared: &Shared,
    state: &mut State,
    req: &TokenRequest<'_>,
    tenant: Tenant,
    grant_type: &str,
    client_id: &str,
    target: Option<Target>,
) -> Result<(Identity, Target), AadError> {
    match grant_type {
        "password" => {
            if req.version == Version::V2 && tenant == Tenant::Common {
                return Err(AadError::grant_needs_tenant());
            }
            let username = form_get(req.form, "username")
                .ok_or_else(|| AadError::missing_parameter("username"))?;
            let password = form_get(req.form, "password")
                .ok_or_else(|| AadError::missing_parameter("password"))?;
            let target = target.ok_or_else(|| AadError::missing_parameter("resource"))?;
            let known_domain = username
                .rsplit_once('@')
                .is_some_and(|(_, domain)| shared.scenario.owns_domain(domain));
            if !known_domain || state.directory.identity(username).is_none() {
                return Err(AadError::no_such_user(shared.tenant_name()));
            }
            let key = username.to_lowercase();
            Counters::bump(&mut state.counters.password_attempts_by_user, key.clone());
            match state.directory.password_sign_in(username, password) {
                Ok(identity) => Ok((identity, target)),
                Err(e) => {
                    if e == SignInError::WrongPassword {
                        Counters::bump(&mut state.counters.password_failures_by_user, key);
                    }
                    Err(match e {
                        SignInError::NoSuchUser => AadError::no_such_user(shared.tenant_name()),
                        SignInError::WrongPassword => AadError::wrong_password(),
                        SignInError::Locked => AadError::locked(),
                        SignInError::Disabled => AadError::disabled(),
                        SignInError::MfaRequired => AadError::mfa_required(&target.resource),
                    })
                }
            }
        }
        "refresh_token" => {
            let token = form_get(req.form, "refresh_token")
                .ok_or_else(|| AadError::missing_parameter("refresh_token"))?;
            let (grant, identity) = state
                .directory
                .redeem_refresh_token(token, client_id)
                .map_err(|e| match e {
                    RefreshError::Unknown => AadError::refresh_token_malformed(),
                    RefreshError::Spent => AadError::refresh_token_spent(),
                    RefreshError::Expired => AadError::refresh_token_expired(),
                    RefreshError::PasswordChanged => AadError::password_changed(),
                    RefreshError::WrongClient => AadError::grant_malformed(),
                    RefreshError::Disabled => AadError::disabled(),
                    RefreshError::MfaRequired => {
                        AadError::mfa_required(target.as_ref().map_or("", |t| t.resource.as_str()))
                    }
                })?;
            let target = match target {
                Some(t) => t,
                None if is_known_resource(shared, &grant.resource) => {
                    v1_target(&grant.resource, None)
                }
                None => return Err(AadError::missing_parameter("resource")),
            };
            Ok((identity, target))
        }
        other => Err(AadError::unsupported_grant(other)),
    }
}

/// A pairwise `sub`, stable per user and client, 43 characters like Entra's.
fn subject(oid: &str, client_id: &str) -> String {
    let d = ring::digest::digest(
        &ring::digest::SHA256,
        format!("{oid}|{client_id}").as_bytes(),
    );
    URL_SAFE_NO_PAD.encode(d.as_ref())
}

/// Entra's unique token id: 22 base64url characters.
fn uti() -> String {
    URL_SAFE_NO_PAD.encode(uuid::Uuid::new_v4().as_bytes())
}

fn as_claims(value: Value) -> Claims {
    match value {
        Value::Object(map) => map,
        _ => Claims::new(),
    }
}

/// Claims of a v1-format user access token (see the module comment).
pub(crate) fn access_token_claims(
    shared: &Shared,
    identity: &Identity,
    client_id: &str,
    resource: &str,
    permission: &str,
    now: u64,
) -> Claims {
    let exp = now + shared.scenario.token_lifetime.as_secs().max(1);
    as_claims(json!({
        "aud": resource,
        "iss": shared.v1_issuer(),
        "iat": now,
        "nbf": now,
        "exp": exp,
        "acr": "1",
        "amr": ["pwd"],
        "appid": client_id,
        "appidacr": "0",
        "idtyp": "user",
        "name": identity.name,
        "oid": identity.oid,
        "scp": permission,
        "sub": subject(&identity.oid, client_id),
        "tid": shared.scenario.tenant_id,
        "unique_name": identity.upn,
        "upn": identity.upn,
        "uti": uti(),
        "ver": "1.0",
    }))
}

fn id_token(
    shared: &Shared,
    version: Version,
    identity: &Identity,
    client_id: &str,
    now: u64,
) -> String {
    let exp = now + 3600;
    let sub = subject(&identity.oid, client_id);
    match version {
        // The v1 endpoint's id_token is unsigned (`alg: none`).
        Version::V1 => jwt::unsigned(&as_claims(json!({
            "aud": client_id,
            "iss": shared.v1_issuer(),
            "iat": now,
            "nbf": now,
            "exp": exp,
            "amr": ["pwd"],
            "name": identity.name,
            "oid": identity.oid,
            "sub": sub,
            "tid": shared.scenario.tenant_id,
            "unique_name": identity.upn,
            "upn": identity.upn,
            "ver": "1.0",
        }))),
        Version::V2 => shared.key.sign(&as_claims(json!({
            "aud": client_id,
            "iss": shared.v2_issuer(),
            "iat": now,
            "nbf": now,
            "exp": exp,
            "name": identity.name,
            "oid": identity.oid,
            "preferred_username": identity.upn,
            "sub": sub,
            "tid": shared.scenario.tenant_id,
            "uti": uti(),
            "ver": "2.0",
        }))),
    }
}

fn response(
    shared: &Shared,
    req: &TokenRequest<'_>,
    identity: &Identity,
    client_id: &str,
    target: &Target,
    refresh_token: Option<String>,
    now: u64,
) -> Value {
    let lifetime = shared.scenario.token_lifetime.as_secs().max(1);
    let claims = access_token_claims(
        shared,
        identity,
        client_id,
        &target.resource,
        &target.permission,
        now,
    );
    let access_token = shared.key.sign(&claims);
    let mut body = match req.version {
        // v1 numbers are strings, and there is an absolute `expires_on`.
        Version::V1 => json!({
            "token_type": "Bearer",
            "scope": target.permission,
            "expires_in": lifetime.to_string(),
            "ext_expires_in": lifetime.to_string(),
            "expires_on": (now + lifetime).to_string(),
            "not_before": now.to_string(),
            "resource": target.resource,
            "access_token": access_token,
        }),
        Version::V2 => json!({
            "token_type": "Bearer",
            "scope": target.scopes.join(" "),
            "expires_in": lifetime,
            "ext_expires_in": lifetime,
            "access_token": access_token,
        }),
    };
    let Some(obj) = body.as_object_mut() else {
        return body;
    };
    if let Some(rt) = refresh_token {
        obj.insert("refresh_token".into(), rt.into());
    }
    if target.openid {
        obj.insert(
            "id_token".into(),
            id_token(shared, req.version, identity, client_id, now).into(),
        );
    }
    if req.version == Version::V2 && form_get(req.form, "client_info") == Some("1") {
        let info = json!({"uid": identity.oid, "utid": shared.scenario.tenant_id});
        obj.insert("client_info".into(), jwt::b64_json(&info).into());
    }
    body
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v2_scopes() {
        let t = parse_v2_scope(
            "https://management.core.windows.net//.default openid offline_access profile",
        )
        .expect("valid scope");
        assert_eq!(t.resource, "https://management.core.windows.net/");
        assert_eq!(t.permission, "user_impersonation");
        assert!(t.openid && t.offline_access);
        assert_eq!(
            t.scopes,
            [
                "https://management.core.windows.net//user_impersonation",
                "https://management.core.windows.net//.default"
            ]
        );
        let t =
            parse_v2_scope("6dae42f8-4368-4678-94ff-3960e28e3630/.default").expect("valid scope");
        assert_eq!(t.resource, AKS_SERVER_APP_ID);
        assert!(!t.openid && !t.offline_access);
        assert_eq!(
            parse_v2_scope("openid profile").map_err(|e| e.code),
            Err(70011)
        );
        assert_eq!(
            parse_v2_scope("https://a/.default https://b/.default").map_err(|e| e.code),
            Err(28000)
        );
        assert_eq!(parse_v2_scope("User.Read").map_err(|e| e.code), Err(70011));
    }

    #[test]
    fn resource_normalization() {
        assert_eq!(
            normalize_resource("spn:6DAE42F8-4368-4678-94ff-3960e28e3630"),
            AKS_SERVER_APP_ID
        );
        assert_eq!(
            normalize_resource("https://management.core.windows.net/"),
            normalize_resource("https://management.core.windows.net")
        );
        assert_eq!(normalize_resource("spn"), "spn");
    }
}
