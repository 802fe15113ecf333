//! Reading what akscred needs out of an AKS kubeconfig (PROTOCOLS.md 6):
//! the API server, its CA, and the Entra ID parameters of the user, in
//! either shape AKS writes (`auth-provider: azure` or `exec: kubelogin`).
//!
//! The input is untrusted (it comes from ARM, or from a file a user points
//! at), so the YAML parser runs with tight budgets: a kubeconfig is a few
//! KiB, and alias expansion ("billion laughs") stops long before it costs
//! memory. Secret-bearing fields a kubeconfig may hold (client keys, static
//! tokens, cached tokens of the old azure provider) are skipped unread.

use std::path::PathBuf;

use base64::Engine as _;
use serde::Deserialize;
use serde::de::IgnoredAny;

use crate::entra::Endpoint;
use crate::secret::Secret;

/// The public client AKS-managed Entra ID clusters use in every cloud
/// (PROTOCOLS.md, Clouds).
pub const AKS_CLIENT_ID: &str = "80faf920-1908-4b52-b5ef-a8e7bedfc67a";

/// Far above any real kubeconfig; checked before parsing.
pub const MAX_KUBECONFIG: usize = 4 * 1024 * 1024;

/// How to reach one cluster and whom to ask for its token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterAccess {
    /// The context chosen; `None` when the kubeconfig had no contexts and a
    /// single cluster and user.
    pub context: Option<String>,
    pub cluster_name: String,
    pub user_name: String,
    pub server: String,
    /// Decoded `certificate-authority-data` (PEM).
    pub ca_pem: Option<Vec<u8>>,
    /// `certificate-authority`: a file path, not read here. Relative paths
    /// are relative to the kubeconfig's directory, which only the caller
    /// knows.
    pub ca_file: Option<PathBuf>,
    pub tls_server_name: Option<String>,
    pub insecure_skip_tls_verify: bool,
    pub auth: ClusterAuth,
}

/// How the kubeconfig's user proves itself to the API server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClusterAuth {
    /// An Entra ID token (auth-provider azure, or kubelogin).
    Aad(AadParams),
    /// A local account: the client certificate (PEM) and its key (PEM),
    /// as `listClusterUserCredential` returns them for clusters without
    /// Entra ID integration.
    ClientCertificate { cert_pem: String, key_pem: Secret },
}

impl ClusterAuth {
    pub fn aad(&self) -> Option<&AadParams> {
        match self {
            ClusterAuth::Aad(p) => Some(p),
            ClusterAuth::ClientCertificate { .. } => None,
        }
    }
}

/// The Entra ID parameters of a kubeconfig user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AadParams {
    /// The API server's application id (`apiserver-id`, `--server-id`).
    pub server_id: String,
    /// The public client to sign in with (`client-id`, `--client-id`).
    pub client_id: String,
    /// `None` when the kubeconfig names no tenant (kubelogin's `azurecli`
    /// mode): use the identity's tenant.
    pub tenant_id: Option<String>,
    /// `environment` / `--environment`, a cloud name such as
    /// `AzurePublicCloud`; `None` when not given.
    pub environment: Option<String>,
    /// Legacy (customer-created apps) Entra integration: the token audience
    /// is `spn:<server id>`.
    pub legacy: bool,
}

impl AadParams {
    /// The v1 resource of the API server token.
    pub fn resource(&self) -> String {
        if self.legacy {
            format!("spn:{}", self.server_id)
        } else {
            self.server_id.clone()
        }
    }

    /// Which token endpoint gets the API server token. Legacy clusters take
    /// the v1 endpoint (the `spn:` audience is a v1 notion); AKS-managed ones
    /// work with v2.
    pub fn endpoint(&self) -> Endpoint {
        if self.legacy {
            Endpoint::V1
        } else {
            Endpoint::V2
        }
    }
}

/// See [`AadParams::resource`].
pub fn aad_resource(params: &AadParams) -> String {
    params.resource()
}

/// See [`AadParams::endpoint`].
pub fn token_endpoint(params: &AadParams) -> Endpoint {
    params.endpoint()
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KubeconfigError {
    #[error("the kubeconfig is {len} bytes, more than the {limit} accepted")]
    TooLarge { len: usize, limit: usize },
    #[error("the kubeconfig is not valid YAML: {0}")]
    Yaml(String),
    #[error("the kubeconfig defines no contexts, clusters or users")]
    Empty,
    #[error("the kubeconfig {0}")]
    Incomplete(&'static str),
    #[error("the kubeconfig has no context named {name:?} (it has: {available}); fix `context =`")]
    UnknownContext { name: String, available: String },
    #[error(
        "the kubeconfig has several contexts ({available}) and no current-context; set `context =` to one of them"
    )]
    AmbiguousContext { available: String },
    #[error("context {context:?} names cluster {cluster:?}, which the kubeconfig does not define")]
    MissingCluster { context: String, cluster: String },
    #[error("context {context:?} names user {user:?}, which the kubeconfig does not define")]
    MissingUser { context: String, user: String },
    #[error("{path} is missing; {todo}")]
    Missing { path: String, todo: &'static str },
    #[error("{path} is not valid: {reason}")]
    Invalid { path: String, reason: String },
    #[error(
        "user {user:?} signs in with a client certificate (a local account): the cluster has no Entra ID integration, which akscred does not support yet; enable Entra ID on the cluster"
    )]
    NoEntraId { user: String },
    #[error(
        "user {user:?} {what}: akscred handles Entra ID users only (auth-provider azure, or exec kubelogin)"
    )]
    Unsupported { user: String, what: String },
}

