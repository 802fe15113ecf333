//! The client credentials grant (`grant_type=client_credentials`) on both
//! token endpoints: a service principal signs in as itself with a client
//! secret, with a client assertion signed by its registered certificate,
//! or with a federated token (workload identity, [`crate::workload`]).
//!
//! The request: v1 `resource`, or v2 `scope` = exactly one
//! `<resource>/.default` (anything else, `openid` included, is
//! `invalid_scope` AADSTS1002012); `client_id`; then `client_secret`, or
//! `client_assertion_type=urn:ietf:params:oauth:client-assertion-type:jwt-bearer`
//! with `client_assertion`. Neither: AADSTS7000218. Unknown client:
//! AADSTS700016. Only a tenant (GUID or domain) may be named: `common` and
//! `organizations` get AADSTS9001023.
//!
//! Secrets: a wrong one is `invalid_client` AADSTS7000215 (HTTP 401), a
//! right one that [`crate::Emulator::expire_client_secret`] expired is
//! AADSTS7000222.
//!
//! Certificate assertions (an assertion whose `iss` is the client id), each
//! check with Entra's answer, all `invalid_client` and HTTP 401:
//! 1. three base64url JSON parts: AADSTS50027 (malformed JWT);
//! 2. `iss` = `sub` = `client_id`: AADSTS700021;
//! 3. `aud` = the tenant's token endpoint, v1 or v2 form, tenant as GUID or
//!    as one of its domains, whichever endpoint is called (case-insensitive,
//!    trailing slash ignored): AADSTS700023 ("does not match Realm issuer");
//! 4. header `x5t` (SHA-1) and/or `x5t#S256` (SHA-256) thumbprint, base64url:
//!    none is AADSTS50027, one that is not the registered certificate's is
//!    AADSTS700027 "The key was not found";
//! 5. `alg` RS256 or PS256 (Entra's documentation now shows PS256; MSAL
//!    sends RS256): anything else AADSTS5002738;
//! 6. the registered certificate has not expired (its `notAfter`, or
//!    [`crate::Emulator::expire_certificate`]): AADSTS700027 "The key used
//!    is expired";
//! 7. the signature verifies with the certificate's RSA key: AADSTS700027;
//! 8. `exp` in the future, `nbf` (optional) at most five minutes ahead:
//!    AADSTS700024. Entra sets no upper limit on `exp` (documented), so
//!    neither does the emulator; [`crate::Counters::longest_assertion_lifetime`]
//!    lets a test hold a client to short assertions instead;
//! 9. a `jti` not seen before for this client. Entra does **not** reject a
//!    repeated assertion (MSAL for Python reuses one for up to nine
//!    minutes), so there is no real code: the emulator, stricter on
//!    purpose, answers `invalid_client` AADSTS50013 ("Assertion is
//!    invalid", Entra's generic assertion failure) and counts the replay;
//!    [`crate::Emulator::set_assertion_replay_check`] turns the refusal off.
//!
//! Access tokens for a service principal are v1-shaped like user tokens but
//! app-only: `idtyp` `app`, `appid` = the client id, `appidacr` `1`
//! (secret) or `2` (certificate or federated token), `oid` = `sub` = the
//! service principal's object id, `idp` = the issuer, no `upn`, `scp` or
//! `name`. No refresh token and no id token are issued.

use std::collections::HashMap;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::{Value, json};

use crate::aad_error::AadError;
use crate::counters::Counters;
use crate::emulator::{Shared, State};
use crate::http::form_get;
use crate::jwt::Claims;
use crate::scenario::ServicePrincipalSpec;
use crate::token::{Tenant, TokenRequest, Version, is_known_resource};
use crate::{time, workload, x509};

pub(crate) const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// Clock skew allowed on `nbf`, as Entra allows.
const NBF_SKEW: u64 = 300;

fn aad(status: u16, error: &'static str, code: u32, message: impl Into<String>) -> AadError {
    AadError {
        status,
        error,
        code,
        message: message.into(),
        suberror: None,
        retry_after: None,
    }
}

