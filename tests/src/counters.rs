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
    /// caller: the `upn` claim, else `appid` (service principals), else
    /// `oid`; the client certificate's CN on local-account clusters.
    pub apiserver_callers: BTreeMap<String, BTreeMap<String, u64>>,
    /// `GET /adfs/services/trust/mex`.
    pub mex: u64,
    /// WS-Trust requests to AD FS, whatever the outcome.
    pub wstrust: u64,
    /// WS-Trust requests by endpoint version (`1.3`, `2005`).
    pub wstrust_by_version: BTreeMap<String, u64>,
    /// WS-Trust requests by the username they carry (empty when unreadable).
    pub wstrust_requests_by_user: BTreeMap<String, u64>,
    /// WS-Trust requests refused with `FailedAuthentication`, by username.
    pub wstrust_failures_by_user: BTreeMap<String, u64>,
    /// `client_credentials` requests by a known service principal, whatever
    /// the outcome, by client id (lower case).
    pub client_credential_grants_by_client: BTreeMap<String, u64>,
    /// Of those, the ones refused for the client's secret or assertion.
    pub client_credential_failures_by_client: BTreeMap<String, u64>,
    /// Client assertions (certificate or federated) refused, by client id.
    pub assertion_failures_by_client: BTreeMap<String, u64>,
    /// Certificate assertions whose `jti` was already used (or missing),
    /// by client id, refused or not.
    pub assertion_replays_by_client: BTreeMap<String, u64>,
    /// The longest `exp − now` (seconds) of an accepted certificate
    /// assertion, by client id.
    pub assertion_lifetime_max_by_client: BTreeMap<String, u64>,
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

    /// `client_credentials` requests by this service principal.
    pub fn client_credential_grants(&self, client_id: &str) -> u64 {
        by_client(&self.client_credential_grants_by_client, client_id)
    }

    /// `client_credentials` requests refused for this client's credential.
    pub fn client_credential_failures(&self, client_id: &str) -> u64 {
        by_client(&self.client_credential_failures_by_client, client_id)
    }

    /// Client assertions of this client that were refused.
    pub fn assertion_failures(&self, client_id: &str) -> u64 {
        by_client(&self.assertion_failures_by_client, client_id)
    }

    /// Certificate assertions of this client that repeated a `jti`.
    pub fn assertion_replays(&self, client_id: &str) -> u64 {
        by_client(&self.assertion_replays_by_client, client_id)
    }

    /// The longest remaining lifetime (seconds) of an accepted certificate
    /// assertion of this client; `None` before the first one.
    pub fn longest_assertion_lifetime(&self, client_id: &str) -> Option<u64> {
        self.assertion_lifetime_max_by_client
            .get(&client_id.to_lowercase())
            .copied()
    }

    /// WS-Trust requests AD FS received for `upn` (each carries the
    /// password).
    pub fn wstrust_requests(&self, upn: &str) -> u64 {
        self.wstrust_requests_by_user
            .get(&upn.to_lowercase())
            .copied()
            .unwrap_or(0)
    }

    /// WS-Trust requests for `upn` refused with `FailedAuthentication`.
    pub fn wstrust_failures(&self, upn: &str) -> u64 {
        self.wstrust_failures_by_user
            .get(&upn.to_lowercase())
            .copied()
            .unwrap_or(0)
    }

    pub(crate) fn bump<K: Ord>(map: &mut BTreeMap<K, u64>, key: K) {
        *map.entry(key).or_default() += 1;
    }
}

fn by_client(map: &BTreeMap<String, u64>, client_id: &str) -> u64 {
    map.get(&client_id.to_lowercase()).copied().unwrap_or(0)
}
