//! The socket API: HTTP/1.1 + JSON, one route per DESIGN.md endpoint.
//!
//! Every non-2xx answer is `{"error": {code, message, hint}}`. No token ever
//! appears in a log line or an error: the only body that carries one is the
//! ExecCredential of a successful `credential` request.

use std::sync::Arc;

use akscred_proto::{ApiError, ErrorBody};
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;

use crate::broker::{BrokerError, ExecApi};
use crate::exec_kubeconfig::{self, Entry};
use crate::live::LiveBroker;

pub struct AppState {
    /// The running configuration's broker, swapped whole on reload.
    pub broker: Arc<LiveBroker>,
    /// The socket path, when kubeconfigs must name it (not the default).
    pub socket_env: Option<std::path::PathBuf>,
}

pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/v1/clusters/{name}/credential", get(credential))
        .route("/v1/clusters/{name}/kubeconfig", get(cluster_kubeconfig))
        .route("/v1/clusters/{name}/refresh", post(refresh))
        .route("/v1/kubeconfig", get(all_kubeconfig))
        .route("/v1/status", get(status))
        .route("/v1/identities/{name}/retry", post(retry))
        .route("/v1/reload", post(reload))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/metrics", get(metrics))
        .fallback(|| async {
            error_response(
                StatusCode::NOT_FOUND,
                ApiError {
                    code: "not_found".into(),
                    message: "no such endpoint".into(),
                    hint: "see DESIGN.md for the socket API".into(),
                },
            )
        })
        .with_state(state)
}

fn error_response(status: StatusCode, error: ApiError) -> Response {
    (status, axum::Json(ErrorBody { error })).into_response()
}

impl IntoResponse for BrokerError {
    fn into_response(self) -> Response {
        let (status, body) = self.to_api();
        error_response(
            StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            body,
        )
    }
}

#[derive(Deserialize)]
struct CredentialQuery {
    api_version: Option<String>,
}

async fn credential(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    Query(q): Query<CredentialQuery>,
) -> Response {
    let api = match q.api_version.as_deref() {
        None => ExecApi::V1,
        Some(v) => match ExecApi::parse(v) {
            Some(api) => api,
            None => {
                return error_response(
                    StatusCode::BAD_REQUEST,
                    ApiError {
                        code: "bad_api_version".into(),
                        message: format!("unsupported exec credential apiVersion `{v}`"),
                        hint: "use client.authentication.k8s.io/v1 or v1beta1 in the kubeconfig's exec stanza".into(),
                    },
                );
            }
        },
    };
    let broker = state.broker.current();
    // A fresh token needs no await. Answering it before the async path
    // keeps this handler's future, which axum boxes for every request,
    // small: the discovery and sign-in state machine (~3 KB) is boxed only
    // for a request that has to wait for it.
    let found = match broker.fresh_credential(&name) {
        Some(token) => Ok(token),
        None => Box::pin(broker.credential(&name)).await,
    };
    match found {
        Ok(token) => {
            crate::metrics::credential(true);
            let body = token.exec_credential(api).clone();
            (
                [
                    (
                        header::CONTENT_TYPE,
                        HeaderValue::from_static("application/json"),
                    ),
                    (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
                ],
                body,
            )
                .into_response()
        }
        Err(e) => {
            crate::metrics::credential(false);
            e.into_response()
        }
    }
}

#[derive(Deserialize)]
struct KubeconfigQuery {
    /// The client's own absolute path, so the kubeconfig runs the plugin the
    /// user actually has.
    command: Option<String>,
}

fn plugin(state: &AppState, q: &KubeconfigQuery) -> std::path::PathBuf {
    match &q.command {
        Some(c) if c.starts_with('/') => c.into(),
        _ => exec_kubeconfig::plugin_path(
            state
                .broker
                .current()
                .config()
                .daemon
                .plugin_path
                .as_deref(),
        ),
    }
}

fn yaml(body: String) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/yaml"),
        )],
        body,
    )
        .into_response()
}