const CERT_DOC: &str = "Review the documentation at \
    https://learn.microsoft.com/entra/identity-platform/certificate-credentials .";

/// Entra's answers for client authentication (wording from recorded
/// answers; see the module comment for where the emulator had to choose).
impl AadError {
    pub(crate) fn missing_client_credential() -> AadError {
        aad(
            401,
            "invalid_client",
            7_000_218,
            "The request body must contain the following parameter: 'client_assertion' or \
             'client_secret'.",
        )
    }

    pub(crate) fn invalid_client_secret(client_id: &str) -> AadError {
        aad(
            401,
            "invalid_client",
            7_000_215,
            format!(
                "Invalid client secret provided. Ensure the secret being sent in the request is \
                 the client secret value, not the client secret ID, for a secret added to app \
                 '{client_id}'."
            ),
        )
    }

    pub(crate) fn client_secret_expired(client_id: &str) -> AadError {
        aad(
            401,
            "invalid_client",
            7_000_222,
            format!(
                "The provided client secret keys for app '{client_id}' are expired. Visit the \
                 Azure portal to create new keys for your app: https://aka.ms/NewClientSecret, \
                 or consider using certificate credentials for added security: \
                 https://aka.ms/certCreds."
            ),
        )
    }

    pub(crate) fn client_credentials_scope(scope: &str) -> AadError {
        aad(
            400,
            "invalid_scope",
            1_002_012,
            format!(
                "The provided value for scope {scope} is not valid. Client credential flows must \
                 have a scope value with /.default suffixed to the resource identifier \
                 (application ID URI)."
            ),
        )
    }

    pub(crate) fn malformed_assertion() -> AadError {
        aad(
            401,
            "invalid_client",
            50_027,
            "JWT token is invalid or malformed.",
        )
    }

    pub(crate) fn assertion_without_thumbprint() -> AadError {
        aad(
            401,
            "invalid_client",
            50_027,
            "Invalid JWT token. No certificate thumbprint specified in token header.",
        )
    }

    pub(crate) fn assertion_algorithm(alg: &str) -> AadError {
        aad(
            401,
            "invalid_client",
            5_002_738,
            format!(
                "Invalid JWT token. '{alg}' is not a supported signature algorithm. Supported \
                 signing algorithms are: 'RS256, PS256'"
            ),
        )
    }

    pub(crate) fn assertion_app_mismatch() -> AadError {
        aad(
            401,
            "invalid_client",
            700_021,
            format!(
                "Client assertion application identifier doesn't match 'client_id' parameter. \
                 {CERT_DOC}"
            ),
        )
    }

    pub(crate) fn assertion_audience() -> AadError {
        aad(
            401,
            "invalid_client",
            700_023,
            format!("Client assertion audience claim does not match Realm issuer. {CERT_DOC}"),
        )
    }

    /// AADSTS700027 with Entra's bracketed reason.
    pub(crate) fn assertion_signature(
        client_id: &str,
        reason: &str,
        thumbprint: &str,
        found: Option<(u64, u64)>,
    ) -> AadError {
        let found = found.map_or_else(String::new, |(start, end)| {
            format!(
                " Found key 'Start={}, End={}',",
                key_date(start),
                key_date(end)
            )
        });
        aad(
            401,
            "invalid_client",
            700_027,
            format!(
                "Client assertion contains an invalid signature. [Reason - {reason}, Thumbprint \
                 of key used by client: '{thumbprint}',{found} Please visit the Azure Portal, \
                 Graph Explorer or directly use MS Graph to see configured keys for app Id \
                 '{client_id}'. Review the documentation at \
                 https://docs.microsoft.com/en-us/graph/deployments to determine the \
                 corresponding service endpoint and \
                 https://docs.microsoft.com/en-us/graph/api/application-get?view=graph-rest-1.0&tabs=http \
                 to build a query request URL, such as \
                 'https://graph.microsoft.com/beta/applications/{client_id}']"
            ),
        )
    }

    pub(crate) fn federated_signature_invalid() -> AadError {
        aad(
            401,
            "invalid_client",
            700_027,
            "Client assertion failed signature validation.",
        )
    }

