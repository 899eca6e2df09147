//! `moat verify`: runs the gateway's own checks on a client certificate and explains the verdict.
//!
//! The CA checks are moat-trust's `ClientVerifier` (the verifier the gateway's handshakes use)
//! and the access decision is moat-policy's `evaluate` (what the gateway asks per request), so
//! the verdict here is the gateway's verdict, step by step.

use std::net::IpAddr;
use std::path::PathBuf;

use anyhow::Context as _;
use moat_config::{ClientAuthMode, Config, EndpointConfig, EndpointKind};
use moat_gateway::http_proxy::canonical::canonical_target;
use moat_policy::{Client, HttpRequest, Outcome, Request, Rule};
use moat_trust::{CaBundle, ClientIdentity, ClientVerifier, RefusalReason, RevocationLists};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::ClientCertVerifier as _;

/// Flags of `moat verify`.
#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    /// The client certificate (PEM), followed by any intermediates it sends; a key in the same
    /// file is ignored. Without it, verify tells what happens to a client without a certificate.
    #[arg(long, value_name = "FILE")]
    pub cert: Option<PathBuf>,
    /// CA file whose client certificates are accepted (repeatable); default: the endpoint's.
    #[arg(long = "mutual-tls-cas", value_name = "FILE")]
    pub mutual_tls_cas: Vec<PathBuf>,
    /// Certificate revocation list, PEM or DER (repeatable); default: the endpoint's.
    #[arg(long = "crl", value_name = "FILE")]
    pub crls: Vec<PathBuf>,
    /// A moat.toml whose endpoint's CAs, CRLs and rules are used.
    #[arg(long, value_name = "FILE", conflicts_with = "policy")]
    pub config: Option<PathBuf>,
    /// The endpoint of --config to check against (default: its only endpoint).
    #[arg(long, value_name = "NAME", requires = "config")]
    pub endpoint: Option<String>,
    /// A policy file of [[rules]], as `moat http --policy` takes.
    #[arg(long, value_name = "FILE")]
    pub policy: Option<PathBuf>,
    /// The host the request is for (default: the endpoint's domain); also the SNI.
    #[arg(long, value_name = "HOST")]
    pub host: Option<String>,
    /// The request path.
    #[arg(long, value_name = "PATH", default_value = "/")]
    pub path: String,
    /// The request method.
    #[arg(long, value_name = "METHOD", default_value = "GET")]
    pub method: String,
    /// The client's address, for source_ip selectors and conn.client_ip.
    #[arg(long, value_name = "IP", default_value = "127.0.0.1")]
    pub source_ip: IpAddr,
}

/// What the gateway would be configured with.
struct Target {
    kind: EndpointKind,
    domain: String,
    cas: Vec<PathBuf>,
    crls: Vec<PathBuf>,
    client_auth: ClientAuthMode,
    rules: Vec<Rule>,
}

