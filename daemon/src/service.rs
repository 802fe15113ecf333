//! The daemon as a whole: take the socket (systemd's, or bind our own),
//! tell systemd we are ready, start sign-ins and the scheduler, serve
//! until told to stop, then stop within a bounded time.

use std::future::{Future, IntoFuture};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::extract::Request;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tokio::sync::watch;
use tokio::time::{Interval, MissedTickBehavior};
use tracing::{info, warn};

use crate::api::{self, AppState};
use crate::broker::Broker;
use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use crate::live::LiveBroker;
use crate::socket::{self, Peer, PeerPolicy};
use crate::systemd::{self, Systemd};

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error(transparent)]
    Socket(#[from] socket::SocketError),
    #[error(transparent)]
    Http(#[from] crate::http::HttpError),
    #[error("cannot catch SIGHUP: {0}")]
    Signals(std::io::Error),
    #[error("the API server stopped: {0}")]
    Serve(std::io::Error),
}

/// What the daemon gets besides its configuration.
pub struct Options {
    pub clock: Arc<dyn Clock>,
    /// What systemd passed (`Systemd::from_env` in `main`).
    pub systemd: Systemd,
    /// How long a stop waits for requests in flight. systemd's
    /// `TimeoutStopSec=` in akscredd.service must be longer.
    pub stop_grace: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            clock: Arc::new(SystemClock),
            systemd: Systemd::none(),
            stop_grace: Duration::from_secs(5),
        }
    }
}

