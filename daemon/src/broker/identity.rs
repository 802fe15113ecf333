//! Per-identity state: the lockout guard and the one-sign-in-at-a-time lock.
//!
//! Entra smart lockout locks an account after 10 failed attempts (3 in US
//! Gov). Once the service has said the password is wrong (or the account is
//! locked, needs MFA, ...), the identity is marked `needs_attention` and no
//! code path sends the password again until the operator runs
//! `akscred retry`.

use std::sync::Mutex;
use std::time::SystemTime;

use crate::config::Identity;
use crate::entra::realm::UserRealm;

/// Why an identity stopped signing in, as shown in status and errors.
#[derive(Debug, Clone)]
pub struct Attention {
    pub code: Option<u32>,
    pub message: String,
    pub hint: String,
    pub since: SystemTime,
}

#[derive(Debug, Default)]
struct Inner {
    /// `None` until discovered; `Some(None)` when the realm endpoint said 404.
    realm: Option<Option<UserRealm>>,
    attention: Option<Attention>,
    last_sign_in: Option<SystemTime>,
    last_error: Option<(String, String)>,
    password_grants: u64,
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

    pub fn count_password_grant(&self) {
        self.inner().password_grants += 1;
    }

    pub fn password_grants(&self) -> u64 {
        self.inner().password_grants
    }

    pub fn last_sign_in(&self) -> Option<SystemTime> {
        self.inner().last_sign_in
    }

    pub fn last_error(&self) -> Option<(String, String)> {
        self.inner().last_error.clone()
    }
}
