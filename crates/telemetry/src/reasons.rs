//! The stable names audit events and metrics carry for why something ended: a TLS handshake
//! that did not complete, an agent's session with the edge, an endpoint the edge served.

use moat_trust::RefusalReason;
use rustls::PeerIncompatible;

/// The reason of a refused handshake: the client certificate's [`RefusalReason`], or a cause
/// outside the certificate. The names are stable so that alerts and queries can key on them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum HandshakeRefusal {
    /// The client certificate was refused (`no_certificate`, `unknown_ca`, `expired`, ...).
    Certificate(RefusalReason),
    /// An access policy refused the certificate (reserved for the policy engine).
    PolicyDenied,
    /// The client and the endpoint share no TLS version (e.g. a TLS 1.2-only client against a
    /// `tls_min_version = "1.3"` endpoint).
    ProtocolVersion,
    /// The client and the endpoint share no cipher suite, key exchange group or signature scheme.
    NoSharedParameters,
    /// The client aborted the handshake with an alert, typically because it does not trust
    /// moat's server certificate.
    ClientAlert,
    /// No endpoint on the address serves the SNI the client sent (or it sent none and no
    /// endpoint there is the default).
    UnrecognizedName,
    /// The client did not finish the handshake within `timeouts.request_header`.
    HandshakeTimeout,
    /// The client closed or reset the connection before the handshake finished.
    ConnectionClosed,
    /// `max_connections` client connections were open; this one was closed on arrival.
    ConnectionLimit,
    /// Any other TLS failure (a malformed or unexpected handshake message).
    Other,
}

impl HandshakeRefusal {
    /// The stable snake_case name, e.g. `unknown_ca` or `protocol_version`.
    pub fn as_str(&self) -> &'static str {
        match self {
            HandshakeRefusal::Certificate(reason) => reason.as_str(),
            HandshakeRefusal::PolicyDenied => "policy_denied",
            HandshakeRefusal::ProtocolVersion => "protocol_version",
            HandshakeRefusal::NoSharedParameters => "no_shared_parameters",
            HandshakeRefusal::ClientAlert => "client_alert",
            HandshakeRefusal::UnrecognizedName => "unrecognized_name",
            HandshakeRefusal::HandshakeTimeout => "handshake_timeout",
            HandshakeRefusal::ConnectionClosed => "connection_closed",
            HandshakeRefusal::ConnectionLimit => "connection_limit",
            HandshakeRefusal::Other => "other",
        }
    }

    /// Classifies the error a failed server-side handshake returned when the certificate
    /// verifier's own verdict does not say (it tells `bad_signature` from `malformed`, which the
    /// error alone cannot).
    pub fn from_handshake_error(error: &std::io::Error) -> HandshakeRefusal {
        let tls_error = error
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>());
        let Some(tls_error) = tls_error else {
            return HandshakeRefusal::ConnectionClosed;
        };
        // The access policy of a tls endpoint refuses with this error (sent as access_denied)
        // after the trust checks passed.
        if let rustls::Error::InvalidCertificate(
            rustls::CertificateError::ApplicationVerificationFailure,
        ) = tls_error
        {
            return HandshakeRefusal::PolicyDenied;
        }
        if let Some(reason) = RefusalReason::from_tls_error(tls_error) {
            return HandshakeRefusal::Certificate(reason);
        }
        match tls_error {
            rustls::Error::PeerIncompatible(
                PeerIncompatible::Tls12NotOffered
                | PeerIncompatible::Tls12NotOfferedOrEnabled
                | PeerIncompatible::SupportedVersionsExtensionRequired
                | PeerIncompatible::Tls13RequiredForQuic,
            ) => HandshakeRefusal::ProtocolVersion,
            rustls::Error::PeerIncompatible(_) => HandshakeRefusal::NoSharedParameters,
            rustls::Error::AlertReceived(_) => HandshakeRefusal::ClientAlert,
            _ => HandshakeRefusal::Other,
        }
    }
}

impl std::fmt::Display for HandshakeRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why an agent's session with the edge ended, as the stable `reason` of `agent_disconnected`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum AgentDisconnect {
    /// The agent (or the connection under it) closed the session cleanly.
    Closed,
    /// The agent answered no heartbeat within the edge's tolerance: dead, or its path is.
    HeartbeatTimeout,
    /// The session failed otherwise (a transport or protocol error).
    Error,
    /// An operator ended it (`DELETE /tunnel_sessions/{id}`, `moat edge disconnect`).
    Operator,
}

impl AgentDisconnect {
    /// The stable snake_case name: `closed`, `heartbeat_timeout`, `error` or `operator`.
    pub fn as_str(&self) -> &'static str {
        match self {
            AgentDisconnect::Closed => "closed",
            AgentDisconnect::HeartbeatTimeout => "heartbeat_timeout",
            AgentDisconnect::Error => "error",
            AgentDisconnect::Operator => "operator",
        }
    }
}

impl std::fmt::Display for AgentDisconnect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why the edge stopped serving an endpoint an agent published, as the stable `reason` of
/// `endpoint_removed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum EndpointRemoval {
    /// The agent withdrew it while staying connected.
    Withdrawn,
    /// The agent's session ended.
    AgentDisconnected,
    /// The gateway could not load it (a bad certificate, CA or rule): the registration was
    /// rolled back before the endpoint was ever served.
    RefusedOnLoad,
    /// The control plane stopped allowing it: its grant was removed, the hostname was reserved
    /// for another agent or defined by the edge as another kind of endpoint.
    Revoked,
}

impl EndpointRemoval {
    /// The stable snake_case name: `withdrawn`, `agent_disconnected`, `refused_on_load` or
    /// `revoked`.
    pub fn as_str(&self) -> &'static str {
        match self {
            EndpointRemoval::Withdrawn => "withdrawn",
            EndpointRemoval::AgentDisconnected => "agent_disconnected",
            EndpointRemoval::RefusedOnLoad => "refused_on_load",
            EndpointRemoval::Revoked => "revoked",
        }
    }
}

impl std::fmt::Display for EndpointRemoval {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn io(error: rustls::Error) -> std::io::Error {
        std::io::Error::new(std::io::ErrorKind::InvalidData, error)
    }

    #[test]
    fn version_mismatch_reads_as_protocol_version() {
        let error = io(PeerIncompatible::Tls12NotOfferedOrEnabled.into());
        assert_eq!(
            HandshakeRefusal::from_handshake_error(&error),
            HandshakeRefusal::ProtocolVersion
        );
    }

    #[test]
    fn without_the_verifiers_verdict_bad_encoding_reads_as_malformed() {
        let error = io(rustls::Error::InvalidCertificate(
            rustls::CertificateError::BadEncoding,
        ));
        assert_eq!(
            HandshakeRefusal::from_handshake_error(&error).as_str(),
            "malformed"
        );
    }

    #[test]
    fn missing_certificate_and_plain_io_errors_have_their_reasons() {
        let error = io(rustls::Error::NoCertificatesPresented);
        assert_eq!(
            HandshakeRefusal::from_handshake_error(&error).as_str(),
            "no_certificate"
        );
        let reset = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset");
        assert_eq!(
            HandshakeRefusal::from_handshake_error(&reset),
            HandshakeRefusal::ConnectionClosed
        );
    }
}
