//! Join tokens in the edge's store: made with only a hash of each secret kept, redeemed at most
//! once (the redemption itself is part of the join's transaction, `join.rs`).

use std::time::Duration;

use moat_pki::Fingerprint;
use moat_store::{JoinTokenRow, RedeemRefusal, Store, StoreError};

use crate::grants::HostnameGlob;
use crate::token::{JoinToken, TokenError, TokenExpired, TokenId, TokenSecret, check_edge_address};

/// How long a token works unless `--ttl` says otherwise.
pub const DEFAULT_TOKEN_TTL: Duration = Duration::from_secs(24 * 60 * 60);
/// The fix every refusal of a redemption ends with.
const NEW_TOKEN: &str = "make a new join token on the edge and join with it";

/// What a new token carries besides its id, secret and expiry.
#[derive(Debug, Clone)]
pub struct NewToken {
    /// The edge's agent address, `host:port`, as agents reach it.
    pub edge_address: String,
    /// SHA-256 of the edge's agent CA certificate.
    pub ca_fingerprint: Fingerprint,
    /// What the joining agent may publish.
    pub grant: Vec<HostnameGlob>,
    /// How long the token works.
    pub ttl: Duration,
}

/// Why a token could not be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CreateError {
    /// The request itself is unusable.
    #[error("cannot make a join token: {0}")]
    Invalid(String),
    /// Making its id or secret failed.
    #[error(transparent)]
    Token(#[from] TokenError),
    /// The store could not record it.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Why a token was not redeemed: each refusal is its own variant, and says what to do.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RedeemError {
    /// No token with this id was made for this edge's store.
    #[error("join token {id} is unknown to this edge; {NEW_TOKEN}")]
    UnknownToken {
        /// The id presented.
        id: String,
    },
    /// The id is known but the secret is not the one it was made with.
    #[error(
        "join token {id} was presented with the wrong secret (the token was altered or mistyped); {NEW_TOKEN}"
    )]
    WrongSecret {
        /// The id presented.
        id: String,
    },
    /// The token expired (by the edge's record).
    #[error(transparent)]
    Expired(TokenExpired),
    /// The token was already redeemed; tokens work once.
    #[error(
        "join token {id} was already used at {used_at} (Unix time); a token works once; {NEW_TOKEN}"
    )]
    AlreadyUsed {
        /// The token's id.
        id: String,
        /// When it was redeemed.
        used_at: u64,
    },
    /// The grant the store holds for the token does not read as hostname globs.
    #[error("join token {id}: its recorded grant is unreadable ({problem}); {NEW_TOKEN}")]
    Grant {
        /// The token's id.
        id: String,
        /// What is wrong.
        problem: String,
    },
}

impl RedeemError {
    /// The store's refusal, said with the fix, at `now` (Unix seconds).
    pub fn from_refusal(refusal: RedeemRefusal, now: u64) -> RedeemError {
        match refusal {
            RedeemRefusal::Unknown { id } => RedeemError::UnknownToken { id },
            RedeemRefusal::WrongSecret { id } => RedeemError::WrongSecret { id },
            RedeemRefusal::Used { id, used_at } => RedeemError::AlreadyUsed {
                id,
                used_at: unsigned(used_at),
            },
            RedeemRefusal::Expired { id, expires_at } => RedeemError::Expired(TokenExpired {
                id,
                expired_at: unsigned(expires_at),
                now,
            }),
        }
    }
}

/// Makes a token, records its hash in `store` and returns it (the only time its secret exists
/// in full) with the row recorded.
pub async fn create_token(
    store: &Store,
    request: &NewToken,
    now: u64,
) -> Result<(JoinToken, JoinTokenRow), CreateError> {
    check_edge_address(&request.edge_address).map_err(|problem| {
        CreateError::Invalid(format!(
            "the edge's agent address {:?} {problem}",
            request.edge_address
        ))
    })?;
    if request.ttl.is_zero() {
        return Err(CreateError::Invalid(
            "a token needs a lifetime of at least 1s".to_owned(),
        ));
    }
    let token = JoinToken {
        edge: request.edge_address.clone(),
        ca_fingerprint: request.ca_fingerprint,
        id: TokenId::generate()?,
        secret: TokenSecret::generate()?,
        expires_at: now.saturating_add(request.ttl.as_secs().max(1)),
        grant: request.grant.clone(),
    };
    let row = JoinTokenRow {
        id: token.id.to_string(),
        secret_sha256: token.secret.sha256_hex(),
        created_at: signed(now),
        expires_at: signed(token.expires_at),
        grant_json: grant_json(&token.grant),
        used_at: None,
        used_by: None,
    };
    store.insert_join_token(&row).await?;
    Ok((token, row))
}

/// A grant's hostname globs as the store keeps them: a JSON array of strings.
pub fn grant_json(grant: &[HostnameGlob]) -> String {
    let globs: Vec<&str> = grant.iter().map(HostnameGlob::as_str).collect();
    serde_json::to_string(&globs).unwrap_or_else(|_| "[]".to_owned())
}

/// The hostname globs of a grant the store keeps (a JSON array of strings), each checked again.
pub fn grant_of_json(text: &str) -> Result<Vec<HostnameGlob>, String> {
    let globs: Vec<String> = serde_json::from_str(text)
        .map_err(|error| format!("not a JSON array of strings: {error}"))?;
    globs
        .iter()
        .map(|glob| HostnameGlob::parse(glob).map_err(|error| error.to_string()))
        .collect()
}

fn signed(seconds: u64) -> i64 {
    i64::try_from(seconds).unwrap_or(i64::MAX)
}

fn unsigned(seconds: i64) -> u64 {
    u64::try_from(seconds).unwrap_or(0)
}
