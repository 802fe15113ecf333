//! Clusters without Entra ID integration ([`ClusterAad::LocalAccounts`]):
//! `listClusterUserCredential` returns a kubeconfig whose user carries a
//! client certificate, and the API server authenticates client
//! certificates.
//!
//! Each such cluster gets its own CA (CN `ca`, as AKS names it) at start-up
//! and one client certificate from it: CN `clusterUser`, O
//! `system:masters`, ECDSA P-256, valid two years (AKS issues cluster
//! certificates for two years), the same one on every call as AKS does
//! until its certificates are rotated.
//!
//! TLS works as kube-apiserver's does (`tls.RequestClientCert`): the server
//! asks for a certificate, hints the cluster CA, accepts a handshake
//! without one or with one from any CA (the handshake signature is still
//! checked, so the client holds the key), and the request handler then
//! verifies the chain against the cluster CA (validity and the clientAuth
//! usage included). No certificate, a certificate from another CA or an
//! expired one: 401 with a `Status` body, like kube-apiserver. The
//! username is the certificate's CN (Kubernetes' x509 authenticator), which
//! the counters record as the caller.
//!
//! The server certificate is the emulator's usual one (from
//! [`crate::Emulator::ca_pem`]), so the kubeconfig's
//! `certificate-authority-data` is the emulator CA as for other clusters.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::ConnectInfo;
use axum::extract::connect_info::Connected;
use axum::serve::IncomingStream;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PKCS_ECDSA_P256_SHA256,
};
use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

use crate::kubeconfig;
use crate::scenario::{ClusterAad, ClusterSpec, Scenario};
use crate::tls::{TlsError, TlsListener};
use crate::x509;

/// Two years, as AKS issues cluster certificates.
const CLIENT_CERT_LIFETIME: Duration = Duration::from_secs(2 * 365 * 86_400);
const CA_LIFETIME: Duration = Duration::from_secs(30 * 365 * 86_400);

/// The client credential of a local-account cluster, as its kubeconfig
/// carries it.
#[derive(Clone)]
pub struct LocalAccountCredential {
    /// PEM of the client certificate (CN `clusterUser`, O `system:masters`).
    pub certificate_pem: String,
    /// PEM (PKCS#8) of its ECDSA P-256 key.
    pub key_pem: String,
    /// The certificate's `notAfter`.
    pub not_after: SystemTime,
    /// PEM of the cluster CA that issued it (the API server trusts only
    /// this one for client certificates).
    pub cluster_ca_pem: String,
}

impl std::fmt::Debug for LocalAccountCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalAccountCredential")
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

pub(crate) struct LocalCluster {
    pub credential: LocalAccountCredential,
    acceptor: TlsAcceptor,
    /// Verifies presented chains against the cluster CA, in the handler.
    verifier: Arc<dyn ClientCertVerifier>,
}

/// Every local-account cluster of the scenario, by name.
#[derive(Default)]
pub(crate) struct LocalClusters {
    clusters: BTreeMap<String, LocalCluster>,
}

impl LocalClusters {
    /// Makes a CA and client certificate per local-account cluster; their
    /// API servers serve `server`'s certificate.
    pub(crate) fn new(
        scenario: &Scenario,
        server: &rustls::ServerConfig,
        now: u64,
    ) -> Result<LocalClusters, TlsError> {
        let mut clusters = BTreeMap::new();
        for spec in &scenario.clusters {
            if spec.aad == ClusterAad::LocalAccounts {
                clusters.insert(spec.name.clone(), LocalCluster::new(server, now)?);
            }
        }
        Ok(LocalClusters { clusters })
    }

    pub(crate) fn get(&self, name: &str) -> Option<&LocalCluster> {
        self.clusters.get(name)
    }

    pub(crate) fn acceptor(&self, name: &str) -> Option<TlsAcceptor> {
        self.clusters.get(name).map(|c| c.acceptor.clone())
    }
}

