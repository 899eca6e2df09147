//! Fuzzes `load_policy_str` (a `--policy` file of `[[rules]]`), then judges a fixed request by its rules.
#![no_main]

use libfuzzer_sys::fuzz_target;
use moat_config::{EndpointKind, load_policy_str};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for kind in [EndpointKind::Http, EndpointKind::Tls] {
        match load_policy_str(text, "policy.toml", kind) {
            Ok(rules) => {
                assert!(!rules.is_empty());
                for warning in moat_policy::lint(&rules) {
                    drop(warning.to_string());
                }
                moat_fuzz::judge(&rules);
            }
            Err(error) => drop(error.to_string()),
        }
    }
});
