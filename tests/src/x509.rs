//! Just enough DER reading to look inside an X.509 certificate: the subject
//! (CN and O, for the client certificates of local-account clusters), the
//! validity window, and the RSA public key (for client assertions signed
//! with a service principal's registered certificate). Anything
//! unexpected gives `None`: certificates here come from clients and must
//! never make the emulator panic.

const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;
const OID: u8 = 0x06;
const BIT_STRING: u8 = 0x03;
const UTC_TIME: u8 = 0x17;
const GENERALIZED_TIME: u8 = 0x18;
const EXPLICIT_0: u8 = 0xa0;

/// id-at-commonName, 2.5.4.3.
const OID_CN: &[u8] = &[0x55, 0x04, 0x03];
/// id-at-organizationName, 2.5.4.10.
#[cfg(test)]
const OID_O: &[u8] = &[0x55, 0x04, 0x0a];
/// rsaEncryption, 1.2.840.113549.1.1.1.
const OID_RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];

/// One DER element.
#[derive(Debug, Clone, Copy)]
struct Tlv<'a> {
    tag: u8,
    content: &'a [u8],
    /// Tag, length and content.
    raw: &'a [u8],
}

/// Reads one element (definite lengths only, as DER requires); returns it
/// and what follows.
fn read(input: &[u8]) -> Option<(Tlv<'_>, &[u8])> {
    let tag = *input.first()?;
    let first = *input.get(1)?;
    let (len, header) = if first < 0x80 {
        (usize::from(first), 2)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 {
            return None;
        }
        let bytes = input.get(2..2 + n)?;
        let len = bytes
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        (len, 2 + n)
    };
    let end = header.checked_add(len)?;
    let content = input.get(header..end)?;
    let raw = input.get(..end)?;
    Some((Tlv { tag, content, raw }, input.get(end..)?))
}

/// Reads one element that must carry `tag`.
fn expect(input: &[u8], tag: u8) -> Option<(Tlv<'_>, &[u8])> {
    let (tlv, rest) = read(input)?;
    (tlv.tag == tag).then_some((tlv, rest))
}

/// What the emulator needs from a certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CertInfo<'a> {
    /// The subject `Name`, tag and length included (a TLS hint is exactly
    /// this).
    pub subject: &'a [u8],
    /// `subjectPublicKeyInfo`, tag and length included.
    pub spki: &'a [u8],
    /// Unix seconds.
    pub not_before: u64,
    pub not_after: u64,
}

pub(crate) fn parse(cert_der: &[u8]) -> Option<CertInfo<'_>> {
    let (cert, _) = expect(cert_der, SEQUENCE)?;
    let (tbs, _) = expect(cert.content, SEQUENCE)?;
    let mut rest = tbs.content;
    if rest.first() == Some(&EXPLICIT_0) {
        rest = read(rest)?.1; // version
    }
    let (_serial, rest) = read(rest)?;
    let (_signature, rest) = expect(rest, SEQUENCE)?;
    let (_issuer, rest) = expect(rest, SEQUENCE)?;
    let (validity, rest) = expect(rest, SEQUENCE)?;
    let (subject, rest) = expect(rest, SEQUENCE)?;
    let (spki, _) = expect(rest, SEQUENCE)?;
    let (not_before, after) = read(validity.content)?;
    let (not_after, _) = read(after)?;
    Some(CertInfo {
        subject: subject.raw,
        spki: spki.raw,
        not_before: time(not_before)?,
        not_after: time(not_after)?,
    })
}

