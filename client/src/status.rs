//! `akscred status` as a table a person reads at a glance.
//!
//! Rendering is a pure function of the daemon's answer, `now` (unix
//! seconds) and whether to colour, so tests pin the output byte for byte
//! (the snapshots in `tests/snapshots/`).

use std::borrow::Cow;
use std::fmt::Write as _;

use akscred_proto::{ApiError, Status};

const CLUSTER_HEADER: [&str; 6] = [
    "CLUSTER",
    "IDENTITY",
    "STATE",
    "VALID FOR",
    "NEXT REFRESH",
    "LAST ERROR",
];
const IDENTITY_HEADER: [&str; 4] = ["IDENTITY", "USERNAME", "STATE", "LAST ERROR"];
const NONE: &str = "-";
/// Both tables have the state third.
const STATE_COLUMN: usize = 2;

/// Colour only for a person at a terminal: not in pipes or files, not with
/// `NO_COLOR` set (no-color.org), not on a `dumb` terminal.
pub fn colour_wanted(
    terminal: bool,
    no_color: Option<&std::ffi::OsStr>,
    term: Option<&std::ffi::OsStr>,
) -> bool {
    terminal && no_color.is_none_or(|v| v.is_empty()) && term.is_none_or(|t| t != "dumb")
}

/// The SGR colour of a state: green when all is well, yellow while it is on
/// its way (or retrying by itself), red when a person must act. States the
/// client does not know stay plain.
fn state_colour(state: &str) -> Option<&'static str> {
    match state {
        "ready" | "ok" => Some("32"),
        "pending" | "new" | "signing_in" | "refreshing" | "backoff" | "backing_off" => Some("33"),
        "needs_attention" | "error" => Some("31"),
        _ => None,
    }
}

pub fn render(status: &Status, now: i64, colour: bool) -> String {
    let mut out = String::with_capacity(256);
    if status.clusters.is_empty() {
        out.push_str("no clusters configured\n");
    } else {
        let rows: Vec<Row<6>> = status
            .clusters
            .iter()
            .map(|c| {
                let valid_for = c.token_valid_for_secs.or_else(|| {
                    c.token_expires
                        .as_deref()
                        .and_then(parse_rfc3339)
                        .map(|t| t - now)
                });
                let (error, hint) = error_cells(c.last_error.as_ref());
                Row {
                    cells: [
                        clean(&c.name),
                        clean(&c.identity),
                        clean(&c.state),
                        valid_for.map_or(NONE.into(), |s| format_valid_for(s).into()),
                        c.next_refresh
                            .as_deref()
                            .map_or(NONE.into(), |t| format_next_refresh(t, now)),
                        error,
                    ],
                    hint,
                }
            })
            .collect();
        table(&mut out, &CLUSTER_HEADER, &rows, colour);
    }
    out.push('\n');
    if status.identities.is_empty() {
        out.push_str("no identities configured\n");
    } else {
        let rows: Vec<Row<4>> = status
            .identities
            .iter()
            .map(|i| {
                let (mut error, hint) = error_cells(i.last_error.as_ref());
                // Something to act on before it breaks (a certificate
                // about to expire), when nothing is broken yet.
                if let (None, Some(warning)) = (&i.last_error, &i.warning) {
                    error = format!("warning: {}", clean(warning.trim())).into();
                }
                Row {
                    cells: [clean(&i.name), clean(&i.username), clean(&i.state), error],
                    hint,
                }
            })
            .collect();
        table(&mut out, &IDENTITY_HEADER, &rows, colour);
    }
    out
}

struct Row<'a, const N: usize> {
    cells: [Cow<'a, str>; N],
    /// Printed on its own line, under the last column.
    hint: Option<Cow<'a, str>>,
}

fn error_cells(error: Option<&ApiError>) -> (Cow<'_, str>, Option<Cow<'_, str>>) {
    match error {
        Some(e) => (
            clean(&e.message),
            Some(&e.hint).filter(|h| !h.is_empty()).map(|h| clean(h)),
        ),
        None => (NONE.into(), None),
    }
}

