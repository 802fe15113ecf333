//! One access token as the broker holds it, with the instants that decide
//! when it is refreshed and what kubectl is told about its expiry.
//!
//! The ExecCredential bodies are rendered once, when the token arrives, into
//! reference-counted buffers that zeroize themselves when the last reference
//! goes: a credential request answers with a clone (no copy of the token in
//! the daemon's heap), and hyper drops its reference once the bytes are in
//! the socket.

use std::time::{Duration, SystemTime};

use akscred_proto::{EXEC_API_V1, EXEC_API_V1BETA1, ExecCredential, ExecCredentialStatus};
use bytes::Bytes;
use zeroize::{Zeroize, Zeroizing};

use crate::clock::rfc3339;
use crate::secret::Secret;

/// Lifetime and refresh policy knobs, from `[daemon]`.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    pub refresh_before: Duration,
    pub min_remaining: Duration,
}

pub struct Token {
    pub expires_on: SystemTime,
    pub obtained: SystemTime,
    /// When the scheduler refreshes it (about 75 % of the lifetime).
    pub refresh_at: SystemTime,
    /// A request that finds less than this left waits for a refresh.
    pub min_remaining: Duration,
    /// `expirationTimestamp` told to kubectl: client-go re-runs the plugin
    /// only after that instant, so it must come before the real expiry.
    pub exec_expiry: SystemTime,
    access_token: Secret,
    body_v1: Bytes,
    body_v1beta1: Bytes,
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Token")
            .field("expires_on", &rfc3339(self.expires_on))
            .field("refresh_at", &rfc3339(self.refresh_at))
            .field("access_token", &"…")
            .finish()
    }
}

/// `expirationTimestamp` for kubectl: a minute (at most a quarter of the
/// lifetime) before the credential really ends, since client-go re-runs the
/// plugin only after that instant and has no margin of its own.
fn exec_expiry(obtained: SystemTime, expires_on: SystemTime) -> SystemTime {
    let lifetime = expires_on.duration_since(obtained).unwrap_or_default();
    let margin = Duration::from_secs(60).min(lifetime / 4);
    expires_on.checked_sub(margin).unwrap_or(obtained)
}

/// The owner of a rendered body: its bytes are zeroized when the last
/// `Bytes` referring to them is dropped.
struct SecretBody(Zeroizing<Vec<u8>>);

impl AsRef<[u8]> for SecretBody {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

/// The ExecCredential in both API versions, rendered once; the secret
/// fields of `status` are zeroized afterwards.
fn bodies(status: ExecCredentialStatus) -> [Bytes; 2] {
    let mut cred = ExecCredential {
        api_version: String::new(),
        kind: "ExecCredential".to_string(),
        status,
    };
    let out = [EXEC_API_V1, EXEC_API_V1BETA1].map(|api| {
        cred.api_version = api.to_string();
        // Serialising plain strings cannot fail.
        let body = Zeroizing::new(serde_json::to_vec(&cred).unwrap_or_default());
        Bytes::from_owner(SecretBody(body))
    });
    cred.status.token.zeroize();
    if let Some(k) = cred.status.client_key_data.as_mut() {
        k.zeroize();
    }
    out
}

impl Token {
    /// `jitter` in [0, 1) spreads refreshes of tokens obtained together over
    /// 70–80 % of their lifetime, so a jump host with hundreds of clusters
    /// does not refresh them in one burst.
    pub fn new(
        access_token: Secret,
        obtained: SystemTime,
        expires_on: SystemTime,
        policy: Policy,
        jitter: f64,
    ) -> Token {
        let lifetime = expires_on.duration_since(obtained).unwrap_or_default();
        let fraction = 0.70 + 0.10 * jitter.clamp(0.0, 1.0);
        let proactive = obtained + lifetime.mul_f64(fraction);
        let latest = expires_on
            .checked_sub(policy.refresh_before)
            .unwrap_or(obtained);
        // Never later than `expires_on - refresh_before`; a token shorter
        // than `refresh_before` is used for about half its life instead.
        let refresh_at = if latest > obtained {
            proactive.min(latest)
        } else {
            // Jittered too (45–55 %): many short tokens issued together
            // must not all come due in the same second.
            obtained + lifetime.mul_f64(0.45 + 0.10 * jitter.clamp(0.0, 1.0))
        };
        // Short-lived tokens (tests use 60 s) would otherwise be "almost
        // expired" from the moment they arrive.
        let min_remaining = policy.min_remaining.min(lifetime / 4);
        let exec_expiry = exec_expiry(obtained, expires_on);
        let [body_v1, body_v1beta1] = bodies(ExecCredentialStatus {
            token: access_token.expose().to_string(),
            client_certificate_data: None,
            client_key_data: None,
            expiration_timestamp: rfc3339(exec_expiry),
        });
        Token {
            expires_on,
            obtained,
            refresh_at,
            min_remaining,
            exec_expiry,
            body_v1,
            body_v1beta1,
            access_token,
        }
    }

