//! Sharded Pub/Sub through the cluster: which shard channels the caller subscribed, on which
//! node each is subscribed, and how a subscription follows its slot to a new owner.
//!
//! Every `SSUBSCRIBE` and `SUNSUBSCRIBE` sent through [`Cluster`](super::Cluster) goes through
//! here. The registry keeps, for each shard channel subscribed that way, the node it is
//! subscribed on (nothing else: its size is what the caller subscribed). A background task, the
//! follower, compares it with the slot map whenever one of these happens:
//!
//! | what happens | what the follower does |
//! |---|---|
//! | a node ends a subscription on its own (Redis 7 sends `sunsubscribe` to every subscriber of a slot's channels when the slot leaves the node) | the channel is marked lost; if the map still names that node, the topology is refreshed first; then the channel is subscribed on the slot's owner |
//! | a `SMIGRATED` or a `MOVED` moves slots that hold registered channels, or a refresh changes their owner | the channels are subscribed on the new owner, then unsubscribed on the old one (make before break) |
//! | a node announces with `SMIGRATING` that slots holding registered channels are moving | the importing node is read from the announcing node's `CLUSTER NODES` once the slot is `MIGRATING`, and the channels are subscribed there after `ASKING`, before the move completes (see [`ahead`]); when it completes, the two rows above find them there and only release the old node |
//!
//! What that guarantees: a move announced with `SMIGRATING`, subscribed ahead, loses nothing:
//! every message published after the caller's `SSUBSCRIBE` was acknowledged is delivered once
//! (the slot's shard channels are served by one node at a time). Without an announcement the
//! client cannot know the destination before the slot has moved, so a message published on the
//! new owner between the old owner's end of the subscription and the new one's
//! acknowledgement (about one round trip) is missed.
//!
//! Each re-subscription goes through the new owner's stack, so that stack makes it again after
//! its own reconnects and handoffs. The old node's stack lets go of it once the new one is
//! acknowledged: Redis ends the subscription itself when the slot leaves the node (the
//! cluster waits a little for that), and what the old node still holds after that is
//! unsubscribed there; a node that cannot be reached has its stack forget it (see `release`
//! for why the cluster does not simply send `SUNSUBSCRIBE` at once). A refusal
//! (`MOVED` again, `TRYAGAIN`, `CLUSTERDOWN`, a lost connection) is retried with backoff within
//! the [`retry_budget`](super::ClusterBuilder::retry_budget) and the
//! [`redirect_limit`](super::ClusterBuilder::redirect_limit); past them the move is given up
//! with a warning, counted in [`ClusterStats::shard_channel_failures`](super::ClusterStats),
//! reported as [`ClusterEvent::ShardChannelsNotMoved`], and tried again at the next change
//! of the map or refresh of the topology (at the earliest one retry budget later).
//!
//! The confirmations of the cluster's own `SSUBSCRIBE` and `SUNSUBSCRIBE`, and the server's
//! `sunsubscribe` of a channel the caller is still subscribed to, are kept out of
//! [`Cluster::pushes`](super::Cluster::pushes): the caller sees the confirmations of its own
//! commands, and the `smessage`s, nothing of the moves.
//!
//! # Decisions
//! - **One change at a time.** The caller's `SSUBSCRIBE` and `SUNSUBSCRIBE` and the
//!   follower's moves take turns (an async lock, waited for within the command's retry budget):
//!   each reads and writes the registry knowing nothing else is sending subscriptions. They
//!   are rare next to messages; a move holds the turn for its retries (one retry budget at
//!   most) and the release of the old node (a `PING`, at most [`RELEASE_GRACE`], and an
//!   `SUNSUBSCRIBE`, each bounded by the node's timeout).
//! - **The caller's `SUNSUBSCRIBE` goes where the channel is subscribed**, which is not always
//!   where the map sends its slot (a move may be under way); one without channels goes to every
//!   node that holds a registered channel, and its answer is their confirmations together.
//! - **The server's `sunsubscribe` is hidden**, not passed on: a reader of the stream who takes
//!   it for the end of the subscription would stop reading while the messages keep coming.
//! - **The refresh after a node ended subscriptions skips the cool-down.** Messages published
//!   on the new owner before the subscription is made there are missed, so that refresh runs
//!   at once (one `CLUSTER SHARDS`, bounded by twice the refresh timeout) instead of waiting
//!   out the cool-down between refreshes (100 ms by default). It is one refresh per look at
//!   the registry, however many channels a slot held. If it fails or is itself behind, the
//!   old node answers the `SSUBSCRIBE` with a `MOVED` naming the new owner.
//! - **Subscribed ahead after `ASKING`, released after `ASKING`.** The node importing a slot
//!   answers a plain `SSUBSCRIBE` of its channels with `MOVED` to the source until the move
//!   completes, and serves one right after `ASKING`; the two go as one write, so nothing of
//!   another caller's falls between them. The releases of old nodes send their `SUNSUBSCRIBE`
//!   after `ASKING` too: a node that is not importing the slot ignores it, one that still is (a
//!   move announced and not carried out, the caller unsubscribing meanwhile) needs it.
//! - **A lost connection does not end an attempt.** `SSUBSCRIBE` and `SUNSUBSCRIBE` change
//!   nothing when sent twice, so unlike other commands they are sent again after a lost
//!   connection or a timeout (within the same bounds); the node where such an attempt may have
//!   subscribed is released if the subscription ends up elsewhere.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use bytes::Bytes;
use redis_protocol::resp3::types::BytesFrame;
use tokio::sync::{mpsc, Notify};
use tokio::time::Instant;
use tower::ServiceExt;

use super::classic::Classic;
use super::redirect::{self, Next};
use super::route::{self, Route};
use super::{send, ClusterEvent, Inner};
use crate::command::Command;
use crate::connection::PushHub;
use crate::endpoint::Endpoint;
use crate::error::Error;
use crate::maintenance::SlotRange;
use crate::reply::Reply;
use crate::request::{AskingSubscription, ClusterAnswer};
use crate::stack::Stack;

// ===== the registry =====

/// Where one registered shard channel is subscribed.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    /// The node (its stack's configured address).
    node: Endpoint,
    slot: u16,
    /// The node ended the subscription and it is not made again yet.
    lost: bool,
    /// Also subscribed on this node, the one importing the slot, ahead of a move announced
    /// with `SMIGRATING` (its stack's configured address).
    ahead: Option<Endpoint>,
}

