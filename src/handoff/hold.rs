//! Each channel's messages in the order they were published, across a handoff.
//!
//! A handoff makes before it breaks: the new connection subscribes to the stack's channels
//! before the old one unsubscribes, so that nothing published in between is lost. For that
//! moment both connections deliver the same channels, read by two I/O tasks that do not wait
//! for each other: left alone, the new connection could pass on a message while an older one
//! is still on its way on the old connection, and a subscriber would see the channel out of
//! order.
//!
//! So the new connection's Pub/Sub messages (`message`, `pmessage`, `smessage`) are held from
//! the moment it is prepared until the old connection has answered its unsubscribes. Those
//! answers come on the old connection's one stream of replies and pushes, after every message
//! it carried, and it delivers none of those channels after them. Then the held messages are
//! passed on, in the order they came, before anything the new connection reads later. What a
//! subscriber sees of a channel is in publication order; what was published during the
//! overlap comes twice (once from each connection), the later copy right after the first
//! copies of the overlap, never before an older message.
//!
//! Only messages wait. Every other push (subscription confirmations, maintenance
//! notifications, the Azure events channel, client-side caching invalidations) passes at once.
//!
//! # Bounds
//! - **Time**: the hold opens at the latest [`HOLD_FOR`] after the switch, answered or not
//!   (an old connection that stopped answering is closed by its own liveness checks, which can
//!   take longer). Past that, the order is no longer promised, and a warning says so.
//! - **Size**: at most half a subscriber's queue of messages is held ([`HOLD_AT_MOST`] at
//!   most), so that passing them on at once fits the queue of a subscriber that keeps up; one
//!   more opens the hold (with a warning), so a flood during a slow release costs bounded
//!   memory and loses nothing.
//! - **Chains**: a hold made while the previous one is still closed (two handoffs within the
//!   bound) opens that one first when it opens, so what the previous one held comes before
//!   what it held. If the connection two handoffs back has not released yet by then, its last
//!   messages can still come after: order is kept across one overlap at a time.
//! - **Reconnects**: a connection made after an unannounced loss holds nothing (there is no
//!   live connection before it); if the lost one's own hold was still closed, its messages
//!   come when that hold opens, possibly after newer ones of the reconnected connection.
//!
//! A connection prepared but never switched to (a newer `MOVING` superseded it) drops its
//! hold with it: what it held was also delivered by the connection that stayed current.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use redis_protocol::resp3::types::BytesFrame;

use crate::connection::PushHub;

/// How long after the switch the new connection's messages are held at most.
pub(super) const HOLD_FOR: Duration = Duration::from_secs(1);

/// How many of the new connection's messages are held at most (and never more than half a
/// subscriber's queue).
pub(super) const HOLD_AT_MOST: usize = 10_000;

/// The Pub/Sub messages of a new connection, held until the connection it replaces has
/// delivered its last ones (see the module docs).
pub(super) struct Hold {
    // The stack's hub, where the held messages go.
    to: Weak<PushHub>,
    limit: usize,
    // Cleared once the hold has opened (after what it held was passed on), so that the
    // connection's messages from then on pass without taking the lock.
    closed: AtomicBool,
    state: Mutex<State>,
}

enum State {
    Holding {
        frames: Vec<BytesFrame>,
        // The hold of the connection being replaced, if it is still closed.
        before: Option<Arc<Hold>>,
    },
    Open,
}

impl Hold {
    /// A hold for a connection whose messages go to `to`: closed when `closed` (an older
    /// connection still delivers the stack's channels), open otherwise. `before`, for a
    /// closed hold, is the replaced connection's hold if still closed: opened first.
    pub(super) fn new(to: &Arc<PushHub>, closed: bool, before: Option<Arc<Hold>>) -> Arc<Self> {
        let state = if closed {
            State::Holding {
                frames: Vec::new(),
                before,
            }
        } else {
            State::Open
        };
        Arc::new(Hold {
            to: Arc::downgrade(to),
            limit: (to.capacity() / 2).clamp(1, HOLD_AT_MOST),
            closed: AtomicBool::new(closed),
            state: Mutex::new(state),
        })
    }

