//! Unit tests of the maintenance model through its entry point, [`Maintenance::process_push`].

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use redis_protocol::resp3::types::BytesFrame;

use super::*;
use crate::endpoint::{ConnectionId, Endpoint};
use std::sync::atomic::AtomicUsize;

fn ep(s: &str) -> Endpoint {
    s.parse().unwrap()
}

fn quick(backstop_ms: u64, relaxed_ms: u64) -> Maintenance {
    Maintenance::new(
        MaintenanceConfig::builder()
            .relaxation_backstop(Duration::from_millis(backstop_ms))
            .relaxed_timeout(Duration::from_millis(relaxed_ms))
            .build()
            .unwrap(),
    )
}

fn push(n: &Notification) -> BytesFrame {
    n.to_push()
}

fn migrating(seq: u64) -> Notification {
    Notification::Migrating {
        seq,
        time: Duration::from_secs(10),
        shards: vec![],
    }
}

fn migrated(seq: u64) -> Notification {
    Notification::Migrated {
        seq,
        shards: vec![],
    }
}

fn azure_message(payload: &str) -> BytesFrame {
    BytesFrame::Push {
        data: vec![
            BytesFrame::BlobString {
                data: "message".into(),
                attributes: None,
            },
            BytesFrame::BlobString {
                data: AZURE_CHANNEL.into(),
                attributes: None,
            },
            BytesFrame::BlobString {
                data: Bytes::copy_from_slice(payload.as_bytes()),
                attributes: None,
            },
        ],
        attributes: None,
    }
}

#[test]
fn start_relaxes_and_end_clears() {
    let m = Maintenance::default();
    let origin = PushOrigin::new(ep("10.0.0.1:6379"));
    let status = m.status(&origin.endpoint);
    for (start, end) in [
        (
            migrating(1),
            Notification::Migrated {
                seq: 1,
                shards: vec![],
            },
        ),
        (
            Notification::FailingOver {
                seq: 2,
                time: Duration::from_secs(1),
                shards: vec![],
            },
            Notification::FailedOver {
                seq: 2,
                shards: vec![],
            },
        ),
        (
            Notification::SMigrating {
                seq: 3,
                slots: vec![],
            },
            Notification::SMigrated {
                seq: 3,
                moves: vec![],
            },
        ),
    ] {
        m.process_push(&origin, &push(&start));
        let now = Instant::now();
        assert!(status.in_maintenance() && status.is_relaxed(now), "{start}");
        let until = status.relaxed_until().unwrap();
        // The backstop: 60 s by default.
        assert!(until > now + Duration::from_secs(59) && until <= now + Duration::from_secs(60));
        m.process_push(&origin, &push(&end));
        assert!(
            !status.in_maintenance() && !status.is_relaxed(Instant::now()),
            "{end}"
        );
        assert_eq!(status.relaxed_until(), None);
    }
}

#[test]
fn moving_relaxes_for_its_time_plus_the_post_handoff_duration() {
    let m = Maintenance::default();
    let origin = PushOrigin::new(ep("10.0.0.1:6379"));
    let status = m.status(&origin.endpoint);
    let before = Instant::now();
    m.process_push(
        &origin,
        &push(&Notification::Moving {
            seq: 9,
            time: Duration::from_secs(15),
            endpoint: Some(ep("10.0.0.2:6379")),
        }),
    );
    let target = status.moving().unwrap();
    assert_eq!(target.endpoint, Some(ep("10.0.0.2:6379")));
    assert_eq!(target.deadline, target.received + Duration::from_secs(15));
    // 15 s + 2 x 10 s.
    let until = status.handoff_relaxed_until().unwrap();
    assert!(until >= before + Duration::from_secs(35));
    assert!(until <= Instant::now() + Duration::from_secs(35));
    assert!(!status.in_maintenance());

    let switched_at = Instant::now();
    m.handoff_switched(&origin.endpoint);
    assert_eq!(status.moving(), None);
    let until = status.relaxed_until().unwrap();
    assert!(until >= switched_at + Duration::from_secs(20));
    assert!(until <= Instant::now() + Duration::from_secs(20));
}