const REDOWNLOAD: &str = "the kubeconfig is incomplete: fetch it again (az aks get-credentials) or let akscred fetch it from ARM";

#[derive(Deserialize)]
struct Kubeconfig {
    clusters: Option<Vec<NamedCluster>>,
    contexts: Option<Vec<NamedContext>>,
    users: Option<Vec<NamedUser>>,
    #[serde(rename = "current-context")]
    current_context: Option<String>,
}

#[derive(Deserialize)]
struct NamedCluster {
    name: Option<String>,
    cluster: Option<ClusterEntry>,
}

#[derive(Deserialize)]
struct ClusterEntry {
    server: Option<String>,
    #[serde(rename = "certificate-authority-data")]
    ca_data: Option<String>,
    #[serde(rename = "certificate-authority")]
    ca_file: Option<String>,
    #[serde(rename = "insecure-skip-tls-verify")]
    insecure: Option<bool>,
    #[serde(rename = "tls-server-name")]
    tls_server_name: Option<String>,
}

#[derive(Deserialize)]
struct NamedContext {
    name: Option<String>,
    context: Option<ContextEntry>,
}

#[derive(Deserialize)]
struct ContextEntry {
    cluster: Option<String>,
    user: Option<String>,
}

#[derive(Deserialize)]
struct NamedUser {
    name: Option<String>,
    user: Option<UserEntry>,
}

/// Only presence is recorded for fields that hold secrets.
#[derive(Deserialize)]
struct UserEntry {
    #[serde(rename = "auth-provider")]
    auth_provider: Option<AuthProvider>,
    exec: Option<ExecConfig>,
    #[serde(rename = "client-certificate-data")]
    client_certificate_data: Option<String>,
    #[serde(rename = "client-key-data")]
    client_key_data: Option<Secret>,
    #[serde(rename = "client-certificate")]
    client_certificate: Option<IgnoredAny>,
    token: Option<IgnoredAny>,
    #[serde(rename = "tokenFile")]
    token_file: Option<IgnoredAny>,
    username: Option<IgnoredAny>,
}

#[derive(Deserialize)]
struct AuthProvider {
    name: Option<String>,
    config: Option<AzureConfig>,
}

/// The azure provider also caches `access-token` and `refresh-token` here;
/// they are not read.
#[derive(Deserialize)]
struct AzureConfig {
    #[serde(rename = "apiserver-id")]
    apiserver_id: Option<String>,
    #[serde(rename = "client-id")]
    client_id: Option<String>,
    #[serde(rename = "tenant-id")]
    tenant_id: Option<String>,
    environment: Option<String>,
    #[serde(rename = "config-mode")]
    config_mode: Option<String>,
}

#[derive(Deserialize)]
struct ExecConfig {
    command: Option<String>,
    args: Option<Vec<String>>,
}

fn yaml_options() -> serde_saphyr::Options {
    serde_saphyr::options! {
        budget: serde_saphyr::budget! {
            max_events: 200_000,
            max_aliases: 1_000,
            max_anchors: 1_000,
            max_depth: 32,
            max_documents: 1,
            max_nodes: 100_000,
            max_total_scalar_bytes: MAX_KUBECONFIG,
            max_recorded_anchor_events: 50_000,
            max_recorded_anchor_bytes: 1024 * 1024,
            max_merge_keys: 1_000,
        },
        alias_limits: serde_saphyr::alias_limits! {
            max_total_replayed_events: 50_000,
            max_replay_stack_depth: 16,
        },
        // A snippet would quote the input, and the input may hold keys.
        with_snippet: false,
    }
}

fn parse_yaml(yaml: &[u8]) -> Result<Kubeconfig, KubeconfigError> {
    if yaml.len() > MAX_KUBECONFIG {
        return Err(KubeconfigError::TooLarge {
            len: yaml.len(),
            limit: MAX_KUBECONFIG,
        });
    }
    serde_saphyr::from_slice_with_options(yaml, yaml_options()).map_err(|e| {
        let options = serde_saphyr::render_options! {
            formatter: &serde_saphyr::UserMessageFormatter,
            snippets: serde_saphyr::SnippetMode::Off,
        };
        KubeconfigError::Yaml(e.render_with_options(options))
    })
}

fn non_empty(s: Option<String>) -> Option<String> {
    s.map(|s| s.trim().to_string()).filter(|s| !s.is_empty())
}

fn names<'a>(names: impl Iterator<Item = &'a Option<String>>) -> String {
    let list: Vec<&str> = names.filter_map(|n| n.as_deref()).collect();
    if list.is_empty() {
        "none".into()
    } else {
        list.join(", ")
    }
}

