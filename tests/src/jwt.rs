//! RS256 JSON Web Tokens, signed with the emulator's one RSA key.
//!
//! ring signs and verifies RSA but cannot generate RSA keys, so the key is a
//! checked-in test-only PKCS#8 file (`tests/data/emulator-signing-key.pem`).
//! A fixed key also keeps the JWKS stable across emulator restarts, as
//! Entra's keys are stable for weeks.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::rand::SystemRandom;
use ring::rsa::PublicKeyComponents;
use ring::signature::{RSA_PKCS1_2048_8192_SHA256, RSA_PKCS1_SHA256, RsaKeyPair};
use rustls::pki_types::PrivatePkcs8KeyDer;
use rustls::pki_types::pem::PemObject;
use serde_json::{Map, Value, json};

const EMULATOR_KEY_PEM: &str = include_str!("../data/emulator-signing-key.pem");

pub type Claims = Map<String, Value>;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum JwtError {
    #[error("signing key rejected: {0}")]
    Key(String),
    #[error("token is not three base64url parts with a JSON header and payload")]
    Malformed,
    #[error("token algorithm {0:?} is not RS256")]
    Algorithm(String),
    #[error("token was signed with an unknown key {0:?}")]
    UnknownKey(String),
    #[error("token signature does not verify")]
    Signature,
}

pub struct SigningKey {
    pair: RsaKeyPair,
    public: PublicKeyComponents<Vec<u8>>,
    kid: String,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// The checked-in emulator key.
    pub fn emulator() -> Result<SigningKey, JwtError> {
        SigningKey::from_pkcs8_pem(EMULATOR_KEY_PEM)
    }

    pub fn from_pkcs8_pem(pem: &str) -> Result<SigningKey, JwtError> {
        let der = PrivatePkcs8KeyDer::from_pem_slice(pem.as_bytes())
            .map_err(|e| JwtError::Key(e.to_string()))?;
        let pair = RsaKeyPair::from_pkcs8(der.secret_pkcs8_der())
            .map_err(|e| JwtError::Key(e.to_string()))?;
        let public = PublicKeyComponents::<Vec<u8>>::from(pair.public());
        // Entra's kids are 27 base64url characters (a SHA-1 thumbprint);
        // a truncated SHA-256 of the modulus has the same look and is stable.
        let digest = ring::digest::digest(&ring::digest::SHA256, &public.n);
        let mut kid = URL_SAFE_NO_PAD.encode(digest.as_ref());
        kid.truncate(27);
        Ok(SigningKey { pair, public, kid })
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The key as a JWKS entry (RFC 7517), as Entra publishes it.
    pub fn jwk(&self, issuer: Option<&str>) -> Value {
        let mut jwk = json!({
            "kty": "RSA",
            "use": "sig",
            "kid": self.kid,
            "x5t": self.kid,
            "n": URL_SAFE_NO_PAD.encode(&self.public.n),
            "e": URL_SAFE_NO_PAD.encode(&self.public.e),
        });
        if let (Some(issuer), Some(obj)) = (issuer, jwk.as_object_mut()) {
            obj.insert("issuer".into(), Value::from(issuer));
        }
        jwk
    }

    pub fn sign(&self, claims: &Claims) -> String {
        // Entra puts the key id in both `kid` and `x5t`.
        let header = json!({"typ": "JWT", "alg": "RS256", "x5t": self.kid, "kid": self.kid});
        let signing_input = format!("{}.{}", b64_json(&header), b64_json(claims));
        let mut sig = vec![0u8; self.pair.public().modulus_len()];
        // Signing only fails on a wrong-sized buffer or a broken RNG; neither
        // can be recovered from in a test emulator.
        self.pair
            .sign(
                &RSA_PKCS1_SHA256,
                &SystemRandom::new(),
                signing_input.as_bytes(),
                &mut sig,
            )
            .expect("RSA signing with a correctly sized buffer");
        format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(sig))
    }

