//! The token broker: every access token the daemon holds, who may use it,
//! and how it is obtained.
//!
//! Tokens are keyed by (cloud, tenant, identity, client id, resource): all
//! AKS-managed-AAD clusters of one tenant share one server id, so one token
//! serves them all. Each key has one slot whose async lock makes fetching
//! single-flight: however many requests find the token stale, one upstream
//! call is made and the others wait for its result.

mod backoff;
mod error;
mod identity;
mod target;
pub mod token;
mod wakeup;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::SystemTime;

use akscred_proto::{ClusterStatus, IdentityStatus, Status};
use rand::Rng;
use tracing::{info, warn};

use crate::clock::{Clock, rfc3339};
use crate::config::{Cluster, Config, Credential};
use crate::entra::assertion;
use crate::entra::error::ErrorClass;
use crate::entra::realm::AccountType;
use crate::entra::token::{Endpoint, Grant, TokenRequest, token_url};
use crate::entra::{EntraClient, EntraError};
use crate::secret::{Secret, SecretSource};

use backoff::Backoff;
pub use error::BrokerError;
pub use identity::Attention;
use identity::{IdentityState, fingerprint};
pub use target::ClusterTarget;
pub use token::{ExecApi, Policy, Token};
pub use wakeup::Wakeup;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TokenKey {
    pub cloud: String,
    pub tenant: String,
    pub identity: String,
    pub client_id: String,
    pub resource: String,
}

pub struct TokenSlot {
    pub key: TokenKey,
    pub endpoint: Endpoint,
    /// Refreshed by the scheduler before it is due. The ARM token is not:
    /// it is only needed to discover a cluster, and keeping it fresh would
    /// cost a password sign-in each time its refresh token lapses.
    proactive: bool,
    /// Held while a token is being fetched for this key.
    fetch: tokio::sync::Mutex<()>,
    current: RwLock<Option<Arc<Token>>>,
    backoff: Mutex<Backoff>,
}

impl TokenSlot {
    pub fn current(&self) -> Option<Arc<Token>> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn set(&self, token: Arc<Token>) {
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Some(token);
        self.backoff().succeed();
    }

    fn backoff(&self) -> std::sync::MutexGuard<'_, Backoff> {
        self.backoff.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn last_error(&self) -> Option<(String, String)> {
        self.backoff().last_error.clone()
    }

    /// When the scheduler should next look at this slot.
    fn deadline(&self) -> Option<SystemTime> {
        if !self.proactive {
            // Its failures are retried through the discovery that needs it.
            return None;
        }
        let retry = self.backoff().scheduled();
        match (self.current(), retry) {
            (_, Some(at)) => Some(at),
            (Some(t), None) => Some(t.refresh_at),
            (None, None) => None,
        }
    }
}

/// Clusters discovered at once (warm-up, and retries after an outage).
const PARALLEL: usize = 16;

/// A certificate this close to its end is worth a warning in status.
const EXPIRY_WARNING: std::time::Duration = std::time::Duration::from_secs(14 * 24 * 3600);

fn expiry_warning(not_after: Option<SystemTime>, now: SystemTime) -> Option<String> {
    let not_after = not_after?;
    match not_after.duration_since(now) {
        Err(_) => Some(format!(
            "the certificate expired at {}: register a new one on the application",
            rfc3339(not_after)
        )),
        Ok(left) if left < EXPIRY_WARNING => Some(format!(
            "the certificate expires at {} (in {} days): register its successor on the application",
            rfc3339(not_after),
            left.as_secs() / 86400
        )),
        Ok(_) => None,
    }
}

/// Whether a status looks at the file system for identity warnings.
#[derive(Clone, Copy)]
enum Warnings {
    Checked,
    Skipped,
}

/// What status says about an identity that works but needs care: a
/// certificate near its end, secret files others can read.
fn identity_warning(
    cfg: &crate::config::Identity,
    not_after: Option<SystemTime>,
    now: SystemTime,
) -> Option<String> {
    let warnings: Vec<String> = expiry_warning(not_after, now)
        .into_iter()
        .chain(cfg.exposed_secrets())
        .collect();
    (!warnings.is_empty()).then(|| warnings.join("; "))
}

/// Refresh tokens are per (identity, tenant, client id): one serves every
/// resource of that client. Rotated on each use; the old one is forgotten.
type RefreshKey = (String, String, String);

