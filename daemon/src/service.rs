//! The daemon as a whole: bind the socket, start sign-ins and the refresh
//! tick, serve until told to stop.

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;

use axum::extract::ConnectInfo;
use axum::extract::Request;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tracing::{info, warn};

use crate::api::{self, AppState};
use crate::broker::Broker;
use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use crate::socket::{self, Peer, PeerPolicy};

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error(transparent)]
    Socket(#[from] socket::SocketError),
    #[error(transparent)]
    Http(#[from] crate::http::HttpError),
    #[error("the API server stopped: {0}")]
    Serve(std::io::Error),
}

pub async fn run(
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServiceError> {
    run_with_clock(config, Arc::new(SystemClock), shutdown).await
}

pub async fn run_with_clock(
    config: Config,
    clock: Arc<dyn Clock>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServiceError> {
    let path: PathBuf = socket::socket_path(config.daemon.socket.as_deref())?;
    let http = crate::http::build_client(config.daemon.ca_file.as_deref())?;
    let policy = PeerPolicy {
        own_uid: socket::own_uid(),
        allow_uids: config.daemon.allow_uids.clone(),
    };
    let tick = config.daemon.tick;
    let clusters = config.clusters.len();
    let identities = config.identities.len();
    let broker = Arc::new(Broker::new(config, http, clock));
    let (listener, owns_path) = match socket::from_systemd()? {
        Some(l) => (l, false),
        None => (socket::bind(&path)?, true),
    };
    info!(socket = %path.display(), clusters, identities, "akscredd listening");
    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]);

    broker.warm_up();
    let scheduler = tokio::spawn(schedule(broker.clone(), tick));
    let default_path = std::env::var_os("XDG_RUNTIME_DIR")
        .map(|d| PathBuf::from(d).join("akscred").join("akscred.sock"));
    let socket_env = (owns_path && default_path.as_ref() != Some(&path)).then(|| path.clone());
    let state = Arc::new(AppState {
        broker,
        metrics: Default::default(),
        socket_env,
    });
    let app = api::router(state).layer(axum::middleware::from_fn(
        move |ConnectInfo(peer): ConnectInfo<Peer>, req: Request, next: Next| {
            let policy = policy.clone();
            async move { check_peer(&policy, peer, req, next).await }
        },
    ));
    let served = axum::serve(listener, app.into_make_service_with_connect_info::<Peer>())
        .with_graceful_shutdown(shutdown)
        .await;
    scheduler.abort();
    if owns_path {
        let _ = std::fs::remove_file(&path);
    }
    info!("akscredd stopped");
    served.map_err(ServiceError::Serve)
}

/// Sleeps until the next wall-clock deadline, but never longer than `tick`:
/// tokio's timers run on the monotonic clock, which stops while the machine
/// sleeps, so the wall clock is re-read at least once per tick.
async fn schedule(broker: Arc<Broker>, tick: std::time::Duration) {
    loop {
        let now = broker.now();
        let wait = broker
            .next_deadline()
            .map_or(tick, |d| d.duration_since(now).unwrap_or_default())
            .min(tick);
        tokio::time::sleep(wait).await;
        broker.tick().await;
    }
}

async fn check_peer(policy: &PeerPolicy, peer: Peer, req: Request, next: Next) -> Response {
    if policy.allows(peer.uid) {
        return next.run(req).await;
    }
    warn!(uid = ?peer.uid, pid = ?peer.pid, "refused a connection from a user not allowed to use this daemon");
    let body = akscred_proto::ErrorBody {
        error: akscred_proto::ApiError {
            code: "forbidden".into(),
            message: format!(
                "uid {} may not use this akscredd (it serves uid {})",
                peer.uid
                    .map(|u| u.to_string())
                    .unwrap_or_else(|| "unknown".into()),
                policy.own_uid
            ),
            hint: "run your own akscredd, or ask its owner to add your uid to [daemon] allow_uids"
                .into(),
        },
    };
    (axum::http::StatusCode::FORBIDDEN, axum::Json(body)).into_response()
}