#[test]
fn an_end_leaves_a_moving_relaxation_in_place() {
    let m = Maintenance::default();
    let origin = PushOrigin::new(ep("10.0.0.1:6379"));
    let status = m.status(&origin.endpoint);
    m.process_push(&origin, &push(&migrating(1)));
    m.process_push(
        &origin,
        &push(&Notification::Moving {
            seq: 2,
            time: Duration::from_secs(5),
            endpoint: None,
        }),
    );
    m.process_push(&origin, &push(&migrated(1)));
    assert!(!status.in_maintenance());
    assert!(status.is_relaxed(Instant::now()));
}

#[test]
fn duplicates_are_suppressed_by_name_and_seq() {
    let m = Maintenance::default();
    let a = PushOrigin::new(ep("10.0.0.1:6379"));
    let b = a
        .clone()
        .with_connection(ConnectionId::next(), ep("10.0.0.1:6379"), Some(42));
    assert!(matches!(
        m.process_push(&a, &push(&migrating(1))),
        PushOutcome::Applied(_)
    ));
    // The same broadcast on another connection of the same stack.
    assert_eq!(
        m.process_push(&b, &push(&migrating(1))),
        PushOutcome::Duplicate
    );
    // Another name with the same seq is not a repeat.
    assert!(matches!(
        m.process_push(&a, &push(&migrated(1))),
        PushOutcome::Applied(_)
    ));
    // A replay of the old end later.
    assert_eq!(
        m.process_push(&b, &push(&migrated(1))),
        PushOutcome::Duplicate
    );
    // Another configured endpoint has its own sequence numbers.
    let other = PushOrigin::new(ep("10.0.0.9:6379"));
    assert!(matches!(
        m.process_push(&other, &push(&migrating(1))),
        PushOutcome::Applied(_)
    ));
    let counts = m.counts();
    assert_eq!(counts.duplicates(), 2);
    assert_eq!(counts.notifications(NotificationKind::Migrating), 3);
    assert_eq!(counts.notifications(NotificationKind::Migrated), 2);
    assert_eq!(counts.total_notifications(), 5);
}

#[test]
fn moving_counts_once_per_connection() {
    let m = Maintenance::default();
    let a = PushOrigin::new(ep("10.0.0.1:6379")).with_connection(
        ConnectionId::next(),
        ep("10.0.0.1:6379"),
        Some(1),
    );
    let b = a
        .clone()
        .with_connection(ConnectionId::next(), ep("10.0.0.1:6379"), Some(2));
    let moving = push(&Notification::Moving {
        seq: 5,
        time: Duration::from_secs(15),
        endpoint: None,
    });
    assert!(matches!(
        m.process_push(&a, &moving),
        PushOutcome::Applied(_)
    ));
    assert!(matches!(
        m.process_push(&b, &moving),
        PushOutcome::Applied(_)
    ));
    assert_eq!(m.process_push(&a, &moving), PushOutcome::Duplicate);
}

#[test]
fn azure_events_relax_and_end_and_dedupe_by_content() {
    let m = Maintenance::default();
    let origin = PushOrigin::new(ep("contoso.redis.cache.windows.net:6380"));
    let status = m.status(&origin.endpoint);
    let starting = azure_message("NotificationType|NodeMaintenanceStarting|StartTimeInUTC|2030-01-01T00:00:00|IPAddress|10.0.0.5|SSLPort|15001");
    assert!(matches!(
        m.process_push(&origin, &starting),
        PushOutcome::Applied(Notice::Azure(_))
    ));
    assert!(status.in_maintenance());
    assert_eq!(m.process_push(&origin, &starting), PushOutcome::Duplicate);
    let scheduled = azure_message("NotificationType|NodeMaintenanceScheduled");
    m.process_push(&origin, &scheduled);
    assert!(status.in_maintenance());
    m.process_push(
        &origin,
        &azure_message("NotificationType|NodeMaintenanceEnded"),
    );
    assert!(!status.in_maintenance() && !status.is_relaxed(Instant::now()));
    let counts = m.counts();
    assert_eq!(counts.azure(&AzureEventKind::NodeMaintenanceStarting), 2);
    assert_eq!(counts.azure(&AzureEventKind::NodeMaintenanceEnded), 1);
    assert_eq!(counts.total_azure(), 4);
}

