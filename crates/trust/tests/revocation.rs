//! CRLs: revoked leafs and intermediates are refused with certificate_revoked; CRLs made by
//! rcgen, `openssl ca -gencrl` and `cfssl gencrl` load (PEM or DER); CRLs that cannot be trusted
//! stop startup with a message naming the file.

mod support;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use moat_trust::{CaBundle, ClientVerifier, RefusalReason, RevocationLists, TrustError};
use rustls::AlertDescription;
use rustls::version::{TLS12, TLS13};
use support::*;

fn verifier(ca_files: &[PathBuf], crl_files: &[PathBuf]) -> Arc<ClientVerifier> {
    let cas = CaBundle::from_files(ca_files).unwrap();
    let crls = RevocationLists::from_files(crl_files, &cas).unwrap();
    ClientVerifier::builder(cas)
        .with_crls(crls)
        .build()
        .unwrap()
}

fn assert_accepted(verifier: &Arc<ClientVerifier>, credentials: Credentials) {
    let client = client_config(Some(credentials));
    for version in [&TLS13, &TLS12] {
        let outcome = handshake(server_config(verifier.clone(), &[version]), client.clone());
        assert!(outcome.accepted, "{version:?}: {outcome:?}");
    }
}

fn assert_revoked(verifier: &Arc<ClientVerifier>, credentials: Credentials) {
    let client = client_config(Some(credentials));
    for version in [&TLS13, &TLS12] {
        let outcome = handshake(server_config(verifier.clone(), &[version]), client.clone());
        let context = format!("{version:?}");
        assert_refusal(
            outcome,
            AlertDescription::CertificateRevoked,
            RefusalReason::Revoked,
            &context,
        );
    }
}

/// With `ca` and its CRL `crl_file` (`contents`) configured, the client of `ca` with serial
/// `revoked` is refused as revoked and the one with serial `good` accepted.
fn assert_crl_revokes(
    ca: &Ca,
    crl_file: &str,
    contents: impl AsRef<[u8]>,
    revoked: u64,
    good: u64,
) {
    let dir = tempfile::tempdir().unwrap();
    let ca_path = write(dir.path(), "ca.pem", &ca.pem);
    let crl_path = write(dir.path(), crl_file, contents);
    let verifier = verifier(&[ca_path], &[crl_path]);
    assert_revoked(&verifier, client(ca, revoked).credentials());
    assert_accepted(&verifier, client(ca, good).credentials());
}

/// Loads the CRL `crl_file` (`contents`) against `ca` alone, which must fail; returns the CRL's
/// path and the error.
fn crl_error(ca: &Ca, crl_file: &str, contents: impl AsRef<[u8]>) -> (PathBuf, TrustError) {
    let dir = tempfile::tempdir().unwrap();
    let ca_path = write(dir.path(), "ca.pem", &ca.pem);
    let crl_path = write(dir.path(), crl_file, contents);
    let cas = CaBundle::from_files(&[ca_path]).unwrap();
    let error = RevocationLists::from_files(std::slice::from_ref(&crl_path), &cas).unwrap_err();
    (crl_path, error)
}

#[test]
fn leaf_revoked_by_pem_crl_is_refused_with_certificate_revoked() {
    let ca = root_ca("PEM CRL CA");
    assert_crl_revokes(&ca, "ca.crl.pem", crl(&ca, &[41]).pem, 41, 42);
}

#[test]
fn leaf_revoked_by_der_crl_is_refused_with_certificate_revoked() {
    let ca = root_ca("DER CRL CA");
    assert_crl_revokes(&ca, "ca.crl", crl(&ca, &[51]).der, 51, 52);
}

