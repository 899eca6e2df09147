//! `moat pki init-ca`, `issue`, `sign`, `revoke` and `crl`: the commands that work on a CA.

use std::path::{Path, PathBuf};

use anyhow::bail;
use moat_pki::cfssl::{CfsslCsr, SigningConfig};
use moat_pki::ledger::read_serials_file;
use moat_pki::p12::P12Format;
use moat_pki::time;
use moat_pki::{
    CaOptions, CertificateAuthority, CertificateRequest, CrlOptions, CsrSigning, IssuedCertificate,
    KeyType, LeafRequest, Profile, RevocationReason, SubjectAltName, SubjectName, WriteOptions,
};

use super::secrets::read_first_line;

/// Environment variable holding the CA key's passphrase when no --passphrase-file is given.
const PASSPHRASE_ENV: &str = "MOAT_CA_PASSPHRASE";

/// Where the CA key's passphrase comes from: a file (first line) or MOAT_CA_PASSPHRASE.
#[derive(Debug, clap::Args)]
pub struct PassphraseArgs {
    /// File whose first line is the CA key's passphrase (else the MOAT_CA_PASSPHRASE environment
    /// variable; never on the command line).
    #[arg(long, value_name = "FILE")]
    pub passphrase_file: Option<PathBuf>,
}

impl PassphraseArgs {
    fn read(&self) -> anyhow::Result<Option<String>> {
        match &self.passphrase_file {
            Some(path) => read_first_line(path, "the CA key's passphrase").map(Some),
            None => Ok(std::env::var(PASSPHRASE_ENV)
                .ok()
                .filter(|value| !value.is_empty())),
        }
    }
}

/// Flags of `moat pki init-ca`.
#[derive(Debug, clap::Args)]
pub struct InitCaArgs {
    /// Directory to create the CA in.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Common name of the CA (default "moat CA", or the CN of --csr-json).
    #[arg(long, value_name = "NAME")]
    pub cn: Option<String>,
    /// Organisation (O) of the CA's subject.
    #[arg(long, value_name = "O")]
    pub org: Option<String>,
    /// Key algorithm (default ecdsa-p256, or the key of --csr-json).
    #[arg(long, value_name = "TYPE", value_parser = parse_key_type)]
    pub key_type: Option<KeyType>,
    /// Lifetime in days (default 3650, or "ca": {"expiry"} of --csr-json, else cfssl's 43800h).
    #[arg(long, value_name = "N")]
    pub days: Option<u32>,
    /// cfssl CSR JSON (`ca-csr.json`) giving CN, names, key and ca.expiry/pathlen.
    #[arg(long, value_name = "FILE")]
    pub csr_json: Option<PathBuf>,
    /// Make an intermediate CA signed by the moat CA in this directory.
    #[arg(long, value_name = "DIR")]
    pub parent: Option<PathBuf>,
    /// File whose first line is the passphrase of the parent CA's key (else MOAT_CA_PASSPHRASE).
    #[arg(long, value_name = "FILE", requires = "parent")]
    pub parent_passphrase_file: Option<PathBuf>,
    /// pathLenConstraint: how many CA levels may follow below this CA (default: unlimited for a
    /// root, 0 for an intermediate).
    #[arg(long, value_name = "N")]
    pub path_len: Option<u8>,
    #[command(flatten)]
    pub passphrase: PassphraseArgs,
    /// Replace a CA that already exists in --out (its old key is lost).
    #[arg(long)]
    pub force: bool,
}

