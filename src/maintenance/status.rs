//! The maintenance state of one configured endpoint, and the rule that relaxes its timeouts.
//!
//! [`EndpointStatus`] is what [`RelaxedTimeout`](crate::relaxed_timeout::RelaxedTimeout) reads on
//! every command. [`EndpointStatus::apply`] is the rule: which notice opens which relaxation
//! window, which ends it, and how a `MOVING` and a maintenance overlap. To change when timeouts
//! are relaxed, change it here.

use std::fmt;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::clock;
use crate::endpoint::Endpoint;
use crate::maintenance::config::MaintenanceConfig;
use crate::maintenance::hook::Notice;
use crate::maintenance::notification::Notification;

/// Whether the server behind an endpoint agreed to send maintenance notifications, as the last
/// connection made to it found. This is what the server supports, kept apart from the
/// configured [`MaintenanceMode`](crate::maintenance::MaintenanceMode), which it never changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum NotificationSupport {
    /// No connection has asked yet (or the mode is `Disabled`).
    Unknown,
    /// The server accepted `CLIENT MAINT_NOTIFICATIONS`.
    Enabled,
    /// The server refused it.
    Refused,
}

/// A `MOVING` notification being acted on: where to go and by when.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct MovingTarget {
    /// The notification's sequence number.
    pub seq: u64,
    /// Where to reconnect; `None`: to the configured endpoint, at half the grace period.
    pub endpoint: Option<Endpoint>,
    /// The grace period the server gave.
    pub time: Duration,
    /// When the notification was received.
    pub received: Instant,
    /// When the server is expected to close connections to the old endpoint.
    pub deadline: Instant,
    /// The connection that received it.
    pub source: Endpoint,
}

/// The maintenance state of one configured endpoint.
///
/// Reads are lock-free atomics, cheap enough for every command: deadlines are kept as
/// nanoseconds since the process-wide epoch of `crate::clock`. Timeouts are relaxed while
/// either of two deadlines is in the future:
///
/// - the **maintenance** deadline, set by a start (`MIGRATING`, `FAILING_OVER`, `SMIGRATING`,
///   Azure `NodeMaintenanceStarting` / `NodeMaintenanceStart`) to now + the relaxation
///   backstop, and cleared by the matching end (`MIGRATED`, `FAILED_OVER`, `SMIGRATED`, Azure
///   `...FailoverComplete` / `...ScaleComplete` / `...Ended`); the backstop ends a maintenance
///   whose end notification was lost;
/// - the **handoff** deadline, set by `MOVING` to now + its time + the post-handoff relaxed
///   duration, and moved to now + the post-handoff relaxed duration by
///   [`Maintenance::handoff_switched`](crate::Maintenance::handoff_switched).
pub struct EndpointStatus {
    endpoint: Endpoint,
    maintenance_until: AtomicU64,
    handoff_until: AtomicU64,
    // Bumped on every deadline change, so a pending expiry check knows it is stale.
    generation: AtomicU64,
    support: AtomicU8,
    moving: Mutex<Option<MovingTarget>>,
}

impl fmt::Debug for EndpointStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EndpointStatus")
            .field("endpoint", &self.endpoint)
            .field("relaxed_until", &self.relaxed_until())
            .field("in_maintenance", &self.in_maintenance())
            .field("moving", &self.moving())
            .field("notification_support", &self.notification_support())
            .finish()
    }
}

impl EndpointStatus {
    pub(crate) fn new(endpoint: Endpoint) -> Self {
        EndpointStatus {
            endpoint,
            maintenance_until: AtomicU64::new(0),
            handoff_until: AtomicU64::new(0),
            generation: AtomicU64::new(0),
            support: AtomicU8::new(0),
            moving: Mutex::new(None),
        }
    }

    fn deadline(&self) -> u64 {
        self.maintenance_until
            .load(Ordering::Acquire)
            .max(self.handoff_until.load(Ordering::Acquire))
    }

    /// The configured endpoint this state belongs to.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// Whether timeouts are relaxed at `now`.
    pub fn is_relaxed(&self, now: Instant) -> bool {
        // Read on every command: never relaxed (0) is answered without converting `now`.
        let deadline = self.deadline();
        deadline != 0 && clock::nanos(now) < deadline
    }

    /// Until when timeouts are relaxed, if they are now.
    pub fn relaxed_until(&self) -> Option<Instant> {
        let deadline = self.deadline();
        (clock::nanos(Instant::now()) < deadline)
            .then(|| clock::instant(deadline))
            .flatten()
    }

    /// Whether a maintenance (migration, failover, Azure maintenance) has started and neither
    /// ended nor run past the backstop.
    pub fn in_maintenance(&self) -> bool {
        clock::nanos(Instant::now()) < self.maintenance_until.load(Ordering::Acquire)
    }

