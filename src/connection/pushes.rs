//! Push frames to their subscribers.
//!
//! Each subscriber has its own bounded queue. Tokio allocates a queue in small blocks as it
//! fills, so an idle connection pays almost nothing for its push buffering (a broadcast ring
//! would be allocated whole, per connection). A subscriber that falls a whole queue behind
//! misses the pushes that do not fit: they are counted, and the first miss is logged.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use redis_protocol::resp3::types::BytesFrame;
use tokio::sync::mpsc;

use crate::endpoint::Endpoint;

/// The subscribers of one connection's (or one stack's) pushes.
#[derive(Debug)]
pub(crate) struct PushHub {
    // None once the source has ended: new subscribers get a stream that ends at once.
    subscribers: Mutex<Option<Vec<Subscriber>>>,
    capacity: usize,
    unheard: AtomicU64,
    endpoint: Endpoint,
}

#[derive(Debug)]
struct Subscriber {
    tx: mpsc::Sender<BytesFrame>,
    missed: Arc<AtomicU64>,
}

impl PushHub {
    pub(crate) fn new(endpoint: Endpoint, capacity: usize) -> Self {
        PushHub {
            subscribers: Mutex::new(Some(Vec::new())),
            capacity: capacity.max(1),
            unheard: AtomicU64::new(0),
            endpoint,
        }
    }

    pub(crate) fn subscribe(&self) -> Pushes {
        let (tx, rx) = mpsc::channel(self.capacity);
        let missed = Arc::new(AtomicU64::new(0));
        let mut subs = self.subscribers.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(subs) = subs.as_mut() {
            subs.push(Subscriber {
                tx,
                missed: missed.clone(),
            });
        }
        Pushes {
            rx,
            missed,
            endpoint: self.endpoint.clone(),
        }
    }

    /// Hands a push to every subscriber.
    pub(crate) fn publish(&self, frame: BytesFrame) {
        let mut guard = self.subscribers.lock().unwrap_or_else(|p| p.into_inner());
        let Some(subs) = guard.as_mut() else { return };
        subs.retain(|s| !s.tx.is_closed());
        let Some((last, rest)) = subs.split_last() else {
            self.unheard.fetch_add(1, Ordering::Relaxed);
            return;
        };
        for s in rest {
            self.offer(s, frame.clone());
        }
        self.offer(last, frame);
    }

    fn offer(&self, s: &Subscriber, frame: BytesFrame) {
        if s.tx.try_send(frame).is_err() && s.missed.fetch_add(1, Ordering::Relaxed) == 0 {
            tracing::warn!(endpoint = %self.endpoint, capacity = self.capacity, "a push subscriber fell a whole queue behind and misses push frames");
        }
    }

    /// The source has ended: every subscriber's stream ends once drained.
    pub(crate) fn close(&self) {
        self.subscribers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
    }

    pub(crate) fn unheard(&self) -> u64 {
        self.unheard.load(Ordering::Relaxed)
    }
}

/// A subscription to push frames; see [`Connection::pushes`](super::Connection::pushes).
#[derive(Debug)]
pub struct Pushes {
    rx: mpsc::Receiver<BytesFrame>,
    missed: Arc<AtomicU64>,
    endpoint: Endpoint,
}

impl Pushes {
    /// The next push frame, or `None` once the source has closed and every push was seen.
    pub async fn recv(&mut self) -> Option<BytesFrame> {
        self.rx.recv().await
    }

    /// The next push frame if one is waiting, without blocking.
    pub fn try_recv(&mut self) -> Option<BytesFrame> {
        self.rx.try_recv().ok()
    }

    /// How many pushes this subscriber missed because its queue was full.
    pub fn missed(&self) -> u64 {
        self.missed.load(Ordering::Relaxed)
    }

    /// The endpoint these pushes come from.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }
}
