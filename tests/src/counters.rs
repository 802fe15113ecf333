//! What clients asked of the emulator, for tests to assert on (one sign-in
//! for many clusters, no password retries after a refusal, …).

use std::collections::BTreeMap;

/// A snapshot taken by [`crate::Emulator::counters`]. User keys are UPNs in
/// lower case.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counters {
    /// `GET /common/userrealm/…`
    pub realm: u64,
    /// Both OIDC discovery documents (v1 and v2).
    pub oidc_discovery: u64,
    /// Both JWKS paths.
    pub jwks: u64,
    /// `POST /{tenant}/oauth2/token`, whatever the outcome.
    pub token_v1: u64,
    /// `POST /{tenant}/oauth2/v2.0/token`, whatever the outcome.
    pub token_v2: u64,
    /// Every request to the ARM server.
    pub arm: u64,
    /// Every request to any API server.
    pub apiserver: u64,
    /// Token requests by `(grant_type, resource)`, whatever the outcome
    /// (a part that is absent from the request counts as empty).
    /// The resource is the v1 `resource` parameter as sent, or the resource
    /// part of the v2 `scope` (`https://management.core.windows.net//.default`
    /// counts as `https://management.core.windows.net/`).
    pub token_grants: BTreeMap<(String, String), u64>,
    /// Password grants that reached the user's account.
    pub password_attempts_by_user: BTreeMap<String, u64>,
    /// Password grants refused for a wrong password: what smart lockout
    /// counts.
    pub password_failures_by_user: BTreeMap<String, u64>,
    /// `listClusterUserCredential` calls by cluster name (known clusters).
    pub arm_by_cluster: BTreeMap<String, u64>,
    /// API server requests by cluster name.
    pub apiserver_by_cluster: BTreeMap<String, u64>,
    /// Authenticated API server requests by cluster name, then by the
    /// caller's `upn` claim.
    pub apiserver_callers: BTreeMap<String, BTreeMap<String, u64>>,
}

impl Counters {
    /// Token requests (v1 and v2) with this grant type and resource.
    pub fn grants(&self, grant_type: &str, resource: &str) -> u64 {
        self.token_grants
            .get(&(grant_type.to_owned(), resource.to_owned()))
            .copied()
            .unwrap_or(0)
    }

    /// Token requests (v1 and v2) with this grant type, any resource.
    pub fn grants_of_type(&self, grant_type: &str) -> u64 {
        self.token_grants
            .iter()
            .filter(|((g, _), _)| g == grant_type)
            .map(|(_, n)| n)
            .sum()
    }

    /// Token requests (v1 and v2) for this resource, any grant type.
    pub fn token_requests_for_resource(&self, resource: &str) -> u64 {
        self.token_grants
            .iter()
            .filter(|((_, r), _)| r == resource)
            .map(|(_, n)| n)
            .sum()
    }

    /// Password grants for `upn` that reached the account.
    pub fn password_attempts(&self, upn: &str) -> u64 {
        self.password_attempts_by_user
            .get(&upn.to_lowercase())
            .copied()
            .unwrap_or(0)
    }

    /// Password grants for `upn` refused for a wrong password.
    pub fn password_failures(&self, upn: &str) -> u64 {
        self.password_failures_by_user
            .get(&upn.to_lowercase())
            .copied()
            .unwrap_or(0)
    }

    /// Requests to the ARM server.
    pub fn arm_requests(&self) -> u64 {
        self.arm
    }

    /// Authenticated requests `upn` made to `cluster`'s API server.
    pub fn apiserver_calls_by(&self, cluster: &str, upn: &str) -> u64 {
        self.apiserver_callers
            .get(cluster)
            .and_then(|m| m.get(&upn.to_lowercase()))
            .copied()
            .unwrap_or(0)
    }

    pub(crate) fn bump<K: Ord>(map: &mut BTreeMap<K, u64>, key: K) {
        *map.entry(key).or_default() += 1;
    }
}
