//! Microsoft Entra ID: user realm discovery, federated sign-in (MEX and
//! WS-Trust, in `federation`) and the token endpoint.
//!
//! Each protocol step is a file of pure build/parse functions; [`EntraClient`]
//! is the thin HTTP layer on top. Nothing here logs a token, password,
//! assertion or form body: the debug log names endpoint, status and the
//! `client-request-id` Entra echoes in its sign-in log.

pub mod assertion;
pub mod error;
pub mod federation;
pub mod mex;
pub mod realm;
pub mod token;
pub mod wstrust;
mod xml;

use std::time::{Duration, SystemTime};

use reqwest::StatusCode;
use reqwest::header::{ACCEPT, CONTENT_TYPE, HeaderMap, RETRY_AFTER};

pub use error::{AadError, ErrorClass, classify};
pub use federation::FederationError;
pub use realm::{AccountType, UserRealm};
pub use token::{Endpoint, Grant, GrantKind, SamlVersion, TokenGrant, TokenRequest};

use crate::cloud::Cloud;
use crate::http::{HttpError, endpoint_of, read_capped};

/// Entra's answers are a few KiB; anything near this is not Entra.
pub const MAX_BODY: usize = 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum EntraError {
    /// Connecting, TLS, timeouts, or an oversized answer; names the endpoint.
    #[error(transparent)]
    Http(#[from] HttpError),
    /// A non-2xx answer without Entra's error JSON (a proxy's page, say).
    #[error("{endpoint} answered HTTP {status} without an Entra ID error")]
    Status {
        endpoint: String,
        status: u16,
        retry_after: Option<Duration>,
        grant: Option<GrantKind>,
    },
    /// Boxed: the other variants are small, and this error travels inside
    /// the broker's errors.
    #[error("{0}")]
    Aad(Box<AadError>),
    /// A 2xx answer that is not what the protocol says.
    #[error("{endpoint} gave an unexpected answer: {what}")]
    Malformed { what: String, endpoint: String },
    /// The federation server's side of a federated sign-in (metadata,
    /// WS-Trust). Boxed like [`EntraError::Aad`].
    #[error(transparent)]
    Federation(Box<FederationError>),
}

impl EntraError {
    /// What the broker does next.
    ///
    /// - Transport failures, 5xx, 429 and 408 are transient. A timeout after
    ///   the request was sent leaves its outcome unknown; backoff keeps any
    ///   repeat slow.
    /// - A malformed 2xx is transient: a 2xx means the credential was
    ///   accepted, so asking again cannot count towards a lockout.
    /// - A 4xx without Entra's error JSON may hide a refused password, so it
    ///   is permanent for a password and ends a refresh token.
    pub fn class(&self) -> ErrorClass {
        match self {
            EntraError::Http(HttpError::Transport { .. } | HttpError::TooLarge { .. }) => {
                ErrorClass::Transient
            }
            // Local setup (CA file, TLS): no retry fixes it.
            EntraError::Http(_) => ErrorClass::Permanent,
            EntraError::Status { status, grant, .. } => {
                if is_transient_status(*status) {
                    ErrorClass::Transient
                } else if *grant == Some(GrantKind::RefreshToken) {
                    ErrorClass::RefreshTokenDead
                } else {
                    ErrorClass::Permanent
                }
            }
            EntraError::Aad(e) => classify(e),
            EntraError::Malformed { .. } => ErrorClass::Transient,
            EntraError::Federation(e) => e.class(),
        }
    }

    /// The AADSTS code, for status reports.
    pub fn code(&self) -> Option<u32> {
        match self {
            EntraError::Aad(e) => e.code(),
            _ => None,
        }
    }

    /// How long upstream asked us to wait.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            EntraError::Aad(e) => e.retry_after,
            EntraError::Status { retry_after, .. } => *retry_after,
            EntraError::Federation(e) => e.retry_after(),
            _ => None,
        }
    }

    /// What a person should do.
    pub fn hint(&self) -> &'static str {
        match self {
            EntraError::Aad(e) => e.hint(),
            EntraError::Federation(e) => e.hint(),
            EntraError::Http(HttpError::Transport { .. }) => {
                "check the network, proxy (HTTPS_PROXY) and ca_file; akscred retries by itself"
            }
            EntraError::Http(_) => "fix the TLS setup (ca_file), then restart akscredd",
            _ => match self.class() {
                ErrorClass::Transient => "none needed: akscred retries by itself",
                _ => {
                    "check login_endpoint and any proxy in between, then run `akscred retry IDENTITY`"
                }
            },
        }
    }

    /// Names the real URL in place of the generic label a pure parser uses.
    fn at(self, endpoint: &str) -> EntraError {
        match self {
            EntraError::Malformed { what, .. } => EntraError::Malformed {
                what,
                endpoint: endpoint.to_string(),
            },
            other => other,
        }
    }
}

