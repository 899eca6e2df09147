//! Library errors re-worded with the flag that fixes them: flag names belong to the CLI.
//!
//! The libraries name a setting neutrally ("give the validity in days"), because the same error
//! reaches users of flags, of `moat.toml` and (later) of the admin API. Only the CLI knows that
//! the setting is `--days N` here, so [`with_flag`] writes that error's message again with the
//! flag in it. The wording is the one the libraries used before, which the CLI tests pin down.

use std::error::Error;

use moat_gateway::GatewayError;
use moat_pki::PkiError;
use moat_pki::p12::P12Error;
use moat_telemetry::audit::AuditError;
use moat_telemetry::health::MetricsListenError;
use moat_trust::TrustError;

/// The message of `error` with the flag that fixes it, or `None` when its own message names no
/// setting a flag would fix.
pub(crate) fn with_flag(error: &(dyn Error + 'static)) -> Option<String> {
    // A library error that holds another boxes it, and the chain shows the box.
    if let Some(error) = error.downcast_ref::<PkiError>() {
        return pki(error);
    }
    if let Some(error) = error.downcast_ref::<Box<PkiError>>() {
        return pki(error);
    }
    if let Some(error) = error.downcast_ref::<P12Error>() {
        return p12(error);
    }
    if let Some(error) = error.downcast_ref::<TrustError>() {
        return trust(error);
    }
    if let Some(error) = error.downcast_ref::<Box<TrustError>>() {
        return trust(error);
    }
    if let Some(error) = error.downcast_ref::<GatewayError>() {
        return gateway(error);
    }
    if let Some(error) = error.downcast_ref::<AuditError>() {
        return audit(error);
    }
    if let Some(error) = error.downcast_ref::<MetricsListenError>() {
        return metrics(error);
    }
    None
}

fn audit(error: &AuditError) -> Option<String> {
    match error {
        AuditError::Open { path, source } => Some(format!(
            "{}: cannot open the audit log for appending: {source}; check that its directory \
             exists and is writable, or pass another --audit-log (audit_log in moat.toml)",
            path.display()
        )),
        _ => None,
    }
}

fn metrics(error: &MetricsListenError) -> Option<String> {
    match error {
        MetricsListenError::Bind { address, source } => Some(format!(
            "cannot listen for metrics on {address}: {source}; choose another --metrics-listen \
             (metrics_listen in moat.toml) or stop the process that uses it"
        )),
        _ => None,
    }
}

fn pki(error: &PkiError) -> Option<String> {
    Some(match error {
        PkiError::OutputExists { path } => format!(
            "{}: already exists; pass --force to overwrite it or choose another output",
            path.display()
        ),
        PkiError::PassphraseRequired { path } => format!(
            "{}: the private key is encrypted; pass its passphrase with --passphrase-file FILE or the MOAT_CA_PASSPHRASE environment variable",
            path.display()
        ),
        PkiError::NotACaDirectory { dir, missing } => format!(
            "{}: not a moat CA directory (missing {missing}); make one with `moat pki init-ca --out DIR` or pass --ca-cert and --ca-key",
            dir.display()
        ),
        PkiError::PathLengthExceeded {
            path,
            subject,
            allowed,
            ..
        } if *allowed > 0 => format!(
            "{}: the parent CA ({subject}) allows {allowed} more CA level(s) below it; pass a --path-len below {allowed}",
            path.display()
        ),
        PkiError::BadExpiry {
            origin,
            value,
            reason,
        } => format!(
            "{origin}: expiry {value:?} {reason}; write hours like \"8760h\" (cfssl) or pass --days N"
        ),
        PkiError::UnknownSerial { serial, ledger } => format!(
            "serial {serial} is not in {} (not issued by this CA); check the serial, or pass --cert with the certificate itself",
            ledger.display()
        ),
        PkiError::NoValidity { problem } => format!("{problem}; pass --days N with N >= 1"),
        PkiError::NoServerName { problem } => format!("{problem}; pass --san dns:NAME"),
        PkiError::LedgerRequired { path, what } => format!(
            "{}: {what} needs the CA's ledger; use a CA directory made by `moat pki init-ca` (--ca DIR), or list serials in a file and pass --serials",
            path.display()
        ),
        PkiError::P12(error) => return p12(error),
        _ => return None,
    })
}

fn p12(error: &P12Error) -> Option<String> {
    Some(match error {
        P12Error::EncryptedKey { path } => format!(
            "{path}: the private key is encrypted; pass its passphrase with --key-passphrase-file FILE"
        ),
        P12Error::OutputExists { path } => {
            format!("{path}: already exists; pass --force to overwrite it or choose another --out")
        }
        _ => return None,
    })
}

fn trust(error: &TrustError) -> Option<String> {
    match error {
        TrustError::NoCas => Some(
            "no CA certificate configured; give at least one CA file (--mutual-tls-cas)".to_owned(),
        ),
        _ => None,
    }
}

fn gateway(error: &GatewayError) -> Option<String> {
    Some(match error {
        GatewayError::Bind {
            endpoint,
            address,
            source,
        } => format!(
            "endpoint {endpoint}: cannot listen on {address}: {source}; choose another listen address \
             (--listen) or stop the process that uses it"
        ),
        GatewayError::LocalCa {
            endpoint,
            dir,
            source,
        } => format!(
            "endpoint {endpoint}: no --crt/--key given and moat's local CA in {} failed: {source}; \
             fix or remove that directory, or pass --crt and --key",
            dir.display()
        ),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    /// Each library message and its flag version differ only in the fix, which names the flag.
    #[test]
    fn library_messages_name_no_flag_and_the_cli_adds_it() {
        let cases: Vec<(Box<dyn Error + 'static>, &str)> = vec![
            (
                Box::new(PkiError::OutputExists {
                    path: PathBuf::from("ca/ca.crt"),
                }),
                "--force",
            ),
            (
                Box::new(PkiError::NoValidity {
                    problem: "a CA needs a lifetime of at least one day",
                }),
                "--days N",
            ),
            (
                Box::new(PkiError::NoServerName {
                    problem: "no name".to_owned(),
                }),
                "--san dns:NAME",
            ),
            (
                Box::new(PkiError::LedgerRequired {
                    path: PathBuf::from("ca.crt"),
                    what: "revocation",
                }),
                "--serials",
            ),
            (
                Box::new(P12Error::EncryptedKey {
                    path: "client.key".to_owned(),
                }),
                "--key-passphrase-file FILE",
            ),
            (Box::new(TrustError::NoCas), "--mutual-tls-cas"),
            (
                Box::new(AuditError::Open {
                    path: PathBuf::from("logs/audit.jsonl"),
                    source: std::io::Error::from(std::io::ErrorKind::NotFound),
                }),
                "--audit-log",
            ),
            (
                Box::new(MetricsListenError::Bind {
                    address: "127.0.0.1:9090".parse().expect("an address"),
                    source: std::io::Error::from(std::io::ErrorKind::AddrInUse),
                }),
                "--metrics-listen",
            ),
        ];
        for (error, flag) in cases {
            let library = error.to_string();
            assert!(!library.contains("--"), "{library}");
            let cli = with_flag(error.as_ref()).expect("a flag version");
            assert!(cli.contains(flag), "{cli}");
        }
    }

    /// An outer error quoting an inner one shows both in their flag wording, once.
    #[test]
    fn a_quoted_cause_is_shown_in_its_flag_wording() {
        let error = anyhow::Error::new(GatewayError::LocalCa {
            endpoint: "web".to_owned(),
            dir: PathBuf::from("local-ca"),
            source: Box::new(PkiError::NoValidity {
                problem: "a CA needs a lifetime of at least one day",
            }),
        });
        assert_eq!(
            crate::error_report(&error),
            "endpoint web: no --crt/--key given and moat's local CA in local-ca failed: \
             a CA needs a lifetime of at least one day; pass --days N with N >= 1; \
             fix or remove that directory, or pass --crt and --key"
        );
    }

    #[test]
    fn an_error_without_a_flag_to_name_is_left_alone() {
        let error = PkiError::NoCertificate {
            path: PathBuf::from("x.pem"),
        };
        assert_eq!(with_flag(&error), None);
    }
}
