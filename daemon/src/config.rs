//! The TOML configuration: parsed strictly, validated whole, resolved once.
//!
//! A bad config is refused with the file, line, key and reason, and never
//! half-applied: `load` either returns a complete [`Config`] or an error.
//! Unknown keys are errors, because a misspelt `refresh_befor` silently
//! ignored is worse than a daemon that does not start.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use crate::cloud::{Cloud, DEFAULT_CLOUD};
use crate::secret::SecretSource;

/// Azure CLI's public client: the one ARM accepts from a password grant.
pub const AZURE_CLI_CLIENT_ID: &str = "04b07795-8ddb-461a-bbee-02f9e1bf7b46";
/// AKS-managed AAD: the server app every managed cluster shares, and its client.
pub const AKS_SERVER_ID: &str = "6dae42f8-4368-4678-94ff-3960e28e3630";
pub const AKS_CLIENT_ID: &str = "80faf920-1908-4b52-b5ef-a8e7bedfc67a";

#[derive(Debug, Clone)]
pub struct Config {
    pub path: PathBuf,
    pub daemon: DaemonConfig,
    pub identities: BTreeMap<String, Identity>,
    pub clusters: BTreeMap<String, Cluster>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DaemonConfig {
    pub socket: Option<PathBuf>,
    pub ca_file: Option<PathBuf>,
    /// A token is refreshed no later than this long before `expires_on`.
    pub refresh_before: Duration,
    /// A request that finds less than this left waits for a refresh.
    pub min_remaining: Duration,
    /// How often deadlines are re-checked on the wall clock.
    pub tick: Duration,
    pub allow_uids: Vec<u32>,
    /// Absolute path of the `akscred` plugin written into kubeconfigs;
    /// default: `akscred` next to the daemon's own executable.
    pub plugin_path: Option<PathBuf>,
    /// Hard cap on password submissions per identity per hour, whatever
    /// the reason: the last line of defence against a lockout.
    pub password_attempts_per_hour: u32,
}

impl Default for DaemonConfig {
    fn default() -> Self {
        DaemonConfig {
            socket: None,
            ca_file: None,
            refresh_before: Duration::from_secs(600),
            min_remaining: Duration::from_secs(120),
            tick: Duration::from_secs(30),
            allow_uids: Vec::new(),
            plugin_path: None,
            password_attempts_per_hour: 3,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Identity {
    pub name: String,
    pub cloud: Cloud,
    pub tenant: String,
    /// The user principal name; for an application identity, its client id.
    pub username: String,
    pub credential: Credential,
    /// A user's public client for the ARM token, or the application's own
    /// id, which then signs in for every resource.
    pub client_id: String,
}

/// What an identity proves itself with.
#[derive(Debug, Clone, PartialEq)]
pub enum Credential {
    /// A user's password (resource-owner password grant, or WS-Trust).
    Password(SecretSource),
    /// A service principal's client secret (client credentials grant).
    ClientSecret(SecretSource),
    /// A service principal's certificate and key, PEM or PKCS#12, used to
    /// sign a client assertion.
    Certificate {
        source: SecretSource,
        password: Option<SecretSource>,
    },
    /// Workload identity: a federated token file (re-read on each sign-in)
    /// exchanged as a client assertion.
    FederatedToken(PathBuf),
}

impl Identity {
    /// A person's account, whose password Entra smart lockout protects.
    pub fn is_user(&self) -> bool {
        matches!(self.credential, Credential::Password(_))
    }

    pub fn kind(&self) -> &'static str {
        match self.credential {
            Credential::Password(_) => "user",
            Credential::ClientSecret(_) | Credential::Certificate { .. } => "service_principal",
            Credential::FederatedToken(_) => "workload_identity",
        }
    }

    /// Secret files other users can read, one warning each, checked on the
    /// file system now ([`SecretSource::exposure`]). Not the federated
    /// token file: the kubelet writes it with the pod's modes, and it
    /// lives an hour.
    pub fn exposed_secrets(&self) -> Vec<String> {
        let sources: Vec<(&str, &SecretSource)> = match &self.credential {
            Credential::Password(s) => vec![("password", s)],
            Credential::ClientSecret(s) => vec![("client_secret", s)],
            Credential::Certificate { source, password } => {
                std::iter::once(("certificate", source))
                    .chain(password.iter().map(|p| ("certificate_password", p)))
                    .collect()
            }
            Credential::FederatedToken(_) => Vec::new(),
        };
        sources
            .into_iter()
            .filter_map(|(key, s)| s.exposure().map(|e| format!("{key}: {e}")))
            .collect()
    }

    /// The config key of the secret, for messages.
    pub fn secret_key(&self) -> &'static str {
        match self.credential {
            Credential::Password(_) => "password",
            Credential::ClientSecret(_) => "client_secret",
            Credential::Certificate { .. } => "certificate",
            Credential::FederatedToken(_) => "federated_token_file",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Cluster {
    pub name: String,
    pub identity: String,
    /// Context name in the kubeconfigs akscred writes (default: the cluster's name).
    pub context: String,
    pub namespace: Option<String>,
    pub source: ClusterSource,
}

/// Where a cluster's server, CA and Entra ID parameters come from.
#[derive(Debug, Clone, PartialEq)]
pub enum ClusterSource {
    /// `listClusterUserCredential` on ARM.
    Arm {
        subscription: String,
        resource_group: String,
        name: String,
        server_fqdn: Option<String>,
    },
    /// An AKS kubeconfig the user already has: no ARM call, for users whose
    /// organisation enforces MFA on ARM.
    Kubeconfig {
        path: PathBuf,
        context: Option<String>,
    },
    /// Everything given by hand.
    Explicit {
        server: String,
        ca_file: Option<PathBuf>,
        server_id: String,
        client_id: String,
        tenant: Option<String>,
        legacy: bool,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read the config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}:{line}:{column}: {message}\n{snippet}")]
    Invalid {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
        snippet: String,
    },
    #[error("{path}: {message}")]
    Whole { path: PathBuf, message: String },
}

// ---- the file as written ------------------------------------------------

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    daemon: RawDaemon,
    #[serde(default)]
    clouds: BTreeMap<String, RawCloud>,
    #[serde(default)]
    identities: BTreeMap<String, RawIdentity>,
    #[serde(default)]
    clusters: BTreeMap<String, RawCluster>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawDaemon {
    socket: Option<String>,
    ca_file: Option<Spanned<String>>,
    refresh_before: Option<Spanned<String>>,
    min_remaining: Option<Spanned<String>>,
    tick: Option<Spanned<String>>,
    #[serde(default)]
    allow_uids: Vec<u32>,
    plugin_path: Option<Spanned<String>>,
    password_attempts_per_hour: Option<Spanned<u32>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCloud {
    login_endpoint: Spanned<String>,
    arm_endpoint: Spanned<String>,
    arm_resource: Spanned<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawIdentity {
    cloud: Option<Spanned<String>>,
    tenant: Spanned<String>,
    username: Option<Spanned<String>>,
    password: Option<Spanned<SecretSource>>,
    client_id: Option<Spanned<String>>,
    client_secret: Option<Spanned<SecretSource>>,
    certificate: Option<Spanned<SecretSource>>,
    certificate_password: Option<Spanned<SecretSource>>,
    federated_token_file: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCluster {
    identity: Spanned<String>,
    subscription: Option<Spanned<String>>,
    resource_group: Option<Spanned<String>>,
    name: Option<Spanned<String>>,
    server_fqdn: Option<Spanned<String>>,
    context: Option<Spanned<String>>,
    namespace: Option<String>,
    kubeconfig: Option<Spanned<String>>,
    kubeconfig_context: Option<String>,
    server: Option<Spanned<String>>,
    ca_file: Option<Spanned<String>>,
    server_id: Option<Spanned<String>>,
    client_id: Option<Spanned<String>>,
    tenant: Option<String>,
    #[serde(default)]
    legacy: bool,
}

// ---- loading ------------------------------------------------------------

impl Config {
    /// `$XDG_CONFIG_HOME/akscred/config.toml`, else `~/.config/akscred/config.toml`.
    pub fn default_path() -> PathBuf {
        let base = std::env::var_os("XDG_CONFIG_HOME")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .or_else(|| home_dir().map(|h| h.join(".config")))
            .unwrap_or_else(|| PathBuf::from("."));
        base.join("akscred").join("config.toml")
    }

    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        check_owner_and_mode(path)?;
        Config::parse(&text, path)
    }

    /// Parses and validates `text`; `path` is used in messages and to
    /// resolve relative paths inside the file.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let at = Locator { text, path };
        let raw: RawConfig = toml::from_str(text).map_err(|e| {
            let span = e.span().unwrap_or(0..0);
            at.error(span, e.message().to_string())
        })?;
        let base_dir = path.parent().unwrap_or(Path::new("."));
        let resolve = |s: &str| expand_path(s, base_dir);

        let daemon = resolve_daemon(&raw.daemon, &at, &resolve)?;
        let clouds = resolve_clouds(&raw.clouds, &at)?;

        let mut identities = BTreeMap::new();
        for (name, raw) in &raw.identities {
            let cloud_name = raw
                .cloud
                .as_ref()
                .map(|c| c.get_ref().as_str())
                .unwrap_or(DEFAULT_CLOUD);
            let cloud = clouds
                .get(cloud_name)
                .cloned()
                .or_else(|| Cloud::built_in(cloud_name))
                .ok_or_else(|| {
                    let span = raw.cloud.as_ref().map(|c| c.span()).unwrap_or(0..0);
                    let mut known: Vec<&str> = Cloud::built_in_names().collect();
                    known.extend(clouds.keys().map(String::as_str));
                    at.error(
                        span,
                        format!(
                            "identities.{name}.cloud: unknown cloud `{cloud_name}`; expected one of {} or a [clouds.{cloud_name}] table",
                            known.join(", ")
                        ),
                    )
                })?;
            let tenant = non_empty(&raw.tenant, &at, &format!("identities.{name}.tenant"))?;
            let (credential, username, client_id) = resolve_credential(name, raw, &at, &resolve)?;
            identities.insert(
                name.clone(),
                Identity {
                    name: name.clone(),
                    cloud,
                    tenant,
                    username,
                    credential,
                    client_id,
                },
            );
        }

        let mut clusters = BTreeMap::new();
        for (name, raw) in &raw.clusters {
            let key = |k: &str| format!("clusters.{name}.{k}");
            let identity = raw.identity.get_ref().clone();
            if !identities.contains_key(&identity) {
                let known: Vec<&str> = identities.keys().map(String::as_str).collect();
                return Err(at.error(
                    raw.identity.span(),
                    format!(
                        "{}: no identity named `{identity}`; define [identities.{identity}]{}",
                        key("identity"),
                        if known.is_empty() {
                            String::new()
                        } else {
                            format!(" or use one of {}", known.join(", "))
                        }
                    ),
                ));
            }
            let source = resolve_source(name, raw, &at, &resolve)?;
            let context = match &raw.context {
                Some(c) => non_empty(c, &at, &key("context"))?,
                None => name.clone(),
            };
            clusters.insert(
                name.clone(),
                Cluster {
                    name: name.clone(),
                    identity,
                    context,
                    namespace: raw.namespace.clone(),
                    source,
                },
            );
        }

        Ok(Config {
            path: path.to_path_buf(),
            daemon,
            identities,
            clusters,
        })
    }
}

/// Which kind of identity a table describes: exactly one of `password`,
/// `client_secret`, `certificate` or `federated_token_file`.
fn resolve_credential(
    name: &str,
    raw: &RawIdentity,
    at: &Locator,
    resolve: &dyn Fn(&str) -> PathBuf,
) -> Result<(Credential, String, String), ConfigError> {
    let key = |k: &str| format!("identities.{name}.{k}");
    let given: Vec<(&str, Range<usize>)> = [
        ("password", raw.password.as_ref().map(|v| v.span())),
        (
            "client_secret",
            raw.client_secret.as_ref().map(|v| v.span()),
        ),
        ("certificate", raw.certificate.as_ref().map(|v| v.span())),
        (
            "federated_token_file",
            raw.federated_token_file.as_ref().map(|v| v.span()),
        ),
    ]
    .into_iter()
    .filter_map(|(k, s)| s.map(|s| (k, s)))
    .collect();
    let table_span = raw.tenant.span();
    let (kind, span) = match given.as_slice() {
        [one] => one.clone(),
        [] => {
            return Err(at.error(
                table_span,
                format!(
                    "identities.{name}: no credential; give one of `password` (with `username`), `client_secret`, `certificate` (with `client_id`) or `federated_token_file`"
                ),
            ));
        }
        [_, (second, span), ..] => {
            return Err(at.error(
                span.clone(),
                format!(
                    "{}: an identity has one credential; remove this or the other one",
                    key(second)
                ),
            ));
        }
    };
    let source = |v: &Spanned<SecretSource>, k: &str| -> Result<SecretSource, ConfigError> {
        let s = match v.get_ref() {
            SecretSource::File(p) => SecretSource::File(resolve(&p.to_string_lossy())),
            other => other.clone(),
        };
        if let SecretSource::Command(argv) = &s
            && argv.is_empty()
        {
            return Err(at.error(
                v.span(),
                format!("{}.command: expected the program and its arguments, e.g. [\"pass\", \"show\", \"azure/{name}\"]", key(k)),
            ));
        }
        Ok(s)
    };
    if raw.certificate_password.is_some() && raw.certificate.is_none() {
        let span = raw
            .certificate_password
            .as_ref()
            .map(|v| v.span())
            .unwrap_or(span.clone());
        return Err(at.error(
            span,
            format!(
                "{}: only goes with `certificate`",
                key("certificate_password")
            ),
        ));
    }
    let client_id = match &raw.client_id {
        Some(c) => Some(non_empty(c, at, &key("client_id"))?),
        None => None,
    };
    if kind == "password" {
        let Some(raw_user) = &raw.username else {
            return Err(at.error(
                span,
                format!(
                    "{}: missing; a password goes with the user's `username` (user@domain)",
                    key("username")
                ),
            ));
        };
        let username = non_empty(raw_user, at, &key("username"))?;
        if !username.contains('@') {
            return Err(at.error(
                raw_user.span(),
                format!(
                    "{}: `{username}` is not a user principal name; expected user@domain",
                    key("username")
                ),
            ));
        }
        let password = raw
            .password
            .as_ref()
            .map(|p| source(p, "password"))
            .transpose()?;
        let Some(password) = password else {
            return Err(at.error(span, format!("{}: missing", key("password"))));
        };
        return Ok((
            Credential::Password(password),
            username,
            client_id.unwrap_or_else(|| AZURE_CLI_CLIENT_ID.to_string()),
        ));
    }
    if let Some(u) = &raw.username {
        return Err(at.error(
            u.span(),
            format!(
                "{}: an application identity has no username; its `client_id` names it",
                key("username")
            ),
        ));
    }
    let Some(client_id) = client_id else {
        return Err(at.error(
            span,
            format!("{}: missing; a service principal or workload identity needs its application (client) id", key("client_id")),
        ));
    };
    let credential = match (
        kind,
        &raw.client_secret,
        &raw.certificate,
        &raw.federated_token_file,
    ) {
        ("client_secret", Some(s), _, _) => Credential::ClientSecret(source(s, "client_secret")?),
        ("certificate", _, Some(c), _) => Credential::Certificate {
            source: source(c, "certificate")?,
            password: raw
                .certificate_password
                .as_ref()
                .map(|p| source(p, "certificate_password"))
                .transpose()?,
        },
        (_, _, _, Some(f)) => {
            Credential::FederatedToken(resolve(&non_empty(f, at, &key("federated_token_file"))?))
        }
        _ => unreachable!("exactly one credential key was found above"),
    };
    Ok((credential, client_id.clone(), client_id))
}

fn resolve_daemon(
    raw: &RawDaemon,
    at: &Locator,
    resolve: &dyn Fn(&str) -> PathBuf,
) -> Result<DaemonConfig, ConfigError> {
    let defaults = DaemonConfig::default();
    let duration = |v: &Option<Spanned<String>>, key: &str, default: Duration| {
        match v {
        None => Ok(default),
        Some(s) => humantime::parse_duration(s.get_ref()).map_err(|e| {
            at.error(
                s.span(),
                format!("daemon.{key}: `{}` is not a duration ({e}); expected e.g. \"30s\", \"10m\", \"1h\"", s.get_ref()),
            )
        }),
    }
    };
    let daemon = DaemonConfig {
        socket: raw.socket.as_deref().map(resolve),
        ca_file: raw.ca_file.as_ref().map(|s| resolve(s.get_ref())),
        refresh_before: duration(
            &raw.refresh_before,
            "refresh_before",
            defaults.refresh_before,
        )?,
        min_remaining: duration(&raw.min_remaining, "min_remaining", defaults.min_remaining)?,
        tick: duration(&raw.tick, "tick", defaults.tick)?,
        allow_uids: raw.allow_uids.clone(),
        plugin_path: raw.plugin_path.as_ref().map(|s| resolve(s.get_ref())),
        password_attempts_per_hour: raw
            .password_attempts_per_hour
            .as_ref()
            .map_or(defaults.password_attempts_per_hour, |v| *v.get_ref()),
    };
    if let Some(v) = &raw.password_attempts_per_hour
        && !(1..=10).contains(v.get_ref())
    {
        return Err(at.error(
            v.span(),
            "daemon.password_attempts_per_hour: expected 1 to 10 (Entra locks an account after 10 failures, 3 in US Gov)".into(),
        ));
    }
    if daemon.tick.is_zero() {
        let span = raw.tick.as_ref().map(|s| s.span()).unwrap_or(0..0);
        return Err(at.error(span, "daemon.tick: must be more than zero".into()));
    }
    if let (Some(p), Some(raw)) = (&daemon.plugin_path, &raw.plugin_path)
        && !p.is_absolute()
    {
        return Err(at.error(
            raw.span(),
            "daemon.plugin_path: must be an absolute path (kubectl runs the plugin from any directory)".into(),
        ));
    }
    Ok(daemon)
}

fn resolve_clouds(
    raw: &BTreeMap<String, RawCloud>,
    at: &Locator,
) -> Result<BTreeMap<String, Cloud>, ConfigError> {
    let mut clouds = BTreeMap::new();
    for (name, c) in raw {
        let endpoint = |v: &Spanned<String>, key: &str| -> Result<String, ConfigError> {
            let s = v.get_ref().trim();
            match url::Url::parse(s) {
                Ok(u) if u.scheme() == "https" && u.host().is_some() => {
                    Ok(s.trim_end_matches('/').to_string())
                }
                _ => Err(at.error(
                    v.span(),
                    format!("clouds.{name}.{key}: `{s}` is not an https URL; expected e.g. \"https://login.example.com\""),
                )),
            }
        };
        let login_endpoint = endpoint(&c.login_endpoint, "login_endpoint")?;
        let arm_endpoint = endpoint(&c.arm_endpoint, "arm_endpoint")?;
        let arm_resource = non_empty(&c.arm_resource, at, &format!("clouds.{name}.arm_resource"))?;
        clouds.insert(
            name.clone(),
            Cloud {
                name: name.clone(),
                login_endpoint,
                arm_endpoint,
                arm_resource,
            },
        );
    }
    Ok(clouds)
}

fn resolve_source(
    name: &str,
    raw: &RawCluster,
    at: &Locator,
    resolve: &dyn Fn(&str) -> PathBuf,
) -> Result<ClusterSource, ConfigError> {
    let key = |k: &str| format!("clusters.{name}.{k}");
    let arm_keys = [
        ("subscription", &raw.subscription),
        ("resource_group", &raw.resource_group),
        ("name", &raw.name),
    ];
    let explicit_keys = [
        ("server", &raw.server),
        ("server_id", &raw.server_id),
        ("client_id", &raw.client_id),
        ("ca_file", &raw.ca_file),
    ];
    fn first_set(
        keys: &[(&'static str, &Option<Spanned<String>>)],
    ) -> Option<(&'static str, Range<usize>)> {
        keys.iter()
            .find_map(|(k, v)| v.as_ref().map(|v| (*k, v.span())))
    }
    let arm_given = first_set(&arm_keys);
    let explicit_given = first_set(&explicit_keys);
    let table_span = raw.identity.span();

    if let Some(kubeconfig) = &raw.kubeconfig {
        if let Some((k, span)) = arm_given.or(explicit_given) {
            return Err(at.error(
                span,
                format!("{}: not allowed with `kubeconfig` (the cluster's details come from that file); remove one of them", key(k)),
            ));
        }
        let path = non_empty(kubeconfig, at, &key("kubeconfig"))?;
        return Ok(ClusterSource::Kubeconfig {
            path: resolve(&path),
            context: raw.kubeconfig_context.clone(),
        });
    }
    if let Some((_, _)) = explicit_given {
        if let Some((k, span)) = arm_given {
            return Err(at.error(
                span,
                format!("{}: not allowed with `server` (an explicit cluster skips ARM); remove one of them", key(k)),
            ));
        }
        let server = match &raw.server {
            Some(s) => non_empty(s, at, &key("server"))?,
            None => {
                return Err(at.error(
                    table_span,
                    format!("{}: missing; an explicit cluster needs `server`, `server_id` (and usually `ca_file`)", key("server")),
                ));
            }
        };
        if !server.starts_with("https://") {
            let span = raw.server.as_ref().map(|s| s.span()).unwrap_or(table_span);
            return Err(at.error(
                span,
                format!("{}: `{server}` must be an https URL", key("server")),
            ));
        }
        let server_id = match &raw.server_id {
            Some(s) => non_empty(s, at, &key("server_id"))?,
            None => AKS_SERVER_ID.to_string(),
        };
        let client_id = match &raw.client_id {
            Some(s) => non_empty(s, at, &key("client_id"))?,
            None => AKS_CLIENT_ID.to_string(),
        };
        return Ok(ClusterSource::Explicit {
            server,
            ca_file: raw.ca_file.as_ref().map(|s| resolve(s.get_ref())),
            server_id,
            client_id,
            tenant: raw.tenant.clone(),
            legacy: raw.legacy,
        });
    }
    let mut values = Vec::new();
    for (k, v) in arm_keys {
        match v {
            Some(v) => values.push(non_empty(v, at, &key(k))?),
            None => {
                return Err(at.error(
                    table_span,
                    format!(
                        "{}: missing; a cluster needs `subscription`, `resource_group` and `name` (ARM), or `kubeconfig = \"path\"`, or `server` and `server_id`",
                        key(k)
                    ),
                ));
            }
        }
    }
    let server_fqdn = match &raw.server_fqdn {
        None => None,
        Some(v) => {
            let s = v.get_ref().as_str();
            if !["public", "private"].contains(&s) {
                return Err(at.error(
                    v.span(),
                    format!(
                        "{}: `{s}`; expected \"public\" or \"private\"",
                        key("server_fqdn")
                    ),
                ));
            }
            Some(s.to_string())
        }
    };
    let [subscription, resource_group, name]: [String; 3] = values
        .try_into()
        .unwrap_or_else(|_| unreachable!("three keys checked above"));
    Ok(ClusterSource::Arm {
        subscription,
        resource_group,
        name,
        server_fqdn,
    })
}

fn non_empty(v: &Spanned<String>, at: &Locator, key: &str) -> Result<String, ConfigError> {
    let s = v.get_ref().trim();
    if s.is_empty() {
        return Err(at.error(v.span(), format!("{key}: must not be empty")));
    }
    Ok(s.to_string())
}

/// Like ssh with its config and keys: whoever can write the config file
/// chooses the commands akscredd runs to get passwords and the servers it
/// sends them to. So the file and its directory must belong to the
/// daemon's user or root, and be writable by no one else (a sticky
/// directory such as /tmp is fine: others cannot replace the file there).
/// Reading is not restricted: the file holds no secret, since inline
/// secrets are refused by the parser.
fn check_owner_and_mode(path: &Path) -> Result<(), ConfigError> {
    use std::os::unix::fs::MetadataExt;
    let own = crate::process::own_uid();
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let why =
        "whoever can change it decides which commands akscredd runs and where your password goes";
    for (what, p) in [("the config file", path), ("the config directory", dir)] {
        let meta = std::fs::metadata(p).map_err(|source| ConfigError::Read {
            path: p.to_path_buf(),
            source,
        })?;
        if meta.uid() != own && meta.uid() != 0 {
            return Err(ConfigError::Whole {
                path: path.to_path_buf(),
                message: format!(
                    "{what} {} belongs to uid {}, not to you (uid {own}) or root; {why}",
                    p.display(),
                    meta.uid()
                ),
            });
        }
        let mode = meta.mode() & 0o7777;
        let sticky_dir = meta.is_dir() && mode & 0o1000 != 0;
        if mode & 0o022 != 0 && !sticky_dir {
            let by = match (mode & 0o020 != 0, mode & 0o002 != 0) {
                (true, true) => "its group and others",
                (true, false) => "its group",
                _ => "others",
            };
            return Err(ConfigError::Whole {
                path: path.to_path_buf(),
                message: format!(
                    "{what} {} is writable by {by} (mode {mode:04o}); run `chmod go-w {}`: {why}",
                    p.display(),
                    p.display()
                ),
            });
        }
    }
    Ok(())
}

fn home_dir() -> Option<PathBuf> {
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
}

/// `~/x` is the user's home; relative paths are relative to the config file,
/// because the daemon's working directory is wherever systemd started it.
pub fn expand_path(s: &str, base_dir: &Path) -> PathBuf {
    if let Some(rest) = s.strip_prefix("~/")
        && let Some(home) = home_dir()
    {
        return home.join(rest);
    }
    let p = PathBuf::from(s);
    if p.is_absolute() { p } else { base_dir.join(p) }
}

/// Turns byte spans into `file:line:column` and a one-line snippet.
struct Locator<'a> {
    text: &'a str,
    path: &'a Path,
}

impl Locator<'_> {
    fn error(&self, span: Range<usize>, message: String) -> ConfigError {
        let start = span.start.min(self.text.len());
        let before = &self.text[..self.text.floor_char_boundary(start)];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map(|i| i + 1).unwrap_or(0);
        let column = before[line_start..].chars().count() + 1;
        let mut line_text = self.text[line_start..].lines().next().unwrap_or("");
        // An inline password in the wrong place must not be echoed back.
        let key = line_text
            .split('=')
            .next()
            .unwrap_or("")
            .to_ascii_lowercase();
        if key.contains("password") || key.contains("secret") {
            line_text = line_text.split('=').next().unwrap_or("");
        }
        ConfigError::Invalid {
            path: self.path.to_path_buf(),
            line,
            column,
            message,
            snippet: format!("  {line} | {line_text}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("/etc/akscred/config.toml"))
    }

    fn err(text: &str) -> String {
        parse(text).unwrap_err().to_string()
    }

    const GOOD: &str = r#"
[daemon]
refresh_before = "15m"
tick = "10s"
allow_uids = [1001]

[clouds.lab]
login_endpoint = "https://login.example.test/"
arm_endpoint = "https://management.example.test"
arm_resource = "https://management.core.windows.net/"

[identities.alice]
tenant = "contoso.onmicrosoft.com"
username = "alice@contoso.com"
password = { file = "alice.password" }

[identities.bob]
cloud = "lab"
tenant = "contoso.onmicrosoft.com"
username = "bob@contoso.com"
password = { command = ["pass", "show", "bob"] }

[clusters.prod]
identity = "alice"
subscription = "00000000-0000-0000-0000-000000000000"
resource_group = "rg-prod"
name = "aks-prod"
namespace = "web"

[clusters.imported]
identity = "bob"
kubeconfig = "~/.kube/aks.yaml"

[clusters.manual]
identity = "bob"
server = "https://aks.example.test:443"
ca_file = "/etc/ca.pem"
context = "by-hand"
"#;

    #[test]
    fn a_full_config_resolves() {
        let c = parse(GOOD).unwrap();
        assert_eq!(c.daemon.refresh_before, Duration::from_secs(900));
        assert_eq!(c.daemon.min_remaining, Duration::from_secs(120));
        assert_eq!(c.daemon.tick, Duration::from_secs(10));
        assert_eq!(c.daemon.allow_uids, vec![1001]);
        let alice = &c.identities["alice"];
        assert_eq!(alice.cloud.name, "AzurePublicCloud");
        assert_eq!(alice.client_id, AZURE_CLI_CLIENT_ID);
        assert_eq!(
            alice.credential,
            Credential::Password(SecretSource::File("/etc/akscred/alice.password".into()))
        );
        let bob = &c.identities["bob"];
        assert_eq!(bob.cloud.login_endpoint, "https://login.example.test");
        assert_eq!(c.clusters["prod"].context, "prod");
        assert_eq!(c.clusters["prod"].namespace.as_deref(), Some("web"));
        assert!(matches!(
            &c.clusters["prod"].source,
            ClusterSource::Arm { name, .. } if name == "aks-prod"
        ));
        assert!(matches!(
            &c.clusters["imported"].source,
            ClusterSource::Kubeconfig { path, .. } if path.ends_with(".kube/aks.yaml") && path.is_absolute()
        ));
        match &c.clusters["manual"].source {
            ClusterSource::Explicit {
                server_id,
                client_id,
                ..
            } => {
                assert_eq!(server_id, AKS_SERVER_ID);
                assert_eq!(client_id, AKS_CLIENT_ID);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(c.clusters["manual"].context, "by-hand");
    }

    #[test]
    fn empty_file_is_a_valid_empty_config() {
        let c = parse("").unwrap();
        assert!(c.clusters.is_empty());
        assert_eq!(c.daemon, DaemonConfig::default());
    }

    #[test]
    fn unknown_key_names_file_line_and_key() {
        let e = err("[daemon]\nrefresh_befor = \"10m\"\n");
        assert!(e.starts_with("/etc/akscred/config.toml:2:1:"), "{e}");
        assert!(e.contains("refresh_befor"), "{e}");
        assert!(e.contains("refresh_before"), "expected keys listed: {e}");
    }

    #[test]
    fn wrong_type_names_the_line() {
        let e = err("[daemon]\nallow_uids = \"1001\"\n");
        assert!(e.contains(":2:"), "{e}");
        assert!(e.contains("allow_uids"), "{e}");
    }

    #[test]
    fn syntax_error_has_a_position() {
        let e = err("[daemon\n");
        assert!(e.starts_with("/etc/akscred/config.toml:1:"), "{e}");
    }

    #[test]
    fn password_budget_is_bounded() {
        let c = parse("[daemon]\npassword_attempts_per_hour = 2\n").unwrap();
        assert_eq!(c.daemon.password_attempts_per_hour, 2);
        let e = err("[daemon]\npassword_attempts_per_hour = 0\n");
        assert!(e.contains(":2:") && e.contains("1 to 10"), "{e}");
        let e = err("[daemon]\npassword_attempts_per_hour = 50\n");
        assert!(e.contains("1 to 10"), "{e}");
    }

    #[test]
    fn bad_duration() {
        let e = err("[daemon]\ntick = \"soon\"\n");
        assert!(
            e.contains(":2:") && e.contains("daemon.tick") && e.contains("soon"),
            "{e}"
        );
        let e = err("[daemon]\ntick = \"0s\"\n");
        assert!(e.contains("more than zero"), "{e}");
    }

    #[test]
    fn unknown_cloud_lists_the_known_ones() {
        let e = err(
            "[identities.a]\ncloud = \"AzureGermanCloud\"\ntenant = \"t\"\nusername = \"a@b\"\npassword = { env = \"P\" }\n",
        );
        assert!(e.contains(":2:") && e.contains("AzureGermanCloud"), "{e}");
        assert!(e.contains("AzureUSGovernmentCloud"), "{e}");
    }

    #[test]
    fn cloud_endpoints_must_be_https() {
        let e = err(
            "[clouds.x]\nlogin_endpoint = \"http://login\"\narm_endpoint = \"https://a\"\narm_resource = \"r\"\n",
        );
        assert!(
            e.contains("clouds.x.login_endpoint") && e.contains(":2:"),
            "{e}"
        );
    }

    #[test]
    fn unknown_identity_in_cluster() {
        let e = err(
            "[identities.alice]\ntenant = \"t\"\nusername = \"a@b\"\npassword = { env = \"P\" }\n[clusters.c]\nidentity = \"alcie\"\nsubscription = \"s\"\nresource_group = \"r\"\nname = \"n\"\n",
        );
        assert!(
            e.contains(":6:") && e.contains("alcie") && e.contains("alice"),
            "{e}"
        );
    }

    #[test]
    fn secret_source_must_be_one_known_kind() {
        let e = err(
            "[identities.a]\ntenant = \"t\"\nusername = \"a@b\"\npassword = { vault = \"x\" }\n",
        );
        assert!(e.contains(":4:") && e.contains("vault"), "{e}");
        let e = err("[identities.a]\ntenant = \"t\"\nusername = \"a@b\"\npassword = \"hunter2\"\n");
        assert!(e.contains(":4:"), "{e}");
        assert!(
            !e.contains("hunter2"),
            "the snippet must not echo a password: {e}"
        );
        let e = err(
            "[identities.a]\ntenant = \"t\"\nusername = \"a@b\"\npassword = { command = [] }\n",
        );
        assert!(e.contains("password.command"), "{e}");
    }

    #[test]
    fn application_identities() {
        let c = parse(
            "[identities.sp]\ntenant = \"t\"\nclient_id = \"app\"\nclient_secret = { env = \"SP_SECRET\" }\n\
             [identities.cert]\ntenant = \"t\"\nclient_id = \"app2\"\ncertificate = { file = \"sp.p12\" }\ncertificate_password = { env = \"P12\" }\n\
             [identities.wi]\ntenant = \"t\"\nclient_id = \"app3\"\nfederated_token_file = \"/var/run/secrets/azure/tokens/azure-identity-token\"\n",
        )
        .unwrap();
        assert_eq!(c.identities["sp"].kind(), "service_principal");
        assert_eq!(c.identities["sp"].client_id, "app");
        assert_eq!(c.identities["sp"].username, "app");
        assert!(!c.identities["sp"].is_user());
        assert!(matches!(
            &c.identities["cert"].credential,
            Credential::Certificate { source: SecretSource::File(p), password: Some(SecretSource::Env(v)) }
                if p == Path::new("/etc/akscred/sp.p12") && v == "P12"
        ));
        assert_eq!(c.identities["wi"].kind(), "workload_identity");
    }

    #[test]
    fn an_identity_has_exactly_one_credential() {
        let e = err("[identities.a]\ntenant = \"t\"\nusername = \"a@b\"\n");
        assert!(e.contains("no credential"), "{e}");
        let e = err(
            "[identities.a]\ntenant = \"t\"\nusername = \"a@b\"\npassword = { env = \"P\" }\nclient_secret = { env = \"S\" }\n",
        );
        assert!(
            e.contains(":5:") && e.contains("client_secret") && e.contains("one credential"),
            "{e}"
        );
        let e = err("[identities.a]\ntenant = \"t\"\nclient_secret = { env = \"S\" }\n");
        assert!(e.contains("identities.a.client_id: missing"), "{e}");
        let e = err(
            "[identities.a]\ntenant = \"t\"\nclient_id = \"c\"\nusername = \"a@b\"\nclient_secret = { env = \"S\" }\n",
        );
        assert!(e.contains(":4:") && e.contains("no username"), "{e}");
        let e = err("[identities.a]\ntenant = \"t\"\npassword = { env = \"P\" }\n");
        assert!(e.contains("identities.a.username: missing"), "{e}");
        let e = err(
            "[identities.a]\ntenant = \"t\"\nclient_id = \"c\"\nclient_secret = { env = \"S\" }\ncertificate_password = { env = \"P\" }\n",
        );
        assert!(e.contains("only goes with `certificate`"), "{e}");
        let e =
            err("[identities.a]\ntenant = \"t\"\nclient_id = \"c\"\nclient_secret = \"s3cret\"\n");
        assert!(!e.contains("s3cret"), "{e}");
    }

    #[test]
    fn username_must_be_a_upn() {
        let e = err(
            "[identities.a]\ntenant = \"t\"\nusername = \"alice\"\npassword = { env = \"P\" }\n",
        );
        assert!(e.contains(":3:") && e.contains("user@domain"), "{e}");
    }

    #[test]
    fn cluster_needs_a_complete_source() {
        let base =
            "[identities.a]\ntenant = \"t\"\nusername = \"a@b\"\npassword = { env = \"P\" }\n";
        let e = err(&format!(
            "{base}[clusters.c]\nidentity = \"a\"\nsubscription = \"s\"\n"
        ));
        assert!(e.contains("clusters.c.resource_group: missing"), "{e}");
        let e = err(&format!(
            "{base}[clusters.c]\nidentity = \"a\"\nkubeconfig = \"k\"\nname = \"n\"\n"
        ));
        assert!(
            e.contains("clusters.c.name: not allowed with `kubeconfig`"),
            "{e}"
        );
        let e = err(&format!(
            "{base}[clusters.c]\nidentity = \"a\"\nserver = \"http://x\"\n"
        ));
        assert!(e.contains("must be an https URL"), "{e}");
        let e = err(&format!(
            "{base}[clusters.c]\nidentity = \"a\"\nserver_id = \"x\"\n"
        ));
        assert!(e.contains("clusters.c.server: missing"), "{e}");
        let e = err(&format!(
            "{base}[clusters.c]\nidentity = \"a\"\nsubscription = \"s\"\nresource_group = \"r\"\nname = \"n\"\nserver_fqdn = \"both\"\n"
        ));
        assert!(e.contains("server_fqdn") && e.contains("\"public\""), "{e}");
    }

    #[test]
    fn relative_paths_follow_the_config_file() {
        assert_eq!(
            expand_path("pw", Path::new("/etc/akscred")),
            PathBuf::from("/etc/akscred/pw")
        );
        assert_eq!(expand_path("/abs", Path::new("/x")), PathBuf::from("/abs"));
    }

    #[test]
    fn a_config_others_can_write_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("akscred");
        std::fs::create_dir(&dir).unwrap();
        let path = dir.join("config.toml");
        std::fs::write(&path, "").unwrap();
        let chmod = |p: &Path, m: u32| {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap()
        };
        chmod(&dir, 0o755);
        // Readable by all is fine: the file holds no secret.
        chmod(&path, 0o644);
        Config::load(&path).unwrap();
        chmod(&path, 0o664);
        let e = Config::load(&path).unwrap_err().to_string();
        assert!(
            e.contains("writable by its group") && e.contains("chmod go-w"),
            "{e}"
        );
        chmod(&path, 0o646);
        let e = Config::load(&path).unwrap_err().to_string();
        assert!(e.contains("writable by others"), "{e}");
        chmod(&path, 0o600);
        chmod(&dir, 0o777);
        let e = Config::load(&path).unwrap_err().to_string();
        assert!(e.contains("config directory"), "{e}");
        // Sticky, like /tmp: others cannot replace the file.
        chmod(&dir, 0o1777);
        Config::load(&path).unwrap();
    }

    #[test]
    fn a_config_of_another_user_is_refused() {
        if crate::process::own_uid() != 0 {
            // Only root can give a file away; CI runs as root.
            return;
        }
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("config.toml");
        std::fs::write(&path, "").unwrap();
        std::os::unix::fs::chown(&path, Some(65534), Some(65534)).unwrap();
        let e = Config::load(&path).unwrap_err().to_string();
        assert!(e.contains("belongs to uid 65534"), "{e}");
    }

    #[test]
    fn missing_file_is_named() {
        let e = Config::load(Path::new("/nonexistent/akscred.toml")).unwrap_err();
        assert!(e.to_string().contains("/nonexistent/akscred.toml"), "{e}");
    }
}
