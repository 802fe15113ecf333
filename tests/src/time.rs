//! UTC timestamps in the two shapes the emulated services print, without a
//! date crate: Entra's `2024-10-03 18:40:55Z` and RFC 3339.
//!
//! Only `now_unix` reads the clock; everything that decides on expiry takes
//! the instant as a parameter so unit tests choose it.

use std::time::{SystemTime, UNIX_EPOCH};

pub(crate) fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// `(year, month, day, hour, minute, second)` of a Unix time, proleptic
/// Gregorian (Howard Hinnant's `civil_from_days`).
fn civil(unix: u64) -> (i64, u32, u32, u32, u32, u32) {
    let secs = unix as i64;
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (
        year,
        month,
        day,
        (rem / 3600) as u32,
        (rem % 3600 / 60) as u32,
        (rem % 60) as u32,
    )
}

/// Entra's error timestamp: `2024-10-03 18:40:55Z`.
pub(crate) fn entra(unix: u64) -> String {
    let (y, mo, d, h, mi, s) = civil(unix);
    format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02}Z")
}

/// RFC 3339 in UTC: `2024-10-03T18:40:55Z`.
pub(crate) fn rfc3339(unix: u64) -> String {
    let (y, mo, d, h, mi, s) = civil(unix);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_known_instants() {
        assert_eq!(entra(0), "1970-01-01 00:00:00Z");
        // The expires_on of PROTOCOLS.md's v1 example.
        assert_eq!(rfc3339(1_547_579_127), "2019-01-15T19:05:27Z");
        // A leap day and the end of a century year.
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(entra(4_102_444_799), "2099-12-31 23:59:59Z");
    }
}
