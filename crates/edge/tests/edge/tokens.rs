//! Join tokens: the text format, strict parsing, and redeeming once.

use std::sync::{Arc, Barrier};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use moat_edge::{JoinToken, RedeemError, TokenError, TokenSecret};

use crate::support::{NOW, assert_private, edge, token};

#[test]
fn a_token_reads_back_as_it_was_made_and_pins_the_agent_ca() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let edge = edge(dir.path());
    let made = token(&edge);
    let text = made.to_text();
    assert!(text.starts_with("moat-join-1."), "{text}");
    assert!(
        text.bytes().all(|b| b.is_ascii_graphic()),
        "printable: {text}"
    );

    let read = JoinToken::parse(&format!("  {text}\n"), NOW).expect("parses");
    assert_eq!(read.edge, "edge.example.com:4443");
    assert_eq!(read.id, made.id);
    assert_eq!(read.expires_at, NOW + 3600);
    assert_eq!(read.grant, made.grant);
    assert_eq!(read.secret.sha256_hex(), made.secret.sha256_hex());
    let ca = edge.agent_trust().agent_ca().expect("own CA");
    assert_eq!(read.ca_fingerprint, ca.fingerprint());
    read.check_pin(ca.authority().certificate_der())
        .expect("the edge's own CA passes the pin");
    let other_dir = tempfile::tempdir().expect("temporary directory");
    let other = crate::support::edge(other_dir.path());
    let other_ca = other.agent_trust().agent_ca().expect("own CA");
    let error = read
        .check_pin(other_ca.authority().certificate_der())
        .expect_err("another edge's CA");
    assert!(matches!(error, TokenError::PinMismatch { .. }), "{error:?}");
    assert!(
        !format!("{read:?}").contains(&URL_SAFE_NO_PAD.encode(secret_bytes(&text))),
        "Debug hides the secret"
    );
}

/// The secret's bytes, read from the token's JSON.
fn secret_bytes(text: &str) -> Vec<u8> {
    let json = json_of(text);
    URL_SAFE_NO_PAD
        .decode(json["secret"].as_str().expect("a secret"))
        .expect("base64url")
}

fn json_of(text: &str) -> serde_json::Value {
    let body = text.strip_prefix("moat-join-1.").expect("prefix");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(body).expect("base64url")).expect("JSON")
}

fn with_json(text: &str, change: impl FnOnce(&mut serde_json::Value)) -> String {
    let mut json = json_of(text);
    change(&mut json);
    format!(
        "moat-join-1.{}",
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(&json).expect("JSON"))
    )
}

#[test]
fn each_malformed_token_is_its_own_error() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let good = token(&edge(dir.path())).to_text();
    let set = |field: &'static str, value: serde_json::Value| {
        with_json(&good, |json| json[field] = value)
    };
    type Check = fn(&TokenError) -> bool;
    let table: Vec<(&str, String, Check)> = vec![
        ("empty", String::new(), |e| {
            matches!(e, TokenError::NotAJoinToken)
        }),
        (
            "other prefix",
            good.replacen("moat-join-", "ngrok-", 1),
            |e| matches!(e, TokenError::NotAJoinToken),
        ),
        ("no version dot", "moat-join-1".to_owned(), |e| {
            matches!(e, TokenError::NotAJoinToken)
        }),
        (
            "version 2",
            good.replacen("moat-join-1.", "moat-join-2.", 1),
            |e| matches!(e, TokenError::UnsupportedVersion { version } if version == "2"),
        ),
        ("not base64url", format!("{good}!!"), |e| {
            matches!(e, TokenError::BadEncoding { .. })
        }),
        (
            "not JSON",
            format!("moat-join-1.{}", URL_SAFE_NO_PAD.encode("hello")),
            |e| matches!(e, TokenError::BadFields { .. }),
        ),
        (
            "missing field",
            with_json(&good, |j| {
                j.as_object_mut().expect("object").remove("grant");
            }),
            |e| matches!(e, TokenError::BadFields { reason } if reason.contains("grant")),
        ),
        (
            "unknown field",
            set("admin", serde_json::json!(true)),
            |e| matches!(e, TokenError::BadFields { reason } if reason.contains("admin")),
        ),
        (
            "edge without port",
            set("edge", "edge.example.com".into()),
            |e| matches!(e, TokenError::BadField { field: "edge", .. }),
        ),
        (
            "edge port 0",
            set("edge", "edge.example.com:0".into()),
            |e| matches!(e, TokenError::BadField { field: "edge", .. }),
        ),
        ("short fingerprint", set("ca_sha256", "abcd".into()), |e| {
            matches!(
                e,
                TokenError::BadField {
                    field: "ca_sha256",
                    ..
                }
            )
        }),
        ("bad id", set("id", "not-an-id".into()), |e| {
            matches!(e, TokenError::BadField { field: "id", .. })
        }),
        (
            "short secret",
            set("secret", URL_SAFE_NO_PAD.encode([7u8; 16]).into()),
            |e| {
                matches!(
                    e,
                    TokenError::BadField {
                        field: "secret",
                        ..
                    }
                )
            },
        ),
        ("bad grant", set("grant", serde_json::json!(["*"])), |e| {
            matches!(e, TokenError::BadField { field: "grant", .. })
        }),
        ("expires as text", set("expires", "soon".into()), |e| {
            matches!(e, TokenError::BadFields { .. })
        }),
        (
            "expired",
            set("expires", (NOW - 1).into()),
            |e| matches!(e, TokenError::Expired(expired) if expired.expired_at == NOW - 1 && expired.now == NOW),
        ),
    ];
    let secret = URL_SAFE_NO_PAD.encode(secret_bytes(&good));
    for (name, text, expected) in table {
        let error = JoinToken::parse(&text, NOW).expect_err(name);
        assert!(expected(&error), "{name}: got {error:?}");
        let message = error.to_string();
        assert!(
            message.contains("ask the edge's operator for a new one"),
            "{name}: the fix: {message}"
        );
        assert!(
            !message.contains(&secret),
            "{name}: the secret leaked: {message}"
        );
    }
}

