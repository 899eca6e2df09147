//! The live feed: the last handshakes, refusals and agent changes in a bounded ring, and a
//! broadcast of each new one to the open event streams.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use moat_telemetry::Event;
use moat_telemetry::audit::now_rfc3339;
use moat_telemetry::presented::{Presented, PresentedCertificate};
use moat_trust::ClientIdentity;
use serde_json::{Value, json};
use tokio::sync::broadcast;

/// Entries the ring keeps: a page that opens shows this much history. 500 entries of a few
/// hundred bytes each are ~150 KiB at most.
pub(crate) const FEED_CAPACITY: usize = 500;

/// Entries a slow event stream may fall behind before it skips ahead (and says so).
const BROADCAST_CAPACITY: usize = 256;

/// One entry, encoded once: its number and its JSON line.
#[derive(Debug, Clone)]
pub(crate) struct FeedEntry {
    /// Its number, from 1 up: the event stream's `id`, so a reconnecting page asks only for
    /// what it missed (`Last-Event-ID`).
    pub seq: u64,
    /// The entry as one line of JSON.
    pub json: Arc<str>,
}

#[derive(Debug)]
struct Ring {
    entries: VecDeque<FeedEntry>,
    next_seq: u64,
}

/// The ring and its broadcast.
#[derive(Debug)]
pub(crate) struct Feed {
    ring: Mutex<Ring>,
    sender: broadcast::Sender<FeedEntry>,
}

impl Default for Feed {
    fn default() -> Feed {
        Feed {
            ring: Mutex::new(Ring {
                entries: VecDeque::with_capacity(FEED_CAPACITY),
                next_seq: 1,
            }),
            sender: broadcast::channel(BROADCAST_CAPACITY).0,
        }
    }
}

impl Feed {
    /// Adds what the feed shows of `event` (requests and byte counts are charted, not listed).
    pub fn record(&self, event: &Event<'_>) {
        if let Some(entry) = entry_of(event) {
            self.push(entry);
        }
    }

    /// Adds `entry` (an object), numbered and timed, and sends it to the open streams.
    pub fn push(&self, mut entry: Value) {
        let mut ring = self.lock();
        let seq = ring.next_seq;
        ring.next_seq += 1;
        if let Some(object) = entry.as_object_mut() {
            object.insert("seq".into(), seq.into());
            object.insert("time".into(), now_rfc3339().into());
        }
        let entry = FeedEntry {
            seq,
            json: entry.to_string().into(),
        };
        if ring.entries.len() == FEED_CAPACITY {
            ring.entries.pop_front();
        }
        ring.entries.push_back(entry.clone());
        // Sent under the lock, so a stream that takes the backlog and subscribes under it too
        // sees every entry once. No receiver is no error: nobody is watching.
        let _ = self.sender.send(entry);
    }

    /// The entries after `after`, oldest first, and a receiver of every later one.
    pub fn follow(&self, after: u64) -> (Vec<FeedEntry>, broadcast::Receiver<FeedEntry>) {
        let ring = self.lock();
        let backlog = ring
            .entries
            .iter()
            .filter(|entry| entry.seq > after)
            .cloned()
            .collect();
        (backlog, self.sender.subscribe())
    }

    fn lock(&self) -> MutexGuard<'_, Ring> {
        // A panic elsewhere while holding the lock leaves a ring that is still whole.
        self.ring
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The feed's entry for `event`, if it lists such events.
fn entry_of(event: &Event<'_>) -> Option<Value> {
    Some(match event {
        Event::HandshakeAccepted { info, .. } => json!({
            "kind": "handshake",
            "endpoint": info.endpoint,
            "peer": peer(info.peer_addr),
            "sni": info.sni,
            "client": info.client.as_ref().map(|client| client.subject.clone()),
            "tls_version": info.tls_version,
        }),
        Event::HandshakeRefused {
            endpoint,
            peer: address,
            reason,
            presented,
        } => json!({
            "kind": "refusal",
            "endpoint": endpoint,
            "peer": peer(*address),
            "sni": presented.sni,
            "client": presented_subject(presented),
            "reason": reason.as_str(),
        }),
        Event::AgentConnected { agent, address, .. } => json!({
            "kind": "agent_connected",
            "agent": agent,
            "peer": peer(*address),
        }),
        Event::AgentDisconnected {
            agent,
            address,
            reason,
            detail,
        } => json!({
            "kind": "agent_disconnected",
            "agent": agent,
            "peer": peer(*address),
            "reason": reason.as_str(),
            "detail": detail,
        }),
        Event::EndpointPublished {
            hostname, agent, ..
        } => json!({
            "kind": "endpoint_published",
            "agent": agent,
            "endpoint": hostname,
        }),
        Event::EndpointRemoved {
            hostname,
            agent,
            reason,
        } => json!({
            "kind": "endpoint_removed",
            "agent": agent,
            "endpoint": hostname,
            "reason": reason.as_str(),
        }),
        _ => return None,
    })
}

fn peer(address: SocketAddr) -> String {
    address.to_string()
}

/// The subject of the certificate a refused client showed, read as far as it can be.
fn presented_subject(presented: &Presented) -> Option<String> {
    match presented.certificate.as_ref()? {
        PresentedCertificate::Read(identity) => Some(identity.subject.clone()),
        PresentedCertificate::Unread(certificate) => {
            ClientIdentity::from_chain(std::slice::from_ref(certificate))
                .ok()
                .map(|identity| identity.subject)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ring_keeps_the_newest_entries_and_a_follower_gets_what_it_missed_once() {
        let feed = Feed::default();
        for n in 0..FEED_CAPACITY + 3 {
            feed.push(json!({ "n": n }));
        }
        let (backlog, mut live) = feed.follow(0);
        assert_eq!(backlog.len(), FEED_CAPACITY);
        assert_eq!(backlog[0].seq, 4, "the three oldest went");
        let (missed, _) = feed.follow(FEED_CAPACITY as u64 + 1);
        assert_eq!(
            missed.iter().map(|entry| entry.seq).collect::<Vec<_>>(),
            [FEED_CAPACITY as u64 + 2, FEED_CAPACITY as u64 + 3]
        );
        feed.push(json!({ "n": "later" }));
        let later = live.try_recv().unwrap();
        assert_eq!(later.seq, FEED_CAPACITY as u64 + 4);
        assert!(later.json.contains("\"n\":\"later\""), "{}", later.json);
    }
}