impl LocalCluster {
    fn new(server: &rustls::ServerConfig, now: u64) -> Result<LocalCluster, TlsError> {
        let at = |unix: u64| rcgen::date_time_ymd(1970, 1, 1) + Duration::from_secs(unix);
        let ca_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
        ca_params.distinguished_name = DistinguishedName::new();
        ca_params.distinguished_name.push(DnType::CommonName, "ca");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        ca_params.not_before = at(now.saturating_sub(3600));
        ca_params.not_after = at(now) + CA_LIFETIME;
        let ca_cert = ca_params.self_signed(&ca_key)?;
        let issuer = Issuer::new(ca_params, ca_key);

        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::OrganizationName, "system:masters");
        params
            .distinguished_name
            .push(DnType::CommonName, "clusterUser");
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.use_authority_key_identifier_extension = true;
        params.not_before = at(now.saturating_sub(300));
        let not_after = now + CLIENT_CERT_LIFETIME.as_secs();
        params.not_after = at(not_after);
        let cert = params.signed_by(&key, &issuer)?;

        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca_cert.der().clone())?;
        let verifier =
            WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                .build()
                .map_err(|e| rustls::Error::General(e.to_string()))?;
        let hints = x509::parse(ca_cert.der())
            .map(|info| vec![rustls::DistinguishedName::from(info.subject.to_vec())])
            .unwrap_or_default();
        let mut config = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()?
            .with_client_cert_verifier(Arc::new(RequestClientCert { hints, provider }))
            .with_cert_resolver(server.cert_resolver.clone());
        config.alpn_protocols = server.alpn_protocols.clone();
        Ok(LocalCluster {
            credential: LocalAccountCredential {
                certificate_pem: cert.pem(),
                key_pem: key.serialize_pem(),
                not_after: UNIX_EPOCH + Duration::from_secs(not_after),
                cluster_ca_pem: ca_cert.pem(),
            },
            acceptor: TlsAcceptor::from(Arc::new(config)),
            verifier,
        })
    }

    /// The username of a request: the CN of a client certificate that
    /// chains to the cluster CA. `None` means 401.
    pub(crate) fn caller(&self, extensions: &axum::http::Extensions) -> Option<String> {
        let ConnectInfo(PeerCertificates(chain)) =
            extensions.get::<ConnectInfo<PeerCertificates>>()?;
        let (end_entity, intermediates) = chain.as_deref()?.split_first()?;
        self.verifier
            .verify_client_cert(end_entity, intermediates, UnixTime::now())
            .ok()?;
        let info = x509::parse(end_entity)?;
        x509::common_name(info.subject).filter(|cn| !cn.is_empty())
    }
}

/// kube-apiserver's `RequestClientCert`: ask, hint, accept whatever comes
/// (the handler decides), but check the handshake signature.
#[derive(Debug)]
struct RequestClientCert {
    hints: Vec<rustls::DistinguishedName>,
    provider: Arc<CryptoProvider>,
}

