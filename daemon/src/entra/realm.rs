//! User realm discovery (PROTOCOLS.md 1): is the account managed by Entra ID
//! (password grant) or federated to an AD FS-like server (WS-Trust first)?

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde::Deserialize;

use super::EntraError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AccountType {
    Managed,
    Federated,
    Unknown,
}

impl AccountType {
    fn parse(s: &str) -> AccountType {
        if s.eq_ignore_ascii_case("managed") {
            AccountType::Managed
        } else if s.eq_ignore_ascii_case("federated") {
            AccountType::Federated
        } else {
            AccountType::Unknown
        }
    }
}

pub const DEFAULT_AUDIENCE_URN: &str = "urn:federation:MicrosoftOnline";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRealm {
    pub account_type: AccountType,
    pub domain_name: Option<String>,
    /// `WSTrust` for AD FS.
    pub federation_protocol: Option<String>,
    /// The MEX document that names the WS-Trust endpoints.
    pub federation_metadata_url: Option<String>,
    /// The WS-Trust endpoint to use when MEX cannot be read.
    pub federation_active_auth_url: Option<String>,
    pub cloud_instance_name: Option<String>,
    /// `AppliesTo` of the WS-Trust request.
    pub cloud_audience_urn: String,
}

/// Everything but unreserved characters and `@` is encoded: a UPN cannot add
/// path segments or a query, and `alice@contoso.com` stays readable.
const UPN: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b'@');

/// `{login}/common/userrealm/{upn}?api-version=1.0`.
pub fn realm_url(login_endpoint: &str, upn: &str) -> String {
    format!(
        "{}/common/userrealm/{}?api-version=1.0",
        login_endpoint.trim_end_matches('/'),
        utf8_percent_encode(upn, UPN)
    )
}

#[derive(Deserialize)]
struct RawRealm {
    account_type: Option<String>,
    domain_name: Option<String>,
    federation_protocol: Option<String>,
    federation_metadata_url: Option<String>,
    federation_active_auth_url: Option<String>,
    cloud_instance_name: Option<String>,
    cloud_audience_urn: Option<String>,
}

fn non_empty(s: Option<String>) -> Option<String> {
    s.map(|s| s.trim().to_string()).filter(|s| !s.is_empty())
}

/// Reads a 2xx answer. A missing or unrecognised `account_type` is
/// [`AccountType::Unknown`], as in MSAL: the caller then tries the password
/// grant.
pub fn parse_realm(body: &[u8]) -> Result<UserRealm, EntraError> {
    let raw: RawRealm = serde_json::from_slice(body).map_err(|e| EntraError::Malformed {
        what: format!(
            "the answer is not the expected JSON object (error at line {}, column {})",
            e.line(),
            e.column()
        ),
        endpoint: "the user realm endpoint".into(),
    })?;
    Ok(UserRealm {
        account_type: raw
            .account_type
            .as_deref()
            .map_or(AccountType::Unknown, |s| AccountType::parse(s.trim())),
        domain_name: non_empty(raw.domain_name),
        federation_protocol: non_empty(raw.federation_protocol),
        federation_metadata_url: non_empty(raw.federation_metadata_url),
        federation_active_auth_url: non_empty(raw.federation_active_auth_url),
        cloud_instance_name: non_empty(raw.cloud_instance_name),
        cloud_audience_urn: non_empty(raw.cloud_audience_urn)
            .unwrap_or_else(|| DEFAULT_AUDIENCE_URN.to_string()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const FEDERATED: &str = r#"{"ver":"1.0","account_type":"Federated","domain_name":"microsoft.com","federation_protocol":"WSTrust","federation_metadata_url":"https://msft.sts.microsoft.com/adfs/services/trust/mex","federation_active_auth_url":"https://msft.sts.microsoft.com/adfs/services/trust/2005/usernamemixed","cloud_instance_name":"microsoftonline.com","cloud_audience_urn":"urn:federation:MicrosoftOnline"}"#;

    #[test]
    fn url_encodes_the_upn() {
        assert_eq!(
            realm_url("https://login.microsoftonline.com", "alice@contoso.com"),
            "https://login.microsoftonline.com/common/userrealm/alice@contoso.com?api-version=1.0"
        );
        assert_eq!(
            realm_url("https://l/", "a b/../x?y#z%"),
            "https://l/common/userrealm/a%20b%2F..%2Fx%3Fy%23z%25?api-version=1.0"
        );
    }

    #[test]
    fn federated() {
        let r = parse_realm(FEDERATED.as_bytes()).unwrap();
        assert_eq!(r.account_type, AccountType::Federated);
        assert_eq!(r.domain_name.as_deref(), Some("microsoft.com"));
        assert_eq!(r.federation_protocol.as_deref(), Some("WSTrust"));
        assert_eq!(
            r.federation_metadata_url.as_deref(),
            Some("https://msft.sts.microsoft.com/adfs/services/trust/mex")
        );
        assert_eq!(
            r.federation_active_auth_url.as_deref(),
            Some("https://msft.sts.microsoft.com/adfs/services/trust/2005/usernamemixed")
        );
        assert_eq!(
            r.cloud_instance_name.as_deref(),
            Some("microsoftonline.com")
        );
        assert_eq!(r.cloud_audience_urn, DEFAULT_AUDIENCE_URN);
    }

    #[test]
    fn managed_and_case_insensitive() {
        let body = br#"{"ver":"1.0","account_type":"managed","domain_name":"contoso.com","cloud_instance_name":"microsoftonline.com","cloud_audience_urn":"urn:federation:MicrosoftOnline"}"#;
        let r = parse_realm(body).unwrap();
        assert_eq!(r.account_type, AccountType::Managed);
        assert_eq!(r.federation_metadata_url, None);
        let r = parse_realm(br#"{"account_type":"FEDERATED"}"#).unwrap();
        assert_eq!(r.account_type, AccountType::Federated);
    }

    #[test]
    fn unknown_and_defaults() {
        let r = parse_realm(br#"{"ver":"1.0","account_type":"Unknown"}"#).unwrap();
        assert_eq!(r.account_type, AccountType::Unknown);
        assert_eq!(r.cloud_audience_urn, DEFAULT_AUDIENCE_URN);
        let r = parse_realm(br#"{"account_type":"Weird","cloud_audience_urn":""}"#).unwrap();
        assert_eq!(r.account_type, AccountType::Unknown);
        assert_eq!(r.cloud_audience_urn, DEFAULT_AUDIENCE_URN);
        let r = parse_realm(b"{}").unwrap();
        assert_eq!(r.account_type, AccountType::Unknown);
        let r = parse_realm(br#"{"account_type":"Federated","cloud_audience_urn":"urn:federation:MicrosoftOnline:usgov"}"#).unwrap();
        assert_eq!(r.cloud_audience_urn, "urn:federation:MicrosoftOnline:usgov");
    }

    #[test]
    fn garbage() {
        for body in [&b"<html/>"[..], b"", b"[]", br#"{"account_type":5}"#] {
            let err = parse_realm(body).unwrap_err();
            assert!(matches!(err, EntraError::Malformed { .. }), "{err}");
        }
    }
}
