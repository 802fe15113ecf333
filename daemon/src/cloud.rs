//! Azure clouds: the built-in national clouds and custom ones from the config.

/// Endpoints of one Azure cloud. URLs carry no trailing slash, except
/// `arm_resource`, whose trailing slash is part of the resource name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cloud {
    /// `AzurePublicCloud`, ... or the name of a `[clouds.NAME]` table.
    pub name: String,
    pub login_endpoint: String,
    pub arm_endpoint: String,
    pub arm_resource: String,
}

/// The `environment` names kubeconfigs use, with their endpoints
/// (PROTOCOLS.md, "Clouds").
const BUILT_IN: [(&str, &str, &str, &str); 3] = [
    (
        "AzurePublicCloud",
        "https://login.microsoftonline.com",
        "https://management.azure.com",
        "https://management.core.windows.net/",
    ),
    (
        "AzureUSGovernmentCloud",
        "https://login.microsoftonline.us",
        "https://management.usgovcloudapi.net",
        "https://management.core.usgovcloudapi.net/",
    ),
    (
        "AzureChinaCloud",
        "https://login.chinacloudapi.cn",
        "https://management.chinacloudapi.cn",
        "https://management.core.chinacloudapi.cn/",
    ),
];

pub const DEFAULT_CLOUD: &str = "AzurePublicCloud";

impl Cloud {
    /// A built-in cloud by its kubeconfig `environment` name (case-insensitive,
    /// as the azure auth provider compares). Unknown names are `None`: never a
    /// silent fallback to the public cloud.
    pub fn built_in(name: &str) -> Option<Cloud> {
        BUILT_IN
            .iter()
            .find(|(n, ..)| n.eq_ignore_ascii_case(name))
            .map(|(n, login, arm, res)| Cloud {
                name: n.to_string(),
                login_endpoint: login.to_string(),
                arm_endpoint: arm.to_string(),
                arm_resource: res.to_string(),
            })
    }

    pub fn built_in_names() -> impl Iterator<Item = &'static str> {
        BUILT_IN.iter().map(|(n, ..)| *n)
    }
}

/// A v2 scope from a v1 resource: the resource plus `/.default`, keeping a
/// trailing slash (`https://management.core.windows.net//.default`).
pub fn scope_for(resource: &str) -> String {
    format!("{resource}/.default")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_in_clouds_by_name() {
        let us = Cloud::built_in("azureusgovernmentcloud").unwrap();
        assert_eq!(us.login_endpoint, "https://login.microsoftonline.us");
        assert!(Cloud::built_in("AzureGermanCloud").is_none());
    }

    #[test]
    fn scope_keeps_the_trailing_slash() {
        assert_eq!(
            scope_for("https://management.core.windows.net/"),
            "https://management.core.windows.net//.default"
        );
        assert_eq!(
            scope_for("6dae42f8-4368-4678-94ff-3960e28e3630"),
            "6dae42f8-4368-4678-94ff-3960e28e3630/.default"
        );
    }
}
