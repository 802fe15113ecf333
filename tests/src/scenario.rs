//! What the emulated Azure contains: one tenant, its users, its AKS clusters.
//!
//! Ids that are the same in every real tenant (Azure CLI, the AKS AAD apps)
//! are constants here; everything else is made up but shaped like the real
//! thing (GUIDs, `*.onmicrosoft.com`).

use std::time::Duration;

/// Azure CLI's public client: what akscred uses for ARM.
pub const AZURE_CLI_CLIENT_ID: &str = "04b07795-8ddb-461a-bbee-02f9e1bf7b46";
/// The server app of AKS-managed AAD clusters, identical in every tenant.
pub const AKS_SERVER_APP_ID: &str = "6dae42f8-4368-4678-94ff-3960e28e3630";
/// The public client named in AKS-managed AAD kubeconfigs.
pub const AKS_CLIENT_APP_ID: &str = "80faf920-1908-4b52-b5ef-a8e7bedfc67a";
/// The ARM resource as kubelogin and the Azure CLI spell it.
pub const ARM_RESOURCE: &str = "https://management.core.windows.net/";
/// Every spelling of the ARM resource that Entra and ARM accept.
pub const ARM_AUDIENCES: [&str; 4] = [
    "https://management.core.windows.net/",
    "https://management.core.windows.net",
    "https://management.azure.com/",
    "https://management.azure.com",
];

/// Ids of [`Scenario::standard`], so tests can name them without an emulator.
pub mod standard {
    pub const TENANT_ID: &str = "3b0d7e2c-91a4-4f5e-8c6d-2a7f1e9b4c30";
    pub const TENANT_DOMAIN: &str = "contoso.onmicrosoft.com";
    pub const CUSTOM_DOMAIN: &str = "contoso.com";
    pub const SUBSCRIPTION: &str = "9e4f2a71-5c3b-4d86-a0e1-7b2c8d4f6a19";
    pub const RESOURCE_GROUP: &str = "rg-demo";
    pub const PASSWORD: &str = "correct horse battery staple";
    pub const ALICE: &str = "alice@contoso.com";
    pub const LOCKED: &str = "locked@contoso.com";
    pub const MFA: &str = "mfa@contoso.com";
    pub const DISABLED: &str = "disabled@contoso.com";
    /// Server app of the legacy-AAD cluster `aks-legacy` (customer-created).
    pub const LEGACY_SERVER_ID: &str = "5a9c3e17-2b8d-4f60-9e41-c7d2a6b8f053";
    /// Client app of the legacy-AAD cluster `aks-legacy` (customer-created).
    pub const LEGACY_CLIENT_ID: &str = "e1b74c2d-8f35-4a09-b6d8-3c5e9f1a7b24";
}

/// Everything the emulator serves. Build one with [`Scenario::standard`] or
/// [`Scenario::many_managed`] and adjust the public fields.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// The tenant's GUID (`tid` claim, `{login}/{tid}/...` paths).
    pub tenant_id: String,
    /// The initial `*.onmicrosoft.com` domain.
    pub tenant_domain: String,
    /// Verified custom domains (user realm answers `Managed` for these too).
    pub domains: Vec<String>,
    pub users: Vec<UserSpec>,
    pub clusters: Vec<ClusterSpec>,
    /// Lifetime of every access token issued (`expires_in`).
    pub token_lifetime: Duration,
    /// Wrong passwords before Entra smart lockout locks a user (10 in the
    /// public cloud, 3 in US Gov).
    pub lockout_threshold: u32,
    /// Cloud name written into kubeconfigs (`environment`, `--environment`).
    pub environment: String,
}

#[derive(Clone)]
pub struct UserSpec {
    pub upn: String,
    pub password: String,
    pub state: UserState,
}

impl std::fmt::Debug for UserSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserSpec")
            .field("upn", &self.upn)
            .field("password", &"…")
            .field("state", &self.state)
            .finish()
    }
}

/// How Entra treats a password sign-in (and a refresh) for a user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserState {
    Active,
    /// Smart lockout: AADSTS50053 whatever the password.
    Locked,
    /// Conditional Access wants MFA: AADSTS50076 once the password is right.
    MfaRequired,
    /// AADSTS50057 whatever the password.
    Disabled,
}

#[derive(Debug, Clone)]
pub struct ClusterSpec {
    pub subscription: String,
    pub resource_group: String,
    pub name: String,
    pub aad: ClusterAad,
    /// What `listClusterUserCredential` returns when `format` is absent.
    pub default_format: KubeconfigFormat,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClusterAad {
    /// AKS-managed AAD: the well-known server and client apps.
    ManagedAad,
    /// Legacy AAD integration with customer-created apps.
    LegacyAad {
        server_id: String,
        client_id: String,
    },
}

impl ClusterAad {
    pub fn server_id(&self) -> &str {
        match self {
            ClusterAad::ManagedAad => AKS_SERVER_APP_ID,
            ClusterAad::LegacyAad { server_id, .. } => server_id,
        }
    }