/// `UTCTime` (`YYMMDDHHMMSSZ`, years 1950–2049) or `GeneralizedTime`
/// (`YYYYMMDDHHMMSSZ`) as Unix seconds.
fn time(tlv: Tlv<'_>) -> Option<u64> {
    let s = std::str::from_utf8(tlv.content).ok()?;
    let s = s.strip_suffix('Z')?;
    let (year, rest) = match tlv.tag {
        UTC_TIME if s.len() == 12 => {
            let yy: i64 = s.get(..2)?.parse().ok()?;
            (if yy < 50 { 2000 + yy } else { 1900 + yy }, s.get(2..)?)
        }
        GENERALIZED_TIME if s.len() == 14 => (s.get(..4)?.parse().ok()?, s.get(4..)?),
        _ => return None,
    };
    if !rest.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let field = |i: usize| -> Option<i64> { rest.get(i..i + 2)?.parse().ok() };
    let (month, day) = (field(0)?, field(2)?);
    let (hour, minute, second) = (field(4)?, field(6)?, field(8)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 {
        return None;
    }
    let days = days_from_civil(year, month, day);
    u64::try_from(days * 86_400 + hour * 3600 + minute * 60 + second).ok()
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
/// `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The values of one attribute type in a `Name`, in order.
fn attribute(name: &[u8], oid: &[u8]) -> Vec<String> {
    let mut found = Vec::new();
    let Some((name, _)) = expect(name, SEQUENCE) else {
        return found;
    };
    let mut rdns = name.content;
    while let Some((rdn, rest)) = expect(rdns, SET) {
        rdns = rest;
        let mut atvs = rdn.content;
        while let Some((atv, rest)) = expect(atvs, SEQUENCE) {
            atvs = rest;
            let Some((ty, value)) = expect(atv.content, OID) else {
                continue;
            };
            if ty.content == oid
                && let Some((value, _)) = read(value)
            {
                found.push(String::from_utf8_lossy(value.content).into_owned());
            }
        }
    }
    found
}

/// The first CN of a subject `Name`.
pub(crate) fn common_name(subject: &[u8]) -> Option<String> {
    attribute(subject, OID_CN).into_iter().next()
}

/// Every O of a subject `Name` (Kubernetes reads them as groups; the
/// emulated API servers authorize everyone, so only tests look).
#[cfg(test)]
pub(crate) fn organizations(subject: &[u8]) -> Vec<String> {
    attribute(subject, OID_O)
}

/// The `RSAPublicKey` (PKCS#1) inside an RSA `subjectPublicKeyInfo`, the
/// form ring verifies with; `None` for other key types.
pub(crate) fn rsa_public_key(spki: &[u8]) -> Option<&[u8]> {
    let (spki, _) = expect(spki, SEQUENCE)?;
    let (alg, rest) = expect(spki.content, SEQUENCE)?;
    let (oid, _) = expect(alg.content, OID)?;
    if oid.content != OID_RSA {
        return None;
    }
    let (bits, _) = expect(rest, BIT_STRING)?;
    // The first content byte counts unused bits: zero for a key.
    match bits.content.split_first() {
        Some((0, key)) => Some(key),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;

    const SP_CERT_PEM: &str = include_str!("../data/sp-cert.pem");

    #[test]
    fn reads_the_test_certificate() {
        let der = CertificateDer::from_pem_slice(SP_CERT_PEM.as_bytes()).expect("PEM");
        let info = parse(&der).expect("parses");
        assert_eq!(
            common_name(info.subject).as_deref(),
            Some("akscred-test-sp")
        );
        assert!(organizations(info.subject).is_empty());
        assert!(info.not_after > info.not_before + 99 * 365 * 86_400);
        let key = rsa_public_key(info.spki).expect("an RSA key");
        // RSAPublicKey ::= SEQUENCE { modulus, publicExponent }: 2048 bits.
        assert!(key.len() > 256 && key[0] == SEQUENCE);
    }

    #[test]
    fn times_and_garbage() {
        let utc = |s: &str| {
            time(Tlv {
                tag: UTC_TIME,
                content: s.as_bytes(),
                raw: &[],
            })
        };
        assert_eq!(utc("700101000000Z"), Some(0));
        assert_eq!(utc("000229000000Z"), Some(951_782_400));
        assert_eq!(utc("491231235959Z"), Some(2_524_607_999));
        assert_eq!(utc("0001010000Z"), None);
        assert_eq!(utc("70010100000aZ"), None);
        let gen_time = time(Tlv {
            tag: GENERALIZED_TIME,
            content: b"21000101000000Z",
            raw: &[],
        });
        assert_eq!(gen_time, Some(4_102_444_800));
        assert_eq!(parse(&[]), None);
        assert_eq!(parse(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]), None);
        assert_eq!(parse(&[0x30, 0x03, 0x30, 0x01, 0x00]), None);
        assert_eq!(rsa_public_key(&[0x30, 0x00]), None);
        assert!(organizations(&[0x31, 0x02]).is_empty());
    }
}