fn is_transient_status(status: u16) -> bool {
    status == 408 || status == 429 || (500..=599).contains(&status)
}

fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?;
    error::parse_retry_after(value, now)
}

/// Talks to Entra ID. Cheap to clone: the HTTP client is shared.
#[derive(Debug, Clone)]
pub struct EntraClient {
    http: reqwest::Client,
}

impl EntraClient {
    pub fn new(http: reqwest::Client) -> EntraClient {
        EntraClient { http }
    }

    /// The realm of `upn`, or `None` when the cloud has no realm discovery
    /// (404): then go straight to the password grant.
    pub async fn user_realm(
        &self,
        cloud: &Cloud,
        upn: &str,
    ) -> Result<Option<UserRealm>, EntraError> {
        let _timer = crate::metrics::upstream(crate::metrics::Upstream::Realm);
        let url = realm::realm_url(&cloud.login_endpoint, upn);
        let endpoint = endpoint_label(&url);
        let resp = self
            .http
            .get(&url)
            .header(ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| HttpError::transport(&endpoint, e))?;
        let status = resp.status();
        tracing::debug!(%endpoint, status = status.as_u16(), "user realm");
        if status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !status.is_success() {
            return Err(EntraError::Status {
                endpoint,
                status: status.as_u16(),
                retry_after: None,
                grant: None,
            });
        }
        let body = read_capped(resp, MAX_BODY).await?;
        realm::parse_realm(&body)
            .map(Some)
            .map_err(|e| e.at(&endpoint))
    }

    /// One token request. `now` is the wall clock the expiry is counted
    /// from.
    pub async fn token(
        &self,
        cloud: &Cloud,
        req: &TokenRequest,
        now: SystemTime,
    ) -> Result<TokenGrant, EntraError> {
        let _timer = crate::metrics::upstream(crate::metrics::Upstream::Token);
        let url = token::token_url(&cloud.login_endpoint, &req.tenant, req.endpoint);
        let endpoint = endpoint_label(&url);
        let request_id = uuid::Uuid::new_v4();
        let body = token::form(req);
        let resp = self
            .http
            .post(&url)
            .header(ACCEPT, "application/json")
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header("client-request-id", request_id.to_string())
            .header("return-client-request-id", "true")
            // reqwest needs an owned body; this copy is the one place the
            // secret leaves zeroizing memory.
            .body(body.expose().to_owned())
            .send()
            .await
            .map_err(|e| HttpError::transport(&endpoint, e))?;
        drop(body);
        let status = resp.status();
        tracing::debug!(
            %endpoint,
            status = status.as_u16(),
            %request_id,
            grant = ?req.grant.kind(),
            "token request"
        );
        let grant = Some(req.grant.kind());
        if status.is_success() {
            let body = read_capped(resp, MAX_BODY).await?;
            return token::parse_token_response(&body, req.endpoint, now)
                .map_err(|e| e.at(&endpoint));
        }
        let retry_after = retry_after(resp.headers(), now);
        let status_error = || EntraError::Status {
            endpoint: endpoint.clone(),
            status: status.as_u16(),
            retry_after,
            grant,
        };
        let body = match read_capped(resp, MAX_BODY).await {
            Ok(body) => body,
            // An oversized or cut-off error page still carries its status,
            // and the status decides.
            Err(_) => return Err(status_error()),
        };
        match error::parse_aad_error(&body, status.as_u16(), retry_after, grant) {
            Some(aad) => {
                tracing::debug!(
                    %endpoint,
                    error = %aad.error,
                    codes = ?aad.codes,
                    class = %classify(&aad),
                    "token request refused"
                );
                Err(EntraError::Aad(Box::new(aad)))
            }
            None => Err(status_error()),
        }
    }
}

