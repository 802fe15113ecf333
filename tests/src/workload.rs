//! Workload identity federation: an external OIDC issuer (here: an AKS
//! cluster's service-account issuer) signs a short-lived JWT, the workload
//! presents it as `client_assertion`, and Entra exchanges it for an access
//! token when it matches a federated identity credential of the app.
//!
//! The emulator plays every external issuer named in the scenario with one
//! checked-in test key (`tests/data/workload-issuer-key.pem`):
//! [`crate::Emulator::issue_federated_token`] mints what kubelet would
//! project into the pod's token file. Entra would fetch the issuer's
//! discovery document and JWKS; the emulator knows the key already, and no
//! client ever sees that exchange, so nothing is served for it.
//!
//! Checks, in Entra's words (recorded answers):
//! - `iss`, `sub` and `aud` must match one federated credential exactly
//!   (case-sensitive): otherwise `invalid_request` AADSTS70021 "No matching
//!   federated identity record found for presented assertion. Assertion
//!   Issuer: '…'. Assertion Subject: '…'. Assertion Audience: '…'." (newer
//!   Entra splits this into 700211/700212/700213 for issuer, audience and
//!   subject; a client must treat all of them alike);
//! - the signature must verify with the issuer's key: AADSTS700027;
//! - `exp` must be in the future and `nbf` not more than five minutes
//!   ahead: AADSTS700024.
//!
//! Unlike certificate assertions, a federated token is not single-use: the
//! token file is re-read and the same token presented until kubelet
//! rotates it, and Entra accepts that.

use std::time::Duration;

use serde_json::{Value, json};

use crate::aad_error::AadError;
use crate::client_credentials::{self, AssertionParts};
use crate::jwt::{Claims, JwtError, SigningKey};
use crate::scenario::ServicePrincipalSpec;

const WORKLOAD_KEY_PEM: &str = include_str!("../data/workload-issuer-key.pem");

/// The external issuers' signing key.
pub(crate) struct WorkloadIssuer {
    key: SigningKey,
}

impl WorkloadIssuer {
    pub(crate) fn new() -> Result<WorkloadIssuer, JwtError> {
        Ok(WorkloadIssuer {
            key: SigningKey::from_pkcs8_pem(WORKLOAD_KEY_PEM)?,
        })
    }

    /// A token as kubelet projects it for a service account: `aud` as a
    /// list, `kubernetes.io` claims when `subject` names a service account.
    pub(crate) fn issue(
        &self,
        issuer: &str,
        subject: &str,
        audience: &str,
        lifetime: Duration,
        now: u64,
    ) -> String {
        let mut claims = json!({
            "aud": [audience],
            "exp": now + lifetime.as_secs(),
            "iat": now,
            "iss": issuer,
            "jti": uuid::Uuid::new_v4().to_string(),
            "nbf": now,
            "sub": subject,
        });
        if let (Some(rest), Some(obj)) = (
            subject.strip_prefix("system:serviceaccount:"),
            claims.as_object_mut(),
        ) && let Some((namespace, name)) = rest.split_once(':')
        {
            obj.insert(
                "kubernetes.io".into(),
                json!({
                    "namespace": namespace,
                    "serviceaccount": {
                        "name": name,
                        "uid": crate::directory::object_id(&format!("sa:{subject}")),
                    },
                }),
            );
        }
        let claims: Claims = match claims {
            Value::Object(map) => map,
            _ => Claims::new(),
        };
        self.key.sign(&claims)
    }

    /// The issuer's JWKS, as Entra would fetch it.
    pub(crate) fn jwks(&self) -> Value {
        json!({"keys": [self.key.jwk(None)]})
    }

    fn verify(&self, token: &str) -> Result<Claims, JwtError> {
        self.key.verify(token)
    }
}

fn claim<'a>(claims: &'a Claims, name: &str) -> &'a str {
    claims.get(name).and_then(Value::as_str).unwrap_or("")
}

/// `aud` as a string or a list of strings.
fn audiences(claims: &Claims) -> Vec<&str> {
    match claims.get("aud") {
        Some(Value::String(s)) => vec![s.as_str()],
        Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    }
}

/// Checks a federated token presented by `sp` (see the module comment).
pub(crate) fn validate(
    issuer: &WorkloadIssuer,
    sp: &ServicePrincipalSpec,
    assertion: &AssertionParts<'_>,
    now: u64,
) -> Result<(), AadError> {
    let claims = &assertion.claims;
    let (iss, sub) = (claim(claims, "iss"), claim(claims, "sub"));
    let auds = audiences(claims);
    let matched = sp
        .federated
        .iter()
        .any(|f| f.issuer == iss && f.subject == sub && auds.iter().any(|a| *a == f.audience));
    if !matched {
        return Err(AadError::no_matching_federated_credential(
            iss,
            sub,
            &auds.join(","),
        ));
    }
    issuer
        .verify(assertion.token)
        .map_err(|_| AadError::federated_signature_invalid())?;
    client_credentials::check_assertion_times(claims, now)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::{Scenario, TOKEN_EXCHANGE_AUDIENCE, standard};

    fn validate_token(token: &str, now: u64) -> Result<(), u32> {
        let issuer = WorkloadIssuer::new().expect("test key loads");
        let s = Scenario::standard();
        let sp = s
            .service_principal(standard::WORKLOAD_CLIENT_ID)
            .expect("standard SP");
        let parts = AssertionParts::parse(token).ok_or(0u32)?;
        validate(&issuer, sp, &parts, now).map_err(|e| e.code)
    }

    #[test]
    fn federated_tokens() {
        let issuer = WorkloadIssuer::new().expect("test key loads");
        let now = 1_800_000_000;
        let hour = Duration::from_secs(3600);
        let good = issuer.issue(
            standard::WORKLOAD_ISSUER,
            standard::WORKLOAD_SUBJECT,
            TOKEN_EXCHANGE_AUDIENCE,
            hour,
            now,
        );
        let claims = crate::jwt::decode_unverified(&good).expect("JWT");
        assert_eq!(claims["kubernetes.io"]["namespace"], "ci");
        assert_eq!(claims["aud"], json!([TOKEN_EXCHANGE_AUDIENCE]));
        assert_eq!(validate_token(&good, now + 10), Ok(()));
        assert_eq!(validate_token(&good, now + 3600), Err(700_024));
        assert_eq!(validate_token(&good, now - 301), Err(700_024));

        let other = |iss: &str, sub: &str, aud: &str| issuer.issue(iss, sub, aud, hour, now);
        let wrong_sub = other(
            standard::WORKLOAD_ISSUER,
            "system:serviceaccount:ci:other",
            TOKEN_EXCHANGE_AUDIENCE,
        );
        assert_eq!(validate_token(&wrong_sub, now), Err(70_021));
        let wrong_case = other(
            &standard::WORKLOAD_ISSUER.to_uppercase(),
            standard::WORKLOAD_SUBJECT,
            TOKEN_EXCHANGE_AUDIENCE,
        );
        assert_eq!(validate_token(&wrong_case, now), Err(70_021));
        let wrong_aud = other(
            standard::WORKLOAD_ISSUER,
            standard::WORKLOAD_SUBJECT,
            "api://AzureADTokenExchangeChina",
        );
        assert_eq!(validate_token(&wrong_aud, now), Err(70_021));

        // Signed by someone else (the emulator's Entra key).
        let entra = SigningKey::emulator().expect("key");
        let forged = entra.sign(&claims);
        assert_eq!(validate_token(&forged, now), Err(700_027));
        assert_eq!(issuer.jwks()["keys"][0]["kty"], "RSA");
    }
}
