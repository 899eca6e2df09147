//! Fuzzes `Config::from_toml_str`: a whole `moat.toml`, relative paths against an empty temp dir.
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use moat_config::Config;

/// The base directory relative paths resolve against; empty, so no file the config names exists.
static BASE_DIR: LazyLock<tempfile::TempDir> =
    LazyLock::new(|| tempfile::tempdir().expect("a temporary directory"));

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Config::from_toml_str(text, "moat.toml", BASE_DIR.path()) {
        Ok(config) => {
            for endpoint in &config.endpoints {
                // Endpoint names are what `moat start NAME` selects: never empty once validated.
                assert!(!endpoint.name.is_empty());
            }
        }
        Err(error) => drop(error.to_string()),
    }
});
