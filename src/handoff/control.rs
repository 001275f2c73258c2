//! The task that makes every change of connection for one stack, one at a time.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, Notify};
use tokio::time::Instant;

use super::config::jitter;
use super::hold::{Hold, HOLD_FOR};
use super::{Inner, MakeConnection, Move};
use crate::connection::Connection;
use crate::connection::Subscriptions;
use crate::endpoint::Endpoint;
use crate::error::Error;
use crate::maintenance::{AzureEventKind, EventKind, MaintenanceEvent, Notification};

pub(super) async fn run<M: MakeConnection>(
    weak: Weak<Inner>,
    connector: M,
    mut triggers: mpsc::UnboundedReceiver<Box<Move>>,
    events: mpsc::UnboundedReceiver<Arc<MaintenanceEvent>>,
    mut shutdown: oneshot::Receiver<()>,
    kick: Arc<Notify>,
) {
    // MOVING notifications from the stack's own connection become handoff triggers.
    if let Some(inner) = weak.upgrade() {
        tokio::spawn(listen_for_moving(
            Arc::downgrade(&inner),
            events,
            inner.triggers.clone(),
        ));
    }
    tokio::select! {
        _ = &mut shutdown => return,
        _ = reconnect(&weak, &connector, None) => {}
    }
    loop {
        let Some(current) = weak.upgrade().map(|inner| inner.current()) else {
            return;
        };
        let closed = async {
            match &current {
                Some(c) => c.closed().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = &mut shutdown => return,
            trigger = triggers.recv() => match trigger {
                Some(trigger) => {
                    tokio::select! {
                        _ = &mut shutdown => return,
                        _ = handoff(&weak, &connector, *trigger, &mut triggers) => {}
                    }
                }
                None => return,
            },
            reason = closed => {
                let lost = current.as_ref().map(|c| (c.endpoint().clone(), reason));
                tokio::select! {
                    _ = &mut shutdown => return,
                    _ = reconnect(&weak, &connector, lost) => {}
                }
            }
            _ = kick.notified() => {
                let usable = current.as_ref().is_some_and(|c| !c.is_closed());
                if !usable {
                    let lost = current.as_ref().map(|c| {
                        (c.endpoint().clone(), c.closed_reason().unwrap_or_else(|| "closed".into()))
                    });
                    tokio::select! {
                        _ = &mut shutdown => return,
                        _ = reconnect(&weak, &connector, lost) => {}
                    }
                }
            }
        }
    }
}

/// Connects to the configured address after a loss (or at start, when `lost` is None).
async fn reconnect<M: MakeConnection>(
    weak: &Weak<Inner>,
    connector: &M,
    lost: Option<(Endpoint, Arc<str>)>,
) {
    let started = Instant::now();
    let Some(inner) = weak.upgrade() else { return };
    let configured = inner.configured.clone();
    let config = inner.config.clone();
    inner.down.store(false, Ordering::Release);
    if let Some((endpoint, reason)) = lost {
        // Commands stop picking the dead connection; they wait for the next one.
        let old = inner.install(None);
        tracing::warn!(%endpoint, %reason, "connection lost without notice; reconnecting");
        inner.report(EventKind::Disconnected { reason }, old.as_ref());
    }
    drop(inner);

    let attempts = config.max_reconnect_attempts.max(1);
    let mut delay = Duration::ZERO;
    for attempt in 1..=attempts {
        if let Some(inner) = weak.upgrade() {
            if attempt > 1 || inner.generation.load(Ordering::Acquire) > 0 {
                inner.report(EventKind::Reconnecting { attempt, delay }, None);
            }
        }
        match connector
            .make_connection(configured.clone(), config.connect_timeout)
            .await
        {
            Ok(conn) => {
                let Some(inner) = weak.upgrade() else { return };
                match prepare(&inner, &conn).await {
                    Ok(prepared) => {
                        let first = inner.generation.load(Ordering::Acquire) == 0;
                        // Nothing to release: the old connection is gone.
                        let switched = inner.install_subscribed(conn.clone(), &prepared.restored);
                        // Open from the start (nothing live came before it); kept as the
                        // current connection's hold for the next handoff.
                        *inner.lock_holding() = Arc::downgrade(&prepared.hold);
                        prepared.hold.open();
                        if let Some(old) = &switched.old {
                            inner.released(old);
                        }
                        if !switched.caught_up.is_empty() {
                            tokio::spawn(super::caught_up(switched.caught_up));
                        }
                        if !first {
                            inner.reconnects.fetch_add(1, Ordering::Relaxed);
                            inner.report(
                                EventKind::Reconnected {
                                    attempts: attempt,
                                    took: started.elapsed(),
                                },
                                Some(&conn),
                            );
                        }
                        return;
                    }
                    Err(e) => inner.set_last_error(e),
                }
            }
            Err(e) => {
                tracing::debug!(endpoint = %configured, attempt, error = %e, "reconnect attempt failed");
                if let Some(inner) = weak.upgrade() {
                    inner.set_last_error(e);
                }
            }
        }
        if attempt < attempts {
            delay = config.backoff(attempt);
            tokio::time::sleep(delay).await;
        }
    }
    if let Some(inner) = weak.upgrade() {
        inner.down.store(true, Ordering::Release);
        let error = inner
            .last_error()
            .unwrap_or_else(|| inner.unavailable("reconnecting failed"));
        inner.report(EventKind::ReconnectFailed { attempts, error }, None);
        // Wake waiting commands so they fail now rather than at their deadline.
        let generation = inner.generation.load(Ordering::Acquire);
        inner.changed.send_replace(generation);
    }
}

/// Moves the stack to a MOVING's target. It keeps listening meanwhile: a newer trigger
/// replaces the attempt in progress, and when the current connection closes under a `MOVING`
/// that waits (no endpoint: go at half the grace period) it goes at once instead of leaving
/// commands without a connection until then.
async fn handoff<M: MakeConnection>(
    weak: &Weak<Inner>,
    connector: &M,
    trigger: Move,
    triggers: &mut mpsc::UnboundedReceiver<Box<Move>>,
) {
    let mut target = trigger.endpoint.clone();
    let mut waits = trigger.endpoint.is_none() && !trigger.time.is_zero();
    let mut attempt = Box::pin(connect_for_handoff(weak, connector, trigger));
    let current = weak.upgrade().and_then(|inner| inner.current());
    let closed = async {
        match &current {
            Some(c) => c.closed().await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(closed);
    // Once the connection has closed, the close is not waited for again (the future is done),
    // and a newer waiting MOVING goes at once: there is no connection to wait on.
    let mut closed_already = false;
    loop {
        tokio::select! {
            prepared = &mut attempt => {
                    if let Some((conn, prepared, started)) = prepared {
                    switch(weak, conn, prepared, started);
                }
                return;
            }
            newer = triggers.recv() => match newer {
                Some(newer) => {
                    tracing::info!(abandoned = ?target, "a newer MOVING supersedes the handoff in progress");
                    target = newer.endpoint.clone();
                    let mut newer = *newer;
                    if closed_already && newer.endpoint.is_none() {
                        newer.time = Duration::ZERO;
                    }
                    waits = newer.endpoint.is_none() && !newer.time.is_zero();
                    attempt = Box::pin(connect_for_handoff(weak, connector, newer));
                }
                None => return,
            },
            reason = &mut closed, if waits && !closed_already => {
                tracing::info!(%reason, "the connection closed while a MOVING waited: reconnecting now");
                waits = false;
                closed_already = true;
                attempt = Box::pin(connect_for_handoff(
                    weak,
                    connector,
                    Move { seq: None, time: Duration::ZERO, endpoint: None },
                ));
            }
        }
    }
}

/// Dials the target and prepares the new connection; `None` when every attempt failed.
async fn connect_for_handoff<M: MakeConnection>(
    weak: &Weak<Inner>,
    connector: &M,
    trigger: Move,
) -> Option<(Connection, Prepared, Instant)> {
    let Move {
        seq,
        time,
        endpoint,
    } = trigger;
    let (configured, config, handoff_timeout, max_retries) = {
        let inner = weak.upgrade()?;
        let m = inner.maintenance.config();
        (
            inner.configured.clone(),
            inner.config.clone(),
            m.handoff_timeout(),
            m.max_handoff_retries(),
        )
    };
    let target = match endpoint {
        Some(e) => e,
        None if time.is_zero() => configured.clone(),
        None => {
            // No new address: the configured one will lead to the new node once the old one is
            // taken away. Go at half the grace period, a little earlier for some clients.
            let half = Duration::from_millis((time.as_millis() / 2) as u64);
            let wait = jitter(half, 0.25);
            tracing::info!(endpoint = %configured, ?seq, ?wait, "MOVING without an endpoint: reconnecting to the configured address");
            tokio::time::sleep(wait).await;
            configured.clone()
        }
    };
    // In a pool, wait for one of the shared handoff workers (or give up if too many wait).
    let _worker = match &config.limiter {
        Some(limiter) => match limiter.acquire().await {
            Ok(permit) => Some(permit),
            Err(full) => {
                let inner = weak.upgrade()?;
                inner.handoffs_failed.fetch_add(1, Ordering::Relaxed);
                let error = Error::HandoffFailed {
                    endpoint: target.clone(),
                    reason: format!(
                        "the pool's handoff queue is full ({} waiting); raise handoff_queue_size or max_workers",
                        full.queue_size
                    )
                    .into(),
                };
                inner.report(
                    EventKind::HandoffFailed {
                        to: target,
                        attempts: 0,
                        error,
                    },
                    None,
                );
                return None;
            }
        },
        None => None,
    };
    let started = Instant::now();
    if let Some(inner) = weak.upgrade() {
        let current = inner.current();
        let from = current
            .as_ref()
            .map_or_else(|| configured.clone(), |c| c.endpoint().clone());
        inner.report(
            EventKind::HandoffStarted {
                from,
                to: target.clone(),
                seq,
            },
            current.as_ref(),
        );
    }
    let attempts = max_retries.clamp(1, 10);
    let mut last: Option<Error> = None;
    for attempt in 1..=attempts {
        match connector
            .make_connection(target.clone(), handoff_timeout)
            .await
        {
            Ok(conn) => {
                let inner = weak.upgrade()?;
                match prepare(&inner, &conn).await {
                    Ok(prepared) => {
                        inner.report(
                            EventKind::HandoffConnected {
                                to: target.clone(),
                                attempt,
                                took: started.elapsed(),
                            },
                            Some(&conn),
                        );
                        return Some((conn, prepared, started));
                    }
                    Err(e) => last = Some(e),
                }
            }
            Err(e) => {
                tracing::debug!(%target, attempt, error = %e, "handoff attempt failed");
                last = Some(e);
            }
        }
        if attempt < attempts {
            tokio::time::sleep(config.backoff(attempt)).await;
        }
    }
    let inner = weak.upgrade()?;
    inner.handoffs_failed.fetch_add(1, Ordering::Relaxed);
    let error = last.unwrap_or_else(|| inner.unavailable("the handoff failed"));
    inner.report(
        EventKind::HandoffFailed {
            to: target,
            attempts,
            error,
        },
        None,
    );
    None
}

/// A connection made ready to take over, with what it was given.
pub(super) struct Prepared {
    /// The subscriptions made on it (those made later are caught up at the switch).
    restored: Subscriptions,
    /// Its Pub/Sub messages, held while the current connection may still deliver older ones.
    hold: Arc<Hold>,
}

/// Makes the new connection ready to take over: push forwarding (its messages held while the
/// current connection is alive, see `hold`), then the subscriptions.
async fn prepare(inner: &Arc<Inner>, conn: &Connection) -> Result<Prepared, Error> {
    let weak = Arc::downgrade(inner);
    let id = conn.id();
    let before = inner.lock_holding().upgrade().filter(|h| h.is_closed());
    let hold = Hold::new(&inner.pushes, inner.usable().is_some(), before);
    let held = hold.clone();
    conn.forward_pushes(
        &inner.pushes,
        Some(Arc::new(move |frame| {
            weak.upgrade().is_some_and(|inner| {
                inner.heard(frame, id);
                inner.wants(frame) && !held.keep(frame)
            })
        })),
    );
    if inner.dedicated {
        // The owner's database, name, tracking... first, as its old connection had them.
        conn.set_dedicated();
        let session = inner.lock_session().restore_commands();
        for command in session {
            match conn.send(command.clone()).await {
                Ok(_) => {}
                // Refused now (a password rotated since AUTH): the connection is still usable;
                // the owner's commands will say what the server thinks.
                Err(Error::Server(e)) => {
                    tracing::warn!(endpoint = %conn.endpoint(), command = ?command, answer = %e,
                        "a dedicated connection's state could not be set again on its new connection");
                }
                Err(e) => return Err(e),
            }
        }
    }
    let restored = inner.lock_subscriptions().clone();
    for command in restored.restore_commands() {
        match conn.send(command).await {
            Ok(_) => {}
            // Refused by the server (an ACL that changed since): the connection is still
            // usable, and every other subscription is made.
            Err(Error::Server(e)) => {
                tracing::warn!(endpoint = %conn.endpoint(), answer = %e,
                    "a subscription could not be made again on the new connection");
            }
            Err(e) => return Err(e),
        }
    }
    Ok(Prepared { restored, hold })
}

/// New commands go to `conn` from now on; the old connection drains and closes.
fn switch(weak: &Weak<Inner>, conn: Connection, prepared: Prepared, started: Instant) {
    let Some(inner) = weak.upgrade() else { return };
    let to = conn.endpoint().clone();
    let Prepared { restored, hold } = prepared;
    let super::Switched {
        old,
        caught_up,
        release,
    } = inner.install_subscribed(conn.clone(), &restored);
    *inner.lock_holding() = Arc::downgrade(&hold);
    inner.handoffs.fetch_add(1, Ordering::Relaxed);
    inner.maintenance.handoff_switched(&inner.configured);
    let from = old
        .as_ref()
        .map_or_else(|| inner.configured.clone(), |c| c.endpoint().clone());
    tracing::info!(%from, %to, took = ?started.elapsed(), "handoff switched");
    inner.report(
        EventKind::HandoffSwitched {
            from: from.clone(),
            to,
        },
        Some(&conn),
    );
    if release.is_empty() {
        // Nothing left on the old connection delivers the stack's channels.
        hold.open();
    }
    if let Some(old) = old {
        let weak = weak.clone();
        tokio::spawn(async move {
            let switched = Instant::now();
            let owed = old.in_flight();
            // Subscribed on the new connection first (what callers subscribed during the
            // switch too: its answers are awaited), unsubscribed from the old one then: the old
            // connection closes only after the messages it still carried have arrived, and
            // the new one's are held until then (see `hold`).
            let release = async {
                super::caught_up(caught_up).await;
                let released: Vec<_> = release.into_iter().map(|c| old.queue_now(c)).collect();
                for answer in released {
                    if let Err(f) = answer.await {
                        tracing::debug!(error = %f.error, "unsubscribing the old connection failed");
                    }
                }
            };
            tokio::pin!(release);
            if tokio::time::timeout(HOLD_FOR, &mut release).await.is_err() {
                tracing::warn!(endpoint = %old.endpoint(), waited = ?HOLD_FOR,
                    "the old connection has not released its subscriptions yet: passing on the new one's messages now (their order across the handoff is no longer kept)");
                hold.open();
                release.await;
            }
            hold.open();
            if let Some(inner) = weak.upgrade() {
                inner.released(&old);
            }
            old.drain().await;
            if let Some(inner) = weak.upgrade() {
                inner.report(
                    EventKind::HandoffDrained {
                        from,
                        drained: owed,
                        took: switched.elapsed(),
                    },
                    Some(&old),
                );
            }
        });
    }
}

/// Turns what the stack's current connection hears into triggers: `MOVING`, and the Azure
/// events after which the connection is refreshed.
async fn listen_for_moving(
    weak: Weak<Inner>,
    mut events: mpsc::UnboundedReceiver<Arc<MaintenanceEvent>>,
    triggers: mpsc::UnboundedSender<Box<Move>>,
) {
    loop {
        let event = tokio::select! {
            event = events.recv() => match event {
                Some(event) => event,
                None => return,
            },
            // The stack is gone.
            _ = triggers.closed() => return,
        };
        let Some(inner) = weak.upgrade() else { return };
        let trigger = match &event.kind {
            EventKind::Notification(Notification::Moving {
                seq,
                time,
                endpoint,
            }) => Move {
                seq: Some(*seq),
                time: *time,
                endpoint: endpoint.clone(),
            },
            EventKind::Azure(azure)
                if matches!(
                    azure.kind,
                    AzureEventKind::NodeMaintenanceFailoverComplete
                        | AzureEventKind::NodeMaintenanceScaleComplete
                ) =>
            {
                Move {
                    seq: None,
                    time: Duration::ZERO,
                    endpoint: Some(inner.configured.clone()),
                }
            }
            _ => continue,
        };
        // A pool shares one handle. A MOVING is about the connection that heard it: each stack
        // acts on its own. An Azure refresh is about the endpoint, and reaches the handle once
        // (its copies from the other connections are de-duplicated): every stack of that
        // endpoint acts on it.
        let azure = matches!(event.kind, EventKind::Azure(_));
        let ours = event.endpoint == inner.configured
            && (azure || inner.current().is_some_and(|c| event.is_from(c.id())));
        drop(inner);
        if ours && triggers.send(Box::new(trigger)).is_err() {
            return;
        }
    }
}