/// Channels of one slot for the follower to subscribe on the slot's owner.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Move {
    from: Endpoint,
    slot: u16,
    channels: Vec<Bytes>,
    /// `from` ended them: nothing to release there, and a refresh may be needed first.
    lost: bool,
}

/// The shard channels subscribed through the cluster, and what is happening to them.
#[derive(Debug, Default)]
struct Registry {
    channels: HashMap<Bytes, Entry>,
    // The cluster's own subscription commands on their way, by node: their confirmations are
    // its own business.
    own: Vec<(Endpoint, Bytes)>,
    // Channels a node said it ended, with that node; read by the next plan. Only registered
    // channels get in.
    ended: HashMap<Bytes, Endpoint>,
}

impl Registry {
    /// Notes that `names` (of `slot`) are being subscribed on `node`; returns what each entry
    /// was before.
    fn place(
        &mut self,
        names: &[Bytes],
        slot: u16,
        node: &Endpoint,
    ) -> Vec<(Bytes, Option<Entry>)> {
        names
            .iter()
            .map(|n| {
                // Subscribed ahead elsewhere stays known, so that it is released or used.
                let ahead = self
                    .channels
                    .get(n)
                    .filter(|e| e.slot == slot)
                    .and_then(|e| e.ahead.clone())
                    .filter(|a| a != node);
                let entry = Entry {
                    node: node.clone(),
                    slot,
                    lost: false,
                    ahead,
                };
                (n.clone(), self.channels.insert(n.clone(), entry))
            })
            .collect()
    }

    /// Puts back entries as [`place`](Self::place) found them.
    fn restore(&mut self, before: Vec<(Bytes, Option<Entry>)>) {
        for (name, entry) in before {
            match entry {
                Some(e) => {
                    self.channels.insert(name, e);
                }
                None => {
                    self.channels.remove(&name);
                }
            }
        }
    }

    /// Takes `names` out (none: every channel); returns the entries taken.
    fn remove(&mut self, names: &[Bytes]) -> Vec<(Bytes, Entry)> {
        if names.is_empty() {
            self.ended.clear();
            return self.channels.drain().collect();
        }
        names
            .iter()
            .filter_map(|n| {
                self.ended.remove(n);
                self.channels.remove(n).map(|e| (n.clone(), e))
            })
            .collect()
    }

    /// `node` ended the subscription to `name`; whether that concerns a registered channel.
    fn ended(&mut self, node: &Endpoint, name: &Bytes) -> bool {
        match self.channels.get(name) {
            Some(e) if &e.node == node => {
                self.ended.insert(name.clone(), node.clone());
                true
            }
            _ => false,
        }
    }

    /// Whether a confirmation (`unsubscribe` for `sunsubscribe`, else `ssubscribe`) of `name`
    /// from `node` stays out of the caller's stream.
    fn hides(&self, node: &Endpoint, unsubscribe: bool, name: &[u8]) -> bool {
        if self
            .own
            .iter()
            .any(|(n, c)| n == node && c.as_ref() == name)
        {
            return true;
        }
        // Still registered: the caller did not unsubscribe, so the server ended it (or an old
        // node or connection let it go).
        unsubscribe && self.channels.contains_key(name)
    }

    fn own_start(&mut self, node: &Endpoint, names: &[Bytes]) {
        self.own
            .extend(names.iter().map(|n| (node.clone(), n.clone())));
    }

    fn own_end(&mut self, node: &Endpoint, names: &[Bytes]) {
        for name in names {
            if let Some(i) = self.own.iter().position(|(n, c)| n == node && c == name) {
                self.own.swap_remove(i);
            }
        }
    }

    /// What the follower has to do, given who owns each slot now: the channels their node
    /// ended, and those whose slot has another owner, by node and slot.
    fn plan(&mut self, owner: &dyn Fn(u16) -> Option<Endpoint>) -> Vec<Move> {
        for (name, node) in self.ended.drain() {
            if let Some(e) = self.channels.get_mut(&name) {
                if e.node == node {
                    e.lost = true;
                }
            }
        }
        let mut moves: BTreeMap<(u16, Endpoint, bool), Vec<Bytes>> = BTreeMap::new();
        for (name, e) in &self.channels {
            let elsewhere = owner(e.slot).is_some_and(|o| o != e.node);
            if e.lost || elsewhere {
                moves
                    .entry((e.slot, e.node.clone(), e.lost))
                    .or_default()
                    .push(name.clone());
            }
        }
        moves
            .into_iter()
            .map(|((slot, from, lost), mut channels)| {
                channels.sort();
                Move {
                    from,
                    slot,
                    channels,
                    lost,
                }
            })
            .collect()
    }

    /// `channels` are subscribed on `to` now, those still registered on `from`; returns them.
    fn settle(&mut self, channels: &[Bytes], from: &Endpoint, to: &Endpoint) -> Vec<Bytes> {
        channels
            .iter()
            .filter(|n| match self.channels.get_mut(*n) {
                Some(e) if &e.node == from => {
                    e.node = to.clone();
                    e.lost = false;
                    e.ahead = None;
                    true
                }
                _ => false,
            })
            .cloned()
            .collect()
    }

    /// Whether `node` holds a registered channel in `slots` that could be subscribed ahead.
    fn holds_in(&self, node: &Endpoint, slots: &[SlotRange]) -> bool {
        self.channels
            .iter()
            .any(|(name, e)| self.movable(name, e, node) && in_ranges(slots, e.slot))
    }

    /// The registered channels on `node` that could be subscribed ahead of their slot's move,
    /// by slot, for the slots `wanted` picks.
    fn ahead_candidates(
        &self,
        node: &Endpoint,
        wanted: &dyn Fn(u16) -> bool,
    ) -> BTreeMap<u16, Vec<Bytes>> {
        let mut by_slot: BTreeMap<u16, Vec<Bytes>> = BTreeMap::new();
        for (name, e) in &self.channels {
            if self.movable(name, e, node) && wanted(e.slot) {
                by_slot.entry(e.slot).or_default().push(name.clone());
            }
        }
        for names in by_slot.values_mut() {
            names.sort();
        }
        by_slot
    }

    /// Subscribed on `node`, held there, and not subscribed ahead anywhere yet.
    fn movable(&self, name: &Bytes, e: &Entry, node: &Endpoint) -> bool {
        &e.node == node && !e.lost && e.ahead.is_none() && !self.ended.contains_key(name)
    }

