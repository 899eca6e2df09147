//! Fuzzes `CaBundle::from_bytes`: a `--mutual-tls-cas` file, PEM blocks or one DER certificate.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use moat_trust::CaBundle;

fuzz_target!(|data: &[u8]| {
    match CaBundle::from_bytes(Path::new("cas.pem"), data) {
        Ok(bundle) => {
            // A bundle read from a file with a certificate in it is never empty.
            assert!(!bundle.is_empty());
            for ca in bundle.iter() {
                let _ = (ca.subject(), ca.not_after(), ca.position());
            }
        }
        // Errors are printed to the user: rendering one must not panic either.
        Err(error) => drop(error.to_string()),
    }
});