pub struct Broker {
    config: Config,
    entra: EntraClient,
    http: reqwest::Client,
    clock: Arc<dyn Clock>,
    policy: Policy,
    identities: HashMap<String, Arc<IdentityState>>,
    clusters: HashMap<String, Arc<target::ClusterState>>,
    slots: Mutex<HashMap<TokenKey, Arc<TokenSlot>>>,
    refresh_tokens: Mutex<HashMap<RefreshKey, Secret>>,
    refresh_locks: Mutex<HashMap<RefreshKey, Arc<tokio::sync::Mutex<()>>>>,
    /// Shared with the brokers of later reloads (see [`Broker::adopt`]):
    /// a sign-in still running for this one wakes the same scheduler.
    wakeup: Arc<Wakeup>,
}

impl Broker {
    pub fn new(config: Config, http: reqwest::Client, clock: Arc<dyn Clock>) -> Broker {
        for (name, identity) in &config.identities {
            for warning in identity.exposed_secrets() {
                warn!(identity = %name, "{warning}");
            }
        }
        let identities = config
            .identities
            .iter()
            .map(|(n, i)| (n.clone(), Arc::new(IdentityState::new(i.clone()))))
            .collect();
        let clusters = config
            .clusters
            .iter()
            .map(|(n, c)| (n.clone(), Arc::new(target::ClusterState::new(c.clone()))))
            .collect();
        Broker {
            policy: Policy {
                refresh_before: config.daemon.refresh_before,
                min_remaining: config.daemon.min_remaining,
            },
            entra: EntraClient::new(http.clone()),
            http,
            clock,
            identities,
            clusters,
            slots: Mutex::new(HashMap::new()),
            refresh_tokens: Mutex::new(HashMap::new()),
            refresh_locks: Mutex::new(HashMap::new()),
            wakeup: Arc::default(),
            config,
        }
    }

    /// Takes over the state of `old` (the broker of the previous config)
    /// wherever the settings it depends on did not change: identity blocks,
    /// budgets and realms, refresh tokens, access tokens and discovered
    /// clusters. A reload therefore costs no sign-in and never clears a
    /// `needs_attention`.
    pub fn adopt(&mut self, old: &Broker) {
        self.wakeup = old.wakeup.clone();
        // Unchanged identities keep their very state object, lock included,
        // so a sign-in still running for the old broker records its
        // outcome (a block, a budget use) where the new one sees it.
        let mut unchanged = Vec::new();
        for (name, id) in self.identities.iter_mut() {
            if let Some(o) = old.identities.get(name)
                && o.cfg == id.cfg
            {
                *id = o.clone();
                unchanged.push(name.clone());
            }
        }
        let keep = |identity: &String| unchanged.contains(identity);
        {
            let old_rts = old.refresh_tokens.lock().unwrap_or_else(|p| p.into_inner());
            let mut rts = self
                .refresh_tokens
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            for (k, v) in old_rts.iter().filter(|(k, _)| keep(&k.0)) {
                rts.insert(k.clone(), v.clone());
            }
        }
        {
            let old_slots = old.slots.lock().unwrap_or_else(|p| p.into_inner());
            let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
            for (k, v) in old_slots.iter().filter(|(k, _)| keep(&k.identity)) {
                slots.insert(k.clone(), v.clone());
            }
        }
        for (name, cs) in self.clusters.iter_mut() {
            if let Some(old_cs) = old.clusters.get(name)
                && old_cs.cfg == cs.cfg
                && keep(&cs.cfg.identity)
            {
                *cs = old_cs.clone();
            }
        }
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// What the scheduler waits on next to its sleep.
    pub fn wakeup(&self) -> &Wakeup {
        &self.wakeup
    }

    pub fn now(&self) -> SystemTime {
        self.clock.now()
    }

    pub fn cluster_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.clusters.keys().cloned().collect();
        names.sort();
        names
    }

    fn cluster(&self, name: &str) -> Result<&Arc<target::ClusterState>, BrokerError> {
        self.clusters
            .get(name)
            .ok_or_else(|| BrokerError::UnknownCluster {
                name: name.to_string(),
                known: self.cluster_names(),
            })
    }

    fn identity(&self, name: &str) -> Result<&Arc<IdentityState>, BrokerError> {
        self.identities
            .get(name)
            .ok_or_else(|| BrokerError::UnknownIdentity {
                name: name.to_string(),
                known: {
                    let mut k: Vec<String> = self.identities.keys().cloned().collect();
                    k.sort();
                    k
                },
            })
    }

    pub(crate) fn slot(
        &self,
        key: TokenKey,
        endpoint: Endpoint,
        proactive: bool,
    ) -> Arc<TokenSlot> {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        slots
            .entry(key.clone())
            .or_insert_with(|| {
                Arc::new(TokenSlot {
                    key,
                    endpoint,
                    proactive,
                    fetch: tokio::sync::Mutex::new(()),
                    current: RwLock::new(None),
                    backoff: Mutex::new(Backoff::default()),
                })
            })
            .clone()
    }