    /// Those of `names` (of `slot`) that are still as [`ahead_candidates`] found them.
    fn still_movable(&self, names: &[Bytes], slot: u16, node: &Endpoint) -> Vec<Bytes> {
        names
            .iter()
            .filter(|n| {
                self.channels
                    .get(*n)
                    .is_some_and(|e| e.slot == slot && self.movable(n, e, node))
            })
            .cloned()
            .collect()
    }

    /// `names`, still on `from`, are subscribed on `to` too; returns those marked.
    fn mark_ahead(&mut self, names: &[Bytes], from: &Endpoint, to: &Endpoint) -> Vec<Bytes> {
        names
            .iter()
            .filter(|n| match self.channels.get_mut(*n) {
                Some(e) if &e.node == from && e.ahead.is_none() => {
                    e.ahead = Some(to.clone());
                    true
                }
                _ => false,
            })
            .cloned()
            .collect()
    }

    /// The node all of `names` (on `from`) are subscribed on ahead, if they all are on one.
    fn ahead_of(&self, names: &[Bytes], from: &Endpoint) -> Option<Endpoint> {
        let mut found: Option<&Endpoint> = None;
        for name in names {
            let e = self.channels.get(name).filter(|e| &e.node == from)?;
            let a = e.ahead.as_ref()?;
            if found.is_some_and(|f| f != a) {
                return None;
            }
            found = Some(a);
        }
        found.cloned()
    }

    /// The nodes some of `names` are subscribed on ahead, each with those names.
    fn ahead_nodes(&self, names: &[Bytes]) -> BTreeMap<Endpoint, Vec<Bytes>> {
        let mut nodes: BTreeMap<Endpoint, Vec<Bytes>> = BTreeMap::new();
        for name in names {
            if let Some(a) = self.channels.get(name).and_then(|e| e.ahead.clone()) {
                nodes.entry(a).or_default().push(name.clone());
            }
        }
        nodes
    }
}

fn in_ranges(ranges: &[SlotRange], slot: u16) -> bool {
    ranges.iter().any(|r| r.contains(slot))
}

// ===== the cluster's part =====

/// The registry with what the cluster needs around it: the turn, and the follower's wake-up.
pub(crate) struct ShardChannels {
    registry: Mutex<Registry>,
    // Whose turn it is to send subscription changes (see the module's decisions).
    changing: tokio::sync::Mutex<()>,
    // Capacity one: wake-ups that come while one is pending are the same wake-up.
    wake: mpsc::Sender<()>,
    // Told whenever a node ends a shard channel subscription, registered or not.
    noticed: Notify,
}

impl ShardChannels {
    /// An empty registry, and the receiver of the follower's wake-ups.
    pub(crate) fn new() -> (Arc<ShardChannels>, mpsc::Receiver<()>) {
        let (wake, wakes) = mpsc::channel(1);
        let this = ShardChannels {
            registry: Mutex::new(Registry::default()),
            changing: tokio::sync::Mutex::new(()),
            wake,
            noticed: Notify::new(),
        };
        (Arc::new(this), wakes)
    }

    fn lock(&self) -> MutexGuard<'_, Registry> {
        self.registry.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn wake(&self) {
        // Full: a wake-up is pending already, and it reads the registry as it is then.
        let _ = self.wake.try_send(());
    }

    /// The slot map changed (or was read again): the follower looks, when there is anything
    /// to follow.
    pub(crate) fn map_changed(&self) {
        if !self.lock().channels.is_empty() {
            self.wake();
        }
    }

    /// Whether `node` holds registered channels in `slots` that a move announced with
    /// `SMIGRATING` could subscribe ahead on the importing node.
    pub(crate) fn holds_in(&self, node: &Endpoint, slots: &[SlotRange]) -> bool {
        self.lock().holds_in(node, slots)
    }

    /// Hands what `stack` (the node at `node`) hears to the cluster's stream `to`, all but
    /// the confirmations that belong to the follower, and has it say which shard channels the
    /// server ends.
    /// The confirmations of `classic`'s own re-subscriptions are held back too.
    pub(crate) fn watch(
        self: &Arc<Self>,
        node: &Endpoint,
        stack: &Stack,
        to: &Arc<PushHub>,
        classic: &Arc<Classic>,
    ) {
        let weak: Weak<ShardChannels> = Arc::downgrade(self);
        let classic: Weak<Classic> = Arc::downgrade(classic);
        let at = node.clone();
        stack.handoff().forward_pushes_filtered(
            to,
            Arc::new(move |frame| {
                weak.upgrade().is_none_or(|s| s.passes(&at, frame))
                    && classic.upgrade().is_none_or(|c| c.passes(&at, frame))
            }),
        );
        let weak: Weak<ShardChannels> = Arc::downgrade(self);
        let at = node.clone();
        stack
            .handoff()
            .on_shard_channel_ended(Arc::new(move |name| {
                if let Some(s) = weak.upgrade() {
                    if s.lock().ended(&at, name) {
                        s.wake();
                    }
                    s.noticed.notify_waiters();
                }
            }));
    }

    /// Whether a push from `node` goes on to the caller's stream. Runs on the connection's
    /// task for every push: anything but a shard confirmation passes after two comparisons.
    fn passes(&self, node: &Endpoint, frame: &BytesFrame) -> bool {
        let Some((kind, name)) = crate::frame::push_head(frame) else {
            return true;
        };
        let unsubscribe = if kind.eq_ignore_ascii_case(b"sunsubscribe") {
            true
        } else if kind.eq_ignore_ascii_case(b"ssubscribe") {
            false
        } else {
            return true;
        };
        !self.lock().hides(node, unsubscribe, name)
    }
}

