//! The one HTTP client every upstream call goes through.
//!
//! TLS is rustls with the ring provider passed in explicitly (reqwest is built
//! with `rustls-no-provider`, so nothing else would pick one). Trust is the
//! system store plus an optional extra CA file, for TLS-inspecting proxies and
//! the test emulator; verification cannot be switched off. Plain `http://`
//! is refused, even on a redirect. Proxies come from `HTTPS_PROXY` /
//! `NO_PROXY` (reqwest reads them itself on Linux).
//!
//! Bodies are read with [`read_capped`]: an upstream (or something pretending
//! to be one) cannot make the daemon buffer an unbounded answer.

use std::error::Error as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::RootCertStore;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

pub const USER_AGENT: &str = concat!("akscred/", env!("CARGO_PKG_VERSION"));
pub const MAX_REDIRECTS: usize = 5;
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("cannot read the CA file {}: {source}", path.display())]
    CaFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the CA file {} holds no PEM certificate (expected -----BEGIN CERTIFICATE-----)", path.display())]
    NoCertificates { path: PathBuf },
    #[error("the CA file {} holds a certificate rustls cannot use: {reason}", path.display())]
    BadCertificate { path: PathBuf, reason: String },
    #[error(
        "no trust anchors: the system certificate store is empty or unreadable and no ca_file is set"
    )]
    NoTrustAnchors,
    #[error("cannot set up TLS: {0}")]
    Tls(#[from] rustls::Error),
    #[error("cannot build the HTTP client: {}", chain(.0))]
    Build(reqwest::Error),
    #[error("{endpoint}: {}", chain(.error))]
    Transport {
        endpoint: String,
        error: reqwest::Error,
    },
    #[error("{endpoint}: the answer is larger than {limit} bytes")]
    TooLarge { endpoint: String, limit: usize },
}

impl HttpError {
    /// Wraps a reqwest error from a request to `endpoint`. The URL reqwest
    /// would add is dropped: callers name the endpoint without its query.
    pub fn transport(endpoint: &str, error: reqwest::Error) -> HttpError {
        HttpError::Transport {
            endpoint: endpoint.to_string(),
            error: error.without_url(),
        }
    }
}

/// reqwest's `Display` stops at the outermost layer ("error sending
/// request"); the reason a user can act on ("invalid peer certificate:
/// UnknownIssuer", "connection refused") is further down the chain.
fn chain(error: &reqwest::Error) -> String {
    let mut out = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = cause.source();
    }
    out
}

/// `scheme://host[:port]/path` of a URL: what error messages and logs name.
/// The query is left out so nothing passed in it can leak into a message.
pub fn endpoint_of(url: &url::Url) -> String {
    let mut out = format!("{}://{}", url.scheme(), url.host_str().unwrap_or(""));
    if let Some(port) = url.port() {
        out.push_str(&format!(":{port}"));
    }
    out.push_str(url.path());
    out
}

/// The client for every call to Entra ID, ARM and federation servers.
pub fn build_client(extra_ca: Option<&Path>) -> Result<reqwest::Client, HttpError> {
    let tls = tls_config(extra_ca)?;
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .https_only(true)
        .redirect(redirect_policy())
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(REQUEST_TIMEOUT)
        .user_agent(USER_AGENT)
        .build()
        .map_err(HttpError::Build)
}

/// At most [`MAX_REDIRECTS`] hops, and never a 307/308 to another origin:
/// those replay the request body, which for a token request holds the
/// password. reqwest already drops `Authorization` when the host changes.
fn redirect_policy() -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(|attempt| {
        if attempt.previous().len() >= MAX_REDIRECTS {
            return attempt.error(format!("more than {MAX_REDIRECTS} redirects"));
        }
        let keeps_body = matches!(attempt.status().as_u16(), 307 | 308);
        let same_origin = attempt
            .previous()
            .last()
            .is_some_and(|prev| prev.origin() == attempt.url().origin());
        if keeps_body && !same_origin {
            return attempt.stop();
        }
        attempt.follow()
    })
}