#[test]
fn client_under_revoked_intermediate_is_refused_with_certificate_revoked() {
    let dir = tempfile::tempdir().unwrap();
    let root = root_ca("Intermediate CRL Root");
    let revoked_intermediate = intermediate_ca("Revoked Intermediate", &root, 61);
    let good_intermediate = intermediate_ca("Good Intermediate", &root, 62);
    let revoked = leaf(
        LeafSpec::default(),
        &revoked_intermediate,
        &[&revoked_intermediate],
    );
    let good = leaf(
        LeafSpec::default(),
        &good_intermediate,
        &[&good_intermediate],
    );
    let ca_path = write(dir.path(), "root.pem", &root.pem);
    let crl_path = write(dir.path(), "root.crl.pem", crl(&root, &[61]).pem);
    let verifier = verifier(&[ca_path], &[crl_path]);
    assert_revoked(&verifier, revoked.credentials());
    assert_accepted(&verifier, good.credentials());
}

#[test]
fn client_of_a_ca_without_crl_is_still_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let (with_crl, without_crl, ca_path) = two_roots(dir.path(), "CA With CRL", "CA Without CRL");
    let crl_path = write(dir.path(), "a.crl.pem", crl(&with_crl, &[71]).pem);
    let verifier = verifier(&[ca_path], &[crl_path]);
    assert_accepted(&verifier, client(&without_crl, 71).credentials());
    assert_revoked(&verifier, client(&with_crl, 71).credentials());
}

#[test]
fn crl_from_a_foreign_ca_is_a_startup_error_naming_the_file() {
    let ca = root_ca("Configured CA");
    let foreign = root_ca("Foreign CRL Issuer");
    let (crl_path, error) = crl_error(&ca, "foreign.crl", crl(&foreign, &[1]).der);
    assert!(
        matches!(error, TrustError::CrlUnknownIssuer { .. }),
        "{error:?}"
    );
    assert_eq!(
        error.to_string(),
        format!(
            "{}: CRL #1 was issued by CN=Foreign CRL Issuer, which is not one of the configured CAs; add that CA to the CA files or remove the CRL",
            crl_path.display()
        )
    );
}

#[test]
fn crl_with_a_signature_from_another_key_is_a_startup_error() {
    let ca = root_ca("Same Name CA");
    let impostor = root_ca("Same Name CA");
    let (crl_path, error) = crl_error(&ca, "forged.crl.pem", crl(&impostor, &[1]).pem);
    assert_eq!(
        error.to_string(),
        format!(
            "{}: CRL #1 names CN=Same Name CA as issuer but its signature does not verify with that CA's key; regenerate the CRL with the CA's own key",
            crl_path.display()
        )
    );
}

#[test]
fn file_without_crl_is_a_startup_error() {
    let dir = tempfile::tempdir().unwrap();
    let ca = root_ca("Empty CRL CA");
    let ca_path = write(dir.path(), "ca.pem", &ca.pem);
    let not_a_crl = write(dir.path(), "oops.crl", &ca.pem);
    let cas = CaBundle::from_files(&[ca_path]).unwrap();
    let error = RevocationLists::from_files(&[not_a_crl], &cas).unwrap_err();
    assert!(matches!(error, TrustError::NoCrl { .. }), "{error:?}");
    let missing = dir.path().join("missing.crl");
    let error = RevocationLists::from_files(&[missing], &cas).unwrap_err();
    assert!(matches!(error, TrustError::Read { .. }), "{error:?}");
    assert!(
        error
            .to_string()
            .contains("missing.crl: cannot read the file"),
        "{error}"
    );
}