/// The caller's `SSUBSCRIBE` or `SUNSUBSCRIBE`, registered as it goes.
pub(crate) async fn command(
    inner: Arc<Inner>,
    command: Command,
    started: Instant,
) -> Result<ClusterAnswer, Error> {
    let unsubscribe = command
        .subscription()
        .is_some_and(|s| s.kind.is_unsubscribe());
    let route = route::route(&command)?;
    let names = command.subscription_names();
    let slot = match route {
        Route::Slot(slot) => slot,
        // No channel: an `SSUBSCRIBE` the server refuses, or an `SUNSUBSCRIBE` of every one.
        _ if unsubscribe => {
            return unsubscribe_all(&inner, command, started).await;
        }
        route => return send::command(inner, command, route, None, started).await,
    };
    let deadline = started + inner.config.retry_budget;
    let _turn = take_turn(&inner, deadline).await?;
    if unsubscribe {
        let removed = inner.shard.lock().remove(&names);
        // Where they are subscribed, which a move under way may make another node than the
        // map's owner.
        let first = removed.first().and_then(|(_, e)| inner.stack_of(&e.node));
        let mut rest: Vec<Endpoint> = removed
            .iter()
            .map(|(_, e)| e.node.clone())
            .filter(|n| {
                first
                    .as_ref()
                    .is_none_or(|f| f.handoff().configured_endpoint() != n)
            })
            .collect();
        rest.sort();
        rest.dedup();
        let ahead = ahead_by_node(&removed);
        let (answer, _) = send(&inner, &command, slot, first, Mark::Nothing, deadline).await;
        if answer.is_err() {
            // What the caller asked for stands: not followed, and not made again by the node's
            // stack, which no longer passes on their messages should the node still hold them.
            for (name, entry) in &removed {
                if let Some(stack) = inner.stack_of(&entry.node) {
                    stack
                        .handoff()
                        .forget_shard_channels(std::slice::from_ref(name));
                }
            }
        }
        for node in rest {
            release_later(&inner, node, names.clone());
        }
        for (node, names) in ahead {
            release_later(&inner, node, names);
        }
        return answer.map(|(reply, _)| ClusterAnswer::One(reply));
    }
    let mut before = None;
    let (answer, uncertain) = send(
        &inner,
        &command,
        slot,
        None,
        Mark::Caller {
            names: &names,
            before: &mut before,
        },
        deadline,
    )
    .await;
    let before = before.unwrap_or_default();
    let mut stale: Vec<Endpoint> = uncertain;
    match &answer {
        Ok((_, node)) => {
            // Subscribed there before (the map had not followed a move yet): not any more.
            stale.extend(
                before
                    .iter()
                    .filter_map(|(_, e)| e.as_ref())
                    .filter(|e| !e.lost)
                    .map(|e| e.node.clone()),
            );
            stale.retain(|n| n != node);
        }
        Err(_) => inner.shard.lock().restore(before),
    }
    stale.sort();
    stale.dedup();
    for node in stale {
        release_later(&inner, node, names.clone());
    }
    answer.map(|(reply, _)| ClusterAnswer::One(reply))
}

/// Waits for the turn to change subscriptions (see the module's decisions), until `deadline`.
async fn take_turn(
    inner: &Inner,
    deadline: Instant,
) -> Result<tokio::sync::MutexGuard<'_, ()>, Error> {
    tokio::time::timeout_at(deadline, inner.shard.changing.lock())
        .await
        .map_err(|_| Error::NotSent {
            reason: "shard channel subscriptions were still being moved to their new nodes when \
                     the retry budget ran out"
                .into(),
        })
}

/// An `SUNSUBSCRIBE` of every shard channel: to every node that holds registered ones, or to
/// any node when none does.
async fn unsubscribe_all(
    inner: &Arc<Inner>,
    command: Command,
    started: Instant,
) -> Result<ClusterAnswer, Error> {
    let deadline = started + inner.config.retry_budget;
    let _turn = take_turn(inner, deadline).await?;
    let removed = inner.shard.lock().remove(&[]);
    let ahead = ahead_by_node(&removed);
    let mut nodes: Vec<Endpoint> = removed.into_iter().map(|(_, e)| e.node).collect();
    nodes.sort();
    nodes.dedup();
    let stacks: Vec<Stack> = nodes.iter().filter_map(|n| inner.stack_of(n)).collect();
    // Subscribed ahead on a node importing their slot: released there like an old node's.
    for (node, names) in ahead {
        release_later(inner, node, names);
    }
    if stacks.is_empty() {
        return send::command(inner.clone(), command, Route::Any, None, started).await;
    }
    let replies =
        futures_util::future::join_all(stacks.into_iter().map(|s| s.oneshot(command.clone())))
            .await;
    let mut confirmations = Vec::new();
    for reply in replies {
        match reply?.into_frame() {
            BytesFrame::Array { data, .. } => confirmations.extend(data),
            other => confirmations.push(other),
        }
    }
    Ok(ClusterAnswer::One(Reply::from(BytesFrame::Array {
        data: confirmations,
        attributes: None,
    })))
}

/// The channels of `removed` subscribed ahead somewhere, by that node.
fn ahead_by_node(removed: &[(Bytes, Entry)]) -> BTreeMap<Endpoint, Vec<Bytes>> {
    let mut nodes: BTreeMap<Endpoint, Vec<Bytes>> = BTreeMap::new();
    for (name, e) in removed {
        if let Some(a) = &e.ahead {
            nodes.entry(a.clone()).or_default().push(name.clone());
        }
    }
    nodes
}

/// What is noted around each attempt of a subscription command.
enum Mark<'a> {
    /// The caller's `SSUBSCRIBE`: its channels are placed on each node it is sent to; the
    /// entries as the first placement found them are kept in `before`.
    Caller {
        names: &'a [Bytes],
        before: &'a mut Option<Vec<(Bytes, Option<Entry>)>>,
    },
    /// The cluster's own command: its confirmations stay out of the caller's stream.
    Own(&'a [Bytes]),
    /// Nothing (the caller's `SUNSUBSCRIBE`, out of the registry already).
    Nothing,
}

