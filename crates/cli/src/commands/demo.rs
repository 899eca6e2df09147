//! `moat demo`: mTLS end to end in a temporary directory, a refused and an accepted request,
//! directly and through an edge.
//!
//! The demo uses the same library calls as `moat pki` and `moat http`, so what it shows is what
//! a user gets; only the upstream (a hello service) and the two clients are built in.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context as _;
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper_util::rt::TokioIo;
use moat_config::{Config, EndpointSpec, FieldStyle};
use moat_gateway::{Gateway, GatewayOptions};
use moat_pki::{
    CaOptions, CertificateAuthority, LeafRequest, SubjectAltName, SubjectName, WriteOptions,
};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::net::{TcpListener, TcpStream};

/// The common name of the demo's client certificate, echoed back by the upstream.
const CLIENT_NAME: &str = "demo-client";

/// Flags of `moat demo`.
#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Exit after the two requests instead of serving until Ctrl-C.
    #[arg(long)]
    pub once: bool,
    /// Address of the protected endpoint (port 0 picks a free port).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:0")]
    pub listen: SocketAddr,
}

/// The files the demo makes, named as the printed curl commands use them.
struct DemoFiles {
    ca_cert: PathBuf,
    client_pem: PathBuf,
    server_prefix: PathBuf,
}

/// Runs the demo.
pub fn run(args: DemoArgs) -> anyhow::Result<()> {
    let workdir = tempfile::Builder::new()
        .prefix("moat-demo-")
        .tempdir()
        .context("cannot make a temporary directory for the demo; set TMPDIR to a writable one")?;
    let files = make_certificates(workdir.path())?;
    println!(
        "moat demo: files in {} (removed on exit)",
        workdir.path().display()
    );
    println!("  CA certificate      {}", files.ca_cert.display());
    println!(
        "  client certificate  {} (CN={CLIENT_NAME}, certificate then key)",
        files.client_pem.display()
    );

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(demonstrate(args, &files))
}

/// Makes the demo CA, a server certificate for localhost and a client certificate.
fn make_certificates(dir: &Path) -> anyhow::Result<DemoFiles> {
    let ca_dir = dir.join("ca");
    let ca = CertificateAuthority::init(
        &ca_dir,
        &CaOptions {
            subject: SubjectName::common_name("moat demo CA"),
            ..CaOptions::default()
        },
    )
    .context("cannot make the demo CA")?;
    let write = WriteOptions {
        combined: true,
        ..WriteOptions::default()
    };

    let mut server = LeafRequest::server("localhost");
    server.subject_alt_names.extend([
        SubjectAltName::Ip([127, 0, 0, 1].into()),
        SubjectAltName::Dns(super::demo_tunnel::TUNNEL_HOST.to_owned()),
    ]);
    let server_prefix = dir.join("server");
    ca.issue(&server)
        .and_then(|issued| issued.write(&server_prefix, &write))
        .context("cannot make the demo server certificate")?;

    let client_prefix = dir.join("client");
    ca.issue(&LeafRequest::client(CLIENT_NAME))
        .and_then(|issued| issued.write(&client_prefix, &write))
        .context("cannot make the demo client certificate")?;

    Ok(DemoFiles {
        ca_cert: ca_dir.join("ca.crt"),
        client_pem: client_prefix.with_extension("pem"),
        server_prefix,
    })
}

