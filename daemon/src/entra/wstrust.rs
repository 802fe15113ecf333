//! WS-Trust (PROTOCOLS.md 3 and 4): the request that sends the username and
//! password to the federation server (RST), and its answer (RSTR) carrying
//! a SAML assertion, or a SOAP fault.
//!
//! The assertion is signed by the federation server; Entra ID checks the
//! signature over the exact bytes, so it is cut out of the answer as
//! received and never re-serialised.

use std::fmt;
use std::time::{Duration, SystemTime};

use super::mex::{NS_SOAP11, NS_SOAP12, NS_WSA10, NS_WSU, WsTrustEndpoint, WsTrustVersion};
use super::token::SamlVersion;
use super::xml::{self, Element, XmlError, quote};
use crate::secret::Secret;

const NS_WSSE: &str =
    "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd";
const NS_WSP: &str = "http://schemas.xmlsoap.org/ws/2004/09/policy";

const SAML11_ASSERTION: &str = "urn:oasis:names:tc:SAML:1.0:assertion";
const SAML20_ASSERTION: &str = "urn:oasis:names:tc:SAML:2.0:assertion";
const SAML11_PROFILE: &str =
    "http://docs.oasis-open.org/wss/oasis-wss-saml-token-profile-1.1#SAMLV1.1";
const SAML20_PROFILE: &str =
    "http://docs.oasis-open.org/wss/oasis-wss-saml-token-profile-1.1#SAMLV2.0";

/// How long the request's security header is valid, as every Microsoft
/// library sends it.
const REQUEST_LIFETIME: Duration = Duration::from_secs(10 * 60);

/// Answers are a few KiB (the assertion is most of it).
pub const MAX_RSTR: usize = 1024 * 1024;

impl WsTrustVersion {
    fn key_type(self) -> &'static str {
        match self {
            WsTrustVersion::V13 => "http://docs.oasis-open.org/ws-sx/ws-trust/200512/Bearer",
            WsTrustVersion::V2005 => "http://schemas.xmlsoap.org/ws/2005/05/identity/NoProofKey",
        }
    }

    fn request_type(self) -> &'static str {
        match self {
            WsTrustVersion::V13 => "http://docs.oasis-open.org/ws-sx/ws-trust/200512/Issue",
            WsTrustVersion::V2005 => "http://schemas.xmlsoap.org/ws/2005/02/trust/Issue",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RstError {
    /// XML 1.0 cannot carry most C0 control characters, not even as
    /// character references; sending them would be refused or altered.
    #[error(
        "the {0} contains a control character that XML cannot carry, so it cannot be sent to a \
         federation server"
    )]
    ControlCharacter(&'static str),
}

