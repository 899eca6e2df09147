//! The agent's side of a join: dial the edge the token names, trust it only by the pinned CA, send a CSR, keep what comes back.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use moat_pki::KeyType;
use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject as _;

use super::address::EdgeAddress;
use super::connect::{check_alpn, client_builder, connect_tls};
use super::credentials::{AgentCredentials, AgentInfo};
use super::join_wire::{JOIN_ALPN, JoinAnswer, JoinRequest, read_message, write_message};
use super::pin::{PinnedCaVerifier, pin_refusal};
use super::{LinkError, provider};
use crate::agent_ca::AgentName;
use crate::token::JoinToken;

/// How long a join waits to connect and finish the TLS handshake.
pub const JOIN_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a join waits for the edge's answer: the edge's store may wait up to 10 s for a
/// connection and SQLite's writer lock up to 5 s, then the edge signs in milliseconds.
pub const JOIN_ANSWER_TIMEOUT: Duration = Duration::from_secs(60);

/// Joins the edge a token names: checks the token (an expired one fails here, before any
/// connection), makes an ECDSA P-256 key and a CSR (CN = `agent_name`, or empty for a name the
/// edge assigns), dials the token's edge with ALPN `moat-join/1` trusting only the agent CA the
/// token pins (no trust on first use: an edge whose chain lacks it is
/// [`LinkError::NotTheTokensEdge`], and the token is not sent, so it stays unspent), sends the
/// token and CSR, and on `Joined` writes the credentials into `state_dir` and returns them.
/// The edge's refusal is [`LinkError::Refused`] with its message.
pub async fn join(
    token_text: &str,
    state_dir: &Path,
    agent_name: Option<&str>,
) -> Result<AgentCredentials, LinkError> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs());
    let token = JoinToken::parse(token_text, now)?;
    let name = agent_name.map(AgentName::parse).transpose()?;
    let address = EdgeAddress::parse(&token.edge)?;
    let peer = address.as_str();

    let key = moat_pki::keys::generate(KeyType::EcdsaP256)?;
    let csr_pem = certificate_request(&key, name.as_ref())?;

    let verifier = Arc::new(PinnedCaVerifier::new(token.ca_fingerprint, provider()));
    let mut config = client_builder("a join")?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    config.alpn_protocols = vec![JOIN_ALPN.to_vec()];
    let mut stream = connect_tls(&address, Arc::new(config), JOIN_CONNECT_TIMEOUT)
        .await
        .map_err(|error| not_the_tokens_edge(error, peer))?;
    check_alpn(&stream, JOIN_ALPN, peer)?;

    let request = JoinRequest {
        token: token_text.trim().to_owned(),
        csr_pem,
    };
    write_message(&mut stream, &request, peer).await?;
    let answer: JoinAnswer =
        match tokio::time::timeout(JOIN_ANSWER_TIMEOUT, read_message(&mut stream, peer)).await {
            Ok(answer) => answer?,
            Err(_) => {
                return Err(LinkError::Timeout {
                    step: "waiting for the join answer",
                    peer: peer.to_owned(),
                    after: JOIN_ANSWER_TIMEOUT,
                });
            }
        };
    let (certificate_pem, ca_pem, agent_name, grant) = match answer {
        JoinAnswer::Refused { message } => {
            return Err(LinkError::Refused {
                address: peer.to_owned(),
                message,
            });
        }
        JoinAnswer::Joined {
            certificate_pem,
            ca_pem,
            agent_name,
            grant,
        } => (certificate_pem, ca_pem, agent_name, grant),
    };
    // The CA to trust the edge by from now on must be the one the token pinned, not merely
    // one the pinned edge sent.
    let ca_der = CertificateDer::pem_slice_iter(ca_pem.as_bytes())
        .next()
        .and_then(Result::ok)
        .ok_or_else(|| LinkError::Protocol {
            peer: peer.to_owned(),
            problem: "the answer's CA is not a PEM certificate".to_owned(),
        })?;
    if token.check_pin(ca_der.as_ref()).is_err() {
        return Err(LinkError::NotTheTokensEdge {
            address: peer.to_owned(),
            pinned: token.ca_fingerprint.to_string(),
            presented: moat_pki::Fingerprint::of_der(ca_der.as_ref()).to_string(),
        });
    }
    let info = AgentInfo {
        edge: token.edge.clone(),
        agent_name,
        grant,
    };
    let credentials =
        AgentCredentials::from_pem(info, key.serialize_pem(), certificate_pem, ca_pem)?;
    credentials.save(state_dir)?;
    Ok(credentials)
}

/// A CSR for `key` with CN = `name`, or no subject at all so that the edge assigns a name.
fn certificate_request(key: &KeyPair, name: Option<&AgentName>) -> Result<String, LinkError> {
    let mut params = CertificateParams::default();
    // rcgen's default subject holds a CN of its own; start from none.
    params.distinguished_name = DistinguishedName::new();
    if let Some(name) = name {
        params
            .distinguished_name
            .push(DnType::CommonName, name.as_str());
    }
    let build = |error: rcgen::Error| moat_pki::PkiError::Build {
        what: "certificate signing request",
        reason: error.to_string(),
    };
    let request = params.serialize_request(key).map_err(build)?;
    Ok(request.pem().map_err(build)?)
}

/// A handshake the pin refused becomes [`LinkError::NotTheTokensEdge`]; other errors pass.
fn not_the_tokens_edge(error: LinkError, address: &str) -> LinkError {
    let LinkError::Handshake { source, .. } = &error else {
        return error;
    };
    match pin_refusal(source) {
        Some(refused) => LinkError::NotTheTokensEdge {
            address: address.to_owned(),
            pinned: refused.pinned,
            presented: refused.presented.join(", "),
        },
        None => error,
    }
}
