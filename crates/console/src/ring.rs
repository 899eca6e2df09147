//! The captured exchanges: newest last, bounded by a count and by the bytes they hold.

use std::collections::VecDeque;
use std::sync::Arc;

use crate::entry::Entry;

/// Exchanges kept for the inspector; the oldest go first when either limit is reached.
#[derive(Debug)]
pub(crate) struct Ring {
    entries: VecDeque<Arc<Entry>>,
    max_entries: usize,
    max_bytes: usize,
    bytes: usize,
}

impl Ring {
    pub(crate) fn new(max_entries: usize, max_bytes: usize) -> Ring {
        Ring {
            entries: VecDeque::new(),
            max_entries,
            max_bytes,
            bytes: 0,
        }
    }

    /// Keeps `entry`, dropping the oldest until both limits hold again (an entry larger than
    /// the byte limit alone is still kept, alone: its bodies are bounded by the body limit).
    pub(crate) fn push(&mut self, entry: Arc<Entry>) {
        self.bytes += entry.size;
        self.entries.push_back(entry);
        while self.entries.len() > 1
            && (self.entries.len() > self.max_entries || self.bytes > self.max_bytes)
        {
            if let Some(old) = self.entries.pop_front() {
                self.bytes -= old.size;
            }
        }
        if self.max_entries == 0 {
            self.clear();
        }
    }

    /// Forgets every exchange.
    pub(crate) fn clear(&mut self) {
        self.entries.clear();
        self.bytes = 0;
    }

    /// Newest first.
    pub(crate) fn newest_first(&self) -> impl Iterator<Item = &Arc<Entry>> {
        self.entries.iter().rev()
    }

    pub(crate) fn find(&self, id: &str) -> Option<Arc<Entry>> {
        self.entries.iter().find(|e| e.id == id).cloned()
    }

    /// The exchange a replay carrying `token` became.
    pub(crate) fn find_replay(&self, token: u64) -> Option<Arc<Entry>> {
        self.entries
            .iter()
            .rev()
            .find(|e| e.replay.as_ref().is_some_and(|mark| mark.token == token))
            .cloned()
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entry::tests::entry_of_size;

    #[test]
    fn the_oldest_go_first_by_count_and_by_bytes() {
        let mut ring = Ring::new(3, 1000);
        for n in 0..5 {
            ring.push(entry_of_size(&format!("r{n}"), 100));
        }
        let ids: Vec<_> = ring.newest_first().map(|e| e.id.clone()).collect();
        assert_eq!(ids, ["r4", "r3", "r2"]);
        assert_eq!(ring.bytes(), 300);

        let mut ring = Ring::new(100, 250);
        for n in 0..5 {
            ring.push(entry_of_size(&format!("r{n}"), 100));
        }
        assert_eq!(ring.len(), 2);
        assert_eq!(ring.bytes(), 200);
        ring.push(entry_of_size("big", 400));
        assert_eq!(
            ring.len(),
            1,
            "a lone entry over the byte limit is kept alone"
        );
        ring.clear();
        assert_eq!((ring.len(), ring.bytes()), (0, 0));
    }
}
