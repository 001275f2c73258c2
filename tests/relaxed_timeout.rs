//! RelaxedTimeout over HandoffRetry, with notifications from the maintenance simulator over a
//! real redis-server: relaxing during a maintenance, the backstop, blocking commands, handoffs.
#![cfg(feature = "sim")]

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::events::{handoff_switched, next_matching, wait_until};
use common::sim::{handoff_to, sim_over_with};
use common::RedisServer;
use redis_handoff::handoff::{HandoffConfig, HandoffRetry};
use redis_handoff::maintenance::{MaintenanceEvents, RelaxationEnd};
use redis_handoff::relaxed_timeout::{RelaxedTimeout, RelaxedTimeoutLayer};
use redis_handoff::sim::Simulator;
use redis_handoff::{
    cmd, Connection, EndpointStatus, Error, EventKind, Maintenance, MaintenanceConfig, Notification,
};
use tower::{ServiceBuilder, ServiceExt};

/// Bound on anything the tests wait for; only reached when something is broken.
const WIDE: Duration = Duration::from_secs(30);

/// How often a condition is checked while waiting for it.
const POLL: Duration = Duration::from_millis(5);

/// A `MIGRATING` push frame, as Redis Software sends it.
const MIGRATING: &[u8] = b">4\r\n$9\r\nMIGRATING\r\n:19\r\n:10\r\n*1\r\n$1\r\n1\r\n";

type Redis = RelaxedTimeout<HandoffRetry, Arc<EndpointStatus>>;

/// A client stack on node 0 of `sim`: RelaxedTimeout over HandoffRetry over the demux.
struct Stack {
    redis: Redis,
    maintenance: Maintenance,
    status: Arc<EndpointStatus>,
    events: MaintenanceEvents,
}

async fn sim_over(server: &RedisServer, nodes: usize, migrate_latency: Duration) -> Simulator {
    sim_over_with(server, |b| b.nodes(nodes).migrate_latency(migrate_latency)).await
}

async fn stack(
    sim: &Simulator,
    config: MaintenanceConfig,
    normal: Duration,
    relaxed: Duration,
) -> Stack {
    let node = sim.node(0);
    let maintenance = Maintenance::new(config);
    let events = maintenance.subscribe();
    let handoff = handoff_to(sim, &maintenance, HandoffConfig::default()).await;
    // State is kept under the configured endpoint: the node's.
    assert_eq!(handoff.configured_endpoint(), &node.endpoint());
    let status = maintenance.status(&node.endpoint());
    let redis = ServiceBuilder::new()
        .layer(RelaxedTimeoutLayer::new(normal, relaxed, status.clone()))
        .service(handoff);
    Stack {
        redis,
        maintenance,
        status,
        events,
    }
}

fn config() -> redis_handoff::maintenance::MaintenanceConfigBuilder {
    MaintenanceConfig::builder()
}

/// What a load task saw: how many commands succeeded, the slowest one, and the failures.
#[derive(Debug, Default)]
struct TaskResult {
    ok: u64,
    slowest: Duration,
    errors: Vec<String>,
}

