//! An AD FS: metadata exchange (MEX) and the WS-Trust 1.3 and 2005
//! username/password endpoints (PROTOCOLS.md 2-4), on its own HTTPS
//! listener; and the other half of federation inside Entra ID: the user
//! realm of the federated domain and the SAML bearer grants of the token
//! endpoints.
//!
//! The MEX documents are real ones (`tests/data/adfs/`) with their host
//! names pointed here. The WS-Trust endpoints check the request the way AD
//! FS (WCF) does: SOAP 1.2, the action for that endpoint's version (also in
//! a `SOAPAction` header when one is sent), `To` naming the endpoint, a
//! current timestamp, the username and password, and `AppliesTo` the
//! Microsoft Online relying party. A wrong password gets AD FS's HTTP 500
//! with an `a:FailedAuthentication` fault (ID3242).
//!
//! Assertions are SAML 1.1 or 2.0 with an XML-DSig-shaped signature (a real
//! RSA-SHA256 over `SignedInfo`, but no canonicalisation). What makes them
//! trustworthy here is that the token endpoint only redeems assertions this
//! AD FS issued, byte for byte (a client that re-serialises the XML is
//! caught, as Entra catches it by the signature), and only until they
//! expire.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use quick_xml::events::Event;
use quick_xml::name::ResolveResult;
use quick_xml::reader::NsReader;
use ring::rand::SystemRandom;
use ring::signature::{RSA_PKCS1_SHA256, RsaKeyPair};
use rustls::pki_types::PrivatePkcs8KeyDer;
use rustls::pki_types::pem::PemObject;
use serde_json::{Value, json};

use crate::aad_error::AadError;
use crate::counters::Counters;
use crate::directory::{Identity, SignInError, object_id};
use crate::emulator::{Emulator, Shared};
use crate::http::{read_body, segments};
use crate::scenario::{Scenario, UserState};
use crate::time;

/// The relying party AD FS knows Entra ID as.
pub const MICROSOFT_ONLINE: &str = "urn:federation:MicrosoftOnline";
pub const SAML11_GRANT: &str = "urn:ietf:params:oauth:grant-type:saml1_1-bearer";
pub const SAML2_GRANT: &str = "urn:ietf:params:oauth:grant-type:saml2-bearer";

const MEX_BOTH: &str = include_str!("../data/adfs/microsoft.mex.xml");
const MEX_2005: &str = include_str!("../data/adfs/usystech.mex.xml");
/// AD FS signs with its own token-signing key; the emulator's JWT key
/// serves (a different key would prove nothing more).
const SIGNING_KEY_PEM: &str = include_str!("../data/emulator-signing-key.pem");

const NS_SOAP12: &str = "http://www.w3.org/2003/05/soap-envelope";
const NS_WSA: &str = "http://www.w3.org/2005/08/addressing";
const NS_WSSE: &str =
    "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd";
const NS_WSU: &str =
    "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd";
const NS_WSP: &str = "http://schemas.xmlsoap.org/ws/2004/09/policy";
const NS_SAML1: &str = "urn:oasis:names:tc:SAML:1.0:assertion";
const NS_SAML2: &str = "urn:oasis:names:tc:SAML:2.0:assertion";

/// What the federated domain's AD FS looks like. See [`Federation::fabrikam`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Federation {
    /// The federated custom domain: the user realm answers `Federated`.
    pub domain: String,
    pub mex: MexOffer,
    pub saml: SamlVersion,
    /// `NotOnOrAfter` of issued assertions (AD FS: one hour).
    pub assertion_lifetime: Duration,
}

impl Federation {
    /// `fabrikam.com`: both WS-Trust versions, SAML 1.1 (AD FS's default for
    /// Microsoft Online).
    pub fn fabrikam() -> Federation {
        Federation {
            domain: crate::scenario::standard::FEDERATED_DOMAIN.to_owned(),
            mex: MexOffer::Both,
            saml: SamlVersion::Saml11,
            assertion_lifetime: Duration::from_secs(3600),
        }
    }
}

/// Which metadata document AD FS serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MexOffer {
    /// A real document with WS-Trust 1.3 and 2005 username/password
    /// endpoints (microsoft.mex.xml).
    Both,
    /// A real document with only the 2005 endpoint (usystech.mex.xml).
    Only2005,
    /// microsoft.mex.xml with the username/password addresses padded with
    /// whitespace and the whole WSDL wrapped in a SOAP envelope: both seen
    /// in the wild, both break MSAL for Python.
    PaddedInEnvelope,
    /// 404: clients fall back to the realm's `federation_active_auth_url`
    /// (the 2005 endpoint).
    Unavailable,
    /// Cut off in the middle: not well-formed.
    Malformed,
}

/// Which assertions AD FS issues.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SamlVersion {
    Saml11,
    Saml20,
}

/// Trouble the WS-Trust endpoints can be told to answer with, before they
/// look at the request (which is still counted).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdfsFault {
    /// 503 with an HTML page and no SOAP fault.
    ServiceUnavailable,
    /// 500 with the fault `a:RequestFailed` (`MSIS7068: Access denied.`):
    /// AD FS denying the sign-in (extranet lockout, an access policy),
    /// which akscred must treat as a refusal, not as trouble to retry.
    RequestFailed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Version {
    V13,
    V2005,
}

