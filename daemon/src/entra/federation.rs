//! Federated sign-in (PROTOCOLS.md 2-4): the password goes to the
//! organisation's federation server (AD FS) over WS-Trust, which answers
//! with a SAML assertion that Entra ID exchanges for tokens.
//!
//! [`EntraClient::federated_grant`] is the one entry point: metadata (MEX)
//! → WS-Trust endpoint → one RST → RSTR → [`Grant::Saml`], which the caller
//! redeems with [`EntraClient::token`] as usual.
//!
//! Lockout: exactly one WS-Trust request is sent per call, never retried
//! here; whether to try again is the broker's decision, from
//! [`EntraError::class`]. A `FailedAuthentication` fault (AD FS's answer to
//! a wrong password, with HTTP 500) or a `RequestFailed` one (its "access
//! denied", extranet lockout included) is permanent; other faults and 5xx
//! answers are transient. Only the metadata document is fetched before the
//! password is sent, and a failure there falls back to the user realm's
//! `federation_active_auth_url`, as ADAL does.

use std::time::{Duration, SystemTime};

use reqwest::header::{ACCEPT, CONTENT_TYPE};
use zeroize::Zeroizing;

use super::error::ErrorClass;
use super::mex::{self, MAX_MEX, WsTrustEndpoint, WsTrustVersion};
use super::realm::UserRealm;
use super::token::Grant;
use super::wstrust::{self, MAX_RSTR, RstError, RstrError, SoapFault};
use super::{EntraClient, EntraError, endpoint_label, is_transient_status, retry_after};
use crate::cloud::Cloud;
use crate::http::{HttpError, read_capped};
use crate::secret::Secret;

/// What went wrong on the federation server's side of a sign-in.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FederationError {
    /// The federation server judged the sign-in and refused it
    /// ([`SoapFault::is_refusal`]): permanent, like AADSTS50126.
    #[error("the federation server {endpoint} refused the username or password: {fault}")]
    Refused { endpoint: String, fault: SoapFault },
    /// Any other SOAP fault: the server could not judge (its own trouble,
    /// a throttle, a relying-party setup): transient.
    #[error("the federation server {endpoint} answered HTTP {status} with the fault {fault}")]
    Fault {
        endpoint: String,
        status: u16,
        fault: SoapFault,
        retry_after: Option<Duration>,
    },
    /// An error status without a SOAP fault.
    #[error("the federation server {endpoint} answered HTTP {status} without a SOAP fault")]
    Status {
        endpoint: String,
        status: u16,
        retry_after: Option<Duration>,
    },
    /// A success status whose body is not a usable WS-Trust answer.
    #[error("the federation server {endpoint} gave an unexpected answer: {reason}")]
    Malformed { endpoint: String, reason: RstrError },
    /// No WS-Trust endpoint to send the password to: the metadata could not
    /// be used and the user realm names no usable fallback.
    #[error("cannot find the federation server's username/password endpoint: {reason}")]
    NoEndpoint { reason: String, transient: bool },
    /// The password (or username) cannot be put into a WS-Trust request.
    #[error("{0}")]
    Request(RstError),
}

impl FederationError {
    pub fn class(&self) -> ErrorClass {
        match self {
            FederationError::Refused { .. } | FederationError::Request(_) => ErrorClass::Permanent,
            FederationError::Fault { .. } | FederationError::Malformed { .. } => {
                ErrorClass::Transient
            }
            // A 4xx without a fault may hide a refused password: when in
            // doubt, do not send it again.
            FederationError::Status { status, .. } => {
                if is_transient_status(*status) {
                    ErrorClass::Transient
                } else {
                    ErrorClass::Permanent
                }
            }
            FederationError::NoEndpoint { transient, .. } => {
                if *transient {
                    ErrorClass::Transient
                } else {
                    ErrorClass::Permanent
                }
            }
        }
    }

    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            FederationError::Fault { retry_after, .. }
            | FederationError::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    pub fn hint(&self) -> &'static str {
        match self {
            FederationError::Refused { .. } => {
                "the federation server (your organisation's sign-in), not Entra ID, refused the \
                 password: check it there, fix the password source, then run `akscred retry \
                 IDENTITY`; repeated failures can lock the account"
            }
            FederationError::Request(_) => {
                "fix the password source, then run `akscred retry IDENTITY`"
            }
            FederationError::NoEndpoint {
                transient: false, ..
            } => {
                "ask the federation server's administrator to enable the WS-Trust usernamemixed \
                 endpoint and its metadata, then run `akscred retry IDENTITY`"
            }
            FederationError::Status { .. } if self.class() == ErrorClass::Permanent => {
                "check the federation server named in the user realm and any proxy in between, \
                 then run `akscred retry IDENTITY`"
            }
            _ => {
                "none needed: akscred retries by itself; if it persists, ask the federation server's administrator"
            }
        }
    }
}

