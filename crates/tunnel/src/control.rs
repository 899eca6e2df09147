//! The control channel: serde JSON messages between agent and edge, length-delimited, on the session's first stream.
//!
//! Each message is a 4-byte big-endian length then that many bytes of JSON (tokio-util's
//! `LengthDelimitedCodec`). Length prefixes rather than newlines: the receiver learns a
//! message's size before reading it and refuses an over-size one without buffering it, and
//! no escaping rule has to keep PEM blobs or rules free of the delimiter.

use std::fmt;
use std::io;
use std::marker::PhantomData;

use bytes::{Bytes, BytesMut};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::codec::{Decoder, Encoder, LengthDelimitedCodec};

use crate::stream::{TunnelReader, TunnelStream, TunnelWriter};

/// The wire protocol's version, exchanged in [`Hello`]; the ALPN id carries it too.
pub const PROTOCOL_VERSION: u32 = 1;

/// The length prefix, bytes.
const PREFIX: usize = 4;

/// How much more room each read of the control stream asks for.
const READ_CHUNK: usize = 8 * 1024;

/// Messages the agent sends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum AgentMessage {
    /// The first message: the agent's protocol version (the session does this exchange).
    Hello(Hello),
    /// Publish these endpoints; the edge answers each with `Registered` or `Refused`.
    Register {
        /// The endpoints to publish.
        endpoints: Vec<EndpointSpec>,
    },
    /// Stop publishing these hostnames; their open streams carry on until they end.
    Remove {
        /// The hostnames to withdraw.
        hostnames: Vec<String>,
    },
}

/// Messages the edge sends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum EdgeMessage {
    /// The first message: the edge's protocol version (the session does this exchange).
    Hello(Hello),
    /// The endpoint is published: public clients of `hostname` now arrive as streams.
    Registered {
        /// The published hostname.
        hostname: String,
        /// Where the public reaches it, e.g. `https://app.example.com`.
        url: String,
    },
    /// The endpoint was not published.
    Refused {
        /// The hostname asked for.
        hostname: String,
        /// Why, worded for the agent's operator, e.g. `app.example.com is taken by another agent`.
        reason: String,
    },
    /// A published endpoint was withdrawn by the edge (its grant was removed, the hostname
    /// reserved for another agent...): its clients no longer arrive.
    Withdrawn {
        /// The hostname.
        hostname: String,
        /// Why, worded for the agent's operator.
        reason: String,
    },
}

/// Each side's first message on the control channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// The wire protocol's version, [`PROTOCOL_VERSION`].
    pub version: u32,
    /// The program and its version, for logs, e.g. `moat-tunnel 0.1.0`.
    pub software: String,
}

impl Hello {
    /// This build's hello.
    pub fn ours() -> Hello {
        Hello {
            version: PROTOCOL_VERSION,
            software: concat!("moat-tunnel ", env!("CARGO_PKG_VERSION")).to_owned(),
        }
    }
}

/// Which protocol an endpoint serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EndpointKind {
    /// HTTP: the terminating side runs the reverse proxy.
    Http,
    /// TLS: bytes are forwarded after the handshake (or untouched, when the agent terminates).
    Tls,
}

/// Where the public client's TLS ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TerminateAt {
    /// The edge terminates TLS and enforces mutual TLS; streams carry plaintext.
    Edge,
    /// The agent terminates TLS; the edge only reads the SNI and relays encrypted bytes.
    Agent,
}

