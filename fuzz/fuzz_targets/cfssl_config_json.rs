//! Fuzzes `SigningConfig::from_json` and its profiles: cfssl's `ca-config.json` for `--config`.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use moat_pki::cfssl::SigningConfig;

fuzz_target!(|data: &[u8]| {
    match SigningConfig::from_json(Path::new("ca-config.json"), data) {
        Ok(config) => {
            for name in ["client", "server", "www", ""] {
                match config.profile(name) {
                    Ok(profile) => {
                        assert!(!profile.usages.is_empty());
                        assert!(
                            profile
                                .validity
                                .is_none_or(|validity| validity.is_positive())
                        );
                    }
                    Err(error) => drop(error.to_string()),
                }
            }
        }
        Err(error) => drop(error.to_string()),
    }
});
