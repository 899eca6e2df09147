//! Why the gateway could not start: each error names the endpoint or file and the fix.

use std::net::SocketAddr;
use std::path::PathBuf;

use moat_proxy::http::ProxyError;

/// A startup error of [`crate::Gateway::bind`]; nothing listens when one is returned.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GatewayError {
    /// The listening socket could not be opened.
    #[error(
        "endpoint {endpoint}: cannot listen on {address}: {source}; choose another listen address \
         or stop the process that uses it"
    )]
    Bind {
        /// The endpoint's name.
        endpoint: String,
        /// The address asked for.
        address: SocketAddr,
        /// The socket error.
        source: std::io::Error,
    },
    /// A server certificate or key file could not be read.
    #[error("{path}: cannot read the server {what}: {source}; check the path and its permissions", path = path.display())]
    ServerFileRead {
        /// The file.
        path: PathBuf,
        /// "certificate" or "private key".
        what: &'static str,
        /// The I/O or PEM error.
        source: std::io::Error,
    },
    /// The certificate file holds no PEM certificate.
    #[error(
        "{path}: no PEM certificate found (expected -----BEGIN CERTIFICATE-----); give the server \
         certificate, followed by its intermediates, in PEM", path = path.display()
    )]
    NoServerCertificate {
        /// The file.
        path: PathBuf,
    },
    /// The key file holds no usable private key.
    #[error(
        "{path}: no private key found (expected a PEM PKCS#8 \"PRIVATE KEY\", PKCS#1 \"RSA PRIVATE \
         KEY\" or SEC1 \"EC PRIVATE KEY\"); give the server certificate's private key", path = path.display()
    )]
    NoServerKey {
        /// The file.
        path: PathBuf,
    },
    /// The key file is passphrase-protected, which a server cannot prompt for.
    #[error(
        "{path}: the private key is encrypted; a server cannot ask for its passphrase, so write an \
         unencrypted copy with `openssl pkey -in {name} -out server-plain.key` (keep it mode 0600) \
         and pass that", path = path.display(), name = path.display()
    )]
    EncryptedServerKey {
        /// The file.
        path: PathBuf,
    },
    /// rustls refused the certificate and key, e.g. because they do not belong together.
    #[error("endpoint {endpoint}: cannot use {crt} with {key}: {source}; give the key that belongs to the certificate", crt = crt.display(), key = key.display())]
    ServerCertificate {
        /// The endpoint's name.
        endpoint: String,
        /// The certificate file.
        crt: PathBuf,
        /// The key file.
        key: PathBuf,
        /// rustls's reason.
        source: Box<rustls::Error>,
    },
    /// The TLS configuration could not be built.
    #[error("endpoint {endpoint}: cannot build the TLS configuration: {source}")]
    Tls {
        /// The endpoint's name.
        endpoint: String,
        /// rustls's reason.
        source: Box<rustls::Error>,
    },
    /// A CA bundle or CRL could not be loaded (the message names the file and the fix).
    #[error("endpoint {endpoint}: {source}")]
    Trust {
        /// The endpoint's name.
        endpoint: String,
        /// What was wrong with the trust files.
        source: Box<moat_trust::TrustError>,
    },
    /// moat's local CA could not be opened, created or used to issue a server certificate.
    #[error(
        "endpoint {endpoint}: no server certificate and key given and moat's local CA in {dir} \
         failed: {source}; fix or remove that directory, or give a server certificate and key", dir = dir.display()
    )]
    LocalCa {
        /// The endpoint's name.
        endpoint: String,
        /// The local CA's directory.
        dir: PathBuf,
        /// What went wrong.
        source: Box<moat_pki::PkiError>,
    },
    /// The HTTP proxy of an `http` endpoint could not be built.
    #[error("endpoint {endpoint}: {source}")]
    Proxy {
        /// The endpoint's name.
        endpoint: String,
        /// What was wrong.
        source: Box<ProxyError>,
    },
}
