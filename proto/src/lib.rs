//! Wire types of the akscred socket API (HTTP/1.1 + JSON over a Unix socket).
//!
//! Shared by the daemon and the client so both sides agree on every field.
//! Serde only: the client links this crate and must stay small and fast to
//! start, so nothing here may pull in an async runtime.

use serde::{Deserialize, Serialize};

/// The exec credential API versions kubectl may speak to a plugin.
pub const EXEC_API_V1: &str = "client.authentication.k8s.io/v1";
pub const EXEC_API_V1BETA1: &str = "client.authentication.k8s.io/v1beta1";

/// Environment variable that overrides the socket path for both binaries.
pub const SOCKET_ENV: &str = "AKSCRED_SOCKET";

/// `{"error": {...}}`, the body of every non-2xx answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: ApiError,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ApiError {
    /// Stable, machine-readable: `unknown_cluster`, `needs_attention`, ...
    pub code: String,
    /// What went wrong, in a sentence a person can act on.
    pub message: String,
    /// What to do about it.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub hint: String,
}

/// The ExecCredential kubectl expects on the plugin's stdout.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExecCredential {
    pub api_version: String,
    pub kind: String,
    pub status: ExecCredentialStatus,
}

#[derive(Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExecCredentialStatus {
    /// A bearer token (Entra ID clusters).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub token: String,
    /// PEM client certificate and key (local-account clusters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_certificate_data: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_key_data: Option<String>,
    /// RFC 3339, UTC, `Z`.
    pub expiration_timestamp: String,
}

impl std::fmt::Debug for ExecCredentialStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExecCredentialStatus")
            .field("token", &"…")
            .field("client_certificate_data", &self.client_certificate_data)
            .field(
                "client_key_data",
                &self.client_key_data.as_ref().map(|_| "…"),
            )
            .field("expiration_timestamp", &self.expiration_timestamp)
            .finish()
    }
}

/// `GET /v1/status`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Status {
    pub identities: Vec<IdentityStatus>,
    pub clusters: Vec<ClusterStatus>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IdentityStatus {
    pub name: String,
    pub username: String,
    /// `ok`, `signing_in`, `needs_attention`, `backoff`, `new`.
    pub state: String,
    /// `user`, `service_principal`, `workload_identity`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_sign_in: Option<String>,
    /// Something to act on before it breaks (a certificate about to expire).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warning: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<ApiError>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClusterStatus {
    pub name: String,
    pub identity: String,
    /// `ready`, `pending`, `error`, `needs_attention`.
    pub state: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
    /// RFC 3339 `expires_on` of the token this cluster uses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_expires: Option<String>,
    /// Seconds left on that token at the time of the answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_valid_for_secs: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_refresh: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_refresh: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<ApiError>,
}

impl Status {
    pub fn all_ready(&self) -> bool {
        self.clusters.iter().all(|c| c.state == "ready")
    }
}