/// Runs `moat verify`: prints every step, fails (exit 1) when the gateway would refuse.
pub fn run(args: VerifyArgs) -> anyhow::Result<()> {
    let target = target(&args)?;
    let cas = CaBundle::from_files(&target.cas)?;
    let crls = RevocationLists::from_files(&target.crls, &cas)?;
    let crl_count = crls.len();
    let verifier = ClientVerifier::builder(cas.clone())
        .with_crls(crls)
        .build()?;

    let host = args.host.clone().unwrap_or_else(|| target.domain.clone());
    println!(
        "checking against {} CA(s) and {crl_count} CRL(s); request {} https://{host}{} from {}",
        cas.len(),
        args.method,
        args.path,
        args.source_ip
    );

    let mut identity = None;
    if let Some(path) = &args.cert {
        let chain = read_chain(path)?;
        let read = ClientIdentity::from_chain(&chain)
            .with_context(|| format!("{}: cannot read the certificate", path.display()))?;
        println!("certificate: {}", read.subject);
        println!("  issuer      {}", read.issuer);
        println!("  serial      {}", read.serial_hex);
        println!("  sha256      {}", read.fingerprint_sha256);
        println!(
            "  X.509 v{}, valid {} to {}",
            read.version,
            timestamp(read.not_before),
            timestamp(read.not_after)
        );
        let (leaf, intermediates) = chain.split_first().context("no certificate")?;
        let outcome = verifier.verify_client_cert(leaf, intermediates, UnixTime::now());
        let refusal = outcome.err().map(|error| {
            let reason = RefusalReason::from_tls_error(&error).unwrap_or(RefusalReason::Malformed);
            (reason, error)
        });
        let failed_step = refusal.as_ref().map(|(reason, _)| step_of(*reason));
        let step = |name: &str, ok_text: String| match (&refusal, failed_step) {
            (Some((reason, error)), Some(failed)) if failed == name => println!(
                "  {name:<11} FAILED: {} ({error}); the client gets the TLS alert {:?}",
                reason.as_str(),
                reason.alert()
            ),
            (Some(_), Some(failed)) if step_index(name) > step_index(failed) => {
                println!("  {name:<11} not reached")
            }
            _ => println!("  {name:<11} ok: {ok_text}"),
        };
        println!("CA checks (the gateway's verifier):");
        step(
            "chain",
            match cas.issuer_of(&read) {
                Some(ca) => format!(
                    "chains to {} ({}, certificate #{})",
                    ca.subject(),
                    ca.source().display(),
                    ca.position()
                ),
                None => "chains to a configured CA".to_owned(),
            },
        );
        step("validity", "within its validity period now".to_owned());
        step("usage", "allowed for TLS client authentication".to_owned());
        step(
            "revocation",
            if crl_count == 0 {
                "no CRL loaded, so revocation is not checked".to_owned()
            } else {
                format!("not listed in the {crl_count} loaded CRL(s)")
            },
        );
        if let Some((reason, _)) = refusal {
            anyhow::bail!(
                "REFUSED at the handshake: {} (TLS alert {:?})",
                reason.as_str(),
                reason.alert()
            );
        }
        identity = Some(read);
    } else {
        println!("certificate: none");
    }

    let required_at_handshake = match target.kind {
        EndpointKind::Tls => true,
        EndpointKind::Http if target.rules.is_empty() => {
            target.client_auth == ClientAuthMode::RequireAndVerify
        }
        EndpointKind::Http => {
            target.client_auth == ClientAuthMode::RequireAndVerify
                && moat_policy::certificate_required_at_handshake(&target.rules)
        }
    };
    if identity.is_none() && required_at_handshake {
        anyhow::bail!(
            "REFUSED at the handshake: no_certificate (TLS alert CertificateRequired): this \
             endpoint demands a certificate before any request"
        );
    }

    // Rules judge, and the upstream receives, the canonical path.
    let canonical = match canonical_target(&args.path) {
        Ok(canonical) => canonical,
        Err(rejection) => {
            anyhow::bail!("REFUSED with 400: path {:?}: {rejection}", args.path)
        }
    };
    if canonical.changes().is_empty() {
        println!("path: {} (already canonical)", canonical.as_str());
    } else {
        println!(
            "path: {} -> canonical {} ({}); the rules judge and the upstream receives the canonical path",
            args.path,
            canonical.as_str(),
            canonical.changes().describe().join(", ")
        );
    }

    if target.rules.is_empty() {
        println!("access policy: none; every client with a verified certificate passes");
        return match identity {
            Some(_) => {
                println!("verdict: PASS");
                Ok(())
            }
            None => anyhow::bail!(
                "REFUSED with 403: the endpoint asks for a certificate and none was presented"
            ),
        };
    }
    let http = (target.kind == EndpointKind::Http).then(|| HttpRequest {
        method: &args.method,
        host: Some(&host),
        path: canonical.path(),
        query: canonical.query(),
        headers: None,
    });
    let request = Request {
        source_ip: args.source_ip,
        source_port: 0,
        server: None,
        sni: Some(&host),
        tls_version: (target.kind == EndpointKind::Http).then_some("TLSv1.3"),
        http,
    };
    let client = identity.as_ref().map(|identity| Client {
        identity,
        ca: cas.issuer_of(identity),
    });
    let decision = moat_policy::evaluate(&target.rules, &request, client.as_ref());
    println!(
        "access policy ({} rule(s), first covering rule decides): {}",
        target.rules.len(),
        decision.explanation
    );
    match decision.outcome {
        Outcome::Allow | Outcome::Bypass => {
            println!("verdict: PASS");
            Ok(())
        }
        Outcome::Refuse(refusal) => {
            let how = match target.kind {
                EndpointKind::Http => "with 403",
                EndpointKind::Tls => "at the handshake with the TLS alert access_denied",
            };
            match decision.rule.as_deref() {
                Some(rule) => anyhow::bail!("REFUSED {how}: {} by rule {rule:?}", refusal.as_str()),
                None => anyhow::bail!("REFUSED {how}: {}", refusal.as_str()),
            }
        }
    }
}

