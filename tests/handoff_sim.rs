//! HandoffRetry through the maintenance simulator in front of a real redis-server: every node
//! of the simulator serves the same data, so a client that moves keeps its keys.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::load::{self, counter, next_event, Outcome};
use common::RedisServer;
use redis_handoff::frame::BytesFrame;
use redis_handoff::handoff::{HandoffConfig, HandoffRetry};
use redis_handoff::maintenance::{EndpointType, MaintenanceEvents};
use redis_handoff::sim::{Backend, Simulator};
use redis_handoff::{
    cmd, ConnectOptions, Connection, Connector, Endpoint, EventKind, Maintenance,
    MaintenanceConfig, NotificationDemux,
};
use tower::ServiceExt;

struct Setup {
    _server: RedisServer,
    sim: Simulator,
    redis: HandoffRetry,
    events: MaintenanceEvents,
}

async fn setup(nodes: usize, config: MaintenanceConfig) -> Setup {
    let server = RedisServer::start();
    let sim = Simulator::builder()
        .backend(Backend::redis(server.addr()))
        .nodes(nodes)
        .start()
        .await
        .unwrap();
    let maintenance = Maintenance::new(config);
    let events = maintenance.subscribe();
    let connector = Connector::new(ConnectOptions::from_url(&sim.node(0).url()).unwrap()).unwrap();
    let demuxed = NotificationDemux::over_connector(connector, maintenance.clone());
    let handoff = HandoffConfig {
        backoff_base: Duration::from_millis(20),
        ..HandoffConfig::default()
    };
    let redis = HandoffRetry::connect(demuxed, maintenance, handoff)
        .await
        .unwrap();
    Setup {
        _server: server,
        sim,
        redis,
        events,
    }
}

fn config(endpoint_type: EndpointType) -> MaintenanceConfig {
    MaintenanceConfig::builder()
        .endpoint_type(endpoint_type)
        .handoff_timeout(Duration::from_millis(500))
        .build()
        .unwrap()
}

/// Zero failed commands, and each counter holds exactly the increments acknowledged.
async fn assert_no_failures(redis: &HandoffRetry, outcomes: &[Outcome]) {
    for (t, o) in outcomes.iter().enumerate() {
        assert!(o.errors.is_empty(), "task {t}: {:?}", o.errors);
        assert!(o.incr_ok > 0 && o.get_ok > 0, "task {t} made no progress");
        assert_eq!(
            counter(redis, format!("sim-load:{t}")).await,
            o.incr_ok,
            "task {t}: counter"
        );
    }
}

