//! `moat pki p12`: bundles a certificate, its chain and its key into a PKCS#12 file for browsers.

use std::path::PathBuf;

use anyhow::bail;
use moat_pki::p12::{P12Format, P12Input, build_pkcs12, write_pkcs12};

use super::secrets::read_first_line;

/// Flags of `moat pki p12`.
#[derive(Debug, clap::Args)]
pub struct P12Args {
    /// Certificate (PEM or DER); further certificates in the same PEM file are bundled as its chain.
    #[arg(long, value_name = "FILE")]
    pub cert: PathBuf,
    /// Private key of the certificate: PKCS#8 (plain or encrypted), PKCS#1 (RSA) or SEC1 (EC), PEM or DER.
    #[arg(long, value_name = "FILE")]
    pub key: PathBuf,
    /// File whose first line is the passphrase of an encrypted --key.
    #[arg(long, value_name = "FILE")]
    pub key_passphrase_file: Option<PathBuf>,
    /// Intermediate CA certificates to bundle after the certificate (PEM).
    #[arg(long, value_name = "FILE")]
    pub chain: Option<PathBuf>,
    /// Where to write the bundle (mode 0600).
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    /// File whose first line is the bundle's password (never given on the command line).
    #[arg(long, value_name = "FILE")]
    pub password_file: PathBuf,
    /// Use 3DES and a SHA-1 MAC instead of AES-256 and SHA-256, for importers that know nothing
    /// newer (older macOS keychains, Java 8).
    #[arg(long)]
    pub legacy: bool,
    /// Replace --out if it already exists.
    #[arg(long)]
    pub force: bool,
}

/// Builds the bundle in memory, then writes it atomically; nothing is written on any error.
pub fn run(args: P12Args) -> anyhow::Result<()> {
    if !args.force && args.out.exists() {
        bail!(
            "{}: already exists; pass --force to overwrite it or choose another --out",
            args.out.display()
        );
    }
    let password = read_first_line(&args.password_file, "the bundle's password")?;
    let key_passphrase = args
        .key_passphrase_file
        .as_deref()
        .map(|path| read_first_line(path, "the key's passphrase"))
        .transpose()?;
    let input = P12Input::from_files(
        &args.cert,
        &args.key,
        args.chain.as_deref(),
        key_passphrase.as_deref(),
    )?;
    let format = if args.legacy {
        P12Format::Legacy
    } else {
        P12Format::Modern
    };
    let bundle = build_pkcs12(&input, &password, format)?;
    write_pkcs12(&args.out, &bundle, args.force)?;
    println!(
        "wrote {} ({}, {})",
        args.out.display(),
        input.friendly_name(),
        if args.legacy {
            "legacy 3DES/SHA-1"
        } else {
            "AES-256/SHA-256"
        }
    );
    Ok(())
}