#[test]
fn malformed_notices_are_counted_and_dropped() {
    let m = Maintenance::default();
    let mut events = m.subscribe();
    let origin = PushOrigin::new(ep("10.0.0.1:6379"));
    let bad_push = BytesFrame::Push {
        data: vec![
            BytesFrame::SimpleString {
                data: "MOVING".into(),
                attributes: None,
            },
            BytesFrame::SimpleString {
                data: "soon".into(),
                attributes: None,
            },
        ],
        attributes: None,
    };
    let PushOutcome::Dropped { reason } = m.process_push(&origin, &bad_push) else {
        panic!("not dropped");
    };
    assert!(reason.contains("malformed MOVING"), "{reason}");
    let event = events.try_recv().unwrap();
    match event.kind {
        EventKind::NotificationDropped { preview, .. } => {
            assert_eq!(&*preview, ">2\\r\\n+MOVING\\r\\n+soon\\r\\n")
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        m.process_push(&origin, &azure_message("rubbish")),
        PushOutcome::Dropped { .. }
    ));
    assert_eq!(m.counts().dropped(), 2);
    assert_eq!(m.counts().total_notifications(), 0);
}

#[test]
fn other_pushes_are_left_alone() {
    let m = Maintenance::default();
    let origin = PushOrigin::new(ep("10.0.0.1:6379"));
    let message = BytesFrame::Push {
        data: vec![
            BytesFrame::BlobString {
                data: "message".into(),
                attributes: None,
            },
            BytesFrame::BlobString {
                data: "news".into(),
                attributes: None,
            },
            BytesFrame::BlobString {
                data: "NotificationType|NodeMaintenanceStart".into(),
                attributes: None,
            },
        ],
        attributes: None,
    };
    assert_eq!(
        m.process_push(&origin, &message),
        PushOutcome::NotMaintenance
    );
    assert_eq!(
        m.process_push(&origin, &BytesFrame::Null),
        PushOutcome::NotMaintenance
    );
    assert_eq!(m.counts(), NotificationCounts::default());
}