    /// The credential for `cluster`: the hot path of every kubectl command.
    /// The credential of `cluster` if it can be answered without waiting:
    /// discovered, and its token (or certificate) fresh. What nearly every
    /// request finds.
    pub fn fresh_credential(&self, cluster: &str) -> Option<Arc<Token>> {
        let token = self.clusters.get(cluster)?.target()?.current()?;
        token.is_fresh(self.now()).then_some(token)
    }

    pub async fn credential(&self, cluster: &str) -> Result<Arc<Token>, BrokerError> {
        let target = self.target_of(cluster).await?;
        match &target.access {
            target::Access::Token(slot) => self.token(slot).await,
            target::Access::Certificate(cert) if cert.is_fresh(self.now()) => Ok(cert.clone()),
            target::Access::Certificate(_) => {
                // Expired: ask ARM for the cluster's current certificate.
                let cs = self.cluster(cluster)?;
                cs.forget_target();
                let target = self.target(cs).await?;
                target.current().ok_or_else(|| BrokerError::Discovery {
                    cluster: cluster.to_string(),
                    message: "no credential after discovery".into(),
                    hint: String::new(),
                })
            }
        }
    }

    /// Server, CA and token slot of a cluster, discovered once.
    pub async fn target_of(&self, cluster: &str) -> Result<Arc<ClusterTarget>, BrokerError> {
        self.target(self.cluster(cluster)?).await
    }

    async fn target(
        &self,
        cs: &Arc<target::ClusterState>,
    ) -> Result<Arc<ClusterTarget>, BrokerError> {
        if let Some(t) = cs.target() {
            return Ok(t);
        }
        let _discovering = cs.discover.lock().await;
        if let Some(t) = cs.target() {
            return Ok(t);
        }
        let now = self.now();
        if let Some(retry_at) = cs.wait_until(now) {
            let (last, _) = cs.last_error().unwrap_or_default();
            return Err(BrokerError::Backoff {
                what: format!("discovery of cluster {}", cs.cfg.name),
                retry_at,
                last,
            });
        }
        match target::discover(self, &cs.cfg).await {
            Ok(t) => {
                let t = Arc::new(t);
                cs.set_target(t.clone());
                Ok(t)
            }
            // A blocked identity is not a discovery failure: retrying it
            // is the operator's call, and status says so already.
            Err(e @ BrokerError::NeedsAttention { .. }) => Err(e),
            Err(e) => {
                cs.set_error(&e, now);
                if let Some(at) = cs.retry_at() {
                    self.wakeup.schedule(at);
                }
                Err(e)
            }
        }
    }

    /// A fresh token for `slot`, fetching one when the held one is stale.
    pub async fn token(&self, slot: &Arc<TokenSlot>) -> Result<Arc<Token>, BrokerError> {
        let now = self.now();
        if let Some(t) = slot.current()
            && t.is_fresh(now)
        {
            return Ok(t);
        }
        let _fetching = slot.fetch.lock().await;
        let now = self.now();
        let held = slot.current();
        if let Some(t) = &held
            && t.is_fresh(now)
        {
            return Ok(t.clone());
        }
        if let Some(retry_at) = slot.backoff().wait_until(now) {
            // Upstream asked for quiet (or keeps failing): serve what is
            // still valid, and do not add load while it recovers.
            if let Some(t) = held.filter(|t| t.is_valid(now)) {
                return Ok(t);
            }
            let (message, _) = slot.backoff().last_error.clone().unwrap_or_default();
            return Err(BrokerError::Backoff {
                what: format!("token for {}", slot.key.resource),
                retry_at,
                last: message,
            });
        }
        match self.fetch(slot).await {
            Ok(t) => Ok(t),
            // Upstream trouble must not break kubectl while the token we
            // hold is still accepted by the API server.
            Err(e) if e.is_transient() && held.as_ref().is_some_and(|t| t.is_valid(now)) => {
                warn!(identity = %slot.key.identity, resource = %slot.key.resource, error = %e, "refresh failed; serving the token still held");
                held.ok_or(e)
            }
            Err(e) => Err(e),
        }
    }

    /// Refreshes `slot` if its token is due (or `force`); single-flight with
    /// requests. Used by the scheduler and `POST .../refresh`.
    pub async fn refresh_slot(
        &self,
        slot: &Arc<TokenSlot>,
        force: bool,
    ) -> Result<Arc<Token>, BrokerError> {
        let _fetching = slot.fetch.lock().await;
        let now = self.now();
        if !force {
            if let Some(t) = slot.current()
                && t.refresh_at > now
            {
                return Ok(t);
            }
            if let Some(retry_at) = slot.backoff().wait_until(now) {
                let (message, _) = slot.backoff().last_error.clone().unwrap_or_default();
                return Err(BrokerError::Backoff {
                    what: format!("token for {}", slot.key.resource),
                    retry_at,
                    last: message,
                });
            }
        }
        self.fetch(slot).await
    }