impl Version {
    fn action(self) -> &'static str {
        match self {
            Version::V13 => "http://docs.oasis-open.org/ws-sx/ws-trust/200512/RST/Issue",
            Version::V2005 => "http://schemas.xmlsoap.org/ws/2005/02/trust/RST/Issue",
        }
    }

    fn reply_action(self) -> &'static str {
        match self {
            Version::V13 => "http://docs.oasis-open.org/ws-sx/ws-trust/200512/RSTRC/IssueFinal",
            Version::V2005 => "http://schemas.xmlsoap.org/ws/2005/02/trust/RSTR/Issue",
        }
    }

    fn namespace(self) -> &'static str {
        match self {
            Version::V13 => "http://docs.oasis-open.org/ws-sx/ws-trust/200512",
            Version::V2005 => "http://schemas.xmlsoap.org/ws/2005/02/trust",
        }
    }

    fn key_type(self) -> &'static str {
        match self {
            Version::V13 => "http://docs.oasis-open.org/ws-sx/ws-trust/200512/Bearer",
            Version::V2005 => "http://schemas.xmlsoap.org/ws/2005/05/identity/NoProofKey",
        }
    }

    fn request_type(self) -> &'static str {
        match self {
            Version::V13 => "http://docs.oasis-open.org/ws-sx/ws-trust/200512/Issue",
            Version::V2005 => "http://schemas.xmlsoap.org/ws/2005/02/trust/Issue",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Version::V13 => "1.3",
            Version::V2005 => "2005",
        }
    }
}

struct Issued {
    digest: Vec<u8>,
    upn: String,
    version: SamlVersion,
    not_on_or_after: u64,
}

/// AD FS's part of the emulator state.
pub(crate) struct AdfsState {
    pub federation: Option<Federation>,
    faults: VecDeque<AdfsFault>,
    /// Assertion id → what was issued.
    issued: HashMap<String, Issued>,
}

impl AdfsState {
    pub(crate) fn new(scenario: &Scenario) -> AdfsState {
        AdfsState {
            federation: scenario.federation.clone(),
            faults: VecDeque::new(),
            issued: HashMap::new(),
        }
    }
}

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new().fallback(handle).with_state(shared)
}

/// The federated domain of a UPN, if it is the scenario's.
fn is_federated(shared: &Shared, upn: &str) -> bool {
    let domain = upn.rsplit_once('@').map_or("", |(_, d)| d);
    shared
        .scenario
        .federation
        .as_ref()
        .is_some_and(|f| f.domain.eq_ignore_ascii_case(domain))
}

/// The user realm of a federated user (PROTOCOLS.md 1), as Entra answers
/// for an AD FS domain; `None` for anyone else.
pub(crate) fn user_realm(shared: &Shared, upn: &str, api_version: Option<&str>) -> Option<Value> {
    let adfs = shared.adfs_url.as_deref()?;
    if !is_federated(shared, upn) {
        return None;
    }
    let domain = upn
        .rsplit_once('@')
        .map_or("", |(_, d)| d)
        .to_ascii_lowercase();
    if api_version.is_none() {
        return Some(json!({
            "State": 3,
            "UserState": 2,
            "Login": upn,
            "NameSpaceType": "Federated",
            "DomainName": domain,
            "FederationGlobalVersion": -1,
            "AuthURL": format!("{adfs}/adfs/ls/?username={upn}&wa=wsignin1.0&wtrealm=urn%3afederation%3aMicrosoftOnline"),
            "FederationBrandName": domain,
            "CloudInstanceName": "microsoftonline.com",
        }));
    }
    Some(json!({
        "ver": "1.0",
        "account_type": "Federated",
        "domain_name": domain,
        "federation_protocol": "WSTrust",
        "federation_metadata_url": format!("{adfs}/adfs/services/trust/mex"),
        "federation_active_auth_url": format!("{adfs}/adfs/services/trust/2005/usernamemixed"),
        "cloud_instance_name": "microsoftonline.com",
        "cloud_audience_urn": MICROSOFT_ONLINE,
    }))
}

async fn handle(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let segs: Vec<String> = segments(&parts.uri)
        .iter()
        .map(|s| s.to_ascii_lowercase())
        .collect();
    let segs: Vec<&str> = segs.iter().map(String::as_str).collect();
    match segs.as_slice() {
        ["adfs", "services", "trust", "mex"] if parts.method == Method::GET => mex(&shared),
        [
            "adfs",
            "services",
            "trust",
            v @ ("13" | "2005"),
            "usernamemixed",
        ] => {
            let version = if *v == "13" {
                Version::V13
            } else {
                Version::V2005
            };
            if parts.method != Method::POST {
                return plain(405, "Method Not Allowed");
            }
            let Some(body) = read_body(body).await else {
                return plain(413, "Request Entity Too Large");
            };
            wstrust(&shared, version, &parts.headers, &body, time::now_unix())
        }
        _ => plain(404, "Not Found"),
    }
}

fn plain(status: u16, body: &'static str) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, body).into_response()
}

fn soap(status: u16, body: String) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = (status, Body::from(body)).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/soap+xml; charset=utf-8"),
    );
    response
}

