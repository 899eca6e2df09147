//! Fuzzes `CertificateRequest::parse`: a CSR for `moat pki sign --csr` (PEM or DER).
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use moat_pki::CertificateRequest;

fuzz_target!(|data: &[u8]| {
    match CertificateRequest::parse(Path::new("req.csr"), data) {
        Ok(request) => {
            let _ = (request.subject(), request.subject_alt_names().len());
        }
        Err(error) => drop(error.to_string()),
    }
});