/// Sends a subscription command for `slot` to `first` or to the slot's owner, following the
/// cluster's refusals and lost connections (sending one of these again is harmless) within
/// the redirect limit and `deadline`. Returns the reply and the node that gave it, and the
/// nodes where an attempt may have subscribed before its connection was lost or it timed out.
async fn send(
    inner: &Arc<Inner>,
    command: &Command,
    slot: u16,
    first: Option<Stack>,
    mut mark: Mark<'_>,
    deadline: Instant,
) -> (Result<(Reply, Endpoint), Error>, Vec<Endpoint>) {
    let route = Route::Slot(slot);
    let mut target = first;
    let mut uncertain = Vec::new();
    let mut followed = 0u32;
    let mut waits = 0u32;
    let mut bounces = redirect::Bounces::default();
    loop {
        let Some(stack) = target
            .take()
            .or_else(|| inner.routes.load().pick(&route).cloned())
        else {
            followed += 1;
            if followed > inner.config.redirect_limit || Instant::now() >= deadline {
                let error = Error::Redirects {
                    followed,
                    last: format!("no node of the cluster serves slot {slot}").into(),
                };
                return (Err(error), uncertain);
            }
            inner.reroute(deadline).await;
            continue;
        };
        let by = stack.handoff().configured_endpoint().clone();
        match &mut mark {
            Mark::Caller { names, before } => {
                let was = inner.shard.lock().place(names, slot, &by);
                before.get_or_insert(was);
            }
            Mark::Own(names) => inner.shard.lock().own_start(&by, names),
            Mark::Nothing => {}
        }
        let result = stack.oneshot(command.clone()).await;
        if let Mark::Own(names) = &mark {
            inner.shard.lock().own_end(&by, names);
        }
        let error = match result {
            Ok(reply) => return (Ok((reply, by)), uncertain),
            Err(e) => e,
        };
        let map = |e: Endpoint| inner.map(e);
        let next = match &error {
            Error::ConnectionLost { .. } | Error::Timeout { .. } => {
                uncertain.push(by.clone());
                Next::Wait { refresh: true }
            }
            // Redis serves a slot's shard channels on its old owner until the move is done:
            // an `ASK` is not expected; waiting lets the move finish.
            e => match redirect::next(e, &by, &map) {
                Next::Ask { .. } => Next::Wait { refresh: false },
                next => next,
            },
        };
        if next == Next::Stop {
            return (Err(error), uncertain);
        }
        // A `MOVED` back to a node that redirected this already: waited out, not counted (see
        // `redirect::Bounces`).
        let bounce = matches!(&next, Next::Moved { to, .. } if bounces.bounced(&by, to));
        if !bounce {
            followed += 1;
        }
        if followed > inner.config.redirect_limit || Instant::now() >= deadline {
            let error = match next {
                Next::Reroute => error,
                _ => send::exhausted(followed, &error),
            };
            return (Err(error), uncertain);
        }
        match next {
            Next::Moved { slot, to } => {
                if bounce {
                    inner.waited();
                    waits += 1;
                    let until = (Instant::now() + redirect::backoff(waits)).min(deadline);
                    tokio::time::sleep_until(until).await;
                }
                match inner.moved(slot, &to).await {
                    Ok(stack) => target = Some(stack),
                    Err(e) => return (Err(e), uncertain),
                }
            }
            Next::Wait { refresh } => {
                inner.waited();
                if refresh {
                    inner.refresh_lazily();
                }
                waits += 1;
                let until = (Instant::now() + redirect::backoff(waits)).min(deadline);
                tokio::time::sleep_until(until).await;
            }
            Next::Reroute => inner.reroute(deadline).await,
            Next::Ask { .. } | Next::Stop => {}
        }
    }
}

/// How long the old node is given to end a subscription by itself before the cluster sends
/// its `SUNSUBSCRIBE` (see [`release`]).
const RELEASE_GRACE: Duration = Duration::from_secs(1);

/// Lets go of `names` on `node`'s stack, once they are subscribed elsewhere: the node stops
/// delivering them and its stack stops making them again.
///
/// A node ends these subscriptions itself when their slot leaves it, and then answers a
/// `SUNSUBSCRIBE` that names them with `MOVED`. Its own `sunsubscribe` and the confirmation
/// of an `SUNSUBSCRIBE` look the same on the connection, so an `SUNSUBSCRIBE` sent while the
/// node's own is on its way would take it for its confirmation, and its `MOVED` would be
/// taken for the answer of the next command. So the cluster first waits for what the node has
/// sent already (a `PING` answered after it), then gives the node [`RELEASE_GRACE`] to end
/// them; only those it still holds then are unsubscribed. A node that cannot be reached has
/// its stack forget them without a word: its connection, and its subscriptions with it, are
/// gone or going.
async fn release(inner: &Arc<Inner>, node: &Endpoint, names: &[Bytes]) {
    let Some(stack) = inner.stack_of(node) else {
        return;
    };
    let held = |stack: &Stack| stack.handoff().tracked_shard_channels(names);
    if held(&stack).is_empty() {
        return;
    }
    if let Err(e) = stack.clone().oneshot(Command::new("PING")).await {
        tracing::debug!(node = %node, error = %e, "the old node of shard channels did not answer; its stack forgets them");
        stack.handoff().forget_shard_channels(names);
        return;
    }
    let deadline = Instant::now() + RELEASE_GRACE;
    let left = loop {
        let noticed = inner.shard.noticed.notified();
        tokio::pin!(noticed);
        noticed.as_mut().enable();
        let left = held(&stack);
        if left.is_empty() || tokio::time::timeout_at(deadline, noticed).await.is_err() {
            break held(&stack);
        }
    };
    if left.is_empty() {
        return;
    }
    inner.shard.lock().own_start(node, &left);
    // After `ASKING`: a node still importing the slot (one subscribed ahead of a move that
    // did not happen) serves it only so; to any other node it changes nothing.
    let result = stack
        .clone()
        .oneshot(AskingSubscription(
            Command::new("SUNSUBSCRIBE").args_from(&left),
        ))
        .await;
    inner.shard.lock().own_end(node, &left);
    if let Err(e) = result {
        tracing::debug!(node = %node, error = %e, "shard channels released on their old node");
        stack.handoff().forget_shard_channels(&left);
    }
}

/// [`release`] once the caller has its answer: in a task of its own, at its turn, of those of
/// `names` that are not registered on `node` by then.
fn release_later(inner: &Arc<Inner>, node: Endpoint, names: Vec<Bytes>) {
    let inner = inner.clone();
    tokio::spawn(async move {
        let _turn = inner.shard.changing.lock().await;
        let names: Vec<Bytes> = {
            let registry = inner.shard.lock();
            names
                .into_iter()
                .filter(|n| registry.channels.get(n).is_none_or(|e| e.node != node))
                .collect()
        };
        if !names.is_empty() {
            release(&inner, &node, &names).await;
        }
    });
}

/// The follower: follows the registered channels each time something may have moved them (see
/// the module docs), until the cluster is dropped.
pub(crate) async fn follow(weak: Weak<Inner>, mut wakes: mpsc::Receiver<()>) {
    while wakes.recv().await.is_some() {
        let pause = {
            let Some(inner) = weak.upgrade() else { return };
            let failed = follow_once(&inner).await;
            failed.then_some(inner.config.retry_budget)
        };
        if let Some(pause) = pause {
            // Not again at once: a cluster that refuses now is asked again after a while.
            tokio::time::sleep(pause).await;
        }
    }
}

