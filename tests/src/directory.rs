//! The tenant's user directory: password checks, smart lockout, and the
//! refresh tokens handed out.
//!
//! Stricter than Entra on purpose, so that a careless client shows up in
//! tests: every wrong password counts towards lockout (Entra ignores a
//! repeat of the same bad password), a lock lasts until a test lifts it
//! (Entra's lasts a minute and grows), and a refresh token dies the moment
//! it is redeemed (Entra's stay valid until they expire or are revoked).

use std::collections::{BTreeMap, HashMap};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::scenario::{UserSpec, UserState};

/// Who signed in, as the tokens describe them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Identity {
    pub upn: String,
    pub oid: String,
    pub name: String,
}

struct UserRecord {
    spec: UserSpec,
    identity: Identity,
    failures: u32,
    /// Bumped when the password changes: refresh tokens from before die.
    password_epoch: u64,
}

/// What a refresh token stands for.
#[derive(Debug, Clone)]
pub(crate) struct RefreshGrant {
    pub upn: String,
    pub client_id: String,
    /// The v1 resource of the original request: a v1 refresh without
    /// `resource` gets a token for it again.
    pub resource: String,
    password_epoch: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SignInError {
    NoSuchUser,
    WrongPassword,
    Locked,
    Disabled,
    MfaRequired,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RefreshError {
    /// Never issued by this emulator.
    Unknown,
    /// Already redeemed once (rotated out).
    Spent,
    /// Killed by [`Directory::expire_refresh_tokens`] (inactivity).
    Expired,
    /// The user's password changed after it was issued.
    PasswordChanged,
    /// Presented by another client than the one it was issued to.
    WrongClient,
    Disabled,
    MfaRequired,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DeadReason {
    Spent,
    Expired,
}

pub(crate) struct Directory {
    users: BTreeMap<String, UserRecord>,
    live: HashMap<String, RefreshGrant>,
    dead: HashMap<String, DeadReason>,
    lockout_threshold: u32,
}

/// A GUID derived from a name (case-insensitively), so tokens from
/// different emulator runs name the same user the same way.
pub(crate) fn object_id(upn: &str) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, upn.to_lowercase().as_bytes());
    let b = d.as_ref();
    uuid::Builder::from_random_bytes(b[..16].try_into().unwrap_or([0; 16]))
        .into_uuid()
        .to_string()
}

fn display_name(upn: &str) -> String {
    let local = upn.split('@').next().unwrap_or(upn);
    let mut chars = local.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => upn.to_owned(),
    }
}

impl Directory {
    pub(crate) fn new(users: &[UserSpec], lockout_threshold: u32) -> Directory {
        let users = users
            .iter()
            .map(|spec| {
                let identity = Identity {
                    upn: spec.upn.clone(),
                    oid: object_id(&spec.upn),
                    name: display_name(&spec.upn),
                };
                let record = UserRecord {
                    spec: spec.clone(),
                    identity,
                    failures: 0,
                    password_epoch: 0,
                };
                (spec.upn.to_lowercase(), record)
            })
            .collect();
        Directory {
            users,
            live: HashMap::new(),
            dead: HashMap::new(),
            lockout_threshold: lockout_threshold.max(1),
        }
    }

    pub(crate) fn identity(&self, upn: &str) -> Option<Identity> {
        self.users
            .get(&upn.to_lowercase())
            .map(|u| u.identity.clone())
    }

    /// A password grant. Locked and disabled accounts are refused before
    /// the password is looked at; MFA is demanded only of a right password,
    /// as Entra does.
    pub(crate) fn password_sign_in(
        &mut self,
        upn: &str,
        password: &str,
    ) -> Result<Identity, SignInError> {
        let threshold = self.lockout_threshold;
        let user = self
            .users
            .get_mut(&upn.to_lowercase())
            .ok_or(SignInError::NoSuchUser)?;
        match user.spec.state {
            UserState::Locked => return Err(SignInError::Locked),
            UserState::Disabled => return Err(SignInError::Disabled),
            UserState::Active | UserState::MfaRequired => {}
        }
        if !constant_time_eq(user.spec.password.as_bytes(), password.as_bytes()) {
            user.failures += 1;
            if user.failures >= threshold {
                user.spec.state = UserState::Locked;
            }
            return Err(SignInError::WrongPassword);
        }
        user.failures = 0;
        if user.spec.state == UserState::MfaRequired {
            return Err(SignInError::MfaRequired);
        }
        Ok(user.identity.clone())
    }

