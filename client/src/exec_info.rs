//! `KUBERNETES_EXEC_INFO`: which ExecCredential apiVersion kubectl wants.
//!
//! client-go rejects an answer in another apiVersion than the one it asked
//! for, so the version is taken from the request, never assumed. kubectl
//! always sets the variable; when it is absent a person is running the plugin
//! by hand, and v1 (GA since Kubernetes 1.22) is the sensible answer.

use std::borrow::Cow;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

use akscred_proto::{EXEC_API_V1, EXEC_API_V1BETA1};
use serde::Deserialize;

pub const ENV: &str = "KUBERNETES_EXEC_INFO";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApiVersion {
    V1,
    V1Beta1,
}

impl ApiVersion {
    /// The value of the daemon's `api_version` query parameter.
    pub fn query(self) -> &'static str {
        match self {
            ApiVersion::V1 => "v1",
            ApiVersion::V1Beta1 => "v1beta1",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{ENV} is not valid JSON: {0}")]
    NotJson(serde_json::Error),
    #[error("{ENV} has no apiVersion")]
    NoApiVersion,
    #[error("{ENV} asks for apiVersion `{0}`, which akscred does not support")]
    Unsupported(String),
}

/// Only `apiVersion` matters; `spec.interactive` is irrelevant because the
/// plugin never prompts, and `spec.cluster` because the cluster is named on
/// the command line.
#[derive(Deserialize)]
struct ExecInfo<'a> {
    #[serde(rename = "apiVersion", borrow, default)]
    api_version: Option<Cow<'a, str>>,
}

pub fn api_version(info: Option<&OsStr>) -> Result<ApiVersion, Error> {
    let Some(info) = info.filter(|s| !s.is_empty()) else {
        return Ok(ApiVersion::V1);
    };
    let info: ExecInfo<'_> = serde_json::from_slice(info.as_bytes()).map_err(Error::NotJson)?;
    match info.api_version.as_deref() {
        Some(EXEC_API_V1) => Ok(ApiVersion::V1),
        Some(EXEC_API_V1BETA1) => Ok(ApiVersion::V1Beta1),
        Some(other) => Err(Error::Unsupported(other.to_owned())),
        None => Err(Error::NoApiVersion),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<ApiVersion, Error> {
        api_version(Some(OsStr::new(s)))
    }

    #[test]
    fn versions_kubectl_sends() {
        // What kubectl 1.3x puts in the variable, spec and all.
        let v1 = r#"{"kind":"ExecCredential","apiVersion":"client.authentication.k8s.io/v1","spec":{"interactive":false}}"#;
        let v1beta1 = r#"{"kind":"ExecCredential","apiVersion":"client.authentication.k8s.io/v1beta1","spec":{"cluster":{"server":"https://x:443","certificate-authority-data":"AA=="},"interactive":true}}"#;
        assert_eq!(parse(v1).ok(), Some(ApiVersion::V1));
        assert_eq!(parse(v1beta1).ok(), Some(ApiVersion::V1Beta1));
        assert_eq!(ApiVersion::V1.query(), "v1");
        assert_eq!(ApiVersion::V1Beta1.query(), "v1beta1");
    }

    #[test]
    fn escaped_strings_are_understood() {
        let v = r#"{"apiVersion":"client.authentication.k8s.io\/v1beta1"}"#;
        assert_eq!(parse(v).ok(), Some(ApiVersion::V1Beta1));
    }

    #[test]
    fn absent_or_empty_means_v1() {
        assert_eq!(api_version(None).ok(), Some(ApiVersion::V1));
        assert_eq!(api_version(Some(OsStr::new(""))).ok(), Some(ApiVersion::V1));
    }

    #[test]
    fn unknown_version_is_named() {
        let e = parse(r#"{"apiVersion":"client.authentication.k8s.io/v1alpha1"}"#);
        match e {
            Err(e @ Error::Unsupported(_)) => {
                assert!(
                    e.to_string()
                        .contains("`client.authentication.k8s.io/v1alpha1`")
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn bad_input() {
        assert!(matches!(parse("{"), Err(Error::NotJson(_))));
        // serde reads a struct from an array too; either way it is refused.
        assert!(parse("[]").is_err());
        assert!(matches!(
            parse(r#"{"apiVersion":1}"#),
            Err(Error::NotJson(_))
        ));
        assert!(matches!(
            parse(r#"{"kind":"ExecCredential"}"#),
            Err(Error::NoApiVersion)
        ));
        let not_utf8 = OsStr::from_bytes(b"{\"apiVersion\":\"\xff\"}");
        assert!(matches!(
            api_version(Some(not_utf8)),
            Err(Error::NotJson(_))
        ));
    }
}