/// One look at the registry and the map, and the moves it calls for; whether any failed.
async fn follow_once(inner: &Arc<Inner>) -> bool {
    let _turn = inner.shard.changing.lock().await;
    let owner = |slot: u16| inner.routes.load().topology.owner(slot).cloned();
    let moves = inner.shard.lock().plan(&owner);
    if moves.is_empty() {
        return false;
    }
    if moves
        .iter()
        .any(|m| m.lost && owner(m.slot).as_ref() == Some(&m.from))
    {
        // The node that ended them still serves their slot in the map: the map is behind.
        // Refreshed now, past the cool-down (see the module's decisions); should the refresh
        // fail or be behind as well, the node's `MOVED` corrects the map.
        let bound = inner.config.refresh_timeout * 2;
        match tokio::time::timeout(bound, inner.refresh_once()).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => {
                tracing::debug!(%error, "refresh before following shard channels failed")
            }
            Err(_) => tracing::debug!("refresh before following shard channels timed out"),
        }
    }
    let done =
        futures_util::future::join_all(moves.into_iter().map(|m| move_channels(inner, m))).await;
    done.contains(&false)
}

/// Subscribes `m`'s channels on their slot's owner, then releases them on their old node;
/// whether that worked (or was not needed after all).
async fn move_channels(inner: &Arc<Inner>, m: Move) -> bool {
    let owner = inner.routes.load().topology.owner(m.slot).cloned();
    if !m.lost && owner.as_ref().is_none_or(|o| o == &m.from) {
        // A refresh put the slot back where they are.
        return true;
    }
    if let Some(done) = settle_ahead(inner, &m, owner.as_ref()).await {
        return done;
    }
    // Subscribed ahead on a node that is not where they end up: released there after.
    let ahead = inner.shard.lock().ahead_nodes(&m.channels);
    let deadline = Instant::now() + inner.config.retry_budget;
    let command = Command::new("SSUBSCRIBE").args_from(&m.channels);
    let (answer, uncertain) = send(
        inner,
        &command,
        m.slot,
        None,
        Mark::Own(&m.channels),
        deadline,
    )
    .await;
    match answer {
        Ok((_, to)) => {
            let settled = inner.shard.lock().settle(&m.channels, &m.from, &to);
            if m.lost || to != m.from {
                report_moved(inner, &m, settled, &to, "subscribed on their slot's owner");
            }
            if to != m.from {
                // Made on the new owner first: only now let go of the old one.
                release(inner, &m.from, &m.channels).await;
            }
            for node in uncertain.iter().filter(|n| **n != to) {
                release(inner, node, &m.channels).await;
            }
            for (node, names) in ahead.iter().filter(|(n, _)| **n != to) {
                release(inner, node, names).await;
            }
            true
        }
        Err(error) => {
            inner
                .counters
                .shard_channel_failures
                .fetch_add(m.channels.len() as u64, Ordering::Relaxed);
            tracing::warn!(
                from = %m.from,
                slot = m.slot,
                channels = m.channels.len(),
                %error,
                "shard channels could not be subscribed on their slot's owner; tried again at \
                 the next change of the slot map"
            );
            for node in uncertain.iter().filter(|n| **n != m.from) {
                release(inner, node, &m.channels).await;
            }
            inner.emit(ClusterEvent::ShardChannelsNotMoved {
                channels: m.channels,
                from: m.from,
                reason: error.to_string().into(),
            });
            false
        }
    }
}

/// Completes `m` without a word to any node when its channels were subscribed ahead on the
/// node their slot went to: that is where they are now, and the old node is released. `None`
/// when they were not (or that node's stack no longer holds them): the move goes on as usual.
async fn settle_ahead(inner: &Arc<Inner>, m: &Move, owner: Option<&Endpoint>) -> Option<bool> {
    let ahead = inner.shard.lock().ahead_of(&m.channels, &m.from)?;
    // The old node ended them (its slot left it for the node it named), or the map gives the
    // slot to the node they are subscribed on ahead.
    if !(m.lost || owner == Some(&ahead)) {
        return None;
    }
    let stack = inner.stack_of(&ahead)?;
    if stack.handoff().tracked_shard_channels(&m.channels).len() != m.channels.len() {
        return None;
    }
    let settled = inner.shard.lock().settle(&m.channels, &m.from, &ahead);
    report_moved(
        inner,
        m,
        settled,
        &ahead,
        "moved with their slot: subscribed there since the move was announced",
    );
    release(inner, &m.from, &m.channels).await;
    Some(true)
}

/// Counts, logs and announces the channels of `m` now subscribed on `to` (none: nothing to say).
fn report_moved(inner: &Arc<Inner>, m: &Move, settled: Vec<Bytes>, to: &Endpoint, how: &str) {
    if settled.is_empty() {
        return;
    }
    inner
        .counters
        .shard_channels_moved
        .fetch_add(settled.len() as u64, Ordering::Relaxed);
    tracing::info!(
        from = %m.from,
        to = %to,
        slot = m.slot,
        channels = settled.len(),
        "shard channels {how}"
    );
    inner.emit(ClusterEvent::ShardChannelsMoved {
        channels: settled,
        from: m.from.clone(),
        to: to.clone(),
    });
}

// ===== subscribing ahead of an announced move =====

/// How often the announcing node is asked whether the move has started.
const AHEAD_POLL: Duration = Duration::from_millis(25);

/// How long after `SMIGRATING` the announcing node is asked, at most.
const AHEAD_LIMIT: Duration = Duration::from_secs(5);

