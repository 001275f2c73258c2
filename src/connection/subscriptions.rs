//! The Pub/Sub subscriptions of one connection, or of a stack across its connections.
//!
//! One type for both users: the I/O task keeps the sets current from the server's
//! confirmations (it needs their sizes to know how many confirmations an argument-less
//! `UNSUBSCRIBE` brings), and HandoffRetry keeps them from the commands it forwards (to make
//! them again on a new connection and release them on the old one).

use std::collections::HashSet;

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
        self.families()
            .filter(|(_, _, set)| !set.is_empty())
            .map(|(subscribe, _, set)| Command::new(subscribe).args_from(set.iter()))
            .collect()
    }

    /// The commands that take a connection subscribed to `from` to these subscriptions: what
    /// changed since `from` was restored on it.
    pub(crate) fn commands_since(&self, from: &Subscriptions) -> Vec<Command> {
        let mut commands = Vec::new();
        for ((subscribe, unsubscribe, now), (_, _, then)) in self.families().zip(from.families()) {
            let added: Vec<&Bytes> = now.difference(then).collect();
            if !added.is_empty() {
                commands.push(Command::new(subscribe).args_from(added));
            }
            let removed: Vec<&Bytes> = then.difference(now).collect();
            if !removed.is_empty() {
                commands.push(Command::new(unsubscribe).args_from(removed));
            }
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
}
