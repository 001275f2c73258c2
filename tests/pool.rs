//! The pool through the maintenance simulator in front of a real redis-server.

mod common;

use std::time::Duration;

use common::events::wait_until;
use common::load;
use common::sim::{demux_to, sim_over};
use common::RedisServer;
use redis_handoff::handoff::HandoffConfig;
use redis_handoff::maintenance::EndpointType;
use redis_handoff::pool::Pool;
use redis_handoff::sim::Simulator;
use redis_handoff::{cmd, EventKind, Maintenance, MaintenanceConfig};
use tower::ServiceExt;

const WIDE: Duration = Duration::from_secs(60);

async fn pool_over_sim(
    server: &RedisServer,
    nodes: usize,
    size: usize,
    config: MaintenanceConfig,
) -> (Simulator, Pool, Maintenance) {
    let sim = sim_over(server, nodes).await;
    let maintenance = Maintenance::new(config);
    let demuxed = demux_to(&sim, 0, &maintenance);
    let pool = Pool::connect(demuxed, maintenance.clone(), size, HandoffConfig::default())
        .await
        .unwrap();
    (sim, pool, maintenance)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_moving_moves_all_hundred_connections_within_the_worker_bound_with_none_failed() {
    let server = RedisServer::start();
    let config = MaintenanceConfig::builder()
        .endpoint_type(EndpointType::InternalIp)
        .build()
        .unwrap();
    let (sim, pool, maintenance) = pool_over_sim(&server, 2, 100, config).await;
    assert_eq!(
        pool.limiter().workers(),
        33,
        "the seeds' figure for a pool of 100"
    );
    assert_eq!(pool.limiter().queue_size(), 500);
    let mut events = maintenance.subscribe();

    let load = load::start_incr_only(&pool, 50, "pool", Duration::ZERO, Duration::from_millis(2));
    tokio::time::sleep(Duration::from_millis(300)).await;

    let moving = sim.moving(0, 1, Duration::from_secs(5)).await.unwrap();
    assert_eq!(
        moving.recipients(),
        100,
        "every connection hears the MOVING"
    );
    // Every stack on the new node: read from the stacks themselves, which cannot fall behind
    // as an event subscriber can while 100 connections report at once.
    let target = sim.node(1).endpoint();
    tokio::time::timeout(WIDE, async {
        while !pool
            .stacks()
            .iter()
            .all(|s| s.current_endpoint() == Some(target.clone()))
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("every connection switched");
    moving.done().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let outcomes = load.finish().await;
    let mut switched = 0u64;
    while let Some(e) = events.try_recv() {
        if matches!(e.kind, EventKind::HandoffSwitched { .. }) {
            switched += 1;
        }
    }
    assert!(
        switched + events.missed() >= 100,
        "{switched} switches reported and {} events missed",
        events.missed()
    );
    let peak = pool.limiter().peak_active();
    assert!(
        (1..=33).contains(&peak),
        "handoff concurrency peaked at {peak}"
    );
    assert_eq!(pool.limiter().rejected(), 0);
    let metrics = redis_handoff::Metrics::new();
    metrics.follow(pool.maintenance());
    let gauges = metrics.snapshot().pool;
    assert_eq!((gauges.workers_max, gauges.queue_capacity), (33, 500));
    assert_eq!(gauges.workers_peak, peak as u64);
    for (t, o) in outcomes.iter().enumerate() {
        let (ok, errors) = (o.incr_ok, &o.errors);
        assert!(errors.is_empty(), "task {t}: {errors:?}");
        let value = pool
            .clone()
            .oneshot(cmd!("GET", format!("pool:{t}")))
            .await
            .unwrap();
        assert_eq!(value.as_i64(), Some(ok as i64), "task {t}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_handoff_queue_is_reported_not_dropped() {
    let server = RedisServer::start();
    let config = MaintenanceConfig::builder()
        .endpoint_type(EndpointType::InternalIp)
        .max_workers(1)
        .handoff_queue_size(2)
        .build()
        .unwrap();
    let (sim, pool, maintenance) = pool_over_sim(&server, 2, 10, config).await;
    let mut events = maintenance.subscribe();
    let moving = sim.moving(0, 1, Duration::from_secs(30)).await.unwrap();
    let (mut switched, mut refused) = (0, 0);
    tokio::time::timeout(WIDE, async {
        while switched + refused < 10 {
            match events.recv().await.map(|e| e.kind) {
                Some(EventKind::HandoffSwitched { .. }) => switched += 1,
                Some(EventKind::HandoffFailed {
                    error, attempts: 0, ..
                }) => {
                    assert!(
                        error.to_string().contains("handoff queue is full"),
                        "{error}"
                    );
                    refused += 1;
                }
                _ => {}
            }
        }
    })
    .await
    .expect("every handoff either switched or was refused");
    moving.abort();
    assert!(
        refused > 0 && switched > 0,
        "switched {switched}, refused {refused}"
    );
    assert_eq!(pool.limiter().rejected(), refused as u64);
    assert_eq!(pool.limiter().peak_active(), 1);
    // The refused stacks still serve on their old connections.
    for _ in 0..50 {
        pool.clone().oneshot(cmd!("PING")).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocking_command_takes_a_connection_of_its_own() {
    let server = RedisServer::start();
    let (_sim, pool, _m) = pool_over_sim(&server, 1, 2, MaintenanceConfig::default()).await;
    let blocked = {
        let pool = pool.clone();
        tokio::spawn(async move { pool.oneshot(cmd!("BLPOP", "jobs", 0)).await })
    };
    wait_until(
        "the BLPOP holds a connection",
        WIDE,
        Duration::from_millis(5),
        || pool.held() > 0,
    )
    .await;
    // Other commands keep flowing on the other connection, not behind the BLPOP.
    for i in 0..200 {
        let r = tokio::time::timeout(
            Duration::from_secs(5),
            pool.clone().oneshot(cmd!("INCR", "other")),
        )
        .await
        .expect("not stuck behind the blocking command")
        .unwrap();
        assert_eq!(r.as_i64(), Some(i + 1));
    }
    pool.clone()
        .oneshot(cmd!("RPUSH", "jobs", "j1"))
        .await
        .unwrap();
    let popped = tokio::time::timeout(WIDE, blocked)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(popped.as_array().map(|a| a.len()), Some(2));
    assert_eq!(pool.held(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_azure_failover_complete_refreshes_every_connection_of_the_pool() {
    use redis_handoff::maintenance::AzureEvents;
    use redis_handoff::sim::{AzureEvent, AzureEventKind};
    let server = RedisServer::start();
    let config = MaintenanceConfig::builder()
        .azure_events(AzureEvents::On)
        .build()
        .unwrap();
    let (sim, pool, _maintenance) = pool_over_sim(&server, 1, 4, config).await;
    assert!(pool.stacks().iter().all(|s| s.stats().handoffs == 0));

    // Every connection hears it; the handle keeps one copy; every stack refreshes.
    sim.azure(0, &AzureEvent::new(AzureEventKind::FailoverComplete))
        .unwrap();
    wait_until(
        "every stack refreshed",
        WIDE,
        Duration::from_millis(10),
        || pool.stacks().iter().all(|s| s.stats().handoffs >= 1),
    )
    .await;
    let reply = pool
        .clone()
        .oneshot(cmd!("INCR", "pool:azure"))
        .await
        .unwrap();
    assert_eq!(reply.as_i64(), Some(1));
    sim.shutdown();
}
