//! ClientHellos too large for moat to read, refused and logged as such.

use crate::gateway_support;

use super::setup;

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::time::Duration;

use gateway_support::Moat;

/// A ClientHello whose SNI is `name_length` bytes, plus an unknown extension of `padding` bytes
/// when not 0, in 16 KiB records; `claimed` overrides the handshake message's length field (to
/// announce more than is sent).
fn client_hello(name_length: usize, padding: usize, claimed: Option<usize>) -> Vec<u8> {
    let be16 = |n: usize| u16::try_from(n).unwrap().to_be_bytes();
    let name = vec![b'a'; name_length];
    let mut sni = be16(name.len() + 3).to_vec();
    sni.push(0);
    sni.extend(be16(name.len()));
    sni.extend(&name);
    let mut extensions = vec![0, 0];
    extensions.extend(be16(sni.len()));
    extensions.extend(&sni);
    if padding > 0 {
        // signature_algorithms (ecdsa_secp256r1_sha256), which rustls needs to accept a hello.
        extensions.extend([0, 13, 0, 4, 0, 2, 4, 3]);
        extensions.extend([0xfe, 0xfe]);
        extensions.extend(be16(padding));
        extensions.extend(vec![0u8; padding]);
    }
    let mut body = vec![3, 3];
    body.extend([7u8; 32]);
    body.extend([0, 0, 2, 0x13, 0x01, 1, 0]);
    body.extend(be16(extensions.len()));
    body.extend(&extensions);
    let length = u32::try_from(claimed.unwrap_or(body.len()))
        .unwrap()
        .to_be_bytes();
    let mut handshake = vec![1, length[1], length[2], length[3]];
    handshake.extend(&body);
    let mut records = Vec::new();
    for chunk in handshake.chunks(16 * 1024) {
        records.extend([22, 3, 1]);
        records.extend(be16(chunk.len()));
        records.extend(chunk);
    }
    records
}

#[test]
fn an_oversized_client_hello_is_refused_and_logged_as_such() {
    let dir = tempfile::tempdir().unwrap();
    setup(dir.path());
    let upstream = gateway_support::start_http_upstream();
    let moat = Moat::serve_mtls(dir.path(), "http", &upstream.to_string(), &[]);
    let send = |bytes: &[u8]| {
        let mut socket = TcpStream::connect(("127.0.0.1", moat.port())).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let _ = socket.write_all(bytes);
        let mut answer = Vec::new();
        let _ = socket.read_to_end(&mut answer);
        answer
    };

    // SNIs of 20,000 and 65,000 bytes: a whole ClientHello that rustls refuses with an alert.
    for length in [20_000, 65_000] {
        let answer = send(&client_hello(length, 0, None));
        assert_eq!(
            answer.first(),
            Some(&21),
            "no alert record for a {length}-byte SNI"
        );
    }
    let log = moat.wait_for_log("ServerNameMustContainOneHostName");
    assert_eq!(
        log.matches("ServerNameMustContainOneHostName").count(),
        2,
        "{log}"
    );
    // A handshake message announcing more than the 64 KiB rustls takes.
    let mut announced = client_hello(16_000, 0, Some(100_000));
    announced.extend(client_hello(60_000, 0, None));
    send(&announced);
    moat.wait_for_log("HandshakePayloadTooLarge");
    // A 50 KiB ClientHello with 20 KiB more behind it: more than rustls buffers before the handshake.
    let mut flood = client_hello(10, 50_000, None);
    flood.extend(vec![23u8; 20_000]);
    send(&flood);
    let log = moat
        .wait_for_log("handshake refused: the ClientHello and what came with it exceed the 64 KiB");
    assert!(
        !log.contains("connection closed during the handshake"),
        "{log}"
    );
}