impl From<FederationError> for EntraError {
    fn from(e: FederationError) -> EntraError {
        EntraError::Federation(Box::new(e))
    }
}

/// Why the metadata gave no endpoint.
struct MexFailure {
    reason: String,
    transient: bool,
}

impl EntraClient {
    /// Signs `username` in at the federation server of `realm` and returns
    /// the SAML assertion as a grant for [`EntraClient::token`]. Sends the
    /// password exactly once (one WS-Trust request), or not at all when no
    /// endpoint can be found. `now` stamps the request's security header.
    pub async fn federated_grant(
        &self,
        cloud: &Cloud,
        realm: &UserRealm,
        username: &str,
        password: &Secret,
        now: SystemTime,
    ) -> Result<Grant, EntraError> {
        let endpoint = self.wstrust_endpoint(cloud, realm).await?;
        let label = endpoint_label(&endpoint.url);
        let _timer = crate::metrics::upstream(crate::metrics::Upstream::WsTrust);
        let message_id = uuid::Uuid::new_v4();
        let rst = wstrust::build_rst(
            &endpoint,
            username,
            password,
            &realm.cloud_audience_urn,
            message_id,
            now,
        )
        .map_err(FederationError::Request)?;
        let resp = self
            .http
            .post(&endpoint.url)
            .header(CONTENT_TYPE, "application/soap+xml; charset=utf-8")
            .header("SOAPAction", endpoint.version.action())
            // The copy reqwest needs, as for the token endpoint.
            .body(rst.expose().to_owned())
            .send()
            .await
            .map_err(|e| HttpError::transport(&label, e))?;
        drop(rst);
        let status = resp.status();
        tracing::debug!(
            cloud = %cloud.name,
            endpoint = %label,
            version = %endpoint.version,
            status = status.as_u16(),
            %message_id,
            "WS-Trust request"
        );
        let retry_after = retry_after(resp.headers(), now);
        let status_error = || FederationError::Status {
            endpoint: label.clone(),
            status: status.as_u16(),
            retry_after,
        };
        // The body holds the assertion: wiped when dropped.
        let body = match read_capped(resp, MAX_RSTR).await {
            Ok(body) => Zeroizing::new(body),
            Err(e) if status.is_success() => return Err(e.into()),
            Err(_) => return Err(status_error().into()),
        };
        match wstrust::parse_rstr(&body) {
            Ok(rstr) if status.is_success() => Ok(Grant::Saml {
                grant_type: rstr.version,
                assertion: rstr.assertion,
            }),
            // A token with an error status is not trusted.
            Ok(_) => Err(status_error().into()),
            Err(RstrError::Fault(fault)) => {
                tracing::debug!(endpoint = %label, status = status.as_u16(), %fault, "WS-Trust fault");
                Err(if fault.is_refusal() {
                    FederationError::Refused {
                        endpoint: label,
                        fault,
                    }
                } else {
                    FederationError::Fault {
                        endpoint: label,
                        status: status.as_u16(),
                        fault,
                        retry_after,
                    }
                }
                .into())
            }
            Err(reason) if status.is_success() => Err(FederationError::Malformed {
                endpoint: label,
                reason,
            }
            .into()),
            Err(_) => Err(status_error().into()),
        }
    }

    /// The endpoint from the metadata, else the realm's fallback.
    async fn wstrust_endpoint(
        &self,
        cloud: &Cloud,
        realm: &UserRealm,
    ) -> Result<WsTrustEndpoint, EntraError> {
        let failure = match &realm.federation_metadata_url {
            Some(url) => match self.mex(url).await {
                Ok(endpoint) => {
                    tracing::debug!(cloud = %cloud.name, mex = %endpoint_label(url), endpoint = %endpoint_label(&endpoint.url), version = %endpoint.version, "WS-Trust endpoint from the metadata");
                    return Ok(endpoint);
                }
                Err(f) => Some((endpoint_label(url), f)),
            },
            None => None,
        };
        match (fallback(realm), failure) {
            (Ok(endpoint), Some((mex, f))) => {
                tracing::warn!(
                    cloud = %cloud.name,
                    %mex,
                    reason = %f.reason,
                    fallback = %endpoint_label(&endpoint.url),
                    version = %endpoint.version,
                    "cannot use the federation metadata; falling back to the user realm's federation_active_auth_url"
                );
                Ok(endpoint)
            }
            (Ok(endpoint), None) => {
                tracing::info!(cloud = %cloud.name, endpoint = %endpoint_label(&endpoint.url), version = %endpoint.version, "the user realm names no federation metadata; using its federation_active_auth_url");
                Ok(endpoint)
            }
            (Err(why), Some((mex, f))) => Err(FederationError::NoEndpoint {
                reason: format!("the metadata {mex}: {}; {why}", f.reason),
                transient: f.transient,
            }
            .into()),
            (Err(why), None) => Err(FederationError::NoEndpoint {
                reason: format!("the user realm names no federation metadata; {why}"),
                transient: false,
            }
            .into()),
        }
    }