fn mex(shared: &Shared) -> Response {
    let offer = {
        let mut state = shared.state();
        state.counters.mex += 1;
        state.adfs.federation.as_ref().map(|f| f.mex)
    };
    let Some(adfs) = shared.adfs_url.as_deref() else {
        return plain(404, "Not Found");
    };
    let host = adfs.trim_start_matches("https://");
    let both = || MEX_BOTH.replace("corp.sts.microsoft.com", host);
    let body = match offer {
        None | Some(MexOffer::Unavailable) => return plain(404, "Not Found"),
        Some(MexOffer::Both) => both(),
        Some(MexOffer::Only2005) => MEX_2005
            .replace("sts.usystech.net:49443", host)
            .replace("sts.usystech.net", host),
        Some(MexOffer::PaddedInEnvelope) => {
            let mut doc = both();
            for v in ["13", "2005"] {
                let address = format!("{adfs}/adfs/services/trust/{v}/usernamemixed");
                doc = doc.replace(
                    &format!("<wsa10:Address>{address}</wsa10:Address>"),
                    &format!("<wsa10:Address>\n            {address}\n        </wsa10:Address>"),
                );
            }
            let wsdl = doc.trim_start_matches("<?xml version=\"1.0\" encoding=\"utf-8\"?>");
            format!(
                "<?xml version=\"1.0\" encoding=\"utf-8\"?><s:Envelope xmlns:s=\"{NS_SOAP12}\"><s:Header/><s:Body>{wsdl}</s:Body></s:Envelope>"
            )
        }
        Some(MexOffer::Malformed) => {
            let mut doc = both();
            let mut half = doc.len() / 2;
            while !doc.is_char_boundary(half) {
                half -= 1;
            }
            doc.truncate(half);
            doc
        }
    };
    soap(200, body)
}

/// What the handler read from an RST.
#[derive(Debug, Default)]
struct Rst {
    soap12: bool,
    action: Option<String>,
    message_id: Option<String>,
    to: Option<String>,
    created: Option<String>,
    expires: Option<String>,
    username: Option<String>,
    password: Option<String>,
    /// The namespace of `RequestSecurityToken`.
    wst: Option<String>,
    applies_to: Option<String>,
    key_type: Option<String>,
    request_type: Option<String>,
}

/// Reads an RST with a namespace-aware pull parser: every element's text by
/// its path. DTDs are refused, as AD FS (WCF) refuses them.
fn parse_rst(body: &[u8]) -> Result<Rst, String> {
    let mut reader = NsReader::from_reader(body);
    let mut path: Vec<(String, String)> = Vec::new();
    let mut texts: Vec<String> = Vec::new();
    let mut rst = Rst::default();
    loop {
        let event = reader
            .read_event()
            .map_err(|e| format!("not well-formed XML: {e}"))?;
        match event {
            Event::Start(e) => {
                let (ns, local) = element_name(&reader, &e)?;
                if path.is_empty() {
                    rst.soap12 = ns == NS_SOAP12 && local == "Envelope";
                }
                if local == "RequestSecurityToken" {
                    rst.wst = Some(ns.clone());
                }
                path.push((ns, local));
                texts.push(String::new());
            }
            Event::Empty(e) => {
                let (ns, local) = element_name(&reader, &e)?;
                path.push((ns, local));
                store(&mut rst, &path, String::new());
                path.pop();
            }
            Event::End(_) => {
                let text = texts.pop().unwrap_or_default();
                store(&mut rst, &path, text);
                path.pop();
            }
            Event::Text(t) => {
                let t = t.decode().map_err(|e| format!("not UTF-8: {e}"))?;
                if let Some(last) = texts.last_mut() {
                    last.push_str(&t);
                }
            }
            Event::CData(t) => {
                let t = t.decode().map_err(|e| format!("not UTF-8: {e}"))?;
                if let Some(last) = texts.last_mut() {
                    last.push_str(&t);
                }
            }
            Event::GeneralRef(r) => {
                let resolved = match r.resolve_char_ref() {
                    Ok(Some(c)) => c.to_string(),
                    Ok(None) => {
                        let name = r.decode().map_err(|e| e.to_string())?;
                        quick_xml::escape::resolve_predefined_entity(&name)
                            .ok_or_else(|| format!("undefined entity &{name};"))?
                            .to_owned()
                    }
                    Err(e) => return Err(e.to_string()),
                };
                if let Some(last) = texts.last_mut() {
                    last.push_str(&resolved);
                }
            }
            Event::DocType(_) => return Err("DTDs are not accepted".into()),
            Event::Eof => break,
            _ => {}
        }
    }
    Ok(rst)
}

fn element_name(
    reader: &NsReader<&[u8]>,
    e: &quick_xml::events::BytesStart<'_>,
) -> Result<(String, String), String> {
    let (ns, local) = reader.resolve_element(e.name());
    let ns = match ns {
        ResolveResult::Bound(ns) => String::from_utf8_lossy(ns.as_ref()).into_owned(),
        ResolveResult::Unbound => String::new(),
        ResolveResult::Unknown(p) => {
            return Err(format!("undeclared prefix {}", String::from_utf8_lossy(&p)));
        }
    };
    Ok((ns, String::from_utf8_lossy(local.as_ref()).into_owned()))
}

fn store(rst: &mut Rst, path: &[(String, String)], text: String) {
    let names: Vec<(&str, &str)> = path.iter().map(|(n, l)| (n.as_str(), l.as_str())).collect();
    let slot = match names.as_slice() {
        [(NS_SOAP12, "Envelope"), (NS_SOAP12, "Header"), rest @ ..] => match rest {
            [(NS_WSA, "Action")] => &mut rst.action,
            [(NS_WSA, "MessageID")] => &mut rst.message_id,
            [(NS_WSA, "To")] => &mut rst.to,
            [
                (NS_WSSE, "Security"),
                (NS_WSU, "Timestamp"),
                (NS_WSU, "Created"),
            ] => &mut rst.created,
            [
                (NS_WSSE, "Security"),
                (NS_WSU, "Timestamp"),
                (NS_WSU, "Expires"),
            ] => &mut rst.expires,
            [
                (NS_WSSE, "Security"),
                (NS_WSSE, "UsernameToken"),
                (NS_WSSE, "Username"),
            ] => &mut rst.username,
            [
                (NS_WSSE, "Security"),
                (NS_WSSE, "UsernameToken"),
                (NS_WSSE, "Password"),
            ] => &mut rst.password,
            _ => return,
        },
        [
            (NS_SOAP12, "Envelope"),
            (NS_SOAP12, "Body"),
            (_, "RequestSecurityToken"),
            rest @ ..,
        ] => match rest {
            [
                (NS_WSP, "AppliesTo"),
                (NS_WSA, "EndpointReference"),
                (NS_WSA, "Address"),
            ] => &mut rst.applies_to,
            [(_, "KeyType")] => &mut rst.key_type,
            [(_, "RequestType")] => &mut rst.request_type,
            _ => return,
        },
        _ => return,
    };
    *slot = Some(text);
}

