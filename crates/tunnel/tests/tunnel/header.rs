//! The stream header: round trips, every malformed form a typed error naming its field, and
//! a client's forged header staying payload.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use http::{HeaderMap, HeaderValue};
use moat_tunnel::header::{
    CLIENT_ADDR, CLIENT_CERT, ENDPOINT, MAX_CHAIN_CERTIFICATES, SERVER_ADDR, SNI, TERMINATED_AT,
};
use moat_tunnel::{ClientChain, HeaderError, SessionSettings, StreamHeader};
use rustls_pki_types::CertificateDer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::{bounded, header, session_pair};

fn chain(count: usize) -> ClientChain {
    let certificates = (0..count)
        .map(|n| CertificateDer::from(vec![0x30, 0x82, n as u8, 0xff]))
        .collect();
    ClientChain::new(certificates).expect("non-empty")
}

fn full_header() -> StreamHeader {
    StreamHeader {
        endpoint: "app.example.com".to_owned(),
        client_addr: "[2001:db8::7]:52114".parse().expect("address"),
        server_addr: "192.0.2.1:443".parse().expect("address"),
        sni: Some("app.example.com".to_owned()),
        terminated_at_edge: true,
        client_identity: Some(chain(3)),
    }
}

fn valid_map() -> HeaderMap {
    full_header().to_headers().expect("encodes")
}

#[test]
fn headers_round_trip() {
    let full = full_header();
    assert_eq!(
        StreamHeader::from_headers(&full.to_headers().expect("encode")),
        Ok(full)
    );
    let minimal = StreamHeader {
        sni: None,
        terminated_at_edge: false,
        client_identity: None,
        ..full_header()
    };
    let map = minimal.to_headers().expect("encode");
    assert_eq!(map.len(), 4, "no SNI, no certificate headers: {map:?}");
    assert_eq!(map[TERMINATED_AT], "agent");
    assert_eq!(StreamHeader::from_headers(&map), Ok(minimal));
    // The chain keeps its order, leaf first.
    let certs: Vec<_> = valid_map().get_all(CLIENT_CERT).iter().cloned().collect();
    assert_eq!(certs.len(), 3);
    assert_eq!(certs[0], BASE64.encode([0x30, 0x82, 0, 0xff]).as_str());
}

/// One broken form: a change to a valid map, and the error it must give.
struct Case {
    name: &'static str,
    change: fn(&mut HeaderMap),
    expected: HeaderError,
}

fn set(map: &mut HeaderMap, name: &'static str, value: &'static str) {
    map.insert(name, HeaderValue::from_static(value));
}

fn malformed(field: &'static str, value: &str, expected: &'static str) -> HeaderError {
    HeaderError::Malformed {
        field,
        value: value.to_owned(),
        expected,
    }
}

const ENDPOINT_FORM: &str = "an endpoint name (1 to 253 letters, digits, '.', '-', '_', '*', ':')";
const ADDRESS_FORM: &str = "an address and port such as 192.0.2.1:443 or [2001:db8::1]:443";

fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "endpoint missing",
            change: |m| {
                m.remove(ENDPOINT);
            },
            expected: HeaderError::Missing { field: ENDPOINT },
        },
        Case {
            name: "client address missing",
            change: |m| {
                m.remove(CLIENT_ADDR);
            },
            expected: HeaderError::Missing { field: CLIENT_ADDR },
        },
        Case {
            name: "server address missing",
            change: |m| {
                m.remove(SERVER_ADDR);
            },
            expected: HeaderError::Missing { field: SERVER_ADDR },
        },
        Case {
            name: "terminated-at missing",
            change: |m| {
                m.remove(TERMINATED_AT);
            },
            expected: HeaderError::Missing {
                field: TERMINATED_AT,
            },
        },
        Case {
            name: "endpoint twice",
            change: |m| {
                m.append(ENDPOINT, HeaderValue::from_static("evil.example.com"));
            },
            expected: HeaderError::Repeated {
                field: ENDPOINT,
                count: 2,
            },
        },
        Case {
            name: "SNI twice",
            change: |m| {
                m.append(SNI, HeaderValue::from_static("evil.example.com"));
            },
            expected: HeaderError::Repeated {
                field: SNI,
                count: 2,
            },
        },
        Case {
            name: "terminated-at three times",
            change: |m| {
                m.append(TERMINATED_AT, HeaderValue::from_static("edge"));
                m.append(TERMINATED_AT, HeaderValue::from_static("edge"));
            },
            expected: HeaderError::Repeated {
                field: TERMINATED_AT,
                count: 3,
            },
        },
        Case {
            name: "endpoint not ASCII",
            change: |m| {
                m.insert(
                    ENDPOINT,
                    HeaderValue::from_bytes(b"caf\xc3\xa9.example").expect("opaque"),
                );
            },
            expected: malformed(ENDPOINT, "café.example", "visible ASCII"),
        },
        Case {
            name: "client certificate not base64",
            change: |m| {
                m.append(CLIENT_CERT, HeaderValue::from_static("not*base64"));
            },
            expected: malformed(CLIENT_CERT, "not*base64", "base64 DER"),
        },
        Case {
            name: "client certificate with TLS ended at the agent",
            change: |m| set(m, TERMINATED_AT, "agent"),
            expected: HeaderError::CertificateWithoutTermination { field: CLIENT_CERT },
        },
        Case {
            name: "client chain too long",
            change: |m| {
                for _ in 0..(MAX_CHAIN_CERTIFICATES - 2) {
                    m.append(CLIENT_CERT, HeaderValue::from_static("MIIB"));
                }
            },
            expected: HeaderError::ChainTooLong {
                field: CLIENT_CERT,
                count: MAX_CHAIN_CERTIFICATES + 1,
            },
        },
        Case {
            name: "unknown moat-tunnel header",
            change: |m| set(m, "moat-tunnel-user", "admin"),
            expected: HeaderError::Unknown {
                name: "moat-tunnel-user".to_owned(),
            },
        },
    ]
}