    pub(crate) fn assertion_time_range(now: u64, nbf: u64, exp: u64) -> AadError {
        aad(
            401,
            "invalid_client",
            700_024,
            format!(
                "Client assertion is not within its valid time range. Current time: {}, \
                 assertion valid from {}, expiry time of assertion {}. {CERT_DOC}",
                instant(now),
                instant(nbf),
                instant(exp)
            ),
        )
    }

    /// No real code exists: Entra accepts replays (module comment).
    pub(crate) fn assertion_replayed(jti: &str) -> AadError {
        let what = if jti.is_empty() {
            "has no 'jti' claim, so it cannot be told apart from a replay".to_owned()
        } else {
            format!("with 'jti' '{jti}' was already presented")
        };
        aad(
            401,
            "invalid_client",
            50_013,
            format!(
                "Assertion is invalid: the client assertion {what}. (Emulator check: Entra \
                 itself accepts a repeated client assertion.)"
            ),
        )
    }

    pub(crate) fn no_matching_federated_credential(iss: &str, sub: &str, aud: &str) -> AadError {
        aad(
            400,
            "invalid_request",
            70_021,
            format!(
                "No matching federated identity record found for presented assertion. Assertion \
                 Issuer: '{iss}'. Assertion Subject: '{sub}'. Assertion Audience: '{aud}'. \
                 https://docs.microsoft.com/en-us/azure/active-directory/develop/workload-identity-federation"
            ),
        )
    }
}

/// `2024-05-28T06:01:42.0000000Z`, as 700024 prints instants.
fn instant(unix: u64) -> String {
    let s = time::rfc3339(unix);
    format!("{}.0000000Z", s.trim_end_matches('Z'))
}

/// `05/28/2024 06:01:42`, as 700027 prints a key's validity.
fn key_date(unix: u64) -> String {
    let s = time::rfc3339(unix);
    match (s.get(0..4), s.get(5..7), s.get(8..10), s.get(11..19)) {
        (Some(y), Some(m), Some(d), Some(t)) => format!("{m}/{d}/{y} {t}"),
        _ => s,
    }
}

/// Runtime state of the service principals' credentials.
pub(crate) struct AppState {
    /// Current secret per client id (lower case); tests may rotate it.
    secrets: HashMap<String, String>,
    /// Clients whose secret has expired.
    expired_secrets: HashMap<String, bool>,
    /// Clients whose registered certificate has expired.
    expired_certificates: HashMap<String, bool>,
    /// `(client id, jti)` of accepted certificate assertions, until their
    /// `exp`.
    seen_jtis: HashMap<(String, String), u64>,
    /// Refuse repeated assertions (the emulator's default, not Entra's).
    pub replay_check: bool,
}

impl AppState {
    pub(crate) fn new(sps: &[ServicePrincipalSpec]) -> AppState {
        AppState {
            secrets: sps
                .iter()
                .filter_map(|sp| Some((sp.client_id.to_lowercase(), sp.secret.clone()?)))
                .collect(),
            expired_secrets: HashMap::new(),
            expired_certificates: HashMap::new(),
            seen_jtis: HashMap::new(),
            replay_check: true,
        }
    }

    pub(crate) fn set_secret(&mut self, client_id: &str, secret: &str) {
        let key = client_id.to_lowercase();
        self.expired_secrets.remove(&key);
        self.secrets.insert(key, secret.to_owned());
    }

    pub(crate) fn expire_secret(&mut self, client_id: &str) {
        self.expired_secrets.insert(client_id.to_lowercase(), true);
    }

    pub(crate) fn expire_certificate(&mut self, client_id: &str) {
        self.expired_certificates
            .insert(client_id.to_lowercase(), true);
    }

    /// Records a `jti`; false when it was seen before (and has not expired).
    fn remember_jti(&mut self, client_id: &str, jti: &str, exp: u64, now: u64) -> bool {
        self.seen_jtis.retain(|_, until| *until > now);
        self.seen_jtis
            .insert((client_id.to_lowercase(), jti.to_owned()), exp)
            .is_none()
    }
}

