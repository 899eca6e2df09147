//! The join exchange's two messages, JSON behind a 4-byte length prefix, and how they are framed.
//!
//! ```text
//! agent → edge   {"token":"moat-join-1....","csr_pem":"-----BEGIN CERTIFICATE REQUEST-----..."}
//! edge → agent   {"outcome":"joined","certificate_pem":..,"ca_pem":..,"agent_name":..,"grant":[..]}
//!             or {"outcome":"refused","message":"join token ... was already used ..."}
//! ```
//!
//! A length prefix (tokio-util's `LengthDelimitedCodec`, as the tunnel's control channel uses)
//! lets the receiver refuse an over-size message before buffering it.

use std::fmt;

use bytes::{Bytes, BytesMut};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio_util::codec::{Decoder as _, Encoder as _, LengthDelimitedCodec};

use super::LinkError;

/// The ALPN protocol id of a join on the agent listener (a tunnel is `moat_tunnel::ALPN`).
pub const JOIN_ALPN: &[u8] = b"moat-join/1";
/// The largest join message either side reads: a token and a CSR, or two certificates, are a
/// few KiB; 64 KiB leaves room and bounds what an unauthenticated peer can make the edge buffer.
pub const MAX_JOIN_MESSAGE: usize = 64 * 1024;

/// What a joining agent sends: its token and the CSR of the key it just made.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JoinRequest {
    /// The join token's text (it holds the one-time secret).
    pub token: String,
    /// The agent's CSR, PEM; its CN is the name asked for, or empty for one the edge assigns.
    pub csr_pem: String,
}

impl fmt::Debug for JoinRequest {
    // The token holds a secret: it must never reach a log through a debug print.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JoinRequest")
            .field("token", &"(redacted)")
            .field("csr_pem", &self.csr_pem)
            .finish()
    }
}

/// The edge's one answer to a [`JoinRequest`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case", deny_unknown_fields)]
pub enum JoinAnswer {
    /// The agent joined: its certificate, the CA to trust the edge by, its name and grant.
    Joined {
        /// The agent's client certificate, PEM.
        certificate_pem: String,
        /// The edge's agent CA, PEM.
        ca_pem: String,
        /// The name the certificate carries.
        agent_name: String,
        /// The hostname globs the agent may publish.
        grant: Vec<String>,
    },
    /// The edge refused; the message says why and what to do.
    Refused {
        /// The edge's reason, naming the fix.
        message: String,
    },
}

/// Writes one message: its JSON behind a 4-byte big-endian length.
pub(crate) async fn write_message<T, W>(
    io: &mut W,
    message: &T,
    peer: &str,
) -> Result<(), LinkError>
where
    T: Serialize,
    W: AsyncWrite + Unpin,
{
    let protocol = |problem: String| LinkError::Protocol {
        peer: peer.to_owned(),
        problem,
    };
    let json = serde_json::to_vec(message)
        .map_err(|error| protocol(format!("cannot encode a message: {error}")))?;
    let mut frame = BytesMut::with_capacity(json.len() + 4);
    codec()
        .encode(Bytes::from(json), &mut frame)
        .map_err(|error| protocol(format!("cannot frame a message: {error}")))?;
    let io_error = |source| LinkError::Io {
        peer: peer.to_owned(),
        source,
    };
    io.write_all(&frame).await.map_err(io_error)?;
    io.flush().await.map_err(io_error)
}

/// Reads one message, refusing one longer than [`MAX_JOIN_MESSAGE`] before buffering it, and a
/// connection that closes first.
pub(crate) async fn read_message<T, R>(io: &mut R, peer: &str) -> Result<T, LinkError>
where
    T: DeserializeOwned,
    R: AsyncRead + Unpin,
{
    let protocol = |problem: String| LinkError::Protocol {
        peer: peer.to_owned(),
        problem,
    };
    let mut codec = codec();
    let mut buffer = BytesMut::with_capacity(4096);
    loop {
        match codec.decode(&mut buffer) {
            Ok(Some(frame)) => {
                return serde_json::from_slice(&frame)
                    .map_err(|error| protocol(format!("a malformed message ({error})")));
            }
            Ok(None) => {}
            Err(_) => {
                return Err(protocol(format!(
                    "a message longer than {MAX_JOIN_MESSAGE} bytes"
                )));
            }
        }
        let read = io
            .read_buf(&mut buffer)
            .await
            .map_err(|source| LinkError::Io {
                peer: peer.to_owned(),
                source,
            })?;
        if read == 0 {
            return Err(protocol(
                "the connection closed before a whole message arrived".to_owned(),
            ));
        }
    }
}

fn codec() -> LengthDelimitedCodec {
    LengthDelimitedCodec::builder()
        .length_field_length(4)
        .max_frame_length(MAX_JOIN_MESSAGE)
        .new_codec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_tagged_and_strict() {
        let refused = JoinAnswer::Refused {
            message: "no".to_owned(),
        };
        let json = serde_json::to_string(&refused).expect("encodes");
        assert_eq!(json, r#"{"outcome":"refused","message":"no"}"#);
        let extra = r#"{"outcome":"refused","message":"no","more":1}"#;
        assert!(serde_json::from_str::<JoinAnswer>(extra).is_err());
        let extra = r#"{"token":"t","csr_pem":"c","more":1}"#;
        assert!(serde_json::from_str::<JoinRequest>(extra).is_err());
    }

    #[test]
    fn the_token_is_not_in_the_debug_print() {
        let request = JoinRequest {
            token: "moat-join-1.secret".to_owned(),
            csr_pem: String::new(),
        };
        assert!(!format!("{request:?}").contains("secret"));
    }

    #[tokio::test]
    async fn an_oversize_message_is_refused_from_its_length() {
        let mut wire: &[u8] = &[0, 1, 0, 1, b'{'];
        let error = read_message::<JoinRequest, _>(&mut wire, "test")
            .await
            .expect_err("too long");
        assert!(error.to_string().contains("longer than 65536"), "{error}");
    }

    #[tokio::test]
    async fn a_message_round_trips() {
        let answer = JoinAnswer::Joined {
            certificate_pem: "c".to_owned(),
            ca_pem: "a".to_owned(),
            agent_name: "n".to_owned(),
            grant: vec!["*.a.example.com".to_owned()],
        };
        let mut wire = Vec::new();
        write_message(&mut wire, &answer, "test")
            .await
            .expect("writes");
        let read: JoinAnswer = read_message(&mut wire.as_slice(), "test")
            .await
            .expect("reads");
        assert_eq!(read, answer);
    }
}
