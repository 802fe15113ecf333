//! An emulator of the Azure services akscred talks to, for tests that
//! cannot reach Azure: Entra ID (user realm, OIDC discovery, JWKS, v1 and v2
//! token endpoints with the password and refresh-token grants), Azure
//! Resource Manager (`listClusterUserCredential`) and one AKS API server per
//! cluster. Everything is HTTPS on 127.0.0.1 with certificates from a CA
//! made at start-up. Wire details follow `PROTOCOLS.md`; the fidelity of
//! the Entra part is checked against MSAL for Python
//! (`tests/tests/msal_fidelity.rs`).
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use akscred_tests::{Emulator, Scenario, standard};
//!
//! let emu = Emulator::start(Scenario::standard()).await?;
//! let login = emu.login_url(); // https://127.0.0.1:PORT
//! let arm = emu.arm_url();
//! let ca = emu.ca_pem(); // trust only this
//! let server = emu.cluster_server("aks-one"); // Some("https://127.0.0.1:PORT")
//! // … run akscredd and kubectl against it …
//! let c = emu.counters();
//! assert_eq!(c.password_failures(standard::ALICE), 0);
//! # Ok(()) }
//! ```
//!
//! # The emulated tenant
//!
//! [`Scenario::standard`]: tenant `contoso.onmicrosoft.com`
//! ([`standard::TENANT_ID`]) with custom domain `contoso.com`; users
//! `alice@contoso.com` (active), `locked@…`, `mfa@…`, `disabled@…`, all with
//! password [`standard::PASSWORD`]; service principals with a client
//! secret ([`standard::SP_SECRET_CLIENT_ID`]), with a certificate
//! ([`standard::SP_CERT_CLIENT_ID`], test-only PEM and PKCS#12 in
//! `tests/data/sp-cert.*`) and with a federated credential for workload
//! identity ([`standard::WORKLOAD_CLIENT_ID`]); clusters `aks-one`
//! (AKS-managed AAD, kubeconfig in `azure` format by default), `aks-two`
//! (managed, `exec`), `aks-legacy` (legacy AAD with its own server and
//! client apps) and `aks-local` (local accounts, no Entra ID), in
//! subscription [`standard::SUBSCRIPTION`], resource group `rg-demo`.
//! [`Scenario::many_managed`] has the same tenant and `n` managed clusters.
//!
//! # Service principals and workload identity
//!
//! Both token endpoints take `grant_type=client_credentials` with a
//! `client_secret`, or with a `client_assertion` that is either signed with
//! the registered certificate (RS256/PS256, `x5t`/`x5t#S256`, `aud` = the
//! token endpoint, fresh `jti`) or a federated token from
//! [`Emulator::issue_federated_token`]. Every check and its AADSTS code is
//! listed in `client_credentials.rs` and `workload.rs`. Access tokens for
//! service principals are app-only (`idtyp` `app`, `appid`, no `upn`);
//! ARM and the API servers accept them, and count the caller by `appid`.
//! Knobs: [`Emulator::expire_client_secret`], [`Emulator::set_client_secret`],
//! [`Emulator::expire_certificate`], [`Emulator::set_assertion_replay_check`].
//!
//! # Local accounts
//!
//! `aks-local`'s `listClusterUserCredential` returns a kubeconfig with
//! `client-certificate-data`/`client-key-data` (CN `clusterUser`, O
//! `system:masters`, from the cluster's own CA, valid two years; also
//! [`Emulator::local_account_credential`]); its API server authenticates
//! that certificate and answers 401 without it.
//!
//! # Federation (AD FS)
//!
//! Users of [`standard::FEDERATED_DOMAIN`] (`bob@fabrikam.com`, password
//! [`standard::FEDERATED_PASSWORD`]) are federated: the user realm answers
//! `Federated` with the metadata and WS-Trust URLs of an emulated AD FS on
//! its own listener ([`Emulator::adfs_url`]). It serves a real MEX document
//! ([`MexOffer`]: 1.3 and 2005, 2005 only, padded and wrapped in a SOAP
//! envelope, missing, malformed), checks WS-Trust 1.3 and 2005 requests,
//! answers a wrong password with HTTP 500 and `a:FailedAuthentication`, and
//! issues SAML 1.1 or 2.0 assertions ([`SamlVersion`]) that both token
//! endpoints redeem with the `saml1_1-bearer` / `saml2-bearer` grants
//! (standard base64 or URL-safe without padding), refusing assertions it
//! did not issue, changed ones and expired ones. Knobs:
//! [`Emulator::set_mex_offer`], [`Emulator::set_saml_version`],
//! [`Emulator::expire_assertions`], [`Emulator::adfs_fail_next`]; counters:
//! [`Counters::wstrust_requests`], [`Counters::wstrust_failures`].
//!
//! # Tokens
//!
//! Access tokens are RS256 JWTs signed with the checked-in test key
//! (`tests/data/emulator-signing-key.pem`), published at both JWKS paths.
//! They are v1-shaped whichever endpoint issued them, as Entra does for
//! resources that accept v1 tokens (ARM and the AKS server apps):
//! `iss` = `https://sts.windows.net/{tid}/`, `ver` = `1.0`, `aud` = the
//! resource as requested (v1 `resource`; v2 scope minus `/.default`, so
//! `https://management.core.windows.net//.default` gives
//! `https://management.core.windows.net/`), plus `tid`, `oid`, `upn`,
//! `unique_name`, `appid` (the client id), `scp`, `iat`, `nbf`, `exp`.
//! Unknown clients (AADSTS700016) and resources (AADSTS500011) are refused.
//! Refresh tokens are opaque, bound to user and client, and rotate: each
//! is good for one redemption (then AADSTS70008).
//!
//! Who accepts what: ARM wants `aud` in [`ARM_AUDIENCES`]; an AKS-managed
//! cluster wants `aud` = [`AKS_SERVER_APP_ID`]; a legacy cluster wants
//! `aud` = `spn:<server id>` (what the v1 endpoint issues for
//! `resource=spn:<server id>`, as the legacy auth-provider asks).
//! [`Emulator::issue_access_token`] mints a token without a sign-in.
//!
//! # Kubeconfigs
//!
//! `listClusterUserCredential` answers as AKS does (`format=azure|exec`,
//! default per cluster); the YAML is [`kubeconfig::cluster_user`], also
//! available as [`Emulator::kubeconfig_for`] for `kubeconfig = path`
//! imports. Legacy clusters have no `config-mode`, and their exec form ends
//! with kubelogin's `--legacy`.
//!
//! # Counters
//!
//! [`Emulator::counters`] snapshots requests per endpoint kind, token
//! requests per `(grant_type, resource)`, password attempts and failures
//! per user ([`Counters::password_attempts`]), client-credentials grants,
//! failures and assertion replays per client id
//! ([`Counters::client_credential_grants`], [`Counters::assertion_replays`]),
//! `listClusterUserCredential` calls per cluster, and API server calls per
//! cluster and caller.
//!
//! # Trouble on demand
//!
//! Smart lockout after [`Scenario::lockout_threshold`] wrong passwords,
//! [`Emulator::set_user_state`], [`Emulator::set_password`] (refresh tokens
//! then fail with AADSTS50173), [`Emulator::expire_refresh_tokens`]
//! (AADSTS700082), and [`Emulator::fail_next`] for 503/429 answers from the
//! token endpoints or ARM, or for broken ones: any body ([`Fault::Body`]), an
//! enormous one ([`Fault::Enormous`]), a bad kubeconfig from ARM
//! ([`Fault::Kubeconfig`]).

mod aad_error;
mod adfs;
mod apiserver;
mod arm;
mod client_credentials;
mod counters;
mod directory;
mod emulator;
mod http;
pub mod jwt;
pub mod kubeconfig;
mod local_accounts;
mod login;
pub mod scenario;
mod time;
mod tls;
mod token;
mod workload;
mod x509;

pub use adfs::{AdfsFault, Federation, MexOffer, SamlVersion};
pub use counters::Counters;
pub use emulator::{Emulator, Fault, FaultTarget};
pub use local_accounts::LocalAccountCredential;
pub use scenario::{
    AKS_CLIENT_APP_ID, AKS_SERVER_APP_ID, ARM_AUDIENCES, ARM_RESOURCE, AZURE_CLI_CLIENT_ID,
    ClusterAad, ClusterSpec, FederatedCredentialSpec, KubeconfigFormat, Scenario,
    ServicePrincipalSpec, TOKEN_EXCHANGE_AUDIENCE, UserSpec, UserState, standard,
};
