//! The running emulator: binds the login, ARM and API server listeners on
//! loopback, serves them until dropped, and lets tests look inside and
//! inject trouble.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::counters::Counters;
use crate::directory::Directory;
use crate::jwt::{Claims, SigningKey};
use crate::scenario::{KubeconfigFormat, Scenario, UserState};
use crate::{apiserver, arm, kubeconfig, login, time, tls, token};

/// A transient failure to answer instead of doing the work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// 503 (`temporarily_unavailable` from Entra, `ServiceUnavailable` from ARM).
    ServiceUnavailable,
    /// 429 with `Retry-After`.
    TooManyRequests { retry_after: Duration },
}

/// Which service a [`Fault`] hits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultTarget {
    /// Both token endpoints.
    Token,
    /// The ARM server.
    Arm,
}

pub(crate) struct State {
    pub directory: Directory,
    pub counters: Counters,
    token_faults: VecDeque<Fault>,
    arm_faults: VecDeque<Fault>,
}

impl State {
    fn faults(&mut self, target: FaultTarget) -> &mut VecDeque<Fault> {
        match target {
            FaultTarget::Token => &mut self.token_faults,
            FaultTarget::Arm => &mut self.arm_faults,
        }
    }

    pub(crate) fn take_fault(&mut self, target: FaultTarget) -> Option<Fault> {
        self.faults(target).pop_front()
    }
}

/// What every handler sees.
pub(crate) struct Shared {
    pub scenario: Scenario,
    pub login_url: String,
    pub arm_url: String,
    pub cluster_urls: BTreeMap<String, String>,
    pub ca_pem: String,
    pub key: SigningKey,
    state: Mutex<State>,
}

impl Shared {
    pub(crate) fn state(&self) -> MutexGuard<'_, State> {
        // A handler that panicked while holding the lock leaves the state
        // usable: every update is a single step.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Tenant name as Entra prints it in messages.
    pub(crate) fn tenant_name(&self) -> &str {
        let d = &self.scenario.tenant_domain;
        d.split('.').next().unwrap_or(d)
    }

    pub(crate) fn v1_issuer(&self) -> String {
        format!("https://sts.windows.net/{}/", self.scenario.tenant_id)
    }

    pub(crate) fn v2_issuer(&self) -> String {
        format!("{}/{}/v2.0", self.login_url, self.scenario.tenant_id)
    }
}

/// An emulated Azure: Entra ID, ARM and one API server per cluster, each on
/// its own `https://127.0.0.1:<port>`, all with certificates from one CA.
/// Dropping it stops the servers.
pub struct Emulator {
    shared: Arc<Shared>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for Emulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Emulator")
            .field("login_url", &self.shared.login_url)
            .field("arm_url", &self.shared.arm_url)
            .field("clusters", &self.shared.cluster_urls)
            .finish_non_exhaustive()
    }
}

async fn bind_loopback() -> std::io::Result<(TcpListener, String)> {
    let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
    let url = format!("https://127.0.0.1:{}", listener.local_addr()?.port());
    Ok((listener, url))
}