    /// One upstream acquisition: refresh token first, then the password.
    /// The caller holds `slot.fetch`.
    async fn fetch(&self, slot: &Arc<TokenSlot>) -> Result<Arc<Token>, BrokerError> {
        let result = self.fetch_inner(slot).await;
        crate::metrics::refresh(&result);
        if let Err(e) = &result {
            let api = e.to_api().1;
            if e.is_transient() {
                let at = slot
                    .backoff()
                    .fail(self.now(), e.retry_after(), (api.message, api.hint));
                if slot.proactive {
                    self.wakeup.schedule(at);
                }
                warn!(identity = %slot.key.identity, resource = %slot.key.resource, error = %e, retry_at = %rfc3339(at), "transient failure; backing off");
            } else {
                let recheck = self.now() + self.config.daemon.tick;
                slot.backoff().park(recheck, (api.message, api.hint));
            }
        }
        result
    }

    async fn fetch_inner(&self, slot: &Arc<TokenSlot>) -> Result<Arc<Token>, BrokerError> {
        let key = &slot.key;
        let id = self.identity(&key.identity)?.clone();
        let rt_key: RefreshKey = (
            key.identity.clone(),
            key.tenant.clone(),
            key.client_id.clone(),
        );
        if let Some(outcome) = self.try_refresh_token(slot, &id, &rt_key).await {
            return outcome;
        }
        // At most one full sign-in per identity at a time. While this one
        // waited, another slot's sign-in may have left a refresh token for
        // the same client: a thousand resources of one client then cost one
        // password, not a thousand.
        let _one_at_a_time = id.signin.lock().await;
        if let Some(outcome) = self.try_refresh_token(slot, &id, &rt_key).await {
            return outcome;
        }
        self.sign_in(slot, &id).await
    }

    /// Redeems the refresh token held for `rt_key`, if any. `None` means
    /// there was none, or it is dead (and now forgotten): sign in instead.
    async fn try_refresh_token(
        &self,
        slot: &Arc<TokenSlot>,
        id: &Arc<IdentityState>,
        rt_key: &RefreshKey,
    ) -> Option<Result<Arc<Token>, BrokerError>> {
        // One redemption per refresh token at a time: each is good for one
        // use, and two slots racing with the same one would see it "dead".
        let lock = self
            .refresh_locks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(rt_key.clone())
            .or_default()
            .clone();
        let _redeeming = lock.lock().await;
        let rt = self
            .refresh_tokens
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(rt_key)
            .cloned()?;
        let req = self.request(slot, Grant::RefreshToken(rt.clone()));
        match self.entra.token(&id.cfg.cloud, &req, self.now()).await {
            Ok(grant) => Some(Ok(self.store(slot, id, grant))),
            Err(e) => match e.class() {
                ErrorClass::RefreshTokenDead => {
                    info!(identity = %id.cfg.name, error = %e, "refresh token no longer accepted; signing in again");
                    let mut rts = self
                        .refresh_tokens
                        .lock()
                        .unwrap_or_else(|p| p.into_inner());
                    // Only this one: another slot may have stored a newer one.
                    if rts.get(rt_key) == Some(&rt) {
                        rts.remove(rt_key);
                    }
                    None
                }
                ErrorClass::Transient => Some(Err(BrokerError::SignIn {
                    identity: id.cfg.name.clone(),
                    source: e,
                })),
                ErrorClass::Permanent => Some(Err(self.block(id, e, None))),
            },
        }
    }

