//! Per-identity state: the lockout guard and the one-sign-in-at-a-time lock.
//!
//! Entra smart lockout locks an account after 10 failed attempts (3 in US
//! Gov). Once the service has said the password is wrong (or the account is
//! locked, needs MFA, ...), the identity is marked `needs_attention` and no
//! code path sends the password again until the operator runs
//! `akscred retry`.

use std::collections::VecDeque;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, SystemTime};

use crate::config::Identity;
use crate::entra::realm::UserRealm;

/// A keyed digest of a password, to notice that the secret source now holds
/// a different one without keeping the refused password around. The key is
/// random per process, so the digest is useless outside it.
#[derive(Clone, PartialEq, Eq)]
pub struct Fingerprint(Vec<u8>);

impl std::fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Fingerprint(…)")
    }
}

pub fn fingerprint(secret: &[u8]) -> Fingerprint {
    static KEY: OnceLock<Option<ring::hmac::Key>> = OnceLock::new();
    let key = KEY.get_or_init(|| {
        ring::hmac::Key::generate(ring::hmac::HMAC_SHA256, &ring::rand::SystemRandom::new()).ok()
    });
    match key {
        Some(k) => Fingerprint(ring::hmac::sign(k, secret).as_ref().to_vec()),
        // No randomness: every secret looks changed, which only ever means
        // one more attempt after an explicit change of the source.
        None => Fingerprint(Vec::new()),
    }
}

/// The window of the password budget.
pub const BUDGET_WINDOW: Duration = Duration::from_secs(3600);

/// Why an identity stopped signing in, as shown in status and errors.
#[derive(Debug, Clone)]
pub struct Attention {
    pub code: Option<u32>,
    pub message: String,
    pub hint: String,
    pub since: SystemTime,
    /// The password that was refused (`None` when the failure was not about
    /// a password, e.g. a refresh token grant refused for MFA).
    pub refused: Option<Fingerprint>,
}

#[derive(Debug, Default)]
struct Inner {
    /// `None` until discovered; `Some(None)` when the realm endpoint said 404.
    realm: Option<Option<UserRealm>>,
    attention: Option<Attention>,
    last_sign_in: Option<SystemTime>,
    last_error: Option<(String, String)>,
    password_grants: u64,
    /// When recent password grants were sent, for the hourly budget.
    recent_grants: VecDeque<SystemTime>,
    /// The operator asked for one attempt (`akscred retry`): it may exceed
    /// the budget once.
    operator_retry: bool,
    /// When the secret source was last re-read to look for a new password.
    last_secret_check: Option<SystemTime>,
    /// `notAfter` of the certificate an application signs in with.
    credential_expiry: Option<SystemTime>,
}

pub struct IdentityState {
    pub cfg: Identity,
    /// Held for the whole of a password sign-in: at most one in flight per
    /// identity, shared by all its clusters and resources.
    pub signin: tokio::sync::Mutex<()>,
    inner: Mutex<Inner>,
}

impl IdentityState {
    pub fn new(cfg: Identity) -> Self {
        IdentityState {
            cfg,
            signin: tokio::sync::Mutex::new(()),
            inner: Mutex::new(Inner::default()),
        }
    }

    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic elsewhere must not take the lockout guard down with it.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn attention(&self) -> Option<Attention> {
        self.inner().attention.clone()
    }

    pub fn set_attention(&self, attention: Attention) {
        self.inner().attention = Some(attention);
    }

    /// Returns whether the identity was blocked.
    pub fn clear_attention(&self) -> bool {
        let mut inner = self.inner();
        inner.last_error = None;
        inner.attention.take().is_some()
    }

    /// `akscred retry`: unblock and allow one attempt past the budget.
    pub fn operator_retry(&self) -> bool {
        self.inner().operator_retry = true;
        self.clear_attention()
    }