    async fn mex(&self, url: &str) -> Result<WsTrustEndpoint, MexFailure> {
        let _timer = crate::metrics::upstream(crate::metrics::Upstream::Mex);
        if !is_https(url) {
            return Err(MexFailure {
                reason: "is not an https URL".into(),
                transient: false,
            });
        }
        let label = endpoint_label(url);
        let resp = self
            .http
            .get(url)
            .header(ACCEPT, "application/soap+xml, application/xml, text/xml")
            .send()
            .await
            .map_err(|e| MexFailure {
                reason: HttpError::transport(&label, e).to_string(),
                transient: true,
            })?;
        let status = resp.status();
        tracing::debug!(mex = %label, status = status.as_u16(), "federation metadata");
        if !status.is_success() {
            return Err(MexFailure {
                reason: format!("answered HTTP {}", status.as_u16()),
                transient: is_transient_status(status.as_u16()),
            });
        }
        let body = read_capped(resp, MAX_MEX).await.map_err(|e| MexFailure {
            transient: matches!(e, HttpError::Transport { .. }),
            reason: e.to_string(),
        })?;
        mex::parse_mex(&body).map_err(|e| MexFailure {
            reason: e.to_string(),
            transient: false,
        })
    }
}

/// The user realm's `federation_active_auth_url`, with the WS-Trust version
/// its path names; or why it cannot be used.
fn fallback(realm: &UserRealm) -> Result<WsTrustEndpoint, String> {
    let url = realm
        .federation_active_auth_url
        .as_deref()
        .ok_or("the user realm names no federation_active_auth_url to fall back to")?;
    let Some(parsed) = url::Url::parse(url)
        .ok()
        .filter(|u| u.scheme() == "https" && u.host_str().is_some())
    else {
        return Err(format!(
            "the fallback {} is not https, and the password is not sent in clear",
            endpoint_label(url)
        ));
    };
    let version = WsTrustVersion::from_url_path(parsed.as_str()).ok_or_else(|| {
        format!(
            "the fallback {} names neither /trust/13/usernamemixed nor /trust/2005/usernamemixed",
            endpoint_label(url)
        )
    })?;
    Ok(WsTrustEndpoint {
        url: parsed.into(),
        version,
    })
}