    /// A full sign-in with the identity's own credential: the password for
    /// a user, the secret, certificate or federated token for an
    /// application. The caller holds `id.signin`.
    async fn sign_in(
        &self,
        slot: &Arc<TokenSlot>,
        id: &Arc<IdentityState>,
    ) -> Result<Arc<Token>, BrokerError> {
        let material = match id.attention() {
            Some(a) => self.unblocked_by_new_secret(id, a).await?,
            None => self.read_material(id).await?,
        };
        let refused = fingerprint(&material);
        let now = self.now();
        let grant = match &id.cfg.credential {
            Credential::Password(_) => return self.password_sign_in(slot, id, material, now).await,
            Credential::ClientSecret(_) | Credential::FederatedToken(_) => {
                let text = std::str::from_utf8(&material).unwrap_or_default().trim();
                if text.is_empty() {
                    return Err(self.secret_error(id, "it is empty or not text"));
                }
                match id.cfg.credential {
                    Credential::ClientSecret(_) => Grant::ClientSecret(Secret::new(text)),
                    _ => Grant::ClientAssertion(Secret::new(text)),
                }
            }
            Credential::Certificate { password, .. } => {
                let password = match password {
                    Some(p) => Some(p.read().await.map_err(|source| BrokerError::Secret {
                        identity: id.cfg.name.clone(),
                        source,
                    })?),
                    None => None,
                };
                let cert = assertion::load(&material, password.as_ref())
                    .map_err(|e| self.secret_error(id, &e.to_string()))?;
                id.set_credential_expiry(Some(cert.not_after));
                // `aud` is the endpoint itself, without the v1 query string.
                let url = token_url(
                    &id.cfg.cloud.login_endpoint,
                    &slot.key.tenant,
                    slot.endpoint,
                );
                let audience = url.split('?').next().unwrap_or(&url);
                let jwt = assertion::client_assertion(&cert, &id.cfg.client_id, audience, now)
                    .map_err(|e| self.secret_error(id, &e.to_string()))?;
                Grant::ClientAssertion(jwt)
            }
        };
        info!(identity = %id.cfg.name, resource = %slot.key.resource, kind = id.cfg.kind(), "signing in with client credentials");
        let req = self.request(slot, grant);
        self.finish_sign_in(slot, id, req, now, refused).await
    }

    async fn password_sign_in(
        &self,
        slot: &Arc<TokenSlot>,
        id: &Arc<IdentityState>,
        material: zeroize::Zeroizing<Vec<u8>>,
        now: SystemTime,
    ) -> Result<Arc<Token>, BrokerError> {
        let refused = fingerprint(&material);
        let password = Secret::new(
            std::str::from_utf8(&material)
                .map_err(|_| self.secret_error(id, "it is not valid UTF-8"))?
                .trim_end_matches(['\n', '\r']),
        );
        drop(material);
        let realm = match id.realm() {
            Some(r) => r,
            None => {
                let r = self
                    .entra
                    .user_realm(&id.cfg.cloud, &id.cfg.username)
                    .await
                    .map_err(|source| BrokerError::SignIn {
                        identity: id.cfg.name.clone(),
                        source,
                    })?;
                id.set_realm(r.clone());
                r
            }
        };
        // Every use of the password counts, whichever server it goes to.
        if let Err(next) = id.take_budget(now, self.config.daemon.password_attempts_per_hour) {
            warn!(identity = %id.cfg.name, next = %rfc3339(next), "password budget used up; not signing in");
            return Err(BrokerError::Budget {
                identity: id.cfg.name.clone(),
                per_hour: self.config.daemon.password_attempts_per_hour,
                next,
            });
        }
        if let Some(r) = &realm
            && r.account_type == AccountType::Federated
        {
            // The password goes to the federation server (one WS-Trust
            // request, never retried inside entra), which answers with a
            // SAML assertion; redeeming it is the rest of the sign-in.
            info!(identity = %id.cfg.name, resource = %slot.key.resource, "signing in at the federation server (WS-Trust)");
            let federated = self
                .entra
                .federated_grant(&id.cfg.cloud, r, &id.cfg.username, &password, now)
                .await;
            drop(password);
            // A failure is counted as a sign-in here; a success once, with
            // the token request.
            let grant = crate::metrics::sign_in(federated)
                .map_err(|e| self.sign_in_failed(id, e, refused.clone()))?;
            let req = self.request(slot, grant);
            return self.finish_sign_in(slot, id, req, now, refused).await;
        }
        let req = self.request(
            slot,
            Grant::Password {
                username: id.cfg.username.clone(),
                password,
            },
        );
        info!(identity = %id.cfg.name, resource = %slot.key.resource, "signing in with the password");
        self.finish_sign_in(slot, id, req, now, refused).await
    }

    async fn finish_sign_in(
        &self,
        slot: &Arc<TokenSlot>,
        id: &Arc<IdentityState>,
        req: TokenRequest,
        now: SystemTime,
        refused: identity::Fingerprint,
    ) -> Result<Arc<Token>, BrokerError> {
        match crate::metrics::sign_in(self.entra.token(&id.cfg.cloud, &req, now).await) {
            Ok(grant) => Ok(self.store(slot, id, grant)),
            Err(e) => Err(self.sign_in_failed(id, e, refused)),
        }
    }

