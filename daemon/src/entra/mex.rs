//! WS-MetadataExchange (PROTOCOLS.md 2): which WS-Trust endpoint of a
//! federation server takes a username and password.
//!
//! A WSDL names the endpoint through a chain: a policy that asks for a
//! username token over a transport binding, a SOAP 1.2 over HTTP binding
//! that references that policy and issues tokens (the SOAP action says 1.3
//! or 2005), and a port of that binding with an address. Only endpoints
//! whose whole chain holds are offered; WS-Trust 1.3 is preferred, and only
//! https addresses are accepted (the password goes there). Whitespace
//! around addresses is trimmed and a WSDL wrapped in a SOAP envelope is
//! accepted: both are seen in the wild and break MSAL for Python.

use std::fmt;

use super::xml::{self, Element, XmlError, quote};

pub const NS_WSDL: &str = "http://schemas.xmlsoap.org/wsdl/";
pub const NS_WSP: &str = "http://schemas.xmlsoap.org/ws/2004/09/policy";
pub const NS_WSU: &str =
    "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd";
pub const NS_SP: &str = "http://docs.oasis-open.org/ws-sx/ws-securitypolicy/200702";
pub const NS_SP2005: &str = "http://schemas.xmlsoap.org/ws/2005/07/securitypolicy";
pub const NS_SOAP12_WSDL: &str = "http://schemas.xmlsoap.org/wsdl/soap12/";
pub const NS_WSA10: &str = "http://www.w3.org/2005/08/addressing";
pub const NS_SOAP12: &str = "http://www.w3.org/2003/05/soap-envelope";
pub const NS_SOAP11: &str = "http://schemas.xmlsoap.org/soap/envelope/";

const SOAP_HTTP_TRANSPORT: &str = "http://schemas.xmlsoap.org/soap/http";

/// Metadata documents are about 50 KiB.
pub const MAX_MEX: usize = 1024 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum WsTrustVersion {
    /// WS-Trust 1.3 (`http://docs.oasis-open.org/ws-sx/ws-trust/200512`).
    V13,
    /// The February 2005 draft (`http://schemas.xmlsoap.org/ws/2005/02/trust`).
    V2005,
}

impl WsTrustVersion {
    /// The SOAP action of an Issue request.
    pub fn action(self) -> &'static str {
        match self {
            WsTrustVersion::V13 => "http://docs.oasis-open.org/ws-sx/ws-trust/200512/RST/Issue",
            WsTrustVersion::V2005 => "http://schemas.xmlsoap.org/ws/2005/02/trust/RST/Issue",
        }
    }

    /// The `wst` namespace.
    pub fn namespace(self) -> &'static str {
        match self {
            WsTrustVersion::V13 => "http://docs.oasis-open.org/ws-sx/ws-trust/200512",
            WsTrustVersion::V2005 => "http://schemas.xmlsoap.org/ws/2005/02/trust",
        }
    }

    pub fn from_action(action: &str) -> Option<WsTrustVersion> {
        [WsTrustVersion::V13, WsTrustVersion::V2005]
            .into_iter()
            .find(|v| v.action() == action.trim())
    }

    /// ADAL's fallback rule: the version is in the path of the user realm's
    /// `federation_active_auth_url` (`/trust/13/usernamemixed` or
    /// `/trust/2005/usernamemixed`).
    pub fn from_url_path(url: &str) -> Option<WsTrustVersion> {
        let path = url::Url::parse(url).ok()?.path().to_ascii_lowercase();
        if path.contains("/trust/13/usernamemixed") {
            Some(WsTrustVersion::V13)
        } else if path.contains("/trust/2005/usernamemixed") {
            Some(WsTrustVersion::V2005)
        } else {
            None
        }
    }
}

impl fmt::Display for WsTrustVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            WsTrustVersion::V13 => "WS-Trust 1.3",
            WsTrustVersion::V2005 => "WS-Trust 2005",
        })
    }
}