    /// Whether it is time to re-read the secret source of a blocked
    /// identity (at most once per `every`, so a `command` source is not run
    /// on every kubectl invocation).
    pub fn secret_check_due(&self, now: SystemTime, every: Duration) -> bool {
        let mut inner = self.inner();
        let due = inner
            .last_secret_check
            .is_none_or(|t| !matches!(now.duration_since(t), Ok(d) if d < every));
        if due {
            inner.last_secret_check = Some(now);
        }
        due
    }

    /// Takes one password submission from the budget, or says when the
    /// next one is allowed.
    pub fn take_budget(&self, now: SystemTime, per_hour: u32) -> Result<(), SystemTime> {
        let mut inner = self.inner();
        while inner
            .recent_grants
            .front()
            .is_some_and(|t| now.duration_since(*t).is_ok_and(|d| d >= BUDGET_WINDOW))
        {
            inner.recent_grants.pop_front();
        }
        if inner.recent_grants.len() as u32 >= per_hour && !inner.operator_retry {
            let oldest = inner.recent_grants.front().copied().unwrap_or(now);
            return Err(oldest + BUDGET_WINDOW);
        }
        inner.operator_retry = false;
        inner.recent_grants.push_back(now);
        inner.password_grants += 1;
        Ok(())
    }

    pub fn realm(&self) -> Option<Option<UserRealm>> {
        self.inner().realm.clone()
    }

    pub fn set_realm(&self, realm: Option<UserRealm>) {
        self.inner().realm = Some(realm);
    }

    pub fn record_success(&self, now: SystemTime) {
        let mut inner = self.inner();
        inner.last_sign_in = Some(now);
        inner.last_error = None;
    }

    pub fn record_error(&self, message: String, hint: String) {
        self.inner().last_error = Some((message, hint));
    }

    pub fn password_grants(&self) -> u64 {
        self.inner().password_grants
    }

    pub fn set_credential_expiry(&self, at: Option<SystemTime>) {
        self.inner().credential_expiry = at;
    }

    pub fn credential_expiry(&self) -> Option<SystemTime> {
        self.inner().credential_expiry
    }

    pub fn last_sign_in(&self) -> Option<SystemTime> {
        self.inner().last_sign_in
    }

    pub fn last_error(&self) -> Option<(String, String)> {
        self.inner().last_error.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cloud::Cloud;
    use crate::config::Credential;
    use crate::secret::SecretSource;

    fn state() -> IdentityState {
        IdentityState::new(Identity {
            name: "alice".into(),
            cloud: Cloud::built_in("AzurePublicCloud").unwrap(),
            tenant: "t".into(),
            username: "alice@contoso.com".into(),
            credential: Credential::Password(SecretSource::Env("X".into())),
            client_id: "c".into(),
        })
    }

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000 + secs)
    }

    #[test]
    fn budget_allows_three_an_hour_and_says_when_the_next_is_allowed() {
        let id = state();
        assert!(id.take_budget(at(0), 3).is_ok());
        assert!(id.take_budget(at(10), 3).is_ok());
        assert!(id.take_budget(at(20), 3).is_ok());
        assert_eq!(id.take_budget(at(30), 3), Err(at(3600)));
        assert_eq!(id.take_budget(at(3599), 3), Err(at(3600)));
        assert!(id.take_budget(at(3600), 3).is_ok());
        assert_eq!(id.password_grants(), 4);
        // The operator's retry goes past the budget, once.
        assert!(id.take_budget(at(3601), 3).is_err());
        id.operator_retry();
        assert!(id.take_budget(at(3601), 3).is_ok());
        assert!(id.take_budget(at(3602), 3).is_err());
    }

    #[test]
    fn fingerprints_tell_passwords_apart_and_hide_them() {
        let a = fingerprint(b"hunter2");
        assert_eq!(a, fingerprint(b"hunter2"));
        assert_ne!(a, fingerprint(b"hunter3"));
        assert_eq!(format!("{a:?}"), "Fingerprint(…)");
    }

    #[test]
    fn secret_checks_are_rate_limited() {
        let id = state();
        let every = Duration::from_secs(30);
        assert!(id.secret_check_due(at(0), every));
        assert!(!id.secret_check_due(at(29), every));
        assert!(id.secret_check_due(at(30), every));
    }
}
