//! `moat verify`: runs the gateway's own checks on a client certificate and explains the verdict.
//!
//! Everything is decided by `moat_gateway::explain`, the functions the gateway's handshakes and
//! requests call themselves (the same verifier settings, CRL policy, canonical path and
//! admission), so the verdict here is the gateway's verdict, step by step.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use anyhow::Context as _;
use moat_config::{Config, EndpointConfig, EndpointKind, EndpointSpec, FieldStyle};
use moat_gateway::explain::{Ask, EndpointTrust, Verdict, explain};
use moat_policy::Outcome;
use moat_telemetry::HandshakeRefusal;
use moat_trust::{CertificateRefused, ClientIdentity, RefusalReason};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, UnixTime};

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

/// Runs `moat verify`: prints every step, fails (exit 1) when the gateway would refuse.
pub fn run(args: VerifyArgs) -> anyhow::Result<()> {
    let endpoint = endpoint(&args)?;
    let trust = EndpointTrust::load(&endpoint)?;
    let (ca_count, crl_count) = trust.as_ref().map_or((0, 0), |trust| {
        (trust.verifier.cas().len(), trust.crls.len())
    });
    let host = args.host.clone().unwrap_or_else(|| endpoint.domain.clone());
    println!(
        "checking against {ca_count} CA(s) and {crl_count} CRL(s); request {} https://{host}{} from {}",
        args.method, args.path, args.source_ip
    );

    let chain = args
        .cert
        .as_ref()
        .map(|path| read_chain(path))
        .transpose()?;
    if let (Some(path), Some(chain)) = (&args.cert, &chain) {
        let read = ClientIdentity::from_chain(chain)
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
    } else {
        println!("certificate: none");
    }

    let ask = Ask {
        chain: chain.as_deref(),
        source: SocketAddr::new(args.source_ip, 0),
        host: &host,
        method: &args.method,
        target: &args.path,
        now: UnixTime::now(),
    };
    let explanation = explain(&endpoint, trust.as_ref(), &ask);
    if let (Some(outcome), Some(trust)) = (&explanation.certificate, &trust) {
        print_certificate_steps(outcome, trust, chain.as_deref().unwrap_or_default());
    }
    match &explanation.path {
        Some(Ok(canonical)) if canonical.changes().is_empty() => {
            println!("path: {} (already canonical)", canonical.as_str());
        }
        Some(Ok(canonical)) => println!(
            "path: {} -> canonical {} ({}); the rules judge and the upstream receives the canonical path",
            args.path,
            canonical.as_str(),
            canonical.changes().describe().join(", ")
        ),
        _ => {}
    }
    match &explanation.decision {
        Some(decision) => println!(
            "access policy ({} rule(s), first covering rule decides): {}",
            endpoint.rules.len(),
            decision.explanation
        ),
        None if matches!(explanation.verdict, Verdict::Pass | Verdict::Request { .. }) => {
            println!("access policy: none; every client with a verified certificate passes")
        }
        None => {}
    }

    let rule = explanation
        .decision
        .as_ref()
        .and_then(|decision| decision.rule.clone());
    let refusal = explanation
        .decision
        .as_ref()
        .and_then(|decision| match decision.outcome {
            Outcome::Refuse(refusal) => Some(refusal.as_str()),
            _ => None,
        });
    match explanation.verdict {
        Verdict::Pass => {
            println!("verdict: PASS");
            Ok(())
        }
        Verdict::Handshake {
            reason: HandshakeRefusal::Certificate(RefusalReason::NoCertificate),
            ..
        } => anyhow::bail!(
            "REFUSED at the handshake: no_certificate (TLS alert CertificateRequired): this \
             endpoint demands a certificate before any request"
        ),
        Verdict::Handshake {
            reason: HandshakeRefusal::PolicyDenied,
            ..
        } => anyhow::bail!(
            "REFUSED at the handshake with the TLS alert access_denied: {} by rule {:?}",
            refusal.unwrap_or("not_allowed"),
            rule.unwrap_or_default()
        ),
        Verdict::Handshake { reason, alert } => anyhow::bail!(
            "REFUSED at the handshake: {} (TLS alert {alert:?})",
            reason.as_str()
        ),
        Verdict::Request { status: 400, .. } => {
            let rejection = match &explanation.path {
                Some(Err(rejection)) => rejection.to_string(),
                _ => "malformed request".to_owned(),
            };
            anyhow::bail!("REFUSED with 400: path {:?}: {rejection}", args.path)
        }
        Verdict::Request { status, code } => match (refusal, rule) {
            (Some(refusal), Some(rule)) => {
                anyhow::bail!("REFUSED with {status}: {refusal} by rule {rule:?}")
            }
            (Some(refusal), None) => anyhow::bail!("REFUSED with {status}: {refusal}"),
            _ => anyhow::bail!(
                "REFUSED with {status}: {code}: the endpoint asks for a certificate and none was presented"
            ),
        },
    }
}