/// Starts the upstream and the endpoint, makes the two requests, then serves as asked.
async fn demonstrate(args: DemoArgs, files: &DemoFiles) -> anyhow::Result<()> {
    // Only a serving demo handles Ctrl-C itself; with --once the default (exit at once) is right.
    let shutdown = (!args.once).then(super::serve::shutdown_signal);
    let upstream = start_upstream().await?;
    let spec = EndpointSpec {
        name: Some("demo".to_string()),
        kind: Some("http".to_string()),
        listen: Some(args.listen.to_string()),
        domain: Some("localhost".to_string()),
        upstream: Some(upstream.to_string()),
        crt: Some(files.server_prefix.with_extension("crt")),
        key: Some(files.server_prefix.with_extension("key")),
        mutual_tls_cas: vec![files.ca_cert.clone()],
        ..EndpointSpec::default()
    };
    let config = Config::from_specs(vec![spec], None, "moat demo", FieldStyle::Flags)?;
    // The demo's server certificate comes from its own CA, so moat's local CA is never touched.
    let options = GatewayOptions {
        moat_home: files.ca_cert.with_file_name("unused-moat-home"),
        telemetry: moat_telemetry::Telemetry::default(),
        upstream_routes: None,
        strict_sni: false,
        streams_only: false,
        request_observer: None,
    };
    let gateway = Gateway::bind(&config, &options).await?;
    let endpoint = gateway
        .endpoints()
        .into_iter()
        .next()
        .context("the demo endpoint did not bind")?;
    let address = endpoint.local_addr;
    let url = format!("https://localhost:{}/", address.port());
    println!("  upstream            http://{upstream} (a built-in hello service)");
    println!("  protected endpoint  {url} (a client certificate from the demo CA is required)");
    println!();

    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(gateway.serve(async {
        let _ = stopped.await;
    }));

    println!("1. request without a client certificate:");
    let anonymous = request(address, "localhost", &files.ca_cert, None).await?;
    println!("   {}", anonymous.describe());
    println!("2. request with the client certificate (CN={CLIENT_NAME}):");
    let identified = request(
        address,
        "localhost",
        &files.ca_cert,
        Some(&files.client_pem),
    )
    .await?;
    println!("   {}", identified.describe());
    println!();
    println!("Try it with curl:");
    println!(
        "  curl --cacert {} {url}",
        shell_quote(&files.ca_cert.display().to_string())
    );
    println!(
        "  curl --cacert {} --cert {} {url}",
        shell_quote(&files.ca_cert.display().to_string()),
        shell_quote(&files.client_pem.display().to_string())
    );

    println!();

    // The same endpoint, published through an edge by an agent that dialled out to it.
    let workdir = files
        .ca_cert
        .parent()
        .and_then(Path::parent)
        .context("the demo directory")?;
    let tunnel = super::demo_tunnel::TunnelDemo::start(workdir, &config).await?;
    let host = super::demo_tunnel::TUNNEL_HOST;
    let tunnel_url = format!("https://{host}:{}/", tunnel.public_addr.port());
    println!("Through a tunnel: an agent dialled out to an edge and published the endpoint there");
    println!(
        "  edge                {tunnel_url} (TLS and the client certificate checked at the edge)"
    );
    println!("3. request through the edge without a client certificate:");
    let tunnel_anonymous = request(tunnel.public_addr, host, &files.ca_cert, None).await?;
    println!("   {}", tunnel_anonymous.describe());
    println!("4. request through the edge with the client certificate:");
    let tunnel_identified = request(
        tunnel.public_addr,
        host,
        &files.ca_cert,
        Some(&files.client_pem),
    )
    .await?;
    println!("   {}", tunnel_identified.describe());
    println!(
        "  curl --cacert {} --cert {} {tunnel_url}",
        shell_quote(&files.ca_cert.display().to_string()),
        shell_quote(&files.client_pem.display().to_string())
    );

    let outcomes_as_expected = matches!(anonymous, Outcome::Refused(_))
        && matches!(identified, Outcome::Status(200, _))
        && matches!(tunnel_anonymous, Outcome::Refused(_))
        && matches!(tunnel_identified, Outcome::Status(200, _));
    if let Some(shutdown) = shutdown {
        println!("Serving until Ctrl-C.");
        shutdown.await;
    }
    tunnel.stop().await;
    let _ = stop.send(());
    serving.await.context("the demo endpoint stopped")??;
    anyhow::ensure!(
        outcomes_as_expected,
        "the demo did not go as expected: the request without a certificate must be refused and \
         the one with a certificate must get 200; see the lines above"
    );
    Ok(())
}

/// A plain HTTP service on a free loopback port that greets the client moat identified.
async fn start_upstream() -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .context("cannot open a loopback port for the demo upstream")?;
    let address = listener
        .local_addr()
        .context("cannot read the demo upstream's port")?;
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let service = hyper::service::service_fn(|request| async move {
                    let subject = request
                        .headers()
                        .get("moat-client-subject")
                        .and_then(|value| value.to_str().ok())
                        .unwrap_or("nobody")
                        .to_string();
                    let body = format!("hello {subject}, from the upstream behind moat\n");
                    Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::from(body))))
                });
                // A client that goes away mid-request is not the demo's concern.
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok(address)
}

/// What one demo request came to.
enum Outcome {
    /// The handshake or the request was refused with this explanation.
    Refused(String),
    /// An HTTP response: status and body.
    Status(u16, String),
}