/// A JWT taken apart, without any check beyond its form.
pub(crate) struct AssertionParts<'a> {
    pub token: &'a str,
    pub header: Claims,
    pub claims: Claims,
    signing_input: &'a str,
    signature: Vec<u8>,
}

impl<'a> AssertionParts<'a> {
    pub(crate) fn parse(token: &'a str) -> Option<AssertionParts<'a>> {
        let mut parts = token.split('.');
        let (Some(h), Some(p), Some(s), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return None;
        };
        let json = |part: &str| -> Option<Claims> {
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).ok()?).ok()
        };
        Some(AssertionParts {
            token,
            header: json(h)?,
            claims: json(p)?,
            signing_input: token.get(..h.len() + 1 + p.len())?,
            signature: URL_SAFE_NO_PAD.decode(s).ok()?,
        })
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.header.get(name).and_then(Value::as_str)
    }

    fn claim(&self, name: &str) -> &str {
        self.claims.get(name).and_then(Value::as_str).unwrap_or("")
    }
}

/// A NumericDate claim in whole seconds. RFC 7519 allows fractions, and
/// MSAL for Python sends them (`time.time() + 600`).
fn numeric_date(claims: &Claims, name: &str) -> Option<u64> {
    let v = claims.get(name)?;
    v.as_u64().or_else(|| {
        v.as_f64()
            .filter(|f| f.is_finite() && *f >= 0.0)
            .map(|f| f as u64)
    })
}

/// Step 8 of the module comment, shared with federated tokens.
pub(crate) fn check_assertion_times(claims: &Claims, now: u64) -> Result<(), AadError> {
    let exp = numeric_date(claims, "exp").unwrap_or(0);
    let nbf = numeric_date(claims, "nbf").unwrap_or(0);
    if now >= exp || nbf > now + NBF_SKEW {
        return Err(AadError::assertion_time_range(now, nbf, exp));
    }
    Ok(())
}

/// A base64url (or, leniently, standard base64) thumbprint.
fn decode_thumbprint(value: &str) -> Option<Vec<u8>> {
    let trimmed = value.trim_end_matches('=');
    URL_SAFE_NO_PAD
        .decode(trimmed)
        .ok()
        .or_else(|| STANDARD.decode(value).ok())
}

fn hex_upper(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}

/// What the request's client authentication proved.
enum Credential {
    Secret,
    Assertion,
}

impl Credential {
    /// `appidacr`: 1 for a secret, 2 for a certificate or federated token.
    fn appidacr(&self) -> &'static str {
        match self {
            Credential::Secret => "1",
            Credential::Assertion => "2",
        }
    }
}

/// The resource a client-credentials request names.
fn resource(req: &TokenRequest<'_>) -> Result<String, AadError> {
    match req.version {
        Version::V1 => form_get(req.form, "resource")
            .map(str::to_owned)
            .ok_or_else(|| AadError::missing_parameter("resource")),
        Version::V2 => {
            let scope =
                form_get(req.form, "scope").ok_or_else(|| AadError::missing_parameter("scope"))?;
            let mut resource: Option<&str> = None;
            for s in scope.split_whitespace() {
                let r = s
                    .strip_suffix("/.default")
                    .filter(|r| !r.is_empty())
                    .ok_or_else(|| AadError::client_credentials_scope(s))?;
                match resource {
                    Some(existing) if existing != r => return Err(AadError::several_resources()),
                    _ => resource = Some(r),
                }
            }
            resource
                .map(str::to_owned)
                .ok_or_else(|| AadError::client_credentials_scope(scope))
        }
    }
}

