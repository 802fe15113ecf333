//! The token endpoint (PROTOCOLS.md 5): building the form, reading the answer.
//!
//! The form body carries the password or refresh token, so it is built into
//! a buffer reserved up front (no reallocation leaves a copy behind) and
//! handed out as a [`Secret`].

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde::Deserialize;

use super::EntraError;
use crate::cloud::scope_for;
use crate::secret::Secret;

/// Which token endpoint: v1 speaks `resource`, v2 speaks `scope`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Endpoint {
    V1,
    V2,
}

impl Endpoint {
    fn label(self) -> &'static str {
        match self {
            Endpoint::V1 => "the v1 token endpoint",
            Endpoint::V2 => "the v2 token endpoint",
        }
    }
}

/// How the client proves who it is. Client credentials get their own
/// variant when they come.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Grant {
    /// Resource-owner password credentials (ROPC).
    Password {
        username: String,
        password: Secret,
    },
    RefreshToken(Secret),
    /// A SAML assertion from a federation server (RFC 7522), obtained with
    /// the password over WS-Trust: see [`super::EntraClient::federated_grant`].
    Saml {
        grant_type: SamlVersion,
        /// The assertion element exactly as the federation server sent it.
        assertion: Secret,
    },
    /// Client credentials with a client secret (a service principal).
    ClientSecret(Secret),
    /// Client credentials with a signed JWT (RFC 7523): a certificate's
    /// assertion, or a workload identity's federated token.
    ClientAssertion(Secret),
}

const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// Which SAML bearer grant an assertion is redeemed with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SamlVersion {
    Saml11,
    Saml20,
}

impl SamlVersion {
    pub fn grant_type(self) -> &'static str {
        match self {
            SamlVersion::Saml11 => "urn:ietf:params:oauth:grant-type:saml1_1-bearer",
            SamlVersion::Saml20 => "urn:ietf:params:oauth:grant-type:saml2-bearer",
        }
    }
}

/// A [`Grant`] without its secret: for error classification and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GrantKind {
    Password,
    RefreshToken,
    /// A SAML assertion: it stands for the password, so its refusals are
    /// judged like the password's.
    Saml,
    /// Client credentials: the application's own secret, certificate or
    /// federated token. No refresh token comes back.
    ClientCredentials,
}

impl Grant {
    pub fn kind(&self) -> GrantKind {
        match self {
            Grant::Password { .. } => GrantKind::Password,
            Grant::RefreshToken(_) => GrantKind::RefreshToken,
            Grant::Saml { .. } => GrantKind::Saml,
            Grant::ClientSecret(_) | Grant::ClientAssertion(_) => GrantKind::ClientCredentials,
        }
    }

    fn grant_type(&self) -> &'static str {
        match self {
            Grant::Password { .. } => "password",
            Grant::RefreshToken(_) => "refresh_token",
            Grant::Saml { grant_type, .. } => grant_type.grant_type(),
            Grant::ClientSecret(_) | Grant::ClientAssertion(_) => "client_credentials",
        }
    }
}

/// One token request. `resource` is the v1 resource (`https://management.core.windows.net/`,
/// an AKS server id, `spn:<id>`); for v2 it becomes `<resource>/.default`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRequest {
    pub endpoint: Endpoint,
    pub tenant: String,
    pub client_id: String,
    pub resource: String,
    pub grant: Grant,
}

/// What a successful answer gives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenGrant {
    pub access_token: Secret,
    /// A new refresh token replaces the old one (which may no longer work).
    pub refresh_token: Option<Secret>,
    /// On the local wall clock.
    pub expires_on: SystemTime,
    /// The v1 `resource` echoed back.
    pub resource: Option<String>,
}

/// A path segment: everything but unreserved characters is encoded, so a
/// tenant name cannot add path segments or a query.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

pub(crate) fn encode_segment(s: &str) -> String {
    utf8_percent_encode(s, SEGMENT).to_string()
}

/// `{login}/{tenant}/oauth2/token?api-version=1.0` (v1, as ADAL sends it) or `{login}/{tenant}/oauth2/v2.0/token` (v2).
pub fn token_url(login: &str, tenant: &str, endpoint: Endpoint) -> String {
    let login = login.trim_end_matches('/');
    let tenant = encode_segment(tenant);
    match endpoint {
        Endpoint::V1 => format!("{login}/{tenant}/oauth2/token?api-version=1.0"),
        Endpoint::V2 => format!("{login}/{tenant}/oauth2/v2.0/token"),
    }
}