/// The endpoint from --config, or one made of the flags.
fn target(args: &VerifyArgs) -> anyhow::Result<Target> {
    if let Some(path) = &args.config {
        let config = Config::from_toml_file(path)?;
        let endpoint: EndpointConfig = match &args.endpoint {
            Some(name) => config
                .select(std::slice::from_ref(name), &path.display().to_string())?
                .endpoints
                .into_iter()
                .next()
                .context("no endpoint selected")?,
            None => match <[EndpointConfig; 1]>::try_from(config.endpoints) {
                Ok([endpoint]) => endpoint,
                Err(endpoints) => anyhow::bail!(
                    "{}: holds {} endpoints; pick one with --endpoint NAME ({})",
                    path.display(),
                    endpoints.len(),
                    endpoints
                        .iter()
                        .map(|e| e.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            },
        };
        return Ok(Target {
            kind: endpoint.kind,
            domain: endpoint.domain,
            cas: if args.mutual_tls_cas.is_empty() {
                endpoint.mutual_tls_cas
            } else {
                args.mutual_tls_cas.clone()
            },
            crls: if args.crls.is_empty() {
                endpoint.crls
            } else {
                args.crls.clone()
            },
            client_auth: endpoint.client_auth,
            rules: endpoint.rules,
        });
    }
    if args.mutual_tls_cas.is_empty() {
        anyhow::bail!(
            "no CAs to check against: give --mutual-tls-cas FILE, or --config moat.toml to use an endpoint's"
        );
    }
    let rules = match &args.policy {
        Some(file) => moat_config::load_policy_file(file, EndpointKind::Http)?,
        None => Vec::new(),
    };
    Ok(Target {
        kind: EndpointKind::Http,
        domain: moat_config::DEFAULT_DOMAIN.to_owned(),
        cas: args.mutual_tls_cas.clone(),
        crls: args.crls.clone(),
        client_auth: ClientAuthMode::RequireAndVerify,
        rules,
    })
}

/// The certificates of a PEM file, leaf first.
fn read_chain(path: &PathBuf) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let bytes =
        std::fs::read(path).with_context(|| format!("{}: cannot read the file", path.display()))?;
    let chain = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| anyhow::anyhow!("{}: not valid PEM: {error}", path.display()))?;
    if chain.is_empty() {
        anyhow::bail!(
            "{}: no PEM certificate found (expected -----BEGIN CERTIFICATE-----); give the client certificate",
            path.display()
        );
    }
    Ok(chain)
}

/// The verifier step a refusal reason belongs to.
fn step_of(reason: RefusalReason) -> &'static str {
    match reason {
        RefusalReason::Expired | RefusalReason::NotYetValid => "validity",
        RefusalReason::WrongUsage => "usage",
        RefusalReason::Revoked => "revocation",
        _ => "chain",
    }
}

fn step_index(step: &str) -> usize {
    ["chain", "validity", "usage", "revocation"]
        .iter()
        .position(|s| *s == step)
        .unwrap_or(0)
}

fn timestamp(seconds: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(seconds)
        .ok()
        .and_then(|at| {
            at.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| seconds.to_string())
}