/// Answers a `client_credentials` token request.
pub(crate) fn token(
    shared: &Shared,
    state: &mut State,
    req: &TokenRequest<'_>,
    tenant: Tenant,
    now: u64,
) -> Result<Value, AadError> {
    if tenant != Tenant::Home {
        return Err(AadError::grant_needs_tenant());
    }
    let client_id =
        form_get(req.form, "client_id").ok_or_else(|| AadError::missing_parameter("client_id"))?;
    let Some(sp) = shared.scenario.service_principal(client_id) else {
        return Err(AadError::unknown_client(client_id, shared.tenant_name()));
    };
    let key = sp.client_id.to_lowercase();
    Counters::bump(
        &mut state.counters.client_credential_grants_by_client,
        key.clone(),
    );
    let resource = resource(req)?;
    if !is_known_resource(shared, &resource) {
        return Err(AadError::unknown_resource(&resource, shared.tenant_name()));
    }
    let credential = authenticate_client(shared, state, req, sp, now).inspect_err(|_| {
        Counters::bump(
            &mut state.counters.client_credential_failures_by_client,
            key.clone(),
        );
    })?;
    Ok(response(
        shared,
        req.version,
        sp,
        &resource,
        &credential,
        now,
    ))
}

fn authenticate_client(
    shared: &Shared,
    state: &mut State,
    req: &TokenRequest<'_>,
    sp: &ServicePrincipalSpec,
    now: u64,
) -> Result<Credential, AadError> {
    if let Some(assertion) = form_get(req.form, "client_assertion") {
        let kind = form_get(req.form, "client_assertion_type")
            .ok_or_else(|| AadError::missing_parameter("client_assertion_type"))?;
        if kind != JWT_BEARER {
            return Err(AadError::malformed());
        }
        let key = sp.client_id.to_lowercase();
        let result = match AssertionParts::parse(assertion) {
            None => Err(AadError::malformed_assertion()),
            // A certificate assertion names the app itself as issuer;
            // anything else must be a federated token.
            Some(parts) if parts.claim("iss").eq_ignore_ascii_case(&sp.client_id) => {
                certificate_assertion(shared, state, sp, &parts, now)
            }
            Some(parts) if sp.federated.is_some() => {
                workload::validate(&shared.workload_issuer, sp, &parts, now)
            }
            Some(_) => Err(AadError::assertion_app_mismatch()),
        };
        if result.is_err() {
            Counters::bump(&mut state.counters.assertion_failures_by_client, key);
        }
        return result.map(|()| Credential::Assertion);
    }
    if let Some(secret) = form_get(req.form, "client_secret") {
        let key = sp.client_id.to_lowercase();
        let registered = state.apps.secrets.get(&key).map(String::as_bytes);
        if !registered.is_some_and(|r| constant_time_eq(r, secret.as_bytes())) {
            return Err(AadError::invalid_client_secret(&sp.client_id));
        }
        if state.apps.expired_secrets.contains_key(&key) {
            return Err(AadError::client_secret_expired(&sp.client_id));
        }
        return Ok(Credential::Secret);
    }
    Err(AadError::missing_client_credential())
}

/// The token endpoint URLs an assertion may name as `aud`.
fn audiences(shared: &Shared) -> Vec<String> {
    let s = &shared.scenario;
    std::iter::once(&s.tenant_id)
        .chain(std::iter::once(&s.tenant_domain))
        .chain(&s.domains)
        .flat_map(|t| {
            [
                format!("{}/{t}/oauth2/token", shared.login_url),
                format!("{}/{t}/oauth2/v2.0/token", shared.login_url),
            ]
        })
        .map(|a| a.to_ascii_lowercase())
        .collect()
}

fn audience_ok(shared: &Shared, parts: &AssertionParts<'_>) -> bool {
    let allowed = audiences(shared);
    let ok = |a: &str| {
        let a = a.trim_end_matches('/').to_ascii_lowercase();
        allowed.contains(&a)
    };
    match parts.claims.get("aud") {
        Some(Value::String(a)) => ok(a),
        Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).any(ok),
        _ => false,
    }
}

