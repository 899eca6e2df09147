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

/// Connects with rustls, presenting `client` if given, sends a request and returns the alert
/// the server refused the handshake with.
async fn alert_for(admin: &Admin, client: Option<&Pair>) -> AlertDescription {
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
    let config = match client {
        Some(pair) => builder
            .with_client_auth_cert(
                vec![CertificateDer::from_pem_slice(pair.cert_pem.as_bytes()).unwrap()],
                PrivateKeyDer::from_pem_slice(pair.key_pem.as_bytes()).unwrap(),
            )
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    let tcp = tokio::net::TcpStream::connect(admin.address).await.unwrap();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    // TLS 1.3: the client's side of the handshake ends before the server has judged its
    // certificate; the refusal arrives as an alert on the first read.
    let outcome = async {
        let mut tls = connector
            .connect(ServerName::try_from("127.0.0.1").unwrap(), tcp)
            .await?;
        tls.write_all(b"GET /certificate_authorities HTTP/1.1\r\nHost: admin\r\n\r\n")
            .await?;
        let mut answer = Vec::new();
        tls.read_to_end(&mut answer).await?;
        Ok::<_, std::io::Error>(answer)
    }
    .await;
    let error = outcome.expect_err("the handshake is refused");
    match error
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    {
        Some(rustls::Error::AlertReceived(alert)) => *alert,
        other => panic!("not an alert: {other:?} ({error})"),
    }
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
