//! The PROXY protocol header (HAProxy's spec) that tells a TCP upstream who connected.
//!
//! v1 is text with the addresses; v2 is binary with the addresses plus the TLS facts as TLVs.

use moat_config::ProxyProtocolVersion;
use ppp::v2::{Builder, Command, Protocol, Type, Version, WriteToHeader as _};

use moat_telemetry::ConnectionInfo;

/// PP2_CLIENT_SSL: the client connected over TLS.
const CLIENT_SSL: u8 = 0x01;
/// PP2_CLIENT_CERT_CONN: the client presented a certificate on this connection.
const CLIENT_CERT_CONN: u8 = 0x02;
/// PP2_CLIENT_CERT_SESS: the client presented a certificate in this TLS session.
const CLIENT_CERT_SESS: u8 = 0x04;

/// The header for one accepted connection, to be sent before any of the client's bytes.
///
/// Both versions carry the client's address and port and the address it connected to. v2 also
/// carries the SNI as `PP2_TYPE_AUTHORITY` and a `PP2_TYPE_SSL` TLV: the client flags, verify =
/// 0 (moat forwards only verified clients), `PP2_SUBTYPE_SSL_VERSION` (e.g. `TLSv1.3`) and, when
/// the client certificate has one, its common name as `PP2_SUBTYPE_SSL_CN`. Addresses of
/// different families (an IPv4 client on an IPv6 socket) are sent as UNKNOWN / UNSPEC.
pub fn header(version: ProxyProtocolVersion, info: &ConnectionInfo) -> Vec<u8> {
    let addresses = (info.peer_addr, info.local_addr);
    match version {
        ProxyProtocolVersion::V1 => ppp::v1::Addresses::from(addresses).to_string().into_bytes(),
        ProxyProtocolVersion::V2 => v2_with_tls(info).unwrap_or_else(|error| {
            // Only a TLV over 64 KiB fails, which no SNI or CN reaches; keep the addresses.
            tracing::warn!(%error, "PROXY protocol v2 TLVs too large; sending the addresses only");
            Builder::with_addresses(Version::Two | Command::Proxy, Protocol::Stream, addresses)
                .build()
                .unwrap_or_default()
        }),
    }
}

fn v2_with_tls(info: &ConnectionInfo) -> std::io::Result<Vec<u8>> {
    let certificate = info.client.is_some();
    let mut ssl = vec![if certificate {
        CLIENT_SSL | CLIENT_CERT_CONN | CLIENT_CERT_SESS
    } else {
        CLIENT_SSL
    }];
    ssl.extend_from_slice(&0u32.to_be_bytes());
    ssl.extend((Type::SSLVersion, info.tls_version.as_bytes()).to_bytes()?);
    if let Some(common_name) = info
        .client
        .as_ref()
        .and_then(|client| client.common_name.as_deref())
    {
        ssl.extend((Type::SSLCommonName, common_name.as_bytes()).to_bytes()?);
    }
    let mut builder = Builder::with_addresses(
        Version::Two | Command::Proxy,
        Protocol::Stream,
        (info.peer_addr, info.local_addr),
    );
    if let Some(sni) = &info.sni {
        builder = builder.write_tlv(Type::Authority, sni.as_bytes())?;
    }
    builder.write_tlv(Type::SSL, &ssl)?.build()
}
