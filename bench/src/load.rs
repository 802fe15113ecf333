//! A closed-loop load generator for the socket API: `conns` connections,
//! each sending its next credential request as soon as the previous answer
//! is read. Keep-alive reuses one connection per worker; otherwise every
//! request connects, sends `Connection: close` and reads to the end, as
//! `akscred token` does.
//!
//! hyper's client connection over a tokio `UnixStream`; the generator runs
//! on its own runtime with `threads` threads (one by default, so that on a
//! 2-core machine the daemon keeps most of the CPU).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper::header::{CONNECTION, HOST};
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::UnixStream;

pub struct Plan {
    pub conns: usize,
    pub keepalive: bool,
    pub warmup: Duration,
    pub measure: Duration,
    pub threads: usize,
}

pub struct Outcome {
    /// Latency of every request that started inside the measured window.
    pub latencies: Vec<Duration>,
    pub errors: u64,
    pub first_error: Option<String>,
    pub window: Duration,
}

impl Outcome {
    pub fn per_second(&self) -> f64 {
        self.latencies.len() as f64 / self.window.as_secs_f64()
    }
}

struct Worker {
    latencies: Vec<Duration>,
    errors: u64,
    first_error: Option<String>,
}

type Sender = hyper::client::conn::http1::SendRequest<Empty<Bytes>>;

async fn connect(path: &Path) -> Result<Sender, String> {
    let stream = UnixStream::connect(path)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let (tx, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(tx)
}

async fn one(tx: &mut Sender, target: &str, close: bool) -> Result<(), String> {
    tx.ready().await.map_err(|e| format!("connection: {e}"))?;
    let mut req = Request::get(target).header(HOST, "akscred");
    if close {
        req = req.header(CONNECTION, "close");
    }
    let req = req
        .body(Empty::new())
        .map_err(|e| format!("request: {e}"))?;
    let resp = tx
        .send_request(req)
        .await
        .map_err(|e| format!("send: {e}"))?;
    let status = resp.status();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("body: {e}"))?
        .to_bytes();
    if status != StatusCode::OK || body.first() != Some(&b'{') {
        return Err(format!(
            "answer {status}: {}",
            String::from_utf8_lossy(&body[..body.len().min(200)])
        ));
    }
    Ok(())
}

async fn worker(
    path: Arc<PathBuf>,
    target: Arc<str>,
    keepalive: bool,
    from: Instant,
    until: Instant,
) -> Worker {
    let mut w = Worker {
        latencies: Vec::new(),
        errors: 0,
        first_error: None,
    };
    let mut held: Option<Sender> = None;
    loop {
        let t = Instant::now();
        if t >= until {
            break;
        }
        let result = async {
            let mut tx = match held.take() {
                Some(tx) => tx,
                None => connect(&path).await?,
            };
            one(&mut tx, &target, !keepalive).await?;
            if keepalive {
                held = Some(tx);
            }
            Ok::<(), String>(())
        }
        .await;
        match result {
            Ok(()) if t >= from => w.latencies.push(t.elapsed()),
            Ok(()) => {}
            Err(e) => {
                w.errors += 1;
                w.first_error.get_or_insert(e);
                // Do not spin on a dead daemon.
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
    }
    w
}

pub fn run(socket: &Path, target: &str, plan: &Plan) -> Result<Outcome, String> {
    let rt = if plan.threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(plan.threads)
            .enable_all()
            .build()
    }
    .map_err(|e| format!("cannot start the load generator's runtime: {e}"))?;
    let path = Arc::new(socket.to_path_buf());
    let target: Arc<str> = target.into();
    rt.block_on(async {
        let from = Instant::now() + plan.warmup;
        let until = from + plan.measure;
        let tasks: Vec<_> = (0..plan.conns)
            .map(|_| {
                tokio::spawn(worker(
                    path.clone(),
                    target.clone(),
                    plan.keepalive,
                    from,
                    until,
                ))
            })
            .collect();
        let mut out = Outcome {
            latencies: Vec::new(),
            errors: 0,
            first_error: None,
            window: plan.measure,
        };
        for t in tasks {
            let w = t.await.map_err(|e| format!("a load worker failed: {e}"))?;
            out.latencies.extend(w.latencies);
            out.errors += w.errors;
            if out.first_error.is_none() {
                out.first_error = w.first_error;
            }
        }
        Ok(out)
    })
}