fn certificate_assertion(
    shared: &Shared,
    state: &mut State,
    sp: &ServicePrincipalSpec,
    parts: &AssertionParts<'_>,
    now: u64,
) -> Result<(), AadError> {
    let client_id = &sp.client_id;
    if !parts.claim("sub").eq_ignore_ascii_case(client_id) {
        return Err(AadError::assertion_app_mismatch());
    }
    if !audience_ok(shared, parts) {
        return Err(AadError::assertion_audience());
    }
    let x5t = parts.header("x5t");
    let x5t_s256 = parts.header("x5t#S256");
    let shown = match (x5t, x5t_s256) {
        (Some(t), _) => decode_thumbprint(t).map_or_else(|| t.to_owned(), |b| hex_upper(&b)),
        (None, Some(t)) => decode_thumbprint(t).map_or_else(|| t.to_owned(), |b| hex_upper(&b)),
        (None, None) => return Err(AadError::assertion_without_thumbprint()),
    };
    let not_found =
        || AadError::assertion_signature(client_id, "The key was not found.", &shown, None);
    let cert = sp.certificate_der.as_deref().ok_or_else(not_found)?;
    let sha1 = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, cert);
    let sha256 = ring::digest::digest(&ring::digest::SHA256, cert);
    let matches = |given: Option<&str>, digest: &[u8]| {
        given.is_none_or(|g| decode_thumbprint(g).is_some_and(|b| b == digest))
    };
    if !(matches(x5t, sha1.as_ref()) && matches(x5t_s256, sha256.as_ref())) {
        return Err(not_found());
    }
    let info = x509::parse(cert).ok_or_else(not_found)?;
    let found = Some((info.not_before, info.not_after));
    let algorithm: &dyn ring::signature::VerificationAlgorithm = match parts.header("alg") {
        Some("RS256") => &ring::signature::RSA_PKCS1_2048_8192_SHA256,
        Some("PS256") => &ring::signature::RSA_PSS_2048_8192_SHA256,
        other => return Err(AadError::assertion_algorithm(other.unwrap_or(""))),
    };
    let expired = state
        .apps
        .expired_certificates
        .contains_key(&client_id.to_lowercase())
        || now >= info.not_after;
    if expired {
        return Err(AadError::assertion_signature(
            client_id,
            "The key used is expired.",
            &shown,
            found,
        ));
    }
    let key = x509::rsa_public_key(info.spki).ok_or_else(not_found)?;
    ring::signature::UnparsedPublicKey::new(algorithm, key)
        .verify(parts.signing_input.as_bytes(), &parts.signature)
        .map_err(|_| {
            AadError::assertion_signature(
                client_id,
                "The provided signature value did not match the expected signature value.",
                &shown,
                found,
            )
        })?;
    check_assertion_times(&parts.claims, now)?;

    let exp = numeric_date(&parts.claims, "exp").unwrap_or(0);
    let jti = parts.claim("jti");
    let key = client_id.to_lowercase();
    let fresh = !jti.is_empty() && state.apps.remember_jti(client_id, jti, exp, now);
    if !fresh {
        Counters::bump(&mut state.counters.assertion_replays_by_client, key.clone());
        if state.apps.replay_check {
            return Err(AadError::assertion_replayed(jti));
        }
    }
    let longest = state
        .counters
        .assertion_lifetime_max_by_client
        .entry(key)
        .or_default();
    *longest = (*longest).max(exp.saturating_sub(now));
    Ok(())
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The object id of a service principal, stable across runs.
pub(crate) fn service_principal_oid(client_id: &str) -> String {
    crate::directory::object_id(&format!("servicePrincipal:{client_id}"))
}

/// Claims of an app-only v1 access token (module comment).
pub(crate) fn app_token_claims(
    shared: &Shared,
    client_id: &str,
    resource: &str,
    appidacr: &str,
    now: u64,
) -> Claims {
    let exp = now + shared.scenario.token_lifetime.as_secs().max(1);
    let oid = service_principal_oid(client_id);
    let claims = json!({
        "aud": resource,
        "iss": shared.v1_issuer(),
        "iat": now,
        "nbf": now,
        "exp": exp,
        "appid": client_id,
        "appidacr": appidacr,
        "idp": shared.v1_issuer(),
        "idtyp": "app",
        "oid": oid,
        "sub": oid,
        "tid": shared.scenario.tenant_id,
        "uti": URL_SAFE_NO_PAD.encode(uuid::Uuid::new_v4().as_bytes()),
        "ver": "1.0",
    });
    match claims {
        Value::Object(map) => map,
        _ => Claims::new(),
    }
}