/// The URL without its query, as error messages name it.
fn endpoint_label(url: &str) -> String {
    url::Url::parse(url).map_or_else(|_| url.to_string(), |u| endpoint_of(&u))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Callers wrap these errors with context; clippy's result_large_err
    /// fires at 128 bytes.
    #[test]
    fn errors_stay_small() {
        assert!(std::mem::size_of::<EntraError>() <= 64);
        assert!(std::mem::size_of::<crate::aks::ArmError>() <= 80);
    }

    #[test]
    fn classes_of_non_aad_errors() {
        let status = |status, grant| EntraError::Status {
            endpoint: "https://login.example.test/t/oauth2/token".into(),
            status,
            retry_after: None,
            grant,
        };
        assert_eq!(
            status(502, Some(GrantKind::Password)).class(),
            ErrorClass::Transient
        );
        assert_eq!(
            status(429, Some(GrantKind::Password)).class(),
            ErrorClass::Transient
        );
        assert_eq!(
            status(403, Some(GrantKind::Password)).class(),
            ErrorClass::Permanent
        );
        assert_eq!(
            status(400, Some(GrantKind::RefreshToken)).class(),
            ErrorClass::RefreshTokenDead
        );
        assert_eq!(status(400, None).class(), ErrorClass::Permanent);
        let malformed = EntraError::Malformed {
            what: "x".into(),
            endpoint: "e".into(),
        };
        assert_eq!(malformed.class(), ErrorClass::Transient);
        let too_large = EntraError::Http(HttpError::TooLarge {
            endpoint: "e".into(),
            limit: 1,
        });
        assert_eq!(too_large.class(), ErrorClass::Transient);
        let ca = EntraError::Http(HttpError::NoTrustAnchors);
        assert_eq!(ca.class(), ErrorClass::Permanent);
    }

    #[test]
    fn errors_name_the_endpoint() {
        let e = EntraError::Status {
            endpoint: "https://login.example.test/t/oauth2/token".into(),
            status: 403,
            retry_after: None,
            grant: None,
        };
        assert!(
            e.to_string()
                .contains("https://login.example.test/t/oauth2/token")
        );
        let e = token::parse_token_response(b"{}", Endpoint::V1, SystemTime::now())
            .unwrap_err()
            .at("https://login.example.test/t/oauth2/token");
        assert!(
            e.to_string()
                .starts_with("https://login.example.test/t/oauth2/token gave an unexpected answer"),
            "{e}"
        );
    }

    use crate::http::fake::{Canned, client, serve};
    use crate::secret::Secret;
    use std::time::UNIX_EPOCH;

    fn cloud(base: &str) -> Cloud {
        Cloud {
            name: "lab".into(),
            login_endpoint: base.into(),
            arm_endpoint: base.into(),
            arm_resource: "https://management.core.windows.net/".into(),
        }
    }

    fn request() -> TokenRequest {
        TokenRequest {
            endpoint: Endpoint::V2,
            tenant: "contoso.onmicrosoft.com".into(),
            client_id: "04b07795-8ddb-461a-bbee-02f9e1bf7b46".into(),
            resource: "https://management.core.windows.net/".into(),
            grant: Grant::Password {
                username: "alice@contoso.com".into(),
                password: Secret::new("s3cret pass"),
            },
        }
    }

    fn now() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_700_000_000)
    }

    #[tokio::test]
    async fn realm_exchange() {
        let (base, mut seen) = serve(vec![
            Canned::json(
                200,
                r#"{"ver":"1.0","account_type":"Managed","domain_name":"contoso.com"}"#,
            ),
            Canned::json(404, "{}"),
            Canned::json(503, "<html/>"),
        ])
        .await;
        let entra = EntraClient::new(client());
        let realm = entra
            .user_realm(&cloud(&base), "alice@contoso.com")
            .await
            .unwrap();
        assert_eq!(realm.unwrap().account_type, AccountType::Managed);
        let req = seen.recv().await.unwrap();
        assert_eq!(
            req.request_line,
            "GET /common/userrealm/alice@contoso.com?api-version=1.0 HTTP/1.1"
        );
        assert_eq!(req.header("accept"), Some("application/json"));
        assert_eq!(
            entra
                .user_realm(&cloud(&base), "bob@contoso.com")
                .await
                .unwrap(),
            None
        );
        let err = entra
            .user_realm(&cloud(&base), "carol@contoso.com")
            .await
            .unwrap_err();
        assert_eq!(err.class(), ErrorClass::Transient, "{err}");
    }

    #[tokio::test]
    async fn token_exchange_success() {
        let (base, mut seen) = serve(vec![Canned::json(
            200,
            r#"{"token_type":"Bearer","expires_in":3599,"access_token":"at-value","refresh_token":"rt-value"}"#,
        )])
        .await;
        let entra = EntraClient::new(client());
        let grant = entra.token(&cloud(&base), &request(), now()).await.unwrap();
        assert_eq!(grant.access_token.expose(), "at-value");
        assert_eq!(grant.refresh_token.unwrap().expose(), "rt-value");
        assert_eq!(grant.expires_on, now() + Duration::from_secs(3599));
        let req = seen.recv().await.unwrap();
        assert_eq!(
            req.request_line,
            "POST /contoso.onmicrosoft.com/oauth2/v2.0/token HTTP/1.1"
        );
        assert_eq!(
            req.header("content-type"),
            Some("application/x-www-form-urlencoded")
        );
        assert!(req.header("client-request-id").is_some());
        assert!(
            req.header("user-agent")
                .is_none_or(|ua| !ua.contains("s3cret"))
        );
        let form: Vec<(String, String)> = url::form_urlencoded::parse(&req.body)
            .into_owned()
            .collect();
        assert!(form.contains(&("password".into(), "s3cret pass".into())));
        assert!(form.contains(&("client_info".into(), "1".into())));
    }

    #[tokio::test]
    async fn token_exchange_errors() {
        let (base, _seen) = serve(vec![
            Canned::json(
                400,
                r#"{"error":"invalid_grant","error_description":"AADSTS50126: Error validating credentials due to invalid username or password. Trace ID: x","error_codes":[50126]}"#,
            ),
            Canned::json(429, r#"{"error":"temporarily_unavailable","error_description":"AADSTS50196: slow down"}"#)
                .header("Retry-After", "30"),
            Canned::json(503, "<html>maintenance</html>")
                .header("Retry-After", "Tue, 14 Nov 2023 22:14:20 GMT"),
            Canned::json(400, "<html>proxy says no</html>"),
            Canned::json(200, r#"{"token_type":"Bearer"}"#),
        ])
        .await;
        let entra = EntraClient::new(client());
        let c = cloud(&base);

        let err = entra.token(&c, &request(), now()).await.unwrap_err();
        assert_eq!(err.class(), ErrorClass::Permanent);
        assert_eq!(err.code(), Some(50126));
        assert_eq!(err.to_string(), "AADSTS50126: wrong username or password");
        assert!(!format!("{err:?}").contains("s3cret"));

        let err = entra.token(&c, &request(), now()).await.unwrap_err();
        assert_eq!(err.class(), ErrorClass::Transient);
        assert_eq!(err.retry_after(), Some(Duration::from_secs(30)));

        let err = entra.token(&c, &request(), now()).await.unwrap_err();
        assert!(
            matches!(err, EntraError::Status { status: 503, .. }),
            "{err}"
        );
        assert_eq!(err.class(), ErrorClass::Transient);
        assert_eq!(err.retry_after(), Some(Duration::from_secs(60)));

        let mut refresh = request();
        refresh.grant = Grant::RefreshToken(Secret::new("rt"));
        let err = entra.token(&c, &refresh, now()).await.unwrap_err();
        assert_eq!(err.class(), ErrorClass::RefreshTokenDead, "{err}");

        let err = entra.token(&c, &request(), now()).await.unwrap_err();
        assert!(matches!(err, EntraError::Malformed { .. }), "{err}");
        assert!(err.to_string().contains(&base), "{err}");
        assert_eq!(err.class(), ErrorClass::Transient);
    }

    #[tokio::test]
    async fn unreachable_is_transient() {
        let entra = EntraClient::new(client());
        // Port 9 (discard) on loopback: nothing listens.
        let err = entra
            .token(&cloud("http://127.0.0.1:9"), &request(), now())
            .await
            .unwrap_err();
        assert_eq!(err.class(), ErrorClass::Transient, "{err}");
        assert!(err.to_string().contains("127.0.0.1:9"), "{err}");
    }

    #[test]
    fn endpoint_label_drops_the_query() {
        assert_eq!(
            endpoint_label("https://login.example.test/common/userrealm/a@b.c?api-version=1.0"),
            "https://login.example.test/common/userrealm/a@b.c"
        );
    }
}
