//! TLS clients of moat: rustls in-process, `openssl s_client` and curl.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};

/// What a TLS client saw: the response text, or the rustls error (e.g. the alert received).
pub type ClientOutcome = Result<String, rustls::Error>;

/// Options of [`rustls_request`].
pub struct ClientOptions<'a> {
    /// CA file that verifies moat's server certificate.
    pub server_ca: &'a Path,
    /// Client certificate and key files.
    pub identity: Option<(&'a Path, &'a Path)>,
    /// Offer only TLS 1.2.
    pub tls12_only: bool,
    /// Bytes to send after the handshake.
    pub send: &'a [u8],
    /// Send close_notify after them (a half-close for byte-stream protocols; an HTTP/1.1
    /// server treats it as the end of the connection).
    pub half_close: bool,
}

impl<'a> ClientOptions<'a> {
    /// One `GET /` (TLS 1.2 or 1.3, no half-close) trusting `server_ca`, presenting `identity`.
    pub fn get(server_ca: &'a Path, identity: Option<(&'a Path, &'a Path)>) -> Self {
        ClientOptions {
            server_ca,
            identity,
            tls12_only: false,
            send: GET_ROOT,
            half_close: false,
        }
    }
}

/// Connects to 127.0.0.1:`port` with an in-process rustls client, sends `options.send`
/// (optionally half-closing with close_notify) and reads until the server closes.
pub fn rustls_request(port: u16, options: &ClientOptions<'_>) -> ClientOutcome {
    let config = client_config(options);
    rustls_exchange(port, config, Some("localhost"), options).outcome
}

/// The rustls client configuration of [`rustls_request`]; reuse one to resume sessions.
pub fn client_config(options: &ClientOptions<'_>) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(options.server_ca).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let versions: &[&'static rustls::SupportedProtocolVersion] = if options.tls12_only {
        &[&rustls::version::TLS12]
    } else {
        &[&rustls::version::TLS13, &rustls::version::TLS12]
    };
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(roots);
    let config = match options.identity {
        Some((cert, key)) => {
            let chain: Vec<_> = CertificateDer::pem_file_iter(cert)
                .unwrap()
                .map(Result::unwrap)
                .collect();
            let key = PrivateKeyDer::from_pem_file(key).unwrap();
            builder.with_client_auth_cert(chain, key).unwrap()
        }
        None => builder.with_no_client_auth(),
    };
    Arc::new(config)
}

/// What one connection of [`rustls_exchange`] saw.
pub struct Exchange {
    /// The response, or the TLS error (e.g. the alert received).
    pub outcome: ClientOutcome,
    /// Full or resumed, when the handshake finished.
    pub handshake: Option<rustls::HandshakeKind>,
    /// The client socket's own address (what a PROXY protocol header must name).
    pub local_addr: SocketAddr,
}

/// Like [`rustls_request`] with a given client configuration and server name; `None` sends no
/// SNI (the server certificate is then checked for "localhost").
pub fn rustls_exchange(
    port: u16,
    config: Arc<rustls::ClientConfig>,
    server_name: Option<&str>,
    options: &ClientOptions<'_>,
) -> Exchange {
    let socket = TcpStream::connect(("127.0.0.1", port)).unwrap();
    rustls_exchange_over(socket, config, server_name, options)
}

/// A TCP connection to 127.0.0.1:`port` from the address `source` (any of 127.0.0.0/8 is
/// this machine), for rules on the client's address.
pub fn connect_from(source: std::net::IpAddr, port: u16) -> TcpStream {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .unwrap();
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(source, 0)).unwrap();
    let stream = runtime
        .block_on(socket.connect(SocketAddr::from(([127, 0, 0, 1], port))))
        .unwrap()
        .into_std()
        .unwrap();
    stream.set_nonblocking(false).unwrap();
    stream
}

/// [`rustls_exchange`] over a connection the caller opened (e.g. with [`connect_from`]).
pub fn rustls_exchange_over(
    socket: TcpStream,
    config: Arc<rustls::ClientConfig>,
    server_name: Option<&str>,
    options: &ClientOptions<'_>,
) -> Exchange {
    let config = match server_name {
        Some(_) => config,
        None => {
            let mut without_sni = (*config).clone();
            without_sni.enable_sni = false;
            Arc::new(without_sni)
        }
    };
    let name = ServerName::try_from(server_name.unwrap_or("localhost").to_string()).unwrap();
    let connection = rustls::ClientConnection::new(config, name).unwrap();
    let local_addr = socket.local_addr().unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut tls = rustls::StreamOwned::new(connection, socket);
    let as_tls_error = |error: std::io::Error| -> rustls::Error {
        match error
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        {
            Some(tls_error) => tls_error.clone(),
            None => rustls::Error::General(format!("I/O: {error}")),
        }
    };
    // A refused client only learns why when it reads the server's alert, and a write may fail
    // first because the server already closed; so the read decides the outcome.
    let written = tls.write_all(options.send).and_then(|()| tls.flush());
    if options.half_close && written.is_ok() {
        tls.conn.send_close_notify();
        let _ = tls.flush();
    }
    let mut received = Vec::new();
    let read = tls.read_to_end(&mut received);
    let handshake = tls.conn.handshake_kind();
    let outcome = match (read, written) {
        (Ok(_), _) => Ok(String::from_utf8_lossy(&received).into_owned()),
        // A server that closes without close_notify after answering still answered.
        (Err(error), _)
            if error.kind() == std::io::ErrorKind::UnexpectedEof && !received.is_empty() =>
        {
            Ok(String::from_utf8_lossy(&received).into_owned())
        }
        (Err(error), Ok(())) => Err(as_tls_error(error)),
        (Err(error), Err(write_error)) => match as_tls_error(error) {
            alert @ rustls::Error::AlertReceived(_) => Err(alert),
            _ => Err(as_tls_error(write_error)),
        },
    };
    Exchange {
        outcome,
        handshake: if tls.conn.is_handshaking() {
            None
        } else {
            handshake
        },
        local_addr,
    }
}

/// A one-shot HTTP/1.1 GET that asks the server to close afterwards.
pub const GET_ROOT: &[u8] = b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";

/// Runs `openssl s_client` against 127.0.0.1:`port` with extra args, sending an HTTP request,
/// and returns its combined output.
pub fn s_client(dir: &Path, port: u16, extra: &[&str]) -> String {
    let connect = format!("127.0.0.1:{port}");
    let mut args = vec![
        "10",
        "openssl",
        "s_client",
        "-connect",
        &connect,
        "-servername",
        "localhost",
        "-ign_eof",
    ];
    args.extend_from_slice(extra);
    let mut child = Command::new("timeout")
        .args(&args)
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .unwrap();
    let output = child.wait_with_output().unwrap();
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Runs `curl -sS --max-time 10 ARGS` in `dir`; returns (exit code, stdout, stderr).
pub fn curl(dir: &Path, args: &[&str]) -> (i32, String, String) {
    let output = Command::new("curl")
        .args(["-sS", "--max-time", "10"])
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}
