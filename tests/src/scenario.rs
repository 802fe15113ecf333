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
    /// The federated custom domain: its users sign in at the emulated AD FS
    /// (WS-Trust), not at Entra ID.
    pub const FEDERATED_DOMAIN: &str = "fabrikam.com";
    /// An active federated user.
    pub const BOB: &str = "bob@fabrikam.com";
    /// Bob's password, checked by AD FS: XML specials and non-ASCII, so a
    /// client that forgets to escape the WS-Trust request fails.
    pub const FEDERATED_PASSWORD: &str = "fabrikam <&> \"pass\" 'w\u{f6}rd'";
    /// Server app of the legacy-AAD cluster `aks-legacy` (customer-created).
    pub const LEGACY_SERVER_ID: &str = "5a9c3e17-2b8d-4f60-9e41-c7d2a6b8f053";
    /// Client app of the legacy-AAD cluster `aks-legacy` (customer-created).
    pub const LEGACY_CLIENT_ID: &str = "e1b74c2d-8f35-4a09-b6d8-3c5e9f1a7b24";

    /// Service principal that signs in with a client secret ([`SP_SECRET`]).
    pub const SP_SECRET_CLIENT_ID: &str = "a3c8e2f1-6b4d-4e97-8f05-2d1c9b7e4a68";
    /// Its client secret, shaped like the ones Entra generates.
    pub const SP_SECRET: &str = "kP98Q~Vz2rN4cXw7LmT1bG6hJ0sQ3dF5yA8eU_ox";
    /// Service principal with the registered certificate of [`SP_CERT_PEM`].
    pub const SP_CERT_CLIENT_ID: &str = "c7d2f915-3e8a-4b06-a1c4-9f5e2b8d7031";
    /// TEST-ONLY certificate and PKCS#8 RSA key (one PEM file) of
    /// [`SP_CERT_CLIENT_ID`].
    pub const SP_CERT_PEM: &str = include_str!("../data/sp-cert.pem");
    /// Where [`SP_CERT_PEM`] is on disk, for configs that name a file.
    pub const SP_CERT_PEM_PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/data/sp-cert.pem");
    /// The same certificate and key as PKCS#12 (TEST-ONLY).
    pub const SP_CERT_P12: &[u8] = include_bytes!("../data/sp-cert.p12");
    pub const SP_CERT_P12_PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/data/sp-cert.p12");
    pub const SP_CERT_P12_PASSWORD: &str = "p12-password";
    /// Service principal with a federated credential (workload identity)
    /// for [`WORKLOAD_ISSUER`] / [`WORKLOAD_SUBJECT`] /
    /// [`TOKEN_EXCHANGE_AUDIENCE`](super::TOKEN_EXCHANGE_AUDIENCE).
    pub const WORKLOAD_CLIENT_ID: &str = "5e1b9c47-d2a6-4f83-b9e0-7c4a1d6f2e95";
    /// An AKS OIDC issuer URL (the emulator signs its tokens itself, see
    /// `Emulator::issue_federated_token`).
    pub const WORKLOAD_ISSUER: &str = "https://eastus.oic.prod-aks.azure.com/3b0d7e2c-91a4-4f5e-8c6d-2a7f1e9b4c30/8d4f6a21-5c9e-4b37-a0f2-1e7c3b9d5a84/";
    /// A Kubernetes service account, as projected tokens name it.
    pub const WORKLOAD_SUBJECT: &str = "system:serviceaccount:ci:akscred";
    /// The cluster without Entra ID integration (local accounts).
    pub const LOCAL_CLUSTER: &str = "aks-local";
}

/// The audience federated tokens must carry for Entra's token exchange.
pub const TOKEN_EXCHANGE_AUDIENCE: &str = "api://AzureADTokenExchange";

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
    /// App registrations that sign in as themselves (client credentials).
    pub service_principals: Vec<ServicePrincipalSpec>,
    pub clusters: Vec<ClusterSpec>,
    /// Lifetime of every access token issued (`expires_in`).
    pub token_lifetime: Duration,
    /// Wrong passwords before Entra smart lockout locks a user (10 in the
    /// public cloud, 3 in US Gov).
    pub lockout_threshold: u32,
    /// Cloud name written into kubeconfigs (`environment`, `--environment`).
    pub environment: String,
    /// A federated domain and its AD FS (on its own listener), if any.
    pub federation: Option<crate::adfs::Federation>,
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

/// An app registration (and its service principal) with its credentials:
/// any mix of a client secret, a certificate and a federated credential.
#[derive(Clone)]
pub struct ServicePrincipalSpec {
    pub client_id: String,
    pub secret: Option<String>,
    /// DER of the registered public certificate: client assertions must be
    /// signed with its key and name its thumbprint.
    pub certificate_der: Option<Vec<u8>>,
    /// Workload identity federation.
    pub federated: Option<FederatedCredentialSpec>,
}

impl std::fmt::Debug for ServicePrincipalSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServicePrincipalSpec")
            .field("client_id", &self.client_id)
            .field("secret", &self.secret.as_ref().map(|_| "…"))
            .field("certificate", &self.certificate_der.is_some())
            .field("federated", &self.federated)
            .finish()
    }
}