    /// When the backstop ends the current maintenance, if one is under way.
    pub fn maintenance_until(&self) -> Option<Instant> {
        let until = self.maintenance_until.load(Ordering::Acquire);
        (clock::nanos(Instant::now()) < until)
            .then(|| clock::instant(until))
            .flatten()
    }

    /// Until when a `MOVING` (or a handoff just done) keeps timeouts relaxed, if it does now.
    pub fn handoff_relaxed_until(&self) -> Option<Instant> {
        let until = self.handoff_until.load(Ordering::Acquire);
        (clock::nanos(Instant::now()) < until)
            .then(|| clock::instant(until))
            .flatten()
    }

    /// The latest `MOVING` not yet acted on: cleared by
    /// [`Maintenance::handoff_switched`](crate::Maintenance::handoff_switched).
    pub fn moving(&self) -> Option<MovingTarget> {
        self.moving
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Whether the server agreed to send notifications, as the last connection found.
    pub fn notification_support(&self) -> NotificationSupport {
        match self.support.load(Ordering::Relaxed) {
            1 => NotificationSupport::Enabled,
            2 => NotificationSupport::Refused,
            _ => NotificationSupport::Unknown,
        }
    }

    // ===== the relaxation rule =====

    /// Applies a notice (past the hooks and de-duplication) received on `source` at `received`:
    /// the one place that says what relaxes timeouts, and until when.
    pub(crate) fn apply(
        &self,
        notice: &Notice,
        source: &Endpoint,
        received: Instant,
        config: &MaintenanceConfig,
    ) -> Change {
        let now = clock::nanos(received);
        if let Notice::Push(Notification::Moving {
            seq,
            time,
            endpoint,
        }) = notice
        {
            self.set_moving(Some(MovingTarget {
                seq: *seq,
                endpoint: endpoint.clone(),
                time: *time,
                received,
                deadline: received.checked_add(*time).unwrap_or(received),
                source: source.clone(),
            }));
            let until = clock::after(
                clock::after(now, *time),
                config.post_handoff_relaxed_duration(),
            );
            self.handoff_until.fetch_max(until, Ordering::AcqRel);
            Change::Relaxed
        } else if notice.is_start() {
            let until = clock::after(now, config.relaxation_backstop());
            self.maintenance_until.store(until, Ordering::Release);
            Change::Relaxed
        } else if notice.is_end() {
            let was_relaxed = self.is_relaxed(received);
            self.maintenance_until.store(0, Ordering::Release);
            if self.is_relaxed(received) {
                // A MOVING still holds the relaxation: its own expiry ends it.
                Change::Relaxed
            } else {
                self.bump();
                if was_relaxed {
                    Change::Ended(RelaxationEnd::EndNotification)
                } else {
                    Change::None
                }
            }
        } else {
            Change::None
        }
    }

    /// The stack's handoff switched to its new connection: relaxed for `post` from now, and the
    /// pending `MOVING` is acted on.
    pub(crate) fn switched(&self, post: Duration) {
        self.set_moving(None);
        self.handoff_until
            .store(clock::after(clock::now(), post), Ordering::Release);
    }

    pub(crate) fn set_support(&self, support: NotificationSupport) {
        let value = match support {
            NotificationSupport::Unknown => 0,
            NotificationSupport::Enabled => 1,
            NotificationSupport::Refused => 2,
        };
        self.support.store(value, Ordering::Relaxed);
    }

    fn set_moving(&self, target: Option<MovingTarget>) {
        *self
            .moving
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = target;
    }

    // ===== expiry =====

    /// Starts a new generation of the deadlines: an expiry check of an older one is stale.
    pub(crate) fn bump(&self) -> u64 {
        self.generation.fetch_add(1, Ordering::AcqRel) + 1
    }

    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// The later of the two deadlines, as an instant.
    pub(crate) fn deadline_instant(&self) -> Option<Instant> {
        clock::instant(self.deadline())
    }

    /// Why the relaxation that has just run out ended.
    pub(crate) fn expiry_cause(&self) -> RelaxationEnd {
        let m = self.maintenance_until.load(Ordering::Acquire);
        if m != 0 && m >= self.handoff_until.load(Ordering::Acquire) {
            RelaxationEnd::Backstop
        } else {
            RelaxationEnd::HandoffWindowElapsed
        }
    }
}

/// What applying a notice did to the relaxation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Change {
    /// Nothing.
    None,
    /// A deadline moved: its expiry must be (re)scheduled.
    Relaxed,
    /// The relaxation ended now.
    Ended(RelaxationEnd),
}

/// Why timeouts stopped being relaxed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RelaxationEnd {
    /// An end notification (`MIGRATED`, `FAILED_OVER`, `SMIGRATED`, an Azure end) arrived.
    EndNotification,
    /// No end notification came within the relaxation backstop.
    Backstop,
    /// The window opened by `MOVING` (or kept open after a handoff) ran out.
    HandoffWindowElapsed,
}