/// A SOAP 1.2 fault as WCF sends it: HTTP 500.
fn fault(relates_to: Option<&str>, code: &str, subcode: Option<&str>, reason: &str) -> Response {
    let relates = relates_to
        .map(|id| format!("<a:RelatesTo>{}</a:RelatesTo>", escape(id)))
        .unwrap_or_default();
    let subcode = subcode
        .map(|s| format!("<s:Subcode><s:Value xmlns:a=\"{NS_WSSE}\">{s}</s:Value></s:Subcode>"))
        .unwrap_or_default();
    soap(
        500,
        format!(
            "<s:Envelope xmlns:s=\"{NS_SOAP12}\" xmlns:a=\"{NS_WSA}\"><s:Header><a:Action s:mustUnderstand=\"1\">http://www.w3.org/2005/08/addressing/soap/fault</a:Action>{relates}</s:Header><s:Body><s:Fault><s:Code><s:Value>{code}</s:Value>{subcode}</s:Code><s:Reason><s:Text xml:lang=\"en-US\">{}</s:Text></s:Reason></s:Fault></s:Body></s:Envelope>",
            escape(reason)
        ),
    )
}

const ID3242: &str = "ID3242: The security token could not be authenticated or authorized.";

fn wstrust(
    shared: &Shared,
    version: Version,
    headers: &HeaderMap,
    body: &[u8],
    now: u64,
) -> Response {
    let parsed = parse_rst(body);
    let username = parsed
        .as_ref()
        .ok()
        .and_then(|r| r.username.clone())
        .unwrap_or_default();
    let injected = {
        let mut state = shared.state();
        state.counters.wstrust += 1;
        Counters::bump(
            &mut state.counters.wstrust_by_version,
            version.label().to_owned(),
        );
        Counters::bump(
            &mut state.counters.wstrust_requests_by_user,
            username.to_lowercase(),
        );
        state.adfs.faults.pop_front()
    };
    match injected {
        Some(AdfsFault::ServiceUnavailable) => {
            let mut r = plain(503, "<html><body>Service Unavailable</body></html>");
            r.headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html"));
            return r;
        }
        Some(AdfsFault::RequestFailed) => {
            return fault(
                None,
                "s:Receiver",
                Some("a:RequestFailed"),
                "MSIS7068: Access denied.",
            );
        }
        None => {}
    }
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !content_type
        .to_ascii_lowercase()
        .starts_with("application/soap+xml")
    {
        return plain(
            415,
            "Cannot process the message because the content type was not the expected type 'application/soap+xml; charset=utf-8'.",
        );
    }
    let rst = match parsed {
        Ok(rst) if rst.soap12 => rst,
        Ok(_) => {
            return fault(
                None,
                "s:Sender",
                Some("a:InvalidRequest"),
                "ID3035: The request was not valid or is malformed (not a SOAP 1.2 envelope).",
            );
        }
        Err(why) => {
            return fault(
                None,
                "s:Sender",
                Some("a:InvalidRequest"),
                &format!("ID3035: The request was not valid or is malformed ({why})."),
            );
        }
    };
    let relates = rst.message_id.as_deref();
    let action = rst.action.as_deref().map(str::trim).unwrap_or("");
    let soap_action = headers
        .get("soapaction")
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim().trim_matches('"'));
    if action != version.action() || soap_action.is_some_and(|h| h != version.action()) {
        return fault(
            relates,
            "s:Sender",
            Some("a:ActionNotSupported"),
            &format!(
                "The message with Action '{action}' cannot be processed at the receiver, due to a ContractFilter mismatch at the EndpointDispatcher."
            ),
        );
    }
    let adfs = shared.adfs_url.as_deref().unwrap_or_default();
    let path = match version {
        Version::V13 => "13",
        Version::V2005 => "2005",
    };
    let endpoint = format!("{adfs}/adfs/services/trust/{path}/usernamemixed");
    let to = rst.to.as_deref().map(str::trim).unwrap_or("");
    if !to.eq_ignore_ascii_case(&endpoint) {
        return fault(
            relates,
            "s:Sender",
            Some("a:DestinationUnreachable"),
            &format!(
                "The message with To '{to}' cannot be processed at the receiver, due to an AddressFilter mismatch at the EndpointDispatcher."
            ),
        );
    }
    let fresh = match (
        rst.created.as_deref().and_then(parse_time),
        rst.expires.as_deref().and_then(parse_time),
    ) {
        // Five minutes of clock skew, as WCF allows.
        (Some(created), Some(expires)) => created <= now + 300 && expires + 300 > now,
        _ => false,
    };
    let (Some(username), Some(password)) = (rst.username.as_deref(), rst.password.as_deref())
    else {
        return fault(
            relates,
            "s:Sender",
            Some("a:InvalidSecurity"),
            "An error occurred when verifying security for the message.",
        );
    };
    if !fresh {
        return fault(
            relates,
            "s:Sender",
            Some("a:InvalidSecurity"),
            "An error occurred when verifying security for the message.",
        );
    }
    if rst.wst.as_deref() != Some(version.namespace())
        || rst.key_type.as_deref().map(str::trim) != Some(version.key_type())
        || rst.request_type.as_deref().map(str::trim) != Some(version.request_type())
    {
        return fault(
            relates,
            "s:Sender",
            Some("a:InvalidRequest"),
            "ID3035: The request was not valid or is malformed.",
        );
    }
    let applies_to = rst.applies_to.as_deref().map(str::trim).unwrap_or("");
    if applies_to != MICROSOFT_ONLINE {
        return fault(
            relates,
            "s:Sender",
            Some("a:RequestFailed"),
            &format!(
                "MSIS7007: The requested relying party trust '{applies_to}' is unspecified or unsupported."
            ),
        );
    }

    let mut state = shared.state();
    // AD FS authenticates against Active Directory, which the directory
    // stands in for (its lockout counting included). A wrong, locked or
    // disabled account all get the same fault, as from AD FS.
    let identity = if is_federated(shared, username) {
        state.directory.password_sign_in(username, password)
    } else {
        Err(SignInError::NoSuchUser)
    };
    let identity = match identity {
        Ok(i) => i,
        // MFA is Entra's business: it refuses the assertion later.
        Err(SignInError::MfaRequired) => match state.directory.identity(username) {
            Some(i) => i,
            None => return fault(relates, "s:Sender", Some("a:FailedAuthentication"), ID3242),
        },
        Err(_) => {
            Counters::bump(
                &mut state.counters.wstrust_failures_by_user,
                username.to_lowercase(),
            );
            return fault(relates, "s:Sender", Some("a:FailedAuthentication"), ID3242);
        }
    };
    let Some(federation) = state.adfs.federation.clone() else {
        return plain(404, "Not Found");
    };
    let lifetime = federation.assertion_lifetime.as_secs().max(1);
    let issued = issue_assertion(shared, &identity, federation.saml, now, now + lifetime);
    let Ok(issued) = issued else {
        return plain(500, "signing failed");
    };
    state.adfs.issued.insert(
        issued.id.clone(),
        Issued {
            digest: sha256(issued.xml.as_bytes()),
            upn: identity.upn.clone(),
            version: federation.saml,
            not_on_or_after: now + lifetime,
        },
    );
    drop(state);
    soap(
        200,
        rstr(
            version,
            federation.saml,
            &issued.xml,
            relates,
            now,
            now + lifetime,
        ),
    )
}

