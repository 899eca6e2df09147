//! Fuzzes `canonical_target`, the request-target the rules judge and the upstream receives, for its properties.
#![no_main]

use libfuzzer_sys::fuzz_target;
use moat_proxy::http::canonical::canonical_target;

fuzz_target!(|data: &[u8]| {
    let Ok(target) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(canonical) = canonical_target(target) else {
        return;
    };
    if target == "*" {
        // `OPTIONS *`, the asterisk form, is the one target without a path.
        assert_eq!(canonical.as_str(), "*");
        return;
    }
    let path = canonical.path();
    assert!(path.starts_with('/'), "{target:?} -> {path:?}");
    assert!(!path.contains("//"), "{target:?} -> {path:?}");
    assert!(
        path.split('/')
            .all(|segment| segment != "." && segment != ".."),
        "dot segment left: {target:?} -> {path:?}"
    );
    assert!(
        !path.to_ascii_lowercase().contains("%2e"),
        "encoded dot left: {target:?} -> {path:?}"
    );
    // Bytes outside printable ASCII are escaped, so the path goes upstream as plain ASCII.
    assert!(
        path.bytes().all(|byte| (0x21..=0x7e).contains(&byte)),
        "{target:?} -> {path:?}"
    );
    assert_eq!(
        canonical.as_str().get(..path.len()),
        Some(path),
        "the path leads the text"
    );
    // Idempotent: the canonical form is its own canonical form, and nothing changes in it.
    let again = canonical_target(canonical.as_str()).expect("the canonical form is accepted");
    assert_eq!(again.as_str(), canonical.as_str(), "from {target:?}");
    assert!(
        again.changes().is_empty(),
        "{:?} from {target:?}",
        again.changes()
    );
});
