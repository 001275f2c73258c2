//! De-duplication of notices, in bounded memory.
//!
//! A notification is identified by its name and sequence number, an Azure event by its content.
//! A `MOVING` is an instruction to each connection, so it is a repeat only on the same
//! connection. At most [`DEDUP_CAPACITY`] keys are remembered; the oldest are forgotten first.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant, UNIX_EPOCH};

use crate::endpoint::{ConnectionId, Endpoint};
use crate::maintenance::azure::AzureEvent;
use crate::maintenance::events::PushOrigin;
use crate::maintenance::hook::Notice;
use crate::maintenance::notification::NotificationKind;

/// How many (name, seq) pairs and Azure events are remembered for de-duplication.
pub(crate) const DEDUP_CAPACITY: usize = 4096;
/// How long a push notification's (name, seq) is remembered: long enough to recognise the
/// replays Redis Software sends to new connections hours later.
const PUSH_MEMORY: Duration = Duration::from_secs(24 * 3600);
/// How long an Azure event is remembered: the copies sent to every subscribed connection
/// arrive within moments of each other, and a real repeat may come minutes later.
const AZURE_MEMORY: Duration = Duration::from_secs(10);

/// What identifies a notice for de-duplication.
#[derive(Clone, PartialEq, Eq, Hash)]
pub(crate) enum DedupKey {
    Push {
        endpoint: Endpoint,
        kind: NotificationKind,
        seq: u64,
        // MOVING is an instruction to each connection, so each connection's copy counts.
        connection: Option<ConnectionId>,
    },
    Azure {
        endpoint: Endpoint,
        event: AzureEvent,
    },
}

/// Remembers recent notices, within a fixed number of entries.
#[derive(Default)]
pub(crate) struct Dedup {
    expires: HashMap<DedupKey, Instant>,
    order: VecDeque<(DedupKey, Instant)>,
}

impl Dedup {
    /// Whether `key` was seen and has not expired; remembers it if not.
    pub(crate) fn seen(&mut self, key: DedupKey, now: Instant, memory: Duration) -> bool {
        if self.expires.get(&key).is_some_and(|&until| now < until) {
            return true;
        }
        let until = now.checked_add(memory).unwrap_or(now);
        self.expires.insert(key.clone(), until);
        self.order.push_back((key, until));
        while self.order.len() > DEDUP_CAPACITY {
            if let Some((old, old_until)) = self.order.pop_front() {
                // Only forget it if it was not remembered again since.
                if self.expires.get(&old) == Some(&old_until) {
                    self.expires.remove(&old);
                }
            }
        }
        false
    }
}

impl DedupKey {
    /// The key of `notice` from `origin`, and how long it is remembered.
    pub(crate) fn of(origin: &PushOrigin, notice: &Notice) -> (DedupKey, Duration) {
        match notice {
            Notice::Push(n) => (
                DedupKey::Push {
                    endpoint: origin.endpoint.clone(),
                    kind: n.kind(),
                    seq: n.seq(),
                    connection: (n.kind() == NotificationKind::Moving)
                        .then_some(origin.connection)
                        .flatten(),
                },
                PUSH_MEMORY,
            ),
            Notice::Azure(e) => {
                let mut event = e.clone();
                event.received_at = UNIX_EPOCH;
                (
                    DedupKey::Azure {
                        endpoint: origin.endpoint.clone(),
                        event,
                    },
                    AZURE_MEMORY,
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ep(s: &str) -> Endpoint {
        s.parse().unwrap()
    }

    #[test]
    fn dedup_memory_is_bounded() {
        let mut d = Dedup::default();
        let now = Instant::now();
        let key = |seq| DedupKey::Push {
            endpoint: ep("h:1"),
            kind: NotificationKind::Migrated,
            seq,
            connection: None,
        };
        for seq in 0..(DEDUP_CAPACITY as u64 * 3) {
            assert!(!d.seen(key(seq), now, PUSH_MEMORY));
        }
        assert!(d.expires.len() <= DEDUP_CAPACITY && d.order.len() <= DEDUP_CAPACITY);
        // The oldest were forgotten, the newest are remembered.
        assert!(!d.seen(key(0), now, PUSH_MEMORY));
        assert!(d.seen(key(DEDUP_CAPACITY as u64 * 3 - 1), now, PUSH_MEMORY));
        // And entries expire.
        assert!(!d.seen(
            key(0),
            now + PUSH_MEMORY + Duration::from_secs(1),
            PUSH_MEMORY
        ));
    }
}
