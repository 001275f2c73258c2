//! The Pub/Sub subscriptions of one connection, or of a stack across its connections.
//!
//! One type for both users: the I/O task keeps the sets current from the server's
//! confirmations (it needs their sizes to know how many confirmations an argument-less
//! `UNSUBSCRIBE` brings), and HandoffRetry keeps them from the commands it forwards (to make
//! them again on a new connection and release them on the old one).

use std::collections::{BTreeMap, HashSet};

use bytes::Bytes;

use crate::command::{Command, SubscriptionKind};

/// Subscribed channels, patterns and shard channels.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Subscriptions {
    channels: HashSet<Bytes>,
    patterns: HashSet<Bytes>,
    shard_channels: HashSet<Bytes>,
}

impl Subscriptions {
    fn set_mut(&mut self, kind: SubscriptionKind) -> &mut HashSet<Bytes> {
        match kind {
            SubscriptionKind::Subscribe | SubscriptionKind::Unsubscribe => &mut self.channels,
            SubscriptionKind::PSubscribe | SubscriptionKind::PUnsubscribe => &mut self.patterns,
            SubscriptionKind::SSubscribe | SubscriptionKind::SUnsubscribe => {
                &mut self.shard_channels
            }
        }
    }

    /// How many names the family of `kind` holds.
    pub(crate) fn len(&self, kind: SubscriptionKind) -> usize {
        match kind {
            SubscriptionKind::Subscribe | SubscriptionKind::Unsubscribe => self.channels.len(),
            SubscriptionKind::PSubscribe | SubscriptionKind::PUnsubscribe => self.patterns.len(),
            SubscriptionKind::SSubscribe | SubscriptionKind::SUnsubscribe => {
                self.shard_channels.len()
            }
        }
    }

    /// Applies one confirmation (or one name of a command): adds `name` for a subscribe,
    /// removes it for an unsubscribe.
    /// Whether `name` is subscribed in the family of `kind`.
    pub(crate) fn contains(&self, kind: SubscriptionKind, name: &[u8]) -> bool {
        match kind {
            SubscriptionKind::Subscribe | SubscriptionKind::Unsubscribe => {
                self.channels.contains(name)
            }
            SubscriptionKind::PSubscribe | SubscriptionKind::PUnsubscribe => {
                self.patterns.contains(name)
            }
            SubscriptionKind::SSubscribe | SubscriptionKind::SUnsubscribe => {
                self.shard_channels.contains(name)
            }
        }
    }

    /// The channels subscribed with `SUBSCRIBE`.
    pub(crate) fn channels(&self) -> impl Iterator<Item = &Bytes> {
        self.channels.iter()
    }

    pub(crate) fn apply(&mut self, kind: SubscriptionKind, name: &Bytes) {
        let set = self.set_mut(kind);
        if kind.is_unsubscribe() {
            set.remove(name);
        } else if !set.contains(name) {
            set.insert(name.clone());
        }
    }

    /// Applies a subscribe-family command: every name it gives, or for an unsubscribe that
    /// names none, the whole family.
    pub(crate) fn track(&mut self, command: &Command) {
        let Some(sub) = command.subscription() else {
            return;
        };
        let names = command.args().skip(1);
        if sub.kind.is_unsubscribe() && names.len() == 0 {
            self.set_mut(sub.kind).clear();
            return;
        }
        for name in names {
            self.apply(sub.kind, &Bytes::copy_from_slice(name));
        }
    }

    /// Undoes [`track`](Self::track) of a subscribe command the server refused (`NOPERM`).
    pub(crate) fn untrack_refused(&mut self, command: &Command) {
        let Some(sub) = command.subscription().filter(|s| !s.kind.is_unsubscribe()) else {
            return;
        };
        let set = self.set_mut(sub.kind);
        for name in command.args().skip(1) {
            set.remove(name);
        }
    }

    /// The commands that put these subscriptions in place on a new connection.
    pub(crate) fn restore_commands(&self) -> Vec<Command> {
        let mut commands = Vec::new();
        for (subscribe, _, set) in self.families() {
            let sharded = subscribe == "SSUBSCRIBE";
            push_commands(&mut commands, subscribe, sharded, set.iter().collect());
        }
        commands
    }

    /// The commands that take a connection subscribed to `from` to these subscriptions: what
    /// changed since `from` was restored on it.
    pub(crate) fn commands_since(&self, from: &Subscriptions) -> Vec<Command> {
        let mut commands = Vec::new();
        for ((subscribe, unsubscribe, now), (_, _, then)) in self.families().zip(from.families()) {
            let sharded = subscribe == "SSUBSCRIBE";
            push_commands(
                &mut commands,
                subscribe,
                sharded,
                now.difference(then).collect(),
            );
            push_commands(
                &mut commands,
                unsubscribe,
                sharded,
                then.difference(now).collect(),
            );
        }
        commands
    }

