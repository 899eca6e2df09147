//! An `https://` upstream is reached over TLS verified against `upstream_ca`, and only that CA.

mod http_proxy_support;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use http::StatusCode;
use http_proxy_support::*;
use moat_config::UpstreamScheme;
use moat_proxy::http::{HttpProxy, ProxyError};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::net::TcpListener;

/// A CA and a server certificate for 127.0.0.1 that it signed.
struct UpstreamPki {
    ca_pem: String,
    server_chain: Vec<CertificateDer<'static>>,
    server_key: PrivateKeyDer<'static>,
}

fn upstream_pki(ca_name: &str) -> UpstreamPki {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.distinguished_name = rcgen::DistinguishedName::new();
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, ca_name);
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let key = rcgen::KeyPair::generate().unwrap();
    let params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
    let cert = params.signed_by(&key, &issuer).unwrap();
    UpstreamPki {
        ca_pem: ca_cert.pem(),
        server_chain: vec![cert.der().clone()],
        server_key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
    }
}

/// The test upstream behind TLS, and how each of its failed handshakes ended.
struct TlsUpstream {
    addr: SocketAddr,
    /// The upstream side's TLS error for each handshake that failed, e.g. the alert moat sent.
    refused: Arc<Mutex<Vec<rustls::Error>>>,
}

/// The test upstream's routes behind TLS.
async fn start_tls_upstream(pki: &UpstreamPki) -> TlsUpstream {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(pki.server_chain.clone(), pki.server_key.clone_key())
        .unwrap();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let refused = Arc::new(Mutex::new(Vec::new()));
    let record = Arc::clone(&refused);
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            let record = Arc::clone(&record);
            tokio::spawn(async move {
                match acceptor.accept(stream).await {
                    Ok(tls) => serve_upstream_connection(tls).await,
                    Err(error) => {
                        let tls_error = error
                            .get_ref()
                            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
                            .cloned()
                            .unwrap_or_else(|| rustls::Error::General(error.to_string()));
                        record.lock().unwrap().push(tls_error);
                    }
                }
            });
        }
    });
    TlsUpstream { addr, refused }
}

/// A gateway in front of the TLS `upstream`, trusting only `ca_pem` for it; the CA file lives
/// in the returned directory.
async fn gateway_trusting(upstream: SocketAddr, ca_pem: &str) -> (tempfile::TempDir, Gateway) {
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("upstream-ca.pem");
    std::fs::write(&ca_file, ca_pem).unwrap();
    let mut config = endpoint_with_scheme(upstream, UpstreamScheme::Https);
    config.upstream_ca = Some(ca_file);
    let gateway = Gateway::start(config, Some(client_identity()), false).await;
    (dir, gateway)
}

#[tokio::test]
async fn https_upstream_signed_by_the_upstream_ca_is_reached() {
    bounded(async {
        let pki = upstream_pki("Upstream CA");
        let upstream = start_tls_upstream(&pki).await;
        let (_dir, gateway) = gateway_trusting(upstream.addr, &pki.ca_pem).await;

        let response = send_http1(gateway.addr, get("/headers")).await;
        assert_eq!(response.status, StatusCode::OK);
        response
            .echoed_headers()
            .assert_once(&[("moat-client-subject", "CN=Test Client,O=Moat Tests")]);
        assert_eq!(*upstream.refused.lock().unwrap(), vec![]);
    })
    .await;
}

#[tokio::test]
async fn https_upstream_signed_by_another_ca_gets_a_502() {
    bounded(async {
        let pki = upstream_pki("Upstream CA");
        let upstream = start_tls_upstream(&pki).await;
        let other = upstream_pki("Someone Else's CA");
        let (_dir, gateway) = gateway_trusting(upstream.addr, &other.ca_pem).await;

        let response = send_http1(gateway.addr, json_get("/headers")).await;
        assert_eq!(response.status, StatusCode::BAD_GATEWAY);
        let page: serde_json::Value = serde_json::from_slice(&response.body).unwrap();
        assert_eq!(page["code"], "upstream_unreachable", "{page}");
        // The cause: moat refused the upstream's certificate as issued by a CA it does not
        // trust, which the upstream saw as moat's unknown_ca alert (RFC 8446 6.2), once.
        eventually("the upstream sees the handshake end", || {
            !upstream.refused.lock().unwrap().is_empty()
        })
        .await;
        assert_eq!(
            *upstream.refused.lock().unwrap(),
            vec![rustls::Error::AlertReceived(
                rustls::AlertDescription::UnknownCA
            )]
        );
    })
    .await;
}

#[test]
fn https_upstream_without_a_ca_is_refused_with_the_flag_to_add() {
    let config = endpoint_with_scheme("127.0.0.1:9".parse().unwrap(), UpstreamScheme::Https);
    let err = HttpProxy::new(&config).unwrap_err();
    assert!(
        matches!(err, ProxyError::UpstreamCaMissing { .. }),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("set the endpoint's upstream_ca"),
        "{err}"
    );
}

#[test]
fn upstream_ca_file_without_certificates_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("empty.pem");
    std::fs::write(&ca_file, "not a certificate\n").unwrap();
    let mut config = endpoint_with_scheme("127.0.0.1:9".parse().unwrap(), UpstreamScheme::Https);
    config.upstream_ca = Some(ca_file.clone());
    let err = HttpProxy::new(&config).unwrap_err();
    assert!(matches!(err, ProxyError::UpstreamCaEmpty { .. }), "{err:?}");
    assert!(
        err.to_string().starts_with(&ca_file.display().to_string()),
        "{err}"
    );
}

#[test]
fn missing_upstream_ca_file_names_the_file() {
    let mut config = endpoint_with_scheme("127.0.0.1:9".parse().unwrap(), UpstreamScheme::Https);
    config.upstream_ca = Some("/nonexistent/upstream-ca.pem".into());
    let err = HttpProxy::new(&config).unwrap_err();
    assert!(
        err.to_string()
            .contains("/nonexistent/upstream-ca.pem: cannot read"),
        "{err}"
    );
}