/// A WS-Trust endpoint that takes a username and password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WsTrustEndpoint {
    /// An https URL.
    pub url: String,
    pub version: WsTrustVersion,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MexError {
    #[error("the metadata is not well-formed XML: {0}")]
    Xml(#[from] XmlError),
    #[error("the metadata is not a WSDL document (the root element is {0})")]
    NotWsdl(String),
    #[error(
        "the metadata has no username/password policy (a wsp:Policy with a wsu:Id, an \
         sp:UsernameToken with WssUsernameToken10 and a transport binding){0}"
    )]
    NoUsernamePolicy(String),
    #[error(
        "no SOAP 1.2 over HTTP binding with a WS-Trust Issue action references the \
         username/password policies {policies}{detail}"
    )]
    NoBinding { policies: String, detail: String },
    #[error("no port uses the username/password bindings {bindings}")]
    NoPort { bindings: String },
    #[error("the username/password ports have no https address (found: {found})")]
    NoHttpsAddress { found: String },
}

/// The preferred username/password endpoint of a MEX document.
pub fn parse_mex(body: &[u8]) -> Result<WsTrustEndpoint, MexError> {
    let mut all = endpoints(body)?;
    // Non-empty: `endpoints` reports an error instead of an empty list.
    Ok(all.remove(0))
}

/// Every username/password endpoint of a MEX document, the preferred first
/// (1.3 before 2005, then document order). Never empty: when no chain
/// holds, the error names the link that is missing.
pub fn endpoints(body: &[u8]) -> Result<Vec<WsTrustEndpoint>, MexError> {
    let root = xml::parse(body, |_, _| false)?;
    let definitions = find_definitions(&root)
        .ok_or_else(|| MexError::NotWsdl(format!("<{}>", quote(&root.display_name()))))?;

    let (policies, near_policies) = username_policies(definitions);
    if policies.is_empty() {
        let detail = if near_policies.is_empty() {
            String::new()
        } else {
            format!(
                "; policies with a username token but no transport binding: {}",
                near_policies.join(", ")
            )
        };
        return Err(MexError::NoUsernamePolicy(detail));
    }

    let mut bindings: Vec<(String, WsTrustVersion)> = Vec::new();
    let mut rejected: Vec<String> = Vec::new();
    for binding in definitions.children_named(NS_WSDL, "binding") {
        let Some(policy) = binding
            .child(NS_WSP, "PolicyReference")
            .and_then(|r| r.attr("URI"))
            .and_then(|uri| uri.trim().strip_prefix('#'))
        else {
            continue;
        };
        if !policies.iter().any(|p| p == policy) {
            continue;
        }
        let name = binding.attr("name").map(str::trim).unwrap_or_default();
        match check_binding(binding) {
            Ok(version) if !name.is_empty() => bindings.push((name.to_string(), version)),
            Ok(_) => rejected.push(format!("a binding of policy {policy} has no name")),
            Err(why) => rejected.push(format!("binding {name} {why}")),
        }
    }
    if bindings.is_empty() {
        return Err(MexError::NoBinding {
            policies: policies.join(", "),
            detail: if rejected.is_empty() {
                String::new()
            } else {
                format!(" ({})", rejected.join("; "))
            },
        });
    }

    let mut found: Vec<WsTrustEndpoint> = Vec::new();
    let mut insecure: Vec<String> = Vec::new();
    let mut any_port = false;
    for port in definitions.select(&[(NS_WSDL, "service"), (NS_WSDL, "port")]) {
        let Some(binding) = port.attr("binding").map(strip_prefix) else {
            continue;
        };
        let Some((_, version)) = bindings.iter().find(|(name, _)| name == binding) else {
            continue;
        };
        any_port = true;
        match port_address(port) {
            Some(url) => match https(&url) {
                Some(url) => found.push(WsTrustEndpoint {
                    url,
                    version: *version,
                }),
                None => insecure.push(quote(&url)),
            },
            None => insecure.push(format!("port {} without an address", port_name(port))),
        }
    }
    if !any_port {
        let names: Vec<&str> = bindings.iter().map(|(n, _)| n.as_str()).collect();
        return Err(MexError::NoPort {
            bindings: names.join(", "),
        });
    }
    if found.is_empty() {
        return Err(MexError::NoHttpsAddress {
            found: insecure.join(", "),
        });
    }
    // Stable: document order within a version.
    found.sort_by_key(|e| e.version);
    Ok(found)
}