/// Reads the kubeconfig AKS returns, or one a user already has.
///
/// The context is `context` when given, else `current-context`, else the
/// only context; a kubeconfig without contexts but with exactly one cluster
/// and one user is taken as is.
pub fn parse_skeleton(
    yaml: &[u8],
    context: Option<&str>,
) -> Result<ClusterAccess, KubeconfigError> {
    let config = parse_yaml(yaml)?;
    let clusters = config.clusters.unwrap_or_default();
    let contexts = config.contexts.unwrap_or_default();
    let users = config.users.unwrap_or_default();
    let available = || names(contexts.iter().map(|c| &c.name));
    let find_context = |name: &str| {
        contexts
            .iter()
            .find(|c| c.name.as_deref() == Some(name))
            .ok_or_else(|| KubeconfigError::UnknownContext {
                name: name.to_string(),
                available: available(),
            })
    };
    let wanted = context
        .map(str::to_string)
        .or_else(|| non_empty(config.current_context));
    let chosen = match (wanted, contexts.as_slice()) {
        (Some(name), _) => Some(find_context(&name)?),
        (None, [only]) => Some(only),
        (None, []) => None,
        (None, _) => {
            return Err(KubeconfigError::AmbiguousContext {
                available: available(),
            });
        }
    };

    let (context_name, cluster, user) = match chosen {
        Some(ctx) => {
            let name = ctx.name.clone().unwrap_or_default();
            let entry = ctx.context.as_ref();
            let cluster_name = entry.and_then(|e| e.cluster.clone()).unwrap_or_default();
            let user_name = entry.and_then(|e| e.user.clone()).unwrap_or_default();
            let cluster = clusters
                .iter()
                .find(|c| c.name.as_deref() == Some(cluster_name.as_str()))
                .ok_or_else(|| KubeconfigError::MissingCluster {
                    context: name.clone(),
                    cluster: cluster_name,
                })?;
            let user = users
                .iter()
                .find(|u| u.name.as_deref() == Some(user_name.as_str()))
                .ok_or_else(|| KubeconfigError::MissingUser {
                    context: name.clone(),
                    user: user_name,
                })?;
            (Some(name), cluster, user)
        }
        None => match (clusters.as_slice(), users.as_slice()) {
            ([cluster], [user]) => (None, cluster, user),
            ([], []) => return Err(KubeconfigError::Empty),
            ([], _) => return Err(KubeconfigError::Incomplete("defines no clusters")),
            (_, []) => return Err(KubeconfigError::Incomplete("defines no users")),
            _ => {
                return Err(KubeconfigError::Incomplete(
                    "has several clusters or users but no contexts to pair them; add contexts and set `context =`",
                ));
            }
        },
    };

    let cluster_name = cluster.name.clone().unwrap_or_default();
    let user_name = user.name.clone().unwrap_or_default();
    let cpath = format!("clusters[{cluster_name}].cluster");
    let entry = cluster
        .cluster
        .as_ref()
        .ok_or_else(|| KubeconfigError::Missing {
            path: cpath.clone(),
            todo: REDOWNLOAD,
        })?;
    let server = non_empty(entry.server.clone()).ok_or_else(|| KubeconfigError::Missing {
        path: format!("{cpath}.server"),
        todo: REDOWNLOAD,
    })?;
    url::Url::parse(&server).map_err(|e| KubeconfigError::Invalid {
        path: format!("{cpath}.server"),
        reason: format!("{server:?} is not a URL ({e})"),
    })?;
    let ca_pem = entry
        .ca_data
        .as_deref()
        .map(|data| decode_ca(data, &format!("{cpath}.certificate-authority-data")))
        .transpose()?;
    let auth = user_auth(user, &user_name)?;
    Ok(ClusterAccess {
        context: context_name,
        cluster_name,
        user_name,
        server,
        ca_pem,
        ca_file: non_empty(entry.ca_file.clone()).map(PathBuf::from),
        tls_server_name: non_empty(entry.tls_server_name.clone()),
        insecure_skip_tls_verify: entry.insecure.unwrap_or(false),
        auth,
    })
}

fn decode_ca(data: &str, path: &str) -> Result<Vec<u8>, KubeconfigError> {
    let compact: String = data.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    let pem = base64::engine::general_purpose::STANDARD
        .decode(compact)
        .map_err(|e| KubeconfigError::Invalid {
            path: path.to_string(),
            reason: format!("not base64 ({e})"),
        })?;
    if !pem
        .windows(b"-----BEGIN CERTIFICATE-----".len())
        .any(|w| w == b"-----BEGIN CERTIFICATE-----")
    {
        return Err(KubeconfigError::Invalid {
            path: path.to_string(),
            reason: "the decoded data holds no PEM certificate".into(),
        });
    }
    Ok(pem)
}