/// A tiny `openssl ca` directory with a CA, ready for `-revoke` and `-gencrl`.
fn openssl_ca_dir(dir: &Path, with_crlnumber: bool) {
    let crlnumber = if with_crlnumber {
        "crlnumber = $dir/crlnumber\n"
    } else {
        ""
    };
    let config = format!(
        "[ ca ]\ndefault_ca = CA_default\n\
         [ CA_default ]\ndir = .\ndatabase = $dir/index.txt\nnew_certs_dir = $dir/newcerts\n\
         certificate = $dir/ca.crt\nprivate_key = $dir/ca.key\nserial = $dir/serial\n{crlnumber}\
         default_md = sha256\ndefault_days = 30\ndefault_crl_days = 30\npolicy = policy_any\n\
         [ policy_any ]\ncommonName = supplied\n\
         [ client_ext ]\nbasicConstraints = CA:FALSE\nkeyUsage = digitalSignature\nextendedKeyUsage = clientAuth\n\
         [ intermediate_ext ]\nbasicConstraints = critical,CA:TRUE,pathlen:0\nkeyUsage = critical,keyCertSign,cRLSign\n"
    );
    write(dir, "openssl.cnf", config);
    write(dir, "index.txt", "");
    write(dir, "serial", "1000\n");
    write(dir, "crlnumber", "1000\n");
    std::fs::create_dir(dir.join("newcerts")).unwrap();
    openssl_root(dir, "ca", "/CN=OpenSSL CA Dir", "30");
}

/// Issues a v3 certificate `name` (and its key) from the `openssl ca` directory with the
/// extensions of config section `extensions` (`client_ext` or `intermediate_ext`).
fn openssl_ca_issue(dir: &Path, name: &str, extensions: &str) {
    openssl_key_and_request(dir, name);
    let csr = format!("{name}.csr");
    let crt = format!("{name}.crt");
    let args = [
        "ca",
        "-batch",
        "-config",
        "openssl.cnf",
        "-extensions",
        extensions,
    ];
    openssl(dir, &[&args[..], &["-in", &csr, "-out", &crt]].concat());
}

/// `openssl ca -revoke CERT`, then `openssl ca -gencrl -out CRL EXTRA...`.
fn openssl_ca_revoke_and_gencrl(dir: &Path, cert: &str, crl: &str, extra: &[&str]) {
    openssl(dir, &["ca", "-config", "openssl.cnf", "-revoke", cert]);
    let gencrl = ["ca", "-config", "openssl.cnf", "-gencrl", "-out", crl];
    openssl(dir, &[&gencrl[..], extra].concat());
}

/// An `openssl ca` directory with clients alice (revoked) and bob, and `ca.crl.pem` from
/// `openssl ca -gencrl EXTRA...`: version 2 with a crlnumber file, version 1 without one.
fn openssl_ca_with_crl(dir: &Path, with_crlnumber: bool, extra: &[&str]) {
    openssl_ca_dir(dir, with_crlnumber);
    openssl_ca_issue(dir, "alice", "client_ext");
    openssl_ca_issue(dir, "bob", "client_ext");
    openssl_ca_revoke_and_gencrl(dir, "alice.crt", "ca.crl.pem", extra);
    let text = openssl(dir, &["crl", "-in", "ca.crl.pem", "-noout", "-text"]);
    let version = if with_crlnumber {
        "Version 2"
    } else {
        "Version 1"
    };
    assert!(text.contains(version), "{text}");
}

#[test]
fn crl_from_openssl_ca_gencrl_is_accepted_and_revokes() {
    for with_crlnumber in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        openssl_ca_with_crl(d, with_crlnumber, &[]);
        let to_der = [
            "crl",
            "-in",
            "ca.crl.pem",
            "-outform",
            "DER",
            "-out",
            "ca.crl.der",
        ];
        openssl(d, &to_der);
        for crl_file in ["ca.crl.pem", "ca.crl.der"] {
            let verifier = verifier(&[d.join("ca.crt")], &[d.join(crl_file)]);
            assert_revoked(&verifier, credentials_of(d, "alice"));
            assert_accepted(&verifier, credentials_of(d, "bob"));
        }
    }
}

