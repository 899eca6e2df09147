//! Fuzzes `RevocationLists::from_bytes`: a `--crl` file (PEM or DER) checked against a fixed CA.
#![no_main]

use std::path::Path;
use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use moat_trust::{CaBundle, RevocationLists};
use rustls_pki_types::UnixTime;

/// The CA that signed the seed CRLs (`fuzz/fixtures/make.sh`), so seeds get past the issuer check.
static CAS: LazyLock<CaBundle> = LazyLock::new(|| {
    CaBundle::from_bytes(Path::new("ca.pem"), include_bytes!("../fixtures/ca.pem")).unwrap()
});

fuzz_target!(|data: &[u8]| {
    match RevocationLists::from_bytes(Path::new("ca.crl"), data, &CAS) {
        Ok(lists) => {
            assert!(!lists.is_empty());
            let _ = lists.stale(UnixTime::now());
        }
        Err(error) => drop(error.to_string()),
    }
});