struct Assertion {
    id: String,
    xml: String,
}

fn sha256(data: &[u8]) -> Vec<u8> {
    ring::digest::digest(&ring::digest::SHA256, data)
        .as_ref()
        .to_vec()
}

fn escape(s: &str) -> String {
    quick_xml::escape::escape(s).into_owned()
}

/// The user's on-premises `objectGUID` as Entra Connect syncs it
/// (`ImmutableID`): base64 of the GUID's bytes.
fn immutable_id(upn: &str) -> String {
    let oid = object_id(upn);
    let bytes = uuid::Uuid::parse_str(&oid).map_or([0u8; 16], |u| *u.as_bytes());
    STANDARD.encode(bytes)
}

fn issue_assertion(
    shared: &Shared,
    identity: &Identity,
    version: SamlVersion,
    now: u64,
    not_on_or_after: u64,
) -> Result<Assertion, String> {
    let id = format!("_{}", uuid::Uuid::new_v4());
    let instant = time::rfc3339(now);
    let expiry = time::rfc3339(not_on_or_after);
    let issuer = format!(
        "{}/adfs/services/trust",
        shared.adfs_url.as_deref().unwrap_or_default()
    );
    let upn = escape(&identity.upn);
    let immutable = immutable_id(&identity.upn);
    let (open, before_signature, after_signature, close) = match version {
        SamlVersion::Saml11 => {
            let subject = format!(
                "<saml:Subject><saml:NameIdentifier Format=\"urn:oasis:names:tc:SAML:1.1:nameid-format:unspecified\">{immutable}</saml:NameIdentifier><saml:SubjectConfirmation><saml:ConfirmationMethod>urn:oasis:names:tc:SAML:1.0:cm:bearer</saml:ConfirmationMethod></saml:SubjectConfirmation></saml:Subject>"
            );
            (
                format!(
                    "<saml:Assertion MajorVersion=\"1\" MinorVersion=\"1\" AssertionID=\"{id}\" Issuer=\"{issuer}\" IssueInstant=\"{instant}\" xmlns:saml=\"{NS_SAML1}\">"
                ),
                format!(
                    "<saml:Conditions NotBefore=\"{instant}\" NotOnOrAfter=\"{expiry}\"><saml:AudienceRestrictionCondition><saml:Audience>{MICROSOFT_ONLINE}</saml:Audience></saml:AudienceRestrictionCondition></saml:Conditions><saml:AttributeStatement>{subject}<saml:Attribute AttributeName=\"UPN\" AttributeNamespace=\"http://schemas.xmlsoap.org/claims\"><saml:AttributeValue>{upn}</saml:AttributeValue></saml:Attribute><saml:Attribute AttributeName=\"ImmutableID\" AttributeNamespace=\"http://schemas.microsoft.com/LiveID/Federation/2008/05\"><saml:AttributeValue>{immutable}</saml:AttributeValue></saml:Attribute></saml:AttributeStatement><saml:AuthenticationStatement AuthenticationMethod=\"urn:oasis:names:tc:SAML:1.0:am:password\" AuthenticationInstant=\"{instant}\">{subject}</saml:AuthenticationStatement>"
                ),
                String::new(),
                "</saml:Assertion>",
            )
        }
        SamlVersion::Saml20 => (
            format!(
                "<Assertion ID=\"{id}\" IssueInstant=\"{instant}\" Version=\"2.0\" xmlns=\"{NS_SAML2}\"><Issuer>{issuer}</Issuer>"
            ),
            String::new(),
            format!(
                "<Subject><NameID Format=\"urn:oasis:names:tc:SAML:1.1:nameid-format:unspecified\">{immutable}</NameID><SubjectConfirmation Method=\"urn:oasis:names:tc:SAML:2.0:cm:bearer\"><SubjectConfirmationData NotOnOrAfter=\"{expiry}\"/></SubjectConfirmation></Subject><Conditions NotBefore=\"{instant}\" NotOnOrAfter=\"{expiry}\"><AudienceRestriction><Audience>{MICROSOFT_ONLINE}</Audience></AudienceRestriction></Conditions><AttributeStatement><Attribute Name=\"UPN\"><AttributeValue>{upn}</AttributeValue></Attribute><Attribute Name=\"ImmutableID\"><AttributeValue>{immutable}</AttributeValue></Attribute></AttributeStatement><AuthnStatement AuthnInstant=\"{instant}\"><AuthnContext><AuthnContextClassRef>urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport</AuthnContextClassRef></AuthnContext></AuthnStatement>"
            ),
            "</Assertion>",
        ),
    };
    // The enveloped-signature transform: the digest covers the assertion
    // without its signature.
    let unsigned = format!("{open}{before_signature}{after_signature}{close}");
    let digest = STANDARD.encode(sha256(unsigned.as_bytes()));
    let signed_info = format!(
        "<ds:SignedInfo><ds:CanonicalizationMethod Algorithm=\"http://www.w3.org/2001/10/xml-exc-c14n#\"/><ds:SignatureMethod Algorithm=\"http://www.w3.org/2001/04/xmldsig-more#rsa-sha256\"/><ds:Reference URI=\"#{id}\"><ds:Transforms><ds:Transform Algorithm=\"http://www.w3.org/2000/09/xmldsig#enveloped-signature\"/><ds:Transform Algorithm=\"http://www.w3.org/2001/10/xml-exc-c14n#\"/></ds:Transforms><ds:DigestMethod Algorithm=\"http://www.w3.org/2001/04/xmlenc#sha256\"/><ds:DigestValue>{digest}</ds:DigestValue></ds:Reference></ds:SignedInfo>"
    );
    let signature_value = STANDARD.encode(rsa_sign(signed_info.as_bytes())?);
    let certificate: String = shared
        .ca_pem
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    let signature = format!(
        "<ds:Signature xmlns:ds=\"http://www.w3.org/2000/09/xmldsig#\">{signed_info}<ds:SignatureValue>{signature_value}</ds:SignatureValue><KeyInfo xmlns=\"http://www.w3.org/2000/09/xmldsig#\"><X509Data><X509Certificate>{certificate}</X509Certificate></X509Data></KeyInfo></ds:Signature>"
    );
    Ok(Assertion {
        id,
        xml: format!("{open}{before_signature}{signature}{after_signature}{close}"),
    })
}

