//! Chains a verifier already accepted, so a returning client costs a hash rather than signatures.
//!
//! Verifying a client chain checks the CA's signature on every certificate and the CA's
//! signature on each CRL consulted: two or three ECDSA/RSA verifications per full handshake,
//! a tenth of the CPU a new mTLS connection costs. None of that can change while a verifier
//! lives (its CAs and CRLs are fixed; a reload builds a new verifier, and with it a new, empty
//! memory), except time, so an accepted chain is remembered together with the window in which
//! every certificate of it is valid, and is accepted again only inside that window. The proof
//! that the client holds the key (its CertificateVerify signature) is checked on every handshake
//! by rustls, whatever is remembered here.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use aws_lc_rs::digest::{Context, SHA256};
use rustls_pki_types::CertificateDer;

/// Chains remembered at most; when full, the memory starts over. A gateway's clients number in
/// the thousands at most, and starting over costs only one full verification per client.
const CAPACITY: usize = 16_384;

/// SHA-256 over the presented chain (end entity, then intermediates, each length-prefixed).
pub(crate) type ChainDigest = [u8; 32];

/// When an accepted chain may be accepted again without verification, in Unix seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ValidWindow {
    /// The latest notBefore of the chain's certificates.
    pub not_before: i64,
    /// The earliest notAfter of the chain's certificates (or an earlier limit, such as a CRL's
    /// nextUpdate when stale CRLs are refused).
    pub not_after: i64,
}

impl ValidWindow {
    fn contains(&self, now: i64) -> bool {
        self.not_before <= now && now <= self.not_after
    }
}

/// The accepted chains of one verifier.
#[derive(Debug, Default)]
pub(crate) struct VerifiedChains {
    accepted: Mutex<HashMap<ChainDigest, ValidWindow>>,
}

impl VerifiedChains {
    /// The digest that names a presented chain.
    pub(crate) fn digest(
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
    ) -> ChainDigest {
        let mut context = Context::new(&SHA256);
        for certificate in std::iter::once(end_entity).chain(intermediates) {
            // The length prefix keeps two different splits of the same bytes apart.
            context.update(&(certificate.len() as u64).to_be_bytes());
            context.update(certificate.as_ref());
        }
        let mut digest = [0u8; 32];
        digest.copy_from_slice(context.finish().as_ref());
        digest
    }

    /// True when the chain was accepted and `now` lies inside its window.
    pub(crate) fn holds(&self, digest: &ChainDigest, now: i64) -> bool {
        self.lock()
            .get(digest)
            .is_some_and(|window| window.contains(now))
    }

    /// Remembers an accepted chain.
    pub(crate) fn remember(&self, digest: ChainDigest, window: ValidWindow) {
        let mut accepted = self.lock();
        if accepted.len() >= CAPACITY && !accepted.contains_key(&digest) {
            accepted.clear();
        }
        accepted.insert(digest, window);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ChainDigest, ValidWindow>> {
        // Every update is a single insert or clear, so the map is whole even after a panic.
        self.accepted.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn der(bytes: &[u8]) -> CertificateDer<'static> {
        CertificateDer::from(bytes.to_vec())
    }

    #[test]
    fn a_chain_is_accepted_again_only_inside_its_window() {
        let chains = VerifiedChains::default();
        let digest = VerifiedChains::digest(&der(b"leaf"), &[der(b"intermediate")]);
        assert!(!chains.holds(&digest, 150));
        chains.remember(
            digest,
            ValidWindow {
                not_before: 100,
                not_after: 200,
            },
        );
        assert!(chains.holds(&digest, 100));
        assert!(chains.holds(&digest, 200));
        assert!(!chains.holds(&digest, 99));
        assert!(!chains.holds(&digest, 201));
    }

    #[test]
    fn different_chains_have_different_digests() {
        let leaf = der(b"leafintermediate");
        let split_leaf = der(b"leaf");
        let split_intermediate = der(b"intermediate");
        assert_ne!(
            VerifiedChains::digest(&leaf, &[]),
            VerifiedChains::digest(&split_leaf, std::slice::from_ref(&split_intermediate))
        );
        assert_ne!(
            VerifiedChains::digest(&split_leaf, &[]),
            VerifiedChains::digest(&split_leaf, &[split_intermediate])
        );
    }
}