impl Outcome {
    fn describe(&self) -> String {
        match self {
            Outcome::Refused(why) => format!("refused: {why}"),
            Outcome::Status(200, body) => {
                format!("accepted: HTTP 200, upstream says: {}", body.trim())
            }
            Outcome::Status(status, body) => {
                format!("HTTP {status}: {}", body.lines().next().unwrap_or_default())
            }
        }
    }
}

/// Makes `GET /` over TLS, presenting the combined certificate-and-key file when given.
async fn request(
    address: SocketAddr,
    host: &str,
    ca_cert: &Path,
    client_pem: Option<&Path>,
) -> anyhow::Result<Outcome> {
    let mut roots = rustls::RootCertStore::empty();
    for certificate in CertificateDer::pem_file_iter(ca_cert)
        .with_context(|| format!("cannot read {}", ca_cert.display()))?
    {
        roots.add(certificate.with_context(|| format!("cannot parse {}", ca_cert.display()))?)?;
    }
    let builder = rustls::ClientConfig::builder().with_root_certificates(roots);
    let mut tls = match client_pem {
        None => builder.with_no_client_auth(),
        Some(pem) => {
            let chain = CertificateDer::pem_file_iter(pem)
                .and_then(|certificates| certificates.collect::<Result<Vec<_>, _>>())
                .with_context(|| format!("cannot read the certificates of {}", pem.display()))?;
            let key = PrivateKeyDer::from_pem_file(pem)
                .with_context(|| format!("cannot read the key of {}", pem.display()))?;
            builder.with_client_auth_cert(chain, key)?
        }
    };
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(tls));

    let tcp = TcpStream::connect(address)
        .await
        .with_context(|| format!("cannot connect to the demo endpoint at {address}"))?;
    let server_name = ServerName::try_from(host.to_owned())?;
    let stream = match connector.connect(server_name, tcp).await {
        Ok(stream) => stream,
        Err(error) => return Ok(Outcome::Refused(explain(&error))),
    };
    let (mut sender, connection) =
        match hyper::client::conn::http1::handshake(TokioIo::new(stream)).await {
            Ok(pair) => pair,
            Err(error) => return Ok(Outcome::Refused(explain(&error))),
        };
    let connection = tokio::spawn(connection);
    let get = hyper::Request::get("/")
        .header(hyper::header::HOST, format!("{host}:{}", address.port()))
        .body(http_body_util::Empty::<Bytes>::new())?;
    let response = match sender.send_request(get).await {
        Ok(response) => response,
        // When the server's alert ends the connection first, the request only learns it was
        // cancelled; the connection's own error carries the alert.
        Err(error) => {
            let why = match connection.await {
                Ok(Err(connection_error)) => explain(&connection_error),
                _ => explain(&error),
            };
            return Ok(Outcome::Refused(why));
        }
    };
    let status = response.status().as_u16();
    let body = match response.into_body().collect().await {
        Ok(body) => String::from_utf8_lossy(&body.to_bytes()).into_owned(),
        Err(error) => return Ok(Outcome::Refused(explain(&error))),
    };
    Ok(Outcome::Status(status, body))
}

/// Names the TLS alert behind a failed request when there is one (TLS 1.3 servers refuse a
/// client certificate after the client thinks the handshake is done, so the alert surfaces on
/// the first read), else the error itself.
fn explain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = Some(error);
    while let Some(current) = cause {
        let tls = current.downcast_ref::<rustls::Error>().or_else(|| {
            current
                .downcast_ref::<std::io::Error>()
                .and_then(|io| io.get_ref())
                .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        });
        if let Some(rustls::Error::AlertReceived(alert)) = tls {
            return format!("the server sent the TLS alert {}", alert_name(*alert));
        }
        cause = current.source();
    }
    error.to_string()
}

/// The alert's name as RFC 8446 and openssl spell it (`certificate_required`), from rustls's
/// CamelCase variant name.
fn alert_name(alert: rustls::AlertDescription) -> String {
    let mut name = String::new();
    let mut previous_lower = false;
    for c in format!("{alert:?}").chars() {
        if c.is_ascii_uppercase() && previous_lower {
            name.push('_');
        }
        previous_lower = c.is_ascii_lowercase();
        name.push(c.to_ascii_lowercase());
    }
    name
}

/// Quotes a path for a POSIX shell when it holds anything but safe characters.
fn shell_quote(text: &str) -> String {
    let safe = |c: char| c.is_ascii_alphanumeric() || "/._-+:=,".contains(c);
    if text.chars().all(safe) {
        text.to_string()
    } else {
        format!("'{}'", text.replace('\'', r"'\''"))
    }
}
