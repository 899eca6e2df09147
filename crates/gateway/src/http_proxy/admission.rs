//! Whether a request may reach the upstream at all; the one place a later access policy replaces.

use super::pages::Refusal;

/// Lets a request through when the endpoint does not ask for client certificates
/// (`asks_for_certificate` is false: no `mutual_tls_cas`), or when the client presented a verified
/// one. In `request` mode the handshake lets certificate-less clients in so that this answer can
/// be a readable 403 page instead of a TLS alert; under `require-and-verify` the handshake already
/// refused them, and refusing here too keeps such a connection from slipping through.
pub(super) fn admit(
    asks_for_certificate: bool,
    has_client_certificate: bool,
) -> Result<(), Refusal> {
    if !asks_for_certificate || has_client_certificate {
        Ok(())
    } else {
        Err(Refusal::ClientCertificateRequired)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_without_certificate_is_refused_and_with_one_admitted() {
        assert_eq!(admit(true, false), Err(Refusal::ClientCertificateRequired));
        assert_eq!(admit(true, true), Ok(()));
    }

    #[test]
    fn endpoint_without_client_cas_admits_everyone() {
        assert_eq!(admit(false, false), Ok(()));
    }
}