async fn cluster_kubeconfig(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    Query(q): Query<KubeconfigQuery>,
) -> Response {
    let broker = state.broker.current();
    let cfg = match broker.cluster_config(&name) {
        Ok(c) => c.clone(),
        Err(e) => return e.into_response(),
    };
    let target = match broker.target_of(&name).await {
        Ok(t) => t,
        Err(e) => return e.into_response(),
    };
    let entry = Entry {
        cluster: &cfg.name,
        context: &cfg.context,
        namespace: cfg.namespace.as_deref(),
        server: &target.server,
        ca_pem: target.ca_pem.as_deref(),
    };
    yaml(exec_kubeconfig::render(
        &[entry],
        &plugin(&state, &q),
        state.socket_env.as_deref(),
        None,
    ))
}

async fn all_kubeconfig(
    State(state): State<Arc<AppState>>,
    Query(q): Query<KubeconfigQuery>,
) -> Response {
    let broker = state.broker.current();
    let names = broker.cluster_names();
    let lookups = names.iter().map(|n| broker.target_of(n));
    let targets = futures_join_all(lookups).await;
    let mut configs = Vec::new();
    let mut skipped = Vec::new();
    for (name, target) in names.iter().zip(targets) {
        match (broker.cluster_config(name), target) {
            (Ok(cfg), Ok(t)) => configs.push((cfg.clone(), t)),
            (_, Err(e)) => skipped.push(format!("# {name}: skipped: {e}\n")),
            (Err(e), _) => skipped.push(format!("# {name}: skipped: {e}\n")),
        }
    }
    let entries: Vec<Entry> = configs
        .iter()
        .map(|(cfg, t)| Entry {
            cluster: &cfg.name,
            context: &cfg.context,
            namespace: cfg.namespace.as_deref(),
            server: &t.server,
            ca_pem: t.ca_pem.as_deref(),
        })
        .collect();
    let mut body = skipped.concat();
    body.push_str(&exec_kubeconfig::render(
        &entries,
        &plugin(&state, &q),
        state.socket_env.as_deref(),
        None,
    ));
    yaml(body)
}

/// Runs the lookups concurrently on this task (no spawn: they borrow).
async fn futures_join_all<F: std::future::Future>(futs: impl Iterator<Item = F>) -> Vec<F::Output> {
    let mut set: Vec<std::pin::Pin<Box<F>>> = futs.map(Box::pin).collect();
    let mut out: Vec<Option<F::Output>> = set.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (i, f) in set.iter_mut().enumerate() {
            if out[i].is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => out[i] = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    out.into_iter().flatten().collect()
}

async fn status(State(state): State<Arc<AppState>>) -> Response {
    axum::Json(state.broker.current().status()).into_response()
}

async fn refresh(State(state): State<Arc<AppState>>, Path(name): Path<String>) -> Response {
    match state.broker.current().refresh_cluster(&name).await {
        Ok(t) => axum::Json(serde_json::json!({
            "message": format!("refreshed {name}; the token is valid until {}", crate::clock::rfc3339(t.expires_on)),
        }))
        .into_response(),
        Err(e) => e.into_response(),
    }
}

async fn retry(State(state): State<Arc<AppState>>, Path(name): Path<String>) -> Response {
    match state.broker.current().retry_identity(&name).await {
        Ok(was_blocked) => axum::Json(serde_json::json!({
            "message": if was_blocked {
                format!("{name} was unblocked and signed in again")
            } else {
                format!("{name} was not blocked; its clusters are ready")
            },
        }))
        .into_response(),
        Err(e) => e.into_response(),
    }
}

/// `POST /v1/reload`: as SIGHUP, but the caller learns whether the new
/// configuration was taken.
async fn reload(State(state): State<Arc<AppState>>) -> Response {
    match state.broker.reload("api").await {
        Ok(r) => axum::Json(serde_json::json!({ "message": r.message })).into_response(),
        Err(e) => error_response(
            StatusCode::UNPROCESSABLE_ENTITY,
            ApiError {
                code: "invalid_config".into(),
                message: format!("the new configuration was refused: {e}"),
                hint: "fix the file (akscredd check-config shows the same error) and reload again; the previous configuration keeps running".into(),
            },
        ),
    }
}

/// Prometheus text format; see `metrics`.
async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        crate::metrics::render(&state.broker.current().status()),
    )
        .into_response()
}