    /// Whether the hold is still closed.
    pub(super) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Keeps `frame` (on its connection's I/O task, for a push bound for the stack) when the
    /// hold is closed and it is a Pub/Sub message; whether it did. A frame not kept is passed
    /// on by the caller, after everything the hold kept before it.
    pub(super) fn keep(&self, frame: &BytesFrame) -> bool {
        if !self.is_closed() || !super::is_message(frame) {
            return false;
        }
        let mut state = self.lock();
        let State::Holding { frames, .. } = &mut *state else {
            return false;
        };
        if frames.len() >= self.limit {
            tracing::warn!(
                held = frames.len(),
                "the old connection is slow to release its subscriptions: passing on the new one's messages now (their order across the handoff is no longer kept)"
            );
            self.open_locked(&mut state);
            return false;
        }
        frames.push(frame.clone());
        true
    }

    /// Passes on what was held, in order; from now on nothing is held.
    pub(super) fn open(&self) {
        let mut state = self.lock();
        self.open_locked(&mut state);
    }

    // Under the lock, so that a frame the connection reads meanwhile waits in `keep` and goes
    // after the held ones.
    fn open_locked(&self, state: &mut State) {
        let State::Holding { frames, before } = std::mem::replace(state, State::Open) else {
            return;
        };
        if let Some(before) = before {
            before.open();
        }
        if let Some(to) = self.to.upgrade() {
            for frame in frames {
                to.publish(frame);
            }
        }
        // Only now: a frame that passes without the lock comes after the held ones.
        self.closed.store(false, Ordering::Release);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn push(words: &[&str]) -> BytesFrame {
        BytesFrame::Push {
            data: words
                .iter()
                .map(|w| BytesFrame::BlobString {
                    data: Bytes::copy_from_slice(w.as_bytes()),
                    attributes: None,
                })
                .collect(),
            attributes: None,
        }
    }

    fn hub() -> Arc<PushHub> {
        Arc::new(PushHub::new(
            crate::endpoint::Endpoint::new("127.0.0.1", 6379),
            64,
        ))
    }

    fn drain(pushes: &mut crate::connection::Pushes) -> Vec<String> {
        let mut out = Vec::new();
        while let Some(f) = pushes.try_recv() {
            let BytesFrame::Push { data, .. } = f else {
                continue;
            };
            let words: Vec<String> = data
                .iter()
                .filter_map(crate::frame::text)
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .collect();
            out.push(words.join(" "));
        }
        out
    }

    #[test]
    fn a_closed_hold_keeps_messages_until_opened_and_passes_everything_else() {
        let hub = hub();
        let mut pushes = hub.subscribe();
        let hold = Hold::new(&hub, true, None);
        assert!(hold.keep(&push(&["message", "ch", "1"])));
        assert!(hold.keep(&push(&["smessage", "sh", "2"])));
        assert!(!hold.keep(&push(&["subscribe", "ch", "1"])));
        assert!(!hold.keep(&push(&["MOVING", "1", "2", "127.0.0.1:1"])));
        assert!(!hold.keep(&push(&["message", "AzureRedisEvents", "x"])));
        assert!(drain(&mut pushes).is_empty());
        hold.open();
        assert_eq!(drain(&mut pushes), ["message ch 1", "smessage sh 2"]);
        assert!(!hold.is_closed());
        assert!(!hold.keep(&push(&["message", "ch", "3"])));
    }

    #[test]
    fn an_open_hold_keeps_nothing() {
        let hub = hub();
        let hold = Hold::new(&hub, false, None);
        assert!(!hold.keep(&push(&["message", "ch", "1"])));
    }

    #[test]
    fn a_hold_opens_the_one_before_it_first() {
        let hub = hub();
        let mut pushes = hub.subscribe();
        let first = Hold::new(&hub, true, None);
        let second = Hold::new(&hub, true, Some(first.clone()));
        assert!(first.keep(&push(&["message", "ch", "1"])));
        assert!(second.keep(&push(&["message", "ch", "2"])));
        second.open();
        assert_eq!(drain(&mut pushes), ["message ch 1", "message ch 2"]);
        assert!(!first.is_closed());
    }

    #[test]
    fn a_full_hold_opens_and_loses_nothing() {
        let hub = hub();
        let mut pushes = hub.subscribe();
        let hold = Hold::new(&hub, true, None);
        // Half the subscriber's queue of 64: all of it fits when passed on at once.
        for n in 0..32 {
            assert!(hold.keep(&push(&["message", "ch", &n.to_string()])));
        }
        assert!(!hold.keep(&push(&["message", "ch", "last"])));
        assert!(!hold.is_closed());
        assert_eq!(drain(&mut pushes).len(), 32);
        assert_eq!(pushes.missed(), 0);
    }
}