/// The WSDL `definitions`: the root, or inside a SOAP envelope's body (some
/// third-party servers answer a MEX GetRequest that way).
fn find_definitions(root: &Element) -> Option<&Element> {
    if root.is(NS_WSDL, "definitions") {
        return Some(root);
    }
    let in_envelope = [NS_SOAP12, NS_SOAP11].iter().find_map(|ns| {
        root.is(ns, "Envelope")
            .then(|| root.child(ns, "Body"))
            .flatten()
    })?;
    in_envelope.find(|e| e.is(NS_WSDL, "definitions"))
}

/// Ids of policies asking for a username token over a transport binding,
/// and of those that only lack the transport binding (for the error).
fn username_policies(definitions: &Element) -> (Vec<String>, Vec<String>) {
    let mut good = Vec::new();
    let mut near = Vec::new();
    for policy in definitions.children_named(NS_WSP, "Policy") {
        let Some(id) = policy.attr_ns(NS_WSU, "Id").map(str::trim) else {
            continue;
        };
        if id.is_empty() {
            continue;
        }
        let alternatives = policy.select(&[(NS_WSP, "ExactlyOne"), (NS_WSP, "All")]);
        let username = alternatives.iter().any(|all| {
            [
                (NS_SP, "SignedEncryptedSupportingTokens"),
                (NS_SP2005, "SignedSupportingTokens"),
            ]
            .iter()
            .any(|&(ns, tokens)| {
                !all.select(&[
                    (ns, tokens),
                    (NS_WSP, "Policy"),
                    (ns, "UsernameToken"),
                    (NS_WSP, "Policy"),
                    (ns, "WssUsernameToken10"),
                ])
                .is_empty()
            })
        });
        if !username {
            continue;
        }
        // As in ADAL: the transport binding may sit in any alternative.
        let transport = alternatives.iter().any(|all| {
            all.child(NS_SP, "TransportBinding").is_some()
                || all.child(NS_SP2005, "TransportBinding").is_some()
        });
        if transport {
            good.push(id.to_string());
        } else {
            near.push(id.to_string());
        }
    }
    (good, near)
}

/// The WS-Trust version of a binding, or why it is not usable.
fn check_binding(binding: &Element) -> Result<WsTrustVersion, String> {
    let transport = binding
        .child(NS_SOAP12_WSDL, "binding")
        .ok_or("has no soap12:binding")?
        .attr("transport")
        .map(str::trim);
    if transport != Some(SOAP_HTTP_TRANSPORT) {
        return Err("is not SOAP 1.2 over HTTP".into());
    }
    let actions: Vec<&str> = binding
        .select(&[(NS_WSDL, "operation"), (NS_SOAP12_WSDL, "operation")])
        .into_iter()
        .filter_map(|op| op.attr("soapAction"))
        .collect();
    // A binding with both actions would be odd; 1.3 wins, as everywhere.
    let mut versions: Vec<WsTrustVersion> = actions
        .iter()
        .filter_map(|a| WsTrustVersion::from_action(a))
        .collect();
    versions.sort();
    versions
        .first()
        .copied()
        .ok_or_else(|| "has no WS-Trust Issue soapAction".into())
}

