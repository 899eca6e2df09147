//! `moat pki`: make CAs, issue and sign certificates, revoke them and publish CRLs, inspect files
//! and bundle PKCS#12 files.
//!
//! This module only dispatches; each subcommand lives in its own file, and what several of them
//! need (reading secrets from files) in `secrets.rs`.

pub mod ca;
pub mod inspect;
pub mod p12;
mod secrets;

/// The `moat pki` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum PkiCommand {
    /// Make a CA: DIR/ca.crt, DIR/ca.key (0600) and DIR/ledger.json of issued and revoked serials.
    InitCa(Box<ca::InitCaArgs>),
    /// Make a key and a client or server certificate signed by a moat CA.
    Issue(Box<ca::IssueArgs>),
    /// Sign a certificate signing request (e.g. from `openssl req -new`) with a CA.
    Sign(Box<ca::SignArgs>),
    /// Mark a certificate revoked in the CA's ledger (publish it with `moat pki crl`).
    Revoke(Box<ca::RevokeArgs>),
    /// Write a certificate revocation list signed by the CA.
    Crl(Box<ca::CrlArgs>),
    /// Show what certificates, CSRs, CRLs and keys contain, with warnings for what a gateway would refuse.
    Inspect(inspect::InspectArgs),
    /// Bundle a certificate, its chain and its key into a PKCS#12 (.p12) file for browsers and keychains.
    P12(p12::P12Args),
}

/// Runs one `moat pki` subcommand.
pub fn run(command: PkiCommand) -> anyhow::Result<()> {
    match command {
        PkiCommand::InitCa(args) => ca::init_ca(*args),
        PkiCommand::Issue(args) => ca::issue(*args),
        PkiCommand::Sign(args) => ca::sign(*args),
        PkiCommand::Revoke(args) => ca::revoke(*args),
        PkiCommand::Crl(args) => ca::crl(*args),
        PkiCommand::Inspect(args) => inspect::run(args),
        PkiCommand::P12(args) => p12::run(args),
    }
}