/// The SOAP 1.2 envelope of an Issue request with the username and password.
///
/// Every value is XML-escaped, the username and password included (the
/// Python libraries forget the username). The buffer is reserved up front
/// for the worst case, so no reallocation leaves a copy of the password
/// behind; the result is a [`Secret`].
pub fn build_rst(
    endpoint: &WsTrustEndpoint,
    username: &str,
    password: &Secret,
    applies_to: &str,
    message_id: uuid::Uuid,
    now: SystemTime,
) -> Result<Secret, RstError> {
    check_chars(username, "username")?;
    check_chars(password.expose(), "password")?;
    let v = endpoint.version;
    let created = humantime::format_rfc3339_millis(now).to_string();
    let expires = humantime::format_rfc3339_millis(now + REQUEST_LIFETIME).to_string();
    let message_id = message_id.to_string();

    // Literal parts, then escaped values at six bytes a character at most.
    let parts: [&str; 14] = [
        r#"<s:Envelope xmlns:s=""#,
        r#""><s:Header><wsa:Action s:mustUnderstand="1">"#,
        r#"</wsa:Action><wsa:MessageID>urn:uuid:"#,
        r#"</wsa:MessageID><wsa:ReplyTo><wsa:Address>http://www.w3.org/2005/08/addressing/anonymous</wsa:Address></wsa:ReplyTo><wsa:To s:mustUnderstand="1">"#,
        r#"</wsa:To><wsse:Security s:mustUnderstand="1" xmlns:wsse=""#,
        r#""><wsu:Timestamp wsu:Id="_0"><wsu:Created>"#,
        r#"</wsu:Created><wsu:Expires>"#,
        r#"</wsu:Expires></wsu:Timestamp><wsse:UsernameToken wsu:Id="UsernameToken-1"><wsse:Username>"#,
        r#"</wsse:Username><wsse:Password>"#,
        r#"</wsse:Password></wsse:UsernameToken></wsse:Security></s:Header><s:Body><wst:RequestSecurityToken xmlns:wst=""#,
        r#""><wsp:AppliesTo xmlns:wsp=""#,
        r#""><wsa:EndpointReference><wsa:Address>"#,
        r#"</wsa:Address></wsa:EndpointReference></wsp:AppliesTo><wst:KeyType>"#,
        r#"</wst:KeyType><wst:RequestType>"#,
    ];
    let tail = r#"</wst:RequestType></wst:RequestSecurityToken></s:Body></s:Envelope>"#;
    let namespaces = format!(r#"{NS_SOAP12}" xmlns:wsa="{NS_WSA10}" xmlns:wsu="{NS_WSU}"#);
    let values: [&str; 14] = [
        &namespaces,
        v.action(),
        &message_id,
        &endpoint.url,
        NS_WSSE,
        &created,
        &expires,
        username,
        password.expose(),
        v.namespace(),
        NS_WSP,
        applies_to,
        v.key_type(),
        v.request_type(),
    ];
    let capacity = parts.iter().map(|p| p.len()).sum::<usize>()
        + tail.len()
        + values.iter().map(|s| 6 * s.len()).sum::<usize>();
    let mut out = String::with_capacity(capacity);
    for (i, (part, value)) in parts.iter().zip(values).enumerate() {
        out.push_str(part);
        // The namespace list is our own markup, not a value.
        if i == 0 {
            out.push_str(value);
        } else {
            push_escaped(&mut out, value);
        }
    }
    out.push_str(tail);
    debug_assert!(out.len() <= capacity);
    Ok(Secret::new(out))
}

fn check_chars(s: &str, what: &'static str) -> Result<(), RstError> {
    let allowed = |c: char| matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..);
    if s.chars().all(allowed) {
        Ok(())
    } else {
        Err(RstError::ControlCharacter(what))
    }
}

/// Escapes for element content and attribute values alike. A carriage
/// return is escaped too: XML parsers turn a literal one into a line feed,
/// which would change the password.
fn push_escaped(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\r' => out.push_str("&#xD;"),
            c => out.push(c),
        }
    }
}

/// A SOAP fault (1.2 `Code/Value`, `Subcode/Value`, `Reason/Text`; or 1.1
/// `faultcode`, `faultstring`). Values are as sent (`a:FailedAuthentication`),
/// cut to a printable length.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SoapFault {
    /// `s:Sender`, `s:Receiver`, or a SOAP 1.1 `faultcode`.
    pub code: Option<String>,
    /// Outermost first: AD FS sends one, `a:FailedAuthentication`.
    pub subcodes: Vec<String>,
    /// `ID3242: The security token could not be authenticated or authorized.`
    pub reason: Option<String>,
}

impl SoapFault {
    /// The federation server looked at the sign-in and refused it, so
    /// sending the same password again could only count towards a lockout:
    /// `FailedAuthentication` (a wrong password; the WS-Security code every
    /// server uses) and `RequestFailed`, which AD FS answers with
    /// `MSIS7068: Access denied.` when it denies a sign-in, extranet
    /// lockout included (PROTOCOLS.md 4 names both as a bad password).
    pub fn is_refusal(&self) -> bool {
        self.code
            .iter()
            .chain(&self.subcodes)
            .any(|c| matches!(local_part(c), "FailedAuthentication" | "RequestFailed"))
    }

