//! Entra ID error answers, in the exact JSON shape of the real service
//! (PROTOCOLS.md section 5): `error`, `error_description` ending in
//! `Trace ID: … Correlation ID: … Timestamp: …`, `error_codes`, `timestamp`,
//! `trace_id`, `correlation_id`, `error_uri`, and `suberror` where Entra
//! sends one. Messages are the service's own wording.

use serde_json::{Value, json};

use crate::time;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AadError {
    pub status: u16,
    pub error: &'static str,
    pub code: u32,
    pub message: String,
    pub suberror: Option<&'static str>,
    /// Seconds, for 429 answers.
    pub retry_after: Option<u64>,
}

impl AadError {
    fn new(status: u16, error: &'static str, code: u32, message: impl Into<String>) -> AadError {
        AadError {
            status,
            error,
            code,
            message: message.into(),
            suberror: None,
            retry_after: None,
        }
    }

    pub fn missing_parameter(name: &str) -> AadError {
        AadError::new(
            400,
            "invalid_request",
            900144,
            format!("The request body must contain the following parameter: '{name}'."),
        )
    }

    pub fn malformed() -> AadError {
        AadError::new(
            400,
            "invalid_request",
            9002313,
            "Invalid request. Request is malformed or invalid.",
        )
    }

    pub fn post_only(method: &str) -> AadError {
        AadError::new(
            400,
            "invalid_request",
            900561,
            format!("The endpoint only accepts POST requests. Received a {method} request."),
        )
    }

    pub fn tenant_not_found(tenant: &str) -> AadError {
        AadError::new(
            400,
            "invalid_request",
            90002,
            format!(
                "Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID \
                 and are signing into the correct cloud. Check with your subscription \
                 administrator, this may happen if there are no active subscriptions for the tenant."
            ),
        )
    }

    /// ROPC (and other non-interactive user grants) on `/common` or
    /// `/consumers` of the v2 endpoint.
    pub fn grant_needs_tenant() -> AadError {
        AadError::new(
            400,
            "invalid_request",
            9001023,
            "The grant type is not supported over the /common or /consumers endpoints. \
             Please use the /organizations or tenant-specific endpoint.",
        )
    }

    pub fn unsupported_grant(grant: &str) -> AadError {
        AadError::new(
            400,
            "unsupported_grant_type",
            70003,
            format!("The app requested an unsupported grant type '{grant}'."),
        )
    }

    pub fn unknown_client(client_id: &str, tenant_name: &str) -> AadError {
        AadError::new(
            400,
            "unauthorized_client",
            700016,
            format!(
                "Application with identifier '{client_id}' was not found in the directory \
                 '{tenant_name}'. This can happen if the application has not been installed by \
                 the administrator of the tenant or consented to by any user in the tenant. You \
                 may have sent your authentication request to the wrong tenant."
            ),
        )
    }

    pub fn unknown_resource(resource: &str, tenant_name: &str) -> AadError {
        AadError::new(
            400,
            "invalid_resource",
            500011,
            format!(
                "The resource principal named {resource} was not found in the tenant named \
                 {tenant_name}. This can happen if the application has not been installed by the \
                 administrator of the tenant or consented to by any user in the tenant. You might \
                 have sent your authentication request to the wrong tenant."
            ),
        )
    }

    pub fn invalid_scope(scope: &str) -> AadError {
        AadError::new(
            400,
            "invalid_scope",
            70011,
            format!(
                "The provided request must include a 'scope' input parameter. The provided value \
                 for the input parameter 'scope' is not valid. The scope {scope} is not valid."
            ),
        )
    }

    pub fn several_resources() -> AadError {
        AadError::new(
            400,
            "invalid_scope",
            28000,
            "Provided value for the input parameter scope is not valid because it contains more \
             than one resource.",
        )
    }

    pub fn wrong_password() -> AadError {
        AadError::new(
            400,
            "invalid_grant",
            50126,
            "Error validating credentials due to invalid username or password.",
        )
    }

    pub fn locked() -> AadError {
        AadError::new(
            400,
            "invalid_grant",
            50053,
            "The account is locked, you've tried to sign in too many times with an incorrect \
             user ID or password.",
        )
    }

    pub fn disabled() -> AadError {
        AadError::new(400, "invalid_grant", 50057, "The user account is disabled.")
    }

