//! Fuzzes `CfsslCsr::from_json`: cfssl's `ca-csr.json` / `client-csr.json` for `--csr-json`.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use moat_pki::cfssl::CfsslCsr;

fuzz_target!(|data: &[u8]| {
    match CfsslCsr::from_json(Path::new("csr.json"), data) {
        Ok(csr) => {
            // cfssl's defaults and moat's checks leave a positive CA lifetime.
            assert!(csr.ca_validity.is_positive());
        }
        Err(error) => drop(error.to_string()),
    }
});