/// Runs `moat pki init-ca`: a root CA, or an intermediate under --parent.
pub(super) fn init_ca(args: InitCaArgs) -> anyhow::Result<()> {
    let from_json = args.csr_json.as_deref().map(CfsslCsr::load).transpose()?;
    let mut subject = from_json
        .as_ref()
        .map(|csr| csr.subject.clone())
        .unwrap_or_else(|| SubjectName::common_name("moat CA"));
    if let Some(cn) = &args.cn {
        subject.common_name = cn.clone();
    }
    if let Some(org) = &args.org {
        subject.organization = vec![org.clone()];
    }
    let validity_days = match (args.days, &from_json) {
        (Some(days), _) => days,
        (None, Some(csr)) => u32::try_from(csr.ca_validity.whole_days())
            .unwrap_or(u32::MAX)
            .max(1),
        (None, None) => 3650,
    };
    let options = CaOptions {
        subject,
        key_type: args
            .key_type
            .or(from_json.as_ref().map(|csr| csr.key_type))
            .unwrap_or_default(),
        validity_days,
        passphrase: args.passphrase.read()?,
        path_len: args
            .path_len
            .or(from_json.as_ref().and_then(|csr| csr.ca_path_len)),
        overwrite: args.force,
    };
    let authority = match &args.parent {
        None => CertificateAuthority::init(&args.out, &options)?,
        Some(parent_dir) => {
            let parent_passphrase = match &args.parent_passphrase_file {
                Some(path) => Some(read_first_line(path, "the parent CA key's passphrase")?),
                None => std::env::var(PASSPHRASE_ENV)
                    .ok()
                    .filter(|value| !value.is_empty()),
            };
            let parent = CertificateAuthority::open(parent_dir, parent_passphrase.as_deref())?;
            parent.init_intermediate(&args.out, &options)?
        }
    };
    println!(
        "wrote {dir}/ca.crt, {dir}/ca.key ({key}{encrypted}) and {dir}/ledger.json for {subject}",
        dir = args.out.display(),
        key = options.key_type,
        encrypted = if options.passphrase.is_some() {
            ", encrypted"
        } else {
            ""
        },
        subject = authority.subject()
    );
    Ok(())
}

/// Flags shared by `issue` and `sign` to pick a profile.
#[derive(Debug, clap::Args)]
pub struct ProfileArgs {
    /// Profile: client or server, or a profile of the --config file.
    #[arg(long, value_name = "NAME")]
    pub profile: String,
    /// cfssl signing configuration (`ca-config.json`) whose profiles --profile names.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Lifetime in days (default: the profile's; client 365, server 397).
    #[arg(long, value_name = "N")]
    pub days: Option<u32>,
}

impl ProfileArgs {
    fn resolve(&self) -> anyhow::Result<(Profile, Option<time::Duration>)> {
        let profile = match &self.config {
            Some(path) => SigningConfig::load(path)?.profile(&self.profile)?,
            None => Profile::builtin(&self.profile).ok_or_else(|| {
                moat_pki::PkiError::UnknownProfile {
                    name: self.profile.clone(),
                    config: None,
                    known: "client, server (or pass --config ca-config.json for cfssl profiles)"
                        .to_owned(),
                }
            })?,
        };
        let validity = match self.days {
            Some(0) => bail!("--days 0: a certificate needs a lifetime of at least one day"),
            Some(days) => Some(time::Duration::days(i64::from(days))),
            None => None,
        };
        Ok((profile, validity))
    }
}

/// Where the CA comes from: a moat CA directory, or certificate and key files.
#[derive(Debug, clap::Args)]
pub struct CaSourceArgs {
    /// A CA directory made by `moat pki init-ca`.
    #[arg(long, value_name = "DIR", conflicts_with_all = ["ca_cert", "ca_key"])]
    pub ca: Option<PathBuf>,
    /// The CA certificate of a CA moat did not make (openssl, cfssl); needs --ca-key.
    #[arg(long, value_name = "FILE", requires = "ca_key")]
    pub ca_cert: Option<PathBuf>,
    /// The CA's private key (PKCS#8, encrypted PKCS#8, PKCS#1 or SEC1); needs --ca-cert.
    #[arg(long, value_name = "FILE", requires = "ca_cert")]
    pub ca_key: Option<PathBuf>,
    #[command(flatten)]
    pub passphrase: PassphraseArgs,
}

