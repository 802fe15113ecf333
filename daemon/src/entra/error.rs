//! Errors from the Entra ID token endpoint, and what to do about each.
//!
//! The classification is the daemon's lockout guard: Entra locks an account
//! after 10 failed sign-ins (3 in US Gov), so anything that might mean "this
//! password is wrong or cannot work" is [`ErrorClass::Permanent`] and the
//! password is not sent again until a person acts. When in doubt, permanent.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Deserialize;

use super::token::GrantKind;

/// An error answer of the token endpoint (PROTOCOLS.md 5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AadError {
    /// The OAuth error: `invalid_grant`, `invalid_client`, ...
    pub error: String,
    /// `error_description` as sent, trace and correlation ids included.
    pub description: String,
    /// `error_codes`, or the `AADSTSnnnn` of the description when absent.
    pub codes: Vec<u32>,
    pub http_status: u16,
    pub retry_after: Option<Duration>,
    /// The grant that was refused, when the error answers a token request:
    /// the same error means different things for a password and a refresh
    /// token.
    pub grant: Option<GrantKind>,
    /// Quoted in a support ticket to Microsoft.
    pub correlation_id: Option<String>,
}

/// What the broker does after an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorClass {
    /// The credential cannot work as it is: mark the identity
    /// `needs_attention` and send nothing until the secret changes or the
    /// operator runs `akscred retry`.
    Permanent,
    /// The refresh token is no longer accepted: sign in with the password,
    /// once.
    RefreshTokenDead,
    /// Nothing was judged: back off (honouring `Retry-After`) and try again.
    Transient,
}

impl fmt::Display for ErrorClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ErrorClass::Permanent => "permanent",
            ErrorClass::RefreshTokenDead => "refresh token dead",
            ErrorClass::Transient => "transient",
        })
    }
}

/// Known AADSTS codes: class, a sentence for people, and what to do.
struct Known {
    code: u32,
    class: ErrorClass,
    message: &'static str,
    hint: &'static str,
}

const RETRY: &str = "fix the password source, then run `akscred retry IDENTITY`";
const MFA_HINT: &str = "ask for an MFA exclusion for this account or use a service principal; \
     a password alone can never satisfy MFA";
const NEW_SIGN_IN: &str = "none needed: akscred signs in again with the password";

const KNOWN: &[Known] = &[
    Known {
        code: 50126,
        class: ErrorClass::Permanent,
        message: "wrong username or password",
        hint: RETRY,
    },
    Known {
        code: 50053,
        class: ErrorClass::Permanent,
        message: "the account is locked: too many failed sign-ins, or sign-ins from a blocked address",
        hint: "wait for the lock to end (a minute or more, growing with each failure) and check \
               the password before `akscred retry IDENTITY`; retrying now extends the lock",
    },
    Known {
        code: 50055,
        class: ErrorClass::Permanent,
        message: "the password has expired",
        hint: "change the password, update the password source, then run `akscred retry IDENTITY`",
    },
    Known {
        code: 50144,
        class: ErrorClass::Permanent,
        message: "the Active Directory password has expired",
        hint: "change the password, update the password source, then run `akscred retry IDENTITY`",
    },
    Known {
        code: 50057,
        class: ErrorClass::Permanent,
        message: "the account is disabled",
        hint: "ask an administrator to enable the account, then run `akscred retry IDENTITY`",
    },
    Known {
        code: 50034,
        class: ErrorClass::Permanent,
        message: "the user does not exist in this tenant",
        hint: "check `username` and `tenant` of the identity",
    },
    Known {
        code: 50076,
        class: ErrorClass::Permanent,
        message: "the account needs multi-factor authentication, which a password cannot satisfy",
        hint: MFA_HINT,
    },
    Known {
        code: 50079,
        class: ErrorClass::Permanent,
        message: "the account must register for multi-factor authentication, which a password cannot do",
        hint: MFA_HINT,
    },
    Known {
        code: 53003,
        class: ErrorClass::Permanent,
        message: "a Conditional Access policy blocks this sign-in",
        hint: "ask an administrator which policy blocks it (the Entra sign-in log names it) and \
               for an exclusion, or use a service principal",
    },
    Known {
        code: 65001,
        class: ErrorClass::Permanent,
        message: "nobody has consented to the client application for this user or tenant",
        hint: "an administrator must grant tenant-wide consent to the client application, then \
               run `akscred retry IDENTITY`",
    },
    Known {
        code: 700016,
        class: ErrorClass::Permanent,
        message: "the client application does not exist in this tenant",
        hint: "check `tenant` and `client_id`; a cluster's client id comes from its kubeconfig",
    },
    Known {
        code: 7000218,
        class: ErrorClass::Permanent,
        message: "the client application is confidential, so it cannot sign in with a password alone",
        hint: "use a public client id, or enable \"Allow public client flows\" on the app registration",
    },
    Known {
        code: 7000215,
        class: ErrorClass::Permanent,
        message: "the service principal's client secret is wrong",
        hint: "put the current secret (its value, not its id) in the client_secret source; \
               akscred tries again when it changes, or run `akscred retry IDENTITY`",
    },
    Known {
        code: 7000222,
        class: ErrorClass::Permanent,
        message: "the service principal's client secret has expired",
        hint: "create a new secret on the app registration, update the client_secret source, \
               then run `akscred retry IDENTITY`",
    },
    Known {
        code: 700027,
        class: ErrorClass::Permanent,
        message: "the client assertion's signature does not match a certificate registered on the application",
        hint: "upload this certificate's public part to the app registration, or point \
               `certificate` at the registered one",
    },
    Known {
        code: 700024,
        class: ErrorClass::Permanent,
        message: "the client assertion is not within its valid time range",
        hint: "check this machine's clock (the assertion is dated by it), or renew the \
               workload identity token",
    },
    Known {
        code: 70021,
        class: ErrorClass::Permanent,
        message: "no federated identity credential of the application matches the workload's token",
        hint: "add a federated credential with this token's issuer, subject and audience \
               (api://AzureADTokenExchange) to the application",
    },
    Known {
        code: 700082,
        class: ErrorClass::RefreshTokenDead,
        message: "the refresh token expired after 90 days without use",
        hint: NEW_SIGN_IN,
    },
    Known {
        code: 70008,
        class: ErrorClass::RefreshTokenDead,
        message: "the refresh token has expired or been revoked",
        hint: NEW_SIGN_IN,
    },
    Known {
        code: 50173,
        class: ErrorClass::RefreshTokenDead,
        message: "the refresh token was revoked, usually because the password was changed or reset",
        hint: "none needed if the password source already holds the new password: akscred signs \
               in again with it",
    },
];