    pub(crate) fn issue_refresh_token(
        &mut self,
        upn: &str,
        client_id: &str,
        resource: &str,
    ) -> String {
        let password_epoch = self
            .users
            .get(&upn.to_lowercase())
            .map_or(0, |u| u.password_epoch);
        // Entra's refresh tokens are long opaque strings starting "0.A".
        let raw: Vec<u8> = (0..6)
            .flat_map(|_| *uuid::Uuid::new_v4().as_bytes())
            .collect();
        let token = format!("0.A{}", URL_SAFE_NO_PAD.encode(raw));
        self.live.insert(
            token.clone(),
            RefreshGrant {
                upn: upn.to_owned(),
                client_id: client_id.to_owned(),
                resource: resource.to_owned(),
                password_epoch,
            },
        );
        token
    }

    /// Redeems (and thereby kills) a refresh token. A token presented by the
    /// wrong client stays alive: the rightful owner may still use it.
    pub(crate) fn redeem_refresh_token(
        &mut self,
        token: &str,
        client_id: &str,
    ) -> Result<(RefreshGrant, Identity), RefreshError> {
        if let Some(reason) = self.dead.get(token) {
            return Err(match reason {
                DeadReason::Spent => RefreshError::Spent,
                DeadReason::Expired => RefreshError::Expired,
            });
        }
        let grant = self.live.get(token).ok_or(RefreshError::Unknown)?;
        if !grant.client_id.eq_ignore_ascii_case(client_id) {
            return Err(RefreshError::WrongClient);
        }
        let grant = self.live.remove(token).ok_or(RefreshError::Unknown)?;
        self.dead.insert(token.to_owned(), DeadReason::Spent);
        let user = self
            .users
            .get(&grant.upn.to_lowercase())
            .ok_or(RefreshError::Unknown)?;
        if user.password_epoch != grant.password_epoch {
            return Err(RefreshError::PasswordChanged);
        }
        match user.spec.state {
            UserState::Disabled => Err(RefreshError::Disabled),
            UserState::MfaRequired => Err(RefreshError::MfaRequired),
            // A lockout stops password sign-ins, not refresh tokens.
            UserState::Active | UserState::Locked => Ok((grant, user.identity.clone())),
        }
    }

    /// Every outstanding refresh token now fails as expired (AADSTS700082).
    pub(crate) fn expire_refresh_tokens(&mut self) {
        for (token, _) in self.live.drain() {
            self.dead.insert(token, DeadReason::Expired);
        }
    }

    /// Returns false for an unknown user.
    pub(crate) fn set_state(&mut self, upn: &str, state: UserState) -> bool {
        match self.users.get_mut(&upn.to_lowercase()) {
            Some(user) => {
                user.spec.state = state;
                user.failures = 0;
                true
            }
            None => false,
        }
    }

    /// Changes a password; the user's refresh tokens die with AADSTS50173.
    pub(crate) fn set_password(&mut self, upn: &str, password: &str) -> bool {
        match self.users.get_mut(&upn.to_lowercase()) {
            Some(user) => {
                user.spec.password = password.to_owned();
                user.password_epoch += 1;
                true
            }
            None => false,
        }
    }

