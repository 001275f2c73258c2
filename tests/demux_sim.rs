//! NotificationDemux through the maintenance simulator in front of a real redis-server: every
//! notification the simulator plays arrives as a typed event and moves the endpoint's state,
//! repeats are suppressed, hooks see everything first, and malformed pushes are dropped while
//! the connection carries on.
#![cfg(feature = "sim")]

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, UNIX_EPOCH};

use common::events::next_picked;
use common::sim::{demux_to, redis_and_sim, sim_over_with};
use common::{show, RedisServer};
use redis_handoff::maintenance::{
    post_hook, AzureEventKind, AzureEvents, EndpointStatus, EndpointType, EventKind, HookAction,
    HookContext, HookOutcome, Maintenance, MaintenanceConfig, MaintenanceEvent, MaintenanceEvents,
    MaintenanceMode, Notice, Notification, NotificationKind, RelaxationEnd,
};
use redis_handoff::sim;
use redis_handoff::{cmd, Connection, Endpoint};
use tokio::task::JoinSet;

/// How long a test waits for an event before it gives up: wide, the events come in
/// milliseconds.
const EVENT_WAIT: Duration = Duration::from_secs(10);

/// `Enabled`, so a connection fails unless the simulator accepted the opt-in.
fn maintenance(endpoint_type: EndpointType, azure: AzureEvents) -> Maintenance {
    Maintenance::new(
        MaintenanceConfig::builder()
            .mode(MaintenanceMode::Enabled)
            .endpoint_type(endpoint_type)
            .azure_events(azure)
            .build()
            .unwrap(),
    )
}

