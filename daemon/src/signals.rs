//! Shutdown on SIGTERM (systemd) or SIGINT (a terminal); reload on SIGHUP
//! (`kill -HUP`, `systemctl --user kill -s HUP akscredd`). `systemctl
//! --user reload` goes through the socket instead (`akscred reload`), to
//! learn whether the reload worked.

use tokio::signal::unix::{Signal, SignalKind, signal};

/// Resolves on the first SIGTERM or SIGINT. The handlers are installed
/// when this is called (inside the runtime), not when the future is first
/// polled: a SIGTERM during start-up then still means a clean stop.
pub fn shutdown() -> impl Future<Output = ()> + Send + 'static {
    let term = signal(SignalKind::terminate());
    let int = signal(SignalKind::interrupt());
    async move {
        match (term, int) {
            (Ok(mut term), Ok(mut int)) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                }
            }
            // Without signal handlers the default action still stops us.
            _ => std::future::pending::<()>().await,
        }
    }
}

/// SIGHUP, caught from now on. Installed before `READY=1`: SIGHUP's default
/// action ends the process, and a reload may be asked for as soon as
/// systemd considers the service started.
pub fn hangups() -> std::io::Result<Signal> {
    signal(SignalKind::hangup())
}
