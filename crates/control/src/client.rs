//! A client of the admin API for the CLI and tests: HTTPS with the admin's client certificate,
//! trusting only the CA named for the server, one connection per request.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{ACCEPT, CONTENT_TYPE, HOST, IF_MATCH};
use http::{HeaderMap, Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt as _, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::error::{ControlError, with_causes};

/// How long one request may take, connection and handshake included.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// A client of the admin API. Cheap to clone.
#[derive(Clone)]
pub struct AdminClient {
    connector: TlsConnector,
    server_name: ServerName<'static>,
    /// `host:port` to dial and to send as the authority.
    authority: String,
    /// `https://host:port`, for absolute URIs and messages.
    base: String,
}

impl std::fmt::Debug for AdminClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminClient")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

impl AdminClient {
    /// A client of the API at `base_url` (`https://127.0.0.1:9443`) that presents
    /// `client_cert_pem` (chain, leaf first) with `client_key_pem`, and trusts the server only
    /// under `server_ca_pem`.
    pub fn new(
        base_url: &str,
        client_cert_pem: &[u8],
        client_key_pem: &[u8],
        server_ca_pem: &[u8],
    ) -> Result<AdminClient, ControlError> {
        let bad_url = |problem| ControlError::BadUrl {
            url: base_url.to_owned(),
            problem,
        };
        let uri: Uri = base_url
            .trim_end_matches('/')
            .parse()
            .map_err(|_| bad_url("is not a URL"))?;
        if uri.scheme_str() != Some("https") {
            return Err(bad_url("does not start with https://"));
        }
        if uri.path() != "/" && !uri.path().is_empty() {
            return Err(bad_url("has a path"));
        }
        let host = uri.host().ok_or_else(|| bad_url("names no host"))?;
        let port = uri.port_u16().unwrap_or(443);
        let bare_host = host.trim_start_matches('[').trim_end_matches(']');
        let server_name = ServerName::try_from(bare_host.to_owned())
            .map_err(|_| bad_url("has a host that is neither a DNS name nor an IP address"))?;
        let authority = format!("{host}:{port}");

        let credentials = |what: &'static str| {
            move |reason: String| ControlError::ClientCredentials { what, reason }
        };
        let chain = CertificateDer::pem_slice_iter(client_cert_pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|error| credentials("certificate")(error.to_string()))?;
        if chain.is_empty() {
            return Err(credentials("certificate")(
                "no certificate in the PEM".into(),
            ));
        }
        let key = PrivateKeyDer::from_pem_slice(client_key_pem)
            .map_err(|error| credentials("key")(error.to_string()))?;
        let mut roots = RootCertStore::empty();
        for certificate in CertificateDer::pem_slice_iter(server_ca_pem) {
            let certificate =
                certificate.map_err(|error| credentials("server CA")(error.to_string()))?;
            roots
                .add(certificate)
                .map_err(|error| credentials("server CA")(error.to_string()))?;
        }
        if roots.is_empty() {
            return Err(credentials("server CA")("no certificate in the PEM".into()));
        }
        let tls_error = |error: rustls::Error| ControlError::Tls {
            what: "the admin client",
            reason: error.to_string(),
        };
        let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(tls_error)?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .map_err(tls_error)?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(AdminClient {
            connector: TlsConnector::from(Arc::new(config)),
            server_name,
            base: format!("https://{authority}"),
            authority,
        })
    }

    /// Sends one request; `body` goes as JSON, `if_match` as the `If-Match` header. Returns the
    /// status, the headers and the JSON answer (`null` when the answer has no body, as a 204).
    pub async fn request(
        &self,
        method: Method,
        path_and_query: &str,
        if_match: Option<&str>,
        body: Option<serde_json::Value>,
    ) -> Result<(StatusCode, HeaderMap, serde_json::Value), ControlError> {
        let url = format!("{}{path_and_query}", self.base);
        let failed = |reason: String| ControlError::Request {
            method: method.to_string(),
            url: url.clone(),
            reason,
        };
        let exchange = self.exchange(method.clone(), path_and_query, if_match, body);
        let (status, headers, bytes) = tokio::time::timeout(REQUEST_TIMEOUT, exchange)
            .await
            .map_err(|_| failed(format!("no answer within {} s", REQUEST_TIMEOUT.as_secs())))?
            .map_err(failed)?;
        let json = if bytes.is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::from_slice(&bytes).map_err(|error| ControlError::BadAnswer {
                method: method.to_string(),
                url: url.clone(),
                status,
                reason: error.to_string(),
            })?
        };
        Ok((status, headers, json))
    }

    /// One connection, one request, the whole answer.
    async fn exchange(
        &self,
        method: Method,
        path_and_query: &str,
        if_match: Option<&str>,
        body: Option<serde_json::Value>,
    ) -> Result<(StatusCode, HeaderMap, Bytes), String> {
        let because = |what: &str| {
            let what = what.to_owned();
            move |error: &(dyn std::error::Error + 'static)| {
                format!("{what}: {}", with_causes(error))
            }
        };
        let tcp = TcpStream::connect(&self.authority)
            .await
            .map_err(|error| because("cannot connect")(&error))?;
        let tls = self
            .connector
            .connect(self.server_name.clone(), tcp)
            .await
            .map_err(|error| because("TLS handshake failed")(&error))?;
        let http2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
        let mut request = Request::builder()
            .method(method)
            .header(ACCEPT, "application/json");
        // HTTP/2 carries the authority in the URI; HTTP/1.1 in Host.
        request = if http2 {
            request.uri(format!("{}{path_and_query}", self.base))
        } else {
            request.uri(path_and_query).header(HOST, &self.authority)
        };
        if let Some(if_match) = if_match {
            request = request.header(IF_MATCH, if_match);
        }
        let body = match body {
            Some(json) => {
                request = request.header(CONTENT_TYPE, "application/json");
                Bytes::from(json.to_string())
            }
            None => Bytes::new(),
        };
        let request = request
            .body(Full::new(body))
            .map_err(|error| because("cannot build the request")(&error))?;
        let io = TokioIo::new(tls);
        // The connection runs in its own task; when the request fails, that task's error is
        // the one that says why (a TLS alert: the server refused the client's certificate).
        let (sent, driver) = if http2 {
            let (mut sender, connection) =
                hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
                    .await
                    .map_err(|error| because("HTTP/2 failed")(&error))?;
            let driver = tokio::spawn(connection);
            (sender.send_request(request).await, driver)
        } else {
            let (mut sender, connection) = hyper::client::conn::http1::handshake(io)
                .await
                .map_err(|error| because("HTTP/1.1 failed")(&error))?;
            let driver = tokio::spawn(connection);
            (sender.send_request(request).await, driver)
        };
        let answer = match sent {
            Ok(response) => {
                let (parts, body) = response.into_parts();
                body.collect()
                    .await
                    .map(|body| (parts, body.to_bytes()))
                    .map_err(|error| because("the answer broke off")(&error))
            }
            Err(error) => Err(because("no answer")(&error)),
        };
        let (parts, bytes) = match answer {
            Ok(answer) => answer,
            Err(reason) => {
                return Err(match driver.await {
                    Ok(Err(cause)) => format!("{reason}: {}", with_causes(&cause)),
                    _ => reason,
                });
            }
        };
        Ok((parts.status, parts.headers, bytes))
    }
}