    /// The most specific code: `a:FailedAuthentication`.
    pub fn name(&self) -> &str {
        self.subcodes
            .last()
            .or(self.code.as_ref())
            .map_or("a SOAP fault", String::as_str)
    }
}

impl fmt::Display for SoapFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())?;
        if let Some(reason) = &self.reason {
            write!(f, " ({reason})")?;
        }
        Ok(())
    }
}

fn local_part(qname: &str) -> &str {
    qname.rsplit_once(':').map_or(qname, |(_, l)| l).trim()
}

/// What a successful answer gives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rstr {
    pub version: SamlVersion,
    /// The assertion element, byte for byte as received.
    pub assertion: Secret,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RstrError {
    #[error("the answer is not well-formed XML: {0}")]
    Xml(#[from] XmlError),
    #[error("the answer is not a SOAP envelope (the root element is {0})")]
    NotSoap(String),
    #[error("the answer is a SOAP fault: {0}")]
    Fault(SoapFault),
    #[error("the answer has no RequestSecurityTokenResponse with a RequestedSecurityToken element")]
    NoToken,
    #[error("the token type {0} is not a SAML 1.1 or 2.0 assertion")]
    UnknownTokenType(String),
    #[error("the assertion is not UTF-8")]
    NotUtf8,
}

fn is_trust_ns(ns: Option<&str>) -> bool {
    ns == Some(WsTrustVersion::V13.namespace()) || ns == Some(WsTrustVersion::V2005.namespace())
}

fn trust_children<'a>(e: &'a Element, local: &'a str) -> impl Iterator<Item = &'a Element> + 'a {
    e.children
        .iter()
        .filter(move |c| c.local == local && is_trust_ns(c.ns.as_deref()))
}

/// The SOAP body, or why there is none.
fn soap_body(root: &Element) -> Result<&Element, RstrError> {
    [NS_SOAP12, NS_SOAP11]
        .iter()
        .find_map(|ns| {
            root.is(ns, "Envelope")
                .then(|| root.child(ns, "Body"))
                .flatten()
        })
        .ok_or_else(|| RstrError::NotSoap(format!("<{}>", quote(&root.display_name()))))
}

/// Reads an answer of the WS-Trust endpoint, whatever its HTTP status: AD
/// FS answers errors with 500 and a fault, and a fault can come with 200.
pub fn parse_rstr(body: &[u8]) -> Result<Rstr, RstrError> {
    // The assertion's content stays out of the tree (see xml.rs).
    let root = xml::parse(body, |ns, local| {
        local == "RequestedSecurityToken" && is_trust_ns(ns)
    })?;
    let soap = soap_body(&root)?;
    if let Some(fault) = fault_in(soap) {
        return Err(RstrError::Fault(fault));
    }
    // 1.3: a Collection of responses; 2005: the response itself.
    let mut responses: Vec<&Element> =
        trust_children(soap, "RequestSecurityTokenResponse").collect();
    for collection in trust_children(soap, "RequestSecurityTokenResponseCollection") {
        responses.extend(trust_children(collection, "RequestSecurityTokenResponse"));
    }
    for response in responses {
        let Some(assertion) =
            trust_children(response, "RequestedSecurityToken").find_map(|t| t.children.first())
        else {
            continue;
        };
        let token_type = trust_children(response, "TokenType")
            .next()
            .map(|t| t.text.trim());
        let version = match token_type {
            Some(SAML11_ASSERTION | SAML11_PROFILE) => SamlVersion::Saml11,
            Some(SAML20_ASSERTION | SAML20_PROFILE) => SamlVersion::Saml20,
            Some(other) => return Err(RstrError::UnknownTokenType(quote(other))),
            // No TokenType: the assertion's own namespace tells.
            None => match assertion.ns.as_deref() {
                Some(SAML11_ASSERTION) if assertion.local == "Assertion" => SamlVersion::Saml11,
                Some(SAML20_ASSERTION) if assertion.local == "Assertion" => SamlVersion::Saml20,
                _ => {
                    return Err(RstrError::UnknownTokenType(format!(
                        "(none given; the token is <{}>)",
                        quote(&assertion.display_name())
                    )));
                }
            },
        };
        let bytes = body.get(assertion.span.clone()).ok_or(RstrError::NoToken)?;
        let text = std::str::from_utf8(bytes).map_err(|_| RstrError::NotUtf8)?;
        return Ok(Rstr {
            version,
            assertion: Secret::new(text),
        });
    }
    Err(RstrError::NoToken)
}