fn user_auth(user: &NamedUser, name: &str) -> Result<ClusterAuth, KubeconfigError> {
    let entry = user.user.as_ref();
    if let Some(entry) = entry
        && entry.auth_provider.is_none()
        && entry.exec.is_none()
        && let (Some(cert), Some(key)) = (&entry.client_certificate_data, &entry.client_key_data)
    {
        let cert_path = format!("users[{name}].client-certificate-data");
        let cert_pem = decode_pem(cert, &cert_path, "CERTIFICATE")?;
        let key_path = format!("users[{name}].client-key-data");
        let key_pem = decode_pem(key.expose(), &key_path, "PRIVATE KEY")?;
        return Ok(ClusterAuth::ClientCertificate {
            cert_pem: String::from_utf8(cert_pem).map_err(|_| KubeconfigError::Invalid {
                path: cert_path,
                reason: "not text".into(),
            })?,
            key_pem: Secret::new(String::from_utf8(key_pem).map_err(|_| {
                KubeconfigError::Invalid {
                    path: key_path,
                    reason: "not text".into(),
                }
            })?),
        });
    }
    aad_params(user, name).map(ClusterAuth::Aad)
}

/// Base64 of a PEM block whose BEGIN line contains `kind`. The decoded key
/// is zeroized when dropped; errors never quote the data.
fn decode_pem(data: &str, path: &str, kind: &str) -> Result<Vec<u8>, KubeconfigError> {
    let compact: zeroize::Zeroizing<String> =
        zeroize::Zeroizing::new(data.chars().filter(|c| !c.is_ascii_whitespace()).collect());
    let pem = zeroize::Zeroizing::new(
        base64::engine::general_purpose::STANDARD
            .decode(compact.as_bytes())
            .map_err(|_| KubeconfigError::Invalid {
                path: path.to_string(),
                reason: "not base64".into(),
            })?,
    );
    let begin = b"-----BEGIN ";
    let is_pem = pem.windows(begin.len()).any(|w| w == begin)
        && pem.windows(kind.len()).any(|w| w == kind.as_bytes());
    if !is_pem {
        return Err(KubeconfigError::Invalid {
            path: path.to_string(),
            reason: format!("the decoded data holds no PEM {}", kind.to_lowercase()),
        });
    }
    Ok(pem.to_vec())
}

fn aad_params(user: &NamedUser, name: &str) -> Result<AadParams, KubeconfigError> {
    let unsupported = |what: &str| KubeconfigError::Unsupported {
        user: name.to_string(),
        what: what.to_string(),
    };
    let entry = user.user.as_ref().ok_or_else(|| KubeconfigError::Missing {
        path: format!("users[{name}].user"),
        todo: REDOWNLOAD,
    })?;
    if let Some(provider) = &entry.auth_provider {
        let kind = provider.name.as_deref().unwrap_or_default();
        if !kind.eq_ignore_ascii_case("azure") {
            return Err(unsupported(&format!("uses the auth-provider {kind:?}")));
        }
        return azure_provider(provider, name);
    }
    if let Some(exec) = &entry.exec {
        let command = exec.command.as_deref().unwrap_or_default();
        if !is_kubelogin(command) {
            return Err(unsupported(&format!(
                "runs the credential plugin {command:?}"
            )));
        }
        return kubelogin(exec.args.as_deref().unwrap_or_default(), name);
    }
    if entry.client_certificate_data.is_some() || entry.client_certificate.is_some() {
        return Err(KubeconfigError::NoEntraId {
            user: name.to_string(),
        });
    }
    if entry.token.is_some() || entry.token_file.is_some() {
        return Err(unsupported("uses a static token"));
    }
    if entry.username.is_some() {
        return Err(unsupported("uses basic authentication"));
    }
    Err(unsupported("has no credentials"))
}

fn azure_provider(provider: &AuthProvider, name: &str) -> Result<AadParams, KubeconfigError> {
    let path = format!("users[{name}].auth-provider.config");
    let config = provider
        .config
        .as_ref()
        .ok_or_else(|| KubeconfigError::Missing {
            path: path.clone(),
            todo: REDOWNLOAD,
        })?;
    let server_id =
        non_empty(config.apiserver_id.clone()).ok_or_else(|| KubeconfigError::Missing {
            path: format!("{path}.apiserver-id"),
            todo: REDOWNLOAD,
        })?;
    // As client-go's azure provider and kubelogin: only an absent, empty or
    // "0" config-mode means legacy.
    let legacy = matches!(
        non_empty(config.config_mode.clone()).as_deref(),
        None | Some("0")
    );
    let client_id = client_id(non_empty(config.client_id.clone()), legacy, || {
        format!("{path}.client-id")
    })?;
    Ok(AadParams {
        server_id,
        client_id,
        tenant_id: non_empty(config.tenant_id.clone()),
        environment: non_empty(config.environment.clone()),
        legacy,
    })
}