/// One endpoint an agent asks the edge to publish, as generic as the edge crate needs: the
/// edge interprets the PEM blobs and rules, the tunnel only carries them.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct EndpointSpec {
    /// The public hostname, e.g. `app.example.com`.
    pub hostname: String,
    /// HTTP or TLS.
    pub kind: EndpointKind,
    /// Where TLS ends.
    pub terminate_at: TerminateAt,
    /// Whether several agents may serve the hostname together, streams spread among them.
    #[serde(default)]
    pub pool: bool,
    /// Whether a client without a certificate may finish the handshake at the edge, for the
    /// access rules to judge its requests (moat's `request` client authentication); by default
    /// the handshake requires one.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub client_certificate_optional: bool,
    /// The CAs whose client certificates are accepted (PEM bundle), for mutual TLS at the edge.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mutual_tls_cas_pem: Option<String>,
    /// The server certificate chain (PEM) the edge presents, when not its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate_pem: Option<String>,
    /// The private key (PEM) of `certificate_pem`. Secret: `Debug` prints it redacted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_key_pem: Option<String>,
    /// CRLs (PEM) for the CAs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crls_pem: Option<String>,
    /// Access rules, in the form the edge crate defines.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rules: Option<serde_json::Value>,
    /// The upstream as the agent's configuration names it (`http://127.0.0.1:8080`): the
    /// authority an edge-terminating proxy writes in requests, so the service sees the same
    /// `Host` as behind a local gateway. Only the agent dials it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream: Option<String>,
    /// The CA bundle (PEM) that verifies an `https://` upstream, for an edge whose proxy
    /// speaks TLS to it through the stream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream_ca_pem: Option<String>,
    /// The PROXY protocol version (1 or 2) whose header an edge-terminating edge writes at the
    /// start of each stream of a tls endpoint, naming the client it accepted; the agent passes
    /// the stream's bytes to the upstream as they come.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream_proxy_protocol: Option<u8>,
    /// The HTTP version (`http1`, `http2`, absent: `auto`) an edge-terminating edge's proxy speaks
    /// to the upstream through the stream, e.g. `http2` for a gRPC service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream_protocol: Option<String>,
}

impl fmt::Debug for EndpointSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EndpointSpec")
            .field("hostname", &self.hostname)
            .field("kind", &self.kind)
            .field("terminate_at", &self.terminate_at)
            .field("pool", &self.pool)
            .field(
                "client_certificate_optional",
                &self.client_certificate_optional,
            )
            .field("mutual_tls_cas_pem", &self.mutual_tls_cas_pem)
            .field("certificate_pem", &self.certificate_pem)
            .field(
                "private_key_pem",
                &self.private_key_pem.as_ref().map(|_| "<redacted>"),
            )
            .field("crls_pem", &self.crls_pem)
            .field("rules", &self.rules)
            .field("upstream", &self.upstream)
            .field("upstream_ca_pem", &self.upstream_ca_pem)
            .field("upstream_proxy_protocol", &self.upstream_proxy_protocol)
            .field("upstream_protocol", &self.upstream_protocol)
            .finish()
    }
}