/// The `application/x-www-form-urlencoded` body of a token request.
pub fn form(req: &TokenRequest) -> Secret {
    let scope;
    let mut fields: Vec<(&str, &str)> = vec![
        ("grant_type", req.grant.grant_type()),
        ("client_id", &req.client_id),
    ];
    match req.endpoint {
        Endpoint::V1 => {
            fields.push(("resource", &req.resource));
            // ADAL asks for an id token with the password (and with the
            // assertion that stands for it); not needed on a refresh.
            if !matches!(
                req.grant.kind(),
                GrantKind::RefreshToken | GrantKind::ClientCredentials
            ) {
                fields.push(("scope", "openid"));
            }
        }
        // An application asks for `.default` alone: there is no user to
        // identify and no refresh token to keep.
        Endpoint::V2 if req.grant.kind() == GrantKind::ClientCredentials => {
            scope = scope_for(&req.resource);
            fields.push(("scope", &scope));
        }
        Endpoint::V2 => {
            scope = format!("{} openid offline_access profile", scope_for(&req.resource));
            fields.push(("scope", &scope));
            fields.push(("client_info", "1"));
        }
    }
    // Standard base64 with padding, as ADAL and MSAL for .NET and Go send
    // it (MSAL for Python sends URL-safe without padding; Entra takes both).
    let assertion;
    match &req.grant {
        Grant::Password { username, password } => {
            fields.push(("username", username));
            fields.push(("password", password.expose()));
        }
        Grant::RefreshToken(token) => fields.push(("refresh_token", token.expose())),
        Grant::Saml {
            assertion: saml, ..
        } => {
            assertion = Secret::new(STANDARD.encode(saml.expose()));
            fields.push(("assertion", assertion.expose()));
        }
        Grant::ClientSecret(secret) => fields.push(("client_secret", secret.expose())),
        Grant::ClientAssertion(jwt) => {
            fields.push(("client_assertion_type", JWT_BEARER));
            fields.push(("client_assertion", jwt.expose()));
        }
    }
    encode_form(&fields)
}

fn encode_form(fields: &[(&str, &str)]) -> Secret {
    // Percent-encoding at most triples a byte; `&` and `=` add two per pair.
    let capacity = fields
        .iter()
        .map(|(k, v)| 3 * (k.len() + v.len()) + 2)
        .sum();
    let mut out = String::with_capacity(capacity);
    for (i, (key, value)) in fields.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        for part in url::form_urlencoded::byte_serialize(key.as_bytes()) {
            out.push_str(part);
        }
        out.push('=');
        for part in url::form_urlencoded::byte_serialize(value.as_bytes()) {
            out.push_str(part);
        }
    }
    debug_assert!(out.len() <= capacity);
    Secret::new(out)
}

/// A number the v1 endpoint sends as a string and v2 as an integer; MSAL
/// accepts either in both places, and so do we.
#[derive(Deserialize)]
#[serde(untagged)]
enum Lenient {
    Int(u64),
    Float(f64),
    Str(String),
}

impl Lenient {
    fn seconds(&self) -> Option<u64> {
        match self {
            Lenient::Int(n) => Some(*n),
            Lenient::Float(f) if f.is_finite() && *f >= 0.0 => Some(f.trunc() as u64),
            Lenient::Float(_) => None,
            Lenient::Str(s) => s.trim().parse().ok(),
        }
    }
}

#[derive(Deserialize)]
struct RawGrant {
    access_token: Option<String>,
    refresh_token: Option<String>,
    expires_in: Option<Lenient>,
    expires_on: Option<Lenient>,
    resource: Option<String>,
    token_type: Option<String>,
}