/// AKS-managed clusters all share one public client, so a kubeconfig that
/// omits it (kubelogin's `azurecli` mode) still works; a legacy cluster's
/// client is the customer's own and cannot be guessed.
fn client_id(
    given: Option<String>,
    legacy: bool,
    path: impl FnOnce() -> String,
) -> Result<String, KubeconfigError> {
    match given {
        Some(id) => Ok(id),
        None if !legacy => Ok(AKS_CLIENT_ID.to_string()),
        None => Err(KubeconfigError::Missing {
            path: path(),
            todo: "a legacy Entra ID cluster names its own client application; fetch the kubeconfig again or set client_id",
        }),
    }
}

/// `kubelogin`, a path ending in it, or `kubelogin.exe`.
fn is_kubelogin(command: &str) -> bool {
    let base = command.rsplit(['/', '\\']).next().unwrap_or(command);
    base.eq_ignore_ascii_case("kubelogin") || base.eq_ignore_ascii_case("kubelogin.exe")
}

/// The value of a kubelogin flag, pflag style: `--name value`, `--name=value`,
/// and for a shorthand also `-t value`, `-t=value`, `-tvalue`. The last one
/// wins.
fn flag_value(args: &[String], long: &str, short: Option<char>) -> Option<String> {
    let long = format!("--{long}");
    let short = short.map(|c| format!("-{c}"));
    let mut found = None;
    let mut i = 0;
    while i < args.len() {
        let arg = args[i].as_str();
        let names = std::iter::once(long.as_str()).chain(short.as_deref());
        for name in names {
            if arg == name {
                found = args.get(i + 1).cloned();
                i += 1;
                break;
            }
            if let Some(rest) = arg.strip_prefix(name) {
                if let Some(value) = rest.strip_prefix('=') {
                    found = Some(value.to_string());
                    break;
                }
                // `-tvalue`; `--server-idx` is some other long flag.
                if !name.starts_with("--") && !rest.is_empty() {
                    found = Some(rest.to_string());
                    break;
                }
            }
        }
        i += 1;
    }
    found
}

/// A pflag boolean: `--name` alone, or `--name=<bool>`. The last one wins.
fn flag_bool(args: &[String], long: &str) -> Result<bool, String> {
    let flag = format!("--{long}");
    let mut value = false;
    for arg in args {
        if *arg == flag {
            value = true;
        } else if let Some(v) = arg.strip_prefix(&flag).and_then(|r| r.strip_prefix('=')) {
            value = match v {
                "1" | "t" | "T" | "true" | "TRUE" | "True" => true,
                "0" | "f" | "F" | "false" | "FALSE" | "False" => false,
                other => return Err(format!("{flag}={other} is not a boolean")),
            };
        }
    }
    Ok(value)
}

