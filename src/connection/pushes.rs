//! Push frames to their subscribers.
//!
//! Each subscriber has its own bounded queue. Tokio allocates a queue in small blocks as it
//! fills, so an idle connection pays almost nothing for its push buffering (a broadcast ring
//! would be allocated whole, per connection). A subscriber that falls a whole queue behind
//! misses the pushes that do not fit: they are counted, and the first miss is logged.
//!
//! Maintenance frames (`MOVING`, `MIGRATING`, ..., and messages on `AzureRedisEvents`) are never
//! the ones dropped: a subscription made with [`PushHub::subscribe_keeping_maintenance`] (the
//! one the notification demux reads on the connections it makes) gets them on an unbounded lane of their own, read first,
//! so a flood of Pub/Sub messages cannot push a `MOVING` out of the queue.
//!
//! A hub can also forward to another hub ([`PushHub::forward_to`]): a connection's pushes go to
//! its stack's hub, a stack's to its pool's, at once and in order, on the I/O task that read
//! them. Only the queue of the subscriber at the end of that chain is bounded, so a burst is
//! lost only by a reader that really falls behind, never by a hop in between.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::Poll;

use redis_protocol::resp3::types::BytesFrame;
use tokio::sync::mpsc;

use crate::endpoint::Endpoint;

/// The subscribers of one connection's (or one stack's) pushes.
pub(crate) struct PushHub {
    // None once the source has ended: new subscribers get a stream that ends at once.
    subscribers: Mutex<Option<Vec<Subscriber>>>,
    // Hubs this one hands every push to (with what each lets through); kept after the source
    // ends, since a forward target outlives it.
    forwards: Mutex<Vec<Forward>>,
    capacity: usize,
    unheard: AtomicU64,
    endpoint: Endpoint,
}

/// Which pushes a forward lets through.
pub(crate) type PushFilter = Arc<dyn Fn(&BytesFrame) -> bool + Send + Sync>;

struct Forward {
    to: Weak<PushHub>,
    filter: Option<PushFilter>,
}

impl fmt::Debug for PushHub {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PushHub")
            .field("endpoint", &self.endpoint)
            .field("capacity", &self.capacity)
            .finish_non_exhaustive()
    }
}

#[derive(Debug)]
struct Subscriber {
    // Boxed: a channel allocates its first block of slots when made, and a frame is large
    // while a box is a pointer; pushes are rare next to replies.
    tx: mpsc::Sender<Box<BytesFrame>>,
    missed: Arc<AtomicU64>,
    // The lane for maintenance frames, for a subscription that must see every one of them.
    maintenance: Option<mpsc::UnboundedSender<Box<BytesFrame>>>,
}

impl PushHub {
    pub(crate) fn new(endpoint: Endpoint, capacity: usize) -> Self {
        PushHub {
            subscribers: Mutex::new(Some(Vec::new())),
            forwards: Mutex::new(Vec::new()),
            capacity: capacity.max(1),
            unheard: AtomicU64::new(0),
            endpoint,
        }
    }

    /// How many pushes a subscriber's queue holds.
    pub(crate) fn capacity(&self) -> usize {
        self.capacity
    }

    pub(crate) fn subscribe(&self) -> Pushes {
        self.subscribe_with(false)
    }

