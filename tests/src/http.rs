//! Request and response plumbing shared by the three kinds of server.
//! Routing is by hand over path segments: Entra and ARM treat paths
//! case-insensitively, and every malformed request must get the service's
//! own error shape rather than a framework's plain-text rejection.

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use percent_encoding::percent_decode_str;
use serde_json::Value;

/// Token requests are a few hundred bytes; SAML assertions a few KiB.
pub(crate) const MAX_BODY_BYTES: usize = 64 * 1024;

/// The body, or `None` when it is larger than [`MAX_BODY_BYTES`] or the
/// connection broke.
pub(crate) async fn read_body(body: Body) -> Option<Bytes> {
    axum::body::to_bytes(body, MAX_BODY_BYTES).await.ok()
}

/// Percent-decoded path segments; empty segments (`//`) are kept because
/// ARM scopes can contain them.
pub(crate) fn segments(uri: &Uri) -> Vec<String> {
    uri.path()
        .trim_start_matches('/')
        .split('/')
        .map(|s| percent_decode_str(s).decode_utf8_lossy().into_owned())
        .collect()
}

/// The first value of a query parameter, name compared case-insensitively
/// (ARM does so).
pub(crate) fn query_param(uri: &Uri, name: &str) -> Option<String> {
    let query = uri.query()?;
    url::form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.into_owned())
}

pub(crate) fn form_pairs(body: &[u8]) -> Vec<(String, String)> {
    url::form_urlencoded::parse(body).into_owned().collect()
}

pub(crate) fn form_get<'a>(form: &'a [(String, String)], name: &str) -> Option<&'a str> {
    form.iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .filter(|v| !v.is_empty())
}

#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Bearer<'a> {
    Missing,
    OtherScheme,
    Token(&'a str),
}

pub(crate) fn bearer(headers: &HeaderMap) -> Bearer<'_> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Bearer::Missing;
    };
    let Ok(value) = value.to_str() else {
        return Bearer::OtherScheme;
    };
    match value.split_once(' ') {
        Some((scheme, token))
            if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() =>
        {
            Bearer::Token(token.trim())
        }
        _ => Bearer::OtherScheme,
    }
}

pub(crate) fn request_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// A JSON answer with extra headers; header values that are not valid
/// HTTP are dropped rather than failing the answer.
pub(crate) fn json(status: u16, body: &Value, headers: &[(&'static str, String)]) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = (status, body.to_string()).into_response();
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    for (name, value) in headers {
        if let Ok(value) = HeaderValue::from_str(value) {
            h.insert(*name, value);
        }
    }
    response
}

pub(crate) fn text(status: u16, body: &'static str) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, body).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_are_decoded() {
        let uri: Uri = "/common/UserRealm/alice%40contoso.com?api-version=1.0"
            .parse()
            .expect("valid uri");
        assert_eq!(segments(&uri), ["common", "UserRealm", "alice@contoso.com"]);
        assert_eq!(query_param(&uri, "API-Version").as_deref(), Some("1.0"));
        assert_eq!(query_param(&uri, "format"), None);
    }

    #[test]
    fn bearer_parsing() {
        let mut h = HeaderMap::new();
        assert_eq!(bearer(&h), Bearer::Missing);
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic abc"));
        assert_eq!(bearer(&h), Bearer::OtherScheme);
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("bearer  x.y.z "),
        );
        assert_eq!(bearer(&h), Bearer::Token("x.y.z"));
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer "));
        assert_eq!(bearer(&h), Bearer::OtherScheme);
    }
}