fn rsa_sign(data: &[u8]) -> Result<Vec<u8>, String> {
    let der = PrivatePkcs8KeyDer::from_pem_slice(SIGNING_KEY_PEM.as_bytes())
        .map_err(|e| e.to_string())?;
    let pair = RsaKeyPair::from_pkcs8(der.secret_pkcs8_der()).map_err(|e| e.to_string())?;
    let mut sig = vec![0u8; pair.public().modulus_len()];
    pair.sign(&RSA_PKCS1_SHA256, &SystemRandom::new(), data, &mut sig)
        .map_err(|e| e.to_string())?;
    Ok(sig)
}

/// The answer with the assertion. 1.3 wraps it in a collection and names
/// the token type by its SAML namespace; 2005 answers a single response
/// and uses the WSS SAML token profile names (both forms are in use, and
/// clients must map both).
fn rstr(
    version: Version,
    saml: SamlVersion,
    assertion: &str,
    relates_to: Option<&str>,
    now: u64,
    expires: u64,
) -> String {
    let created = time::rfc3339(now);
    let expiry = time::rfc3339(expires);
    let relates = relates_to
        .map(|id| format!("<a:RelatesTo>{}</a:RelatesTo>", escape(id)))
        .unwrap_or_default();
    let token_type = match (version, saml) {
        (Version::V13, SamlVersion::Saml11) => NS_SAML1,
        (Version::V13, SamlVersion::Saml20) => NS_SAML2,
        (Version::V2005, SamlVersion::Saml11) => {
            "http://docs.oasis-open.org/wss/oasis-wss-saml-token-profile-1.1#SAMLV1.1"
        }
        (Version::V2005, SamlVersion::Saml20) => {
            "http://docs.oasis-open.org/wss/oasis-wss-saml-token-profile-1.1#SAMLV2.0"
        }
    };
    let ns = version.namespace();
    let header = format!(
        "<s:Header><a:Action s:mustUnderstand=\"1\">{}</a:Action>{relates}<o:Security s:mustUnderstand=\"1\" xmlns:o=\"{NS_WSSE}\"><u:Timestamp u:Id=\"_0\"><u:Created>{created}</u:Created><u:Expires>{}</u:Expires></u:Timestamp></o:Security></s:Header>",
        version.reply_action(),
        time::rfc3339(now + 300),
    );
    let response = format!(
        "<t:RequestSecurityTokenResponse{}><t:Lifetime><wsu:Created xmlns:wsu=\"{NS_WSU}\">{created}</wsu:Created><wsu:Expires xmlns:wsu=\"{NS_WSU}\">{expiry}</wsu:Expires></t:Lifetime><wsp:AppliesTo xmlns:wsp=\"{NS_WSP}\"><wsa:EndpointReference xmlns:wsa=\"{NS_WSA}\"><wsa:Address>{MICROSOFT_ONLINE}</wsa:Address></wsa:EndpointReference></wsp:AppliesTo><t:RequestedSecurityToken>{assertion}</t:RequestedSecurityToken><t:TokenType>{token_type}</t:TokenType><t:RequestType>{}</t:RequestType><t:KeyType>{}</t:KeyType></t:RequestSecurityTokenResponse>",
        if version == Version::V2005 {
            format!(" xmlns:t=\"{ns}\"")
        } else {
            String::new()
        },
        version.request_type(),
        version.key_type(),
    );
    let body = match version {
        Version::V13 => format!(
            "<t:RequestSecurityTokenResponseCollection xmlns:t=\"{ns}\">{response}</t:RequestSecurityTokenResponseCollection>"
        ),
        Version::V2005 => response,
    };
    format!(
        "<s:Envelope xmlns:s=\"{NS_SOAP12}\" xmlns:a=\"{NS_WSA}\" xmlns:u=\"{NS_WSU}\">{header}<s:Body>{body}</s:Body></s:Envelope>"
    )
}