fn kubelogin(args: &[String], name: &str) -> Result<AadParams, KubeconfigError> {
    let path = format!("users[{name}].exec.args");
    let value = |long: &str, short: Option<char>| non_empty(flag_value(args, long, short));
    let server_id = value("server-id", None).ok_or_else(|| KubeconfigError::Missing {
        path: format!("{path} --server-id"),
        todo: REDOWNLOAD,
    })?;
    let legacy = flag_bool(args, "legacy").map_err(|reason| KubeconfigError::Invalid {
        path: path.clone(),
        reason,
    })?;
    let client_id = client_id(value("client-id", None), legacy, || {
        format!("{path} --client-id")
    })?;
    Ok(AadParams {
        server_id,
        client_id,
        tenant_id: value("tenant-id", Some('t')),
        environment: value("environment", Some('e')),
        legacy,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SERVER_ID: &str = "6dae42f8-4368-4678-94ff-3960e28e3630";
    const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";

    fn testdata(name: &str) -> Vec<u8> {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("src/aks/testdata")
            .join(name);
        std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    fn managed() -> AadParams {
        AadParams {
            server_id: SERVER_ID.into(),
            client_id: AKS_CLIENT_ID.into(),
            tenant_id: Some(TENANT.into()),
            environment: Some("AzurePublicCloud".into()),
            legacy: false,
        }
    }

    #[test]
    fn aks_auth_provider_kubeconfig() {
        let access = parse_skeleton(&testdata("managed-azure.yaml"), None).unwrap();
        assert_eq!(access.context.as_deref(), Some("aks-prod"));
        assert_eq!(access.cluster_name, "aks-prod");
        assert_eq!(access.user_name, "clusterUser_rg-prod_aks-prod");
        assert_eq!(
            access.server,
            "https://aks-prod-dns-5f3b1c2d.hcp.westeurope.azmk8s.io:443"
        );
        let pem = access.ca_pem.unwrap();
        assert!(pem.starts_with(b"-----BEGIN CERTIFICATE-----"));
        assert_eq!(access.ca_file, None);
        assert!(!access.insecure_skip_tls_verify);
        assert_eq!(access.auth, ClusterAuth::Aad(managed()));
        assert_eq!(aad_resource(access.auth.aad().unwrap()), SERVER_ID);
        assert_eq!(token_endpoint(access.auth.aad().unwrap()), Endpoint::V2);
    }

    #[test]
    fn aks_exec_kubeconfig() {
        let access = parse_skeleton(&testdata("managed-exec.yaml"), None).unwrap();
        assert_eq!(access.user_name, "clusterUser_rg-prod_aks-prod");
        assert_eq!(access.auth, ClusterAuth::Aad(managed()));
        assert!(access.ca_pem.is_some());
    }

    #[test]
    fn legacy_auth_provider() {
        let access = parse_skeleton(&testdata("legacy-azure.yaml"), None).unwrap();
        let auth = access.auth.aad().unwrap().clone();
        assert!(auth.legacy);
        assert_eq!(auth.server_id, "2ca4a1b2-0d0b-4a44-9b0c-5b1f3d9c1a11");
        assert_eq!(auth.client_id, "c8f2e3a1-7e8d-4c4b-9d8e-6a1b2c3d4e5f");
        assert_eq!(
            aad_resource(&auth),
            "spn:2ca4a1b2-0d0b-4a44-9b0c-5b1f3d9c1a11"
        );
        assert_eq!(token_endpoint(&auth), Endpoint::V1);
    }

    #[test]
    fn config_mode_variants() {
        let yaml = |mode: &str| {
            format!(
                "users:\n- name: u\n  user:\n    auth-provider:\n      name: azure\n      config:\n        apiserver-id: s\n        client-id: c\n        tenant-id: t\n{mode}clusters:\n- name: c\n  cluster:\n    server: https://x\n"
            )
        };
        let legacy = |mode: &str| {
            parse_skeleton(yaml(mode).as_bytes(), None)
                .unwrap()
                .auth
                .aad()
                .unwrap()
                .legacy
        };
        assert!(legacy(""));
        assert!(legacy("        config-mode: '0'\n"));
        assert!(legacy("        config-mode: \"\"\n"));
        assert!(!legacy("        config-mode: '1'\n"));
        // Written by hand, unquoted.
        assert!(!legacy("        config-mode: 1\n"));
        assert!(legacy("        config-mode: 0\n"));
    }

    fn exec_yaml(command: &str, args: &[&str]) -> String {
        let mut y = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: https://x:443\ncontexts:\n- name: ctx\n  context:\n    cluster: c\n    user: u\ncurrent-context: ctx\nusers:\n- name: u\n  user:\n    exec:\n      apiVersion: client.authentication.k8s.io/v1beta1\n      command: {command}\n      args:\n"
        );
        for a in args {
            y.push_str(&format!("      - \"{a}\"\n"));
        }
        y
    }

    fn exec_auth(command: &str, args: &[&str]) -> Result<AadParams, KubeconfigError> {
        parse_skeleton(exec_yaml(command, args).as_bytes(), None)
            .map(|a| a.auth.aad().cloned().unwrap())
    }

    #[test]
    fn kubelogin_flag_forms() {
        let auth = exec_auth(
            "/usr/local/bin/kubelogin",
            &[
                "get-token",
                "--environment=AzureUSGovernmentCloud",
                "--server-id=s",
                "--client-id=c",
                "--tenant-id=t",
                "--login=devicecode",
            ],
        )
        .unwrap();
        assert_eq!(
            auth,
            AadParams {
                server_id: "s".into(),
                client_id: "c".into(),
                tenant_id: Some("t".into()),
                environment: Some("AzureUSGovernmentCloud".into()),
                legacy: false,
            }
        );
        // Shorthands; the last occurrence wins, as in pflag.
        let auth = exec_auth(
            "kubelogin",
            &[
                "get-token",
                "-e",
                "AzureChinaCloud",
                "-tT1",
                "--server-id",
                "s1",
                "--server-id",
                "s2",
                "-l",
                "azurecli",
            ],
        )
        .unwrap();
        assert_eq!(auth.environment.as_deref(), Some("AzureChinaCloud"));
        assert_eq!(auth.tenant_id.as_deref(), Some("T1"));
        assert_eq!(auth.server_id, "s2");
        // azurecli mode: no client id, so the AKS public client.
        assert_eq!(auth.client_id, AKS_CLIENT_ID);
        let auth = exec_auth(
            "C:\\tools\\kubelogin.exe",
            &["get-token", "--server-id", "s", "-t=x"],
        )
        .unwrap();
        assert_eq!(auth.tenant_id.as_deref(), Some("x"));
        assert_eq!(auth.environment, None);
    }

    #[test]
    fn kubelogin_legacy() {
        let args = [
            "get-token",
            "--server-id",
            "s",
            "--client-id",
            "c",
            "--tenant-id",
            "t",
            "--legacy",
        ];
        let auth = exec_auth("kubelogin", &args).unwrap();
        assert!(auth.legacy);
        assert_eq!(aad_resource(&auth), "spn:s");
        assert_eq!(token_endpoint(&auth), Endpoint::V1);
        let auth = exec_auth(
            "kubelogin",
            &["get-token", "--server-id", "s", "--legacy=false"],
        )
        .unwrap();
        assert!(!auth.legacy);
        let err = exec_auth(
            "kubelogin",
            &["get-token", "--server-id", "s", "--legacy=maybe"],
        )
        .unwrap_err();
        assert!(err.to_string().contains("--legacy=maybe"), "{err}");
        // A legacy cluster's client cannot be guessed.
        let err =
            exec_auth("kubelogin", &["get-token", "--server-id", "s", "--legacy"]).unwrap_err();
        assert!(err.to_string().contains("--client-id"), "{err}");
    }

    #[test]
    fn missing_fields_are_named() {
        let err = exec_auth("kubelogin", &["get-token", "--client-id", "c"]).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("users[u].exec.args --server-id is missing; {REDOWNLOAD}")
        );
        // `--server-id` as the last argument has no value.
        assert!(exec_auth("kubelogin", &["get-token", "--server-id"]).is_err());

        let yaml = String::from_utf8(testdata("managed-azure.yaml"))
            .unwrap()
            .replace(
                "        apiserver-id: 6dae42f8-4368-4678-94ff-3960e28e3630\n",
                "",
            );
        let err = parse_skeleton(yaml.as_bytes(), None).unwrap_err();
        assert!(
            err.to_string().starts_with(
                "users[clusterUser_rg-prod_aks-prod].auth-provider.config.apiserver-id is missing"
            ),
            "{err}"
        );
        let yaml = String::from_utf8(testdata("managed-azure.yaml"))
            .unwrap()
            .replace(
                "    server: https://aks-prod-dns-5f3b1c2d.hcp.westeurope.azmk8s.io:443\n",
                "",
            );
        let err = parse_skeleton(yaml.as_bytes(), None).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("clusters[aks-prod].cluster.server is missing"),
            "{err}"
        );
    }

    #[test]
    fn local_account_client_certificate() {
        // The test file's certificate data is not PEM: refused, and neither
        // the key nor the token appears in the error.
        let err = parse_skeleton(&testdata("local-account.yaml"), None).unwrap_err();
        assert!(
            matches!(&err, KubeconfigError::Invalid { path, .. } if path.ends_with("client-certificate-data")),
            "{err}"
        );
        assert!(!format!("{err:?}").contains("c2VjcmV0"));
        use base64::Engine;
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        let cert = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
        let key = "-----BEGIN RSA PRIVATE KEY-----\nMIIE\n-----END RSA PRIVATE KEY-----\n";
        let yaml = format!(
            "clusters:\n- name: c\n  cluster:\n    server: https://x\nusers:\n- name: u\n  user:\n    client-certificate-data: {}\n    client-key-data: {}\n",
            b64(cert),
            b64(key)
        );
        let a = parse_skeleton(yaml.as_bytes(), None).unwrap();
        match &a.auth {
            ClusterAuth::ClientCertificate { cert_pem, key_pem } => {
                assert_eq!(cert_pem, cert);
                assert_eq!(key_pem.expose(), key);
            }
            other => panic!("{other:?}"),
        }
        assert!(!format!("{a:?}").contains("MIIE"), "the key never prints");
    }

    #[test]
    fn other_plugins_are_refused() {
        let err = exec_auth("gke-gcloud-auth-plugin", &[]).unwrap_err();
        assert!(matches!(err, KubeconfigError::Unsupported { .. }), "{err}");
        assert!(err.to_string().contains("gke-gcloud-auth-plugin"));
        let err = exec_auth("/opt/not-kubelogin-really", &["--server-id", "s"]).unwrap_err();
        assert!(matches!(err, KubeconfigError::Unsupported { .. }), "{err}");
        let yaml = "users:\n- name: u\n  user:\n    auth-provider:\n      name: oidc\n      config: {}\nclusters:\n- name: c\n  cluster: {server: 'https://x'}\n";
        let err = parse_skeleton(yaml.as_bytes(), None).unwrap_err();
        assert!(err.to_string().contains("\"oidc\""), "{err}");
        let yaml = "users:\n- name: u\n  user:\n    token: c2VjcmV0\nclusters:\n- name: c\n  cluster: {server: 'https://x'}\n";
        let err = parse_skeleton(yaml.as_bytes(), None).unwrap_err();
        assert!(err.to_string().contains("static token"), "{err}");
        assert!(!err.to_string().contains("c2VjcmV0"));
    }

    #[test]
    fn context_selection() {
        let yaml = testdata("several-contexts.yaml");
        // current-context is "staging".
        let a = parse_skeleton(&yaml, None).unwrap();
        assert_eq!(a.context.as_deref(), Some("staging"));
        assert_eq!(a.server, "https://staging.example.test:443");
        assert_eq!(a.ca_file, Some(PathBuf::from("ca/staging.crt")));
        assert_eq!(a.auth.aad().unwrap().server_id, SERVER_ID);
        let a = parse_skeleton(&yaml, Some("prod")).unwrap();
        assert_eq!(a.server, "https://prod.example.test:443");
        assert_eq!(a.auth.aad().unwrap().tenant_id.as_deref(), Some(TENANT));
        let err = parse_skeleton(&yaml, Some("nope")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "the kubeconfig has no context named \"nope\" (it has: prod, staging, local, dangling); fix `context =`"
        );
        let err = parse_skeleton(&yaml, Some("dangling")).unwrap_err();
        assert!(
            matches!(err, KubeconfigError::MissingCluster { .. }),
            "{err}"
        );
        let no_current = String::from_utf8(yaml)
            .unwrap()
            .replace("current-context: staging\n", "");
        let err = parse_skeleton(no_current.as_bytes(), None).unwrap_err();
        assert!(
            matches!(err, KubeconfigError::AmbiguousContext { .. }),
            "{err}"
        );
    }

    #[test]
    fn no_contexts_single_cluster_and_user() {
        let yaml = "clusters:\n- name: c\n  cluster:\n    server: https://x\n    insecure-skip-tls-verify: true\n    tls-server-name: api.internal\nusers:\n- name: u\n  user:\n    exec:\n      command: kubelogin\n      args: [get-token, --server-id, s]\n";
        let a = parse_skeleton(yaml.as_bytes(), None).unwrap();
        assert_eq!(a.context, None);
        let users_only = "users:\n- name: u\n  user:\n    token: x\n";
        assert_eq!(
            parse_skeleton(users_only.as_bytes(), None)
                .unwrap_err()
                .to_string(),
            "the kubeconfig defines no clusters"
        );
        assert_eq!(
            parse_skeleton(b"", None).unwrap_err(),
            KubeconfigError::Empty
        );
        assert!(a.insecure_skip_tls_verify);
        assert_eq!(a.tls_server_name.as_deref(), Some("api.internal"));
        assert_eq!(a.auth.aad().unwrap().server_id, "s");
    }

    #[test]
    fn json_kubeconfig_is_yaml_too() {
        let json = br#"{"clusters":[{"name":"c","cluster":{"server":"https://x"}}],"users":[{"name":"u","user":{"exec":{"command":"kubelogin","args":["get-token","--server-id","s"]}}}]}"#;
        assert_eq!(
            parse_skeleton(json, None)
                .unwrap()
                .auth
                .aad()
                .unwrap()
                .server_id,
            "s"
        );
    }

    #[test]
    fn bad_ca_data() {
        let yaml = |data: &str| {
            format!(
                "clusters:\n- name: c\n  cluster:\n    server: https://x\n    certificate-authority-data: {data}\nusers:\n- name: u\n  user:\n    exec: {{command: kubelogin, args: [--server-id, s]}}\n"
            )
        };
        let err = parse_skeleton(yaml("'not base64!'").as_bytes(), None).unwrap_err();
        assert!(
            err.to_string().starts_with(
                "clusters[c].cluster.certificate-authority-data is not valid: not base64"
            ),
            "{err}"
        );
        let err = parse_skeleton(yaml("aGVsbG8=").as_bytes(), None).unwrap_err();
        assert!(err.to_string().contains("no PEM certificate"), "{err}");
    }

    #[test]
    fn not_yaml_never_panics() {
        let inputs: &[&[u8]] = &[
            b"",
            b"hello",
            b"- 1\n- 2\n",
            b"{{{{",
            b"clusters: 5",
            b"clusters:\n- name: [1, 2]\n",
            b"\xff\xfe\x00garbage",
            b"key: \"unterminated\n",
            b"a: 1\n---\nb: 2\n",
            b"\t- bad indent\n  x: :\n",
        ];
        for input in inputs {
            let result = parse_skeleton(input, None);
            assert!(result.is_err(), "{}", String::from_utf8_lossy(input));
        }
        let err = parse_skeleton(b"{{{{", None).unwrap_err();
        assert!(matches!(err, KubeconfigError::Yaml(_)), "{err}");
    }

    #[test]
    fn too_large_is_refused_before_parsing() {
        let big = vec![b' '; MAX_KUBECONFIG + 1];
        assert!(matches!(
            parse_skeleton(&big, None),
            Err(KubeconfigError::TooLarge { .. })
        ));
    }

    #[test]
    fn billion_laughs_is_refused_quickly() {
        let mut bomb = String::from(
            "a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n",
        );
        let letters = ["a", "b", "c", "d", "e", "f", "g", "h", "i"];
        for pair in letters.windows(2) {
            let (prev, next) = (pair[0], pair[1]);
            let refs = vec![format!("*{prev}"); 9].join(",");
            bomb.push_str(&format!("{next}: &{next} [{refs}]\n"));
        }
        // Once in an ignored key, once where a value is read.
        let in_users = format!("{bomb}users: *i\n");
        for yaml in [bomb.clone(), in_users] {
            let started = std::time::Instant::now();
            let result = parse_skeleton(yaml.as_bytes(), None);
            assert!(result.is_err());
            assert!(
                started.elapsed() < std::time::Duration::from_secs(5),
                "took {:?}",
                started.elapsed()
            );
        }
        let err = parse_skeleton(format!("{bomb}users: *i\n").as_bytes(), None).unwrap_err();
        assert!(matches!(err, KubeconfigError::Yaml(_)), "{err}");
    }

    #[test]
    fn deep_nesting_is_refused() {
        let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        assert!(matches!(
            parse_skeleton(deep.as_bytes(), None),
            Err(KubeconfigError::Yaml(_))
        ));
    }
}