/// Reads a 2xx answer of the token endpoint.
///
/// The expiry comes from `expires_in` counted from `now` (the local clock)
/// when present, like MSAL: it stays right when the local clock is off, as
/// kubectl compares it with the same clock. `expires_on` (the server's clock)
/// is the fallback.
pub fn parse_token_response(
    body: &[u8],
    endpoint: Endpoint,
    now: SystemTime,
) -> Result<TokenGrant, EntraError> {
    let malformed = |what: String| EntraError::Malformed {
        what,
        endpoint: endpoint.label().to_string(),
    };
    // Only the position of a JSON error is reported: serde's message can
    // quote a value, and values here are tokens.
    let raw: RawGrant = serde_json::from_slice(body).map_err(|e| {
        malformed(format!(
            "the answer is not the expected JSON object (error at line {}, column {})",
            e.line(),
            e.column()
        ))
    })?;
    let access_token = raw
        .access_token
        .filter(|t| !t.is_empty())
        .map(Secret::new)
        .ok_or_else(|| malformed("the answer has no access_token".into()))?;
    let refresh_token = raw.refresh_token.filter(|t| !t.is_empty()).map(Secret::new);
    if let Some(kind) = raw.token_type.as_deref()
        && !kind.eq_ignore_ascii_case("bearer")
    {
        return Err(malformed(format!("the token type is {kind:?}, not Bearer")));
    }
    let from_expires_in = raw
        .expires_in
        .as_ref()
        .and_then(Lenient::seconds)
        .and_then(|secs| now.checked_add(Duration::from_secs(secs)));
    let from_expires_on = || {
        raw.expires_on
            .as_ref()
            .and_then(Lenient::seconds)
            .and_then(|secs| UNIX_EPOCH.checked_add(Duration::from_secs(secs)))
    };
    let expires_on = from_expires_in
        .or_else(from_expires_on)
        .ok_or_else(|| malformed("the answer has no usable expires_in or expires_on".into()))?;
    if expires_on <= now {
        return Err(malformed("the token is already expired".into()));
    }
    Ok(TokenGrant {
        access_token,
        refresh_token,
        expires_on,
        resource: raw.resource.filter(|r| !r.is_empty()),
    })
}

