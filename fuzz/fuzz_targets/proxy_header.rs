//! Fuzzes `proxy_protocol::header` with arbitrary addresses, SNI and client CN; the header must parse back.
#![no_main]

use std::net::SocketAddr;
use std::sync::Arc;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use moat_config::ProxyProtocolVersion;
use moat_telemetry::ConnectionInfo;
use moat_proxy::proxy_protocol::header;

/// PP2_TYPE_AUTHORITY: the SNI.
const AUTHORITY: u8 = 0x02;

#[derive(Arbitrary, Debug)]
struct Input {
    v2: bool,
    peer: SocketAddr,
    local: SocketAddr,
    sni: Option<String>,
    tls13: bool,
    /// `None`: no client certificate; `Some(None)`: a certificate without a CN.
    client_common_name: Option<Option<String>>,
}

fuzz_target!(|input: Input| {
    let client = input.client_common_name.map(|common_name| {
        let mut identity = moat_fuzz::FIXTURE.identity.clone();
        identity.common_name = common_name;
        Arc::new(identity)
    });
    let info = ConnectionInfo {
        endpoint: "db".to_owned(),
        peer_addr: input.peer,
        local_addr: input.local,
        sni: input.sni,
        sni_routed: false,
        tls_version: if input.tls13 { "TLSv1.3" } else { "TLSv1.2" },
        cipher_suite: None,
        http2: false,
        client,
    };
    let same_family = input.peer.is_ipv4() == input.local.is_ipv4();
    if input.v2 {
        let bytes = header(ProxyProtocolVersion::V2, &info);
        let parsed = ppp::v2::Header::try_from(bytes.as_slice()).expect("v2 header parses");
        assert_eq!(parsed.len(), bytes.len(), "nothing after the header");
        if same_family {
            let sent = ppp::v2::Addresses::from((input.peer, input.local));
            assert_eq!(parsed.addresses, sent);
        }
        // Readers (HAProxy, ppp) take everything after an UNSPEC header as its address block,
        // so the SNI is only readable beside addresses of one family.
        if let (Some(sni), true) = (&info.sni, same_family) {
            let authority = parsed
                .tlvs()
                .filter_map(Result::ok)
                .find(|tlv| tlv.kind == AUTHORITY);
            assert_eq!(
                authority.expect("the SNI is sent").value.as_ref(),
                sni.as_bytes()
            );
        }
    } else {
        let bytes = header(ProxyProtocolVersion::V1, &info);
        let text = std::str::from_utf8(&bytes).expect("v1 header is text");
        let parsed = ppp::v1::Header::try_from(text).expect("v1 header parses");
        if same_family {
            let sent = ppp::v1::Addresses::from((input.peer, input.local));
            assert_eq!(parsed.addresses, sent);
        }
    }
});