/// `2026-01-02T03:04:05Z`, with or without fractional seconds.
fn parse_time(s: &str) -> Option<u64> {
    let s = s.trim().strip_suffix('Z')?;
    let (date, clock) = s.split_once('T')?;
    let mut d = date.split('-');
    let year: i64 = d.next()?.parse().ok()?;
    let month: i64 = d.next()?.parse().ok()?;
    let day: i64 = d.next()?.parse().ok()?;
    let clock = clock.split('.').next()?;
    let mut c = clock.split(':');
    let h: i64 = c.next()?.parse().ok()?;
    let mi: i64 = c.next()?.parse().ok()?;
    let sec: i64 = c.next()?.parse().ok()?;
    if d.next().is_some() || c.next().is_some() || !(1..=12).contains(&month) {
        return None;
    }
    // Howard Hinnant's days_from_civil.
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    u64::try_from(days * 86_400 + h * 3600 + mi * 60 + sec).ok()
}

fn saml_invalid(detail: &str) -> AadError {
    AadError {
        status: 400,
        error: "invalid_grant",
        code: 50008,
        message: format!("SAML token is invalid. {detail}"),
        suberror: None,
        retry_after: None,
    }
}

/// Decodes the `assertion` form field: standard base64 with padding (ADAL,
/// MSAL .NET and Go) or URL-safe without padding (MSAL Python).
fn decode_assertion(field: &str) -> Option<Vec<u8>> {
    STANDARD
        .decode(field)
        .or_else(|_| URL_SAFE_NO_PAD.decode(field))
        .ok()
}

/// The root element of an assertion: (namespace, local name, id).
fn assertion_root(xml: &[u8]) -> Option<(String, String, String)> {
    let mut reader = NsReader::from_reader(xml);
    loop {
        match reader.read_event().ok()? {
            Event::Start(e) | Event::Empty(e) => {
                let (ns, local) = reader.resolve_element(e.name());
                let ns = match ns {
                    ResolveResult::Bound(ns) => String::from_utf8_lossy(ns.as_ref()).into_owned(),
                    _ => String::new(),
                };
                let local = String::from_utf8_lossy(local.as_ref()).into_owned();
                let id_attr: &[u8] = if ns == NS_SAML1 {
                    b"AssertionID"
                } else {
                    b"ID"
                };
                let id = e
                    .attributes()
                    .filter_map(Result::ok)
                    .find(|a| a.key.as_ref() == id_attr)
                    .and_then(|a| a.unescape_value().ok().map(|v| v.into_owned()))?;
                return Some((ns, local, id));
            }
            Event::Eof | Event::DocType(_) => return None,
            _ => {}
        }
    }
}

/// Redeems a SAML bearer grant at the token endpoint: the assertion must be
/// one this AD FS issued, unchanged, unexpired, of the grant's version.
pub(crate) fn redeem(
    shared: &Shared,
    state: &mut crate::emulator::State,
    grant_type: &str,
    field: &str,
    now: u64,
) -> Result<Identity, AadError> {
    let xml = decode_assertion(field).ok_or_else(|| {
        saml_invalid("The assertion is not base64 (standard with padding, or URL-safe without).")
    })?;
    let (ns, local, id) = assertion_root(&xml)
        .ok_or_else(|| saml_invalid("The assertion is not a SAML assertion."))?;
    let version = match (ns.as_str(), local.as_str()) {
        (NS_SAML1, "Assertion") => SamlVersion::Saml11,
        (NS_SAML2, "Assertion") => SamlVersion::Saml20,
        _ => return Err(saml_invalid("The assertion is not a SAML assertion.")),
    };
    let wanted = if grant_type == SAML11_GRANT {
        SamlVersion::Saml11
    } else {
        SamlVersion::Saml20
    };
    if version != wanted {
        return Err(saml_invalid(&format!(
            "The grant type {grant_type} does not match the SAML version of the assertion."
        )));
    }
    let Some(issued) = state.adfs.issued.get(&id) else {
        return Err(AadError {
            code: 50107,
            message: "The requested federation realm object does not exist. The assertion was not issued by a federation server this tenant trusts.".to_owned(),
            ..saml_invalid("")
        });
    };
    if issued.digest != sha256(&xml) || issued.version != version {
        return Err(AadError {
            code: 50006,
            message: "Signature verification failed because of an invalid signature. The assertion was changed after it was signed.".to_owned(),
            ..saml_invalid("")
        });
    }
    if now >= issued.not_on_or_after {
        return Err(AadError {
            code: 500133,
            message: format!(
                "Assertion is not within its valid time range. Ensure that the access token is not expired before using it for user assertion, or request a new token. Current time: {}, expiry time of assertion {}.",
                time::rfc3339(now),
                time::rfc3339(issued.not_on_or_after)
            ),
            ..saml_invalid("")
        });
    }
    let upn = issued.upn.clone();
    let identity = state
        .directory
        .identity(&upn)
        .ok_or_else(|| AadError::no_such_user(shared.tenant_name()))?;
    match state.directory.state(&upn) {
        Some(UserState::Disabled) => Err(AadError::disabled()),
        Some(UserState::MfaRequired) => Err(AadError::mfa_required("")),
        _ => Ok(identity),
    }
}