    pub(crate) fn state(&self, upn: &str) -> Option<UserState> {
        self.users.get(&upn.to_lowercase()).map(|u| u.spec.state)
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::{Scenario, standard};

    fn directory() -> Directory {
        Directory::new(&Scenario::standard().users, 10)
    }

    #[test]
    fn password_outcomes() {
        let mut d = directory();
        let alice = d
            .password_sign_in("Alice@Contoso.com", standard::PASSWORD)
            .expect("alice signs in, UPN case-insensitively");
        assert_eq!(alice.upn, standard::ALICE);
        assert_eq!(alice.oid, object_id(standard::ALICE));
        assert_eq!(
            d.password_sign_in("nobody@contoso.com", "x"),
            Err(SignInError::NoSuchUser)
        );
        assert_eq!(
            d.password_sign_in(standard::LOCKED, standard::PASSWORD),
            Err(SignInError::Locked)
        );
        assert_eq!(
            d.password_sign_in(standard::DISABLED, standard::PASSWORD),
            Err(SignInError::Disabled)
        );
        assert_eq!(
            d.password_sign_in(standard::MFA, "wrong"),
            Err(SignInError::WrongPassword)
        );
        assert_eq!(
            d.password_sign_in(standard::MFA, standard::PASSWORD),
            Err(SignInError::MfaRequired)
        );
    }

    #[test]
    fn ten_wrong_passwords_lock_the_account() {
        let mut d = directory();
        for _ in 0..9 {
            assert_eq!(
                d.password_sign_in(standard::ALICE, "guess"),
                Err(SignInError::WrongPassword)
            );
        }
        assert_eq!(d.state(standard::ALICE), Some(UserState::Active));
        assert_eq!(
            d.password_sign_in(standard::ALICE, "guess"),
            Err(SignInError::WrongPassword),
            "the tenth failure is still reported as a wrong password"
        );
        assert_eq!(d.state(standard::ALICE), Some(UserState::Locked));
        assert_eq!(
            d.password_sign_in(standard::ALICE, standard::PASSWORD),
            Err(SignInError::Locked),
            "the right password no longer helps"
        );
        assert!(d.set_state(standard::ALICE, UserState::Active));
        assert!(
            d.password_sign_in(standard::ALICE, standard::PASSWORD)
                .is_ok()
        );
    }

    #[test]
    fn a_success_resets_the_failure_count() {
        let mut d = directory();
        for _ in 0..9 {
            let _ = d.password_sign_in(standard::ALICE, "guess");
        }
        assert!(
            d.password_sign_in(standard::ALICE, standard::PASSWORD)
                .is_ok()
        );
        for _ in 0..9 {
            let _ = d.password_sign_in(standard::ALICE, "guess");
        }
        assert_eq!(d.state(standard::ALICE), Some(UserState::Active));
    }

    #[test]
    fn refresh_tokens_rotate() {
        let mut d = directory();
        let client = crate::scenario::AZURE_CLI_CLIENT_ID;
        let rt = d.issue_refresh_token(standard::ALICE, client, "r");
        assert!(rt.starts_with("0.A") && rt.len() > 100);
        assert_eq!(
            d.redeem_refresh_token(&rt, "80faf920-1908-4b52-b5ef-a8e7bedfc67a")
                .err(),
            Some(RefreshError::WrongClient)
        );
        let (grant, who) = d
            .redeem_refresh_token(&rt, client)
            .expect("first use works");
        assert_eq!(
            (grant.upn.as_str(), grant.resource.as_str()),
            (standard::ALICE, "r")
        );
        assert_eq!(who.upn, standard::ALICE);
        assert_eq!(
            d.redeem_refresh_token(&rt, client).err(),
            Some(RefreshError::Spent)
        );
        assert_eq!(
            d.redeem_refresh_token("0.Anever-issued", client).err(),
            Some(RefreshError::Unknown)
        );
    }

    #[test]
    fn refresh_tokens_die_with_expiry_password_change_and_disabling() {
        let mut d = directory();
        let client = crate::scenario::AZURE_CLI_CLIENT_ID;
        let rt = d.issue_refresh_token(standard::ALICE, client, "r");
        d.expire_refresh_tokens();
        assert_eq!(
            d.redeem_refresh_token(&rt, client).err(),
            Some(RefreshError::Expired)
        );

        let rt = d.issue_refresh_token(standard::ALICE, client, "r");
        assert!(d.set_password(standard::ALICE, "new"));
        assert_eq!(
            d.redeem_refresh_token(&rt, client).err(),
            Some(RefreshError::PasswordChanged)
        );

        let rt = d.issue_refresh_token(standard::ALICE, client, "r");
        assert!(d.set_state(standard::ALICE, UserState::Locked));
        let rt = d
            .redeem_refresh_token(&rt, client)
            .map(|(g, _)| d.issue_refresh_token(&g.upn, client, "r"))
            .expect("a locked account keeps its refresh tokens");
        assert!(d.set_state(standard::ALICE, UserState::Disabled));
        assert_eq!(
            d.redeem_refresh_token(&rt, client).err(),
            Some(RefreshError::Disabled)
        );
    }
}