fn is_https(url: &str) -> bool {
    url::Url::parse(url).is_ok_and(|u| u.scheme() == "https" && u.host_str().is_some())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entra::realm::{AccountType, DEFAULT_AUDIENCE_URN};
    use crate::http::fake::{Canned, client, serve};

    fn realm(mex: Option<&str>, active: Option<&str>) -> UserRealm {
        UserRealm {
            account_type: AccountType::Federated,
            domain_name: Some("fabrikam.com".into()),
            federation_protocol: Some("WSTrust".into()),
            federation_metadata_url: mex.map(str::to_string),
            federation_active_auth_url: active.map(str::to_string),
            cloud_instance_name: Some("microsoftonline.com".into()),
            cloud_audience_urn: DEFAULT_AUDIENCE_URN.into(),
        }
    }

    fn cloud() -> Cloud {
        Cloud {
            name: "lab".into(),
            login_endpoint: "https://login.example.test".into(),
            arm_endpoint: "https://management.example.test".into(),
            arm_resource: "https://management.core.windows.net/".into(),
        }
    }

    fn fault(subcode: &str) -> SoapFault {
        SoapFault {
            code: Some("s:Sender".into()),
            subcodes: vec![subcode.into()],
            reason: Some(
                "ID3242: The security token could not be authenticated or authorized.".into(),
            ),
        }
    }

    #[test]
    fn classes() {
        let e = |f: FederationError| EntraError::from(f);
        let refused = e(FederationError::Refused {
            endpoint: "https://sts.fabrikam.com/adfs/services/trust/13/usernamemixed".into(),
            fault: fault("a:FailedAuthentication"),
        });
        assert_eq!(refused.class(), ErrorClass::Permanent);
        assert_eq!(
            refused.to_string(),
            "the federation server https://sts.fabrikam.com/adfs/services/trust/13/usernamemixed \
             refused the username or password: a:FailedAuthentication (ID3242: The security \
             token could not be authenticated or authorized.)"
        );
        assert!(refused.hint().contains("akscred retry IDENTITY"));
        assert_eq!(refused.code(), None);

        let other = e(FederationError::Fault {
            endpoint: "e".into(),
            status: 500,
            fault: fault("a:InvalidSecurity"),
            retry_after: Some(Duration::from_secs(5)),
        });
        assert_eq!(other.class(), ErrorClass::Transient);
        assert_eq!(other.retry_after(), Some(Duration::from_secs(5)));

        let status = |status| {
            e(FederationError::Status {
                endpoint: "e".into(),
                status,
                retry_after: None,
            })
            .class()
        };
        assert_eq!(status(500), ErrorClass::Transient);
        assert_eq!(status(503), ErrorClass::Transient);
        assert_eq!(status(429), ErrorClass::Transient);
        assert_eq!(status(401), ErrorClass::Permanent);
        assert_eq!(status(404), ErrorClass::Permanent);

        let malformed = e(FederationError::Malformed {
            endpoint: "e".into(),
            reason: RstrError::NoToken,
        });
        assert_eq!(malformed.class(), ErrorClass::Transient);
        assert_eq!(
            e(FederationError::Request(RstError::ControlCharacter(
                "password"
            )))
            .class(),
            ErrorClass::Permanent
        );
        for transient in [true, false] {
            let x = e(FederationError::NoEndpoint {
                reason: "r".into(),
                transient,
            });
            assert_eq!(x.class() == ErrorClass::Transient, transient);
        }
        // The broker boxes errors: this one too must stay small.
        assert!(std::mem::size_of::<EntraError>() <= 64);
    }

    #[test]
    fn fallback_rules() {
        let ep = fallback(&realm(
            None,
            Some("https://sts.fabrikam.com/adfs/services/trust/2005/usernamemixed"),
        ))
        .unwrap();
        assert_eq!(ep.version, WsTrustVersion::V2005);
        let ep = fallback(&realm(
            None,
            Some("https://sts.fabrikam.com/adfs/services/trust/13/usernamemixed"),
        ))
        .unwrap();
        assert_eq!(ep.version, WsTrustVersion::V13);
        let e = fallback(&realm(
            None,
            Some("https://sts.fabrikam.com/adfs/services/trust/13/windowstransport"),
        ))
        .unwrap_err();
        assert!(e.contains("names neither"), "{e}");
        let e = fallback(&realm(
            None,
            Some("http://sts.fabrikam.com/adfs/services/trust/13/usernamemixed"),
        ))
        .unwrap_err();
        assert!(e.contains("not https"), "{e}");
        assert!(
            fallback(&realm(None, None))
                .unwrap_err()
                .contains("no federation_active_auth_url")
        );
    }

    /// The unit-test upstream speaks plain HTTP, which the metadata rules
    /// refuse: no request goes out, and the error says why. The full
    /// exchange over TLS is tested against the emulator
    /// (`tests/tests/federation.rs`).
    /// bob's sign-in with `r`, which these tests expect to fail.
    async fn refused(entra: &EntraClient, r: &UserRealm) -> EntraError {
        entra
            .federated_grant(
                &cloud(),
                r,
                "bob@fabrikam.com",
                &Secret::new("pw"),
                SystemTime::now(),
            )
            .await
            .unwrap_err()
    }

    #[tokio::test]
    async fn plain_http_metadata_is_not_used_and_nothing_is_sent() {
        let (base, mut seen) = serve(vec![Canned::json(200, "{}")]).await;
        let entra = EntraClient::new(client());
        let r = realm(Some(&format!("{base}/adfs/services/trust/mex")), None);
        let err = refused(&entra, &r).await;
        assert_eq!(err.class(), ErrorClass::Permanent, "{err}");
        assert!(err.to_string().contains("not an https URL"), "{err}");
        assert!(seen.try_recv().is_err(), "nothing may be sent");

        let r = realm(None, None);
        let err = refused(&entra, &r).await;
        assert!(
            err.to_string().contains("names no federation metadata"),
            "{err}"
        );
        assert_eq!(err.class(), ErrorClass::Permanent);
    }

    #[tokio::test]
    async fn unreachable_metadata_without_fallback_is_transient() {
        let entra = EntraClient::new(client());
        let r = realm(Some("https://127.0.0.1:9/adfs/services/trust/mex"), None);
        let err = refused(&entra, &r).await;
        assert_eq!(err.class(), ErrorClass::Transient, "{err}");
        assert!(err.to_string().contains("127.0.0.1:9"), "{err}");
        assert!(!format!("{err:?}").contains("pw\""));
    }
}
