//! The control channel: the hello, registration round trips, over-size messages refused both ways.

use moat_tunnel::{
    AgentControl, AgentMessage, ControlError, EdgeMessage, EdgeSession, EndpointKind, EndpointSpec,
    PROTOCOL_VERSION, SessionSettings, TerminateAt, TunnelStream,
};
use tokio::io::AsyncWriteExt;

use crate::support::{bounded, header, session_pair};

const MIB: usize = 1024 * 1024;

fn endpoint(hostname: &str) -> EndpointSpec {
    EndpointSpec {
        hostname: hostname.to_owned(),
        kind: EndpointKind::Http,
        terminate_at: TerminateAt::Edge,
        pool: true,
        client_certificate_optional: true,
        mutual_tls_cas_pem: Some(
            "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n".to_owned(),
        ),
        certificate_pem: None,
        private_key_pem: Some(
            "-----BEGIN PRIVATE KEY-----\nsecret\n-----END PRIVATE KEY-----\n".to_owned(),
        ),
        crls_pem: None,
        rules: Some(serde_json::json!([{ "path": "/admin/*", "common_name": "ops" }])),
        upstream: Some("http://127.0.0.1:8080".to_owned()),
        upstream_ca_pem: None,
        upstream_proxy_protocol: Some(2),
        upstream_protocol: Some("http2".to_owned()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_round_trips_and_the_edge_answers() {
    bounded(async {
        let (mut edge, mut agent) = session_pair(&SessionSettings::default()).await;
        assert_eq!(edge.peer().version, PROTOCOL_VERSION);
        assert_eq!(agent.peer().version, PROTOCOL_VERSION);
        assert!(agent.peer().software.starts_with("moat-tunnel "));

        let register = AgentMessage::Register {
            endpoints: vec![endpoint("app.example.com"), endpoint("api.example.com")],
        };
        agent
            .control()
            .send(&register)
            .await
            .expect("send register");
        assert_eq!(edge.control().recv().await.expect("recv"), Some(register));

        let answers = [
            EdgeMessage::Registered {
                hostname: "app.example.com".to_owned(),
                url: "https://app.example.com".to_owned(),
            },
            EdgeMessage::Refused {
                hostname: "api.example.com".to_owned(),
                reason: "api.example.com is taken by another agent".to_owned(),
            },
        ];
        for answer in &answers {
            edge.control().send(answer).await.expect("send answer");
        }
        for answer in answers {
            assert_eq!(agent.control().recv().await.expect("recv"), Some(answer));
        }
    })
    .await;
}

#[test]
fn the_wire_form_is_tagged_json_and_debug_hides_the_key() {
    let json = serde_json::to_value(AgentMessage::Remove {
        hostnames: vec!["app.example.com".to_owned()],
    })
    .expect("json");
    assert_eq!(
        json,
        serde_json::json!({ "type": "remove", "hostnames": ["app.example.com"] })
    );
    let debug = format!("{:?}", endpoint("app.example.com"));
    assert!(
        debug.contains("<redacted>") && !debug.contains("secret"),
        "{debug}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_over_size_message_is_refused_before_sending() {
    bounded(async {
        let settings = SessionSettings::default();
        let (mut edge, mut agent) = session_pair(&settings).await;
        let mut huge = endpoint("app.example.com");
        huge.crls_pem = Some("A".repeat(2 * MIB));
        let refused = agent
            .control()
            .send(&AgentMessage::Register {
                endpoints: vec![huge],
            })
            .await
            .expect_err("over the limit");
        match refused {
            ControlError::TooLarge { size, limit } => {
                assert!(size > 2 * MIB as u64, "size {size}");
                assert_eq!(limit, MIB);
            }
            other => panic!("expected TooLarge, got {other:?}"),
        }
        // Nothing was sent: the channel carries the next message intact.
        let remove = AgentMessage::Remove {
            hostnames: vec!["app.example.com".to_owned()],
        };
        agent.control().send(&remove).await.expect("send");
        assert_eq!(edge.control().recv().await.expect("recv"), Some(remove));
    })
    .await;
}

/// The agent's control channel over a data stream whose edge end wrote `raw` (and then
/// shut down, when `end`): a peer that breaks the framing. The edge's session and stream
/// come along, to stay open while the channel reads.
async fn control_after_raw_bytes(
    raw: &[u8],
    end: bool,
) -> (AgentControl, EdgeSession, TunnelStream) {
    let (edge, mut agent) = session_pair(&SessionSettings::default()).await;
    let mut stream = edge
        .open_stream(&header("app.example.com", 1))
        .await
        .expect("open");
    stream.write_all(raw).await.expect("raw bytes");
    if end {
        stream.shutdown().await.expect("shutdown");
    }
    let (_, accepted) = agent.accept().await.expect("a stream");
    (AgentControl::new(accepted, MIB), edge, stream)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_over_size_message_is_refused_from_its_length_prefix() {
    bounded(async {
        // A prefix that announces 2 MiB, then only a little of it.
        let mut raw = ((2 * MIB) as u32).to_be_bytes().to_vec();
        raw.extend_from_slice(b"{\"type\":\"remove\"");
        let (mut control, _edge, _stream) = control_after_raw_bytes(&raw, false).await;
        match control.recv().await {
            Err(ControlError::TooLarge { size, limit }) => {
                assert_eq!(size, 2 * MIB as u64);
                assert_eq!(limit, MIB);
            }
            other => panic!("expected TooLarge, got {other:?}"),
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_control_stream_cut_inside_a_message_is_truncated() {
    bounded(async {
        let mut raw = 100u32.to_be_bytes().to_vec();
        raw.extend_from_slice(b"{\"type\":");
        let (mut control, _edge, _stream) = control_after_raw_bytes(&raw, true).await;
        match control.recv().await {
            // The 8 bytes of the body; the prefix was read.
            Err(ControlError::Truncated { buffered }) => assert_eq!(buffered, 8),
            other => panic!("expected Truncated, got {other:?}"),
        }
    })
    .await;
}