/// Every event up to and including the first that `last` accepts.
async fn events_until(
    events: &mut MaintenanceEvents,
    mut last: impl FnMut(&MaintenanceEvent) -> bool,
) -> Vec<MaintenanceEvent> {
    let mut seen = Vec::new();
    tokio::time::timeout(EVENT_WAIT, async {
        loop {
            let event = events.recv().await.expect("the handle is alive");
            let done = last(&event);
            seen.push(event);
            if done {
                return;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("the last event expected within 10 s; got {seen:#?}"));
    seen
}

fn notification(event: &MaintenanceEvent) -> Option<Notification> {
    match &event.kind {
        EventKind::Notification(n) => Some(n.clone()),
        _ => None,
    }
}

fn notification_of(
    kind: NotificationKind,
) -> impl FnMut(&MaintenanceEvent) -> Option<Notification> {
    move |e| notification(e).filter(|n| n.kind() == kind)
}

fn is_relaxation_end(event: &MaintenanceEvent) -> bool {
    matches!(
        event.kind,
        EventKind::RelaxationEnded {
            cause: RelaxationEnd::EndNotification
        }
    )
}

fn relaxed(status: &EndpointStatus) -> bool {
    status.in_maintenance() && status.is_relaxed(Instant::now())
}

fn calm(status: &EndpointStatus) -> bool {
    !status.in_maintenance() && !status.is_relaxed(Instant::now())
}

async fn command(conn: &Connection, command: redis_handoff::Command) -> redis_handoff::Reply {
    tokio::time::timeout(EVENT_WAIT, conn.send(command))
        .await
        .expect("a reply within 10 s")
        .expect("the command succeeds")
}

// ===== each notification type =====

#[tokio::test]
async fn migrate_arrives_as_migrating_then_migrated_and_relaxes_only_in_between() {
    let (_server, sim) = redis_and_sim(1).await;
    let maintenance = maintenance(EndpointType::InternalIp, AzureEvents::Off);
    let mut events = maintenance.subscribe();
    let demux = demux_to(&sim, 0, &maintenance);
    let conn = demux.connect().await.unwrap();
    let status = maintenance.status(demux.get_ref().endpoint());
    assert!(calm(&status));

    let migration = {
        let sim = sim.clone();
        tokio::spawn(async move { sim.migrate(0, Duration::from_secs(4)).await })
    };
    let (migrating, source) = next_picked(&mut events, EVENT_WAIT, |e| {
        notification(e)
            .filter(|n| n.kind() == NotificationKind::Migrating)
            .map(|n| (n, e.clone()))
    })
    .await;
    assert_eq!(
        migrating,
        Notification::Migrating {
            seq: 1,
            time: Duration::from_secs(4),
            shards: vec!["1".into()],
        }
    );
    assert_eq!(source.endpoint, *demux.get_ref().endpoint());
    assert!(source.is_from(conn.id()));
    assert!(relaxed(&status), "{status:?}");
    assert!(
        sim.notifications().iter().all(|n| n.name != "MIGRATED"),
        "the migration ended before its state was checked"
    );
    // Commands are slower during the migration, not broken.
    command(&conn, cmd!("SET", "demux-sim:k", "v")).await;

    assert_eq!(migration.await.unwrap().unwrap(), 1);
    let after = events_until(&mut events, is_relaxation_end).await;
    let migrated: Vec<Notification> = after.iter().filter_map(notification).collect();
    assert_eq!(
        migrated,
        [Notification::Migrated {
            seq: 1,
            shards: vec!["1".into()],
        }]
    );
    assert!(calm(&status), "{status:?}");
    let reply = command(&conn, cmd!("GET", "demux-sim:k")).await;
    assert_eq!(reply.as_str(), Some("v"));

    let counts = maintenance.counts();
    assert_eq!(counts.notifications(NotificationKind::Migrating), 1);
    assert_eq!(counts.notifications(NotificationKind::Migrated), 1);
    assert_eq!((counts.duplicates(), counts.dropped()), (0, 0));
}

#[tokio::test]
async fn failover_arrives_as_failing_over_then_failed_over_and_relaxes_only_in_between() {
    let (_server, sim) = redis_and_sim(1).await;
    let maintenance = maintenance(EndpointType::InternalFqdn, AzureEvents::Off);
    let mut events = maintenance.subscribe();
    let demux = demux_to(&sim, 0, &maintenance);
    let conn = demux.connect().await.unwrap();
    command(&conn, cmd!("SET", "demux-sim:f", "before")).await;
    let status = maintenance.status(demux.get_ref().endpoint());

    let failover = {
        let sim = sim.clone();
        tokio::spawn(async move { sim.failover(0, Duration::from_secs(4)).await })
    };
    let failing = next_picked(
        &mut events,
        EVENT_WAIT,
        notification_of(NotificationKind::FailingOver),
    )
    .await;
    assert_eq!(
        failing,
        Notification::FailingOver {
            seq: 1,
            time: Duration::from_secs(4),
            shards: vec!["1".into()],
        }
    );
    assert!(relaxed(&status), "{status:?}");
    assert!(
        sim.notifications().iter().all(|n| n.name != "FAILED_OVER"),
        "the failover ended before its state was checked"
    );
    // Held during the failover, answered after it.
    let reply = command(&conn, cmd!("GET", "demux-sim:f")).await;
    assert_eq!(reply.as_str(), Some("before"));

    assert_eq!(failover.await.unwrap().unwrap(), 1);
    let after = events_until(&mut events, is_relaxation_end).await;
    let failed: Vec<Notification> = after.iter().filter_map(notification).collect();
    assert_eq!(
        failed,
        [Notification::FailedOver {
            seq: 1,
            shards: vec!["1".into()],
        }]
    );
    assert!(calm(&status), "{status:?}");
    let counts = maintenance.counts();
    assert_eq!(counts.notifications(NotificationKind::FailingOver), 1);
    assert_eq!(counts.notifications(NotificationKind::FailedOver), 1);
}

/// Connects to node 0 with `endpoint_type`, has the simulator move node 0 to node 1, and
/// returns the typed `MOVING`, the endpoint state after it, and node 1's port.
async fn moving_seen_with(endpoint_type: EndpointType) -> (Notification, Arc<EndpointStatus>, u16) {
    let (_server, sim) = redis_and_sim(2).await;
    let maintenance = maintenance(endpoint_type, AzureEvents::Off);
    let mut events = maintenance.subscribe();
    let demux = demux_to(&sim, 0, &maintenance);
    let conn = demux.connect().await.unwrap();
    let asked = next_picked(&mut events, EVENT_WAIT, |e| match e.kind {
        EventKind::NotificationsEnabled { endpoint_type } => Some(endpoint_type),
        _ => None,
    })
    .await;
    assert_eq!(asked, endpoint_type);
    let info = &sim.node(0).connections()[0];
    assert_eq!(
        info.endpoint_type.map(|t| t.as_str()),
        Some(endpoint_type.as_str())
    );

    let moving = sim.moving(0, 1, Duration::from_secs(30)).await.unwrap();
    assert_eq!(moving.recipients(), 1);
    let (notification, event) = next_picked(&mut events, EVENT_WAIT, |e| {
        notification(e)
            .filter(|n| n.kind() == NotificationKind::Moving)
            .map(|n| (n, e.clone()))
    })
    .await;
    assert_eq!(notification.seq(), u64::try_from(moving.seq()).unwrap());
    assert!(event.is_from(conn.id()));

    let status = maintenance.status(demux.get_ref().endpoint());
    assert!(status.is_relaxed(Instant::now()), "{status:?}");
    let target = status.moving().expect("the MOVING is pending");
    assert_eq!(target.seq, notification.seq());
    assert_eq!(target.time, Duration::from_secs(30));
    assert_eq!(target.source, *conn.endpoint());
    if let Notification::Moving { endpoint, .. } = &notification {
        assert_eq!(&target.endpoint, endpoint);
    }
    // The connection still works within the grace period.
    assert_eq!(command(&conn, cmd!("PING")).await.as_str(), Some("PONG"));
    moving.abort();
    (notification, status, sim.node(1).port())
}

#[tokio::test]
async fn moving_with_internal_ip_carries_the_target_node_ip_and_port() {
    let (moving, _, port) = moving_seen_with(EndpointType::InternalIp).await;
    let Notification::Moving { time, endpoint, .. } = moving else {
        panic!("{moving:?}")
    };
    assert_eq!(time, Duration::from_secs(30));
    assert_eq!(endpoint, Some(Endpoint::new("127.0.0.1", port)));
}

#[tokio::test]
async fn moving_with_internal_fqdn_carries_the_target_node_name_and_port() {
    let (moving, _, port) = moving_seen_with(EndpointType::InternalFqdn).await;
    let Notification::Moving { endpoint, .. } = moving else {
        panic!("{moving:?}")
    };
    assert_eq!(endpoint, Some(Endpoint::new("localhost", port)));
}

#[tokio::test]
async fn moving_with_endpoint_type_none_carries_a_null_endpoint() {
    let (moving, status, _) = moving_seen_with(EndpointType::None).await;
    assert!(
        matches!(moving, Notification::Moving { endpoint: None, time, .. } if time == Duration::from_secs(30)),
        "{moving:?}"
    );
    assert_eq!(status.moving().map(|t| t.endpoint), Some(None));
}

// ===== Azure =====

#[tokio::test]
async fn azure_events_from_the_simulator_become_typed_events() {
    let (_server, sim) = redis_and_sim(1).await;
    let maintenance = maintenance(EndpointType::InternalIp, AzureEvents::On);
    let mut events = maintenance.subscribe();
    let demux = demux_to(&sim, 0, &maintenance);
    let conn = demux.connect().await.unwrap();
    assert!(sim.connections()[0].azure_subscribed);
    let status = maintenance.status(demux.get_ref().endpoint());

    let starting = sim::AzureEvent::new(sim::AzureEventKind::Starting)
        .start_time("2030-01-02T03:04:05")
        .replica(true)
        .ip_address("10.1.2.3")
        .ports(16000, 14000);
    assert_eq!(sim.azure(0, &starting).unwrap(), 1);
    let (event, from) = next_picked(&mut events, EVENT_WAIT, |e| match &e.kind {
        EventKind::Azure(a) => Some((a.clone(), e.clone())),
        _ => None,
    })
    .await;
    assert_eq!(event.kind, AzureEventKind::NodeMaintenanceStarting);
    // 2030-01-02T03:04:05 UTC.
    assert_eq!(
        event.start_time,
        Some(UNIX_EPOCH + Duration::from_secs(1_893_553_445))
    );
    assert!(event.is_replica);
    assert_eq!(event.ip_address, Some("10.1.2.3".parse().unwrap()));
    assert_eq!(
        (event.ssl_port, event.non_ssl_port),
        (Some(16000), Some(14000))
    );
    assert_eq!(
        event.endpoint(false),
        Some(Endpoint::new("10.1.2.3", 14000))
    );
    assert!(!event.is_late());
    assert!(from.is_from(conn.id()));
    assert!(relaxed(&status), "{status:?}");

    // The same event again is a repeat: suppressed, not published twice.
    assert_eq!(sim.azure(0, &starting).unwrap(), 1);
    let repeat = next_picked(&mut events, EVENT_WAIT, |e| match &e.kind {
        EventKind::DuplicateSuppressed { name, seq } => Some((name.to_string(), *seq)),
        EventKind::Azure(a) => panic!("the repeat was published again: {a:?}"),
        _ => None,
    })
    .await;
    assert_eq!(repeat, ("NodeMaintenanceStarting".to_string(), None));

    // The subscribed connection still serves commands.
    command(&conn, cmd!("SET", "demux-sim:a", "1")).await;

    // Old servers name the end of a failover `NodeMaintenanceFailover`.
    let old_name =
        sim::AzureEvent::new(sim::AzureEventKind::Other("NodeMaintenanceFailover".into()));
    assert_eq!(sim.azure(0, &old_name).unwrap(), 1);
    let ended = next_picked(&mut events, EVENT_WAIT, |e| match &e.kind {
        EventKind::Azure(a) => Some(a.clone()),
        _ => None,
    })
    .await;
    assert_eq!(ended.kind, AzureEventKind::NodeMaintenanceFailoverComplete);
    assert_eq!(ended.start_time, None);
    assert!(!ended.is_replica);
    assert!(calm(&status), "{status:?}");

    let counts = maintenance.counts();
    assert_eq!(counts.azure(&AzureEventKind::NodeMaintenanceStarting), 2);
    assert_eq!(counts.duplicates(), 1);
    assert_eq!(
        counts.azure(&AzureEventKind::NodeMaintenanceFailoverComplete),
        1
    );
    assert_eq!((counts.total_notifications(), counts.dropped()), (0, 0));
    let reply = command(&conn, cmd!("GET", "demux-sim:a")).await;
    assert_eq!(reply.as_str(), Some("1"));
}

#[tokio::test]
async fn azure_events_off_leaves_the_channel_unsubscribed() {
    let (_server, sim) = redis_and_sim(1).await;
    let maintenance = maintenance(EndpointType::InternalIp, AzureEvents::Off);
    let demux = demux_to(&sim, 0, &maintenance);
    let conn = demux.connect().await.unwrap();
    assert!(!sim.connections()[0].azure_subscribed);
    let event = sim::AzureEvent::new(sim::AzureEventKind::Start);
    assert_eq!(sim.azure(0, &event).unwrap(), 0);
    assert_eq!(command(&conn, cmd!("PING")).await.as_str(), Some("PONG"));
    assert_eq!(maintenance.counts().total_azure(), 0);
}

// ===== repeats =====

const MIGRATING_77: &[u8] = b">4\r\n$9\r\nMIGRATING\r\n:77\r\n:5\r\n*1\r\n$1\r\n3\r\n";
const MIGRATED_77: &[u8] = b">3\r\n$8\r\nMIGRATED\r\n:77\r\n*1\r\n$1\r\n3\r\n";

#[tokio::test]
async fn the_same_push_sent_twice_yields_one_event_and_one_duplicate() {
    let (_server, sim) = redis_and_sim(1).await;
    let maintenance = maintenance(EndpointType::InternalIp, AzureEvents::Off);
    let mut events = maintenance.subscribe();
    let demux = demux_to(&sim, 0, &maintenance);
    let conn = demux.connect().await.unwrap();

    assert_eq!(sim.send_raw(0, MIGRATING_77).unwrap(), 1);
    assert_eq!(sim.send_raw(0, MIGRATING_77).unwrap(), 1);
    // A different push after them: once it is processed, both copies were.
    assert_eq!(sim.send_raw(0, MIGRATED_77).unwrap(), 1);
    let seen = events_until(
        &mut events,
        |e| matches!(&e.kind, EventKind::Notification(n) if n.kind() == NotificationKind::Migrated),
    )
    .await;

    let migrating: Vec<Notification> = seen
        .iter()
        .filter_map(notification)
        .filter(|n| n.kind() == NotificationKind::Migrating)
        .collect();
    assert_eq!(
        migrating,
        [Notification::Migrating {
            seq: 77,
            time: Duration::from_secs(5),
            shards: vec!["3".into()],
        }]
    );
    let duplicates: Vec<(String, Option<u64>)> = seen
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::DuplicateSuppressed { name, seq } => Some((name.to_string(), *seq)),
            _ => None,
        })
        .collect();
    assert_eq!(duplicates, [("MIGRATING".to_string(), Some(77))]);

    let counts = maintenance.counts();
    assert_eq!(counts.notifications(NotificationKind::Migrating), 2);
    assert_eq!(counts.duplicates(), 1);
    assert!(calm(&maintenance.status(demux.get_ref().endpoint())));
    assert_eq!(command(&conn, cmd!("PING")).await.as_str(), Some("PONG"));
}

#[tokio::test]
async fn a_replayed_migrated_on_a_new_connection_is_suppressed_not_reapplied() {
    let server = RedisServer::start();
    let sim = sim_over_with(&server, |b| b.replay(true)).await;
    let maintenance = maintenance(EndpointType::InternalIp, AzureEvents::Off);
    let mut events = maintenance.subscribe();
    let demux = demux_to(&sim, 0, &maintenance);
    let status = maintenance.status(demux.get_ref().endpoint());
    let first = demux.connect().await.unwrap();

    let done = sim.migrate(0, Duration::from_millis(200)).await.unwrap();
    let ended = events_until(&mut events, is_relaxation_end).await;
    assert!(ended
        .iter()
        .any(|e| matches!(notification(e), Some(Notification::Migrated { seq, .. }) if seq == 1)));
    assert!(calm(&status), "{status:?}");

    // A second migration is under way when a new connection is made; the replayed MIGRATED of
    // the first must not end it.
    let second = {
        let sim = sim.clone();
        tokio::spawn(async move { sim.migrate(0, Duration::from_secs(5)).await })
    };
    let started = next_picked(
        &mut events,
        EVENT_WAIT,
        notification_of(NotificationKind::Migrating),
    )
    .await;
    assert_eq!(started.seq(), 2);
    assert!(relaxed(&status), "{status:?}");

    let late = demux.connect().await.unwrap();
    let seen = events_until(&mut events, |e| {
        matches!(e.kind, EventKind::DuplicateSuppressed { .. })
    })
    .await;
    let replayed = seen.last().unwrap();
    assert!(
        matches!(&replayed.kind, EventKind::DuplicateSuppressed { name, seq } if &**name == "MIGRATED" && *seq == Some(u64::try_from(done).unwrap())),
        "{replayed:?}"
    );
    assert!(replayed.is_from(late.id()));
    assert!(
        !seen
            .iter()
            .any(|e| notification(e).is_some() || is_relaxation_end(e)),
        "{seen:#?}"
    );
    assert!(
        relaxed(&status),
        "the replay ended the second migration: {status:?}"
    );
    let log = sim.notifications();
    let replay = log.last().unwrap();
    assert_eq!((replay.name.as_str(), replay.seq), ("MIGRATED", Some(done)));
    assert_eq!(replay.connection_id, sim.connections()[1].id);

    // The second migration's end reaches both connections: applied once, suppressed once.
    assert_eq!(second.await.unwrap().unwrap(), 2);
    let mut applied = 0;
    let mut suppressed = 0;
    while applied + suppressed < 2 {
        next_picked(&mut events, EVENT_WAIT, |e| match &e.kind {
            EventKind::Notification(Notification::Migrated { seq: 2, .. }) => {
                applied += 1;
                Some(())
            }
            EventKind::DuplicateSuppressed { name, seq: Some(2) } if &**name == "MIGRATED" => {
                suppressed += 1;
                Some(())
            }
            _ => None,
        })
        .await;
    }
    assert_eq!((applied, suppressed), (1, 1));
    assert!(calm(&status), "{status:?}");
    let counts = maintenance.counts();
    assert_eq!(counts.notifications(NotificationKind::Migrated), 4);
    assert_eq!(counts.duplicates(), 2);
    for conn in [&first, &late] {
        assert_eq!(command(conn, cmd!("PING")).await.as_str(), Some("PONG"));
    }
}

// ===== hooks =====

#[tokio::test]
async fn a_pre_hook_rewrites_moving_and_another_skips_failing_over() {
    let (_server, sim) = redis_and_sim(2).await;
    let maintenance = maintenance(EndpointType::InternalIp, AzureEvents::Off);
    let elsewhere = Endpoint::new("10.9.8.7", 6380);
    let rewrite_to = elsewhere.clone();
    maintenance.add_hook(move |_cx: &HookContext<'_>, notice: &mut Notice| {
        if let Notice::Push(Notification::Moving { endpoint, time, .. }) = notice {
            *endpoint = Some(rewrite_to.clone());
            *time = Duration::from_secs(7);
        }
        HookAction::Continue
    });
    maintenance.add_hook(|_cx: &HookContext<'_>, notice: &mut Notice| {
        if notice.name() == "FAILING_OVER" {
            HookAction::Skip
        } else {
            HookAction::Continue
        }
    });
    let outcomes = Arc::new(Mutex::new(Vec::new()));
    let record = outcomes.clone();
    maintenance.add_hook(post_hook(
        move |_cx: &HookContext<'_>, notice: &Notice, outcome: HookOutcome| {
            record
                .lock()
                .unwrap()
                .push((notice.name().to_string(), outcome));
        },
    ));
    let mut events = maintenance.subscribe();
    let demux = demux_to(&sim, 0, &maintenance);
    let conn = demux.connect().await.unwrap();
    let status = maintenance.status(demux.get_ref().endpoint());

    // The skipped FAILING_OVER changes nothing and publishes nothing; its end still comes.
    sim.failover(0, Duration::from_millis(300)).await.unwrap();
    let seen = events_until(&mut events, |e| notification(e).is_some()).await;
    let kinds: Vec<NotificationKind> = seen
        .iter()
        .filter_map(notification)
        .map(|n| n.kind())
        .collect();
    assert_eq!(kinds, [NotificationKind::FailedOver]);
    assert!(calm(&status), "{status:?}");
    let counts = maintenance.counts();
    assert_eq!(counts.skipped(), 1);
    assert_eq!(counts.notifications(NotificationKind::FailingOver), 1);

    let moving = sim.moving(0, 1, Duration::from_secs(30)).await.unwrap();
    let rewritten = next_picked(
        &mut events,
        EVENT_WAIT,
        notification_of(NotificationKind::Moving),
    )
    .await;
    assert_eq!(
        rewritten,
        Notification::Moving {
            seq: u64::try_from(moving.seq()).unwrap(),
            time: Duration::from_secs(7),
            endpoint: Some(elsewhere.clone()),
        }
    );
    let target = status.moving().expect("the MOVING is pending");
    assert_eq!(
        (target.endpoint, target.time),
        (Some(elsewhere), Duration::from_secs(7))
    );
    moving.abort();

    assert_eq!(
        *outcomes.lock().unwrap(),
        [
            ("FAILING_OVER".to_string(), HookOutcome::Skipped),
            ("FAILED_OVER".to_string(), HookOutcome::Applied),
            ("MOVING".to_string(), HookOutcome::Applied),
        ]
    );
    assert_eq!(maintenance.counts().skipped(), 1);
    assert_eq!(command(&conn, cmd!("PING")).await.as_str(), Some("PONG"));
}