    /// A transient failure is recorded and retried later; anything else
    /// from a sign-in with the identity's own secret stops all further use
    /// of it: when in doubt, do not risk the account.
    fn sign_in_failed(
        &self,
        id: &IdentityState,
        e: EntraError,
        refused: identity::Fingerprint,
    ) -> BrokerError {
        if e.class() != ErrorClass::Transient {
            return self.block(id, e, Some(refused));
        }
        let err = BrokerError::SignIn {
            identity: id.cfg.name.clone(),
            source: e,
        };
        let api = err.to_api().1;
        id.record_error(api.message, api.hint);
        err
    }

    fn secret_error(&self, id: &IdentityState, why: &str) -> BrokerError {
        BrokerError::Unusable {
            identity: id.cfg.name.clone(),
            key: id.cfg.secret_key(),
            why: why.to_string(),
        }
    }

    /// The identity's secret as stored: read again on every sign-in, so a
    /// rotated secret or a renewed federated token is picked up.
    async fn read_material(
        &self,
        id: &IdentityState,
    ) -> Result<zeroize::Zeroizing<Vec<u8>>, BrokerError> {
        let secret_error = |source| BrokerError::Secret {
            identity: id.cfg.name.clone(),
            source,
        };
        match &id.cfg.credential {
            Credential::Password(s) | Credential::ClientSecret(s) => {
                let secret = s.read().await.map_err(secret_error)?;
                Ok(zeroize::Zeroizing::new(secret.expose().as_bytes().to_vec()))
            }
            Credential::Certificate { source, .. } => {
                source.read_bytes().await.map_err(secret_error)
            }
            Credential::FederatedToken(path) => SecretSource::File(path.clone())
                .read_bytes()
                .await
                .map_err(secret_error),
        }
    }

    /// A blocked identity stays blocked until the operator says otherwise
    /// or its secret source holds a different secret than the one that
    /// was refused. The source is re-read at most once per tick.
    async fn unblocked_by_new_secret(
        &self,
        id: &IdentityState,
        attention: Attention,
    ) -> Result<zeroize::Zeroizing<Vec<u8>>, BrokerError> {
        let blocked = || BrokerError::NeedsAttention {
            identity: id.cfg.name.clone(),
            attention: attention.clone(),
        };
        let Some(refused) = &attention.refused else {
            return Err(blocked());
        };
        if !id.secret_check_due(self.now(), self.config.daemon.tick) {
            return Err(blocked());
        }
        let Ok(material) = self.read_material(id).await else {
            return Err(blocked());
        };
        if fingerprint(&material) == *refused {
            return Err(blocked());
        }
        info!(identity = %id.cfg.name, "the {} source changed; trying the new one once", id.cfg.secret_key());
        id.clear_attention();
        Ok(material)
    }

    fn block(
        &self,
        id: &IdentityState,
        e: EntraError,
        refused: Option<identity::Fingerprint>,
    ) -> BrokerError {
        let attention = Attention {
            code: e.code(),
            message: match (&e, e.code()) {
                (EntraError::Aad(aad), Some(code)) => {
                    format!("AADSTS{code}: {}", aad.human_message())
                }
                (EntraError::Aad(aad), None) => aad.human_message(),
                (other, _) => other.to_string(),
            },
            hint: error::hint_for(e.hint(), &id.cfg.name),
            since: self.now(),
            refused,
        };
        warn!(identity = %id.cfg.name, code = ?attention.code, reason = %attention.message, "identity needs attention; no further password attempts");
        id.record_error(attention.message.clone(), attention.hint.clone());
        id.set_attention(attention.clone());
        BrokerError::NeedsAttention {
            identity: id.cfg.name.clone(),
            attention,
        }
    }

    fn request(&self, slot: &TokenSlot, grant: Grant) -> TokenRequest {
        TokenRequest {
            endpoint: slot.endpoint,
            tenant: slot.key.tenant.clone(),
            client_id: slot.key.client_id.clone(),
            resource: slot.key.resource.clone(),
            grant,
        }
    }

    fn store(
        &self,
        slot: &TokenSlot,
        id: &IdentityState,
        grant: crate::entra::token::TokenGrant,
    ) -> Arc<Token> {
        let now = self.now();
        if let Some(rt) = grant.refresh_token {
            self.refresh_tokens
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(
                    (
                        slot.key.identity.clone(),
                        slot.key.tenant.clone(),
                        slot.key.client_id.clone(),
                    ),
                    rt,
                );
        }
        let jitter = rand::rng().random::<f64>();
        let token = Arc::new(Token::new(
            grant.access_token,
            now,
            grant.expires_on,
            self.policy,
            jitter,
        ));
        id.record_success(now);
        info!(identity = %slot.key.identity, resource = %slot.key.resource, expires_on = %rfc3339(token.expires_on), "token obtained");
        slot.set(token.clone());
        if slot.proactive {
            self.wakeup.schedule(token.refresh_at);
        }
        token
    }

