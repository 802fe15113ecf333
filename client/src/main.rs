//! `akscred`: the kubectl exec credential plugin and operator CLI of
//! akscredd.
//!
//! Every command is one HTTP/1.1 request to akscredd over its Unix socket
//! (`AKSCRED_SOCKET`, else `$XDG_RUNTIME_DIR/akscred/akscred.sock`, else
//! `/run/user/<uid>/akscred/akscred.sock`). `akscred token CLUSTER` runs
//! once per kubectl command, so this binary has no async runtime, no argument
//! framework and no HTTP library: start-up is the whole cost.
//!
//! Failures print `akscred: <message>` and `hint: <hint>` on stderr.
//!
//! Exit codes:
//! - 0: success
//! - 1: akscredd answered with an error; for `status`, a cluster is not ready
//! - 2: usage error, a `KUBERNETES_EXEC_INFO` akscred cannot answer, or a
//!   kubeconfig `kubeconfig --merge` will not overwrite
//! - 3: akscredd is not running or cannot be reached, or its answer is
//!   unreadable
//! - 4: the output could not be written (stdout, `--file`)

// Why `no_main`: Rust's runtime set-up before `fn main` (stack-overflow
// handler with its alternate stack, which reads /proc/self/maps; stdio and
// SIGPIPE set-up) costs about 20 system calls, a quarter of this program's
// CPU time when it runs as kubectl's plugin. Nothing here needs it: sockets
// are written with MSG_NOSIGNAL, every stdout write is flushed explicitly,
// and the only effect of a closed stdout pipe is SIGPIPE, as for any Unix
// tool. std still collects the arguments (glibc passes them to .init_array).
// Test builds keep the ordinary runtime, which the test harness needs.
#![cfg_attr(not(test), no_main)]

mod app;
mod cli;
mod docs;
mod error;
mod exec_info;
mod http;
mod merge;
mod output;
mod socket;
mod status;
mod yaml;

use std::io::Write;

/// The C entry point, in place of `fn main` (see the top of this file).
#[cfg(not(test))]
// `no_mangle` is unsafe because symbol names must be unique; `main` is the
// one symbol the C runtime calls and nothing else in the program defines it.
#[allow(unsafe_code)]
#[unsafe(no_mangle)]
extern "C" fn main(
    _argc: std::ffi::c_int,
    _argv: *const *const std::ffi::c_char,
) -> std::ffi::c_int {
    std::ffi::c_int::from(run())
}

/// Parses the arguments, runs the command, reports a failure on stderr and
/// returns the exit code.
#[cfg_attr(test, allow(dead_code))]
fn run() -> u8 {
    match cli::parse(std::env::args_os().skip(1)).and_then(app::run) {
        Ok(()) => error::exit::OK,
        Err(e) => {
            let report = e.report();
            if !report.is_empty() {
                // Nothing is left to tell the user if stderr fails too.
                let _ = std::io::stderr().lock().write_all(report.as_bytes());
            }
            e.exit_code()
        }
    }
}