pub async fn run(
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServiceError> {
    run_with(config, Options::default(), shutdown).await
}

pub async fn run_with_clock(
    config: Config,
    clock: Arc<dyn Clock>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServiceError> {
    let options = Options {
        clock,
        ..Options::default()
    };
    run_with(config, options, shutdown).await
}

pub async fn run_with(
    config: Config,
    options: Options,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServiceError> {
    let Options {
        clock,
        systemd:
            Systemd {
                notifier,
                watchdog,
                sockets,
                ..
            },
        stop_grace,
    } = options;
    let mut hangups = crate::signals::hangups().map_err(ServiceError::Signals)?;
    let http = crate::http::build_client(config.daemon.ca_file.as_deref())?;

    let configured = socket::socket_path(config.daemon.socket.as_deref());
    let activated = !sockets.is_empty();
    let (listener, path, lock) = match socket::from_systemd(sockets)? {
        Some(listener) => {
            let path = listener
                .local_addr()
                .ok()
                .and_then(|a| a.as_pathname().map(PathBuf::from));
            // systemd owns the socket; the lock still keeps a second,
            // hand-started daemon off the same path.
            let lock = path.as_deref().map(socket::lock).transpose()?;
            if let (Ok(c), Some(p)) = (&configured, &path)
                && c != p
            {
                warn!(configured = %c.display(), passed = %p.display(), "serving the socket systemd passed, not the configured one");
            }
            (listener, path, lock)
        }
        None => {
            let path = configured?;
            let private = socket::default_path().as_ref() == Some(&path);
            let (listener, lock) = socket::bind(&path, private)?;
            (listener, Some(path), Some(lock))
        }
    };
    let owns_path = !activated;

    let clusters = config.clusters.len();
    let identities = config.identities.len();
    let notifier = Arc::new(notifier);
    let broker = Broker::new(config, http, clock.clone());
    let live = Arc::new(LiveBroker::new(broker, clock, notifier.clone()));
    let shown = path
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "(unnamed)".into());
    info!(socket = %shown, activated, clusters, identities, watchdog = ?watchdog, dumpable = crate::process::is_dumpable(), "akscredd listening");
    // Bound (or handed the socket) and configured: ready. Sign-ins go on
    // in the background; a request that comes first waits for its token.
    notifier.ready(&live.status_line());

    live.current().warm_up();
    let scheduler = tokio::spawn(schedule(live.clone(), watchdog));
    let reloader = {
        let live = live.clone();
        tokio::spawn(async move {
            while hangups.recv().await.is_some() {
                let _ = live.reload("SIGHUP").await;
            }
        })
    };

    // Kubeconfigs name the socket only when the plugin would not find it
    // by itself.
    let socket_env = path
        .clone()
        .filter(|p| socket::default_path().as_ref() != Some(p));
    let state = Arc::new(AppState {
        broker: live.clone(),
        socket_env,
    });
    let own_uid = socket::own_uid();
    let guard = live.clone();
    let app = api::router(state).layer(axum::middleware::from_fn(
        move |ConnectInfo(peer): ConnectInfo<Peer>, req: Request, next: Next| {
            let live = guard.clone();
            async move { check_peer(&live, own_uid, peer, req, next).await }
        },
    ));

    let (stopped_tx, mut stopped) = watch::channel(false);
    let stop_signal = {
        let notifier = notifier.clone();
        async move {
            shutdown.await;
            info!(
                "stopping: no new connections; waiting up to {stop_grace:?} for requests in flight"
            );
            notifier.stopping();
            let _ = stopped_tx.send(true);
        }
    };
    let server = axum::serve(listener, app.into_make_service_with_connect_info::<Peer>())
        .with_graceful_shutdown(stop_signal)
        .into_future();
    let served = tokio::select! {
        r = server => r.map_err(ServiceError::Serve),
        () = async {
            if stopped.wait_for(|s| *s).await.is_err() {
                std::future::pending::<()>().await;
            }
            tokio::time::sleep(stop_grace).await;
        } => {
            warn!("requests still running {stop_grace:?} after the stop signal; stopping without them");
            Ok(())
        }
    };
    scheduler.abort();
    reloader.abort();
    if owns_path && let Some(p) = &path {
        let _ = std::fs::remove_file(p);
    }
    drop(lock);
    info!("akscredd stopped");
    served
}

/// Sleeps until the next wall-clock deadline, but never longer than `tick`:
/// tokio's timers run on the monotonic clock, which stops while the machine
/// sleeps, so the wall clock is re-read at least once per tick. Follows
/// reloads: a swap wakes it to read the new broker's deadlines, and so does
/// a token stored (or a backoff set) while it sleeps that is due before the
/// planned wake-up ([`crate::broker::Wakeup`]).
///
/// It is also the heartbeat: the watchdog ping (`WATCHDOG=1`) and the
/// status line are sent from this task, between polls of the work it
/// awaits, and the status line takes the broker's locks. A runtime that
/// stops scheduling tasks, or a broker stuck on a lock, stops the pings,
/// and systemd restarts the service.
async fn schedule(live: Arc<LiveBroker>, watchdog: Option<Duration>) {
    let mut swapped = live.subscribe();
    let mut beat = tokio::time::interval(systemd::heartbeat_period(watchdog));
    beat.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let pulse = || {
        let notifier = live.notifier();
        if notifier.is_enabled() {
            notifier.status(&live.status_line());
            if watchdog.is_some() {
                notifier.watchdog();
            }
        }
    };
    loop {
        let broker = live.current();
        let tick = broker.config().daemon.tick;
        broker.wakeup().planning();
        let now = broker.now();
        let wait = broker
            .next_deadline()
            .map_or(tick, |d| d.duration_since(now).unwrap_or_default())
            .min(tick);
        broker.wakeup().plan(now + wait);
        let due = with_heartbeat(&mut beat, &pulse, async {
            tokio::select! {
                () = tokio::time::sleep(wait) => true,
                _ = swapped.changed() => false,
                // Something stored meanwhile is due sooner: look again.
                () = broker.wakeup().woken() => false,
            }
        })
        .await;
        if due {
            // Runs to its end even if a reload comes meanwhile: dropping it
            // would abort sign-ins half done.
            with_heartbeat(&mut beat, &pulse, broker.tick()).await;
        }
    }
}

/// Awaits `work`, calling `pulse` at every tick of `beat` meanwhile.
async fn with_heartbeat<F: Future>(beat: &mut Interval, pulse: &impl Fn(), work: F) -> F::Output {
    tokio::pin!(work);
    loop {
        tokio::select! {
            biased;
            out = &mut work => return out,
            _ = beat.tick() => pulse(),
        }
    }
}

/// Every request: the peer's uid (SO_PEERCRED) must be the daemon's own,
/// root's, or in `allow_uids` of the running configuration. File modes
/// are not trusted for this.
async fn check_peer(
    live: &LiveBroker,
    own_uid: u32,
    peer: Peer,
    req: Request,
    next: Next,
) -> Response {
    let allowed = peer.uid.is_some_and(|uid| {
        PeerPolicy::allowed(own_uid, &live.current().config().daemon.allow_uids, uid)
    });
    if allowed {
        return next.run(req).await;
    }
    let uid = peer
        .uid
        .map(|u| u.to_string())
        .unwrap_or_else(|| "unknown".into());
    warn!(
        uid = %uid,
        pid = ?peer.pid,
        path = %req.uri().path(),
        "refused a request from uid {uid}: only uid {own_uid}, root and [daemon] allow_uids may use this daemon"
    );
    let body = akscred_proto::ErrorBody {
        error: akscred_proto::ApiError {
            code: "forbidden".into(),
            message: format!("uid {uid} may not use this akscredd (it serves uid {own_uid})"),
            hint: "run your own akscredd, or ask its owner to add your uid to [daemon] allow_uids"
                .into(),
        },
    };
    (axum::http::StatusCode::FORBIDDEN, axum::Json(body)).into_response()
}
