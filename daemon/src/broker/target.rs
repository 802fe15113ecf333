//! Where a cluster is and which token it takes: from ARM, from a kubeconfig
//! the user already has, or from the config itself.

use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use super::backoff::Backoff;

use super::{Broker, BrokerError, Token, TokenKey, TokenSlot};
use crate::aks::kubeconfig::{
    AadParams, ClusterAccess, ClusterAuth, aad_resource, parse_skeleton, token_endpoint,
};
use crate::config::{Cluster, ClusterSource};
use crate::entra::assertion::pem_not_after;

/// The largest kubeconfig or CA file read from disk.
const MAX_FILE: u64 = 1 << 20;

pub struct ClusterTarget {
    pub server: String,
    pub ca_pem: Option<Vec<u8>>,
    pub access: Access,
}

/// What the cluster's API server accepts.
pub enum Access {
    /// An Entra ID token, shared through its slot.
    Token(Arc<TokenSlot>),
    /// A local account's client certificate, until its `notAfter`.
    Certificate(Arc<Token>),
}

impl ClusterTarget {
    pub fn slot(&self) -> Option<&Arc<TokenSlot>> {
        match &self.access {
            Access::Token(slot) => Some(slot),
            Access::Certificate(_) => None,
        }
    }

    /// The credential held now, without fetching.
    pub fn current(&self) -> Option<Arc<Token>> {
        match &self.access {
            Access::Token(slot) => slot.current(),
            Access::Certificate(t) => Some(t.clone()),
        }
    }
}

pub struct ClusterState {
    pub cfg: Cluster,
    /// Held while discovering, so concurrent first requests make one ARM call.
    pub discover: tokio::sync::Mutex<()>,
    target: Mutex<Option<Arc<ClusterTarget>>>,
    backoff: Mutex<Backoff>,
}

impl ClusterState {
    pub fn new(cfg: Cluster) -> Self {
        ClusterState {
            cfg,
            discover: tokio::sync::Mutex::new(()),
            target: Mutex::new(None),
            backoff: Mutex::new(Backoff::default()),
        }
    }

