//! Log setup: to stderr, filtered by `AKSCRED_LOG` (default `info`).
//!
//! Under systemd stderr is a stream to journald, which stamps each line
//! itself and reads its priority from a `<N>` prefix (sd-daemon(3)). So
//! when `JOURNAL_STREAM` names stderr's own device and inode (the check
//! systemd.exec(5) asks for: a daemon started by a unit but writing to a
//! file must not get this format), each line is `<3>message key=value`:
//! no timestamp, no level word, no colour, and `journalctl -p warning`
//! shows warnings and errors only. ERROR is `<3>`, WARN `<4>`, INFO `<6>`,
//! DEBUG and TRACE `<7>`. A message of several lines gets the prefix on
//! every line, or journald would file the later ones as info.
//!
//! Elsewhere the usual format, with timestamps; colour only on a terminal.

use std::io::IsTerminal;

use tracing::{Event, Level, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::{FormatEvent, FormatFields, Writer};
use tracing_subscriber::fmt::{FmtContext, format};
use tracing_subscriber::registry::LookupSpan;

/// Whether stderr is the journal stream systemd set up for this process.
pub fn journal_stream() -> bool {
    let Some(value) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let Some((dev, ino)) = value
        .to_str()
        .and_then(|v| v.split_once(':'))
        .and_then(|(d, i)| Some((d.parse::<u64>().ok()?, i.parse::<u64>().ok()?)))
    else {
        return false;
    };
    match rustix::fs::fstat(std::io::stderr()) {
        Ok(st) => st.st_dev == dev && st.st_ino == ino,
        Err(_) => false,
    }
}

/// Sets up the global subscriber. Returns whether logs go to the journal.
pub fn init() -> bool {
    let filter = EnvFilter::try_from_env("AKSCRED_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let journal = journal_stream();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    if journal {
        builder
            .with_ansi(false)
            .event_format(Journal(
                format().without_time().with_level(false).with_target(false),
            ))
            .init();
    } else {
        builder.with_ansi(std::io::stderr().is_terminal()).init();
    }
    journal
}

/// A message for stderr when there is no subscriber (or it is not set up
/// yet): with the error priority under journald.
pub fn fatal(message: &str) {
    if journal_stream() {
        eprintln!("{}", prefix_lines("<3>", &format!("akscredd: {message}")));
    } else {
        eprintln!("akscredd: {message}");
    }
}

fn priority(level: &Level) -> &'static str {
    match *level {
        Level::ERROR => "<3>",
        Level::WARN => "<4>",
        Level::INFO => "<6>",
        _ => "<7>",
    }
}

fn prefix_lines(prefix: &str, text: &str) -> String {
    let mut out = String::with_capacity(text.len() + prefix.len());
    for (i, line) in text.split('\n').enumerate() {
        if i > 0 {
            out.push('\n');
        }
        if !line.is_empty() {
            out.push_str(prefix);
        }
        out.push_str(line);
    }
    out
}

/// The default format, with a syslog priority prefix on each line.
struct Journal<F>(F);

impl<S, N, F> FormatEvent<S, N> for Journal<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> std::fmt::Result {
        let mut line = String::new();
        self.0.format_event(ctx, Writer::new(&mut line), event)?;
        let prefix = priority(event.metadata().level());
        writer.write_str(&prefix_lines(prefix, &line))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_line_gets_the_priority() {
        assert_eq!(prefix_lines("<3>", "a\nb\n"), "<3>a\n<3>b\n");
        assert_eq!(prefix_lines("<6>", "one"), "<6>one");
    }

    #[test]
    fn priorities_follow_syslog() {
        assert_eq!(priority(&Level::ERROR), "<3>");
        assert_eq!(priority(&Level::WARN), "<4>");
        assert_eq!(priority(&Level::INFO), "<6>");
        assert_eq!(priority(&Level::TRACE), "<7>");
    }
}
