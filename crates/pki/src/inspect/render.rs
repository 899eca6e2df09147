//! Renders findings as aligned, readable text blocks for a terminal.

use std::fmt::Write as _;

use super::report::{CertificateReport, CrlReport, CsrReport, Finding, KeyReport};

/// Width of the label column, so values line up under each other.
const LABEL_WIDTH: usize = 22;

/// One block per finding, separated by blank lines.
pub(super) fn text(findings: &[Finding]) -> String {
    let blocks: Vec<String> = findings.iter().map(block).collect();
    blocks.join("\n")
}

fn block(finding: &Finding) -> String {
    let mut out = Block::default();
    match finding {
        Finding::Certificate(report) => certificate(&mut out, report),
        Finding::CertificateRequest(report) => csr(&mut out, report),
        Finding::Crl(report) => crl(&mut out, report),
        Finding::PrivateKey(report) => key(&mut out, "private key", report),
        Finding::PublicKey(report) => key(&mut out, "public key", report),
    }
    for warning in finding.warnings() {
        out.line("WARNING", warning);
    }
    out.text
}

#[derive(Default)]
struct Block {
    text: String,
}

impl Block {
    fn heading(&mut self, file: &str, item: usize, kind: &str) {
        // Writing to a String cannot fail.
        let _ = writeln!(self.text, "{file} #{item}: {kind}");
    }

    fn line(&mut self, label: &str, value: &str) {
        let _ = writeln!(self.text, "  {:<LABEL_WIDTH$}{value}", format!("{label}:"));
    }

    fn list(&mut self, label: &str, values: &[String]) {
        let value = if values.is_empty() {
            "(none)".to_owned()
        } else {
            values.join(", ")
        };
        self.line(label, &value);
    }
}

fn certificate(out: &mut Block, report: &CertificateReport) {
    out.heading(&report.file, report.item, "certificate");
    out.line("Subject", &report.subject);
    out.line("Issuer", &report.issuer);
    out.line("Serial", &report.serial);
    out.line(
        "Version",
        &format!("{} (X.509 v{})", report.version, report.version),
    );
    out.line("Not before", &report.not_before);
    let days = if report.days_left >= 0 {
        format!("{} days left", report.days_left)
    } else {
        format!("expired {} days ago", -report.days_left)
    };
    out.line("Not after", &format!("{} ({days})", report.not_after));
    out.line("Public key", &report.public_key);
    out.line("Signature", &report.signature_algorithm);
    out.list("SANs", &report.subject_alt_names);
    out.line("Key usage", &optional_list(report.key_usage.as_deref()));
    out.line(
        "Extended key usage",
        &optional_list(report.extended_key_usage.as_deref()),
    );
    let constraints = match &report.basic_constraints {
        None => "(absent: not a CA)".to_owned(),
        Some(bc) => {
            let mut text = if bc.ca {
                "CA".to_owned()
            } else {
                "not a CA".to_owned()
            };
            if let Some(path_len) = bc.path_len {
                let _ = write!(text, ", pathLen {path_len}");
            }
            if bc.critical {
                text.push_str(", critical");
            }
            text
        }
    };
    out.line("Basic constraints", &constraints);
    if report.self_signed {
        out.line("Self-signed", "yes");
    }
    out.line("SHA-256 fingerprint", &report.sha256_fingerprint);
}

fn csr(out: &mut Block, report: &CsrReport) {
    out.heading(&report.file, report.item, "certificate signing request");
    out.line("Subject", &report.subject);
    out.line("Public key", &report.public_key);
    out.line("Signature", &report.signature_algorithm);
    out.line(
        "Signature valid",
        if report.signature_valid { "yes" } else { "NO" },
    );
    out.list("Requested SANs", &report.requested_subject_alt_names);
}

fn crl(out: &mut Block, report: &CrlReport) {
    out.heading(&report.file, report.item, "certificate revocation list");
    out.line("Issuer", &report.issuer);
    out.line("Version", &report.version.to_string());
    out.line("This update", &report.this_update);
    out.line(
        "Next update",
        report.next_update.as_deref().unwrap_or("(none)"),
    );
    out.line(
        "CRL number",
        report.crl_number.as_deref().unwrap_or("(none)"),
    );
    out.line("Signature", &report.signature_algorithm);
    out.line("Revoked", &report.revoked.len().to_string());
    for entry in &report.revoked {
        let reason = entry.reason.as_deref().unwrap_or("no reason given");
        out.line(
            "  serial",
            &format!("{} at {} ({reason})", entry.serial, entry.revoked_at),
        );
    }
}

fn key(out: &mut Block, kind: &str, report: &KeyReport) {
    out.heading(&report.file, report.item, kind);
    out.line("Format", &report.format);
    let key_type = match (&report.key_type, report.encrypted) {
        (Some(key_type), _) => key_type.clone(),
        (None, true) => "(hidden until decrypted)".to_owned(),
        (None, false) => "(unknown)".to_owned(),
    };
    out.line("Type", &key_type);
    out.line("Encrypted", if report.encrypted { "yes" } else { "no" });
}

fn optional_list(values: Option<&[String]>) -> String {
    match values {
        None => "(absent)".to_owned(),
        Some([]) => "(empty)".to_owned(),
        Some(values) => values.join(", "),
    }
}
