//! Waiting for maintenance events, and for conditions that other tasks make true, with bounds
//! that only a hang reaches.

use std::time::{Duration, Instant};

use redis_handoff::maintenance::{MaintenanceEvent, MaintenanceEvents};
use redis_handoff::EventKind;

/// How long [`next_event`] waits: wide, the events come in milliseconds.
pub const EVENT_WAIT: Duration = Duration::from_secs(30);

/// The value `pick` makes of the first event it accepts within `wait` (earlier ones are skipped).
pub async fn next_picked<T>(
    events: &mut MaintenanceEvents,
    wait: Duration,
    mut pick: impl FnMut(&MaintenanceEvent) -> Option<T>,
) -> T {
    tokio::time::timeout(wait, async {
        loop {
            let event = events.recv().await.expect("the event stream goes on");
            if let Some(t) = pick(&event) {
                return t;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("the expected event did not come within {wait:?}"))
}

/// The first event whose kind `pred` accepts, within `wait`.
pub async fn next_matching(
    events: &mut MaintenanceEvents,
    wait: Duration,
    pred: impl Fn(&EventKind) -> bool,
) -> MaintenanceEvent {
    next_picked(events, wait, |e| pred(&e.kind).then(|| e.clone())).await
}

/// The kind of the first event that `pred` accepts, within [`EVENT_WAIT`].
pub async fn next_event(
    events: &mut MaintenanceEvents,
    pred: impl Fn(&EventKind) -> bool,
) -> EventKind {
    next_matching(events, EVENT_WAIT, pred).await.kind
}

/// `HandoffSwitched`: a handoff moved its commands to the new connection.
pub fn handoff_switched(kind: &EventKind) -> bool {
    matches!(kind, EventKind::HandoffSwitched { .. })
}

/// `HandoffDrained`: a handoff's old connection answered all it owed and was closed.
pub fn handoff_drained(kind: &EventKind) -> bool {
    matches!(kind, EventKind::HandoffDrained { .. })
}

/// `HandoffFailed`: a handoff gave up and kept the old connection.
pub fn handoff_failed(kind: &EventKind) -> bool {
    matches!(kind, EventKind::HandoffFailed { .. })
}

/// Polls `cond` every `poll` until it holds; fails the test naming `what` after `within`.
pub async fn wait_until(
    what: &str,
    within: Duration,
    poll: Duration,
    mut cond: impl FnMut() -> bool,
) {
    let deadline = Instant::now() + within;
    while !cond() {
        assert!(Instant::now() < deadline, "{what} within {within:?}");
        tokio::time::sleep(poll).await;
    }
}
