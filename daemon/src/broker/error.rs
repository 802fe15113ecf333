//! What can go wrong when a credential is asked for, and how the socket API
//! tells it: a status code and `{code, message, hint}` a person can act on.

use akscred_proto::ApiError;

use super::identity::Attention;
use crate::aks::arm::ArmError;
use crate::entra::EntraError;
use crate::entra::error::ErrorClass;
use crate::secret::SecretError;

#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("no cluster named `{name}` is configured")]
    UnknownCluster { name: String, known: Vec<String> },
    #[error("no identity named `{name}` is configured")]
    UnknownIdentity { name: String, known: Vec<String> },
    #[error("identity `{identity}` needs attention: {}", attention.message)]
    NeedsAttention {
        identity: String,
        attention: Attention,
    },
    #[error("sign-in of `{identity}` failed: {source}")]
    SignIn {
        identity: String,
        source: EntraError,
    },
    #[error("cannot read the password of `{identity}`: {source}")]
    Secret {
        identity: String,
        source: SecretError,
    },
    #[error("identity `{identity}`: {what}")]
    Unsupported { identity: String, what: String },
    #[error("identity `{identity}`: the {key} cannot be used: {why}")]
    Unusable {
        identity: String,
        key: &'static str,
        why: String,
    },
    #[error("cluster `{cluster}`: {source}")]
    Arm { cluster: String, source: ArmError },
    #[error("{what}: waiting until {} before asking again (last error: {last})", crate::clock::rfc3339(*retry_at))]
    Backoff {
        what: String,
        retry_at: std::time::SystemTime,
        last: String,
    },
    #[error("identity `{identity}` used its {per_hour} password attempts of the last hour; the next is allowed at {}", crate::clock::rfc3339(*next))]
    Budget {
        identity: String,
        per_hour: u32,
        next: std::time::SystemTime,
    },
    #[error("cluster `{cluster}`: {message}")]
    Discovery {
        cluster: String,
        message: String,
        hint: String,
    },
}

/// Upstream hints name the identity as `IDENTITY`; put the real name in.
pub(crate) fn hint_for(hint: &str, identity: &str) -> String {
    hint.replace("IDENTITY", identity)
}

pub(crate) fn api_error(code: &str, message: String, hint: String) -> ApiError {
    ApiError {
        code: code.to_string(),
        message,
        hint,
    }
}

impl BrokerError {
    /// Worth trying again later without anyone changing anything.
    pub fn is_transient(&self) -> bool {
        match self {
            BrokerError::SignIn { source, .. } => source.class() == ErrorClass::Transient,
            BrokerError::Arm { source, .. } => source.is_transient(),
            BrokerError::Backoff { .. } => true,
            _ => false,
        }
    }

    /// How long upstream asked to be left alone.
    pub fn retry_after(&self) -> Option<std::time::Duration> {
        match self {
            BrokerError::SignIn { source, .. } => source.retry_after(),
            BrokerError::Arm { source, .. } => source.retry_after(),
            _ => None,
        }
    }

    /// HTTP status and body for the socket API.
    pub fn to_api(&self) -> (u16, ApiError) {
        let message = self.to_string();
        match self {
            BrokerError::UnknownCluster { known, .. } => (
                404,
                api_error(
                    "unknown_cluster",
                    message,
                    if known.is_empty() {
                        "no clusters are configured: add a [clusters.NAME] table to the config and reload".into()
                    } else {
                        format!("configured clusters: {}", known.join(", "))
                    },
                ),
            ),
            BrokerError::UnknownIdentity { known, .. } => (
                404,
                api_error(
                    "unknown_identity",
                    message,
                    format!("configured identities: {}", known.join(", ")),
                ),
            ),
            BrokerError::NeedsAttention { attention, .. } => (
                409,
                api_error("needs_attention", message, attention.hint.clone()),
            ),
            BrokerError::SignIn { identity, source } => {
                let (status, code) = match source.class() {
                    ErrorClass::Transient => (503, "upstream_unavailable"),
                    _ => (502, "sign_in_failed"),
                };
                (
                    status,
                    api_error(code, message, hint_for(source.hint(), identity)),
                )
            }
            BrokerError::Secret { identity, .. } => (
                500,
                api_error(
                    "secret_unavailable",
                    message,
                    format!(
                        "check identities.{identity}.password in the config; the daemon reads it again on the next attempt"
                    ),
                ),
            ),
            BrokerError::Unsupported { .. } => {
                (501, api_error("unsupported", message, String::new()))
            }
            BrokerError::Unusable { identity, key, .. } => (
                500,
                api_error(
                    "secret_unusable",
                    message,
                    format!(
                        "fix identities.{identity}.{key}; the daemon reads it again on the next attempt"
                    ),
                ),
            ),
            BrokerError::Arm { source, .. } => (
                if source.is_transient() { 503 } else { 502 },
                api_error("discovery_failed", message, source.hint().to_string()),
            ),
            BrokerError::Backoff { .. } => (
                503,
                api_error(
                    "upstream_unavailable",
                    message,
                    "nothing to do: akscredd retries by itself; `akscred status` shows progress"
                        .into(),
                ),
            ),
            BrokerError::Budget { identity, .. } => (
                429,
                api_error(
                    "password_budget",
                    message,
                    format!(
                        "the budget protects the account from lockout; if the cause is fixed, `akscred retry {identity}` tries once now"
                    ),
                ),
            ),
            BrokerError::Discovery { hint, .. } => {
                (502, api_error("discovery_failed", message, hint.clone()))
            }
        }
    }
}
