//! The admin listener's handshake: a client without a certificate, or with one from another CA,
//! is refused with the matching TLS alert before any route; an admin CA bundle holding a
//! non-CA is refused at bind in the gateway's words; curl gets in only with the admin's
//! certificate.

use std::sync::Arc;

use http::{Method, StatusCode};
use moat_control::{AdminClient, AdminListener, ControlError};
use rustls::AlertDescription;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::support::{Admin, Pair, TestCa};

/// Connects with rustls offering `alpn`, presenting `client` if given, sends `request` and
/// reads the answer to its end.
async fn exchange(
    admin: &Admin,
    client: Option<&Pair>,
    alpn: &[u8],
    request: &[u8],
) -> std::io::Result<Vec<u8>> {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(admin.pki.server_ca.pem.as_bytes()).unwrap())
        .unwrap();
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots);
    let mut config = match client {
        Some(pair) => builder
            .with_client_auth_cert(
                vec![CertificateDer::from_pem_slice(pair.cert_pem.as_bytes()).unwrap()],
                PrivateKeyDer::from_pem_slice(pair.key_pem.as_bytes()).unwrap(),
            )
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![alpn.to_vec()];
    let tcp = tokio::net::TcpStream::connect(admin.address).await?;
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let mut tls = connector
        .connect(ServerName::try_from("127.0.0.1").unwrap(), tcp)
        .await?;
    tls.write_all(request).await?;
    let mut answer = Vec::new();
    tls.read_to_end(&mut answer).await?;
    Ok(answer)
}

/// The alert the server refused `client`'s handshake with. TLS 1.3: the client's side of the
/// handshake ends before the server has judged its certificate, so the refusal arrives as an
/// alert on the first read.
async fn alert_for(admin: &Admin, client: Option<&Pair>) -> AlertDescription {
    let request = b"GET /certificate_authorities HTTP/1.1\r\nHost: admin\r\n\r\n";
    let error = exchange(admin, client, b"http/1.1", request)
        .await
        .expect_err("the handshake is refused");
    match error
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    {
        Some(rustls::Error::AlertReceived(alert)) => *alert,
        other => panic!("not an alert: {other:?} ({error})"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_may_speak_http1_as_well_as_http2() {
    let admin = Admin::sqlite().await;
    let request = b"GET /join_tokens HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n";
    let answer = exchange(&admin, Some(&admin.pki.admin), b"http/1.1", request)
        .await
        .unwrap();
    let answer = String::from_utf8(answer).unwrap();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: application/json"),
        "{head}"
    );
    let list: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(
        list,
        serde_json::json!({"join_tokens": [], "uri": "/join_tokens", "next_page_uri": null})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_listener_stops_when_told() {
    let admin = Admin::sqlite().await;
    let listener = AdminListener::bind(
        "127.0.0.1:0".parse().unwrap(),
        admin.pki.tls(),
        admin.api.clone(),
    )
    .await
    .unwrap();
    let address = listener.local_addr();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(listener.serve(async move {
        let _ = stopped.await;
    }));
    tokio::net::TcpStream::connect(address).await.unwrap();
    stop.send(()).unwrap();
    tokio::time::timeout(std::time::Duration::from_secs(10), serving)
        .await
        .expect("serve returns once told to stop")
        .unwrap();
    assert!(
        tokio::net::TcpStream::connect(address).await.is_err(),
        "the port is closed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_without_an_admin_certificate_are_refused_at_the_handshake() {
    let admin = Admin::sqlite().await;
    assert_eq!(
        alert_for(&admin, None).await,
        AlertDescription::CertificateRequired
    );
    let stranger = TestCa::new("someone else's CA").client("mallory");
    assert_eq!(
        alert_for(&admin, Some(&stranger)).await,
        AlertDescription::UnknownCA
    );
    // The server's own CA signs no admins either.
    let server_side = admin.pki.server_ca.client("edge-operator");
    assert_eq!(
        alert_for(&admin, Some(&server_side)).await,
        AlertDescription::UnknownCA
    );

    // The admin client says why, naming the alert.
    let client = AdminClient::new(
        &format!("https://{}", admin.address),
        stranger.cert_pem.as_bytes(),
        stranger.key_pem.as_bytes(),
        admin.pki.server_ca.pem.as_bytes(),
    )
    .unwrap();
    let refused = client
        .request(Method::GET, "/endpoints", None, None)
        .await
        .unwrap_err();
    assert!(refused.to_string().contains("UnknownCA"), "{refused}");

    // An admin gets in; nothing reached the API before.
    let (status, _, _) = admin.call(Method::GET, "/endpoints", None, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(admin.exchanges.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn a_non_ca_among_the_admin_cas_is_refused_in_the_gateways_words() {
    let admin_ca = TestCa::new("admin CA");
    let leaf = admin_ca.client("not-a-ca");
    let admin = Admin::sqlite().await;
    let mut tls = admin.pki.tls();
    tls.admin_cas_pem = format!("{}{}", admin_ca.pem, leaf.cert_pem).into_bytes();
    let refused = AdminListener::bind("127.0.0.1:0".parse().unwrap(), tls, admin.api.clone())
        .await
        .unwrap_err();
    assert!(matches!(refused, ControlError::AdminCas(_)), "{refused:?}");
    assert_eq!(
        refused.to_string(),
        "--admin-cas: admin-cas.pem: certificate #2 (CN=not-a-ca) is not a CA (basicConstraints cA=false); remove it from the bundle"
    );
    assert!(
        !format!("{:?}", admin.pki.tls()).contains("PRIVATE KEY"),
        "the key is never printed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_gets_in_only_with_the_admin_certificate() {
    if std::process::Command::new("curl")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("curl is not installed; skipped");
        return;
    }
    let admin = Admin::sqlite().await;
    let dir = tempfile::tempdir().unwrap();
    let file = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.to_str().unwrap().to_owned()
    };
    let ca = file("server-ca.pem", &admin.pki.server_ca.pem);
    let cert = file("admin.crt", &admin.pki.admin.cert_pem);
    let key = file("admin.key", &admin.pki.admin.key_pem);
    let url = format!("https://127.0.0.1:{}/join_tokens", admin.address.port());
    let curl = |extra: &[&str]| {
        let mut command = std::process::Command::new("curl");
        command.args([
            "--silent",
            "--show-error",
            "--max-time",
            "20",
            "--cacert",
            &ca,
        ]);
        command.args(extra).arg(&url);
        let output = tokio::task::spawn_blocking(move || command.output().unwrap());
        async move { output.await.unwrap() }
    };
    let admitted = curl(&["--cert", &cert, "--key", &key]).await;
    assert!(
        admitted.status.success(),
        "{}",
        String::from_utf8_lossy(&admitted.stderr)
    );
    let list: serde_json::Value = serde_json::from_slice(&admitted.stdout).unwrap();
    assert_eq!(list["uri"], "/join_tokens");

    let refused = curl(&[]).await;
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "{stderr}");
    assert!(stderr.contains("certificate required"), "{stderr}");
}