#[test]
fn hooks_run_in_order_change_skip_and_see_outcomes() {
    let m = Maintenance::default();
    let origin = PushOrigin::new(ep("10.0.0.1:6379"));
    let order = Arc::new(Mutex::new(Vec::new()));
    let o = order.clone();
    // First: rewrite every MIGRATING's seq to 100.
    m.add_hook(move |_cx: &HookContext<'_>, notice: &mut Notice| {
        o.lock().unwrap().push("rewrite");
        if let Notice::Push(Notification::Migrating { seq, .. }) = notice {
            *seq = 100;
        }
        HookAction::Continue
    });
    let o = order.clone();
    // Second: skip FAILING_OVER.
    m.add_hook(move |_cx: &HookContext<'_>, notice: &mut Notice| {
        o.lock().unwrap().push("skip");
        if notice.name() == "FAILING_OVER" {
            HookAction::Skip
        } else {
            HookAction::Continue
        }
    });
    let outcomes = Arc::new(Mutex::new(Vec::new()));
    let seen = outcomes.clone();
    m.add_hook(post_hook(
        move |_cx: &HookContext<'_>, notice: &Notice, outcome| {
            seen.lock().unwrap().push((notice.seq(), outcome));
        },
    ));

    let mut events = m.subscribe();
    assert!(matches!(
        m.process_push(&origin, &push(&migrating(1))),
        PushOutcome::Applied(Notice::Push(Notification::Migrating { seq: 100, .. }))
    ));
    match events.try_recv().unwrap().kind {
        EventKind::Notification(n) => assert_eq!(n.seq(), 100),
        other => panic!("{other:?}"),
    }
    let failing = push(&Notification::FailingOver {
        seq: 2,
        time: Duration::from_secs(1),
        shards: vec![],
    });
    assert_eq!(m.process_push(&origin, &failing), PushOutcome::Skipped);
    // Rewritten to the same seq as before: a duplicate.
    assert_eq!(
        m.process_push(&origin, &push(&migrating(3))),
        PushOutcome::Duplicate
    );
    assert_eq!(
        *order.lock().unwrap(),
        ["rewrite", "skip", "rewrite", "skip", "rewrite", "skip"]
    );
    assert_eq!(
        *outcomes.lock().unwrap(),
        [
            (Some(100), HookOutcome::Applied),
            (Some(2), HookOutcome::Skipped),
            (Some(100), HookOutcome::Duplicate)
        ]
    );
    assert_eq!(m.counts().skipped(), 1);
    // The skipped failover changed nothing: the state is that of the MIGRATING.
    assert!(m.status(&origin.endpoint).in_maintenance());
}

