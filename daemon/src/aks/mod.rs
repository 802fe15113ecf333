//! Azure Kubernetes Service: fetching a cluster's kubeconfig from ARM and
//! reading the API server, CA and Entra ID parameters out of it.

pub mod arm;
pub mod kubeconfig;

pub use arm::{ArmError, ArmErrorClass, ArmRefusal, credential_url, list_cluster_user_credential};
pub use kubeconfig::{
    AadParams, ClusterAccess, ClusterAuth, KubeconfigError, aad_resource, parse_skeleton,
    token_endpoint,
};