#[test]
fn a_token_is_redeemed_once_and_refusals_say_why() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let edge = edge(dir.path());
    let store = edge.tokens();
    let made = token(&edge);

    let mut tampered = secret_bytes(&made.to_text());
    tampered[0] ^= 1;
    let tampered = TokenSecret::from_bytes(tampered.try_into().expect("32 bytes"));
    let error = store
        .redeem(&made.id, &tampered, NOW)
        .expect_err("tampered");
    assert!(
        matches!(error, RedeemError::WrongSecret { .. }),
        "{error:?}"
    );

    let error = store
        .redeem(&made.id, &made.secret, NOW + 3600)
        .expect_err("expired");
    assert!(
        matches!(&error, RedeemError::Expired(expired) if expired.expired_at == NOW + 3600),
        "{error:?}"
    );

    let redeemed = store
        .redeem(&made.id, &made.secret, NOW)
        .expect("first use");
    assert_eq!(redeemed.grant, made.grant);
    let error = store
        .redeem(&made.id, &made.secret, NOW + 1)
        .expect_err("second use");
    assert!(
        matches!(error, RedeemError::AlreadyUsed { used_at, .. } if used_at == NOW),
        "{error:?}"
    );
    assert!(
        error
            .to_string()
            .contains("make a new join token on the edge"),
        "{error}"
    );

    let other = moat_edge::TokenId::parse("00112233445566ff").expect("an id");
    let error = store
        .redeem(&other, &made.secret, NOW)
        .expect_err("unknown");
    assert!(
        matches!(error, RedeemError::UnknownToken { .. }),
        "{error:?}"
    );
}

#[test]
fn two_threads_redeeming_one_token_one_wins() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let edge = edge(dir.path());
    let made = token(&edge);
    let barrier = Arc::new(Barrier::new(2));
    let racers: Vec<_> = (0..2)
        .map(|_| {
            // Each thread opens the store itself, as two processes would.
            let store = moat_edge::TokenStore::new(dir.path());
            let (id, secret, barrier) = (made.id.clone(), made.secret.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                store.redeem(&id, &secret, NOW)
            })
        })
        .collect();
    let outcomes: Vec<_> = racers
        .into_iter()
        .map(|racer| racer.join().expect("thread"))
        .collect();
    assert_eq!(
        outcomes.iter().filter(|outcome| outcome.is_ok()).count(),
        1,
        "{outcomes:?}"
    );
    assert!(
        outcomes
            .iter()
            .any(|outcome| matches!(outcome, Err(RedeemError::AlreadyUsed { .. }))),
        "{outcomes:?}"
    );
}

#[test]
fn tokens_made_in_parallel_are_all_kept() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let ca = edge(dir.path());
    drop(ca);
    let makers: Vec<_> = (0..4)
        .map(|_| {
            let dir = dir.path().to_path_buf();
            std::thread::spawn(move || token(&crate::support::edge(&dir)).id)
        })
        .collect();
    let ids: Vec<_> = makers
        .into_iter()
        .map(|maker| maker.join().expect("thread"))
        .collect();
    let records = moat_edge::TokenStore::new(dir.path())
        .records()
        .expect("records");
    for id in ids {
        assert!(
            records.iter().any(|record| record.id == id.as_str()),
            "{id} kept"
        );
    }
}

#[test]
fn the_token_file_holds_no_secret_and_is_private() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let edge = edge(dir.path());
    let made = token(&edge);
    let secret = secret_bytes(&made.to_text());
    let path = edge.tokens().path().to_path_buf();
    let stored = std::fs::read(&path).expect("tokens.json");
    let text = String::from_utf8_lossy(&stored);
    for spelling in [
        URL_SAFE_NO_PAD.encode(&secret),
        base64::engine::general_purpose::STANDARD.encode(&secret),
        hex::encode(&secret),
    ] {
        assert!(
            !text.contains(&spelling),
            "the secret is in {}",
            path.display()
        );
    }
    assert!(
        !stored.windows(32).any(|window| window == secret),
        "raw secret stored"
    );
    assert!(
        text.contains(&made.secret.sha256_hex()),
        "its hash is: {text}"
    );
    assert_private(&path);
}
