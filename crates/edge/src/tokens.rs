//! The edge's record of the join tokens it made (`tokens.json`): only a hash of each secret, redeemed at most once.

use std::path::Path;
use std::time::Duration;

use moat_pki::Fingerprint;
use serde::{Deserialize, Serialize};

use crate::grants::HostnameGlob;
use crate::state_file::{StateError, StateFile};
use crate::token::{JoinToken, TokenError, TokenExpired, TokenId, TokenSecret, check_edge_address};

/// How long a token works unless `--ttl` says otherwise.
pub const DEFAULT_TOKEN_TTL: Duration = Duration::from_secs(24 * 60 * 60);
/// The fix every refusal of a redemption ends with.
const NEW_TOKEN: &str = "make a new join token on the edge and join with it";

/// One token as `tokens.json` stores it: never the secret itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRecord {
    /// The token's id.
    pub id: String,
    /// SHA-256 of its secret, lower-case hex.
    pub secret_sha256: String,
    /// When it was made (Unix seconds).
    pub created_at: u64,
    /// When it stops working (Unix seconds).
    pub expires_at: u64,
    /// What the agent that redeems it may publish.
    pub grant: Vec<HostnameGlob>,
    /// When it was redeemed (Unix seconds); a token is redeemed at most once.
    #[serde(default)]
    pub used_at: Option<u64>,
}

/// `tokens.json` as stored.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct TokenFile {
    version: u32,
    tokens: Vec<TokenRecord>,
}

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
    /// `tokens.json` could not be read or written.
    #[error(transparent)]
    State(#[from] StateError),
}

/// Why a token was not redeemed: each refusal is its own variant, and says what to do.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RedeemError {
    /// No token with this id was made by this edge (or its state directory was replaced).
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
    /// `tokens.json` could not be read or written.
    #[error(transparent)]
    State(#[from] StateError),
}

/// A token that was just redeemed: what the edge recorded for it.
#[derive(Debug, Clone)]
pub struct RedeemedToken {
    /// Its id.
    pub id: TokenId,
    /// What the agent may publish (the edge's record, not the token's copy).
    pub grant: Vec<HostnameGlob>,
}

/// The join tokens of one edge, in `tokens.json` in its state directory (0600, replaced
/// atomically under `tokens.lock`, so parallel `moat edge token` runs and a redeeming edge never
/// lose each other's changes).
#[derive(Debug, Clone)]
pub struct TokenStore {
    file: StateFile,
}

impl TokenStore {
    /// The store in `state_dir`.
    pub fn new(state_dir: &Path) -> TokenStore {
        TokenStore {
            file: StateFile::new(state_dir, "tokens"),
        }
    }

    /// The file it keeps.
    pub fn path(&self) -> &Path {
        self.file.path()
    }

    /// Every token made, as stored.
    pub fn records(&self) -> Result<Vec<TokenRecord>, StateError> {
        Ok(self.file.read::<TokenFile>()?.tokens)
    }

    /// Makes a token, records its hash and returns it (the only time its secret exists in full).
    pub fn create(&self, request: &NewToken, now: u64) -> Result<JoinToken, CreateError> {
        check_edge_address(&request.edge_address).map_err(|problem| {
            CreateError::Invalid(format!(
                "the edge's agent address {:?} {problem}",
                request.edge_address
            ))
        })?;
        if request.ttl.is_zero() {
            return Err(CreateError::Invalid(
                "a token needs a lifetime; give --ttl of at least 1s".to_owned(),
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
        let record = TokenRecord {
            id: token.id.to_string(),
            secret_sha256: token.secret.sha256_hex(),
            created_at: now,
            expires_at: token.expires_at,
            grant: token.grant.clone(),
            used_at: None,
        };
        self.file.update(|file: &mut TokenFile| {
            file.version = 1;
            file.tokens.push(record);
            Ok::<_, CreateError>(())
        })?;
        Ok(token)
    }

    /// Redeems the token `id` with `secret` at `now`: succeeds once.
    pub fn redeem(
        &self,
        id: &TokenId,
        secret: &TokenSecret,
        now: u64,
    ) -> Result<RedeemedToken, RedeemError> {
        self.redeem_with(id, secret, now, |redeemed| {
            Ok::<_, RedeemError>(redeemed.clone())
        })
    }

    /// Checks the token, runs `then` (which signs and records the agent) and marks the token
    /// used only when `then` succeeds, all under the lock: a second redemption waits and then
    /// finds it used, and a failed join leaves the token unused.
    pub fn redeem_with<T, E>(
        &self,
        id: &TokenId,
        secret: &TokenSecret,
        now: u64,
        then: impl FnOnce(&RedeemedToken) -> Result<T, E>,
    ) -> Result<T, E>
    where
        E: From<RedeemError> + From<StateError>,
    {
        self.file.update(|file: &mut TokenFile| {
            let refuse = |error: RedeemError| Err(E::from(error));
            let Some(record) = file
                .tokens
                .iter_mut()
                .find(|record| record.id == id.as_str())
            else {
                return refuse(RedeemError::UnknownToken { id: id.to_string() });
            };
            if !secret.matches(&record.secret_sha256) {
                return refuse(RedeemError::WrongSecret { id: id.to_string() });
            }
            if let Some(used_at) = record.used_at {
                return refuse(RedeemError::AlreadyUsed {
                    id: id.to_string(),
                    used_at,
                });
            }
            if record.expires_at <= now {
                return refuse(RedeemError::Expired(TokenExpired {
                    id: id.to_string(),
                    expired_at: record.expires_at,
                    now,
                }));
            }
            let redeemed = RedeemedToken {
                id: id.clone(),
                grant: record.grant.clone(),
            };
            let outcome = then(&redeemed)?;
            record.used_at = Some(now);
            Ok(outcome)
        })
    }
}