/// After `node` announced with `SMIGRATING` that `slots` are moving: subscribes the registered
/// channels of those slots on the node importing them, before the move completes, so that no
/// message published on it is missed (see the module docs).
///
/// The importing node is not in the announcement. `node`'s `CLUSTER NODES` names it once the
/// slot is `MIGRATING` there (`[<slot>->-<node id>]` on its `myself` line), which may be a
/// while after the announcement: it is asked every [`AHEAD_POLL`] until then, for
/// [`AHEAD_LIMIT`] at most, and no more for a slot whose move is over (the map gives it to
/// another node, or its channels moved or ended). Then the channels are subscribed there after
/// `ASKING` (the importing node serves the slot's shard channels only so), through that node's
/// stack, and noted as subscribed on both. When the move completes, the follower finds them
/// there already and only releases the old node. A refusal leaves them to follow their slot as
/// without the announcement, counted and logged.
pub(crate) async fn ahead(weak: Weak<Inner>, node: Endpoint, slots: Vec<SlotRange>) {
    let deadline = Instant::now() + AHEAD_LIMIT;
    // Slots dealt with (subscribed ahead, refused, or moved already).
    let mut done: Vec<u16> = Vec::new();
    loop {
        let Some(inner) = weak.upgrade() else { return };
        let wanted = |slot: u16| {
            in_ranges(&slots, slot)
                && !done.contains(&slot)
                && inner.routes.load().topology.owner(slot) == Some(&node)
        };
        let waiting = inner.shard.lock().ahead_candidates(&node, &wanted);
        if waiting.is_empty() {
            return;
        }
        let Some(stack) = inner.stack_of(&node) else {
            return;
        };
        let bound = inner.config.refresh_timeout;
        let asked =
            tokio::time::timeout(bound, stack.oneshot(Command::new("CLUSTER").arg("NODES"))).await;
        match asked {
            Ok(Ok(reply)) => {
                let text = reply.frame();
                match crate::frame::text(text) {
                    Some(text) => {
                        let text = String::from_utf8_lossy(text);
                        for (slot, names) in waiting {
                            let Some(to) = importing_node(&text, slot) else {
                                continue;
                            };
                            done.push(slot);
                            let to = inner.map(to);
                            subscribe_ahead(&inner, &node, &to, slot, names, deadline).await;
                        }
                    }
                    None => {
                        tracing::debug!(node = %node, "CLUSTER NODES answered with no text; no shard channels subscribed ahead");
                        return;
                    }
                }
            }
            Ok(Err(error)) => {
                tracing::debug!(node = %node, %error, "CLUSTER NODES refused; no shard channels subscribed ahead");
                return;
            }
            Err(_) => tracing::debug!(node = %node, "CLUSTER NODES timed out"),
        }
        drop(inner);
        if Instant::now() + AHEAD_POLL >= deadline {
            tracing::debug!(node = %node, "the announced move did not start in time; its shard channels follow it when it completes");
            return;
        }
        tokio::time::sleep(AHEAD_POLL).await;
    }
}

/// Subscribes `names` (of `slot`, on `from`) on `to` after `ASKING`, at the follower's turn.
async fn subscribe_ahead(
    inner: &Arc<Inner>,
    from: &Endpoint,
    to: &Endpoint,
    slot: u16,
    names: Vec<Bytes>,
    deadline: Instant,
) {
    if to == from {
        return;
    }
    let Ok(_turn) = tokio::time::timeout_at(deadline, inner.shard.changing.lock()).await else {
        return;
    };
    // The turn may have been another's: what it changed counts.
    let names = inner.shard.lock().still_movable(&names, slot, from);
    if names.is_empty() {
        return;
    }
    let failed = |error: String| {
        inner
            .counters
            .shard_channels_ahead_failed
            .fetch_add(names.len() as u64, Ordering::Relaxed);
        tracing::warn!(
            from = %from,
            to = %to,
            slot,
            channels = names.len(),
            %error,
            "shard channels could not be subscribed on the node importing their slot; they \
             follow it when the move completes"
        );
    };
    let stack = match inner.ready_node(to).await {
        Ok(stack) => stack,
        Err(e) => return failed(e.to_string()),
    };
    inner.shard.lock().own_start(to, &names);
    let bound = inner.config.retry_budget;
    let result = tokio::time::timeout(
        bound,
        stack.oneshot(AskingSubscription(
            Command::new("SSUBSCRIBE").args_from(&names),
        )),
    )
    .await;
    inner.shard.lock().own_end(to, &names);
    match result {
        Ok(Ok(_)) => {
            let marked = inner.shard.lock().mark_ahead(&names, from, to);
            inner
                .counters
                .shard_channels_ahead
                .fetch_add(marked.len() as u64, Ordering::Relaxed);
            tracing::info!(
                from = %from,
                to = %to,
                slot,
                channels = marked.len(),
                "shard channels subscribed on the node importing their slot, ahead of the move"
            );
        }
        Ok(Err(e)) => {
            failed(e.to_string());
            // Should an attempt have subscribed before its connection was lost.
            release(inner, to, &names).await;
        }
        Err(_) => {
            failed(format!("no answer within {bound:?}"));
            release(inner, to, &names).await;
        }
    }
}

