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

use crate::client_credentials::AppState;
use crate::counters::Counters;
use crate::directory::Directory;
use crate::jwt::{Claims, SigningKey};
use crate::local_accounts::{LocalAccountCredential, LocalClusters};
use crate::scenario::{KubeconfigFormat, Scenario, UserState};
use crate::workload::WorkloadIssuer;
use crate::{
    apiserver, arm, client_credentials, kubeconfig, local_accounts, login, time, tls, token,
};

/// A transient failure to answer instead of doing the work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// 503 (`temporarily_unavailable` from Entra, `ServiceUnavailable` from ARM).
    ServiceUnavailable,
    /// 429 with `Retry-After`.
    TooManyRequests { retry_after: Duration },
    /// A broken or hostile upstream: 200, `application/json`, and this
    /// body instead of the answer.
    Body(&'static str),
    /// 200 and a JSON string this many bytes long: an answer no client
    /// should buffer whole.
    Enormous(usize),
    /// ARM only: the real answer, but with this as the kubeconfig `value`
    /// (which should be base64 of YAML).
    Kubeconfig(&'static str),
}

impl Fault {
    /// The answer of a [`Fault::Body`] or [`Fault::Enormous`] fault.
    pub(crate) fn raw_answer(self) -> Option<axum::response::Response> {
        let body = match self {
            Fault::Body(text) => text.as_bytes().to_vec(),
            Fault::Enormous(len) => {
                let mut b = Vec::with_capacity(len + 20);
                b.extend_from_slice(b"{\"access_token\": \"");
                b.resize(len.saturating_sub(2).max(b.len()), b'a');
                b.extend_from_slice(b"\"}");
                b
            }
            _ => return None,
        };
        Some(
            axum::response::Response::builder()
                .status(200)
                .header(axum::http::header::CONTENT_TYPE, "application/json")
                .body(axum::body::Body::from(body))
                .unwrap_or_default(),
        )
    }
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
    /// Service principals' secrets, certificate expiry, seen assertions.
    pub apps: AppState,
    pub counters: Counters,
    /// AD FS: faults to inject, assertions issued.
    pub adfs: crate::adfs::AdfsState,
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
    /// The AD FS of the federated domain, when the scenario has one.
    pub adfs_url: Option<String>,
    pub ca_pem: String,
    pub key: SigningKey,
    /// Signs the federated tokens of the external issuers (workload identity).
    pub workload_issuer: WorkloadIssuer,
    /// CAs and client certificates of the local-account clusters.
    pub local_clusters: LocalClusters,
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
    pub(crate) shared: Arc<Shared>,
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
        let workload_issuer = WorkloadIssuer::new().map_err(std::io::Error::other)?;
        let local_clusters = LocalClusters::new(&scenario, &tls.config, time::now_unix())
            .map_err(std::io::Error::other)?;

        let (login_listener, login_url) = bind_loopback().await?;
        let (arm_listener, arm_url) = bind_loopback().await?;
        let adfs_listener = match scenario.federation {
            Some(_) => Some(bind_loopback().await?),
            None => None,
        };
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
            apps: AppState::new(&scenario.service_principals),
            counters: Counters::default(),
            adfs: crate::adfs::AdfsState::new(&scenario),
            token_faults: VecDeque::new(),
            arm_faults: VecDeque::new(),
        };
        let shared = Arc::new(Shared {
            scenario,
            login_url,
            arm_url,
            cluster_urls,
            adfs_url: adfs_listener.as_ref().map(|(_, url)| url.clone()),
            ca_pem: tls.ca_pem,
            key,
            workload_issuer,
            local_clusters,
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
        if let Some((listener, _)) = adfs_listener {
            serve(listener, crate::adfs::router(shared.clone()));
        }
        // Local-account clusters ask for client certificates: their own
        // acceptor, and the certificates go to the handler.
        let mut local = Vec::new();
        for (name, listener) in cluster_listeners {
            match shared.local_clusters.acceptor(&name) {
                Some(acceptor) => local.push((listener, acceptor, name)),
                None => serve(listener, apiserver::router(shared.clone(), name)),
            }
        }
        for (listener, acceptor, name) in local {
            let router = apiserver::router(shared.clone(), name);
            let stop = shutdown.subscribe();
            tasks.push(local_accounts::serve(listener, acceptor, router, stop));
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
        if let Some(local) = self.shared.local_clusters.get(cluster) {
            return Some(local_accounts::kubeconfig(
                spec,
                server,
                &self.shared.ca_pem,
                &local.credential,
            ));
        }
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

    /// A valid app-only access token as the client credentials grant would
    /// issue it to service principal `client_id` for `resource`, without a
    /// sign-in and without touching counters. `None` for a client that is
    /// not a service principal of the scenario.
    pub fn issue_app_token(&self, client_id: &str, resource: &str) -> Option<String> {
        let sp = self.shared.scenario.service_principal(client_id)?;
        let claims = client_credentials::app_token_claims(
            &self.shared,
            &sp.client_id,
            resource,
            "1",
            time::now_unix(),
        );
        Some(self.shared.key.sign(&claims))
    }

    /// A federated token from the scenario's first federated credential's
    /// issuer (else [`standard::WORKLOAD_ISSUER`](crate::standard::WORKLOAD_ISSUER)),
    /// as kubelet projects it into a pod: what a test writes into the
    /// workload identity token file. Valid from now for `lifetime`.
    pub fn issue_federated_token(
        &self,
        subject: &str,
        audience: &str,
        lifetime: Duration,
    ) -> String {
        let issuer = self
            .shared
            .scenario
            .service_principals
            .iter()
            .find_map(|sp| sp.federated.as_ref())
            .map_or(crate::scenario::standard::WORKLOAD_ISSUER, |f| {
                f.issuer.as_str()
            });
        self.issue_federated_token_from(issuer, subject, audience, lifetime)
    }

    /// A federated token from any issuer: the emulator signs for every
    /// external issuer with the same test key.
    pub fn issue_federated_token_from(
        &self,
        issuer: &str,
        subject: &str,
        audience: &str,
        lifetime: Duration,
    ) -> String {
        self.shared
            .workload_issuer
            .issue(issuer, subject, audience, lifetime, time::now_unix())
    }

    /// The JWKS of the external issuers (what Entra fetches to check
    /// federated tokens).
    pub fn federated_issuer_jwks(&self) -> serde_json::Value {
        self.shared.workload_issuer.jwks()
    }

    /// Replaces a service principal's client secret (the old one then gets
    /// AADSTS7000215) and clears its expiry. Returns false for an unknown
    /// service principal.
    pub fn set_client_secret(&self, client_id: &str, secret: &str) -> bool {
        if self.shared.scenario.service_principal(client_id).is_none() {
            return false;
        }
        self.shared.state().apps.set_secret(client_id, secret);
        true
    }

    /// The service principal's secret expires: the right secret now gets
    /// AADSTS7000222. Returns false for an unknown service principal.
    pub fn expire_client_secret(&self, client_id: &str) -> bool {
        if self.shared.scenario.service_principal(client_id).is_none() {
            return false;
        }
        self.shared.state().apps.expire_secret(client_id);
        true
    }

    /// The service principal's registered certificate expires: its client
    /// assertions now get AADSTS700027 ("The key used is expired").
    /// Returns false for an unknown service principal.
    pub fn expire_certificate(&self, client_id: &str) -> bool {
        if self.shared.scenario.service_principal(client_id).is_none() {
            return false;
        }
        self.shared.state().apps.expire_certificate(client_id);
        true
    }

    /// Whether a repeated certificate assertion (`jti` seen before) is
    /// refused (the default, stricter than Entra) or only counted (as Entra
    /// behaves).
    pub fn set_assertion_replay_check(&self, refuse: bool) {
        self.shared.state().apps.replay_check = refuse;
    }

    /// The client certificate and key of a local-account cluster (what its
    /// kubeconfig carries). `None` for other clusters.
    pub fn local_account_credential(&self, cluster: &str) -> Option<LocalAccountCredential> {
        Some(self.shared.local_clusters.get(cluster)?.credential.clone())
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