#[test]
fn version_1_crl_of_the_root_revokes_an_intermediate_of_a_v3_chain() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    openssl_ca_dir(d, false);
    for name in ["bad-issuing", "good-issuing"] {
        // An intermediate CA under the root, recorded in its index.txt for -revoke.
        openssl_ca_issue(d, name, "intermediate_ext");
        write(d, "leaf.ext", "extendedKeyUsage = clientAuth\n");
        let leaf = format!("{name}-leaf");
        openssl_key_and_request(d, &leaf);
        let (csr, crt) = (format!("{leaf}.csr"), format!("{leaf}.crt"));
        openssl_x509_sign(d, &csr, name, &crt, "10", "0x77", &["-extfile", "leaf.ext"]);
    }
    openssl_ca_revoke_and_gencrl(d, "bad-issuing.crt", "root.crl", &[]);
    let text = openssl(d, &["crl", "-in", "root.crl", "-noout", "-text"]);
    assert!(text.contains("Version 1"), "{text}");
    let verifier = verifier(&[d.join("ca.crt")], &[d.join("root.crl")]);
    let chain = |name: &str| {
        (
            vec![
                read_cert(&d.join(format!("{name}-leaf.crt"))),
                read_cert(&d.join(format!("{name}.crt"))),
            ],
            read_key(&d.join(format!("{name}-leaf.key"))),
        )
    };
    assert_revoked(&verifier, chain("bad-issuing"));
    assert_accepted(&verifier, chain("good-issuing"));
}

#[test]
fn version_1_crl_signed_by_another_key_is_a_startup_error() {
    let configured = tempfile::tempdir().unwrap();
    let impostor = tempfile::tempdir().unwrap();
    openssl_ca_dir(configured.path(), false);
    // Same CA name, its own key.
    openssl_ca_with_crl(impostor.path(), false, &[]);
    let crl_path = impostor.path().join("ca.crl.pem");
    let cas = CaBundle::from_files(&[configured.path().join("ca.crt")]).unwrap();
    let error = RevocationLists::from_files(std::slice::from_ref(&crl_path), &cas).unwrap_err();
    assert_eq!(
        error.to_string(),
        format!(
            "{}: CRL #1 names CN=OpenSSL CA Dir as issuer but its signature does not verify with that CA's key; regenerate the CRL with the CA's own key",
            crl_path.display()
        )
    );
}

#[test]
fn stale_version_1_crl_still_revokes_and_refuses_every_client_only_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let expired = [
        "-crl_lastupdate",
        "20200101000000Z",
        "-crl_nextupdate",
        "20200102000000Z",
    ];
    openssl_ca_with_crl(d, false, &expired);
    let cas = CaBundle::from_files(&[d.join("ca.crt")]).unwrap();
    let crls = RevocationLists::from_files(&[d.join("ca.crl.pem")], &cas).unwrap();
    let stale = crls.stale(rustls::pki_types::UnixTime::now());
    assert_eq!(stale.len(), 1, "{stale:?}");
    assert_eq!(stale[0].path, d.join("ca.crl.pem"));

    // warn (the default): the stale CRL still applies.
    let warn = verifier(&[d.join("ca.crt")], &[d.join("ca.crl.pem")]);
    assert_revoked(&warn, credentials_of(d, "alice"));
    assert_accepted(&warn, credentials_of(d, "bob"));

    // refuse: no client of that CA passes, as with a stale version 2 CRL.
    let refuse = ClientVerifier::builder(cas)
        .with_crls(crls)
        .refuse_expired_crls()
        .build()
        .unwrap();
    let (chain, _) = credentials_of(d, "bob");
    let refused = refuse
        .verify_with_reason(&chain[0], &[], rustls::pki_types::UnixTime::now())
        .unwrap_err();
    assert_eq!(refused.reason, RefusalReason::UnknownCa);
    assert_eq!(
        rustls::AlertDescription::from(match refused.error {
            rustls::Error::InvalidCertificate(error) => error,
            other => panic!("{other:?}"),
        }),
        AlertDescription::UnknownCA
    );
}