fn known(code: u32) -> Option<&'static Known> {
    KNOWN.iter().find(|k| k.code == code)
}

/// Retry-After is advice from a server we do not control: a server cannot
/// park an identity for longer than this.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

impl AadError {
    /// The first AADSTS code.
    pub fn code(&self) -> Option<u32> {
        self.codes.first().copied()
    }

    fn known(&self) -> Option<&'static Known> {
        self.codes.iter().find_map(|&c| known(c))
    }

    /// One sentence for people: ours for known codes, else the first line of
    /// the upstream description (without its trace and correlation ids).
    pub fn human_message(&self) -> String {
        if let Some(k) = self.known() {
            return k.message.to_string();
        }
        let summary = self.summary();
        if summary.is_empty() {
            self.error.clone()
        } else {
            summary
        }
    }

    /// What to do next.
    pub fn hint(&self) -> &'static str {
        if let Some(k) = self.known() {
            return k.hint;
        }
        match classify(self) {
            ErrorClass::Transient => "none needed: akscred retries by itself",
            ErrorClass::RefreshTokenDead => NEW_SIGN_IN,
            ErrorClass::Permanent => {
                "look up the AADSTS code in the Entra documentation, fix the cause, then run \
                 `akscred retry IDENTITY`"
            }
        }
    }

    /// `error_description` up to its first line break or trace id, without
    /// the `AADSTSnnnn: ` prefix.
    pub fn summary(&self) -> String {
        let first = self
            .description
            .split(['\r', '\n'])
            .next()
            .unwrap_or_default();
        let first = ["Trace ID:", "Correlation ID:", "Timestamp:"]
            .iter()
            .filter_map(|marker| first.find(marker))
            .min()
            .map_or(first, |at| &first[..at]);
        let first = first.trim();
        let without_code = first
            .strip_prefix("AADSTS")
            .map(|rest| rest.trim_start_matches(|c: char| c.is_ascii_digit()))
            .and_then(|rest| rest.strip_prefix(':'))
            .map_or(first, str::trim);
        without_code.to_string()
    }
}

impl fmt::Display for AadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.code() {
            Some(code) => write!(f, "AADSTS{code}: {}", self.human_message())?,
            None => write!(f, "{}: {}", self.error, self.human_message())?,
        }
        if let Some(id) = &self.correlation_id {
            write!(f, " (correlation id {id})")?;
        }
        Ok(())
    }
}