    /// Every name in `self` or in `other`.
    pub(crate) fn union(&self, other: &Subscriptions) -> Subscriptions {
        let mut all = self.clone();
        all.channels.extend(other.channels.iter().cloned());
        all.patterns.extend(other.patterns.iter().cloned());
        all.shard_channels
            .extend(other.shard_channels.iter().cloned());
        all
    }

    /// The commands that end these subscriptions on an old connection. Redis answers each after
    /// every message it queued before it, so once they are answered the old connection has
    /// delivered all its messages and may close.
    pub(crate) fn release_commands(&self) -> Vec<Command> {
        self.families()
            .filter(|(_, _, set)| !set.is_empty())
            .map(|(_, unsubscribe, _)| Command::new(unsubscribe))
            .collect()
    }

    /// Each family: the command that subscribes, the one that unsubscribes from all, the names.
    fn families(&self) -> impl Iterator<Item = (&'static str, &'static str, &HashSet<Bytes>)> {
        [
            ("SUBSCRIBE", "UNSUBSCRIBE", &self.channels),
            ("PSUBSCRIBE", "PUNSUBSCRIBE", &self.patterns),
            ("SSUBSCRIBE", "SUNSUBSCRIBE", &self.shard_channels),
        ]
        .into_iter()
    }
}

/// Appends the `name` commands that give `names` (none when there are none): one command, or
/// for shard channels (`sharded`) one per hash slot, since a cluster node refuses an
/// `SSUBSCRIBE` or `SUNSUBSCRIBE` whose channels span slots (`CROSSSLOT`), even when it serves
/// them all.
fn push_commands(
    commands: &mut Vec<Command>,
    name: &'static str,
    sharded: bool,
    names: Vec<&Bytes>,
) {
    if names.is_empty() {
        return;
    }
    if !sharded {
        commands.push(Command::new(name).args_from(names));
        return;
    }
    let mut by_slot: BTreeMap<u16, Vec<&Bytes>> = BTreeMap::new();
    for n in names {
        by_slot
            .entry(crate::cluster::key_slot(n))
            .or_default()
            .push(n);
    }
    commands.extend(
        by_slot
            .into_values()
            .map(|group| Command::new(name).args_from(group)),
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cmd;

    #[test]
    fn commands_and_confirmations_keep_the_same_sets() {
        let mut subs = Subscriptions::default();
        subs.track(&cmd!("SUBSCRIBE", "a", "b", "a"));
        subs.track(&cmd!("PSUBSCRIBE", "p*"));
        assert_eq!(subs.len(SubscriptionKind::Subscribe), 2);
        subs.track(&cmd!("UNSUBSCRIBE", "a"));
        assert_eq!(subs.len(SubscriptionKind::Unsubscribe), 1);
        subs.apply(SubscriptionKind::SSubscribe, &Bytes::from_static(b"s"));
        assert_eq!(subs.restore_commands().len(), 3);
        subs.track(&cmd!("UNSUBSCRIBE"));
        assert_eq!(subs.len(SubscriptionKind::Subscribe), 0);
        let release: Vec<String> = subs
            .release_commands()
            .iter()
            .map(|c| c.name().to_string())
            .collect();
        assert_eq!(release, ["PUNSUBSCRIBE", "SUNSUBSCRIBE"]);
    }

    #[test]
    fn shard_channels_are_restored_one_slot_per_command() {
        let mut subs = Subscriptions::default();
        subs.track(&cmd!("SUBSCRIBE", "a", "b"));
        subs.track(&cmd!("SSUBSCRIBE", "{x}1", "{x}2"));
        subs.track(&cmd!("SSUBSCRIBE", "{y}1"));
        let restore = subs.restore_commands();
        assert_eq!(restore.len(), 3, "{restore:?}");
        for c in &restore {
            if c.name() == "SSUBSCRIBE" {
                let slots: HashSet<u16> = c.args().skip(1).map(crate::cluster::key_slot).collect();
                assert_eq!(slots.len(), 1, "{c:?}");
            }
        }
        let before = subs.clone();
        subs.track(&cmd!("SUNSUBSCRIBE", "{x}1"));
        subs.track(&cmd!("SSUBSCRIBE", "{z}1"));
        subs.track(&cmd!("SUNSUBSCRIBE", "{y}1"));
        let names: Vec<String> = subs
            .commands_since(&before)
            .iter()
            .map(|c| format!("{c:?}"))
            .collect();
        assert_eq!(names.len(), 3, "{names:?}");
    }
}