/// The CA checks, one line each, marking the one that failed and those not reached.
fn print_certificate_steps(
    outcome: &Result<(), CertificateRefused>,
    trust: &EndpointTrust,
    chain: &[CertificateDer<'static>],
) {
    let failed = outcome
        .as_ref()
        .err()
        .map(|refused| (refused, step_of(refused.reason)));
    let step = |name: &str, ok_text: String| match failed {
        Some((refused, failed)) if failed == name => println!(
            "  {name:<11} FAILED: {} ({}); the client gets the TLS alert {:?}",
            refused.reason.as_str(),
            refused.error,
            refused.reason.alert()
        ),
        Some((_, failed)) if step_index(name) > step_index(failed) => {
            println!("  {name:<11} not reached")
        }
        _ => println!("  {name:<11} ok: {ok_text}"),
    };
    let cas = trust.verifier.cas();
    let issuer = ClientIdentity::from_chain(chain)
        .ok()
        .and_then(|identity| {
            cas.issuer_of(&identity).map(|ca| {
                format!(
                    "chains to {} ({}, certificate #{})",
                    ca.subject(),
                    ca.source().display(),
                    ca.position()
                )
            })
        })
        .unwrap_or_else(|| "chains to a configured CA".to_owned());
    println!("CA checks (the gateway's verifier):");
    step("chain", issuer);
    step("validity", "within its validity period now".to_owned());
    step("usage", "allowed for TLS client authentication".to_owned());
    let crl_count = trust.crls.len();
    step(
        "revocation",
        if crl_count == 0 {
            "no CRL loaded, so revocation is not checked".to_owned()
        } else {
            format!("not listed in the {crl_count} loaded CRL(s)")
        },
    );
}

/// The endpoint from --config (its CAs and CRLs replaced by --mutual-tls-cas / --crl when
/// given), or an http endpoint made of the flags, validated as the gateway validates it.
fn endpoint(args: &VerifyArgs) -> anyhow::Result<EndpointConfig> {
    if let Some(path) = &args.config {
        let config = Config::from_toml_file(path)?;
        let mut endpoint: EndpointConfig = match &args.endpoint {
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
        if !args.mutual_tls_cas.is_empty() {
            endpoint.mutual_tls_cas = args.mutual_tls_cas.clone();
        }
        if !args.crls.is_empty() {
            endpoint.crls = args.crls.clone();
        }
        return Ok(endpoint);
    }
    if args.mutual_tls_cas.is_empty() {
        anyhow::bail!(
            "no CAs to check against: give --mutual-tls-cas FILE, or --config moat.toml to use an endpoint's"
        );
    }
    // The upstream is never contacted; the endpoint only needs one to be valid.
    let spec = EndpointSpec {
        name: Some("verify".to_owned()),
        kind: Some("http".to_owned()),
        upstream: Some("127.0.0.1:1".to_owned()),
        mutual_tls_cas: args.mutual_tls_cas.clone(),
        crls: args.crls.clone(),
        ..EndpointSpec::default()
    };
    let config = Config::from_specs(vec![spec], None, "moat verify", FieldStyle::Flags)?;
    let mut endpoint = config.endpoints.into_iter().next().context("no endpoint")?;
    if let Some(file) = &args.policy {
        endpoint.rules = moat_config::load_policy_file(file, EndpointKind::Http)?;
    }
    Ok(endpoint)
}

/// The certificates of a PEM file, leaf first.
fn read_chain(path: &std::path::Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
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