/// Columns two spaces apart; the last one unpadded so no line ends in
/// blanks.
fn table<const N: usize>(out: &mut String, header: &[&str; N], rows: &[Row<'_, N>], colour: bool) {
    let mut widths = header.map(|h| h.chars().count());
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(&row.cells) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let last_column_at: usize = widths[..N - 1].iter().map(|w| w + 2).sum();
    push_line(out, &widths, header.iter().copied(), false);
    for row in rows {
        push_line(out, &widths, row.cells.iter().map(|c| c.as_ref()), colour);
        if let Some(hint) = &row.hint {
            out.extend(std::iter::repeat_n(' ', last_column_at));
            out.push_str("hint: ");
            out.push_str(hint);
            out.push('\n');
        }
    }
}

fn push_line<'a, const N: usize>(
    out: &mut String,
    widths: &[usize; N],
    cells: impl Iterator<Item = &'a str>,
    colour: bool,
) {
    for (i, cell) in cells.enumerate() {
        // Padding is counted on the text alone: escape codes take no room.
        match state_colour(cell).filter(|_| colour && i == STATE_COLUMN) {
            Some(sgr) => {
                out.push_str("\x1b[");
                out.push_str(sgr);
                out.push('m');
                out.push_str(cell);
                out.push_str("\x1b[0m");
            }
            None => out.push_str(cell),
        }
        if i + 1 < N {
            let pad = widths[i] - cell.chars().count() + 2;
            out.extend(std::iter::repeat_n(' ', pad));
        }
    }
    out.push('\n');
}

/// Text from the daemon may quote upstream services (AADSTS descriptions);
/// control characters must not reach the terminal, and a line break would
/// tear the table.
pub fn clean(s: &str) -> Cow<'_, str> {
    if !s.chars().any(char::is_control) {
        return Cow::Borrowed(s);
    }
    Cow::Owned(
        s.chars()
            .map(|c| match c {
                '\n' | '\r' | '\t' => ' ',
                c if c.is_control() => '\u{fffd}',
                c => c,
            })
            .collect(),
    )
}

/// How long a token stays valid: `expired` once it is not.
pub fn format_valid_for(secs: i64) -> String {
    if secs <= 0 {
        "expired".to_owned()
    } else {
        format_duration(secs)
    }
}

fn format_next_refresh(at: &str, now: i64) -> Cow<'static, str> {
    match parse_rfc3339(at) {
        Some(t) if t > now => format!("in {}", format_duration(t - now)).into(),
        Some(_) => "due".into(),
        // Better the daemon's own words than nothing.
        None => clean(at).into_owned().into(),
    }
}

/// Two units at most, rounded down, so a glance never overstates what is
/// left: `45s`, `54m`, `1h02m`, `2d03h`.
pub fn format_duration(secs: i64) -> String {
    let secs = secs.max(0);
    let (d, h, m) = (secs / 86_400, secs / 3600 % 24, secs / 60 % 60);
    let mut s = String::with_capacity(8);
    // Writing to a String cannot fail.
    let _ = match secs {
        0..60 => write!(s, "{secs}s"),
        60..3600 => write!(s, "{m}m"),
        3600..86_400 => write!(s, "{h}h{m:02}m"),
        _ => write!(s, "{d}d{h:02}h"),
    };
    s
}

