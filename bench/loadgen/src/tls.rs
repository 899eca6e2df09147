//! The client side of mutual TLS, the same for every gateway: X25519 only, the client
//! certificate always presented, resumption off unless a scenario wants keep-alive anyway.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;
use rustls::ClientConfig;
use rustls::client::Resumption;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::TlsArgs;

/// Everything a worker needs to open one mTLS connection to the gateway.
pub struct Dialer {
    connector: TlsConnector,
    server_name: ServerName<'static>,
    address: std::net::SocketAddr,
}

impl Dialer {
    /// Builds the client configuration; `alpn` is offered as given; resumption stays off so that
    /// every new connection is a full handshake with the client certificate.
    pub fn new(args: &TlsArgs, alpn: &[&[u8]]) -> anyhow::Result<Self> {
        let mut provider = rustls::crypto::aws_lc_rs::default_provider();
        // One key exchange for all gateways, so they all do the same work per handshake.
        provider.kx_groups = vec![rustls::crypto::aws_lc_rs::kx_group::X25519];
        let mut roots = rustls::RootCertStore::empty();
        for cert in read_certs(&args.ca)? {
            roots
                .add(cert)
                .with_context(|| format!("{}: not a usable CA certificate", args.ca.display()))?;
        }
        let chain = read_certs(&args.cert)?;
        let key = PrivateKeyDer::from_pem_file(&args.key)
            .with_context(|| format!("{}: no private key in PEM", args.key.display()))?;
        let mut config = ClientConfig::builder_with_provider(Arc::new(provider))
            .with_safe_default_protocol_versions()
            .context("TLS versions")?
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key)
            .context("client certificate and key do not match")?;
        config.alpn_protocols = alpn.iter().map(|protocol| protocol.to_vec()).collect();
        config.resumption = Resumption::disabled();
        let server_name = ServerName::try_from(args.server_name.clone())
            .with_context(|| format!("{:?} is not a server name", args.server_name))?;
        Ok(Self {
            connector: TlsConnector::from(Arc::new(config)),
            server_name,
            address: args.connect,
        })
    }

    /// Connects and completes the TLS handshake.
    pub async fn dial(&self) -> anyhow::Result<TlsStream<TcpStream>> {
        let tcp = TcpStream::connect(self.address)
            .await
            .with_context(|| format!("cannot connect to {}", self.address))?;
        tcp.set_nodelay(true)?;
        let tls = self
            .connector
            .connect(self.server_name.clone(), tcp)
            .await
            .context("TLS handshake failed")?;
        Ok(tls)
    }
}

fn read_certs(path: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_file_iter(path)
        .with_context(|| format!("cannot read {}", path.display()))?
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("{}: bad PEM", path.display()))?;
    anyhow::ensure!(
        !certs.is_empty(),
        "{}: no certificate in it",
        path.display()
    );
    Ok(certs)
}