    pub fn client_id(&self) -> &str {
        match self {
            ClusterAad::ManagedAad => AKS_CLIENT_APP_ID,
            ClusterAad::LegacyAad { client_id, .. } => client_id,
        }
    }

    /// The `aud` the cluster's API server insists on. Managed clusters run
    /// guard, which compares `aud` with the server id; legacy clusters run
    /// kube-apiserver's OIDC authenticator with `--oidc-client-id=spn:<id>`
    /// (aks-engine), which is why the legacy auth-provider (no
    /// `config-mode`) asks for `spn:<id>`.
    pub fn audience(&self) -> String {
        match self {
            ClusterAad::ManagedAad => AKS_SERVER_APP_ID.to_owned(),
            ClusterAad::LegacyAad { server_id, .. } => format!("spn:{server_id}"),
        }
    }
}

/// The two kubeconfig shapes `listClusterUserCredential` can return.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KubeconfigFormat {
    /// `auth-provider: {name: azure, ...}`.
    Azure,
    /// `exec:` running kubelogin.
    Exec,
}

impl KubeconfigFormat {
    pub fn parse(s: &str) -> Option<KubeconfigFormat> {
        if s.eq_ignore_ascii_case("azure") {
            Some(KubeconfigFormat::Azure)
        } else if s.eq_ignore_ascii_case("exec") {
            Some(KubeconfigFormat::Exec)
        } else {
            None
        }
    }
}

impl Scenario {
    /// contoso: alice (active), locked, mfa, disabled; clusters `aks-one`
    /// (managed, azure format), `aks-two` (managed, exec format) and
    /// `aks-legacy` (legacy AAD), all in subscription
    /// [`standard::SUBSCRIPTION`], resource group `rg-demo`.
    pub fn standard() -> Scenario {
        let user = |upn: &str, state| UserSpec {
            upn: upn.to_owned(),
            password: standard::PASSWORD.to_owned(),
            state,
        };
        let cluster = |name: &str, aad, default_format| ClusterSpec {
            subscription: standard::SUBSCRIPTION.to_owned(),
            resource_group: standard::RESOURCE_GROUP.to_owned(),
            name: name.to_owned(),
            aad,
            default_format,
        };
        Scenario {
            tenant_id: standard::TENANT_ID.to_owned(),
            tenant_domain: standard::TENANT_DOMAIN.to_owned(),
            domains: vec![standard::CUSTOM_DOMAIN.to_owned()],
            users: vec![
                user(standard::ALICE, UserState::Active),
                user(standard::LOCKED, UserState::Locked),
                user(standard::MFA, UserState::MfaRequired),
                user(standard::DISABLED, UserState::Disabled),
            ],
            clusters: vec![
                cluster("aks-one", ClusterAad::ManagedAad, KubeconfigFormat::Azure),
                cluster("aks-two", ClusterAad::ManagedAad, KubeconfigFormat::Exec),
                cluster(
                    "aks-legacy",
                    ClusterAad::LegacyAad {
                        server_id: standard::LEGACY_SERVER_ID.to_owned(),
                        client_id: standard::LEGACY_CLIENT_ID.to_owned(),
                    },
                    KubeconfigFormat::Azure,
                ),
            ],
            token_lifetime: Duration::from_secs(3599),
            lockout_threshold: 10,
            environment: "AzurePublicCloud".to_owned(),
        }
    }

    /// The standard tenant and users with `n` AKS-managed clusters named
    /// `aks-000` … (a jump host's view); even ones default to the azure
    /// format, odd ones to exec.
    pub fn many_managed(n: usize) -> Scenario {
        let mut s = Scenario::standard();
        s.clusters = (0..n)
            .map(|i| ClusterSpec {
                subscription: standard::SUBSCRIPTION.to_owned(),
                resource_group: standard::RESOURCE_GROUP.to_owned(),
                name: format!("aks-{i:03}"),
                aad: ClusterAad::ManagedAad,
                default_format: if i % 2 == 0 {
                    KubeconfigFormat::Azure
                } else {
                    KubeconfigFormat::Exec
                },
            })
            .collect();
        s
    }

    pub fn cluster(&self, name: &str) -> Option<&ClusterSpec> {
        self.clusters.iter().find(|c| c.name == name)
    }

    /// Whether `domain` belongs to this tenant (case-insensitive, like DNS).
    pub fn owns_domain(&self, domain: &str) -> bool {
        self.tenant_domain.eq_ignore_ascii_case(domain)
            || self.domains.iter().any(|d| d.eq_ignore_ascii_case(domain))
    }
}