    pub fn target(&self) -> Option<Arc<ClusterTarget>> {
        self.target
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Forgets the discovered target (a client certificate expired), so the
    /// next request discovers the cluster again.
    pub fn forget_target(&self) {
        *self.target.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    pub fn set_target(&self, t: Arc<ClusterTarget>) {
        *self.target.lock().unwrap_or_else(|p| p.into_inner()) = Some(t);
        self.clear_error();
    }

    fn backoff(&self) -> std::sync::MutexGuard<'_, Backoff> {
        self.backoff.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records a failed discovery. Every failure backs off (not only
    /// transient ones): a broken kubeconfig or an ARM refusal is not fixed
    /// by asking again on every kubectl command.
    pub fn set_error(&self, e: &BrokerError, now: SystemTime) {
        let api = e.to_api().1;
        let retry_after = e.retry_after();
        self.backoff()
            .fail(now, retry_after, (api.message, api.hint));
    }

    pub fn clear_error(&self) {
        self.backoff().succeed();
    }

    pub fn last_error(&self) -> Option<(String, String)> {
        self.backoff().last_error.clone()
    }

    pub fn retry_at(&self) -> Option<SystemTime> {
        self.backoff().next_attempt()
    }

    pub fn wait_until(&self, now: SystemTime) -> Option<SystemTime> {
        self.backoff().wait_until(now)
    }
}

fn read_small(path: &std::path::Path, cluster: &str, what: &str) -> Result<Vec<u8>, BrokerError> {
    use std::io::Read;
    let fail = |message: String, hint: &str| BrokerError::Discovery {
        cluster: cluster.to_string(),
        message,
        hint: hint.to_string(),
    };
    let file = std::fs::File::open(path).map_err(|e| {
        fail(
            format!("cannot read the {what} {}: {e}", path.display()),
            "check the path in the config",
        )
    })?;
    let mut bytes = Vec::new();
    file.take(MAX_FILE + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| {
            fail(
                format!("cannot read the {what} {}: {e}", path.display()),
                "check the file",
            )
        })?;
    if bytes.len() as u64 > MAX_FILE {
        return Err(fail(
            format!("the {what} {} is larger than 1 MiB", path.display()),
            "point the config at the right file",
        ));
    }
    Ok(bytes)
}

pub(super) async fn discover(broker: &Broker, cfg: &Cluster) -> Result<ClusterTarget, BrokerError> {
    let identity = broker.identity_config(&cfg.identity)?.clone();
    let (server, ca_pem, auth) = match &cfg.source {
        ClusterSource::Arm {
            subscription,
            resource_group,
            name,
            server_fqdn,
        } => {
            let arm = broker.arm_token(&cfg.identity).await?;
            let access = crate::aks::arm::list_cluster_user_credential(
                broker.http(),
                &identity.cloud,
                arm.access_token(),
                subscription,
                resource_group,
                name,
                None,
                server_fqdn.as_deref(),
            )
            .await
            .map_err(|source| BrokerError::Arm {
                cluster: cfg.name.clone(),
                source,
            })?;
            let ca = access_ca(&access, None, &cfg.name)?;
            (access.server, ca, access.auth)
        }
        ClusterSource::Kubeconfig { path, context } => {
            let bytes = read_small(path, &cfg.name, "kubeconfig")?;
            let access =
                parse_skeleton(&bytes, context.as_deref()).map_err(|e| BrokerError::Discovery {
                    cluster: cfg.name.clone(),
                    message: format!("{}: {e}", path.display()),
                    hint: "use the kubeconfig that `az aks get-credentials` wrote for this cluster"
                        .into(),
                })?;
            let ca = access_ca(&access, path.parent(), &cfg.name)?;
            (access.server, ca, access.auth)
        }
        ClusterSource::Explicit {
            server,
            ca_file,
            server_id,
            client_id,
            tenant,
            legacy,
        } => (
            server.clone(),
            match ca_file {
                Some(p) => Some(read_small(p, &cfg.name, "CA file")?),
                None => None,
            },
            ClusterAuth::Aad(AadParams {
                server_id: server_id.clone(),
                client_id: client_id.clone(),
                tenant_id: tenant.clone(),
                environment: None,
                legacy: *legacy,
            }),
        ),
    };
    let access = match auth {
        ClusterAuth::Aad(auth) => {
            // An application signs in as itself for every resource; a user
            // through the public client the cluster's kubeconfig names.
            let client_id = if identity.is_user() {
                auth.client_id.clone()
            } else {
                identity.client_id.clone()
            };
            Access::Token(
                broker.slot(
                    TokenKey {
                        cloud: identity.cloud.name.clone(),
                        tenant: auth
                            .tenant_id
                            .clone()
                            .unwrap_or_else(|| identity.tenant.clone()),
                        identity: identity.name.clone(),
                        client_id,
                        resource: aad_resource(&auth),
                    },
                    token_endpoint(&auth),
                    true,
                ),
            )
        }
        ClusterAuth::ClientCertificate { cert_pem, key_pem } => {
            let not_after =
                pem_not_after(cert_pem.as_bytes()).map_err(|e| BrokerError::Discovery {
                    cluster: cfg.name.clone(),
                    message: format!("the local account's client certificate cannot be read: {e}"),
                    hint: "this is not what AKS returns; check arm_endpoint".into(),
                })?;
            let now = broker.now();
            if not_after <= now {
                return Err(BrokerError::Discovery {
                    cluster: cfg.name.clone(),
                    message: format!("the local account's client certificate expired at {}", crate::clock::rfc3339(not_after)),
                    hint: "rotate the cluster's certificates (az aks rotate-certs) or fetch a new kubeconfig".into(),
                });
            }
            Access::Certificate(Arc::new(Token::client_certificate(
                &cert_pem, &key_pem, now, not_after,
            )))
        }
    };
    Ok(ClusterTarget {
        server,
        ca_pem,
        access,
    })
}

/// The cluster's CA: inline data, or a file named by a user's kubeconfig
/// (relative to that file). ARM answers never name files: a `file` there
/// is refused rather than read from this machine.
fn access_ca(
    access: &ClusterAccess,
    kubeconfig_dir: Option<&std::path::Path>,
    cluster: &str,
) -> Result<Option<Vec<u8>>, BrokerError> {
    if access.insecure_skip_tls_verify {
        return Err(BrokerError::Discovery {
            cluster: cluster.to_string(),
            message: "the kubeconfig turns off TLS verification (insecure-skip-tls-verify)".into(),
            hint: "give the cluster's CA instead; akscred never writes a kubeconfig that skips verification".into(),
        });
    }
    if let Some(pem) = &access.ca_pem {
        return Ok(Some(pem.clone()));
    }
    match (&access.ca_file, kubeconfig_dir) {
        (Some(file), Some(dir)) => Ok(Some(read_small(&dir.join(file), cluster, "CA file")?)),
        (Some(file), None) => Err(BrokerError::Discovery {
            cluster: cluster.to_string(),
            message: format!(
                "ARM's kubeconfig names a CA file ({}) instead of carrying the CA",
                file.display()
            ),
            hint: "this is not what AKS returns; check arm_endpoint".into(),
        }),
        (None, _) => Ok(None),
    }
}