    /// The credential of a local-account cluster: its client certificate
    /// and key, valid until the certificate's `notAfter`. Held in memory
    /// only; the key is never written to disk.
    pub fn client_certificate(
        cert_pem: &str,
        key_pem: &Secret,
        obtained: SystemTime,
        not_after: SystemTime,
    ) -> Token {
        let exec_expiry = exec_expiry(obtained, not_after);
        let [body_v1, body_v1beta1] = bodies(ExecCredentialStatus {
            token: String::new(),
            client_certificate_data: Some(cert_pem.to_string()),
            client_key_data: Some(key_pem.expose().to_string()),
            expiration_timestamp: rfc3339(exec_expiry),
        });
        Token {
            expires_on: not_after,
            obtained,
            // Nothing to refresh: a new certificate comes with a new
            // discovery, when this one has expired.
            refresh_at: not_after,
            min_remaining: Duration::ZERO,
            exec_expiry,
            access_token: Secret::default(),
            body_v1,
            body_v1beta1,
        }
    }

    pub fn access_token(&self) -> &Secret {
        &self.access_token
    }

    /// Good enough to hand out without waiting for a refresh.
    pub fn is_fresh(&self, now: SystemTime) -> bool {
        self.expires_on
            .duration_since(now)
            .is_ok_and(|left| left > self.min_remaining)
    }

    /// Still accepted by the API server (used while upstream is down).
    pub fn is_valid(&self, now: SystemTime) -> bool {
        self.expires_on > now
    }

    pub fn remaining(&self, now: SystemTime) -> Duration {
        self.expires_on.duration_since(now).unwrap_or_default()
    }