impl std::error::Error for AadError {}

/// Decides what an error means for the credential: on the OAuth `error`
/// first, then the HTTP status, then the AADSTS codes.
pub fn classify(e: &AadError) -> ErrorClass {
    if matches!(e.error.as_str(), "temporarily_unavailable" | "server_error") {
        return ErrorClass::Transient;
    }
    if e.http_status == 429 || e.http_status == 408 || (500..=599).contains(&e.http_status) {
        return ErrorClass::Transient;
    }
    let refresh = e.grant == Some(GrantKind::RefreshToken);
    if let Some(k) = e.known() {
        return match k.class {
            // A "refresh token dead" code on a password grant would send the
            // broker round to the password again: stop instead.
            ErrorClass::RefreshTokenDead if !refresh => ErrorClass::Permanent,
            class => class,
        };
    }
    // Unknown codes. A refused refresh token falls back to the password,
    // once; whatever that answers decides. Anything else stops.
    if refresh {
        ErrorClass::RefreshTokenDead
    } else {
        ErrorClass::Permanent
    }
}

#[derive(Deserialize)]
struct RawError {
    error: Option<String>,
    #[serde(default)]
    error_description: Option<String>,
    #[serde(default)]
    error_codes: Option<Vec<serde_json::Value>>,
    #[serde(default)]
    correlation_id: Option<String>,
}

/// Parses an error answer. `None` when the body is not the Entra error JSON
/// (an HTML page from a proxy, say): the caller then reports the HTTP status.
pub fn parse_aad_error(
    body: &[u8],
    http_status: u16,
    retry_after: Option<Duration>,
    grant: Option<GrantKind>,
) -> Option<AadError> {
    let raw: RawError = serde_json::from_slice(body).ok()?;
    let error = raw.error.filter(|e| !e.is_empty())?;
    let description = raw.error_description.unwrap_or_default();
    let mut codes: Vec<u32> = raw
        .error_codes
        .unwrap_or_default()
        .iter()
        .filter_map(|v| match v {
            serde_json::Value::Number(n) => n.as_u64().and_then(|n| u32::try_from(n).ok()),
            serde_json::Value::String(s) => s.trim().parse().ok(),
            _ => None,
        })
        .collect();
    if codes.is_empty() {
        codes.extend(code_in_description(&description));
    }
    Some(AadError {
        error,
        description,
        codes,
        http_status,
        retry_after,
        grant,
        correlation_id: raw.correlation_id.filter(|id| !id.is_empty()),
    })
}