async fn moving_with_endpoint(endpoint_type: EndpointType, host: &str) {
    let mut s = setup(2, config(endpoint_type)).await;
    let load = load::start(
        &s.redis,
        50,
        "sim-load",
        Duration::ZERO,
        Duration::from_millis(1),
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let moving = s.sim.moving(0, 1, Duration::from_secs(2)).await.unwrap();
    let seen = next_event(&mut s.events, |k| {
        matches!(
            k,
            EventKind::Notification(redis_handoff::Notification::Moving { .. })
        )
    })
    .await;
    let target = Endpoint::new(host, s.sim.node(1).port());
    assert!(
        matches!(&seen, EventKind::Notification(redis_handoff::Notification::Moving { endpoint: Some(e), .. }) if *e == target),
        "{seen:?}"
    );
    next_event(&mut s.events, |k| {
        matches!(k, EventKind::HandoffSwitched { .. })
    })
    .await;
    next_event(&mut s.events, |k| {
        matches!(k, EventKind::HandoffDrained { .. })
    })
    .await;
    // The grace period ends and node 0 closes its connections: nobody notices.
    moving.done().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let outcomes = load.finish().await;
    assert_eq!(s.redis.current_endpoint(), Some(target));
    assert_eq!(s.redis.configured_endpoint(), &s.sim.node(0).endpoint());
    assert_no_failures(&s.redis, &outcomes).await;
    assert_eq!(s.redis.stats().handoffs, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moving_to_an_ip_endpoint_moves_every_command_with_none_failed() {
    moving_with_endpoint(EndpointType::InternalIp, "127.0.0.1").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moving_to_an_fqdn_endpoint_moves_every_command_with_none_failed() {
    moving_with_endpoint(EndpointType::InternalFqdn, "localhost").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moving_with_a_null_endpoint_reconnects_to_the_configured_address_at_half_time() {
    let mut s = setup(1, config(EndpointType::None)).await;
    let load = load::start(
        &s.redis,
        50,
        "sim-load",
        Duration::ZERO,
        Duration::from_millis(1),
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let sent = tokio::time::Instant::now();
    let moving = s
        .sim
        .moving_null(0, Duration::from_secs(2), Duration::from_millis(500))
        .await
        .unwrap();
    next_event(&mut s.events, |k| {
        matches!(k, EventKind::HandoffSwitched { .. })
    })
    .await;
    let switched_after = sent.elapsed();
    // Half of the 2 s grace, less up to a quarter of that for jitter: well before the close.
    assert!(
        switched_after >= Duration::from_millis(600)
            && switched_after < Duration::from_millis(1900),
        "switched after {switched_after:?}"
    );
    moving.done().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let outcomes = load.finish().await;
    assert_eq!(s.redis.current_endpoint(), Some(s.sim.node(0).endpoint()));
    assert_no_failures(&s.redis, &outcomes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_endpoint_that_refuses_fails_the_handoff_and_the_old_connection_keeps_serving() {
    let mut s = setup(2, config(EndpointType::InternalIp)).await;
    s.sim.refuse(1).unwrap();
    let load = load::start(
        &s.redis,
        50,
        "sim-load",
        Duration::ZERO,
        Duration::from_millis(1),
    );
    let moving = s.sim.moving(0, 1, Duration::from_secs(30)).await.unwrap();
    let failed = next_event(&mut s.events, |k| {
        matches!(k, EventKind::HandoffFailed { .. })
    })
    .await;
    assert!(
        matches!(failed, EventKind::HandoffFailed { attempts: 3, .. }),
        "{failed:?}"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let outcomes = load.finish().await;
    moving.abort();
    assert_eq!(s.redis.current_endpoint(), Some(s.sim.node(0).endpoint()));
    assert_no_failures(&s.redis, &outcomes).await;
    assert_eq!(s.redis.stats().handoffs_failed, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_endpoint_that_blackholes_times_out_and_the_old_connection_keeps_serving() {
    let mut s = setup(2, config(EndpointType::InternalIp)).await;
    s.sim.blackhole(1).unwrap();
    let load = load::start(
        &s.redis,
        50,
        "sim-load",
        Duration::ZERO,
        Duration::from_millis(1),
    );
    let started = tokio::time::Instant::now();
    let moving = s.sim.moving(0, 1, Duration::from_secs(30)).await.unwrap();
    let failed = next_event(&mut s.events, |k| {
        matches!(k, EventKind::HandoffFailed { .. })
    })
    .await;
    let took = started.elapsed();
    match &failed {
        EventKind::HandoffFailed {
            attempts, error, ..
        } => {
            assert_eq!(*attempts, 3);
            assert!(
                matches!(error, redis_handoff::Error::ConnectTimeout { .. }),
                "{error:?}"
            );
        }
        other => panic!("{other:?}"),
    }
    // Three attempts of 500 ms each, bounded: not stuck on the blackhole.
    assert!(took < Duration::from_secs(10), "{took:?}");
    let outcomes = load.finish().await;
    moving.abort();
    assert_eq!(s.redis.current_endpoint(), Some(s.sim.node(0).endpoint()));
    assert_no_failures(&s.redis, &outcomes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_old_connection_killed_mid_drain_retries_safe_commands_and_never_doubles_an_incr() {
    let mut s = setup(2, config(EndpointType::InternalIp)).await;
    // Slow replies on node 0, so commands are still owed when the switch happens.
    s.sim.latency(0, Duration::from_millis(400)).unwrap();
    // Staggered, so that at any moment some tasks are reading and others writing.
    let load = load::start(
        &s.redis,
        50,
        "sim-load",
        Duration::from_millis(7),
        Duration::from_millis(1),
    );
    tokio::time::sleep(Duration::from_millis(600)).await;
    let moving = s.sim.moving(0, 1, Duration::from_secs(30)).await.unwrap();
    next_event(&mut s.events, |k| {
        matches!(k, EventKind::HandoffSwitched { .. })
    })
    .await;
    let killed = s.sim.reset_all(0).unwrap();
    assert!(killed >= 1);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let outcomes = load.finish().await;
    moving.abort();

    let mut lost = 0;
    for (t, o) in outcomes.iter().enumerate() {
        for e in &o.errors {
            // Only INCRs fail, and they say they may have run; GETs were sent again.
            assert!(
                e.starts_with("INCR: ") && e.contains("may have been executed"),
                "task {t}: {e}"
            );
        }
        lost += o.incr_lost;
        let value = counter(&s.redis, format!("sim-load:{t}")).await;
        assert!(
            value >= o.incr_ok && value <= o.incr_ok + o.incr_lost,
            "task {t}: counter {value}, acknowledged {}, lost {}",
            o.incr_ok,
            o.incr_lost
        );
    }
    let errors: usize = outcomes.iter().map(|o| o.errors.len()).sum();
    assert!(lost > 0, "some INCRs were in flight on the old connection (errors {errors}, killed {killed}, stats {:?})", s.redis.stats());
    assert!(s.redis.stats().retried > 0, "some GETs were sent again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_movings_in_a_row_end_on_the_last_node_with_none_failed() {
    let mut s = setup(3, config(EndpointType::InternalIp)).await;
    let load = load::start(
        &s.redis,
        50,
        "sim-load",
        Duration::ZERO,
        Duration::from_millis(1),
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    let first = s.sim.moving(0, 1, Duration::from_secs(2)).await.unwrap();
    next_event(&mut s.events, |k| {
        matches!(k, EventKind::HandoffSwitched { .. })
    })
    .await;
    let second = s.sim.moving(1, 2, Duration::from_secs(2)).await.unwrap();
    next_event(&mut s.events, |k| {
        matches!(k, EventKind::HandoffSwitched { .. })
    })
    .await;
    first.done().await;
    second.done().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let outcomes = load.finish().await;
    assert_eq!(s.redis.current_endpoint(), Some(s.sim.node(2).endpoint()));
    assert_no_failures(&s.redis, &outcomes).await;
    assert_eq!(s.redis.stats().handoffs, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_receives_every_message_published_across_the_move() {
    let mut s = setup(2, config(EndpointType::InternalIp)).await;
    let mut pushes = s.redis.pushes();
    s.redis
        .clone()
        .oneshot(cmd!("SUBSCRIBE", "orders"))
        .await
        .unwrap();
    // The publisher talks to the backend directly: it is not moving.
    let publisher = Connection::connect(&s._server.url()).await.unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let pub_task = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                publisher.send(cmd!("PUBLISH", "orders", i)).await.unwrap();
                i += 1;
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            i
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let moving = s.sim.moving(0, 1, Duration::from_secs(2)).await.unwrap();
    next_event(&mut s.events, |k| {
        matches!(k, EventKind::HandoffDrained { .. })
    })
    .await;
    moving.done().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    let total = pub_task.await.unwrap();

    let mut seen = std::collections::BTreeSet::new();
    while (seen.len() as u64) < total {
        let Ok(frame) = tokio::time::timeout(Duration::from_secs(10), pushes.recv()).await else {
            let missing: Vec<u64> = (0..total).filter(|i| !seen.contains(i)).collect();
            panic!(
                "{} of {total} messages never arrived: {:?}",
                missing.len(),
                &missing[..missing.len().min(20)]
            );
        };
        let frame = frame.unwrap();
        if let BytesFrame::Push { data, .. } = frame {
            if matches!(data.first(), Some(BytesFrame::BlobString { data, .. }) if &data[..] == b"message")
            {
                if let Some(BytesFrame::BlobString { data, .. }) = data.get(2) {
                    seen.insert(String::from_utf8_lossy(data).parse::<u64>().unwrap());
                }
            }
        }
    }
    assert_eq!(seen.len() as u64, total, "every message arrived");
    assert_eq!(s.redis.current_endpoint(), Some(s.sim.node(1).endpoint()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_azure_failover_complete_refreshes_the_connection_with_none_failed() {
    use redis_handoff::maintenance::AzureEvents;
    use redis_handoff::sim::{AzureEvent, AzureEventKind, Scope};
    let config = MaintenanceConfig::builder()
        .azure_events(AzureEvents::On)
        .build()
        .unwrap();
    let mut s = setup(1, config).await;
    let load = load::start(
        &s.redis,
        50,
        "sim-load",
        Duration::ZERO,
        Duration::from_millis(1),
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let sent = s
        .sim
        .azure(
            Scope::All,
            &AzureEvent::new(AzureEventKind::FailoverComplete),
        )
        .unwrap();
    assert_eq!(
        sent, 1,
        "the stack's connection is subscribed to AzureRedisEvents"
    );
    let switched = next_event(&mut s.events, |k| {
        matches!(k, EventKind::HandoffSwitched { .. })
    })
    .await;
    // A fresh connection to the configured address, made before the old one was dropped.
    assert!(
        matches!(&switched, EventKind::HandoffSwitched { to, .. } if *to == s.sim.node(0).endpoint()),
        "{switched:?}"
    );
    next_event(&mut s.events, |k| {
        matches!(k, EventKind::HandoffDrained { .. })
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let outcomes = load.finish().await;
    assert_no_failures(&s.redis, &outcomes).await;
    assert_eq!(s.redis.stats().handoffs, 1);
}