impl CaSourceArgs {
    fn open(&self) -> anyhow::Result<CertificateAuthority> {
        let passphrase = self.passphrase.read()?;
        match (&self.ca, &self.ca_cert, &self.ca_key) {
            (Some(dir), _, _) => Ok(CertificateAuthority::open(dir, passphrase.as_deref())?),
            (None, Some(cert), Some(key)) => Ok(CertificateAuthority::from_files(
                cert,
                key,
                passphrase.as_deref(),
            )?),
            _ => bail!("no CA given; pass --ca DIR, or --ca-cert FILE and --ca-key FILE"),
        }
    }
}

/// Flags of `moat pki issue`.
#[derive(Debug, clap::Args)]
pub struct IssueArgs {
    /// A CA directory made by `moat pki init-ca`.
    #[arg(long, value_name = "DIR")]
    pub ca: PathBuf,
    #[command(flatten)]
    pub passphrase: PassphraseArgs,
    #[command(flatten)]
    pub profile: ProfileArgs,
    /// Common name of the subject (or the CN of --csr-json).
    #[arg(long, value_name = "NAME", required_unless_present = "csr_json")]
    pub cn: Option<String>,
    /// Subject alternative name: dns:NAME, ip:ADDRESS, uri:URI or email:ADDRESS (repeatable).
    #[arg(long, value_name = "SAN", value_parser = parse_san)]
    pub san: Vec<SubjectAltName>,
    /// Organisation (O) of the subject.
    #[arg(long, value_name = "O")]
    pub org: Option<String>,
    /// Organisational unit (OU) of the subject.
    #[arg(long, value_name = "OU")]
    pub ou: Option<String>,
    /// Key algorithm (default ecdsa-p256, or the key of --csr-json).
    #[arg(long, value_name = "TYPE", value_parser = parse_key_type)]
    pub key_type: Option<KeyType>,
    /// cfssl CSR JSON (`client-csr.json`) giving CN, names, hosts and key.
    #[arg(long, value_name = "FILE")]
    pub csr_json: Option<PathBuf>,
    /// Output prefix: writes PREFIX.crt (certificate then intermediates) and PREFIX.key (0600).
    #[arg(long, value_name = "PREFIX")]
    pub out: PathBuf,
    /// Also write PREFIX.pem: certificate chain then key, for `curl --cert PREFIX.pem`.
    #[arg(long)]
    pub combined: bool,
    /// Also write PREFIX.p12 (PKCS#12, AES-256/SHA-256) for browsers; needs --p12-password-file.
    #[arg(long, requires = "p12_password_file")]
    pub p12: bool,
    /// File whose first line is the PKCS#12 password.
    #[arg(long, value_name = "FILE", requires = "p12")]
    pub p12_password_file: Option<PathBuf>,
    /// Overwrite existing output files.
    #[arg(long)]
    pub force: bool,
}

/// Runs `moat pki issue`: a new key and certificate, written as PREFIX.crt and PREFIX.key.
pub(super) fn issue(args: IssueArgs) -> anyhow::Result<()> {
    let (profile, validity) = args.profile.resolve()?;
    let from_json = args.csr_json.as_deref().map(CfsslCsr::load).transpose()?;
    let mut subject = from_json
        .as_ref()
        .map(|csr| csr.subject.clone())
        .unwrap_or_default();
    if let Some(cn) = &args.cn {
        subject.common_name = cn.clone();
    }
    if let Some(org) = &args.org {
        subject.organization = vec![org.clone()];
    }
    if let Some(ou) = &args.ou {
        subject.organizational_unit = vec![ou.clone()];
    }
    let mut subject_alt_names = from_json
        .as_ref()
        .map(|csr| csr.hosts.clone())
        .unwrap_or_default();
    subject_alt_names.extend(args.san.iter().cloned());
    let p12_password = args
        .p12_password_file
        .as_deref()
        .map(|path| read_first_line(path, "the PKCS#12 password"))
        .transpose()?;
    let options = WriteOptions {
        overwrite: args.force,
        combined: args.combined,
        p12_password,
        p12_format: P12Format::Modern,
    };
    refuse_existing(&args.out, &options, true)?;
    let authority = CertificateAuthority::open(&args.ca, args.passphrase.read()?.as_deref())?;
    let request = LeafRequest {
        subject,
        subject_alt_names,
        profile,
        validity,
        key_type: args
            .key_type
            .or(from_json.as_ref().map(|csr| csr.key_type))
            .unwrap_or_default(),
    };
    let issued = authority.issue(&request)?;
    let written = issued.write(&args.out, &options)?;
    report(&issued, &written);
    Ok(())
}