    /// Hands every push from now on to `to` as well, those `filter` accepts when there is one,
    /// until `to` is dropped.
    pub(crate) fn forward_to(&self, to: &Arc<PushHub>, filter: Option<PushFilter>) {
        self.forwards
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Forward {
                to: Arc::downgrade(to),
                filter,
            });
    }

    /// A subscription that gets every maintenance frame, however far behind it falls.
    pub(crate) fn subscribe_keeping_maintenance(&self) -> Pushes {
        self.subscribe_with(true)
    }

    fn subscribe_with(&self, keep_maintenance: bool) -> Pushes {
        let (tx, rx) = mpsc::channel(self.capacity);
        let (maintenance, lane) = if keep_maintenance {
            let (tx, rx) = mpsc::unbounded_channel();
            (Some(tx), Some(rx))
        } else {
            (None, None)
        };
        let missed = Arc::new(AtomicU64::new(0));
        let mut subs = self.subscribers.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(subs) = subs.as_mut() {
            subs.push(Subscriber {
                tx,
                missed: missed.clone(),
                maintenance,
            });
        }
        Pushes {
            rx,
            lane,
            missed,
            endpoint: self.endpoint.clone(),
        }
    }

    /// Hands a push to every subscriber and forward.
    pub(crate) fn publish(&self, frame: BytesFrame) {
        let targets: Vec<Arc<PushHub>> = {
            let mut forwards = self.forwards.lock().unwrap_or_else(|p| p.into_inner());
            forwards.retain(|f| f.to.strong_count() > 0);
            forwards
                .iter()
                .filter(|f| f.filter.as_ref().is_none_or(|keep| keep(&frame)))
                .filter_map(|f| f.to.upgrade())
                .collect()
        };
        // Forwarded before this hub's lock is taken (each target takes its own).
        for t in &targets {
            t.publish(frame.clone());
        }
        let mut guard = self.subscribers.lock().unwrap_or_else(|p| p.into_inner());
        let Some(subs) = guard.as_mut() else { return };
        subs.retain(|s| !s.tx.is_closed());
        let Some((last, rest)) = subs.split_last() else {
            if targets.is_empty() {
                self.unheard.fetch_add(1, Ordering::Relaxed);
            }
            return;
        };
        for s in rest {
            self.offer(s, frame.clone());
        }
        self.offer(last, frame);
    }

    fn offer(&self, s: &Subscriber, frame: BytesFrame) {
        if let Some(lane) = &s.maintenance {
            if crate::maintenance::is_maintenance_frame(&frame) {
                let _ = lane.send(Box::new(frame));
                return;
            }
        }
        if s.tx.try_send(Box::new(frame)).is_err() && s.missed.fetch_add(1, Ordering::Relaxed) == 0
        {
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
    rx: mpsc::Receiver<Box<BytesFrame>>,
    // Maintenance frames, for the subscription that must see them all; read first.
    lane: Option<mpsc::UnboundedReceiver<Box<BytesFrame>>>,
    missed: Arc<AtomicU64>,
    endpoint: Endpoint,
}

impl Pushes {
    /// The next push frame, or `None` once the source has closed and every push was seen.
    pub async fn recv(&mut self) -> Option<BytesFrame> {
        std::future::poll_fn(|cx| {
            if let Some(lane) = self.lane.as_mut() {
                match lane.poll_recv(cx) {
                    Poll::Ready(Some(frame)) => return Poll::Ready(Some(*frame)),
                    Poll::Ready(None) => self.lane = None,
                    Poll::Pending => {}
                }
            }
            match self.rx.poll_recv(cx) {
                // The lane may still hold frames published before the source closed.
                Poll::Ready(None) if self.lane.is_some() => Poll::Pending,
                other => other.map(|frame| frame.map(|f| *f)),
            }
        })
        .await
    }

    /// The next push frame if one is waiting, without blocking.
    pub fn try_recv(&mut self) -> Option<BytesFrame> {
        if let Some(frame) = self.lane.as_mut().and_then(|l| l.try_recv().ok()) {
            return Some(*frame);
        }
        self.rx.try_recv().ok().map(|f| *f)
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

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn push(words: &[&'static str]) -> BytesFrame {
        BytesFrame::Push {
            data: words
                .iter()
                .map(|w| BytesFrame::BlobString {
                    data: Bytes::from_static(w.as_bytes()),
                    attributes: None,
                })
                .collect(),
            attributes: None,
        }
    }

    #[tokio::test]
    async fn a_flood_of_messages_never_pushes_out_a_maintenance_frame() {
        let hub = PushHub::new(Endpoint::new("127.0.0.1", 6379), 4);
        let mut plain = hub.subscribe();
        let mut demux = hub.subscribe_keeping_maintenance();
        for _ in 0..100 {
            hub.publish(push(&["message", "news", "x"]));
        }
        hub.publish(push(&["MOVING", "7", "15", "10.0.0.2:6379"]));
        hub.publish(push(&["message", "AzureRedisEvents", "{}"]));
        hub.close();
        let mut seen = Vec::new();
        while let Some(frame) = demux.recv().await {
            seen.push(frame);
        }
        // The two maintenance frames first (their lane is read first), then what fit.
        assert_eq!(seen.len(), 2 + 4);
        assert_eq!(seen[0], push(&["MOVING", "7", "15", "10.0.0.2:6379"]));
        assert_eq!(seen[1], push(&["message", "AzureRedisEvents", "{}"]));
        assert_eq!(demux.missed(), 96);
        // A plain subscriber is bounded for everything alike.
        let mut n = 0;
        while plain.recv().await.is_some() {
            n += 1;
        }
        assert_eq!((n, plain.missed()), (4, 98));
    }
}