fn tls_config(extra_ca: Option<&Path>) -> Result<rustls::ClientConfig, HttpError> {
    let mut roots = RootCertStore::empty();
    // Unreadable system entries are skipped: one bad file in
    // /etc/ssl/certs must not take the daemon down.
    let native = rustls_native_certs::load_native_certs();
    for error in &native.errors {
        tracing::debug!(%error, "skipping part of the system certificate store");
    }
    let (added, ignored) = roots.add_parsable_certificates(native.certs);
    tracing::debug!(added, ignored, "system trust anchors");
    if let Some(path) = extra_ca {
        for cert in read_ca_file(path)? {
            roots.add(cert).map_err(|e| HttpError::BadCertificate {
                path: path.to_path_buf(),
                reason: e.to_string(),
            })?;
        }
    }
    if roots.is_empty() {
        return Err(HttpError::NoTrustAnchors);
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// Every certificate in a PEM file; other PEM sections (keys, CRLs) are
/// ignored.
fn read_ca_file(path: &Path) -> Result<Vec<CertificateDer<'static>>, HttpError> {
    let bytes = std::fs::read(path).map_err(|source| HttpError::CaFile {
        path: path.to_path_buf(),
        source,
    })?;
    let mut certs = Vec::new();
    for item in CertificateDer::pem_slice_iter(&bytes) {
        let cert = item.map_err(|e| HttpError::BadCertificate {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        certs.push(cert);
    }
    if certs.is_empty() {
        return Err(HttpError::NoCertificates {
            path: path.to_path_buf(),
        });
    }
    Ok(certs)
}

/// Reads a body of at most `limit` bytes, chunk by chunk, and fails as soon
/// as it grows past the limit (or announces that it will).
pub async fn read_capped(mut resp: reqwest::Response, limit: usize) -> Result<Vec<u8>, HttpError> {
    let endpoint = endpoint_of(resp.url());
    let too_large = |endpoint: String| HttpError::TooLarge { endpoint, limit };
    if resp.content_length().is_some_and(|len| len > limit as u64) {
        return Err(too_large(endpoint));
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| HttpError::transport(&endpoint, e))?
    {
        if body.len().saturating_add(chunk.len()) > limit {
            return Err(too_large(endpoint));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// A tiny plain-HTTP upstream for the exchange tests of `entra` and `aks`:
/// answers each connection with the next canned response and records the
/// request.
#[cfg(test)]
pub(crate) mod fake {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::sync::mpsc;

    pub struct Canned {
        pub status: u16,
        pub headers: Vec<(&'static str, String)>,
        pub body: Vec<u8>,
    }

    impl Canned {
        pub fn json(status: u16, body: &str) -> Canned {
            Canned {
                status,
                headers: vec![("Content-Type", "application/json".into())],
                body: body.as_bytes().to_vec(),
            }
        }

        pub fn header(mut self, name: &'static str, value: &str) -> Canned {
            self.headers.push((name, value.to_string()));
            self
        }
    }

    #[derive(Debug)]
    pub struct Recorded {
        pub request_line: String,
        pub headers: Vec<(String, String)>,
        pub body: Vec<u8>,
    }

    impl Recorded {
        pub fn header(&self, name: &str) -> Option<&str> {
            self.headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
        }
    }

    /// Starts the server; returns its base URL and the recorded requests.
    pub async fn serve(answers: Vec<Canned>) -> (String, mpsc::UnboundedReceiver<Recorded>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            for answer in answers {
                let Ok((mut sock, _)) = listener.accept().await else {
                    return;
                };
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                let head_end = loop {
                    if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        break at;
                    }
                    let n = sock.read(&mut chunk).await.unwrap();
                    assert!(n > 0, "connection closed mid-request");
                    buf.extend_from_slice(&chunk[..n]);
                };
                let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
                let mut lines = head.split("\r\n");
                let request_line = lines.next().unwrap_or_default().to_string();
                let headers: Vec<(String, String)> = lines
                    .filter_map(|l| l.split_once(':'))
                    .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
                    .collect();
                let length: usize = headers
                    .iter()
                    .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
                    .and_then(|(_, v)| v.parse().ok())
                    .unwrap_or(0);
                let mut body = buf[head_end + 4..].to_vec();
                while body.len() < length {
                    let n = sock.read(&mut chunk).await.unwrap();
                    assert!(n > 0, "connection closed mid-body");
                    body.extend_from_slice(&chunk[..n]);
                }
                let _ = tx.send(Recorded {
                    request_line,
                    headers,
                    body,
                });
                let mut out = format!("HTTP/1.1 {} X\r\n", answer.status);
                for (name, value) in &answer.headers {
                    out.push_str(&format!("{name}: {value}\r\n"));
                }
                out.push_str(&format!(
                    "Content-Length: {}\r\nConnection: close\r\n\r\n",
                    answer.body.len()
                ));
                let mut bytes = out.into_bytes();
                bytes.extend_from_slice(&answer.body);
                let _ = sock.write_all(&bytes).await;
                let _ = sock.shutdown().await;
            }
        });
        (base, rx)
    }

    /// The production client refuses http://; tests use one with the same
    /// TLS setup but plain HTTP allowed and no proxy.
    pub fn client() -> reqwest::Client {
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth();
        reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .no_proxy()
            .build()
            .unwrap()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A self-signed P-256 CA (public part only), valid until 2126.
    const TEST_CA: &str = "-----BEGIN CERTIFICATE-----
MIIBizCCATGgAwIBAgIUKC4ejAjWur2+1Y5AyhZ6LDXxB3wwCgYIKoZIzj0EAwIw
GjEYMBYGA1UEAwwPYWtzY3JlZC10ZXN0LWNhMCAXDTI2MTEyOTA2NTAwMVoYDzIx
MjYxMTA1MDY1MDAxWjAaMRgwFgYDVQQDDA9ha3NjcmVkLXRlc3QtY2EwWTATBgcq
hkjOPQIBBggqhkjOPQMBBwNCAAQvsPa8TAsQkKT08bFYHR/5ekY7+NhR5NXIIM00
LTwZiU925no92c1CVyzicogTW2RMNo1N97OoHy8gwjIxxbnCo1MwUTAdBgNVHQ4E
FgQUefT2YwjQKCuEF4iba/g65B1gbwwwHwYDVR0jBBgwFoAUefT2YwjQKCuEF4ib
a/g65B1gbwwwDwYDVR0TAQH/BAUwAwEB/zAKBggqhkjOPQQDAgNIADBFAiEAnGlI
jDV2E32bi7Kd1Gi2OlKxyGEanE8aCJv8VN3iHSsCICf6HBxs+9uu11UILaf9x+IT
srNtZAV5jwxBZPXV28Lj
-----END CERTIFICATE-----
";

    #[test]
    fn missing_ca_file_is_named() {
        let err = build_client(Some(Path::new("/nonexistent/corp-root.pem"))).unwrap_err();
        assert!(matches!(err, HttpError::CaFile { .. }), "{err}");
        assert!(err.to_string().contains("/nonexistent/corp-root.pem"));
    }

    #[test]
    fn ca_file_without_certificates_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("empty.pem");
        std::fs::write(&path, "not a certificate\n").unwrap();
        let err = build_client(Some(&path)).unwrap_err();
        assert!(matches!(err, HttpError::NoCertificates { .. }), "{err}");
        assert!(err.to_string().contains("empty.pem"));
    }

    #[test]
    fn ca_file_certificates_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ca.pem");
        std::fs::write(&path, format!("{TEST_CA}\n{TEST_CA}")).unwrap();
        assert_eq!(read_ca_file(&path).unwrap().len(), 2);
    }

    fn ca_path(dir: &tempfile::TempDir) -> PathBuf {
        let path = dir.path().join("ca.pem");
        std::fs::write(&path, TEST_CA).unwrap();
        path
    }

    #[tokio::test]
    async fn plain_http_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let client = build_client(Some(&ca_path(&dir))).unwrap();
        let err = client.get("http://127.0.0.1:9/").send().await.unwrap_err();
        assert!(
            err.is_builder() || err.to_string().contains("https"),
            "{err}"
        );
    }

    /// A plain-HTTP server that answers every connection with `body`
    /// in chunks of `chunk` bytes, without a Content-Length.
    async fn chunked_server(body: Vec<u8>, chunk: usize) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                let body = body.clone();
                tokio::spawn(async move {
                    let mut buf = [0u8; 4096];
                    let _ = sock.read(&mut buf).await;
                    let head = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n";
                    if sock.write_all(head.as_bytes()).await.is_err() {
                        return;
                    }
                    for part in body.chunks(chunk) {
                        let mut frame = format!("{:x}\r\n", part.len()).into_bytes();
                        frame.extend_from_slice(part);
                        frame.extend_from_slice(b"\r\n");
                        if sock.write_all(&frame).await.is_err() {
                            return;
                        }
                    }
                    let _ = sock.write_all(b"0\r\n\r\n").await;
                });
            }
        });
        format!("http://{addr}/")
    }

    #[tokio::test]
    async fn read_capped_reads_a_chunked_body_within_the_limit() {
        let url = chunked_server(vec![b'a'; 10_000], 1000).await;
        let resp = fake::client().get(&url).send().await.unwrap();
        assert_eq!(read_capped(resp, 10_000).await.unwrap().len(), 10_000);
    }

    #[tokio::test]
    async fn read_capped_stops_past_the_limit() {
        let url = chunked_server(vec![b'a'; 100_000], 1000).await;
        let resp = fake::client().get(&url).send().await.unwrap();
        let err = read_capped(resp, 4096).await.unwrap_err();
        assert!(
            matches!(err, HttpError::TooLarge { limit: 4096, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("127.0.0.1"), "{err}");
    }

    #[test]
    fn endpoint_drops_the_query() {
        let url = url::Url::parse("https://login.example.test:8443/t/oauth2/token?code=x").unwrap();
        assert_eq!(
            endpoint_of(&url),
            "https://login.example.test:8443/t/oauth2/token"
        );
    }
}