impl Emulator {
    /// Binds every listener on 127.0.0.1 (random ports) and starts serving.
    /// Must run inside a tokio runtime, which then hosts the servers.
    pub async fn start(scenario: Scenario) -> std::io::Result<Emulator> {
        let key = SigningKey::emulator().map_err(std::io::Error::other)?;
        let tls = tls::generate().map_err(std::io::Error::other)?;

        let (login_listener, login_url) = bind_loopback().await?;
        let (arm_listener, arm_url) = bind_loopback().await?;
        let mut cluster_listeners = Vec::new();
        let mut cluster_urls = BTreeMap::new();
        for cluster in &scenario.clusters {
            let (listener, url) = bind_loopback().await?;
            if cluster_urls.insert(cluster.name.clone(), url).is_some() {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    format!("scenario names cluster {:?} twice", cluster.name),
                ));
            }
            cluster_listeners.push((cluster.name.clone(), listener));
        }

        let state = State {
            directory: Directory::new(&scenario.users, scenario.lockout_threshold),
            counters: Counters::default(),
            token_faults: VecDeque::new(),
            arm_faults: VecDeque::new(),
        };
        let shared = Arc::new(Shared {
            scenario,
            login_url,
            arm_url,
            cluster_urls,
            ca_pem: tls.ca_pem,
            key,
            state: Mutex::new(state),
        });

        let (shutdown, _) = watch::channel(false);
        let mut tasks = Vec::new();
        let mut serve = |listener: TcpListener, router: axum::Router| {
            let listener = tls::TlsListener::new(listener, tls.acceptor.clone());
            let mut stop = shutdown.subscribe();
            tasks.push(tokio::spawn(async move {
                let signal = async move {
                    let _ = stop.wait_for(|stopped| *stopped).await;
                };
                if let Err(e) = axum::serve(listener, router)
                    .with_graceful_shutdown(signal)
                    .await
                {
                    tracing::warn!(error = %e, "emulator server stopped");
                }
            }));
        };
        serve(login_listener, login::router(shared.clone()));
        serve(arm_listener, arm::router(shared.clone()));
        for (name, listener) in cluster_listeners {
            serve(listener, apiserver::router(shared.clone(), name));
        }
        Ok(Emulator {
            shared,
            shutdown,
            tasks,
        })
    }

    /// `https://127.0.0.1:PORT` (no trailing slash): the Entra login endpoint.
    pub fn login_url(&self) -> String {
        self.shared.login_url.clone()
    }

    /// `https://127.0.0.1:PORT` (no trailing slash): the ARM endpoint.
    pub fn arm_url(&self) -> String {
        self.shared.arm_url.clone()
    }

    /// PEM of the CA that issued every server certificate (SANs `127.0.0.1`
    /// and `localhost`).
    pub fn ca_pem(&self) -> &str {
        &self.shared.ca_pem
    }

    /// `https://127.0.0.1:PORT` of that cluster's API server.
    pub fn cluster_server(&self, name: &str) -> Option<String> {
        self.shared.cluster_urls.get(name).cloned()
    }

    pub fn scenario(&self) -> &Scenario {
        &self.shared.scenario
    }

    pub fn counters(&self) -> Counters {
        self.shared.state().counters.clone()
    }

    pub fn reset_counters(&self) {
        self.shared.state().counters = Counters::default();
    }

    /// The kubeconfig YAML `listClusterUserCredential` returns for a
    /// cluster (before base64), in `format` or the cluster's default; for
    /// `kubeconfig = path` import tests.
    pub fn kubeconfig_for(
        &self,
        cluster: &str,
        format: Option<KubeconfigFormat>,
    ) -> Option<String> {
        let spec = self.shared.scenario.cluster(cluster)?;
        let server = self.shared.cluster_urls.get(cluster)?;
        Some(kubeconfig::cluster_user(
            spec,
            server,
            &self.shared.ca_pem,
            &self.shared.scenario.tenant_id,
            &self.shared.scenario.environment,
            format.unwrap_or(spec.default_format),
        ))
    }

    /// A valid access token as the v1 endpoint would issue it to `upn`
    /// through `client_id` for `resource` (`aud` = `resource`), without a
    /// sign-in and without touching counters. `None` for an unknown user.
    pub fn issue_access_token(&self, upn: &str, client_id: &str, resource: &str) -> Option<String> {
        let identity = self.shared.state().directory.identity(upn)?;
        let now = time::now_unix();
        let claims: Claims = token::access_token_claims(
            &self.shared,
            &identity,
            client_id,
            resource,
            "user_impersonation",
            now,
        );
        Some(self.shared.key.sign(&claims))
    }

    /// Changes a user's state (e.g. lift a lockout, require MFA). Returns
    /// false for an unknown user.
    pub fn set_user_state(&self, upn: &str, state: UserState) -> bool {
        self.shared.state().directory.set_state(upn, state)
    }

    pub fn user_state(&self, upn: &str) -> Option<UserState> {
        self.shared.state().directory.state(upn)
    }

    /// Changes a password; the user's outstanding refresh tokens then fail
    /// with AADSTS50173. Returns false for an unknown user.
    pub fn set_password(&self, upn: &str, password: &str) -> bool {
        self.shared.state().directory.set_password(upn, password)
    }

    /// Every outstanding refresh token fails from now on with AADSTS700082
    /// (expired for inactivity).
    pub fn expire_refresh_tokens(&self) {
        self.shared.state().directory.expire_refresh_tokens();
    }

    /// The next `n` requests to `target` fail with `fault` (after being
    /// counted).
    pub fn fail_next(&self, target: FaultTarget, n: usize, fault: Fault) {
        let mut state = self.shared.state();
        state.faults(target).extend(std::iter::repeat_n(fault, n));
    }

    /// Ends every injected fault: the outage is over.
    pub fn clear_faults(&self) {
        let mut state = self.shared.state();
        state.token_faults.clear();
        state.arm_faults.clear();
    }

    /// Stops accepting and lets open connections finish, for five seconds
    /// at most in all.
    pub async fn shutdown(mut self) {
        let _ = self.shutdown.send(true);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        for mut task in self.tasks.drain(..) {
            if tokio::time::timeout_at(deadline, &mut task).await.is_err() {
                task.abort();
            }
        }
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
        for task in &self.tasks {
            task.abort();
        }
    }
}
