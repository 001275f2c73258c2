//! Classic Pub/Sub through the cluster: `SUBSCRIBE`, `PSUBSCRIBE` and their unsubscribes.
//!
//! A Redis Cluster passes every `PUBLISH` on to all its nodes, so a classic subscription works
//! on any node. The cluster keeps all of the caller's on one primary, the home, picked at random
//! among the connected ones by the first subscription command, and sends every later
//! subscription command there, so that an `UNSUBSCRIBE` reaches the node that holds the
//! subscription whatever happened to the slot map in between. The home's stack makes them
//! again after its own reconnects and handoffs.
//!
//! The cluster also keeps what the caller subscribed (channels and patterns, from the commands
//! that succeeded: nothing else). When the home leaves the slot map (a primary that died and
//! was replaced by its replica, or a node removed from the cluster), the next refresh that
//! finds it gone subscribes them all on another connected primary, which becomes the home
//! ([`ClusterEvent::SubscriptionsMoved`](super::ClusterEvent::SubscriptionsMoved),
//! [`ClusterStats::subscription_moves`](super::ClusterStats)); the old home's stack is dropped
//! with the node, and its subscriptions end with its connection. A move that fails (no primary
//! connected, a refusal) is logged, counted in
//! [`ClusterStats::subscription_move_failures`](super::ClusterStats) and tried again at the
//! next refresh, or by the next subscription command.
//!
//! The confirmations of these re-subscriptions are kept out of
//! [`Cluster::pushes`](super::Cluster::pushes): the caller sees the confirmations of its own
//! commands and the messages. What is delivered: Redis Pub/Sub delivers at most once, to the
//! subscribers a node has when a message reaches it. Messages published while the home is dead
//! and before the new home's subscription is acknowledged (the failover time, then a round
//! trip) are missed; every later one is delivered.
//!
//! A home that stays in the map while it cannot be reached (a primary without a replica, down)
//! keeps the subscriptions: its stack makes them again when it is back.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use bytes::Bytes;
use redis_protocol::resp3::types::BytesFrame;
use tokio::time::Instant;
use tower::ServiceExt;

use super::{ClusterEvent, Inner};
use crate::command::{Command, SubscriptionKind};
use crate::endpoint::Endpoint;
use crate::error::Error;
use crate::request::ClusterAnswer;
use crate::stack::Stack;

/// What the cluster subscribed for the caller, and where.
#[derive(Debug, Default)]
struct State {
    home: Option<Endpoint>,
    channels: BTreeSet<Bytes>,
    patterns: BTreeSet<Bytes>,
    // The confirmations of the cluster's own re-subscriptions still to come: (node, pattern,
    // name) and how many.
    own: HashMap<(Endpoint, bool, Bytes), u32>,
}

impl State {
    /// Applies a subscription command that succeeded.
    fn apply(&mut self, kind: SubscriptionKind, names: &[Bytes]) {
        let (set, subscribe) = match kind {
            SubscriptionKind::Subscribe => (&mut self.channels, true),
            SubscriptionKind::PSubscribe => (&mut self.patterns, true),
            SubscriptionKind::Unsubscribe => (&mut self.channels, false),
            SubscriptionKind::PUnsubscribe => (&mut self.patterns, false),
            _ => return,
        };
        match (subscribe, names.is_empty()) {
            (true, _) => set.extend(names.iter().cloned()),
            // Without names: every one of the family.
            (false, true) => set.clear(),
            (false, false) => {
                for n in names {
                    set.remove(n);
                }
            }
        }
    }

    fn is_empty(&self) -> bool {
        self.channels.is_empty() && self.patterns.is_empty()
    }

    /// Whether a `subscribe`/`psubscribe` confirmation of `name` from `node` is one of the
    /// cluster's own (and then counts it off).
    fn hides(&mut self, node: &Endpoint, pattern: bool, name: &[u8]) -> bool {
        let key = (node.clone(), pattern, Bytes::copy_from_slice(name));
        match self.own.get_mut(&key) {
            Some(n) if *n > 1 => {
                *n -= 1;
                true
            }
            Some(_) => {
                self.own.remove(&key);
                true
            }
            None => false,
        }
    }