    /// Starts discovery and sign-in for every cluster, so the first kubectl
    /// command finds a token waiting.
    pub fn warm_up(self: &Arc<Self>) {
        let broker = self.clone();
        tokio::spawn(async move {
            let names = broker.cluster_names();
            broker.bounded(names).await;
        });
    }

    /// Brings `clusters` up with at most [`PARALLEL`] at a time: a task per
    /// cluster would put a thousand ARM calls (and a thousand idle TLS
    /// connections, kept by the pool and by malloc) in flight at once.
    async fn bounded(self: &Arc<Self>, clusters: Vec<String>) {
        let queue = Arc::new(Mutex::new(clusters.into_iter()));
        let mut workers = tokio::task::JoinSet::new();
        for _ in 0..PARALLEL {
            let broker = self.clone();
            let queue = queue.clone();
            workers.spawn(async move {
                loop {
                    let next = queue.lock().unwrap_or_else(|p| p.into_inner()).next();
                    let Some(name) = next else { break };
                    if let Err(e) = broker.credential(&name).await {
                        warn!(cluster = %name, error = %e, "cluster not ready");
                    }
                }
            });
        }
        while workers.join_next().await.is_some() {}
    }

    /// The earliest wall-clock instant at which [`Broker::tick`] has work:
    /// a planned refresh, or the end of a backoff.
    pub fn next_deadline(&self) -> Option<SystemTime> {
        let slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        let tokens = slots.values().filter_map(|s| s.deadline());
        let clusters = self
            .clusters
            .values()
            .filter(|c| c.target().is_none())
            .filter_map(|c| c.retry_at());
        tokens.chain(clusters).min()
    }

    /// Does what is due on the wall clock now: refreshes tokens past their
    /// refresh time, retries what backed off, and discovers clusters that
    /// failed before. Returns when all of it has finished, so the caller
    /// (the scheduler loop, or a test) knows the state is settled.
    pub async fn tick(self: &Arc<Self>) {
        let now = self.now();
        let mut work = tokio::task::JoinSet::new();
        let slots: Vec<Arc<TokenSlot>> = self
            .slots
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect();
        for slot in slots {
            if slot.deadline().is_some_and(|d| d <= now) {
                let broker = self.clone();
                work.spawn(async move {
                    if let Err(e) = broker.refresh_slot(&slot, false).await {
                        warn!(identity = %slot.key.identity, resource = %slot.key.resource, error = %e, "scheduled refresh failed");
                    }
                });
            }
        }
        let undiscovered: Vec<String> = self
            .clusters
            .values()
            .filter(|cs| cs.target().is_none() && cs.retry_at().is_none_or(|at| at <= now))
            .map(|cs| cs.cfg.name.clone())
            .collect();
        if !undiscovered.is_empty() {
            let broker = self.clone();
            work.spawn(async move { broker.bounded(undiscovered).await });
        }
        while work.join_next().await.is_some() {}
    }

    /// `POST /v1/clusters/{name}/refresh`.
    pub async fn refresh_cluster(&self, name: &str) -> Result<Arc<Token>, BrokerError> {
        let target = self.target_of(name).await?;
        match &target.access {
            target::Access::Token(slot) => self.refresh_slot(slot, true).await,
            target::Access::Certificate(cert) => Ok(cert.clone()),
        }
    }