/// Flags of `moat pki sign`.
#[derive(Debug, clap::Args)]
pub struct SignArgs {
    /// The certificate signing request (PEM or DER), e.g. from `openssl req -new`.
    #[arg(long, value_name = "FILE")]
    pub csr: PathBuf,
    #[command(flatten)]
    pub ca: CaSourceArgs,
    #[command(flatten)]
    pub profile: ProfileArgs,
    /// Output prefix: writes PREFIX.crt (certificate then intermediates).
    #[arg(long, value_name = "PREFIX")]
    pub out: PathBuf,
    /// Overwrite an existing PREFIX.crt.
    #[arg(long)]
    pub force: bool,
}

/// Runs `moat pki sign`: a certificate for a CSR, whose key stays with the requester.
pub(super) fn sign(args: SignArgs) -> anyhow::Result<()> {
    let (profile, validity) = args.profile.resolve()?;
    let options = WriteOptions {
        overwrite: args.force,
        ..WriteOptions::default()
    };
    refuse_existing(&args.out, &options, false)?;
    // The CSR is checked before the CA key is even decrypted.
    let request = CertificateRequest::load(&args.csr)?;
    let authority = args.ca.open()?;
    let issued = authority.sign_csr(&request, &CsrSigning { profile, validity })?;
    let written = issued.write(&args.out, &options)?;
    report(&issued, &written);
    Ok(())
}

/// Flags of `moat pki revoke`.
#[derive(Debug, clap::Args)]
#[command(group = clap::ArgGroup::new("which").required(true).args(["serial", "cert"]))]
pub struct RevokeArgs {
    /// A CA directory made by `moat pki init-ca`.
    #[arg(long, value_name = "DIR")]
    pub ca: PathBuf,
    #[command(flatten)]
    pub passphrase: PassphraseArgs,
    /// Serial number in hex (as `openssl x509 -serial` or `moat pki inspect` print it).
    #[arg(long, value_name = "HEX")]
    pub serial: Option<String>,
    /// The certificate to revoke (checked to be signed by this CA).
    #[arg(long, value_name = "FILE")]
    pub cert: Option<PathBuf>,
    /// Why: unspecified, keyCompromise, caCompromise, affiliationChanged, superseded,
    /// cessationOfOperation.
    #[arg(long, value_name = "REASON", default_value = "unspecified", value_parser = parse_reason)]
    pub reason: RevocationReason,
}