/// For logs: a form with its secrets replaced. Never log the real body.
pub fn describe(req: &TokenRequest) -> String {
    format!(
        "{:?} grant for client {} resource {} in tenant {}",
        req.grant.kind(),
        req.client_id,
        req.resource,
        req.tenant
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_547_575_528)
    }

    fn password_request(endpoint: Endpoint) -> TokenRequest {
        TokenRequest {
            endpoint,
            tenant: "contoso.onmicrosoft.com".into(),
            client_id: "04b07795-8ddb-461a-bbee-02f9e1bf7b46".into(),
            resource: "https://management.core.windows.net/".into(),
            grant: Grant::Password {
                username: "alice@contoso.com".into(),
                password: Secret::new("p@ss w&rd=1+%"),
            },
        }
    }

    fn pairs(body: &Secret) -> Vec<(String, String)> {
        url::form_urlencoded::parse(body.expose().as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect()
    }

    fn field(pairs: &[(String, String)], key: &str) -> Option<String> {
        pairs.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone())
    }

    #[test]
    fn urls() {
        assert_eq!(
            token_url(
                "https://login.microsoftonline.com",
                "contoso.onmicrosoft.com",
                Endpoint::V1
            ),
            "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/token?api-version=1.0"
        );
        assert_eq!(
            token_url("https://login.microsoftonline.us/", "t", Endpoint::V2),
            "https://login.microsoftonline.us/t/oauth2/v2.0/token"
        );
        assert_eq!(
            token_url("https://l", "a/b?c", Endpoint::V1),
            "https://l/a%2Fb%3Fc/oauth2/token?api-version=1.0"
        );
    }

    #[test]
    fn v1_password_form() {
        let p = pairs(&form(&password_request(Endpoint::V1)));
        let keys: Vec<&str> = p.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            keys,
            [
                "grant_type",
                "client_id",
                "resource",
                "scope",
                "username",
                "password"
            ]
        );
        assert_eq!(field(&p, "grant_type").unwrap(), "password");
        assert_eq!(
            field(&p, "resource").unwrap(),
            "https://management.core.windows.net/"
        );
        assert_eq!(field(&p, "scope").unwrap(), "openid");
        assert_eq!(field(&p, "username").unwrap(), "alice@contoso.com");
        assert_eq!(field(&p, "password").unwrap(), "p@ss w&rd=1+%");
    }

    #[test]
    fn v2_password_form() {
        let p = pairs(&form(&password_request(Endpoint::V2)));
        assert_eq!(
            field(&p, "scope").unwrap(),
            "https://management.core.windows.net//.default openid offline_access profile"
        );
        assert_eq!(field(&p, "client_info").unwrap(), "1");
        assert_eq!(field(&p, "resource"), None);
        assert_eq!(field(&p, "password").unwrap(), "p@ss w&rd=1+%");
    }

    #[test]
    fn saml_forms() {
        let assertion = "<saml:Assertion MajorVersion=\"1\">\u{e4}+/x</saml:Assertion>";
        for (version, grant_type) in [
            (
                SamlVersion::Saml11,
                "urn:ietf:params:oauth:grant-type:saml1_1-bearer",
            ),
            (
                SamlVersion::Saml20,
                "urn:ietf:params:oauth:grant-type:saml2-bearer",
            ),
        ] {
            let mut req = password_request(Endpoint::V1);
            req.grant = Grant::Saml {
                grant_type: version,
                assertion: Secret::new(assertion),
            };
            assert_eq!(req.grant.kind(), GrantKind::Saml);
            assert!(!format!("{req:?}").contains("Assertion"));
            let p = pairs(&form(&req));
            let keys: Vec<&str> = p.iter().map(|(k, _)| k.as_str()).collect();
            assert_eq!(
                keys,
                ["grant_type", "client_id", "resource", "scope", "assertion"]
            );
            assert_eq!(field(&p, "grant_type").unwrap(), grant_type);
            // Standard base64 with padding of the exact bytes.
            let sent = field(&p, "assertion").unwrap();
            assert_eq!(STANDARD.decode(&sent).unwrap(), assertion.as_bytes());
            assert!(sent.ends_with('='), "{sent}");
            assert_eq!(field(&p, "password"), None);
            req.endpoint = Endpoint::V2;
            let p = pairs(&form(&req));
            assert_eq!(field(&p, "client_info").unwrap(), "1");
            assert_eq!(
                STANDARD.decode(field(&p, "assertion").unwrap()).unwrap(),
                assertion.as_bytes()
            );
        }
    }

    #[test]
    fn refresh_forms() {
        let mut req = password_request(Endpoint::V1);
        req.grant = Grant::RefreshToken(Secret::new("0.AAA-rt"));
        let p = pairs(&form(&req));
        assert_eq!(field(&p, "grant_type").unwrap(), "refresh_token");
        assert_eq!(field(&p, "refresh_token").unwrap(), "0.AAA-rt");
        assert_eq!(field(&p, "scope"), None);
        assert_eq!(field(&p, "password"), None);
        req.endpoint = Endpoint::V2;
        let p = pairs(&form(&req));
        assert_eq!(field(&p, "refresh_token").unwrap(), "0.AAA-rt");
        assert!(
            field(&p, "scope")
                .unwrap()
                .ends_with("/.default openid offline_access profile")
        );
    }

    #[test]
    fn form_never_reallocates() {
        // The worst case for percent-encoding: every byte becomes %XX.
        let mut req = password_request(Endpoint::V2);
        req.grant = Grant::Password {
            username: "ü".repeat(50),
            password: Secret::new("\u{1F600}&=".repeat(100)),
        };
        let body = form(&req);
        assert!(body.expose().len() > 1000);
        assert_eq!(
            field(&pairs(&body), "password").unwrap(),
            "\u{1F600}&=".repeat(100)
        );
    }

    #[test]
    fn v1_answer_with_string_numbers() {
        let body = br#"{"token_type":"Bearer","expires_in":"3599","ext_expires_in":"3599","expires_on":"1547579127","not_before":"1547575227","resource":"https://management.core.windows.net/","access_token":"eyJ0eXAi.access","refresh_token":"AQABAAAA.refresh","id_token":"eyJ0eXAi.id"}"#;
        let g = parse_token_response(body, Endpoint::V1, now()).unwrap();
        assert_eq!(g.access_token.expose(), "eyJ0eXAi.access");
        assert_eq!(
            g.refresh_token.as_ref().unwrap().expose(),
            "AQABAAAA.refresh"
        );
        assert_eq!(g.expires_on, now() + Duration::from_secs(3599));
        assert_eq!(
            g.resource.as_deref(),
            Some("https://management.core.windows.net/")
        );
    }

    #[test]
    fn v2_answer_with_integers() {
        let body = br#"{"token_type":"Bearer","scope":"https://management.core.windows.net//user_impersonation","expires_in":86399,"ext_expires_in":86399,"access_token":"at","refresh_token":"rt","client_info":"eyJ1aWQiOiJ4In0"}"#;
        let g = parse_token_response(body, Endpoint::V2, now()).unwrap();
        assert_eq!(g.expires_on, now() + Duration::from_secs(86399));
        assert_eq!(g.resource, None);
    }

    #[test]
    fn lenient_numbers_either_way() {
        let body = br#"{"access_token":"at","expires_in":"60"}"#;
        let g = parse_token_response(body, Endpoint::V2, now()).unwrap();
        assert_eq!(g.expires_on, now() + Duration::from_secs(60));
        assert!(g.refresh_token.is_none());
        let body = br#"{"access_token":"at","expires_in":60.0}"#;
        let g = parse_token_response(body, Endpoint::V1, now()).unwrap();
        assert_eq!(g.expires_on, now() + Duration::from_secs(60));
        // Only expires_on, as an integer.
        let body = br#"{"access_token":"at","expires_on":1547579127}"#;
        let g = parse_token_response(body, Endpoint::V1, now()).unwrap();
        assert_eq!(
            g.expires_on,
            UNIX_EPOCH + Duration::from_secs(1_547_579_127)
        );
        // An unusable expires_in falls back to expires_on.
        let body = br#"{"access_token":"at","expires_in":"soon","expires_on":"1547579127"}"#;
        let g = parse_token_response(body, Endpoint::V1, now()).unwrap();
        assert_eq!(
            g.expires_on,
            UNIX_EPOCH + Duration::from_secs(1_547_579_127)
        );
    }

    #[test]
    fn missing_fields_and_garbage() {
        let cases: &[(&[u8], &str)] = &[
            (br#"{"expires_in":3599}"#, "no access_token"),
            (
                br#"{"access_token":"","expires_in":3599}"#,
                "no access_token",
            ),
            (br#"{"access_token":"at"}"#, "no usable expires_in"),
            (
                br#"{"access_token":"at","expires_in":-5}"#,
                "no usable expires_in",
            ),
            (
                br#"{"access_token":"at","expires_in":0}"#,
                "already expired",
            ),
            (
                br#"{"access_token":"at","expires_on":"100"}"#,
                "already expired",
            ),
            (
                br#"{"access_token":"at","expires_in":1,"token_type":"pop"}"#,
                "not Bearer",
            ),
            (b"<html>hi</html>", "not the expected JSON"),
            (b"", "not the expected JSON"),
            (b"[]", "not the expected JSON"),
            (
                br#"{"access_token":42,"expires_in":1}"#,
                "not the expected JSON",
            ),
        ];
        for (body, want) in cases {
            let err = parse_token_response(body, Endpoint::V2, now()).unwrap_err();
            let text = err.to_string();
            assert!(
                text.contains(want),
                "{}: {text}",
                String::from_utf8_lossy(body)
            );
            assert!(text.contains("v2 token endpoint"), "{text}");
        }
        // An absurd lifetime must not overflow.
        let body = br#"{"access_token":"at","expires_in":18446744073709551615}"#;
        assert!(parse_token_response(body, Endpoint::V2, now()).is_err());
    }

    #[test]
    fn debug_never_shows_secrets() {
        let mut req = password_request(Endpoint::V1);
        req.grant = Grant::Password {
            username: "alice@contoso.com".into(),
            password: Secret::new("hunter2-password"),
        };
        let text = format!("{req:?} {:?}", req.grant);
        assert!(!text.contains("hunter2-password"), "{text}");
        assert!(text.contains("alice@contoso.com"));
        let rt = Grant::RefreshToken(Secret::new("refresh-secret-value"));
        assert!(!format!("{rt:?}").contains("refresh-secret-value"));
        let g = TokenGrant {
            access_token: Secret::new("access-secret-value"),
            refresh_token: Some(Secret::new("refresh-secret-value")),
            expires_on: now(),
            resource: None,
        };
        let text = format!("{g:?}");
        assert!(!text.contains("secret-value"), "{text}");
        assert!(!format!("{:?}", form(&req)).contains("hunter2"));
        assert!(!describe(&req).contains("hunter2"));
    }
}
