//! Service-principal certificates and the client assertions they sign
//! (RFC 7523 `private_key_jwt`, as Entra expects it).
//!
//! The assertion is an RS256 JWT naming the certificate by its SHA-1
//! (`x5t`) and SHA-256 (`x5t#S256`) thumbprints, addressed to the token
//! endpoint (`aud`), valid for ten minutes, with a fresh `jti` so a copy
//! cannot be replayed.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::signature::{KeyPair, RSA_PKCS1_SHA256, RsaKeyPair};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::secret::Secret;

/// How long an assertion is good for: short, since each sign-in signs anew.
pub const LIFETIME: Duration = Duration::from_secs(600);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CertError {
    #[error("the certificate file holds no certificate")]
    NoCertificate,
    #[error(
        "the certificate file holds no private key; it needs the key with the certificate (PEM) or a PKCS#12 bundle"
    )]
    NoKey,
    #[error("the PKCS#12 bundle cannot be opened: {0} (wrong certificate_password?)")]
    Pkcs12(String),
    #[error("the PKCS#12 bundle needs a password: set certificate_password")]
    Pkcs12Password,
    #[error(
        "the private key is not an RSA key akscred can use ({0}); Entra client assertions are RS256"
    )]
    Key(String),
    #[error("the certificate cannot be read: {0}")]
    Certificate(String),
    #[error("the private key does not belong to the certificate")]
    Mismatch,
}

/// A certificate and its key, ready to sign.
pub struct SigningCert {
    key: RsaKeyPair,
    pub not_after: SystemTime,
    x5t: String,
    x5t_s256: String,
}

impl std::fmt::Debug for SigningCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningCert")
            .field("x5t", &self.x5t)
            .field("key", &"…")
            .finish()
    }
}

/// Loads PEM (certificate and key, in any order) or PKCS#12 (binary, with
/// `password`).
pub fn load(bytes: &[u8], password: Option<&Secret>) -> Result<SigningCert, CertError> {
    let looks_pem = bytes.windows(11).any(|w| w == b"-----BEGIN ");
    let (cert_der, key) = if looks_pem {
        let cert = CertificateDer::pem_slice_iter(bytes)
            .next()
            .ok_or(CertError::NoCertificate)?
            .map_err(|e| CertError::Certificate(e.to_string()))?;
        let key = PrivateKeyDer::from_pem_slice(bytes).map_err(|_| CertError::NoKey)?;
        let pair = match &key {
            PrivateKeyDer::Pkcs8(k) => RsaKeyPair::from_pkcs8(k.secret_pkcs8_der()),
            PrivateKeyDer::Pkcs1(k) => RsaKeyPair::from_der(k.secret_pkcs1_der()),
            _ => return Err(CertError::Key("an EC or other non-RSA key".into())),
        }
        .map_err(|e| CertError::Key(e.to_string()))?;
        (cert.to_vec(), pair)
    } else {
        let password = password.ok_or(CertError::Pkcs12Password)?;
        let store = p12_keystore::KeyStore::from_pkcs12(
            bytes,
            password.expose(),
            p12_keystore::Pkcs12ImportPolicy::Strict,
        )
        .map_err(|e| CertError::Pkcs12(e.to_string()))?;
        let (_, chain) = store.private_key_chain().ok_or(CertError::NoKey)?;
        let cert = chain.certs().first().ok_or(CertError::NoCertificate)?;
        let pair = RsaKeyPair::from_pkcs8(chain.key().as_der())
            .map_err(|e| CertError::Key(e.to_string()))?;
        (cert.as_der().to_vec(), pair)
    };
    let (_, parsed) = x509_parser::parse_x509_certificate(&cert_der)
        .map_err(|e| CertError::Certificate(e.to_string()))?;
    // SubjectPublicKeyInfo of an RSA certificate carries the same
    // RSAPublicKey DER that ring reports for the key pair.
    if parsed.public_key().subject_public_key.data.as_ref() != key.public_key().as_ref() {
        return Err(CertError::Mismatch);
    }
    let not_after = UNIX_EPOCH
        + Duration::from_secs(u64::try_from(parsed.validity().not_after.timestamp()).unwrap_or(0));
    let sha1 = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, &cert_der);
    let sha256 = ring::digest::digest(&ring::digest::SHA256, &cert_der);
    Ok(SigningCert {
        key,
        not_after,
        x5t: URL_SAFE_NO_PAD.encode(sha1.as_ref()),
        x5t_s256: URL_SAFE_NO_PAD.encode(sha256.as_ref()),
    })
}

/// The `notAfter` of the first certificate in a PEM bundle (a local
/// account's client certificate), as a wall-clock instant.
pub fn pem_not_after(pem: &[u8]) -> Result<SystemTime, CertError> {
    let cert = CertificateDer::pem_slice_iter(pem)
        .next()
        .ok_or(CertError::NoCertificate)?
        .map_err(|e| CertError::Certificate(e.to_string()))?;
    let (_, parsed) = x509_parser::parse_x509_certificate(&cert)
        .map_err(|e| CertError::Certificate(e.to_string()))?;
    Ok(UNIX_EPOCH
        + Duration::from_secs(u64::try_from(parsed.validity().not_after.timestamp()).unwrap_or(0)))
}

fn seconds(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs()
}

