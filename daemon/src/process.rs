//! Process hygiene, done first thing in `main`, before any secret is read.
//!
//! The daemon holds passwords, refresh tokens and access tokens in memory.
//! Like ssh-agent it makes itself non-dumpable: no core file is written
//! when it crashes, and other processes of the same user can neither
//! `ptrace` it nor read `/proc/PID/mem` or `/proc/PID/environ` (the kernel
//! then makes those files belong to root). Only root keeps access, which
//! it has to everything anyway. The core size limit is set to 0 as well,
//! in case something turns dumpable back on (a `setuid` exec, a debugger).
//!
//! The umask becomes 0077, so every file and socket the daemon creates is
//! private from the first instant, whatever umask it was started with.

use rustix::fs::Mode;
use rustix::process::{DumpableBehavior, Resource, Rlimit};

/// The uid this process runs as.
///
/// Not read from `/proc/self`: once the process is non-dumpable, the kernel
/// shows `/proc/self` as owned by root.
pub fn own_uid() -> u32 {
    rustix::process::getuid().as_raw()
}

/// What [`harden`] could not do, for the log (the log is not set up yet
/// when it runs).
#[derive(Debug, Default)]
pub struct Hardening {
    pub warnings: Vec<String>,
}

/// Core size 0 (soft and hard), not dumpable, umask 0077.
///
/// Failures are reported, not fatal: under systemd `LimitCORE=0` and
/// `UMask=0077` already did the same, and a seccomp filter may refuse the
/// call. A failure to turn dumpable off is worth a warning, though.
pub fn harden() -> Hardening {
    let mut out = Hardening::default();
    let zero = Rlimit {
        current: Some(0),
        maximum: Some(0),
    };
    if let Err(e) = rustix::process::setrlimit(Resource::Core, zero) {
        out.warnings.push(format!(
            "cannot set the core file size limit to 0 ({e}); a crash could write secrets to a core file"
        ));
    }
    if let Err(e) = rustix::process::set_dumpable_behavior(DumpableBehavior::NotDumpable) {
        out.warnings.push(format!(
            "cannot make the process non-dumpable ({e}); processes of the same user could read its memory"
        ));
    }
    rustix::process::umask(Mode::from_raw_mode(0o077));
    out
}

/// Whether the process is dumpable (for tests and the status log line).
pub fn is_dumpable() -> bool {
    !matches!(
        rustix::process::dumpable_behavior(),
        Ok(DumpableBehavior::NotDumpable)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_uid_matches_the_real_uid() {
        // A file this process creates belongs to its (effective) uid.
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("f");
        std::fs::write(&f, "").unwrap();
        use std::os::unix::fs::MetadataExt;
        assert_eq!(std::fs::metadata(&f).unwrap().uid(), own_uid());
    }
}