fn response(
    shared: &Shared,
    version: Version,
    sp: &ServicePrincipalSpec,
    resource: &str,
    credential: &Credential,
    now: u64,
) -> Value {
    let lifetime = shared.scenario.token_lifetime.as_secs().max(1);
    let claims = app_token_claims(shared, &sp.client_id, resource, credential.appidacr(), now);
    let access_token = shared.key.sign(&claims);
    match version {
        Version::V1 => json!({
            "token_type": "Bearer",
            "expires_in": lifetime.to_string(),
            "ext_expires_in": lifetime.to_string(),
            "expires_on": (now + lifetime).to_string(),
            "not_before": now.to_string(),
            "resource": resource,
            "access_token": access_token,
        }),
        Version::V2 => json!({
            "token_type": "Bearer",
            "expires_in": lifetime,
            "ext_expires_in": lifetime,
            "access_token": access_token,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(instant(1_716_876_102), "2024-05-28T06:01:42.0000000Z");
        assert_eq!(key_date(1_612_717_239), "02/07/2021 17:00:39");
        assert_eq!(hex_upper(&[0xb1, 0x0c]), "B10C");
        assert_eq!(decode_thumbprint("sQw"), Some(vec![0xb1, 0x0c]));
        assert_eq!(decode_thumbprint("sQw="), Some(vec![0xb1, 0x0c]));
        assert_eq!(decode_thumbprint("!!"), None);
    }

    #[test]
    fn assertion_parts_never_panic() {
        for bad in [
            "",
            "a",
            "a.b",
            "a.b.c.d",
            "e30.e30.!!",
            "W10.e30.",
            "e30.W10.",
        ] {
            assert!(AssertionParts::parse(bad).is_none(), "{bad}");
        }
        let ok = AssertionParts::parse("e30.e30.").expect("empty objects, empty signature");
        assert_eq!(ok.claim("iss"), "");
        assert!(ok.signature.is_empty());
    }

    #[test]
    fn times() {
        let c = |v: Value| match v {
            Value::Object(m) => m,
            _ => Claims::new(),
        };
        let now = 1_000_000;
        assert!(check_assertion_times(&c(json!({"exp": now + 600})), now).is_ok());
        assert!(
            check_assertion_times(&c(json!({"exp": now + 600, "nbf": now + 300})), now).is_ok()
        );
        let e = check_assertion_times(&c(json!({"exp": now})), now).map_err(|e| e.code);
        assert_eq!(e, Err(700_024));
        let e = check_assertion_times(&c(json!({"exp": now + 900, "nbf": now + 301})), now)
            .map_err(|e| e.code);
        assert_eq!(e, Err(700_024));
        assert!(
            check_assertion_times(&c(json!({"exp": now as f64 + 600.25})), now).is_ok(),
            "fractional NumericDates, as MSAL for Python sends"
        );
        let e =
            check_assertion_times(&c(json!({"exp": now as f64 - 0.5})), now).map_err(|e| e.code);
        assert_eq!(e, Err(700_024));
        let e = check_assertion_times(&c(json!({})), now).map_err(|e| e.message);
        assert!(
            e.is_err_and(|m| m.contains("assertion valid from 1970-01-01T00:00:00.0000000Z")),
            "a missing nbf reads as the epoch, as Entra prints it"
        );
    }

    #[test]
    fn jtis_are_remembered_until_they_expire() {
        let mut apps = AppState::new(&[]);
        assert!(apps.remember_jti("C", "j1", 200, 100));
        assert!(
            !apps.remember_jti("c", "j1", 200, 150),
            "client ids compare case-insensitively"
        );
        assert!(apps.remember_jti("other", "j1", 200, 150));
        assert!(
            apps.remember_jti("c", "j1", 400, 200),
            "forgotten once expired"
        );
    }
}