    fn expect_own(&mut self, node: &Endpoint) {
        for (pattern, set) in [(false, &self.channels), (true, &self.patterns)] {
            for name in set {
                *self
                    .own
                    .entry((node.clone(), pattern, name.clone()))
                    .or_insert(0) += 1;
            }
        }
    }

    fn forget_own(&mut self, node: &Endpoint) {
        self.own.retain(|(n, _, _), _| n != node);
    }
}

/// The classic subscriptions of one cluster; see the [module docs](self).
#[derive(Debug, Default)]
pub(crate) struct Classic {
    state: Mutex<State>,
    // The caller's subscription commands and the moves take turns.
    changing: tokio::sync::Mutex<()>,
}

impl Classic {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether a push from `node` goes on to the caller's stream (runs on the connection's
    /// task for every push: anything but a classic confirmation passes after a comparison or
    /// two).
    pub(crate) fn passes(&self, node: &Endpoint, frame: &BytesFrame) -> bool {
        let Some((kind, name)) = crate::frame::push_head(frame) else {
            return true;
        };
        let pattern = if kind.eq_ignore_ascii_case(b"subscribe") {
            false
        } else if kind.eq_ignore_ascii_case(b"psubscribe") {
            true
        } else {
            return true;
        };
        let mut state = self.lock();
        if state.own.is_empty() {
            return true;
        }
        !state.hides(node, pattern, name)
    }

    /// The home, if it is still a primary of the map.
    fn home_in_map(&self, inner: &Inner) -> Option<Stack> {
        let home = self.lock().home.clone()?;
        inner.routes.load().topology.index_of(&home)?;
        inner.stack_of(&home)
    }
}

/// The caller's classic subscription command, sent to the home (picked first if there is
/// none), and what it changed kept.
pub(crate) async fn command(
    inner: Arc<Inner>,
    command: Command,
    started: Instant,
) -> Result<ClusterAnswer, Error> {
    let deadline = started + inner.config.retry_budget;
    let classic = &inner.classic;
    let _turn = tokio::time::timeout_at(deadline, classic.changing.lock())
        .await
        .map_err(|_| Error::NotSent {
            reason: "Pub/Sub subscriptions were still being moved to another node when the \
                     retry budget ran out"
                .into(),
        })?;
    let stack = home(&inner).await?;
    let reply = stack.oneshot(command.clone()).await?;
    if let Some(sub) = command.subscription() {
        classic
            .lock()
            .apply(sub.kind, &command.subscription_names());
    }
    Ok(ClusterAnswer::One(reply))
}

/// The home's stack: the current one while it is a primary of the map; otherwise a connected
/// primary picked at random, where what the caller subscribed is made again first.
async fn home(inner: &Arc<Inner>) -> Result<Stack, Error> {
    let classic = &inner.classic;
    if let Some(stack) = classic.home_in_map(inner) {
        return Ok(stack);
    }
    let picked = inner
        .routes
        .load()
        .any()
        .cloned()
        .ok_or_else(|| Error::NotSent {
            reason: "no primary of the cluster is known to take Pub/Sub subscriptions".into(),
        })?;
    let to = picked.handoff().configured_endpoint().clone();
    let (from, channels, patterns) = {
        let mut state = classic.lock();
        state.expect_own(&to);
        (
            state.home.clone(),
            state.channels.iter().cloned().collect::<Vec<_>>(),
            state.patterns.iter().cloned().collect::<Vec<_>>(),
        )
    };
    let made = async {
        if !channels.is_empty() {
            let c = Command::new("SUBSCRIBE").args_from(channels.iter().map(|c| &c[..]));
            picked.clone().oneshot(c).await?;
        }
        if !patterns.is_empty() {
            let c = Command::new("PSUBSCRIBE").args_from(patterns.iter().map(|p| &p[..]));
            picked.clone().oneshot(c).await?;
        }
        Ok::<_, Error>(())
    }
    .await;
    let mut state = classic.lock();
    if let Err(e) = made {
        state.forget_own(&to);
        drop(state);
        inner
            .counters
            .subscription_move_failures
            .fetch_add(1, Ordering::Relaxed);
        tracing::warn!(to = %to, error = %e, "Pub/Sub subscriptions could not be made on another primary; tried again at the next refresh");
        return Err(e);
    }
    state.home = Some(to.clone());
    drop(state);
    if let Some(from) = from.filter(|_| !channels.is_empty() || !patterns.is_empty()) {
        inner
            .counters
            .subscription_moves
            .fetch_add(1, Ordering::Relaxed);
        tracing::info!(from = %from, to = %to, channels = channels.len(), patterns = patterns.len(), "Pub/Sub subscriptions moved to another primary (their node left the map)");
        inner.emit(ClusterEvent::SubscriptionsMoved {
            channels,
            patterns,
            from,
            to,
        });
    }
    Ok(picked)
}