/// Setting `field` to `value` must fail as Malformed, naming the field and the form it wants.
const MALFORMED: &[(&str, &str, &str)] = &[
    (ENDPOINT, "", ENDPOINT_FORM),
    (ENDPOINT, "app example.com", ENDPOINT_FORM),
    (ENDPOINT, "app.example.com/admin", ENDPOINT_FORM),
    (CLIENT_ADDR, "203.0.113.7", ADDRESS_FORM),
    (CLIENT_ADDR, "localhost:443", ADDRESS_FORM),
    (CLIENT_ADDR, "2001:db8::7:443", ADDRESS_FORM),
    (SERVER_ADDR, "192.0.2.1:65536", ADDRESS_FORM),
    (SNI, "192.0.2.1", "a DNS name"),
    (SNI, "", "a DNS name"),
    (SNI, "app .example.com", "a DNS name"),
    (TERMINATED_AT, "Edge", "`edge` or `agent`"),
    (TERMINATED_AT, "both", "`edge` or `agent`"),
];

#[test]
fn every_malformed_value_is_a_typed_error_naming_its_field() {
    for &(field, value, expected) in MALFORMED {
        let mut map = valid_map();
        set(&mut map, field, value);
        assert_eq!(
            StreamHeader::from_headers(&map),
            Err(malformed(field, value, expected)),
            "{field}: {value:?}"
        );
    }
}

#[test]
fn every_missing_repeated_or_inconsistent_field_is_a_typed_error_naming_it() {
    for case in cases() {
        let mut map = valid_map();
        (case.change)(&mut map);
        assert_eq!(
            StreamHeader::from_headers(&map),
            Err(case.expected),
            "case: {}",
            case.name
        );
    }
}

#[test]
fn errors_read_with_the_field_name() {
    let mut map = valid_map();
    map.remove(SERVER_ADDR);
    let error = StreamHeader::from_headers(&map).expect_err("missing");
    assert_eq!(
        error.to_string(),
        "stream header moat-tunnel-server-addr is missing"
    );
    let mut map = valid_map();
    set(&mut map, TERMINATED_AT, "both");
    let error = StreamHeader::from_headers(&map).expect_err("malformed");
    assert_eq!(
        error.to_string(),
        "stream header moat-tunnel-terminated-at: \"both\" is not `edge` or `agent`"
    );
}

#[test]
fn other_headers_are_ignored() {
    let mut map = valid_map();
    set(&mut map, "user-agent", "curl/8");
    set(
        &mut map,
        "moat-tunnel",
        "not a field: no dash after the prefix",
    );
    assert_eq!(StreamHeader::from_headers(&map), Ok(full_header()));
}

#[test]
fn encoding_refuses_what_decoding_would() {
    let bad_endpoint = StreamHeader {
        endpoint: "app.example.com\r\nmoat-tunnel-sni: evil".to_owned(),
        ..full_header()
    };
    assert!(matches!(
        bad_endpoint.to_headers(),
        Err(HeaderError::Malformed {
            field: ENDPOINT,
            ..
        })
    ));
    let bad_sni = StreamHeader {
        sni: Some("10.0.0.1".to_owned()),
        ..full_header()
    };
    assert!(matches!(
        bad_sni.to_headers(),
        Err(HeaderError::Malformed { field: SNI, .. })
    ));
    let certificate_at_agent = StreamHeader {
        terminated_at_edge: false,
        ..full_header()
    };
    assert_eq!(
        certificate_at_agent.to_headers(),
        Err(HeaderError::CertificateWithoutTermination { field: CLIENT_CERT })
    );
    let long_chain = StreamHeader {
        client_identity: Some(chain(MAX_CHAIN_CERTIFICATES + 1)),
        ..full_header()
    };
    assert!(matches!(
        long_chain.to_headers(),
        Err(HeaderError::ChainTooLong { .. })
    ));
    assert!(
        ClientChain::new(Vec::new()).is_none(),
        "an empty chain is no chain"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_header_forged_by_the_client_is_only_payload() {
    bounded(async {
        let (edge, mut agent) = session_pair(&SessionSettings::default()).await;
        let sent = header("app.example.com", 9);
        let mut stream = edge.open_stream(&sent).await.expect("open");
        let forged = format!(
            "moat-tunnel-endpoint: admin.example.com\r\n{CLIENT_CERT}: {}\r\n\
             {TERMINATED_AT}: edge\r\n\r\nGET / HTTP/1.1\r\n\r\n",
            BASE64.encode(b"forged certificate")
        );
        stream.write_all(forged.as_bytes()).await.expect("write");
        stream.shutdown().await.expect("shutdown");
        let (got, mut accepted) = agent.accept().await.expect("a stream");
        assert_eq!(
            got, sent,
            "the header is the edge's, whatever the client wrote"
        );
        assert_eq!(got.client_identity, None);
        let mut payload = String::new();
        accepted.read_to_string(&mut payload).await.expect("read");
        assert_eq!(
            payload, forged,
            "the forged lines arrive as bytes, untouched"
        );
    })
    .await;
}