// ===== malformed pushes =====

#[tokio::test]
async fn a_malformed_push_is_dropped_and_counted_while_commands_keep_their_replies() {
    const BAD: &[u8] = b">2\r\n$9\r\nMIGRATING\r\n$3\r\nabc\r\n";
    let (_server, sim) = redis_and_sim(1).await;
    let maintenance = maintenance(EndpointType::InternalIp, AzureEvents::Off);
    let mut events = maintenance.subscribe();
    let demux = demux_to(&sim, 0, &maintenance);
    let conn = demux.connect().await.unwrap();

    assert!(command(&conn, cmd!("SET", "demux-sim:g", "before"))
        .await
        .is_ok());
    assert_eq!(sim.send_raw(0, BAD).unwrap(), 1);
    let (reason, preview, event) = next_picked(&mut events, EVENT_WAIT, |e| match &e.kind {
        EventKind::NotificationDropped { reason, preview } => {
            Some((reason.clone(), preview.clone(), e.clone()))
        }
        _ => None,
    })
    .await;
    assert!(
        reason.contains("malformed MIGRATING") && reason.contains("sequence number"),
        "{reason}"
    );
    assert_eq!(&*preview, show(BAD));
    assert!(event.is_from(conn.id()));
    assert_eq!(maintenance.counts().dropped(), 1);
    assert_eq!(maintenance.counts().total_notifications(), 0);
    assert!(!conn.is_closed());
    assert!(calm(&maintenance.status(demux.get_ref().endpoint())));

    let reply = command(&conn, cmd!("GET", "demux-sim:g")).await;
    assert_eq!(reply.as_str(), Some("before"));

    // Injected again while commands are in flight: every command still gets its own reply.
    let mut in_flight = JoinSet::new();
    for _ in 0..20 {
        let conn = conn.clone();
        in_flight.spawn(async move { command(&conn, cmd!("INCR", "demux-sim:n")).await });
    }
    assert_eq!(sim.send_raw(0, BAD).unwrap(), 1);
    let mut counted: Vec<i64> = Vec::new();
    while let Some(reply) = in_flight.join_next().await {
        counted.push(reply.unwrap().as_i64().expect("an integer reply"));
    }
    counted.sort_unstable();
    assert_eq!(counted, (1..=20).collect::<Vec<i64>>());
    next_picked(&mut events, EVENT_WAIT, |e| {
        matches!(e.kind, EventKind::NotificationDropped { .. }).then_some(())
    })
    .await;
    assert_eq!(maintenance.counts().dropped(), 2);
    let reply = command(&conn, cmd!("GET", "demux-sim:n")).await;
    assert_eq!(reply.as_str(), Some("20"));
    assert!(!conn.is_closed());
}