#[test]
fn crl_from_cfssl_gencrl_is_accepted_and_revokes() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(
        d,
        "ca-csr.json",
        r#"{"CN":"Cfssl Test CA","key":{"algo":"ecdsa","size":256},"names":[{"C":"US","O":"Test"}]}"#,
    );
    write(
        d,
        "ca-config.json",
        r#"{"signing":{"default":{"expiry":"8760h"},"profiles":{"client":{"usages":["signing","key encipherment","client auth"],"expiry":"8760h"}}}}"#,
    );
    write(
        d,
        "client-csr.json",
        r#"{"CN":"cfssl client","key":{"algo":"ecdsa","size":256},"names":[{"O":"Test"}]}"#,
    );
    let sh = |script: &str| run(d, "sh", &["-c", script]);
    sh("cfssl gencert -initca ca-csr.json 2>/dev/null | cfssljson -bare ca");
    sh(
        "cfssl gencert -ca ca.pem -ca-key ca-key.pem -config ca-config.json -profile client client-csr.json 2>/dev/null | cfssljson -bare client",
    );
    sh(
        "cfssl gencert -ca ca.pem -ca-key ca-key.pem -config ca-config.json -profile client client-csr.json 2>/dev/null | cfssljson -bare other",
    );
    // cfssl 1.2 reads the serials file as decimal numbers.
    let client_der = read_cert(&d.join("client.pem"));
    let (_, parsed) = x509_parser::parse_x509_certificate(client_der.as_ref()).unwrap();
    write(
        d,
        "serials.txt",
        format!("{}\n", parsed.tbs_certificate.serial),
    );
    sh("cfssl gencrl serials.txt ca.pem ca-key.pem | base64 -d > ca.crl");

    let verifier = verifier(&[d.join("ca.pem")], &[d.join("ca.crl")]);
    let creds = |name: &str| {
        (
            vec![read_cert(&d.join(format!("{name}.pem")))],
            read_key(&d.join(format!("{name}-key.pem"))),
        )
    };
    assert_revoked(&verifier, creds("client"));
    assert_accepted(&verifier, creds("other"));
}

#[test]
fn one_pem_file_may_hold_the_crls_of_several_cas() {
    let dir = tempfile::tempdir().unwrap();
    let (one, two, ca_path) = two_roots(dir.path(), "Multi CRL One", "Multi CRL Two");
    let crl_path = write(
        dir.path(),
        "all.crl.pem",
        format!("{}{}", crl(&one, &[81]).pem, crl(&two, &[82]).pem),
    );
    let cas = CaBundle::from_files(std::slice::from_ref(&ca_path)).unwrap();
    let crls = RevocationLists::from_files(std::slice::from_ref(&crl_path), &cas).unwrap();
    assert_eq!(crls.len(), 2);
    let verifier = verifier(&[ca_path], &[crl_path]);
    assert_revoked(&verifier, client(&one, 81).credentials());
    assert_revoked(&verifier, client(&two, 82).credentials());
    assert_accepted(&verifier, client(&one, 82).credentials());
}

#[test]
fn a_crl_past_its_next_update_still_revokes() {
    let ca = root_ca("Stale CRL CA");
    let now = time::OffsetDateTime::now_utc();
    let stale = crl_dated(
        &ca,
        &[91],
        now - time::Duration::days(10),
        now - time::Duration::days(3),
    );
    assert_crl_revokes(&ca, "stale.crl", stale.der, 91, 92);
}

#[test]
fn a_crl_from_a_ca_whose_key_usage_lacks_crl_sign_is_a_startup_error() {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "No CRL Sign CA");
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign];
    let cert = params.self_signed(&key).unwrap();
    // rcgen itself refuses to sign a CRL for such a CA, so sign with an issuer that claims cRLSign.
    params.key_usages.push(rcgen::KeyUsagePurpose::CrlSign);
    let signer = Ca {
        der: cert.der().clone(),
        pem: cert.pem(),
        issuer: rcgen::Issuer::new(params, key),
    };
    let (crl_path, error) = crl_error(&signer, "ca.crl", crl(&signer, &[1]).der);
    assert_eq!(
        error.to_string(),
        format!(
            "{}: CRL #1 is signed by CN=No CRL Sign CA, whose keyUsage does not include cRLSign; reissue the CA with cRLSign or drop the CRL",
            crl_path.display()
        )
    );
}
