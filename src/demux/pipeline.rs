//! The push pipeline: where a push frame turns into maintenance state.
//!
//! For every push a demuxed connection receives: **parse** (a maintenance notification, an
//! `AzureRedisEvents` message, or something else, left alone) -> count it -> run the **pre-hooks**
//! (which may change or skip it) -> **de-duplicate** -> **apply** it to the endpoint's state (the
//! rule is [`EndpointStatus::apply`](crate::maintenance::EndpointStatus)) -> **publish** the event
//! -> run the **post-hooks**. A malformed notice is counted, logged at warn with a bounded
//! preview and dropped. [`Maintenance::process_push`] is the public entry point.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use redis_protocol::resp3::types::BytesFrame;

use crate::frame;

use crate::maintenance::{
    azure_payload, AzureEvent, AzureEventKind, EventKind, HookAction, HookContext, HookOutcome,
    Maintenance, MaintenanceEvent, Notice, Notification, PushOrigin, PushOutcome,
};

/// Parses, hooks, de-duplicates, applies and publishes one push; see
/// [`Maintenance::process_push`].
pub(crate) fn process_push(
    maintenance: &Maintenance,
    origin: &PushOrigin,
    frame: &BytesFrame,
) -> PushOutcome {
    let received = Instant::now();
    let elements = match frame {
        BytesFrame::Push { data, .. } | BytesFrame::Array { data, .. } => data,
        _ => return PushOutcome::NotMaintenance,
    };
    match Notification::from_elements(elements) {
        Ok(Some(n)) => return process_at(maintenance, origin, Notice::Push(n), received),
        Ok(None) => {}
        Err(e) => return drop_malformed(maintenance, origin, &e.to_string(), frame),
    }
    let payload = match azure_payload(elements) {
        None => return PushOutcome::NotMaintenance,
        Some(Err(reason)) => return drop_malformed(maintenance, origin, reason, frame),
        Some(Ok(payload)) => payload,
    };
    let Ok(message) = std::str::from_utf8(payload) else {
        return drop_malformed(
            maintenance,
            origin,
            "malformed AzureRedisEvents message: not UTF-8",
            frame,
        );
    };
    match AzureEvent::parse(message, SystemTime::now()) {
        Ok(event) => process_at(maintenance, origin, Notice::Azure(event), received),
        Err(e) => drop_malformed(maintenance, origin, &e.to_string(), frame),
    }
}

fn process_at(
    maintenance: &Maintenance,
    origin: &PushOrigin,
    mut notice: Notice,
    received: Instant,
) -> PushOutcome {
    let counters = maintenance.counters();
    counters.received(&notice);
    let hooks = maintenance.hooks();
    let cx = HookContext { origin, received };
    let mut skipped = false;
    for hook in hooks.iter() {
        let action = catch_unwind(AssertUnwindSafe(|| hook.pre(&cx, &mut notice)))
            .unwrap_or_else(|_| {
                tracing::error!(endpoint = %origin.endpoint, "a notification pre-hook panicked; carrying on");
                HookAction::Continue
            });
        if action == HookAction::Skip {
            skipped = true;
            break;
        }
    }
    let outcome = if skipped {
        counters.skipped.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(endpoint = %origin.endpoint, source = %origin.source, notice = notice.name(), "a hook skipped a maintenance notification");
        HookOutcome::Skipped
    } else if maintenance.is_duplicate(origin, &notice, received) {
        counters.duplicates.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(endpoint = %origin.endpoint, source = %origin.source, notice = notice.name(), seq = ?notice.seq(), "suppressed a repeated maintenance notification");
        maintenance.emit(MaintenanceEvent::from_origin(
            origin,
            EventKind::DuplicateSuppressed {
                name: notice.name().into(),
                seq: notice.seq(),
            },
        ));
        HookOutcome::Duplicate
    } else {
        match &notice {
            Notice::Azure(e) if e.is_late() => {
                tracing::warn!(endpoint = %origin.endpoint, source = %origin.source, event = e.kind.name(), start_time = ?e.start_time, received_at = ?e.received_at, "an Azure maintenance event arrived after its start time: this client is too slow to act on it in time (overloaded?)");
            }
            Notice::Azure(e)
                if e.kind == AzureEventKind::NodeMaintenanceScheduled
                    || e.kind == AzureEventKind::NodeMaintenanceEnded =>
            {
                tracing::info!(endpoint = %origin.endpoint, event = e.kind.name(), start_time = ?e.start_time, "Azure maintenance");
            }
            _ => {}
        }
        tracing::debug!(endpoint = %origin.endpoint, source = %origin.source, notice = ?notice, "maintenance notification");
        let ended = maintenance.apply(origin, &notice, received);
        let kind = match &notice {
            Notice::Push(n) => EventKind::Notification(n.clone()),
            Notice::Azure(e) => EventKind::Azure(e.clone()),
        };
        maintenance.emit(MaintenanceEvent::from_origin(origin, kind));
        if let Some(cause) = ended {
            maintenance.emit(MaintenanceEvent::from_origin(
                origin,
                EventKind::RelaxationEnded { cause },
            ));
        }
        HookOutcome::Applied
    };
    for hook in hooks.iter() {
        if catch_unwind(AssertUnwindSafe(|| hook.post(&cx, &notice, outcome))).is_err() {
            tracing::error!(endpoint = %origin.endpoint, "a notification post-hook panicked; carrying on");
        }
    }
    match outcome {
        HookOutcome::Applied => PushOutcome::Applied(notice),
        HookOutcome::Skipped => PushOutcome::Skipped,
        HookOutcome::Duplicate => PushOutcome::Duplicate,
    }
}

fn drop_malformed(
    maintenance: &Maintenance,
    origin: &PushOrigin,
    reason: &str,
    frame: &BytesFrame,
) -> PushOutcome {
    maintenance
        .counters()
        .dropped
        .fetch_add(1, Ordering::Relaxed);
    let preview = frame::preview(frame);
    tracing::warn!(endpoint = %origin.endpoint, source = %origin.source, reason, bytes = %preview, "dropped a malformed maintenance notification");
    let reason: Arc<str> = reason.into();
    maintenance.emit(MaintenanceEvent::from_origin(
        origin,
        EventKind::NotificationDropped {
            reason: reason.clone(),
            preview: preview.into(),
        },
    ));
    PushOutcome::Dropped { reason }
}
