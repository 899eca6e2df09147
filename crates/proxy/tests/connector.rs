//! The proxies reach their upstream through whatever connector they are given: here one that
//! opens in-memory pipes (as the tunnel's streams will be), with no socket between the proxy and
//! the upstream, and an endpoint address nobody listens on.

mod http_proxy_support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use http_proxy_support::*;
use moat_proxy::connector::{Connecting, UpstreamConnector, UpstreamStream};
use moat_proxy::http::HttpProxy;
use moat_proxy::tcp_forward::{ForwardEnd, TcpForwarder};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// 192.0.2.0/24 is TEST-NET-1: a dial to it would hang or fail, never reach a test upstream.
const NOWHERE: &str = "192.0.2.1:9";

/// Opens an in-memory pipe per connection; `serve` runs the upstream on the far end.
#[derive(Debug)]
struct InMemory {
    dials: AtomicUsize,
    serve: fn(tokio::io::DuplexStream),
}

impl UpstreamConnector for InMemory {
    fn connect(&self) -> Connecting<'_> {
        self.dials.fetch_add(1, Ordering::SeqCst);
        let (ours, theirs) = tokio::io::duplex(64 * 1024);
        (self.serve)(theirs);
        Box::pin(async move { Ok(Box::new(ours) as UpstreamStream) })
    }

    fn address(&self) -> &str {
        "in-memory"
    }
}

fn in_memory(serve: fn(tokio::io::DuplexStream)) -> Arc<InMemory> {
    Arc::new(InMemory {
        dials: AtomicUsize::new(0),
        serve,
    })
}

#[tokio::test]
async fn the_http_proxy_sends_requests_and_identity_through_its_connector() {
    bounded(async {
        let connector = in_memory(|pipe| {
            tokio::spawn(serve_upstream_connection(pipe));
        });
        let config = endpoint(NOWHERE.parse().unwrap());
        for http2 in [false, true] {
            let proxy = HttpProxy::with_connector(&config, connector.clone()).unwrap();
            let gateway = Gateway::serving(Arc::new(proxy), Some(client_identity()), http2).await;
            let request = if http2 {
                get_h2("/headers")
            } else {
                get("/headers")
            };
            let response = if http2 {
                send_http2(gateway.addr, request).await
            } else {
                send_http1(gateway.addr, request).await
            };
            assert_eq!(response.status, http::StatusCode::OK, "http2={http2}");
            response.echoed_headers().assert_once(&[
                ("host", "app.example.com"),
                ("moat-client-subject", "CN=Test Client,O=Moat Tests"),
            ]);
        }
        // Each proxy opened one upstream connection, through the connector.
        assert_eq!(connector.dials.load(Ordering::SeqCst), 2);
    })
    .await;
}

#[tokio::test]
async fn the_tcp_forwarder_relays_bytes_through_its_connector() {
    bounded(async {
        let connector = in_memory(|mut pipe| {
            tokio::spawn(async move {
                let mut received = Vec::new();
                pipe.read_to_end(&mut received).await.unwrap();
                pipe.write_all(&received).await.unwrap();
                pipe.write_all(b" (echoed)").await.unwrap();
                pipe.shutdown().await.unwrap();
            });
        });
        let mut config = endpoint(NOWHERE.parse().unwrap());
        config.kind = moat_config::EndpointKind::Tls;
        config.upstream.scheme = moat_config::UpstreamScheme::Tcp;
        let forwarder = TcpForwarder::with_connector(&config, connector.clone());
        let (mut client, theirs) = tokio::io::duplex(64 * 1024);
        let forwarding =
            tokio::spawn(
                async move { forwarder.forward_with_preamble(theirs, b"PREAMBLE ").await },
            );
        client.write_all(b"hello").await.unwrap();
        client.shutdown().await.unwrap();
        let mut answer = Vec::new();
        client.read_to_end(&mut answer).await.unwrap();
        assert_eq!(answer, b"PREAMBLE hello (echoed)");
        let outcome = forwarding.await.unwrap();
        assert_eq!(outcome.end, ForwardEnd::Closed);
        assert_eq!((outcome.to_upstream, outcome.to_client), (5, 23));
        assert_eq!(connector.dials.load(Ordering::SeqCst), 1);
    })
    .await;
}