    /// Checks form, algorithm, key id and signature; returns the claims.
    /// Time, audience and issuer are the caller's business: they differ
    /// between ARM and API servers.
    pub fn verify(&self, token: &str) -> Result<Claims, JwtError> {
        let mut parts = token.split('.');
        let (Some(h), Some(p), Some(s), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(JwtError::Malformed);
        };
        let header = decode_json(h).ok_or(JwtError::Malformed)?;
        let alg = header.get("alg").and_then(Value::as_str).unwrap_or("");
        if alg != "RS256" {
            return Err(JwtError::Algorithm(alg.to_owned()));
        }
        let kid = header.get("kid").and_then(Value::as_str).unwrap_or("");
        if kid != self.kid {
            return Err(JwtError::UnknownKey(kid.to_owned()));
        }
        let sig = URL_SAFE_NO_PAD.decode(s).map_err(|_| JwtError::Malformed)?;
        let signing_input = &token[..h.len() + 1 + p.len()];
        self.public
            .verify(&RSA_PKCS1_2048_8192_SHA256, signing_input.as_bytes(), &sig)
            .map_err(|_| JwtError::Signature)?;
        decode_json(p).ok_or(JwtError::Malformed)
    }
}

/// An unsigned (`alg: none`) token: what the v1 endpoint returns as
/// `id_token`.
pub fn unsigned(claims: &Claims) -> String {
    let header = json!({"typ": "JWT", "alg": "none"});
    format!("{}.{}.", b64_json(&header), b64_json(claims))
}

/// The payload of a JWT without any check, for tests and diagnostics.
pub fn decode_unverified(token: &str) -> Option<Claims> {
    decode_json(token.split('.').nth(1)?)
}

pub(crate) fn b64_json(value: &impl serde::Serialize) -> String {
    // Serialising a Map or Value cannot fail.
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(value).unwrap_or_default())
}

fn decode_json(part: &str) -> Option<Claims> {
    let bytes = URL_SAFE_NO_PAD.decode(part).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Why a token's time window rejects it.
#[derive(Debug, PartialEq, Eq)]
pub enum TimeError {
    Missing,
    Expired { exp: u64 },
    NotYetValid { nbf: u64 },
}

/// `exp` strictly (client-go and ARM allow no leeway on expiry), `nbf` with
/// five minutes of skew as go-oidc does.
pub fn check_times(claims: &Claims, now: u64) -> Result<(), TimeError> {
    let exp = claims
        .get("exp")
        .and_then(Value::as_u64)
        .ok_or(TimeError::Missing)?;
    if now >= exp {
        return Err(TimeError::Expired { exp });
    }
    if let Some(nbf) = claims.get("nbf").and_then(Value::as_u64)
        && nbf > now + 300
    {
        return Err(TimeError::NotYetValid { nbf });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims() -> Claims {
        let v = json!({"aud": "6dae42f8-4368-4678-94ff-3960e28e3630", "exp": 2000, "nbf": 1000});
        v.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn sign_verify_round_trip() {
        let key = SigningKey::emulator().expect("checked-in key loads");
        let token = key.sign(&claims());
        assert_eq!(key.verify(&token), Ok(claims()));
        assert_eq!(decode_unverified(&token), Some(claims()));
        let jwk = key.jwk(None);
        assert_eq!(jwk["kid"], key.kid());
        assert_eq!(jwk["e"], "AQAB");
        assert_eq!(key.kid().len(), 27);
    }

    #[test]
    fn verify_rejects_tampering_and_other_algorithms() {
        let key = SigningKey::emulator().expect("checked-in key loads");
        let token = key.sign(&claims());
        let parts: Vec<&str> = token.split('.').collect();
        let mut other = claims();
        other.insert("aud".into(), "spn:evil".into());
        let forged = format!("{}.{}.{}", parts[0], b64_json(&other), parts[2]);
        assert_eq!(key.verify(&forged), Err(JwtError::Signature));
        assert_eq!(
            key.verify(&unsigned(&claims())),
            Err(JwtError::Algorithm("none".into()))
        );
        assert_eq!(key.verify("a.b"), Err(JwtError::Malformed));
        assert_eq!(key.verify("!!.??.**"), Err(JwtError::Malformed));
        assert_eq!(key.verify(""), Err(JwtError::Malformed));
    }

    #[test]
    fn time_window() {
        let c = claims();
        assert_eq!(check_times(&c, 1500), Ok(()));
        assert_eq!(check_times(&c, 2000), Err(TimeError::Expired { exp: 2000 }));
        assert_eq!(check_times(&c, 800), Ok(()), "five minutes of nbf skew");
        assert_eq!(
            check_times(&c, 600),
            Err(TimeError::NotYetValid { nbf: 1000 })
        );
        assert_eq!(check_times(&Claims::new(), 1), Err(TimeError::Missing));
    }
}