/// `wsa10:EndpointReference/wsa10:Address`, else `soap12:address/@location`
/// (the same URL in every AD FS document; some servers give only one).
fn port_address(port: &Element) -> Option<String> {
    let epr = port
        .select(&[(NS_WSA10, "EndpointReference"), (NS_WSA10, "Address")])
        .into_iter()
        .map(|a| a.text.trim())
        .find(|a| !a.is_empty());
    let soap = || {
        port.child(NS_SOAP12_WSDL, "address")
            .and_then(|a| a.attr("location"))
            .map(str::trim)
            .filter(|a| !a.is_empty())
    };
    epr.or_else(soap).map(str::to_string)
}

fn port_name(port: &Element) -> String {
    quote(port.attr("name").unwrap_or("(unnamed)"))
}

/// `tns:Name` → `Name`: a QName in an attribute value.
fn strip_prefix(qname: &str) -> &str {
    let qname = qname.trim();
    qname.rsplit_once(':').map_or(qname, |(_, local)| local)
}

/// The URL as it will be used (parsed and serialised: what reqwest
/// connects to and what the request's `To` names), if it is https.
fn https(url: &str) -> Option<String> {
    url::Url::parse(url)
        .ok()
        .filter(|u| u.scheme() == "https" && u.host_str().is_some())
        .map(String::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> Vec<u8> {
        let path = format!(
            "{}/src/entra/testdata/mex/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    fn v13(url: &str) -> WsTrustEndpoint {
        WsTrustEndpoint {
            url: url.into(),
            version: WsTrustVersion::V13,
        }
    }

    fn v2005(url: &str) -> WsTrustEndpoint {
        WsTrustEndpoint {
            url: url.into(),
            version: WsTrustVersion::V2005,
        }
    }

    const ARCHAN_13: &str = "https://arvmserver2012.archan.us/adfs/services/trust/13/usernamemixed";
    const ARCHAN_2005: &str =
        "https://arvmserver2012.archan.us/adfs/services/trust/2005/usernamemixed";

    #[test]
    fn complete_documents_pick_the_13_endpoint() {
        for (file, url) in [
            (
                "microsoft.mex.xml",
                "https://corp.sts.microsoft.com/adfs/services/trust/13/usernamemixed",
            ),
            (
                "arupela.mex.xml",
                "https://fs.arupela.com/adfs/services/trust/13/usernamemixed",
            ),
            ("archan.us.mex.xml", ARCHAN_13),
            (
                "common.mex.xml",
                "https://adfs.federatedtenant.com/adfs/services/trust/13/usernamemixed",
            ),
        ] {
            assert_eq!(parse_mex(&fixture(file)).unwrap(), v13(url), "{file}");
            // The 2005 endpoint is found too, behind it.
            let all = endpoints(&fixture(file)).unwrap();
            assert_eq!(all.len(), 2, "{file}: {all:?}");
            assert_eq!(all[1].version, WsTrustVersion::V2005, "{file}");
            assert!(all[1].url.ends_with("/trust/2005/usernamemixed"), "{file}");
        }
    }

    #[test]
    fn a_2005_only_document_picks_2005() {
        // Also: a byte-order mark, `sp` bound to the 2005 namespace, and
        // addresses padded with newlines elsewhere in the document.
        assert_eq!(
            parse_mex(&fixture("usystech.mex.xml")).unwrap(),
            v2005("https://sts.usystech.net/adfs/services/trust/2005/usernamemixed")
        );
        assert_eq!(endpoints(&fixture("usystech.mex.xml")).unwrap().len(), 1);
    }

    #[test]
    fn an_http_endpoint_is_never_picked() {
        assert_eq!(
            endpoints(&fixture("address.insecure.xml")).unwrap(),
            [v2005(ARCHAN_2005)]
        );
    }

    #[test]
    fn documents_broken_elsewhere_still_give_the_intact_chain() {
        // Each breaks one link of the windowstransport chain, which does
        // not take a password: the username/password chains are intact.
        for file in [
            "noaddress.xml",
            "nobinding.port.xml",
            "noname.binding.xml",
            "nosoapaction.xml",
            "nosoaptransport.xml",
            "nouri.ref.xml",
        ] {
            assert_eq!(
                endpoints(&fixture(file)).unwrap(),
                [v13(ARCHAN_13), v2005(ARCHAN_2005)],
                "{file}"
            );
        }
    }

    #[test]
    fn malformed_documents_give_a_positioned_error() {
        for (file, line) in [
            ("syntax.notrelated.mex.xml", 42),
            ("syntax.related.mex.xml", 912),
        ] {
            let e = parse_mex(&fixture(file)).unwrap_err();
            let MexError::Xml(x) = &e else {
                panic!("{file}: {e}")
            };
            assert_eq!(x.line, line, "{file}: {e}");
            assert!(e.to_string().contains("line "), "{e}");
        }
    }

    /// archan.us with one link of the 1.3 and 2005 username/password chains
    /// broken, to see each error.
    fn archan_with(edits: &[(&str, &str)]) -> Vec<u8> {
        let mut doc = String::from_utf8(fixture("archan.us.mex.xml")).unwrap();
        for (from, to) in edits {
            assert!(doc.contains(from), "{from}");
            doc = doc.replace(from, to);
        }
        doc.into_bytes()
    }

    #[test]
    fn each_missing_link_is_named() {
        let e =
            endpoints(&archan_with(&[("<sp:WssUsernameToken10/>", "<sp:Other/>")])).unwrap_err();
        assert!(matches!(e, MexError::NoUsernamePolicy(_)), "{e}");

        let e = endpoints(&archan_with(&[
            (
                "<wsp:PolicyReference URI=\"#UserNameWSTrustBinding_IWSTrust13Async_policy\"/>",
                "",
            ),
            (
                "<wsp:PolicyReference URI=\"#UserNameWSTrustBinding_IWSTrustFeb2005Async_policy\"/>",
                "",
            ),
        ]))
        .unwrap_err();
        assert!(matches!(e, MexError::NoBinding { .. }), "{e}");
        assert!(
            e.to_string()
                .contains("UserNameWSTrustBinding_IWSTrust13Async_policy"),
            "{e}"
        );

        let e = endpoints(&archan_with(&[
            (
                "binding=\"tns:UserNameWSTrustBinding_IWSTrust13Async\"",
                "binding=\"tns:Gone\"",
            ),
            (
                "binding=\"tns:UserNameWSTrustBinding_IWSTrustFeb2005Async\"",
                "binding=\"tns:Gone2\"",
            ),
        ]))
        .unwrap_err();
        assert!(matches!(e, MexError::NoPort { .. }), "{e}");
        assert!(
            e.to_string()
                .contains("UserNameWSTrustBinding_IWSTrust13Async"),
            "{e}"
        );

        let e = endpoints(&archan_with(&[
            (
                "https://arvmserver2012.archan.us/adfs/services/trust/13/usernamemixed",
                "http://x/13/usernamemixed",
            ),
            (
                "https://arvmserver2012.archan.us/adfs/services/trust/2005/usernamemixed",
                "http://x/2005/usernamemixed",
            ),
        ]))
        .unwrap_err();
        assert!(matches!(e, MexError::NoHttpsAddress { .. }), "{e}");
        assert!(e.to_string().contains("http://x/13/usernamemixed"), "{e}");
    }

    #[test]
    fn a_binding_without_issue_action_or_http_transport_is_skipped() {
        // Break the 1.3 username binding only: 2005 remains.
        let doc = archan_with(&[(
            "<wsdl:binding name=\"UserNameWSTrustBinding_IWSTrust13Async\" type=\"tns:IWSTrust13Async\">\n        <wsp:PolicyReference URI=\"#UserNameWSTrustBinding_IWSTrust13Async_policy\"/>\n        <soap12:binding transport=\"http://schemas.xmlsoap.org/soap/http\"/>",
            "<wsdl:binding name=\"UserNameWSTrustBinding_IWSTrust13Async\" type=\"tns:IWSTrust13Async\">\n        <wsp:PolicyReference URI=\"#UserNameWSTrustBinding_IWSTrust13Async_policy\"/>\n        <soap12:binding transport=\"http://example.invalid/smtp\"/>",
        )]);
        assert_eq!(endpoints(&doc).unwrap(), [v2005(ARCHAN_2005)]);
    }

    #[test]
    fn padded_addresses_and_soap_envelopes_are_accepted() {
        let padded = archan_with(&[(
            "<wsa10:Address>https://arvmserver2012.archan.us/adfs/services/trust/13/usernamemixed</wsa10:Address>",
            "<wsa10:Address>\n          https://arvmserver2012.archan.us/adfs/services/trust/13/usernamemixed\n        </wsa10:Address>",
        )]);
        assert_eq!(parse_mex(&padded).unwrap(), v13(ARCHAN_13));

        let doc = String::from_utf8(fixture("archan.us.mex.xml")).unwrap();
        let body = doc.trim_start_matches("<?xml version=\"1.0\" encoding=\"utf-8\"?>");
        for ns in [NS_SOAP12, NS_SOAP11] {
            let wrapped = format!(
                "<?xml version=\"1.0\"?><s:Envelope xmlns:s=\"{ns}\"><s:Header/><s:Body>{body}</s:Body></s:Envelope>"
            );
            assert_eq!(
                parse_mex(wrapped.as_bytes()).unwrap(),
                v13(ARCHAN_13),
                "{ns}"
            );
        }
    }

    #[test]
    fn other_documents_are_not_wsdl() {
        let e = parse_mex(b"<html><body>Sign in</body></html>").unwrap_err();
        assert_eq!(e, MexError::NotWsdl("<html>".into()));
        let e = parse_mex(b"<s:Envelope xmlns:s=\"http://www.w3.org/2003/05/soap-envelope\"><s:Body/></s:Envelope>").unwrap_err();
        assert!(matches!(e, MexError::NotWsdl(_)), "{e}");
        assert!(matches!(parse_mex(b"").unwrap_err(), MexError::Xml(_)));
        let e = parse_mex(b"<wsdl:definitions xmlns:wsdl=\"http://schemas.xmlsoap.org/wsdl/\"/>")
            .unwrap_err();
        assert!(matches!(e, MexError::NoUsernamePolicy(_)), "{e}");
    }

    #[test]
    fn version_from_the_fallback_url() {
        use WsTrustVersion::*;
        for (url, want) in [
            (
                "https://sts.contoso.com/adfs/services/trust/13/usernamemixed",
                Some(V13),
            ),
            (
                "https://sts.contoso.com/adfs/services/trust/2005/usernamemixed",
                Some(V2005),
            ),
            (
                "https://sts.contoso.com/adfs/services/Trust/2005/UsernameMixed?x=1",
                Some(V2005),
            ),
            (
                "https://sts.contoso.com/adfs/services/trust/2005/windowstransport",
                None,
            ),
            ("https://sts.contoso.com/?p=/trust/13/usernamemixed", None),
            ("not a url", None),
        ] {
            assert_eq!(WsTrustVersion::from_url_path(url), want, "{url}");
        }
        assert_eq!(WsTrustVersion::from_action(V13.action()), Some(V13));
        assert_eq!(WsTrustVersion::from_action(V2005.action()), Some(V2005));
        assert_eq!(WsTrustVersion::from_action("urn:other"), None);
    }

    #[test]
    fn never_panics_on_truncations() {
        // Every prefix of a real document: an error or an answer, no panic.
        let doc = fixture("microsoft.mex.xml");
        for cut in (0..doc.len()).step_by(97) {
            let _ = endpoints(&doc[..cut]);
        }
    }
}
