//! `ClientIdentity` reads what openssl reads from the same certificate: names, serial, fingerprint.

mod support;

use std::net::IpAddr;

use moat_trust::{ClientIdentity, SubjectAltName, TrustError};
use support::*;

#[test]
fn identity_fields_match_openssl() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    openssl_root(d, "ca", "/C=US/O=Access/CN=Identity CA", "30");
    let subject = "/C=US/O=Access/OU=Access Admins/OU=Ops/CN=James Royal, Jr.";
    openssl_key_and_request_for(d, "c", subject);
    write(
        d,
        "c.ext",
        "extendedKeyUsage=clientAuth\nsubjectAltName=DNS:james.example.com,IP:10.1.2.3,IP:::1,URI:spiffe://example.org/james,email:james@example.com\n",
    );
    let extensions = ["-extfile", "c.ext"];
    openssl_x509_sign(d, "c.csr", "ca", "c.crt", "30", "0x00ab12cd", &extensions);
    let leaf = read_cert(&d.join("c.crt"));
    let ca = read_cert(&d.join("ca.crt"));
    let identity = ClientIdentity::from_chain(&[leaf.clone(), ca.clone()]).unwrap();

    let field = |args: &[&str]| -> String {
        let mut all = vec!["x509", "-in", "c.crt", "-noout"];
        all.extend_from_slice(args);
        let out = openssl(d, &all);
        out.trim()
            .split_once('=')
            .map(|(_, v)| v.trim().to_owned())
            .unwrap()
    };
    assert_eq!(
        identity.subject,
        field(&["-subject", "-nameopt", "RFC2253"])
    );
    assert_eq!(
        identity.subject,
        "CN=James Royal\\, Jr.,OU=Ops,OU=Access Admins,O=Access,C=US"
    );
    assert_eq!(identity.issuer, field(&["-issuer", "-nameopt", "RFC2253"]));
    assert_eq!(identity.common_name.as_deref(), Some("James Royal, Jr."));
    assert_eq!(identity.organizations, ["Access"]);
    assert_eq!(identity.organizational_units, ["Access Admins", "Ops"]);
    assert_eq!(identity.serial_hex, "ab12cd");
    assert_eq!(identity.serial_hex, field(&["-serial"]).to_lowercase());
    let openssl_fingerprint = field(&["-fingerprint", "-sha256"])
        .replace(':', "")
        .to_lowercase();
    assert_eq!(identity.fingerprint_sha256, openssl_fingerprint);
    assert_eq!(
        identity.sans,
        [
            SubjectAltName::Dns("james.example.com".to_owned()),
            SubjectAltName::Ip("10.1.2.3".parse::<IpAddr>().unwrap()),
            SubjectAltName::Ip("::1".parse::<IpAddr>().unwrap()),
            SubjectAltName::Uri("spiffe://example.org/james".to_owned()),
            SubjectAltName::Email("james@example.com".to_owned()),
        ]
    );
    assert_eq!(identity.version, 3);
    let not_after = field(&["-enddate"]);
    let expected_not_after = time::PrimitiveDateTime::parse(
        not_after.trim_end_matches(" GMT"),
        &time::macros::format_description!(
            "[month repr:short] [day padding:space] [hour]:[minute]:[second] [year]"
        ),
    )
    .unwrap()
    .assume_utc()
    .unix_timestamp();
    assert_eq!(identity.not_after, expected_not_after);
    assert!(identity.not_before < identity.not_after);
    assert_eq!(identity.certificate, leaf);
    assert_eq!(identity.chain, [ca]);
}

#[test]
fn identity_of_an_empty_chain_is_an_error() {
    assert!(matches!(
        ClientIdentity::from_chain(&[]),
        Err(TrustError::EmptyChain)
    ));
    let garbage = rustls::pki_types::CertificateDer::from(vec![0x30, 0x00]);
    assert!(matches!(
        ClientIdentity::from_chain(&[garbage]),
        Err(TrustError::MalformedCertificate { .. })
    ));
}