/// `tasks` tasks doing SET and GET on their own keys until `stop_at`.
async fn load_until(redis: &Redis, tasks: usize, stop_at: Instant) -> Vec<TaskResult> {
    let handles: Vec<_> = (0..tasks)
        .map(|t| {
            let redis = redis.clone();
            tokio::spawn(async move {
                let mut r = TaskResult::default();
                let key = format!("rt:{t}");
                let mut n = 0u64;
                while Instant::now() < stop_at {
                    n += 1;
                    let command = if n.is_multiple_of(2) {
                        cmd!("GET", &key)
                    } else {
                        cmd!("SET", &key, n)
                    };
                    let started = Instant::now();
                    match redis.clone().oneshot(command).await {
                        Ok(_) => {
                            r.ok += 1;
                            r.slowest = r.slowest.max(started.elapsed());
                        }
                        Err(e) => r.errors.push(e.to_string()),
                    }
                }
                r
            })
        })
        .collect();
    let mut out = Vec::new();
    for h in handles {
        out.push(
            tokio::time::timeout(WIDE, h)
                .await
                .expect("task hung")
                .unwrap(),
        );
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_migration_fails_no_command_and_the_normal_timeout_is_back_once_it_is_over() {
    let server = RedisServer::start();
    let sim = sim_over(&server, 1, Duration::from_millis(300)).await;
    let ms = Duration::from_millis;
    let mut s = stack(&sim, config().build().unwrap(), ms(100), ms(1000)).await;
    s.redis
        .clone()
        .oneshot(cmd!("SET", "k", "v"))
        .await
        .unwrap();

    let started = Instant::now();
    let window = Duration::from_secs(3);
    let migration = {
        let sim = sim.clone();
        tokio::spawn(async move { sim.migrate(0, window).await })
    };
    let status = s.status.clone();
    wait_until("the endpoint is relaxed", WIDE, POLL, || {
        status.is_relaxed(Instant::now())
    })
    .await;
    assert!(s.status.in_maintenance());

    // Stop well inside the window: a command sent after MIGRATED gets the normal timeout
    // again, and may wait behind a reply still delayed by the migration.
    let results = load_until(&s.redis, 4, started + window / 2).await;
    for (t, r) in results.iter().enumerate() {
        assert!(r.errors.is_empty(), "task {t}: {:?}", r.errors);
    }
    assert!(
        results.iter().map(|r| r.ok).sum::<u64>() > 0,
        "no command ran"
    );
    let slowest = results.iter().map(|r| r.slowest).max().unwrap();
    assert!(
        slowest >= ms(250),
        "the migration's latency was not in force: slowest {slowest:?}"
    );

    migration.await.unwrap().unwrap();
    next_matching(&mut s.events, WIDE, |k| {
        matches!(
            k,
            EventKind::RelaxationEnded {
                cause: RelaxationEnd::EndNotification
            }
        )
    })
    .await;
    assert!(!s.status.is_relaxed(Instant::now()));
    assert!(!s.status.in_maintenance());
    // The latency went with the migration.
    let reply = s.redis.clone().oneshot(cmd!("GET", "k")).await.unwrap();
    assert_eq!(reply.as_str(), Some("v"));

    // The same latency without a maintenance notification: the normal 100 ms is in force.
    sim.latency(0, ms(300)).unwrap();
    let err = s.redis.clone().oneshot(cmd!("GET", "k")).await.unwrap_err();
    match err {
        Error::Timeout { after, relaxed } => {
            assert!(!relaxed);
            assert!(after >= ms(100) && after < ms(1000), "after {after:?}");
        }
        other => panic!("expected a timeout, got {other}"),
    }
    sim.restore(0).unwrap();
    // Let the late reply of the timed-out command arrive before the next command.
    tokio::time::sleep(ms(600)).await;
    assert!(s.redis.clone().oneshot(cmd!("GET", "k")).await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_migrated_ends_the_relaxation_at_the_backstop() {
    let server = RedisServer::start();
    let sim = sim_over(&server, 1, Duration::from_millis(300)).await;
    let ms = Duration::from_millis;
    let backstop = Duration::from_secs(1);
    let mut s = stack(
        &sim,
        config().relaxation_backstop(backstop).build().unwrap(),
        ms(100),
        ms(1000),
    )
    .await;
    s.redis
        .clone()
        .oneshot(cmd!("SET", "k", "v"))
        .await
        .unwrap();
    sim.latency(0, ms(300)).unwrap();

    // A MIGRATING whose MIGRATED never comes.
    assert_eq!(sim.send_raw(0, MIGRATING).unwrap(), 1);
    let start = next_matching(&mut s.events, WIDE, |k| {
        matches!(k, EventKind::Notification(Notification::Migrating { .. }))
    })
    .await;
    assert!(s.status.in_maintenance());
    assert!(s.status.is_relaxed(start.at));
    // Relaxed: the slow reply is waited for.
    let reply = s.redis.clone().oneshot(cmd!("GET", "k")).await.unwrap();
    assert_eq!(reply.as_str(), Some("v"));

    let ended = next_matching(&mut s.events, WIDE, |k| {
        matches!(k, EventKind::RelaxationEnded { .. })
    })
    .await;
    assert!(
        matches!(
            ended.kind,
            EventKind::RelaxationEnded {
                cause: RelaxationEnd::Backstop
            }
        ),
        "{:?}",
        ended.kind
    );
    let took = ended.at.duration_since(start.at);
    assert!(
        took >= ms(500) && took < Duration::from_secs(10),
        "ended {took:?} after the start"
    );
    assert!(!s.status.in_maintenance());
    assert!(!s.status.is_relaxed(Instant::now()));
    assert_eq!(s.status.relaxed_until(), None);

    // Relaxed no more: the normal timeout applies to the same latency.
    let err = s.redis.clone().oneshot(cmd!("GET", "k")).await.unwrap_err();
    assert!(
        matches!(err, Error::Timeout { relaxed: false, .. }),
        "expected a normal timeout, got {err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocking_commands_keep_their_own_budget() {
    let server = RedisServer::start();
    let sim = sim_over(&server, 1, Duration::from_millis(300)).await;
    let ms = Duration::from_millis;
    let s = stack(&sim, config().build().unwrap(), ms(100), ms(1000)).await;

    // Blocks 2 s and answers null: not cut at 100 ms.
    let started = Instant::now();
    let reply = s
        .redis
        .clone()
        .oneshot(cmd!("BLPOP", "rt:empty", 2))
        .await
        .expect("BLPOP 2 gets its 2 s");
    assert!(reply.is_null(), "{:?}", reply.frame());
    assert!(started.elapsed() >= ms(1500), "{:?}", started.elapsed());

    // Blocks forever: never timed out by the layer; a push from elsewhere ends it.
    let blpop = {
        let redis = s.redis.clone();
        tokio::spawn(async move { redis.oneshot(cmd!("BLPOP", "rt:list", 0)).await })
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(!blpop.is_finished(), "BLPOP 0 ended before a value came");
    let other = Connection::connect(&sim.node(0).url()).await.unwrap();
    other.send(cmd!("RPUSH", "rt:list", "hello")).await.unwrap();
    let reply = tokio::time::timeout(WIDE, blpop)
        .await
        .expect("BLPOP 0 answers once a value is pushed")
        .unwrap()
        .expect("BLPOP 0 is not timed out");
    let items: Vec<_> = reply
        .as_array()
        .expect("an array")
        .iter()
        .map(|f| {
            redis_handoff::Reply::from(f.clone())
                .as_str()
                .map(String::from)
        })
        .collect();
    assert_eq!(
        items,
        [Some("rt:list".to_string()), Some("hello".to_string())]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relaxed_timeout_shorter_than_the_normal_one_keeps_the_normal_one() {
    let server = RedisServer::start();
    let sim = sim_over(&server, 1, Duration::from_millis(300)).await;
    let ms = Duration::from_millis;
    let s = stack(&sim, config().build().unwrap(), ms(2000), ms(100)).await;

    let started = Instant::now();
    let window = Duration::from_secs(3);
    let migration = {
        let sim = sim.clone();
        tokio::spawn(async move { sim.migrate(0, window).await })
    };
    let status = s.status.clone();
    wait_until("the endpoint is relaxed", WIDE, POLL, || {
        status.is_relaxed(Instant::now())
    })
    .await;

    let results = load_until(&s.redis, 4, started + window / 2).await;
    for (t, r) in results.iter().enumerate() {
        assert!(r.errors.is_empty(), "task {t}: {:?}", r.errors);
    }
    let slowest = results.iter().map(|r| r.slowest).max().unwrap();
    assert!(
        slowest >= ms(250),
        "the migration's latency was not in force: slowest {slowest:?}"
    );
    migration.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moving_relaxes_until_the_post_handoff_tail_ends() {
    let server = RedisServer::start();
    let sim = sim_over(&server, 2, Duration::from_millis(300)).await;
    let ms = Duration::from_millis;
    let tail = ms(500);
    let grace = Duration::from_secs(5);
    let mut s = stack(
        &sim,
        config()
            .relaxed_timeout(ms(1000))
            .post_handoff_relaxed_duration(tail)
            .build()
            .unwrap(),
        ms(100),
        ms(1000),
    )
    .await;
    s.redis
        .clone()
        .oneshot(cmd!("SET", "k", "v"))
        .await
        .unwrap();
    assert!(!s.status.is_relaxed(Instant::now()));

    let moving = sim.moving(0, 1, grace).await.unwrap();
    assert_eq!(moving.recipients(), 1);
    let notified = next_matching(&mut s.events, WIDE, |k| {
        matches!(k, EventKind::Notification(Notification::Moving { .. }))
    })
    .await;
    // Relaxed from the MOVING on (checked at the moment it was processed).
    assert!(s.status.is_relaxed(notified.at));

    let switched = next_matching(&mut s.events, WIDE, handoff_switched).await;
    assert!(s.status.is_relaxed(switched.at));
    assert_eq!(s.status.moving(), None, "the MOVING was acted on");
    // From the switch on, for the post-handoff duration only, not the MOVING's grace period.
    assert!(!s.status.is_relaxed(switched.at + Duration::from_secs(3)));

    let ended = next_matching(&mut s.events, WIDE, |k| {
        matches!(k, EventKind::RelaxationEnded { .. })
    })
    .await;
    assert!(
        matches!(
            ended.kind,
            EventKind::RelaxationEnded {
                cause: RelaxationEnd::HandoffWindowElapsed
            }
        ),
        "{:?}",
        ended.kind
    );
    let tail_seen = ended.at.duration_since(switched.at);
    assert!(
        tail_seen >= ms(250) && tail_seen < Duration::from_secs(4),
        "relaxed for {tail_seen:?} after the switch"
    );
    assert!(!s.status.is_relaxed(Instant::now()));
    assert_eq!(s.status.relaxed_until(), None);

    // The stack serves from the new node, under the normal timeout.
    assert_eq!(
        s.redis.get_ref().current_endpoint(),
        Some(sim.node(1).endpoint())
    );
    let reply = s.redis.clone().oneshot(cmd!("GET", "k")).await.unwrap();
    assert_eq!(reply.as_str(), Some("v"));
    assert_eq!(s.maintenance.counts().total_notifications(), 1);
    moving.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timeout_says_whether_it_was_relaxed_and_after_how_long() {
    let server = RedisServer::start();
    let sim = sim_over(&server, 1, Duration::from_millis(300)).await;
    let ms = Duration::from_millis;
    let mut s = stack(&sim, config().build().unwrap(), ms(100), ms(400)).await;
    sim.latency(0, Duration::from_secs(2)).unwrap();

    let err = s.redis.clone().oneshot(cmd!("GET", "k")).await.unwrap_err();
    let Error::Timeout { after, relaxed } = err else {
        panic!("expected a timeout, got {err}");
    };
    assert!(!relaxed);
    assert!(after >= ms(100) && after < ms(1500), "after {after:?}");
    assert!(err.may_have_executed());
    let text = err.to_string();
    assert!(
        text.contains(&format!("no reply within {after:?}")),
        "{text}"
    );
    assert!(!text.contains("relaxed"), "{text}");

    assert_eq!(sim.send_raw(0, MIGRATING).unwrap(), 1);
    next_matching(&mut s.events, WIDE, |k| {
        matches!(k, EventKind::Notification(Notification::Migrating { .. }))
    })
    .await;
    let err = s.redis.clone().oneshot(cmd!("GET", "k")).await.unwrap_err();
    let Error::Timeout { after, relaxed } = err else {
        panic!("expected a timeout, got {err}");
    };
    assert!(relaxed);
    assert!(after >= ms(400) && after < ms(1900), "after {after:?}");
    let text = err.to_string();
    assert!(
        text.contains(&format!("relaxed timeout of {after:?}")),
        "{text}"
    );
    assert!(text.contains("maintenance"), "{text}");
}
