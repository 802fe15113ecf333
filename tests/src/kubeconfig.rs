//! The kubeconfig AKS returns from `listClusterUserCredential`, written the
//! way AKS writes it (Go's YAML encoder: keys sorted, block style, `'1'`
//! quoted, kubelogin's install hint as a `|2` block with a leading blank
//! line), so parsers are tested against the real shape.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use crate::scenario::{ClusterAad, ClusterSpec, KubeconfigFormat};

/// `clusterUser_<rg>_<name>`.
pub fn user_name(cluster: &ClusterSpec) -> String {
    format!("clusterUser_{}_{}", cluster.resource_group, cluster.name)
}

/// A YAML scalar: plain when that cannot be misread, single-quoted otherwise.
pub(crate) fn scalar(s: &str) -> String {
    let plain_safe = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:@".contains(c))
        && !s.starts_with(['-', ':', '@', '.'])
        && !s.ends_with(':')
        && !matches!(
            s.to_ascii_lowercase().as_str(),
            "true" | "false" | "yes" | "no" | "on" | "off" | "null" | "y" | "n"
        )
        && s.parse::<f64>().is_err();
    if plain_safe {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', "''"))
    }
}

pub fn cluster_user(
    cluster: &ClusterSpec,
    server: &str,
    ca_pem: &str,
    tenant_id: &str,
    environment: &str,
    format: KubeconfigFormat,
) -> String {
    let name = scalar(&cluster.name);
    let user = scalar(&user_name(cluster));
    let ca = STANDARD.encode(ca_pem);
    let server_id = scalar(cluster.aad.server_id());
    let client_id = scalar(cluster.aad.client_id());
    let tenant_id = scalar(tenant_id);
    let environment = scalar(environment);
    let server = scalar(server);
    let auth = match format {
        KubeconfigFormat::Azure => {
            let config_mode = match cluster.aad {
                ClusterAad::ManagedAad => "        config-mode: '1'\n",
                // Local-account clusters get `local_accounts::kubeconfig`.
                ClusterAad::LegacyAad { .. } | ClusterAad::LocalAccounts => "",
            };
            format!(
                "    auth-provider:
      config:
        apiserver-id: {server_id}
        client-id: {client_id}
{config_mode}        environment: {environment}
        tenant-id: {tenant_id}
      name: azure
"
            )
        }
        KubeconfigFormat::Exec => {
            // kubelogin's switch for the `spn:` audience of legacy clusters,
            // as `kubelogin convert-kubeconfig` writes it.
            let legacy = match cluster.aad {
                ClusterAad::ManagedAad | ClusterAad::LocalAccounts => "",
                ClusterAad::LegacyAad { .. } => "      - --legacy\n",
            };
            format!(
                "    exec:
      apiVersion: client.authentication.k8s.io/v1beta1
      args:
      - get-token
      - --environment
      - {environment}
      - --server-id
      - {server_id}
      - --client-id
      - {client_id}
      - --tenant-id
      - {tenant_id}
      - --login
      - devicecode
{legacy}      command: kubelogin
      env: null
      installHint: |2

        kubelogin is not installed which is required to connect to AAD enabled cluster.

        To learn more, please go to https://aka.ms/aks/kubelogin
      provideClusterInfo: false
"
            )
        }
    };
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
{auth}"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::Scenario;

    #[test]
    fn scalars() {
        assert_eq!(scalar("aks-one"), "aks-one");
        assert_eq!(scalar("https://127.0.0.1:443"), "https://127.0.0.1:443");
        assert_eq!(scalar("1"), "'1'");
        assert_eq!(scalar("1e10"), "'1e10'");
        assert_eq!(scalar("yes"), "'yes'");
        assert_eq!(scalar("it's"), "'it''s'");
        assert_eq!(scalar("-x"), "'-x'");
        assert_eq!(scalar(""), "''");
    }

    #[test]
    fn azure_and_exec_shapes() {
        let s = Scenario::standard();
        let one = s.cluster("aks-one").expect("standard cluster");
        let y = cluster_user(
            one,
            "https://127.0.0.1:1",
            "PEM",
            "tid",
            "AzurePublicCloud",
            KubeconfigFormat::Azure,
        );
        assert!(y.contains("- name: clusterUser_rg-demo_aks-one\n  user:\n    auth-provider:\n"));
        assert!(y.contains("        config-mode: '1'\n"));
        assert!(y.contains(&format!(
            "certificate-authority-data: {}\n",
            STANDARD.encode("PEM")
        )));
        assert!(y.ends_with("      name: azure\n"));

        let legacy = s.cluster("aks-legacy").expect("standard cluster");
        let y = cluster_user(
            legacy,
            "https://127.0.0.1:1",
            "PEM",
            "tid",
            "AzurePublicCloud",
            KubeconfigFormat::Azure,
        );
        assert!(!y.contains("config-mode"));
        assert!(y.contains(&format!(
            "apiserver-id: {}\n",
            crate::scenario::standard::LEGACY_SERVER_ID
        )));

        let y = cluster_user(
            one,
            "https://127.0.0.1:1",
            "PEM",
            "tid",
            "AzurePublicCloud",
            KubeconfigFormat::Exec,
        );
        assert!(y.contains("      - --server-id\n      - 6dae42f8-4368-4678-94ff-3960e28e3630\n"));
        assert!(y.contains("      installHint: |2\n\n        kubelogin is not installed"));
        assert!(y.ends_with("      provideClusterInfo: false\n"));
        assert!(!y.contains("--legacy"));
        let y = cluster_user(
            legacy,
            "https://127.0.0.1:1",
            "PEM",
            "tid",
            "AzurePublicCloud",
            KubeconfigFormat::Exec,
        );
        assert!(y.contains("      - devicecode\n      - --legacy\n      command: kubelogin\n"));
    }
}