    pub fn no_such_user(tenant_name: &str) -> AadError {
        AadError::new(
            400,
            "invalid_grant",
            50034,
            format!(
                "The user account {{EUII Hidden}} does not exist in the {tenant_name} directory. \
                 To sign into this application, the account must be added to the directory."
            ),
        )
    }

    pub fn mfa_required(resource: &str) -> AadError {
        AadError {
            suberror: Some("basic_action"),
            ..AadError::new(
                400,
                "invalid_grant",
                50076,
                format!(
                    "Due to a configuration change made by your administrator, or because you \
                     moved to a new location, you must use multi-factor authentication to access \
                     '{resource}'."
                ),
            )
        }
    }

    pub fn refresh_token_spent() -> AadError {
        AadError::new(
            400,
            "invalid_grant",
            70008,
            "The provided authorization code or refresh token has expired due to inactivity. \
             Send a new interactive authorization request for this user and resource.",
        )
    }

    pub fn refresh_token_expired() -> AadError {
        AadError::new(
            400,
            "invalid_grant",
            700082,
            "The refresh token has expired due to inactivity. The token was issued on \
             2000-01-01T00:00:00.0000000Z and was inactive for 90.00:00:00.",
        )
    }

    pub fn password_changed() -> AadError {
        AadError {
            suberror: Some("bad_token"),
            ..AadError::new(
                400,
                "invalid_grant",
                50173,
                "The provided grant has expired due to it being revoked, a fresh auth token is \
                 needed. The user might have changed or reset their password.",
            )
        }
    }

    pub fn grant_malformed() -> AadError {
        AadError::new(
            400,
            "invalid_grant",
            70000,
            "Provided grant is invalid or malformed.",
        )
    }

    pub fn refresh_token_malformed() -> AadError {
        AadError {
            error: "invalid_grant",
            ..AadError::malformed()
        }
    }

    pub fn temporarily_unavailable() -> AadError {
        AadError::new(
            503,
            "temporarily_unavailable",
            90033,
            "A transient error has occurred. Please try again.",
        )
    }

    pub fn throttled(retry_after: u64) -> AadError {
        AadError {
            retry_after: Some(retry_after),
            ..AadError::new(
                429,
                "temporarily_unavailable",
                90055,
                "There are too many incoming requests. Please try again later.",
            )
        }
    }

    /// The JSON body, stamped with this answer's ids and time.
    pub fn body(&self, trace_id: &str, correlation_id: &str, now: u64) -> Value {
        let timestamp = time::entra(now);
        let mut body = json!({
            "error": self.error,
            "error_description": format!(
                "AADSTS{}: {} Trace ID: {trace_id} Correlation ID: {correlation_id} Timestamp: {timestamp}",
                self.code, self.message
            ),
            "error_codes": [self.code],
            "timestamp": timestamp,
            "trace_id": trace_id,
            "correlation_id": correlation_id,
            "error_uri": format!("https://login.microsoftonline.com/error?code={}", self.code),
        });
        if let (Some(suberror), Some(obj)) = (self.suberror, body.as_object_mut()) {
            obj.insert("suberror".into(), suberror.into());
        }
        body
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_has_the_real_shape() {
        let trace = "f86ee3a2-1c21-48b0-97fb-ab08841b2100";
        let corr = "b5de6866-5136-40f0-a128-b54f8cc9be2b";
        let body = AadError::wrong_password().body(trace, corr, 1_594_215_258);
        assert_eq!(
            body,
            json!({
                "error": "invalid_grant",
                "error_description": "AADSTS50126: Error validating credentials due to invalid \
                    username or password. Trace ID: f86ee3a2-1c21-48b0-97fb-ab08841b2100 \
                    Correlation ID: b5de6866-5136-40f0-a128-b54f8cc9be2b Timestamp: 2020-07-08 13:34:18Z",
                "error_codes": [50126],
                "timestamp": "2020-07-08 13:34:18Z",
                "trace_id": trace,
                "correlation_id": corr,
                "error_uri": "https://login.microsoftonline.com/error?code=50126",
            })
        );
    }

    #[test]
    fn mfa_carries_a_suberror() {
        let body = AadError::mfa_required("https://management.core.windows.net/").body("t", "c", 0);
        assert_eq!(body["suberror"], "basic_action");
        assert_eq!(body["error_codes"], json!([50076]));
        let description = body["error_description"].as_str().unwrap_or_default();
        assert!(description.starts_with("AADSTS50076: Due to a configuration change"));
    }
}