/// The `nnnn` of the first `AADSTSnnnn` in a description.
fn code_in_description(description: &str) -> Option<u32> {
    let at = description.find("AADSTS")?;
    let digits: String = description[at + "AADSTS".len()..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

/// `Retry-After`: delay-seconds or an IMF-fixdate (RFC 9110 10.2.3),
/// capped at [`MAX_RETRY_AFTER`]. A date in the past means "now".
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    let delay = if let Ok(secs) = value.parse::<u64>() {
        Duration::from_secs(secs)
    } else {
        let at = parse_http_date(value)?;
        at.duration_since(now).unwrap_or(Duration::ZERO)
    };
    Some(delay.min(MAX_RETRY_AFTER))
}

/// `Sun, 06 Nov 1994 08:49:37 GMT`. The obsolete RFC 850 and asctime forms
/// are not accepted: servers have been required to send this one since 1999.
pub fn parse_http_date(value: &str) -> Option<SystemTime> {
    let rest = value.split_once(", ")?.1;
    let mut parts = rest.split(' ');
    let day: u32 = parts.next()?.parse().ok()?;
    let month = parts.next()?;
    let year: i64 = parts.next()?.parse().ok()?;
    let time = parts.next()?;
    if parts.next()? != "GMT" || parts.next().is_some() {
        return None;
    }
    let month = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ]
    .iter()
    .position(|m| *m == month)? as u32
        + 1;
    let mut hms = time.split(':');
    let h: u64 = hms.next()?.parse().ok()?;
    let m: u64 = hms.next()?.parse().ok()?;
    let s: u64 = hms.next()?.parse().ok()?;
    if hms.next().is_some() || h > 23 || m > 59 || s > 60 || !(1..=31).contains(&day) {
        return None;
    }
    let days = u64::try_from(days_from_civil(year, month, day)).ok()?;
    let secs = days
        .checked_mul(86_400)?
        .checked_add(h * 3600 + m * 60 + s)?;
    UNIX_EPOCH.checked_add(Duration::from_secs(secs))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
/// algorithm).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (i64::from(month) + 9) % 12;
    let doy = (153 * mp + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(error: &str, code: Option<u32>, status: u16, grant: GrantKind) -> AadError {
        AadError {
            error: error.into(),
            description: code.map(|c| format!("AADSTS{c}: x")).unwrap_or_default(),
            codes: code.into_iter().collect(),
            http_status: status,
            retry_after: None,
            grant: Some(grant),
            correlation_id: None,
        }
    }

    #[test]
    fn every_known_code_has_its_class() {
        use ErrorClass::*;
        use GrantKind::*;
        let table: &[(&str, u32, u16, GrantKind, ErrorClass)] = &[
            ("invalid_grant", 50126, 400, Password, Permanent),
            ("invalid_grant", 50053, 400, Password, Permanent),
            ("invalid_grant", 50055, 400, Password, Permanent),
            ("invalid_grant", 50144, 400, Password, Permanent),
            ("invalid_grant", 50057, 400, Password, Permanent),
            ("invalid_grant", 50034, 400, Password, Permanent),
            ("invalid_grant", 50076, 400, Password, Permanent),
            ("invalid_grant", 50079, 400, Password, Permanent),
            ("invalid_grant", 53003, 400, Password, Permanent),
            ("invalid_grant", 65001, 400, Password, Permanent),
            ("unauthorized_client", 700016, 400, Password, Permanent),
            ("invalid_client", 7000218, 401, Password, Permanent),
            // The same codes on a refresh: the password would fail the same.
            ("invalid_grant", 50076, 400, RefreshToken, Permanent),
            ("invalid_grant", 53003, 400, RefreshToken, Permanent),
            ("invalid_grant", 50057, 400, RefreshToken, Permanent),
            ("invalid_grant", 700082, 400, RefreshToken, RefreshTokenDead),
            ("invalid_grant", 70008, 400, RefreshToken, RefreshTokenDead),
            ("invalid_grant", 50173, 400, RefreshToken, RefreshTokenDead),
            // A "refresh dead" code on a password grant must not loop.
            ("invalid_grant", 50173, 400, Password, Permanent),
            // Unknown codes: a refresh falls back once, a password stops.
            ("invalid_grant", 99999, 400, RefreshToken, RefreshTokenDead),
            ("invalid_grant", 99999, 400, Password, Permanent),
            ("invalid_client", 99999, 401, Password, Permanent),
            ("unauthorized_client", 99999, 400, Password, Permanent),
            ("invalid_request", 90014, 400, Password, Permanent),
            // Transient, whatever the code.
            ("temporarily_unavailable", 50126, 400, Password, Transient),
            ("server_error", 99999, 400, Password, Transient),
            ("invalid_grant", 99999, 503, Password, Transient),
            ("invalid_grant", 99999, 500, Password, Transient),
            ("invalid_grant", 99999, 429, Password, Transient),
        ];
        for &(error, code, status, grant, want) in table {
            let e = err(error, Some(code), status, grant);
            assert_eq!(classify(&e), want, "{error} {code} {status} {grant:?}");
        }
    }

    #[test]
    fn every_known_code_has_a_message_and_hint() {
        for k in KNOWN {
            let e = err("invalid_grant", Some(k.code), 400, GrantKind::Password);
            assert_eq!(e.human_message(), k.message);
            assert_eq!(e.hint(), k.hint);
            assert!(e.to_string().starts_with(&format!("AADSTS{}: ", k.code)));
        }
        let e = err("invalid_grant", Some(50126), 400, GrantKind::Password);
        assert_eq!(e.human_message(), "wrong username or password");
        assert!(e.hint().contains("akscred retry IDENTITY"));
        let e = err("invalid_grant", Some(50076), 400, GrantKind::Password);
        assert!(e.hint().contains("MFA exclusion"));
    }

    const REAL: &str = r#"{"error":"invalid_grant","error_description":"AADSTS50076: Due to a configuration change made by your administrator, or because you moved to a new location, you must use multi-factor authentication to access '797f4846-ba00-4fd7-ba43-dac1f8f63013'. Trace ID: 0bd7b9c1-7c2f-4e52-9f5d-6b2c3a4f2000 Correlation ID: 5e8e2c4a-1111-4a2b-8c3d-123456789abc Timestamp: 2024-01-15 19:05:27Z","error_codes":[50076],"timestamp":"2024-01-15 19:05:27Z","trace_id":"0bd7b9c1-7c2f-4e52-9f5d-6b2c3a4f2000","correlation_id":"5e8e2c4a-1111-4a2b-8c3d-123456789abc","error_uri":"https://login.microsoftonline.com/error?code=50076","suberror":"basic_action"}"#;

    #[test]
    fn parses_the_real_error() {
        let e = parse_aad_error(REAL.as_bytes(), 400, None, Some(GrantKind::Password)).unwrap();
        assert_eq!(e.error, "invalid_grant");
        assert_eq!(e.codes, vec![50076]);
        assert_eq!(e.code(), Some(50076));
        assert_eq!(
            e.correlation_id.as_deref(),
            Some("5e8e2c4a-1111-4a2b-8c3d-123456789abc")
        );
        assert_eq!(classify(&e), ErrorClass::Permanent);
        assert!(e.summary().starts_with("Due to a configuration change"));
        assert!(!e.summary().contains("Trace ID"), "{}", e.summary());
        assert!(
            e.summary()
                .ends_with("'797f4846-ba00-4fd7-ba43-dac1f8f63013'.")
        );
    }

    #[test]
    fn code_from_the_description_when_error_codes_is_missing() {
        let body = br#"{"error":"invalid_grant","error_description":"AADSTS50126: Error validating credentials due to invalid username or password.\r\nTrace ID: abc\r\nCorrelation ID: def"}"#;
        let e = parse_aad_error(body, 400, None, Some(GrantKind::Password)).unwrap();
        assert_eq!(e.codes, vec![50126]);
        assert_eq!(classify(&e), ErrorClass::Permanent);
        assert_eq!(
            e.summary(),
            "Error validating credentials due to invalid username or password."
        );
        // Codes given as strings are accepted too.
        let body = br#"{"error":"invalid_grant","error_codes":["700082"]}"#;
        let e = parse_aad_error(body, 400, None, Some(GrantKind::RefreshToken)).unwrap();
        assert_eq!(e.codes, vec![700082]);
        assert_eq!(classify(&e), ErrorClass::RefreshTokenDead);
    }

    #[test]
    fn unknown_code_shows_the_upstream_sentence() {
        let body = br#"{"error":"invalid_request","error_description":"AADSTS90002: Tenant 'nope' not found. Check to make sure you have the correct tenant ID. Trace ID: 1"}"#;
        let e = parse_aad_error(body, 400, None, Some(GrantKind::Password)).unwrap();
        assert_eq!(
            e.human_message(),
            "Tenant 'nope' not found. Check to make sure you have the correct tenant ID."
        );
        assert_eq!(
            e.to_string(),
            "AADSTS90002: Tenant 'nope' not found. Check to make sure you have the correct tenant ID."
        );
        assert!(e.hint().contains("akscred retry"));
    }

    #[test]
    fn not_an_aad_error() {
        assert!(parse_aad_error(b"<html>502 Bad Gateway</html>", 502, None, None).is_none());
        assert!(parse_aad_error(b"{}", 400, None, None).is_none());
        assert!(parse_aad_error(b"[1,2]", 400, None, None).is_none());
        assert!(parse_aad_error(br#"{"error":""}"#, 400, None, None).is_none());
        let e = parse_aad_error(br#"{"error":"invalid_grant"}"#, 400, None, None).unwrap();
        assert!(e.codes.is_empty());
        assert_eq!(e.human_message(), "invalid_grant");
    }

    #[test]
    fn retry_after_seconds_and_dates() {
        let now = UNIX_EPOCH + Duration::from_secs(784_111_777); // Sun, 06 Nov 1994 08:49:37 GMT
        assert_eq!(
            parse_retry_after("120", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(parse_retry_after(" 0 ", now), Some(Duration::ZERO));
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:50:37 GMT", now),
            Some(Duration::from_secs(60))
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(
            parse_retry_after("Thu, 01 Jan 2099 00:00:00 GMT", now),
            Some(MAX_RETRY_AFTER)
        );
        assert_eq!(parse_retry_after("999999999", now), Some(MAX_RETRY_AFTER));
        assert_eq!(parse_retry_after("-5", now), None);
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 25:00:00 GMT", now),
            None
        );
        assert_eq!(
            parse_retry_after("Sunday, 06-Nov-94 08:49:37 GMT", now),
            None
        );
    }

    #[test]
    fn civil_days() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(
            parse_http_date("Tue, 15 Jan 2019 19:05:27 GMT"),
            Some(UNIX_EPOCH + Duration::from_secs(1_547_579_127))
        );
    }
}