    /// `POST /v1/identities/{name}/retry`: the operator says the cause is
    /// fixed. Clears the block and tries once for each of its clusters.
    pub async fn retry_identity(self: &Arc<Self>, name: &str) -> Result<bool, BrokerError> {
        let id = self.identity(name)?;
        let was_blocked = id.operator_retry();
        for cs in self.clusters.values().filter(|c| c.cfg.identity == name) {
            cs.clear_error();
        }
        let slots: Vec<Arc<TokenSlot>> = self
            .slots
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .filter(|s| s.key.identity == name)
            .cloned()
            .collect();
        for slot in slots {
            slot.backoff().succeed();
        }
        info!(identity = %name, was_blocked, "retry requested");
        let names: Vec<String> = self
            .clusters
            .values()
            .filter(|c| c.cfg.identity == name)
            .map(|c| c.cfg.name.clone())
            .collect();
        let mut first_error = None;
        for n in names {
            if let Err(e) = self.credential(&n).await
                && first_error.is_none()
            {
                first_error = Some(e);
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(was_blocked),
        }
    }

    pub fn cluster_config(&self, name: &str) -> Result<&Cluster, BrokerError> {
        Ok(&self.cluster(name)?.cfg)
    }

    pub fn status(&self) -> Status {
        self.status_with(Warnings::Checked)
    }

    /// Status for the systemd status line, sent every heartbeat: it shows
    /// no warnings, so the secret files are not looked at.
    pub fn status_for_line(&self) -> Status {
        self.status_with(Warnings::Skipped)
    }

    fn status_with(&self, warnings: Warnings) -> Status {
        let now = self.now();
        let mut identities: Vec<IdentityStatus> = self
            .identities
            .values()
            .map(|id| {
                let attention = id.attention();
                let state = if attention.is_some() {
                    "needs_attention"
                } else if id.last_sign_in().is_some() {
                    "ok"
                } else if id.last_error().is_some() {
                    "error"
                } else {
                    "new"
                };
                let last_error = attention
                    .map(|a| error::api_error("needs_attention", a.message, a.hint))
                    .or_else(|| {
                        id.last_error()
                            .map(|(m, h)| error::api_error("sign_in_failed", m, h))
                    });
                IdentityStatus {
                    name: id.cfg.name.clone(),
                    username: id.cfg.username.clone(),
                    kind: id.cfg.kind().to_string(),
                    state: state.to_string(),
                    last_sign_in: id.last_sign_in().map(rfc3339),
                    warning: match warnings {
                        Warnings::Checked => identity_warning(&id.cfg, id.credential_expiry(), now),
                        Warnings::Skipped => None,
                    },
                    last_error,
                }
            })
            .collect();
        identities.sort_by(|a, b| a.name.cmp(&b.name));
        let mut clusters: Vec<ClusterStatus> = self
            .clusters
            .values()
            .map(|cs| self.cluster_status(cs, now))
            .collect();
        clusters.sort_by(|a, b| a.name.cmp(&b.name));
        Status {
            identities,
            clusters,
        }
    }

    fn cluster_status(&self, cs: &target::ClusterState, now: SystemTime) -> ClusterStatus {
        let attention = self
            .identities
            .get(&cs.cfg.identity)
            .and_then(|i| i.attention());
        let target = cs.target();
        let token = target.as_ref().and_then(|t| t.current());
        let slot_error = target
            .as_ref()
            .and_then(|t| t.slot().and_then(|s| s.last_error()));
        let valid = token.as_ref().is_some_and(|t| t.is_valid(now));
        let state = if valid {
            "ready"
        } else if attention.is_some() {
            "needs_attention"
        } else if cs.last_error().is_some() || slot_error.is_some() {
            "error"
        } else {
            "pending"
        };
        let last_error = attention
            .map(|a| error::api_error("needs_attention", a.message, a.hint))
            .or_else(|| {
                cs.last_error()
                    .or(slot_error)
                    .map(|(m, h)| error::api_error("error", m, h))
            });
        ClusterStatus {
            name: cs.cfg.name.clone(),
            identity: cs.cfg.identity.clone(),
            state: state.to_string(),
            server: target.as_ref().map(|t| t.server.clone()),
            token_expires: token.as_ref().map(|t| rfc3339(t.expires_on)),
            token_valid_for_secs: token.as_ref().map(|t| t.remaining(now).as_secs() as i64),
            // The planned refresh, or the retry while backing off.
            next_refresh: target
                .as_ref()
                .and_then(|t| t.slot().and_then(|s| s.deadline()))
                .map(rfc3339),
            last_refresh: token.as_ref().map(|t| rfc3339(t.obtained)),
            last_error,
        }
    }

    /// Password grants sent so far, per identity (status, metrics, tests).
    pub fn password_grants(&self, identity: &str) -> Option<u64> {
        self.identities.get(identity).map(|i| i.password_grants())
    }

    pub(crate) fn http(&self) -> &reqwest::Client {
        &self.http
    }

    pub(crate) fn identity_config(
        &self,
        name: &str,
    ) -> Result<&crate::config::Identity, BrokerError> {
        Ok(&self.identity(name)?.cfg)
    }

    /// The ARM token of an identity (for `listClusterUserCredential`).
    pub(crate) async fn arm_token(&self, identity: &str) -> Result<Arc<Token>, BrokerError> {
        let id = self.identity_config(identity)?;
        let slot = self.slot(
            TokenKey {
                cloud: id.cloud.name.clone(),
                tenant: id.tenant.clone(),
                identity: id.name.clone(),
                client_id: id.client_id.clone(),
                resource: id.cloud.arm_resource.clone(),
            },
            Endpoint::V2,
            false,
        );
        self.token(&slot).await
    }
}
