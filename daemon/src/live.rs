//! The running configuration, and its reload (SIGHUP, `POST /v1/reload`).
//!
//! A reload parses and validates the whole file first; a bad file is
//! refused, logged, and the running configuration stays. A good one gets a
//! new [`Broker`], which adopts the old one's state (tokens, refresh
//! tokens, blocks, budgets) wherever the settings it depends on did not
//! change, and is swapped in whole. Requests already running finish on the
//! broker they started with; the next one sees the new broker. The swap is
//! one pointer behind a `RwLock`: the hot path (a credential request) takes
//! the read lock just long enough to clone an `Arc`.

use std::sync::{Arc, Mutex, RwLock};

use tokio::sync::watch;
use tracing::{error, info, warn};

use crate::broker::Broker;
use crate::clock::Clock;
use crate::config::{Config, ConfigError};
use crate::http::HttpError;
use crate::systemd::{self, Notifier};

#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("{0}")]
    Config(#[from] ConfigError),
    #[error("{0}")]
    Http(#[from] HttpError),
}

/// What a successful reload changed, for the log and the API answer.
#[derive(Debug, Clone)]
pub struct Reloaded {
    pub message: String,
}

pub struct LiveBroker {
    current: RwLock<Arc<Broker>>,
    /// Bumped on every swap, so the scheduler re-reads its deadlines from
    /// the new broker instead of sleeping on the old one's.
    generation: watch::Sender<u64>,
    /// One reload at a time: SIGHUP and the API may ask together.
    reloading: tokio::sync::Mutex<()>,
    clock: Arc<dyn Clock>,
    notifier: Arc<Notifier>,
    /// Why the last reload was refused, until one succeeds: shown in the
    /// systemd status line, where `systemctl reload` users look.
    refused: Mutex<Option<String>>,
}

impl LiveBroker {
    pub fn new(broker: Broker, clock: Arc<dyn Clock>, notifier: Arc<Notifier>) -> LiveBroker {
        LiveBroker {
            current: RwLock::new(Arc::new(broker)),
            generation: watch::channel(0).0,
            reloading: tokio::sync::Mutex::new(()),
            clock,
            notifier,
            refused: Mutex::new(None),
        }
    }

    /// The broker of the running configuration.
    pub fn current(&self) -> Arc<Broker> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.generation.subscribe()
    }

    pub fn notifier(&self) -> &Notifier {
        &self.notifier
    }

    /// The one-line summary for systemd's `STATUS=`.
    pub fn status_line(&self) -> String {
        let mut line = systemd::status_line(&self.current().status_for_line());
        if let Some(why) = &*self.refused.lock().unwrap_or_else(|p| p.into_inner()) {
            line.push_str("; reload refused, previous config running: ");
            line.push_str(why);
        }
        line
    }

    /// Re-reads the configuration file the daemon was started with.
    /// `trigger` names who asked, for the log.
    pub async fn reload(&self, trigger: &str) -> Result<Reloaded, ReloadError> {
        let _one_at_a_time = self.reloading.lock().await;
        self.notifier.reloading();
        let result = self.swap();
        {
            let mut refused = self.refused.lock().unwrap_or_else(|p| p.into_inner());
            match &result {
                Ok(r) => {
                    info!(trigger, "{}", r.message);
                    *refused = None;
                }
                Err(e) => {
                    error!(
                        trigger,
                        "configuration reload refused, the previous configuration keeps running: {e}"
                    );
                    *refused = Some(e.to_string().lines().next().unwrap_or("").to_string());
                }
            }
        }
        self.notifier.ready(&self.status_line());
        result
    }

    fn swap(&self) -> Result<Reloaded, ReloadError> {
        let old = self.current();
        let path = old.config().path.clone();
        let config = Config::load(&path)?;
        // Rebuilt every time, so a replaced CA file is read again.
        let http = crate::http::build_client(config.daemon.ca_file.as_deref())?;
        if config.daemon.socket != old.config().daemon.socket {
            warn!(
                "daemon.socket changed: the daemon keeps listening where it is; restart it to move the socket"
            );
        }
        let names = |c: &Config| c.clusters.keys().cloned().collect::<Vec<_>>();
        let (before, after) = (names(old.config()), names(&config));
        let added: Vec<&String> = after.iter().filter(|n| !before.contains(n)).collect();
        let removed: Vec<&String> = before.iter().filter(|n| !after.contains(n)).collect();
        let mut message = format!(
            "reloaded {}: {} identities, {} clusters",
            path.display(),
            config.identities.len(),
            config.clusters.len()
        );
        let list = |v: &[&String]| v.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ");
        if !added.is_empty() {
            message.push_str(&format!("; added {}", list(&added)));
        }
        if !removed.is_empty() {
            message.push_str(&format!("; removed {}", list(&removed)));
        }

        let mut new = Broker::new(config, http, self.clock.clone());
        new.adopt(&old);
        let new = Arc::new(new);
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = new.clone();
        self.generation.send_modify(|g| *g += 1);
        // New clusters are discovered now; adopted ones answer at once.
        new.warm_up();
        Ok(Reloaded { message })
    }
}