/// RFC 3339 date-time to unix seconds (fraction dropped). Hand-written
/// because it is the only date arithmetic the client needs, and a date crate
/// would dwarf the rest of the binary.
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    let num = |at: usize, len: usize| -> Option<i64> {
        let digits = b.get(at..at + len)?;
        digits.iter().try_fold(0i64, |n, &d| {
            d.is_ascii_digit().then(|| n * 10 + i64::from(d - b'0'))
        })
    };
    let sep = |at: usize, allowed: &[u8]| b.get(at).is_some_and(|c| allowed.contains(c));
    if !(sep(4, b"-") && sep(7, b"-") && sep(10, b"Tt ") && sep(13, b":") && sep(16, b":")) {
        return None;
    }
    let (year, month, day) = (num(0, 4)?, num(5, 2)?, num(8, 2)?);
    let (hour, minute, second) = (num(11, 2)?, num(14, 2)?, num(17, 2)?);
    let mut i = 19;
    if b.get(i) == Some(&b'.') {
        let digits = b[i + 1..].iter().take_while(|d| d.is_ascii_digit()).count();
        if digits == 0 {
            return None;
        }
        i += 1 + digits;
    }
    let offset = match b.get(i)? {
        b'Z' | b'z' if b.len() == i + 1 => 0,
        sign @ (b'+' | b'-') if b.len() == i + 6 && b[i + 3] == b':' => {
            let (oh, om) = (num(i + 1, 2)?, num(i + 4, 2)?);
            if oh > 23 || om > 59 {
                return None;
            }
            let o = oh * 3600 + om * 60;
            if *sign == b'-' { -o } else { o }
        }
        _ => return None,
    };
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let month_days = [
        31,
        if leap { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    if !(1..=12).contains(&month)
        || day < 1
        || day > month_days[(month - 1) as usize]
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    Some(days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second - offset)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
/// `days_from_civil`).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;
    use akscred_proto::{ClusterStatus, IdentityStatus};

    /// 2025-11-29T12:00:00Z
    const NOW: i64 = 1_764_417_600;

    fn cluster(name: &str, identity: &str, state: &str) -> ClusterStatus {
        ClusterStatus {
            name: name.into(),
            identity: identity.into(),
            state: state.into(),
            server: None,
            token_expires: None,
            token_valid_for_secs: None,
            next_refresh: None,
            last_refresh: None,
            last_error: None,
        }
    }

    fn identity(name: &str, username: &str, state: &str) -> IdentityStatus {
        IdentityStatus {
            name: name.into(),
            username: username.into(),
            state: state.into(),
            kind: String::new(),
            last_sign_in: None,
            warning: None,
            last_error: None,
        }
    }

    fn api_error(message: &str, hint: &str) -> Option<ApiError> {
        Some(ApiError {
            code: "x".into(),
            message: message.into(),
            hint: hint.into(),
        })
    }

    #[test]
    fn durations() {
        assert_eq!(format_duration(0), "0s");
        assert_eq!(format_duration(59), "59s");
        assert_eq!(format_duration(60), "1m");
        assert_eq!(format_duration(54 * 60 + 59), "54m");
        assert_eq!(format_duration(3600), "1h00m");
        assert_eq!(format_duration(3720), "1h02m");
        assert_eq!(format_duration(86_399), "23h59m");
        assert_eq!(format_duration(86_400 * 2 + 3 * 3600 + 59), "2d03h");
        assert_eq!(format_valid_for(0), "expired");
        assert_eq!(format_valid_for(-5), "expired");
        assert_eq!(format_valid_for(3240), "54m");
    }

    #[test]
    fn rfc3339() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_rfc3339("2025-11-29T12:00:00Z"), Some(NOW));
        assert_eq!(parse_rfc3339("2025-11-29t12:00:00.123456789z"), Some(NOW));
        assert_eq!(parse_rfc3339("2025-11-29 13:30:00+01:30"), Some(NOW));
        assert_eq!(parse_rfc3339("2025-11-29T10:00:00-02:00"), Some(NOW));
        assert_eq!(parse_rfc3339("2024-02-29T00:00:00Z"), Some(1_709_164_800));
        assert_eq!(parse_rfc3339("1969-12-31T23:59:59Z"), Some(-1));
        for bad in [
            "",
            "2025-11-29",
            "2025-11-29T12:00:00",
            "2025-11-29T12:00:00.Z",
            "2025-11-29T12:00:00+0100",
            "2025-02-29T00:00:00Z",
            "2025-13-01T00:00:00Z",
            "2025-11-29T24:00:00Z",
            "2025-11-29T12:00:00Zjunk",
            "2025-11-29T12:00:00+25:00",
            "+025-11-29T12:00:00Z",
            "2025-11-29T12:00:0éZ",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
    }

    #[test]
    fn table_golden() {
        let mut prod = cluster("prod", "alice", "ready");
        prod.token_valid_for_secs = Some(54 * 60 + 10);
        prod.next_refresh = Some("2025-11-29T12:38:00Z".into());
        let mut staging = cluster("staging-westeurope", "alice", "ready");
        // No seconds from the daemon: computed from the expiry.
        staging.token_expires = Some("2025-11-29T13:02:30Z".into());
        staging.next_refresh = Some("2025-11-29T11:59:00Z".into());
        let mut lab = cluster("lab", "bob", "needs_attention");
        lab.token_valid_for_secs = Some(-30);
        lab.last_error = api_error(
            "AADSTS50126: invalid username or password",
            "fix bob's password, then run `akscred retry bob`",
        );
        let mut new = cluster("new", "carol", "pending");
        new.last_error = api_error("ARM answered 503\nService Unavailable", "");

        let mut bob = identity("bob", "bob@contoso.com", "needs_attention");
        bob.last_error = lab.last_error.clone();
        let status = Status {
            identities: vec![
                identity("alice", "alice@contoso.com", "ok"),
                bob,
                identity("carol", "carol@fabrikam.com", "signing_in"),
            ],
            clusters: vec![prod, staging, lab, new],
        };
        let expected = "\
CLUSTER             IDENTITY  STATE            VALID FOR  NEXT REFRESH  LAST ERROR
prod                alice     ready            54m        in 38m        -
staging-westeurope  alice     ready            1h02m      due           -
lab                 bob       needs_attention  expired    -             AADSTS50126: invalid username or password
                                                                        hint: fix bob's password, then run `akscred retry bob`
new                 carol     pending          -          -             ARM answered 503 Service Unavailable

IDENTITY  USERNAME            STATE            LAST ERROR
alice     alice@contoso.com   ok               -
bob       bob@contoso.com     needs_attention  AADSTS50126: invalid username or password
                                               hint: fix bob's password, then run `akscred retry bob`
carol     carol@fabrikam.com  signing_in       -
";
        assert_eq!(render(&status, NOW, false), expected);
    }

    #[test]
    fn table_of_nothing() {
        assert_eq!(
            render(&Status::default(), NOW, false),
            "no clusters configured\n\nno identities configured\n"
        );
    }

    #[test]
    fn unreadable_next_refresh_is_shown_as_sent() {
        let mut c = cluster("c", "i", "ready");
        c.next_refresh = Some("soon\x1b[31m".into());
        let status = Status {
            identities: vec![],
            clusters: vec![c],
        };
        let out = render(&status, NOW, false);
        assert!(out.contains("soon\u{fffd}[31m"), "{out}");
        assert!(!out.contains('\x1b'));
    }

    /// Compares with `tests/snapshots/NAME`; `UPDATE_SNAPSHOTS=1` rewrites
    /// the file instead (review the diff before committing it).
    fn snapshot(name: &str, actual: &str) {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/snapshots")
            .join(name);
        if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
            if let Err(e) = std::fs::write(&path, actual) {
                panic!("{}: {e}", path.display());
            }
            return;
        }
        let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!(
                "{}: {e}; run with UPDATE_SNAPSHOTS=1 to create it",
                path.display()
            )
        });
        assert!(
            actual == expected,
            "snapshot {name} differs (UPDATE_SNAPSHOTS=1 rewrites it if the change is meant):\n--- expected\n{expected}\n--- actual\n{actual}"
        );
    }

    fn at(offset: i64) -> String {
        let t = NOW + offset;
        let (days, secs) = (t.div_euclid(86_400), t.rem_euclid(86_400));
        // Only dates around NOW are needed: 2025-11-29 is day 20421.
        assert!((20_420..=20_422).contains(&days), "{days}");
        format!(
            "2025-11-{:02}T{:02}:{:02}:{:02}Z",
            29 + days - 20_421,
            secs / 3600,
            secs / 60 % 60,
            secs % 60
        )
    }

    fn healthy() -> Status {
        let mut prod = cluster("prod", "alice", "ready");
        prod.token_valid_for_secs = Some(3240);
        prod.next_refresh = Some(at(38 * 60));
        let mut staging = cluster("staging", "alice", "ready");
        staging.token_valid_for_secs = Some(3240);
        staging.next_refresh = Some(at(38 * 60));
        let mut alice = identity("alice", "alice@contoso.com", "ok");
        alice.last_sign_in = Some(at(-600));
        Status {
            identities: vec![alice],
            clusters: vec![prod, staging],
        }
    }

    fn refreshing() -> Status {
        let mut prod = cluster("prod", "alice", "ready");
        prod.token_valid_for_secs = Some(290);
        prod.next_refresh = Some(at(-20));
        let new = cluster("new-cluster", "carol", "pending");
        Status {
            identities: vec![
                identity("alice", "alice@contoso.com", "ok"),
                identity("carol", "carol@fabrikam.com", "new"),
            ],
            clusters: vec![prod, new],
        }
    }

    fn backing_off() -> Status {
        let upstream = api_error(
            "token for 6dae42f8-4368-4678-94ff-3960e28e3630: waiting until 2025-11-29T12:05:00Z before asking again (last error: https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/token answered 503)",
            "nothing to do: akscredd retries by itself; `akscred status` shows progress",
        );
        let mut prod = cluster("prod", "alice", "ready");
        prod.token_valid_for_secs = Some(480);
        prod.next_refresh = Some(at(-300));
        prod.last_error = upstream.clone();
        let mut lab = cluster("lab", "alice", "error");
        lab.token_valid_for_secs = Some(-60);
        lab.last_error = upstream;
        let mut alice = identity("alice", "alice@contoso.com", "error");
        alice.last_error = api_error(
            "sign-in of `alice` failed: login.microsoftonline.com answered 503 Service Unavailable",
            "",
        );
        Status {
            identities: vec![alice],
            clusters: vec![lab, prod],
        }
    }

    fn needs_attention() -> Status {
        let attention = api_error(
            "identity `bob` needs attention: AADSTS50126: Error validating credentials due to invalid username or password.",
            "fix the password of bob (identities.bob.password), then run `akscred retry bob`",
        );
        let mut lab = cluster("lab", "bob", "needs_attention");
        lab.token_valid_for_secs = Some(-3600);
        lab.last_error = attention.clone();
        let mut prod = cluster("prod", "alice", "ready");
        prod.token_valid_for_secs = Some(2700);
        prod.next_refresh = Some(at(1800));
        let mut bob = identity("bob", "bob@contoso.com", "needs_attention");
        bob.last_error = attention;
        Status {
            identities: vec![identity("alice", "alice@contoso.com", "ok"), bob],
            clusters: vec![lab, prod],
        }
    }

    #[test]
    fn snapshots() {
        for (name, status) in [
            ("healthy", healthy()),
            ("refreshing", refreshing()),
            ("backing-off", backing_off()),
            ("needs-attention", needs_attention()),
        ] {
            snapshot(&format!("status-{name}.txt"), &render(&status, NOW, false));
            let coloured = render(&status, NOW, true);
            // Colour changes nothing but the escape codes around states.
            let mut plain = coloured.clone();
            for sgr in ["\x1b[31m", "\x1b[32m", "\x1b[33m", "\x1b[0m"] {
                plain = plain.replace(sgr, "");
            }
            assert_eq!(plain, render(&status, NOW, false), "{name}");
            assert!(coloured.contains('\x1b'), "{name}");
        }
        snapshot(
            "status-needs-attention.ansi",
            &render(&needs_attention(), NOW, true),
        );
    }

    #[test]
    fn identity_warnings_show_when_nothing_is_broken() {
        let mut sp = identity("ci", "", "ok");
        sp.warning = Some("certificate expires in 6 days\n".into());
        let status = Status {
            identities: vec![sp],
            clusters: vec![],
        };
        let out = render(&status, NOW, false);
        assert!(
            out.ends_with("ci                  ok     warning: certificate expires in 6 days\n"),
            "{out:?}"
        );
    }

    #[test]
    fn colour_only_for_a_terminal() {
        use std::ffi::OsStr;
        assert!(colour_wanted(
            true,
            None,
            Some(OsStr::new("xterm-256color"))
        ));
        assert!(colour_wanted(true, Some(OsStr::new("")), None));
        assert!(!colour_wanted(false, None, None));
        assert!(!colour_wanted(true, Some(OsStr::new("1")), None));
        assert!(!colour_wanted(true, None, Some(OsStr::new("dumb"))));
    }
}