impl Emulator {
    /// `https://127.0.0.1:PORT` of the emulated AD FS, when the scenario
    /// has a federated domain.
    pub fn adfs_url(&self) -> Option<String> {
        self.shared.adfs_url.clone()
    }

    /// Changes which metadata AD FS serves from now on.
    pub fn set_mex_offer(&self, offer: MexOffer) {
        if let Some(f) = self.shared.state().adfs.federation.as_mut() {
            f.mex = offer;
        }
    }

    /// Changes which SAML version AD FS issues from now on.
    pub fn set_saml_version(&self, version: SamlVersion) {
        if let Some(f) = self.shared.state().adfs.federation.as_mut() {
            f.saml = version;
        }
    }

    /// Every assertion issued so far is expired from now on.
    pub fn expire_assertions(&self) {
        for issued in self.shared.state().adfs.issued.values_mut() {
            issued.not_on_or_after = 0;
        }
    }

    /// The next `n` WS-Trust requests are answered with `fault` (after
    /// being counted).
    pub fn adfs_fail_next(&self, n: usize, fault: AdfsFault) {
        self.shared
            .state()
            .adfs
            .faults
            .extend(std::iter::repeat_n(fault, n));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times() {
        assert_eq!(parse_time("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_time("2019-01-15T19:05:27Z"), Some(1_547_579_127));
        assert_eq!(parse_time("2019-01-15T19:05:27.123Z"), Some(1_547_579_127));
        assert_eq!(parse_time("2019-01-15 19:05:27Z"), None);
        assert_eq!(parse_time("2019-01-15T19:05:27"), None);
        assert_eq!(
            parse_time(&time::rfc3339(1_700_000_000)),
            Some(1_700_000_000)
        );
    }

    #[test]
    fn rst_paths() {
        let rst = format!(
            "<s:Envelope xmlns:s=\"{NS_SOAP12}\" xmlns:wsa=\"{NS_WSA}\" xmlns:wsu=\"{NS_WSU}\"><s:Header><wsa:Action s:mustUnderstand=\"1\">act</wsa:Action><wsa:To>to</wsa:To><wsse:Security xmlns:wsse=\"{NS_WSSE}\"><wsu:Timestamp><wsu:Created>c</wsu:Created><wsu:Expires>e</wsu:Expires></wsu:Timestamp><wsse:UsernameToken><wsse:Username>u&amp;&#x41;</wsse:Username><wsse:Password>&lt;p&gt;</wsse:Password></wsse:UsernameToken></wsse:Security></s:Header><s:Body><wst:RequestSecurityToken xmlns:wst=\"urn:w\"><wsp:AppliesTo xmlns:wsp=\"{NS_WSP}\"><wsa:EndpointReference><wsa:Address>urn:a</wsa:Address></wsa:EndpointReference></wsp:AppliesTo><wst:KeyType>k</wst:KeyType><wst:RequestType>r</wst:RequestType></wst:RequestSecurityToken></s:Body></s:Envelope>"
        );
        let r = parse_rst(rst.as_bytes()).expect("parses");
        assert!(r.soap12);
        assert_eq!(r.action.as_deref(), Some("act"));
        assert_eq!(r.to.as_deref(), Some("to"));
        assert_eq!(r.created.as_deref(), Some("c"));
        assert_eq!(r.expires.as_deref(), Some("e"));
        assert_eq!(r.username.as_deref(), Some("u&A"));
        assert_eq!(r.password.as_deref(), Some("<p>"));
        assert_eq!(r.wst.as_deref(), Some("urn:w"));
        assert_eq!(r.applies_to.as_deref(), Some("urn:a"));
        assert_eq!(r.key_type.as_deref(), Some("k"));
        assert_eq!(r.request_type.as_deref(), Some("r"));
        assert!(parse_rst(b"<!DOCTYPE x><x/>").is_err());
        assert!(parse_rst(b"<a><b></a>").is_err());
    }

    #[test]
    fn assertions_decode_both_ways() {
        let xml = b"<saml:Assertion AssertionID=\"_1\" xmlns:saml=\"urn:oasis:names:tc:SAML:1.0:assertion\"/>?>";
        let standard = STANDARD.encode(xml);
        let url = URL_SAFE_NO_PAD.encode(xml);
        assert_ne!(standard, url);
        assert_eq!(decode_assertion(&standard).as_deref(), Some(&xml[..]));
        assert_eq!(decode_assertion(&url).as_deref(), Some(&xml[..]));
        assert_eq!(decode_assertion("not base64!"), None);
        assert_eq!(
            assertion_root(xml),
            Some((NS_SAML1.to_owned(), "Assertion".to_owned(), "_1".to_owned()))
        );
    }
}