    /// The ExecCredential JSON; cloning it is a reference count.
    pub fn exec_credential(&self, api: ExecApi) -> &Bytes {
        match api {
            ExecApi::V1 => &self.body_v1,
            ExecApi::V1Beta1 => &self.body_v1beta1,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExecApi {
    V1,
    V1Beta1,
}

impl ExecApi {
    /// Accepts `v1`, `v1beta1` or the full `client.authentication.k8s.io/...`.
    pub fn parse(s: &str) -> Option<ExecApi> {
        match s.strip_prefix("client.authentication.k8s.io/").unwrap_or(s) {
            "v1" => Some(ExecApi::V1),
            "v1beta1" => Some(ExecApi::V1Beta1),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: Policy = Policy {
        refresh_before: Duration::from_secs(600),
        min_remaining: Duration::from_secs(120),
    };

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000 + secs)
    }

    #[test]
    fn an_hour_token_refreshes_at_about_three_quarters() {
        let t = Token::new(Secret::new("tok"), at(0), at(3600), POLICY, 0.5);
        assert_eq!(t.refresh_at, at(2700));
        let early = Token::new(Secret::new("tok"), at(0), at(3600), POLICY, 0.0);
        let late = Token::new(Secret::new("tok"), at(0), at(3600), POLICY, 0.999);
        assert_eq!(early.refresh_at, at(2520));
        assert!(late.refresh_at > at(2870) && late.refresh_at <= at(2880));
        assert_eq!(t.exec_expiry, at(3540));
        assert!(t.is_fresh(at(3479)));
        assert!(!t.is_fresh(at(3480)));
        assert!(t.is_valid(at(3599)) && !t.is_valid(at(3600)));
    }

    #[test]
    fn refresh_before_caps_a_long_token() {
        let p = Policy {
            refresh_before: Duration::from_secs(7200),
            ..POLICY
        };
        // 24 h token: 75 % would be 18 h, but refresh_before asks for 22 h.
        let t = Token::new(Secret::new("tok"), at(0), at(86400), p, 0.5);
        assert_eq!(t.refresh_at, at(64800));
        let p = Policy {
            refresh_before: Duration::from_secs(30000),
            ..POLICY
        };
        let t = Token::new(Secret::new("tok"), at(0), at(86400), p, 0.5);
        assert_eq!(t.refresh_at, at(56400));
    }

    #[test]
    fn a_short_token_is_usable_for_half_its_life() {
        // refresh_before (10 min) is longer than the whole token: half-life wins.
        let t = Token::new(Secret::new("tok"), at(0), at(60), POLICY, 0.5);
        assert_eq!(t.refresh_at, at(30));
        assert_eq!(t.min_remaining, Duration::from_secs(15));
        assert_eq!(t.exec_expiry, at(45));
        assert!(t.is_fresh(at(44)));
    }

    #[test]
    fn exec_credential_bodies_in_both_versions() {
        let t = Token::new(Secret::new("s3cr3t\"value"), at(0), at(3600), POLICY, 0.5);
        let v1: serde_json::Value = serde_json::from_slice(t.exec_credential(ExecApi::V1)).unwrap();
        assert_eq!(v1["apiVersion"], EXEC_API_V1);
        assert_eq!(v1["kind"], "ExecCredential");
        assert_eq!(v1["status"]["token"], "s3cr3t\"value");
        assert_eq!(v1["status"]["expirationTimestamp"], "2027-01-15T08:59:00Z");
        let b: serde_json::Value =
            serde_json::from_slice(t.exec_credential(ExecApi::V1Beta1)).unwrap();
        assert_eq!(b["apiVersion"], EXEC_API_V1BETA1);
        assert!(!format!("{t:?}").contains("s3cr3t"));
    }

    #[test]
    fn planned_refresh_is_after_issue_and_before_the_deadline() {
        use rand::Rng;
        let mut rng = rand::rng();
        for _ in 0..20_000 {
            let start = at(rng.random_range(0..10_000_000));
            let lifetime = Duration::from_millis(rng.random_range(1_000..172_800_000));
            let policy = Policy {
                refresh_before: Duration::from_millis(rng.random_range(0..7_200_000)),
                min_remaining: Duration::from_millis(rng.random_range(0..600_000)),
            };
            let t = Token::new(
                Secret::new("t"),
                start,
                start + lifetime,
                policy,
                rng.random(),
            );
            assert!(t.refresh_at > start, "{t:?} {lifetime:?} {policy:?}");
            assert!(t.refresh_at < t.expires_on, "{t:?}");
            if policy.refresh_before < lifetime {
                assert!(
                    t.refresh_at <= t.expires_on - policy.refresh_before,
                    "{t:?} {lifetime:?} {policy:?}"
                );
            }
            assert!(
                t.exec_expiry < t.expires_on && t.exec_expiry >= start,
                "{t:?}"
            );
        }
    }

    #[test]
    fn tokens_issued_together_are_refreshed_spread_out() {
        use rand::Rng;
        let mut rng = rand::rng();
        let mut per_second = std::collections::HashMap::<u64, usize>::new();
        for _ in 0..500 {
            let t = Token::new(Secret::new("t"), at(0), at(3600), POLICY, rng.random());
            let second = t.refresh_at.duration_since(at(0)).unwrap().as_secs();
            *per_second.entry(second).or_default() += 1;
        }
        let busiest = per_second.values().max().copied().unwrap_or(0);
        // 5 % of 500.
        assert!(busiest <= 25, "{busiest} refreshes in one second");
    }

    #[test]
    fn exec_api_names() {
        assert_eq!(ExecApi::parse("v1"), Some(ExecApi::V1));
        assert_eq!(
            ExecApi::parse("client.authentication.k8s.io/v1beta1"),
            Some(ExecApi::V1Beta1)
        );
        assert_eq!(
            ExecApi::parse("client.authentication.k8s.io/v1alpha1"),
            None
        );
    }
}