impl ClientCertVerifier for RequestClientCert {
    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[rustls::DistinguishedName] {
        &self.hints
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// The certificates a client presented on this connection, for the
/// handler (axum connect info).
#[derive(Debug, Clone)]
pub(crate) struct PeerCertificates(Option<Arc<[CertificateDer<'static>]>>);

impl Connected<IncomingStream<'_, TlsListener>> for PeerCertificates {
    fn connect_info(stream: IncomingStream<'_, TlsListener>) -> Self {
        let (_, connection) = stream.io().get_ref();
        PeerCertificates(connection.peer_certificates().map(Arc::from))
    }
}

/// Serves a local-account cluster's API server until `stop` turns true.
pub(crate) fn serve(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    router: Router,
    mut stop: watch::Receiver<bool>,
) -> JoinHandle<()> {
    let listener = TlsListener::new(listener, acceptor);
    tokio::spawn(async move {
        let signal = async move {
            let _ = stop.wait_for(|stopped| *stopped).await;
        };
        let service = router.into_make_service_with_connect_info::<PeerCertificates>();
        if let Err(e) = axum::serve(listener, service)
            .with_graceful_shutdown(signal)
            .await
        {
            tracing::warn!(error = %e, "emulator server stopped");
        }
    })
}

/// The kubeconfig `listClusterUserCredential` returns for a local-account
/// cluster, in the same Go-YAML shape as the others.
pub(crate) fn kubeconfig(
    cluster: &ClusterSpec,
    server: &str,
    ca_pem: &str,
    credential: &LocalAccountCredential,
) -> String {
    let name = kubeconfig::scalar(&cluster.name);
    let user = kubeconfig::scalar(&kubeconfig::user_name(cluster));
    let server = kubeconfig::scalar(server);
    let ca = STANDARD.encode(ca_pem);
    let cert = STANDARD.encode(&credential.certificate_pem);
    let key = STANDARD.encode(&credential.key_pem);
    format!(
        "apiVersion: v1
clusters:
- cluster:
    certificate-authority-data: {ca}
    server: {server}
  name: {name}
contexts:
- context:
    cluster: {name}
    user: {user}
  name: {name}
current-context: {name}
kind: Config
preferences: {{}}
users:
- name: {user}
  user:
    client-certificate-data: {cert}
    client-key-data: {key}
"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::standard;

    fn server_config() -> rustls::ServerConfig {
        let tls = crate::tls::generate().expect("emulator TLS");
        Arc::unwrap_or_clone(tls.config)
    }

    #[test]
    fn client_certificate_shape() {
        let s = Scenario::standard();
        let now = crate::time::now_unix();
        let local = LocalClusters::new(&s, &server_config(), now).expect("certificates");
        let cluster = local.get(standard::LOCAL_CLUSTER).expect("aks-local");
        assert!(local.get("aks-one").is_none());
        let c = &cluster.credential;
        let der = rustls::pki_types::pem::PemObject::from_pem_slice(c.certificate_pem.as_bytes())
            .map(|d: CertificateDer<'static>| d.to_vec())
            .expect("PEM");
        let info = x509::parse(&der).expect("parses");
        assert_eq!(
            x509::common_name(info.subject).as_deref(),
            Some("clusterUser")
        );
        assert_eq!(x509::organizations(info.subject), ["system:masters"]);
        assert_eq!(info.not_after, now + CLIENT_CERT_LIFETIME.as_secs());
        assert_eq!(
            c.not_after,
            UNIX_EPOCH + Duration::from_secs(info.not_after)
        );
        assert!(c.key_pem.starts_with("-----BEGIN PRIVATE KEY-----"));
        assert!(!format!("{c:?}").contains("PRIVATE"));
        let yaml = kubeconfig(
            s.cluster(standard::LOCAL_CLUSTER).expect("spec"),
            "https://127.0.0.1:1",
            "PEM",
            c,
        );
        assert!(yaml.contains(
            "- name: clusterUser_rg-demo_aks-local\n  user:\n    client-certificate-data: "
        ));
        assert!(yaml.ends_with(&format!(
            "    client-key-data: {}\n",
            STANDARD.encode(&c.key_pem)
        )));
    }

    #[test]
    fn the_handler_wants_a_certificate_from_the_cluster_ca() {
        let s = Scenario::standard();
        let now = crate::time::now_unix();
        let config = server_config();
        let ours = LocalClusters::new(&s, &config, now).expect("certificates");
        let theirs = LocalClusters::new(&s, &config, now).expect("certificates");
        let ours = ours.get(standard::LOCAL_CLUSTER).expect("aks-local");
        let theirs = theirs.get(standard::LOCAL_CLUSTER).expect("aks-local");
        let with = |cred: &LocalAccountCredential| {
            let der =
                rustls::pki_types::pem::PemObject::from_pem_slice(cred.certificate_pem.as_bytes())
                    .expect("PEM");
            let mut ext = axum::http::Extensions::new();
            ext.insert(ConnectInfo(PeerCertificates(Some(Arc::from(vec![der])))));
            ext
        };
        assert_eq!(
            ours.caller(&with(&ours.credential)).as_deref(),
            Some("clusterUser")
        );
        assert_eq!(ours.caller(&with(&theirs.credential)), None, "another CA");
        let mut none = axum::http::Extensions::new();
        assert_eq!(ours.caller(&none), None, "no connect info");
        none.insert(ConnectInfo(PeerCertificates(None)));
        assert_eq!(ours.caller(&none), None, "no certificate");
        let mut garbage = axum::http::Extensions::new();
        garbage.insert(ConnectInfo(PeerCertificates(Some(Arc::from(vec![
            CertificateDer::from(vec![0x30, 0x00]),
        ])))));
        assert_eq!(ours.caller(&garbage), None, "not a certificate");
    }
}