/// Why a control message could not be sent or received.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// The message is larger than the limit (`SessionSettings::max_control_message`); an
    /// over-size incoming message is refused from its length prefix, before it is read.
    #[error("control message of {size} bytes exceeds the limit of {limit} bytes")]
    TooLarge {
        /// The message's size, bytes of JSON.
        size: u64,
        /// The limit, bytes.
        limit: usize,
    },
    /// The JSON is not a message of this protocol.
    #[error("control message is not valid: {0}")]
    Json(#[from] serde_json::Error),
    /// The control stream ended inside a message.
    #[error("control stream ended inside a message, {buffered} bytes of it received")]
    Truncated {
        /// The message's bytes received: of its body once the 4-byte prefix is complete,
        /// else of the prefix.
        buffered: usize,
    },
    /// The control stream failed (reset, or the session ended).
    #[error("control stream: {0}")]
    Io(#[from] io::Error),
}

/// The control channel of one side: sends `Out`, receives `In`.
#[derive(Debug)]
pub struct ControlChannel<Out, In> {
    sender: ControlSender<Out>,
    receiver: ControlReceiver<In>,
}

/// The edge's control channel.
pub type EdgeControl = ControlChannel<EdgeMessage, AgentMessage>;

/// The agent's control channel.
pub type AgentControl = ControlChannel<AgentMessage, EdgeMessage>;

/// The sending half of a [`ControlChannel`].
#[derive(Debug)]
pub struct ControlSender<Out> {
    writer: TunnelWriter,
    codec: LengthDelimitedCodec,
    limit: usize,
    _out: PhantomData<fn(Out)>,
}

/// The receiving half of a [`ControlChannel`].
#[derive(Debug)]
pub struct ControlReceiver<In> {
    reader: TunnelReader,
    codec: LengthDelimitedCodec,
    buffer: BytesMut,
    limit: usize,
    _in: PhantomData<fn() -> In>,
}

impl<Out: Serialize, In: DeserializeOwned> ControlChannel<Out, In> {
    /// Control messages over `stream`, each at most `limit` bytes of JSON either way.
    pub fn new(stream: TunnelStream, limit: usize) -> ControlChannel<Out, In> {
        let codec = || {
            LengthDelimitedCodec::builder()
                .length_field_type::<u32>()
                .max_frame_length(limit)
                .new_codec()
        };
        let (reader, writer) = stream.into_split();
        ControlChannel {
            sender: ControlSender {
                writer,
                codec: codec(),
                limit,
                _out: PhantomData,
            },
            receiver: ControlReceiver {
                reader,
                codec: codec(),
                buffer: BytesMut::new(),
                limit,
                _in: PhantomData,
            },
        }
    }

    /// Sends one message; see [`ControlSender::send`].
    pub async fn send(&mut self, message: &Out) -> Result<(), ControlError> {
        self.sender.send(message).await
    }

    /// Receives one message; see [`ControlReceiver::recv`].
    pub async fn recv(&mut self) -> Result<Option<In>, ControlError> {
        self.receiver.recv().await
    }

    /// The two halves, to send and receive from different tasks.
    pub fn into_split(self) -> (ControlSender<Out>, ControlReceiver<In>) {
        (self.sender, self.receiver)
    }
}

impl<Out: Serialize> ControlSender<Out> {
    /// Sends one message, refusing one over the limit with [`ControlError::TooLarge`]
    /// (nothing is sent then). Not cancel-safe: a cancelled send may leave half a message.
    pub async fn send(&mut self, message: &Out) -> Result<(), ControlError> {
        let json = serde_json::to_vec(message)?;
        if json.len() > self.limit {
            return Err(ControlError::TooLarge {
                size: json.len() as u64,
                limit: self.limit,
            });
        }
        let mut frame = BytesMut::with_capacity(PREFIX + json.len());
        self.codec.encode(Bytes::from(json), &mut frame)?;
        self.writer.write_all(&frame).await?;
        Ok(())
    }

    /// Ends the channel in this direction; the peer's `recv` then returns `None`.
    pub async fn close(&mut self) -> Result<(), ControlError> {
        self.writer.shutdown().await?;
        Ok(())
    }
}

impl<In: DeserializeOwned> ControlReceiver<In> {
    /// Receives one message; `None` when the peer closed the channel between messages.
    /// Cancel-safe: a partial message stays buffered for the next call.
    pub async fn recv(&mut self) -> Result<Option<In>, ControlError> {
        loop {
            match self.codec.decode(&mut self.buffer) {
                Ok(Some(frame)) => return Ok(Some(serde_json::from_slice(&frame)?)),
                Ok(None) => {}
                Err(error) => return Err(self.oversize().unwrap_or(ControlError::Io(error))),
            }
            self.buffer.reserve(READ_CHUNK);
            if self.reader.read_buf(&mut self.buffer).await? == 0 {
                return match self.buffer.len() {
                    0 => Ok(None),
                    buffered => Err(ControlError::Truncated { buffered }),
                };
            }
        }
    }

    /// The codec refused the frame: the size its prefix (still buffered) announced.
    fn oversize(&self) -> Option<ControlError> {
        let prefix: [u8; PREFIX] = self.buffer.get(..PREFIX)?.try_into().ok()?;
        let size = u64::from(u32::from_be_bytes(prefix));
        (size > self.limit as u64).then_some(ControlError::TooLarge {
            size,
            limit: self.limit,
        })
    }
}
