//! Join tokens: the text format, strict parsing, and redeeming once.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use moat_edge::{JoinError, JoinToken, RedeemError, TokenError, TokenSecret};

use crate::support::{NOW, edge, join_as, store, token};

#[tokio::test]
async fn a_token_reads_back_as_it_was_made_and_pins_the_agent_ca() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let edge = edge(dir.path()).await;
    let made = token(&edge).await;
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
    let other = crate::support::edge(other_dir.path()).await;
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

#[tokio::test]
async fn each_malformed_token_is_its_own_error() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let good = token(&edge(dir.path()).await).await.to_text();
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

#[tokio::test]
async fn a_token_is_redeemed_once_and_refusals_say_why() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let edge = edge(dir.path()).await;
    let made = token(&edge).await;

    let mut tampered_secret = secret_bytes(&made.to_text());
    tampered_secret[0] ^= 1;
    let tampered = JoinToken {
        secret: TokenSecret::from_bytes(tampered_secret.try_into().expect("32 bytes")),
        ..made.clone()
    };
    let error = join_as(&edge, &tampered.to_text(), "laptop", NOW)
        .await
        .expect_err("tampered");
    assert!(
        matches!(error, JoinError::Redeem(RedeemError::WrongSecret { .. })),
        "{error:?}"
    );

    // Past the token's own expiry the text is refused before the store is asked; the store's
    // record is checked too (a token whose text was altered to last longer).
    let stretched = JoinToken {
        expires_at: NOW + 7200,
        ..made.clone()
    };
    let error = join_as(&edge, &stretched.to_text(), "laptop", NOW + 3600)
        .await
        .expect_err("expired");
    assert!(
        matches!(&error, JoinError::Redeem(RedeemError::Expired(expired)) if expired.expired_at == NOW + 3600),
        "{error:?}"
    );

    join_as(&edge, &made.to_text(), "laptop", NOW)
        .await
        .expect("first use");
    let error = join_as(&edge, &made.to_text(), "desktop", NOW + 1)
        .await
        .expect_err("second use");
    assert!(
        matches!(error, JoinError::Redeem(RedeemError::AlreadyUsed { used_at, .. }) if used_at == NOW),
        "{error:?}"
    );
    assert!(
        error
            .to_string()
            .contains("make a new join token on the edge"),
        "{error}"
    );

    let unknown = JoinToken {
        id: moat_edge::TokenId::parse("00112233445566ff").expect("an id"),
        ..made.clone()
    };
    let error = join_as(&edge, &unknown.to_text(), "tablet", NOW)
        .await
        .expect_err("unknown");
    assert!(
        matches!(error, JoinError::Redeem(RedeemError::UnknownToken { .. })),
        "{error:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_edges_joining_with_one_token_at_once_one_wins() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let made = token(&edge(dir.path()).await).await;
    // Each racer opens the store itself, as two edges would.
    let racers: Vec<_> = ["one", "two"]
        .into_iter()
        .map(|name| {
            let (dir, text) = (dir.path().to_path_buf(), made.to_text());
            tokio::spawn(async move {
                let edge = crate::support::edge(&dir).await;
                join_as(&edge, &text, name, NOW).await
            })
        })
        .collect();
    let mut outcomes = Vec::new();
    for racer in racers {
        outcomes.push(racer.await.expect("task"));
    }
    assert_eq!(
        outcomes.iter().filter(|outcome| outcome.is_ok()).count(),
        1,
        "{outcomes:?}"
    );
    assert!(
        outcomes.iter().any(|outcome| matches!(
            outcome,
            Err(JoinError::Redeem(RedeemError::AlreadyUsed { .. }))
        )),
        "{outcomes:?}"
    );
    // The loser left nothing behind: one agent joined, with one grant.
    let state = store(dir.path())
        .await
        .control_state()
        .await
        .expect("the store");
    assert_eq!(state.grants.len(), 1, "{:?}", state.grants);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_made_in_parallel_are_all_kept() {
    let dir = tempfile::tempdir().expect("temporary directory");
    drop(edge(dir.path()).await);
    let makers: Vec<_> = (0..4)
        .map(|_| {
            let dir = dir.path().to_path_buf();
            tokio::spawn(async move { token(&crate::support::edge(&dir).await).await.id })
        })
        .collect();
    let mut ids = Vec::new();
    for maker in makers {
        ids.push(maker.await.expect("task"));
    }
    let records = store(dir.path())
        .await
        .join_tokens()
        .await
        .expect("records");
    for id in ids {
        assert!(
            records.iter().any(|record| record.id == id.as_str()),
            "{id} kept"
        );
    }
}

#[tokio::test]
async fn the_store_holds_no_secret() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let edge = edge(dir.path()).await;
    let made = token(&edge).await;
    let secret = secret_bytes(&made.to_text());
    let rows = edge.store().join_tokens().await.expect("rows");
    let row = rows
        .iter()
        .find(|row| row.id == made.id.as_str())
        .expect("recorded");
    assert_eq!(row.secret_sha256, made.secret.sha256_hex());
    drop(edge);
    let mut stored = Vec::new();
    for file in ["store.db", "store.db-wal"] {
        stored.extend(std::fs::read(dir.path().join(file)).unwrap_or_default());
    }
    let text = String::from_utf8_lossy(&stored);
    for spelling in [
        URL_SAFE_NO_PAD.encode(&secret),
        base64::engine::general_purpose::STANDARD.encode(&secret),
        hex::encode(&secret),
    ] {
        assert!(!text.contains(&spelling), "the secret is in the store");
    }
    assert!(
        !stored.windows(32).any(|window| window == secret),
        "raw secret stored"
    );
    assert!(text.contains(&made.secret.sha256_hex()), "its hash is");
}