/// The SOAP fault of an answer, if it is one.
pub fn parse_fault(body: &[u8]) -> Option<SoapFault> {
    let root = xml::parse(body, |ns, local| {
        local == "RequestedSecurityToken" && is_trust_ns(ns)
    })
    .ok()?;
    fault_in(soap_body(&root).ok()?)
}

fn fault_in(body: &Element) -> Option<SoapFault> {
    if let Some(fault) = body.child(NS_SOAP12, "Fault") {
        let text = |e: &Element| Some(quote(&e.text)).filter(|t| !t.is_empty());
        let code = fault.child(NS_SOAP12, "Code");
        let mut subcodes = Vec::new();
        let mut next = code.and_then(|c| c.child(NS_SOAP12, "Subcode"));
        while let Some(sub) = next {
            subcodes.extend(sub.child(NS_SOAP12, "Value").and_then(text));
            next = sub.child(NS_SOAP12, "Subcode");
        }
        return Some(SoapFault {
            code: code
                .and_then(|c| c.child(NS_SOAP12, "Value"))
                .and_then(text),
            subcodes,
            reason: fault
                .child(NS_SOAP12, "Reason")
                .and_then(|r| r.child(NS_SOAP12, "Text"))
                .and_then(text),
        });
    }
    if let Some(fault) = body.child(NS_SOAP11, "Fault") {
        // SOAP 1.1 fault children are unqualified.
        let text = |local: &str| {
            fault
                .children
                .iter()
                .find(|c| c.local == local && c.ns.is_none())
                .map(|c| quote(&c.text))
                .filter(|t| !t.is_empty())
        };
        return Some(SoapFault {
            code: text("faultcode"),
            subcodes: Vec::new(),
            reason: text("faultstring"),
        });
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;

    fn fixture(name: &str) -> Vec<u8> {
        let path = format!(
            "{}/src/entra/testdata/wstrust/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    fn endpoint(version: WsTrustVersion) -> WsTrustEndpoint {
        let path = match version {
            WsTrustVersion::V13 => "13",
            WsTrustVersion::V2005 => "2005",
        };
        WsTrustEndpoint {
            url: format!("https://sts.fabrikam.com/adfs/services/trust/{path}/usernamemixed"),
            version,
        }
    }

    fn now() -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(1_390_810_545_003)
    }

    fn id() -> uuid::Uuid {
        uuid::Uuid::parse_str("7f1d5c3a-0c57-4b8e-9d36-2b0f0d6c9e11").unwrap()
    }

    /// Reads a built request back with the same XML reader.
    fn read_back(rst: &Secret) -> Element {
        xml::parse(rst.expose().as_bytes(), |_, _| false).expect("the RST is well-formed")
    }

    fn text_at<'a>(root: &'a Element, path: &[(&str, &str)]) -> &'a str {
        let found = root.select(path);
        assert_eq!(found.len(), 1, "{path:?}");
        &found[0].text
    }

    #[test]
    fn rst_13_has_the_shape_of_the_template() {
        let rst = build_rst(
            &endpoint(WsTrustVersion::V13),
            "alice@fabrikam.com",
            &Secret::new("pw"),
            "urn:federation:MicrosoftOnline",
            id(),
            now(),
        )
        .unwrap();
        let root = read_back(&rst);
        assert!(root.is(NS_SOAP12, "Envelope"));
        let h = (NS_SOAP12, "Header");
        let action = root.select(&[h, (NS_WSA10, "Action")]);
        assert_eq!(action[0].text, WsTrustVersion::V13.action());
        assert_eq!(action[0].attr_ns(NS_SOAP12, "mustUnderstand"), Some("1"));
        assert_eq!(
            text_at(&root, &[h, (NS_WSA10, "MessageID")]),
            "urn:uuid:7f1d5c3a-0c57-4b8e-9d36-2b0f0d6c9e11"
        );
        assert_eq!(
            text_at(&root, &[h, (NS_WSA10, "ReplyTo"), (NS_WSA10, "Address")]),
            "http://www.w3.org/2005/08/addressing/anonymous"
        );
        assert_eq!(
            text_at(&root, &[h, (NS_WSA10, "To")]),
            "https://sts.fabrikam.com/adfs/services/trust/13/usernamemixed"
        );
        let sec = [h, (NS_WSSE, "Security")];
        let ts = [sec[0], sec[1], (NS_WSU, "Timestamp")];
        assert_eq!(
            text_at(&root, &[ts[0], ts[1], ts[2], (NS_WSU, "Created")]),
            "2014-01-27T08:15:45.003Z"
        );
        assert_eq!(
            text_at(&root, &[ts[0], ts[1], ts[2], (NS_WSU, "Expires")]),
            "2014-01-27T08:25:45.003Z"
        );
        let ut = [sec[0], sec[1], (NS_WSSE, "UsernameToken")];
        assert_eq!(
            text_at(&root, &[ut[0], ut[1], ut[2], (NS_WSSE, "Username")]),
            "alice@fabrikam.com"
        );
        assert_eq!(
            text_at(&root, &[ut[0], ut[1], ut[2], (NS_WSSE, "Password")]),
            "pw"
        );
        let wst = WsTrustVersion::V13.namespace();
        let rst_el = [(NS_SOAP12, "Body"), (wst, "RequestSecurityToken")];
        assert_eq!(
            text_at(
                &root,
                &[
                    rst_el[0],
                    rst_el[1],
                    (NS_WSP, "AppliesTo"),
                    (NS_WSA10, "EndpointReference"),
                    (NS_WSA10, "Address")
                ]
            ),
            "urn:federation:MicrosoftOnline"
        );
        assert_eq!(
            text_at(&root, &[rst_el[0], rst_el[1], (wst, "KeyType")]),
            "http://docs.oasis-open.org/ws-sx/ws-trust/200512/Bearer"
        );
        assert_eq!(
            text_at(&root, &[rst_el[0], rst_el[1], (wst, "RequestType")]),
            "http://docs.oasis-open.org/ws-sx/ws-trust/200512/Issue"
        );

        // The same elements as ADAL's template, in the same order.
        let template = xml::parse(&fixture("RST.xml"), |_, _| false).unwrap();
        fn names(e: &Element, out: &mut Vec<String>) {
            out.push(e.display_name().to_ascii_lowercase());
            for c in &e.children {
                names(c, out);
            }
        }
        let (mut ours, mut theirs) = (Vec::new(), Vec::new());
        names(&root, &mut ours);
        names(&template, &mut theirs);
        assert_eq!(ours, theirs);
    }

    #[test]
    fn rst_2005_uses_the_2005_vocabulary() {
        let rst = build_rst(
            &endpoint(WsTrustVersion::V2005),
            "bob@fabrikam.com",
            &Secret::new("pw"),
            "urn:federation:MicrosoftOnline",
            id(),
            now(),
        )
        .unwrap();
        let root = read_back(&rst);
        let wst = "http://schemas.xmlsoap.org/ws/2005/02/trust";
        let body = [(NS_SOAP12, "Body"), (wst, "RequestSecurityToken")];
        assert_eq!(
            text_at(&root, &[(NS_SOAP12, "Header"), (NS_WSA10, "Action")]),
            "http://schemas.xmlsoap.org/ws/2005/02/trust/RST/Issue"
        );
        assert_eq!(
            text_at(&root, &[body[0], body[1], (wst, "KeyType")]),
            "http://schemas.xmlsoap.org/ws/2005/05/identity/NoProofKey"
        );
        assert_eq!(
            text_at(&root, &[body[0], body[1], (wst, "RequestType")]),
            "http://schemas.xmlsoap.org/ws/2005/02/trust/Issue"
        );
    }

    #[test]
    fn username_and_password_are_escaped() {
        let nasty = [
            "a<b>&c\"d'e",
            "</wsse:Password><wsse:Password>x",
            "]]><!--",
            "&amp; stays literal",
            "p\u{e4}ssw\u{f6}rd \u{1F600} \u{4E2D}\u{6587}",
            "tab\tnew\nline\rcr",
            "  spaces around  ",
        ];
        for user in nasty {
            for pass in nasty {
                for v in [WsTrustVersion::V13, WsTrustVersion::V2005] {
                    let rst = build_rst(
                        &endpoint(v),
                        user,
                        &Secret::new(pass),
                        "urn:x&y",
                        id(),
                        now(),
                    )
                    .unwrap();
                    let root = read_back(&rst);
                    let ut = [
                        (NS_SOAP12, "Header"),
                        (NS_WSSE, "Security"),
                        (NS_WSSE, "UsernameToken"),
                    ];
                    assert_eq!(
                        text_at(&root, &[ut[0], ut[1], ut[2], (NS_WSSE, "Username")]),
                        user
                    );
                    assert_eq!(
                        text_at(&root, &[ut[0], ut[1], ut[2], (NS_WSSE, "Password")]),
                        pass
                    );
                }
            }
        }
        let rst = build_rst(
            &endpoint(WsTrustVersion::V13),
            "<u&>",
            &Secret::new("\"p'"),
            "a",
            id(),
            now(),
        )
        .unwrap();
        assert!(
            rst.expose()
                .contains("<wsse:Username>&lt;u&amp;&gt;</wsse:Username>")
        );
        assert!(
            rst.expose()
                .contains("<wsse:Password>&quot;p&apos;</wsse:Password>")
        );
        assert_eq!(format!("{rst:?}"), "\"…\"");
    }

    #[test]
    fn control_characters_are_refused_without_quoting_them() {
        let e = build_rst(
            &endpoint(WsTrustVersion::V13),
            "u",
            &Secret::new("bad\u{1}pass"),
            "a",
            id(),
            now(),
        )
        .unwrap_err();
        assert_eq!(e, RstError::ControlCharacter("password"));
        assert!(!e.to_string().contains("bad"));
        let e = build_rst(
            &endpoint(WsTrustVersion::V13),
            "u\u{0}",
            &Secret::new("p"),
            "a",
            id(),
            now(),
        )
        .unwrap_err();
        assert_eq!(e, RstError::ControlCharacter("username"));
    }

    #[test]
    fn the_assertion_comes_out_byte_for_byte() {
        let rstr = parse_rstr(&fixture("common.rstr.xml")).unwrap();
        assert_eq!(rstr.version, SamlVersion::Saml11);
        let want = String::from_utf8(fixture("common.base64.encoded.assertion.txt")).unwrap();
        assert_eq!(STANDARD.encode(rstr.assertion.expose()), want.trim());
        assert_eq!(format!("{rstr:?}").matches('…').count(), 1);
    }

    #[test]
    fn a_pretty_printed_answer_gives_the_assertion_element() {
        let body = fixture("RSTR.xml");
        let rstr = parse_rstr(&body).unwrap();
        assert_eq!(rstr.version, SamlVersion::Saml11);
        let a = rstr.assertion.expose();
        assert!(
            a.starts_with("<saml:Assertion AssertionID=\"_9bd2b280"),
            "{}",
            &a[..60]
        );
        assert!(a.ends_with("</saml:Assertion>"));
        // Exactly the bytes of the answer, whitespace inside included.
        let text = String::from_utf8(body).unwrap();
        assert!(text.contains(a));
        assert!(a.contains("\n                        <saml:Conditions"));
    }

    fn envelope(version: WsTrustVersion, inner: &str) -> String {
        let ns = version.namespace();
        match version {
            WsTrustVersion::V13 => format!(
                r#"<s:Envelope xmlns:s="{NS_SOAP12}"><s:Body><trust:RequestSecurityTokenResponseCollection xmlns:trust="{ns}"><trust:RequestSecurityTokenResponse>{inner}</trust:RequestSecurityTokenResponse></trust:RequestSecurityTokenResponseCollection></s:Body></s:Envelope>"#
            ),
            WsTrustVersion::V2005 => format!(
                r#"<s:Envelope xmlns:s="{NS_SOAP12}"><s:Body><t:RequestSecurityTokenResponse xmlns:t="{ns}">{}</t:RequestSecurityTokenResponse></s:Body></s:Envelope>"#,
                inner.replace("trust:", "t:")
            ),
        }
    }

    const SAML2: &str = r#"<Assertion ID="_x" Version="2.0" xmlns="urn:oasis:names:tc:SAML:2.0:assertion"><Issuer>i</Issuer></Assertion>"#;
    const SAML1: &str = r#"<saml:Assertion MajorVersion="1" MinorVersion="1" xmlns:saml="urn:oasis:names:tc:SAML:1.0:assertion"/>"#;

    #[test]
    fn token_types_map_to_grants() {
        for v in [WsTrustVersion::V13, WsTrustVersion::V2005] {
            for (token_type, assertion, want) in [
                (Some(SAML11_ASSERTION), SAML1, SamlVersion::Saml11),
                (Some(SAML11_PROFILE), SAML1, SamlVersion::Saml11),
                (Some(SAML20_ASSERTION), SAML2, SamlVersion::Saml20),
                (Some(SAML20_PROFILE), SAML2, SamlVersion::Saml20),
                (None, SAML1, SamlVersion::Saml11),
                (None, SAML2, SamlVersion::Saml20),
            ] {
                let tt = token_type
                    .map(|t| format!("<trust:TokenType>\n  {t}\n</trust:TokenType>"))
                    .unwrap_or_default();
                let doc = envelope(
                    v,
                    &format!(
                        "<trust:RequestedSecurityToken>\n  {assertion}\n</trust:RequestedSecurityToken>{tt}"
                    ),
                );
                let rstr = parse_rstr(doc.as_bytes()).unwrap();
                assert_eq!(rstr.version, want, "{doc}");
                assert_eq!(rstr.assertion.expose(), assertion);
            }
        }
        assert_eq!(
            SamlVersion::Saml11.grant_type(),
            "urn:ietf:params:oauth:grant-type:saml1_1-bearer"
        );
        assert_eq!(
            SamlVersion::Saml20.grant_type(),
            "urn:ietf:params:oauth:grant-type:saml2-bearer"
        );
    }

    #[test]
    fn odd_answers_are_refused() {
        let v = WsTrustVersion::V13;
        let doc = envelope(
            v,
            &format!(
                "<trust:RequestedSecurityToken>{SAML2}</trust:RequestedSecurityToken><trust:TokenType>urn:ietf:params:oauth:token-type:jwt</trust:TokenType>"
            ),
        );
        assert!(matches!(
            parse_rstr(doc.as_bytes()),
            Err(RstrError::UnknownTokenType(t)) if t == "urn:ietf:params:oauth:token-type:jwt"
        ));
        let doc = envelope(
            v,
            "<trust:RequestedSecurityToken>just text</trust:RequestedSecurityToken>",
        );
        assert_eq!(parse_rstr(doc.as_bytes()), Err(RstrError::NoToken));
        let doc = envelope(
            v,
            "<trust:RequestedSecurityToken><x:Other xmlns:x=\"urn:x\"/></trust:RequestedSecurityToken>",
        );
        assert!(matches!(
            parse_rstr(doc.as_bytes()),
            Err(RstrError::UnknownTokenType(_))
        ));
        assert_eq!(
            parse_rstr(envelope(v, "").as_bytes()),
            Err(RstrError::NoToken)
        );
        assert!(matches!(parse_rstr(b"<html/>"), Err(RstrError::NotSoap(_))));
        assert!(matches!(parse_rstr(b"not xml"), Err(RstrError::Xml(_))));
        assert!(matches!(
            parse_rstr(b"<!DOCTYPE x [<!ENTITY e SYSTEM \"file:///etc/passwd\">]><x>&e;</x>"),
            Err(RstrError::Xml(_))
        ));
    }

    const ADFS_FAULT: &str = r#"<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope" xmlns:a="http://www.w3.org/2005/08/addressing"><s:Header><a:Action s:mustUnderstand="1">http://www.w3.org/2005/08/addressing/soap/fault</a:Action><a:RelatesTo>urn:uuid:7f1d5c3a-0c57-4b8e-9d36-2b0f0d6c9e11</a:RelatesTo></s:Header><s:Body><s:Fault><s:Code><s:Value>s:Sender</s:Value><s:Subcode><s:Value xmlns:a="http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd">a:FailedAuthentication</s:Value></s:Subcode></s:Code><s:Reason><s:Text xml:lang="en-US">ID3242: The security token could not be authenticated or authorized.</s:Text></s:Reason></s:Fault></s:Body></s:Envelope>"#;

    #[test]
    fn adfs_faults() {
        let f = parse_fault(ADFS_FAULT.as_bytes()).unwrap();
        assert_eq!(f.code.as_deref(), Some("s:Sender"));
        assert_eq!(f.subcodes, ["a:FailedAuthentication"]);
        assert!(f.is_refusal());
        assert_eq!(
            f.to_string(),
            "a:FailedAuthentication (ID3242: The security token could not be authenticated or authorized.)"
        );
        assert_eq!(parse_rstr(ADFS_FAULT.as_bytes()), Err(RstrError::Fault(f)));

        let other = ADFS_FAULT
            .replace("a:FailedAuthentication", "a:RequestFailed")
            .replace(
                "ID3242: The security token could not be authenticated or authorized.",
                "MSIS7068: Access denied.",
            );
        let f = parse_fault(other.as_bytes()).unwrap();
        assert!(f.is_refusal(), "access denied is a refusal too");
        assert_eq!(f.name(), "a:RequestFailed");
        let skew = ADFS_FAULT.replace("a:FailedAuthentication", "a:InvalidSecurity");
        let f = parse_fault(skew.as_bytes()).unwrap();
        assert!(
            !f.is_refusal(),
            "a stale timestamp is not about the password"
        );

        let soap11 = r#"<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body><soap:Fault><faultcode xmlns:wsse="x">wsse:FailedAuthentication</faultcode><faultstring>bad credentials</faultstring></soap:Fault></soap:Body></soap:Envelope>"#;
        let f = parse_fault(soap11.as_bytes()).unwrap();
        assert!(f.is_refusal());
        assert_eq!(f.to_string(), "wsse:FailedAuthentication (bad credentials)");

        assert_eq!(parse_fault(b"<html>500</html>"), None);
        assert_eq!(parse_fault(&fixture("common.rstr.xml")), None);
        assert_eq!(parse_fault(b""), None);
    }
}