#[test]
fn a_panicking_hook_does_not_stop_processing() {
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let m = Maintenance::default()
        .with_hook(|_cx: &HookContext<'_>, _n: &mut Notice| -> HookAction { panic!("hook bug") })
        .with_hook(post_hook(move |_cx: &HookContext<'_>, _n: &Notice, _o| {
            c.fetch_add(1, Ordering::SeqCst);
        }));
    let origin = PushOrigin::new(ep("10.0.0.1:6379"));
    assert!(matches!(
        m.process_push(&origin, &push(&migrating(1))),
        PushOutcome::Applied(_)
    ));
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn the_backstop_ends_a_maintenance_whose_end_was_lost() {
    let m = quick(80, 1000);
    let mut events = m.subscribe();
    let origin = PushOrigin::new(ep("10.0.0.1:6379"));
    let status = m.status(&origin.endpoint);
    m.process_push(&origin, &push(&migrating(1)));
    assert!(status.in_maintenance());
    assert!(matches!(
        events.recv().await.unwrap().kind,
        EventKind::Notification(_)
    ));
    let ended = tokio::time::timeout(Duration::from_secs(5), events.recv())
        .await
        .unwrap()
        .unwrap();
    assert!(matches!(
        ended.kind,
        EventKind::RelaxationEnded {
            cause: RelaxationEnd::Backstop
        }
    ));
    assert!(!status.in_maintenance() && !status.is_relaxed(Instant::now()));
}

#[tokio::test]
async fn an_end_notification_ends_the_relaxation_once() {
    let m = quick(80, 1000);
    let mut events = m.subscribe();
    let origin = PushOrigin::new(ep("10.0.0.1:6379"));
    m.process_push(&origin, &push(&migrating(1)));
    m.process_push(&origin, &push(&migrated(1)));
    let kinds: Vec<&str> = [
        events.recv().await.unwrap(),
        events.recv().await.unwrap(),
        events.recv().await.unwrap(),
    ]
    .iter()
    .map(|e| match &e.kind {
        EventKind::RelaxationEnded {
            cause: RelaxationEnd::EndNotification,
        } => "ended",
        k => k.name(),
    })
    .collect();
    assert_eq!(kinds, ["notification", "notification", "ended"]);
    // The backstop timer of the MIGRATING is stale and stays silent.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(events.try_recv().is_none());
}

#[tokio::test]
async fn the_handoff_window_runs_out() {
    let m = quick(60_000, 20);
    let mut events = m.subscribe();
    let endpoint = ep("10.0.0.1:6379");
    m.handoff_switched(&endpoint);
    assert!(m.status(&endpoint).is_relaxed(Instant::now()));
    let ended = tokio::time::timeout(Duration::from_secs(5), events.recv())
        .await
        .unwrap()
        .unwrap();
    assert!(matches!(
        ended.kind,
        EventKind::RelaxationEnded {
            cause: RelaxationEnd::HandoffWindowElapsed
        }
    ));
    assert!(!m.status(&endpoint).is_relaxed(Instant::now()));
}

#[tokio::test]
async fn stacks_get_every_moving_while_a_slow_observer_misses_some() {
    let m = Maintenance::new(
        MaintenanceConfig::builder()
            .event_buffer(8)
            .build()
            .unwrap(),
    );
    let mut observer = m.subscribe();
    let mut triggers = m.triggers();
    for seq in 0..100 {
        let moving = Notification::Moving {
            seq,
            time: Duration::from_secs(15),
            endpoint: Some(ep("10.0.0.2:6379")),
        };
        m.emit(MaintenanceEvent::new(
            ep("10.0.0.1:6379"),
            EventKind::Notification(moving),
        ));
        // Events a stack does not act on stay off its path.
        m.emit(MaintenanceEvent::new(
            ep("10.0.0.1:6379"),
            EventKind::Disconnected {
                reason: "test".into(),
            },
        ));
    }
    let mut seqs = Vec::new();
    while let Ok(event) = triggers.try_recv() {
        if let EventKind::Notification(Notification::Moving { seq, .. }) = event.kind {
            seqs.push(seq);
        }
    }
    assert_eq!(seqs, (0..100).collect::<Vec<_>>());
    let mut seen = 0;
    while observer.try_recv().is_some() {
        seen += 1;
    }
    assert_eq!((seen, observer.missed()), (8, 192));
}

#[test]
fn states_nobody_holds_are_forgotten_and_held_ones_kept() {
    let m = Maintenance::default();
    let kept = m.status(&ep("10.0.0.1:6379"));
    drop(m.status(&ep("10.0.0.2:6379")));
    drop(m.status(&ep("10.0.0.3:6379")));
    assert_eq!(m.forget_unused(), 2);
    assert_eq!(m.forget_unused(), 0);
    assert!(
        Arc::ptr_eq(&kept, &m.status(&ep("10.0.0.1:6379"))),
        "a held state stays the endpoint's state"
    );
}

#[test]
fn events_reach_observers_as_they_are_emitted_and_subscribers_from_their_subscription() {
    struct Count(AtomicUsize, std::sync::atomic::AtomicBool);
    impl Observer for Count {
        fn on_event(&self, _: &MaintenanceEvent) -> bool {
            self.0.fetch_add(1, Ordering::SeqCst);
            self.1.load(Ordering::SeqCst)
        }
        fn alive(&self) -> bool {
            self.1.load(Ordering::SeqCst)
        }
    }
    let m = Maintenance::default();
    let seen = Arc::new(Count(AtomicUsize::new(0), true.into()));
    m.observe(seen.clone());
    let event = || MaintenanceEvent::new(ep("10.0.0.1:6379"), EventKind::CircuitHalfOpen);
    // Before anyone subscribed: the observer sees it, no buffer is made.
    m.emit(event());
    assert_eq!(seen.0.load(Ordering::SeqCst), 1);
    let mut events = m.subscribe();
    m.emit(event());
    assert_eq!(seen.0.load(Ordering::SeqCst), 2);
    assert!(
        events.try_recv().is_some(),
        "the subscriber has the second event"
    );
    assert!(events.try_recv().is_none(), "and only that one");
    // An observer that says it is gone is dropped from the list.
    seen.1.store(false, Ordering::SeqCst);
    m.emit(event());
    m.emit(event());
    assert_eq!(seen.0.load(Ordering::SeqCst), 3);
}
