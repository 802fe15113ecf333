//! Shutdown on SIGTERM (systemd) or SIGINT (a terminal).

use tokio::signal::unix::{SignalKind, signal};

pub async fn shutdown() {
    let term = signal(SignalKind::terminate());
    let int = signal(SignalKind::interrupt());
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