/// After the map changed: when the home has left it and something is subscribed, the
/// subscriptions move (in the background, taking their turn).
pub(crate) fn map_changed(inner: &Arc<Inner>) {
    let classic = &inner.classic;
    {
        let state = classic.lock();
        if state.home.is_none() || state.is_empty() {
            return;
        }
    }
    if classic.home_in_map(inner).is_some() {
        return;
    }
    let weak: Weak<Inner> = Arc::downgrade(inner);
    tokio::spawn(async move {
        let Some(inner) = weak.upgrade() else { return };
        let _turn = inner.classic.changing.lock().await;
        // Errors are counted and logged where they happen; the next refresh tries again.
        let _ = home(&inner).await;
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    fn confirmation(kind: &str, name: &str) -> BytesFrame {
        BytesFrame::Push {
            data: vec![
                BytesFrame::BlobString {
                    data: b(kind),
                    attributes: None,
                },
                BytesFrame::BlobString {
                    data: b(name),
                    attributes: None,
                },
                BytesFrame::Number {
                    data: 1,
                    attributes: None,
                },
            ],
            attributes: None,
        }
    }

    #[test]
    fn what_succeeded_is_kept_and_an_unsubscribe_without_names_clears_its_family() {
        let mut s = State::default();
        s.apply(SubscriptionKind::Subscribe, &[b("a"), b("b")]);
        s.apply(SubscriptionKind::PSubscribe, &[b("n*")]);
        s.apply(SubscriptionKind::Unsubscribe, &[b("a")]);
        assert_eq!(s.channels.iter().collect::<Vec<_>>(), vec![&b("b")]);
        s.apply(SubscriptionKind::Unsubscribe, &[]);
        assert!(s.channels.is_empty());
        assert!(!s.is_empty(), "the pattern is still there");
        s.apply(SubscriptionKind::PUnsubscribe, &[]);
        assert!(s.is_empty());
    }

    #[test]
    fn only_the_clusters_own_confirmations_on_that_node_are_hidden_once_each() {
        let classic = Classic::default();
        let (home, other) = (
            Endpoint::new("127.0.0.1", 7000),
            Endpoint::new("127.0.0.1", 7001),
        );
        {
            let mut s = classic.lock();
            s.apply(SubscriptionKind::Subscribe, &[b("news")]);
            s.apply(SubscriptionKind::PSubscribe, &[b("n*")]);
            s.expect_own(&home);
        }
        assert!(classic.passes(&other, &confirmation("subscribe", "news")));
        assert!(classic.passes(&home, &confirmation("psubscribe", "news")));
        assert!(!classic.passes(&home, &confirmation("subscribe", "news")));
        assert!(!classic.passes(&home, &confirmation("psubscribe", "n*")));
        // Counted off: the caller's own next confirmation passes.
        assert!(classic.passes(&home, &confirmation("subscribe", "news")));
        assert!(classic.passes(&home, &confirmation("message", "news")));
    }
}