/// Runs `moat pki revoke`: marks a serial or a certificate file revoked in the ledger.
pub(super) fn revoke(args: RevokeArgs) -> anyhow::Result<()> {
    let authority = CertificateAuthority::open(&args.ca, args.passphrase.read()?.as_deref())?;
    let outcome = match (&args.serial, &args.cert) {
        (Some(serial), _) => {
            // Parsed here so that a mistyped serial is reported under its flag's name.
            let serial = moat_pki::ledger::parse_serial(serial, "--serial")?;
            authority.revoke(&serial, args.reason)?
        }
        (None, Some(cert)) => authority.revoke_certificate(cert, args.reason)?,
        (None, None) => bail!("nothing to revoke; pass --serial HEX or --cert FILE"),
    };
    let entry = &outcome.entry;
    if outcome.newly_revoked {
        println!(
            "revoked serial {} ({}), reason {}; run `moat pki crl --ca {}` to publish it",
            entry.serial.to_ledger_hex(),
            entry.subject,
            args.reason,
            args.ca.display()
        );
    } else if let Some(revocation) = &entry.revoked {
        println!(
            "serial {} ({}) was already revoked at {} (reason {}); nothing changed",
            entry.serial.to_ledger_hex(),
            entry.subject,
            revocation.at,
            revocation.reason
        );
    }
    Ok(())
}

/// Flags of `moat pki crl`.
#[derive(Debug, clap::Args)]
pub struct CrlArgs {
    #[command(flatten)]
    pub ca: CaSourceArgs,
    /// Where to write the CRL.
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    /// Write DER instead of PEM.
    #[arg(long)]
    pub der: bool,
    /// Days until nextUpdate.
    #[arg(long, value_name = "N", default_value_t = 7)]
    pub days: u32,
    /// More serials to list, one hex serial per line (cfssl gencrl's serials file).
    #[arg(long, value_name = "FILE")]
    pub serials: Option<PathBuf>,
    /// Overwrite an existing --out (the usual case when republishing).
    #[arg(long)]
    pub force: bool,
}

/// Runs `moat pki crl`: signs and writes the CA's revocation list.
pub(super) fn crl(args: CrlArgs) -> anyhow::Result<()> {
    if !args.force && args.out.exists() {
        return Err(moat_pki::PkiError::OutputExists { path: args.out }.into());
    }
    if args.days == 0 {
        bail!("--days 0: a CRL needs a lifetime of at least one day");
    }
    let extra_serials = match &args.serials {
        Some(path) => read_serials_file(path)?,
        None => Vec::new(),
    };
    let authority = args.ca.open()?;
    let options = CrlOptions {
        validity: time::Duration::days(i64::from(args.days)),
        extra_serials,
    };
    let crl = authority.publish_crl(&options, |crl| {
        let bytes = if args.der {
            crl.der.clone()
        } else {
            crl.pem.clone().into_bytes()
        };
        if args.force {
            moat_pki::files::write_atomic(&args.out, &bytes, moat_pki::files::PUBLIC_MODE)
        } else {
            moat_pki::files::write_new(&args.out, &bytes, moat_pki::files::PUBLIC_MODE)
        }
    })?;
    println!(
        "wrote {} (CRL number {}, {} revoked, next update in {} days)",
        args.out.display(),
        crl.number,
        crl.revoked_count,
        args.days
    );
    Ok(())
}

fn refuse_existing(prefix: &Path, options: &WriteOptions, with_key: bool) -> anyhow::Result<()> {
    if options.overwrite {
        return Ok(());
    }
    for path in IssuedCertificate::output_paths(prefix, options, with_key) {
        if path.exists() {
            return Err(moat_pki::PkiError::OutputExists { path }.into());
        }
    }
    Ok(())
}

fn report(issued: &IssuedCertificate, written: &[PathBuf]) {
    let names: Vec<String> = written
        .iter()
        .map(|path| path.display().to_string())
        .collect();
    println!(
        "wrote {} for {} (serial {}, valid until {})",
        names.join(", "),
        issued.subject,
        issued.serial,
        issued
            .not_after
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default()
    );
}

fn parse_key_type(text: &str) -> Result<KeyType, String> {
    text.parse()
}

fn parse_san(text: &str) -> Result<SubjectAltName, String> {
    text.parse()
        .map_err(|error: moat_pki::PkiError| error.to_string())
}

fn parse_reason(text: &str) -> Result<RevocationReason, String> {
    text.parse()
}