/// The node importing `slot` from the node whose `CLUSTER NODES` is `text`: its address, as
/// the line of the node id in the `myself` line's `[<slot>->-<node id>]` gives it.
fn importing_node(text: &str, slot: u16) -> Option<Endpoint> {
    let marker = format!("[{slot}->-");
    let id = text
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|f| {
            f.get(2)
                .is_some_and(|flags| flags.split(',').any(|x| x == "myself"))
        })?
        .into_iter()
        .skip(8)
        .find_map(|s| s.strip_prefix(marker.as_str())?.strip_suffix(']'))?
        .to_string();
    let line = text
        .lines()
        .find(|l| l.split_whitespace().next() == Some(id.as_str()))?;
    let addr = line.split_whitespace().nth(1)?;
    let addr = addr.split(['@', ',']).next()?;
    let (host, port) = addr.rsplit_once(':')?;
    let port: u16 = port.parse().ok()?;
    if host.is_empty() || port == 0 {
        return None;
    }
    let host = host.trim_start_matches('[').trim_end_matches(']');
    Some(Endpoint::new(host, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ep(port: u16) -> Endpoint {
        Endpoint::new("127.0.0.1", port)
    }

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    #[test]
    fn a_slot_that_changes_owner_moves_its_channels_by_node_and_slot() {
        let mut r = Registry::default();
        r.place(&[b("{a}1"), b("{a}2")], 1, &ep(1));
        r.place(&[b("{b}1")], 2, &ep(1));
        r.place(&[b("{c}1")], 3, &ep(2));
        // Everything where the map says: nothing to do.
        let owner = |slot: u16| Some(if slot == 3 { ep(2) } else { ep(1) });
        assert!(r.plan(&owner).is_empty());
        // Slot 1 goes to node 3: its two channels move together, the rest stays.
        let owner = |slot: u16| {
            Some(match slot {
                1 => ep(3),
                3 => ep(2),
                _ => ep(1),
            })
        };
        let moves = r.plan(&owner);
        assert_eq!(
            moves,
            [Move {
                from: ep(1),
                slot: 1,
                channels: vec![b("{a}1"), b("{a}2")],
                lost: false
            }]
        );
        // A slot no node serves in the map (a hole during a refresh) is left alone.
        let none = |_: u16| None;
        assert!(r.plan(&none).is_empty());
        assert_eq!(r.settle(&moves[0].channels, &ep(1), &ep(3)).len(), 2);
        assert!(r.plan(&owner).is_empty());
    }

    #[test]
    fn a_channel_its_node_ended_is_lost_until_subscribed_again() {
        let mut r = Registry::default();
        r.place(&[b("x"), b("y")], 7, &ep(1));
        // Another node's word does not count, nor one about a channel nobody registered.
        assert!(!r.ended(&ep(2), &b("x")));
        assert!(!r.ended(&ep(1), &b("z")));
        assert!(r.ended(&ep(1), &b("x")));
        // The map still names node 1: the move is a re-subscription, marked lost.
        let owner = |_: u16| Some(ep(1));
        let moves = r.plan(&owner);
        assert_eq!(moves.len(), 1);
        assert!(moves[0].lost);
        assert_eq!(moves[0].channels, [b("x")]);
        // Until it is settled, every plan has it again.
        assert_eq!(r.plan(&owner).len(), 1);
        assert_eq!(r.settle(&[b("x")], &ep(1), &ep(4)), [b("x")]);
        let owner = |_: u16| Some(ep(4));
        // y is on node 1 and the slot's owner is node 4 now: it moves, not lost.
        let moves = r.plan(&owner);
        assert_eq!(moves.len(), 1);
        assert_eq!(moves[0].channels, [b("y")]);
        assert!(!moves[0].lost);
    }

    #[test]
    fn the_callers_unsubscribe_takes_channels_out_and_stops_following() {
        let mut r = Registry::default();
        r.place(&[b("x"), b("y")], 7, &ep(1));
        r.ended(&ep(1), &b("x"));
        let removed = r.remove(&[b("x")]);
        assert_eq!(removed.len(), 1);
        let owner = |_: u16| Some(ep(2));
        let moves = r.plan(&owner);
        assert_eq!(moves.len(), 1);
        assert_eq!(moves[0].channels, [b("y")]);
        // Without names: all of them.
        assert_eq!(r.remove(&[]).len(), 1);
        assert!(r.plan(&owner).is_empty());
        assert!(r.channels.is_empty() && r.ended.is_empty());
    }

    #[test]
    fn the_importing_node_is_read_from_the_migrating_marker_of_the_myself_line() {
        let text = "210871fca63e 127.0.0.1:17102@27102 myself,master - 0 1 2 connected 5461-10922 [9930->-8e592a145414]\n\
                    8e592a145414 127.0.0.1:17103@27103 master - 0 1 3 connected 10923-16383\n\
                    0b30d02e22a2 127.0.0.1:17101@27101 master - 0 1 1 connected 0-5460 [9931->-210871fca63e]\n";
        assert_eq!(importing_node(text, 9930), Some(ep(17103)));
        // Another node's marker, or another slot's: nothing.
        assert_eq!(importing_node(text, 9931), None);
        assert_eq!(importing_node(text, 9929), None);
        // An importing marker on the myself line is not a migrating one.
        let importing = "aa 127.0.0.1:1@2 myself,master - 0 1 1 connected [5-<-bb]\nbb 127.0.0.1:2@3 master - 0 1 1 connected 5\n";
        assert_eq!(importing_node(importing, 5), None);
        // A node id with no address yet.
        let unknown = "aa 127.0.0.1:1@2 myself,master - 0 1 1 connected 5 [5->-bb]\nbb :0@0 master,noaddr - 0 1 1 connected\n";
        assert_eq!(importing_node(unknown, 5), None);
    }

    #[test]
    fn a_channel_subscribed_ahead_is_marked_once_and_cleared_when_it_settles() {
        let mut r = Registry::default();
        r.place(&[b("x"), b("y")], 7, &ep(1));
        let slots = [SlotRange::new(7, 7).unwrap()];
        assert!(r.holds_in(&ep(1), &slots));
        assert!(!r.holds_in(&ep(2), &slots));
        let all = |_: u16| true;
        assert_eq!(r.ahead_candidates(&ep(1), &all)[&7], [b("x"), b("y")]);
        assert_eq!(r.mark_ahead(&[b("x"), b("y")], &ep(1), &ep(2)).len(), 2);
        // Marked: not a candidate again, nor marked twice.
        assert!(!r.holds_in(&ep(1), &slots));
        assert!(r.mark_ahead(&[b("x")], &ep(1), &ep(3)).is_empty());
        assert_eq!(r.ahead_of(&[b("x"), b("y")], &ep(1)), Some(ep(2)));
        // The caller subscribing again keeps it known.
        r.place(&[b("x")], 7, &ep(1));
        assert_eq!(r.ahead_nodes(&[b("x")]).len(), 1);
        assert_eq!(r.settle(&[b("x"), b("y")], &ep(1), &ep(2)).len(), 2);
        assert_eq!(r.ahead_of(&[b("x")], &ep(2)), None);
        assert!(r.ahead_nodes(&[b("x"), b("y")]).is_empty());
        // A channel its node ended is no candidate.
        r.ended(&ep(2), &b("x"));
        assert_eq!(r.ahead_candidates(&ep(2), &all)[&7], [b("y")]);
    }

    #[test]
    fn a_failed_subscribe_puts_back_what_was_there() {
        let mut r = Registry::default();
        r.place(&[b("x")], 7, &ep(1));
        let before = r.place(&[b("x"), b("new")], 7, &ep(2));
        r.restore(before);
        assert_eq!(r.channels.len(), 1);
        assert_eq!(r.channels[&b("x")].node, ep(1));
    }

    #[test]
    fn only_the_clusters_own_confirmations_and_server_ends_of_registered_channels_are_hidden() {
        let mut r = Registry::default();
        // Not registered: the caller's own confirmations pass.
        assert!(!r.hides(&ep(1), false, b"x"));
        assert!(!r.hides(&ep(1), true, b"x"));
        r.place(&[b("x")], 7, &ep(1));
        // The caller's SSUBSCRIBE confirmation passes; an sunsubscribe of a channel still
        // registered is the server's (or an old node's), and is hidden.
        assert!(!r.hides(&ep(1), false, b"x"));
        assert!(r.hides(&ep(1), true, b"x"));
        assert!(r.hides(&ep(2), true, b"x"));
        // The follower's own commands: both confirmations, on the node they went to only.
        r.own_start(&ep(2), &[b("y")]);
        assert!(r.hides(&ep(2), false, b"y"));
        assert!(!r.hides(&ep(3), false, b"y"));
        r.own_end(&ep(2), &[b("y")]);
        assert!(!r.hides(&ep(2), false, b"y"));
        assert!(r.own.is_empty());
    }
}