/// Signs a client assertion for `client_id` addressed to `audience` (the
/// token endpoint URL the request goes to).
pub fn client_assertion(
    cert: &SigningCert,
    client_id: &str,
    audience: &str,
    now: SystemTime,
) -> Result<Secret, CertError> {
    let header = serde_json::json!({
        "alg": "RS256",
        "typ": "JWT",
        "x5t": cert.x5t,
        "x5t#S256": cert.x5t_s256,
    });
    let claims = serde_json::json!({
        "aud": audience,
        "iss": client_id,
        "sub": client_id,
        "jti": uuid::Uuid::new_v4().to_string(),
        "iat": seconds(now),
        "nbf": seconds(now),
        "exp": seconds(now + LIFETIME),
    });
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let mut signature = vec![0; cert.key.public().modulus_len()];
    cert.key
        .sign(
            &RSA_PKCS1_SHA256,
            &ring::rand::SystemRandom::new(),
            signing_input.as_bytes(),
            &mut signature,
        )
        .map_err(|_| CertError::Key("signing failed".into()))?;
    Ok(Secret::new(format!(
        "{signing_input}.{}",
        URL_SAFE_NO_PAD.encode(&signature)
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    const PEM: &str = include_str!("testdata/sp-cert.pem");

    fn part(jwt: &str, i: usize) -> serde_json::Value {
        let p = jwt.split('.').nth(i).unwrap();
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(p).unwrap()).unwrap()
    }

    #[test]
    fn assertion_header_and_claims_against_a_known_key() {
        let cert = load(PEM.as_bytes(), None).unwrap();
        let now = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let aud = "https://login.example/tenant/oauth2/v2.0/token";
        let jwt = client_assertion(&cert, "app-id", aud, now).unwrap();
        let jwt = jwt.expose();
        let h = part(jwt, 0);
        assert_eq!(h["alg"], "RS256");
        assert_eq!(h["typ"], "JWT");
        // Thumbprints of testdata/sp-cert.pem, from
        // `openssl x509 -fingerprint -sha1|-sha256`, base64url.
        assert_eq!(h["x5t"], include_str!("testdata/sp-cert.x5t").trim());
        assert_eq!(
            h["x5t#S256"],
            include_str!("testdata/sp-cert.x5t256").trim()
        );
        let c = part(jwt, 1);
        assert_eq!(c["aud"], aud);
        assert_eq!(c["iss"], "app-id");
        assert_eq!(c["sub"], "app-id");
        assert_eq!(c["nbf"], 1_800_000_000);
        assert_eq!(c["exp"], 1_800_000_600);
        let jti = c["jti"].as_str().unwrap().to_string();
        let again = client_assertion(&cert, "app-id", aud, now).unwrap();
        assert_ne!(part(again.expose(), 1)["jti"], jti.as_str(), "jti is fresh");
        // The signature verifies with the certificate's public key.
        let (input, sig) = jwt.rsplit_once('.').unwrap();
        let public = ring::signature::UnparsedPublicKey::new(
            &ring::signature::RSA_PKCS1_2048_8192_SHA256,
            cert.key.public_key().as_ref().to_vec(),
        );
        public
            .verify(input.as_bytes(), &URL_SAFE_NO_PAD.decode(sig).unwrap())
            .unwrap();
        assert!(!format!("{cert:?}").contains("PRIVATE"));
    }

    #[test]
    fn pkcs12_with_and_without_the_right_password() {
        let p12 = include_bytes!("testdata/sp-cert.p12");
        let good = load(p12, Some(&Secret::new("p12-password"))).unwrap();
        let pem = load(PEM.as_bytes(), None).unwrap();
        assert_eq!(good.x5t, pem.x5t);
        assert!(matches!(
            load(p12, Some(&Secret::new("wrong"))),
            Err(CertError::Pkcs12(_))
        ));
        assert_eq!(load(p12, None).unwrap_err(), CertError::Pkcs12Password);
    }

    #[test]
    fn missing_and_mismatched_keys() {
        let cert_only: String = PEM
            .split_inclusive('\n')
            .scan(false, |in_key, line| {
                if line.starts_with("-----BEGIN PRIVATE KEY") {
                    *in_key = true;
                }
                let keep = !*in_key;
                if line.starts_with("-----END PRIVATE KEY") {
                    *in_key = false;
                }
                Some(if keep { line } else { "" })
            })
            .collect();
        assert_eq!(
            load(cert_only.as_bytes(), None).unwrap_err(),
            CertError::NoKey
        );
        let other_key = include_str!("testdata/other-key.pem");
        let mismatched = format!("{cert_only}{other_key}");
        assert_eq!(
            load(mismatched.as_bytes(), None).unwrap_err(),
            CertError::Mismatch
        );
        assert!(matches!(
            load(b"-----BEGIN NOTHING-----\n", None),
            Err(CertError::Certificate(_) | CertError::NoCertificate)
        ));
        assert_eq!(
            load(
                b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
                None
            )
            .unwrap_err(),
            CertError::NoCertificate
        );
        assert!(load(b"\x30\x82garbage", Some(&Secret::new("x"))).is_err());
    }

    #[test]
    fn not_after_of_a_pem_certificate() {
        let t = pem_not_after(PEM.as_bytes()).unwrap();
        assert!(t > UNIX_EPOCH + Duration::from_secs(1_700_000_000));
        assert!(pem_not_after(b"nothing").is_err());
    }
}
