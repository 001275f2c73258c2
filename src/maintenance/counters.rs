//! What the [`Maintenance`](crate::Maintenance) handle counts: notices received, dropped,
//! suppressed and skipped (for [`Maintenance::counts`](crate::Maintenance::counts)), and the
//! figures the layers of its stacks publish for observers: commands sent again, and the handoff
//! limiters of pools (read by [`Metrics`](crate::Metrics), which imports no layer).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use crate::maintenance::azure::AzureEventKind;
use crate::maintenance::hook::Notice;
use crate::maintenance::limiter::HandoffLimiter;
use crate::maintenance::notification::NotificationKind;

const AZURE_KINDS: usize = AzureEventKind::KNOWN.len() + 1;

/// The handle's live counters: one relaxed atomic each, bumped by the push pipeline.
#[derive(Default)]
pub(crate) struct Counters {
    pub(crate) notifications: [AtomicU64; NotificationKind::ALL.len()],
    pub(crate) azure: [AtomicU64; AZURE_KINDS],
    pub(crate) dropped: AtomicU64,
    pub(crate) duplicates: AtomicU64,
    pub(crate) skipped: AtomicU64,
}

impl Counters {
    /// Counts a notice as received (before the hooks and de-duplication).
    pub(crate) fn received(&self, notice: &Notice) {
        match notice {
            Notice::Push(n) => self.notifications[n.kind().index()].fetch_add(1, Ordering::Relaxed),
            Notice::Azure(e) => self.azure[e.kind.index()].fetch_add(1, Ordering::Relaxed),
        };
    }

    pub(crate) fn snapshot(&self) -> NotificationCounts {
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        NotificationCounts {
            notifications: std::array::from_fn(|i| load(&self.notifications[i])),
            azure: std::array::from_fn(|i| load(&self.azure[i])),
            dropped: load(&self.dropped),
            duplicates: load(&self.duplicates),
            skipped: load(&self.skipped),
        }
    }
}

/// A snapshot of a [`Maintenance`](crate::Maintenance) handle's counters; see [`Maintenance::counts`](crate::Maintenance::counts).
///
/// Notifications are counted as received, before the hooks and de-duplication, so a broadcast
/// that reaches several connections counts once per connection; [`duplicates`](Self::duplicates)
/// says how many of them were suppressed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NotificationCounts {
    notifications: [u64; NotificationKind::ALL.len()],
    azure: [u64; AZURE_KINDS],
    dropped: u64,
    duplicates: u64,
    skipped: u64,
}

impl NotificationCounts {
    /// How many notifications of this kind were received.
    pub fn notifications(&self, kind: NotificationKind) -> u64 {
        self.notifications[kind.index()]
    }

    /// How many Azure events of this kind were received (every unknown type counts under any
    /// `Unknown`).
    pub fn azure(&self, kind: &AzureEventKind) -> u64 {
        self.azure[kind.index()]
    }

    /// How many push notifications were received, of every kind.
    pub fn total_notifications(&self) -> u64 {
        self.notifications.iter().sum()
    }

    /// How many Azure events were received, of every kind.
    pub fn total_azure(&self) -> u64 {
        self.azure.iter().sum()
    }

    /// How many malformed notifications and Azure messages were dropped.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// How many repeats were suppressed.
    pub fn duplicates(&self) -> u64 {
        self.duplicates
    }

    /// How many were skipped by a pre-hook.
    pub fn skipped(&self) -> u64 {
        self.skipped
    }
}

/// What the stacks sharing a handle publish for observers.
#[derive(Default)]
pub(crate) struct Published {
    retries: RwLock<Vec<Arc<AtomicU64>>>,
    limiters: RwLock<Vec<HandoffLimiter>>,
}

impl Published {
    pub(crate) fn add_retries(&self, counter: Arc<AtomicU64>) {
        self.retries
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .push(counter);
    }

    pub(crate) fn add_limiter(&self, limiter: HandoffLimiter) {
        self.limiters
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .push(limiter);
    }

    pub(crate) fn retried(&self) -> u64 {
        self.retries
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .sum()
    }

    pub(crate) fn limiters(&self) -> Vec<HandoffLimiter> {
        self.limiters
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}