/// A federated identity credential: Entra accepts a JWT from `issuer`
/// whose `sub` and `aud` are exactly these (case-sensitive) in place of a
/// secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FederatedCredentialSpec {
    pub issuer: String,
    pub subject: String,
    /// [`TOKEN_EXCHANGE_AUDIENCE`] unless configured otherwise.
    pub audience: String,
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
    /// No Entra ID integration: `listClusterUserCredential` returns a client
    /// certificate (CN `clusterUser`, O `system:masters`) from the cluster's
    /// own CA, and the API server authenticates client certificates only.
    LocalAccounts,
}

impl ClusterAad {
    /// Empty for [`ClusterAad::LocalAccounts`].
    pub fn server_id(&self) -> &str {
        match self {
            ClusterAad::ManagedAad => AKS_SERVER_APP_ID,
            ClusterAad::LegacyAad { server_id, .. } => server_id,
            ClusterAad::LocalAccounts => "",
        }
    }

    /// Empty for [`ClusterAad::LocalAccounts`].
    pub fn client_id(&self) -> &str {
        match self {
            ClusterAad::ManagedAad => AKS_CLIENT_APP_ID,
            ClusterAad::LegacyAad { client_id, .. } => client_id,
            ClusterAad::LocalAccounts => "",
        }
    }

    /// The `aud` the cluster's API server insists on. Managed clusters run
    /// guard, which compares `aud` with the server id; legacy clusters run
    /// kube-apiserver's OIDC authenticator with `--oidc-client-id=spn:<id>`
    /// (aks-engine), which is why the legacy auth-provider (no
    /// `config-mode`) asks for `spn:<id>`. Empty for local accounts, which
    /// take no Entra token at all.
    pub fn audience(&self) -> String {
        match self {
            ClusterAad::ManagedAad => AKS_SERVER_APP_ID.to_owned(),
            ClusterAad::LegacyAad { server_id, .. } => format!("spn:{server_id}"),
            ClusterAad::LocalAccounts => String::new(),
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
    /// contoso: alice (active), locked, mfa, disabled; service principals
    /// with a secret ([`standard::SP_SECRET_CLIENT_ID`]), a certificate
    /// ([`standard::SP_CERT_CLIENT_ID`]) and a federated credential
    /// ([`standard::WORKLOAD_CLIENT_ID`]); clusters `aks-one` (managed, azure
    /// format), `aks-two` (managed, exec format), `aks-legacy` (legacy AAD)
    /// and `aks-local` (local accounts, no Entra ID), all in subscription
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
                UserSpec {
                    upn: standard::BOB.to_owned(),
                    password: standard::FEDERATED_PASSWORD.to_owned(),
                    state: UserState::Active,
                },
            ],
            service_principals: standard_service_principals(),
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
                // AKS ignores `format` for clusters without Entra ID.
                cluster(
                    standard::LOCAL_CLUSTER,
                    ClusterAad::LocalAccounts,
                    KubeconfigFormat::Azure,
                ),
            ],
            token_lifetime: Duration::from_secs(3599),
            lockout_threshold: 10,
            environment: "AzurePublicCloud".to_owned(),
            federation: Some(crate::adfs::Federation::fabrikam()),
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

    pub fn service_principal(&self, client_id: &str) -> Option<&ServicePrincipalSpec> {
        self.service_principals
            .iter()
            .find(|sp| sp.client_id.eq_ignore_ascii_case(client_id))
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

/// The three service principals of [`Scenario::standard`].
fn standard_service_principals() -> Vec<ServicePrincipalSpec> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let sp = |client_id: &str| ServicePrincipalSpec {
        client_id: client_id.to_owned(),
        secret: None,
        certificate_der: None,
        federated: None,
    };
    vec![
        ServicePrincipalSpec {
            secret: Some(standard::SP_SECRET.to_owned()),
            ..sp(standard::SP_SECRET_CLIENT_ID)
        },
        ServicePrincipalSpec {
            // The checked-in PEM parses (a unit test makes sure).
            certificate_der: CertificateDer::from_pem_slice(standard::SP_CERT_PEM.as_bytes())
                .ok()
                .map(|c| c.to_vec()),
            ..sp(standard::SP_CERT_CLIENT_ID)
        },
        ServicePrincipalSpec {
            federated: Some(FederatedCredentialSpec {
                issuer: standard::WORKLOAD_ISSUER.to_owned(),
                subject: standard::WORKLOAD_SUBJECT.to_owned(),
                audience: TOKEN_EXCHANGE_AUDIENCE.to_owned(),
            }),
            ..sp(standard::WORKLOAD_CLIENT_ID)
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standard_service_principals_are_complete() {
        let s = Scenario::standard();
        let secret = s.service_principal(standard::SP_SECRET_CLIENT_ID);
        assert_eq!(
            secret.and_then(|sp| sp.secret.as_deref()),
            Some(standard::SP_SECRET)
        );
        let cert = s.service_principal(&standard::SP_CERT_CLIENT_ID.to_uppercase());
        assert!(cert.is_some_and(|sp| sp.certificate_der.is_some() && sp.secret.is_none()));
        let wi = s.service_principal(standard::WORKLOAD_CLIENT_ID);
        assert_eq!(
            wi.and_then(|sp| sp.federated.as_ref())
                .map(|f| f.audience.as_str()),
            Some(TOKEN_EXCHANGE_AUDIENCE)
        );
        assert_eq!(
            s.cluster(standard::LOCAL_CLUSTER).map(|c| &c.aad),
            Some(&ClusterAad::LocalAccounts)
        );
        assert!(!format!("{secret:?}").contains(standard::SP_SECRET));
    }
}
