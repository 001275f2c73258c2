//! Redis Software's habits, played by the simulator in front of a real redis-server, and the
//! crate's `Stack` going through each of them under load with no failed command.
#![cfg(feature = "sim")]

mod common;

use std::time::Duration;

use common::events::wait_until;
use common::load::{self, counter, Outcome};
use common::sim::sim_over_with;
use common::RedisServer;
use redis_handoff::maintenance::NotificationKind;
use redis_handoff::sim::{Habits, ShardIds, Simulator};
use redis_handoff::{ConnectOptions, EndpointType, MaintenanceConfig, Stack};

const WIDE: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_millis(5);

async fn sim(server: &RedisServer, nodes: usize, habits: Habits, replay: bool) -> Simulator {
    sim_over_with(server, |b| {
        b.nodes(nodes)
            .habits(habits)
            .replay(replay)
            .migrate_latency(Duration::from_millis(300))
    })
    .await
}

/// The recommended stack on `node`, with a 200 ms command timeout: shorter than the added
/// latency of a migration, so only a relaxed timeout gets commands through one.
async fn stack(sim: &Simulator, node: usize) -> Stack {
    let maintenance = MaintenanceConfig::builder()
        .endpoint_type(EndpointType::InternalIp)
        .build()
        .unwrap();
    Stack::builder(ConnectOptions::from_url(&sim.node(node).url()).unwrap())
        .maintenance(maintenance)
        .timeout(Duration::from_millis(200))
        .connect()
        .await
        .unwrap()
}

/// No command failed, and every counter holds exactly the increments acknowledged.
async fn assert_no_failures(stack: &Stack, prefix: &str, outcomes: &[Outcome]) {
    for (t, o) in outcomes.iter().enumerate() {
        assert!(o.errors.is_empty(), "task {t}: {:?}", o.errors);
        assert!(o.incr_ok > 0, "task {t} made no progress");
        assert_eq!(counter(stack, format!("{prefix}:{t}")).await, o.incr_ok);
    }
}

fn relaxed(stack: &Stack, sim: &Simulator, node: usize) -> bool {
    stack
        .maintenance()
        .status(&sim.node(node).endpoint())
        .relaxed_until()
        .is_some()
}

async fn migration_fails_nothing(habits: Habits, prefix: &str) {
    let server = RedisServer::start();
    let sim = sim(&server, 1, habits, false).await;
    let redis = stack(&sim, 0).await;
    let running = load::start(&redis, 8, prefix, Duration::ZERO, Duration::from_millis(2));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let migration = {
        let sim = sim.clone();
        tokio::spawn(async move { sim.migrate(0, Duration::from_secs(1)).await })
    };
    wait_until("the stack relaxes", WIDE, POLL, || relaxed(&redis, &sim, 0)).await;
    migration.await.unwrap().unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let outcomes = running.finish().await;
    assert_no_failures(&redis, prefix, &outcomes).await;
    assert_eq!(
        redis
            .maintenance()
            .counts()
            .notifications(NotificationKind::Migrating),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shard_ids_as_one_string_and_migrating_without_time_relax_the_stack_and_fail_nothing() {
    let habits = Habits {
        shard_ids: ShardIds::SimpleString,
        migrating_without_time: true,
        ..Habits::default()
    };
    migration_fails_nothing(habits, "habit-string").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shard_ids_left_out_relax_the_stack_and_fail_nothing() {
    let habits = Habits {
        shard_ids: ShardIds::Absent,
        ..Habits::default()
    };
    migration_fails_nothing(habits, "habit-absent").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delay_between_the_notification_and_the_slowdown_fails_nothing() {
    let habits = Habits {
        effect_delay: Duration::from_secs(2),
        ..Habits::default()
    };
    migration_fails_nothing(habits, "habit-delay").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_habit_at_once_fails_nothing() {
    migration_fails_nothing(Habits::redis_software(), "habit-all").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_that_joins_during_a_migration_is_told_and_relaxes() {
    let server = RedisServer::start();
    let habits = Habits {
        late_joiners: true,
        ..Habits::default()
    };
    let sim = sim(&server, 1, habits, false).await;
    let migration = {
        let sim = sim.clone();
        tokio::spawn(async move { sim.migrate(0, Duration::from_secs(3)).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Joins after the MIGRATING went out, while the node is slow.
    let late = stack(&sim, 0).await;
    wait_until("the late joiner relaxes", WIDE, POLL, || {
        relaxed(&late, &sim, 0)
    })
    .await;
    let running = load::start(
        &late,
        4,
        "habit-late",
        Duration::ZERO,
        Duration::from_millis(2),
    );
    migration.await.unwrap().unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let outcomes = running.finish().await;
    assert_no_failures(&late, "habit-late", &outcomes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_that_joins_during_a_moving_grace_moves_too() {
    let server = RedisServer::start();
    let habits = Habits {
        late_joiners: true,
        ..Habits::default()
    };
    let sim = sim(&server, 2, habits, false).await;
    let moving = sim.moving(0, 1, Duration::from_secs(5)).await.unwrap();
    // Joins node 0 after its MOVING: it is told again, with the time left.
    let late = stack(&sim, 0).await;
    let running = load::start(
        &late,
        4,
        "habit-moving",
        Duration::ZERO,
        Duration::from_millis(2),
    );
    wait_until("the late joiner moves to node 1", WIDE, POLL, || {
        late.handoff().current_endpoint() == Some(sim.node(1).endpoint())
    })
    .await;
    moving.done().await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let outcomes = running.finish().await;
    assert_no_failures(&late, "habit-moving", &outcomes).await;
    let told: Vec<_> = sim
        .notifications()
        .into_iter()
        .filter(|n| n.name == "MOVING")
        .collect();
    assert_eq!(told.len(), 1, "only the late joiner was there to be told");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_last_migrated_replayed_to_a_new_connection_changes_nothing() {
    let server = RedisServer::start();
    let sim = sim(&server, 1, Habits::default(), true).await;
    sim.migrate(0, Duration::from_millis(300)).await.unwrap();
    let redis = stack(&sim, 0).await;
    let running = load::start(
        &redis,
        4,
        "habit-replay",
        Duration::ZERO,
        Duration::from_millis(2),
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let outcomes = running.finish().await;
    assert_no_failures(&redis, "habit-replay", &outcomes).await;
    assert_eq!(
        redis
            .maintenance()
            .counts()
            .notifications(NotificationKind::Migrated),
        1
    );
    assert!(!relaxed(&redis, &sim, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_in_place_upgrade_relaxes_then_drops_connections_and_the_stack_reconnects() {
    let server = RedisServer::start();
    let sim = sim(&server, 1, Habits::default(), false).await;
    let redis = stack(&sim, 0).await;
    let running = load::start(
        &redis,
        8,
        "habit-upgrade",
        Duration::ZERO,
        Duration::from_millis(2),
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    sim.in_place_upgrade(0, Duration::from_millis(500))
        .await
        .unwrap();
    wait_until("the stack reconnects", WIDE, POLL, || {
        redis.handoff().stats().reconnects >= 1
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let outcomes = running.finish().await;
    // Commands in flight when the connection dropped may have run; the others that failed did
    // so without being sent (the circuit, open for the moment until the reconnect).
    for (t, o) in outcomes.iter().enumerate() {
        assert!(
            o.errors
                .iter()
                .all(|e| e.contains("may have been executed") || e.contains("was not sent")),
            "task {t}: {:?}",
            o.errors
        );
        let value = counter(&redis, format!("habit-upgrade:{t}")).await;
        assert!(
            value >= o.incr_ok && value <= o.incr_ok + o.incr_lost,
            "task {t}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_api_sets_the_habits_and_plays_an_in_place_upgrade() {
    use common::sim::api_call;
    use common::RawClient;
    let server = RedisServer::start();
    let sim = sim(&server, 1, Habits::default(), false).await;
    let http = sim.serve_http("127.0.0.1:0").await.unwrap();
    let (status, set) = api_call(
        http.addr(),
        "POST",
        "/sim/habits",
        br#"{"shardIds":"string","migratingWithoutTime":true}"#,
    )
    .await;
    assert_eq!(status, 200, "{set}");
    assert_eq!(set["shardIds"], "string");
    let (status, bad) = api_call(http.addr(), "POST", "/sim/habits", br#"{"shardIds":7}"#).await;
    assert_eq!(status, 400, "{bad}");
    assert_eq!(bad["error"]["name"], "ZodError");

    let mut client = RawClient::opted_in(sim.node_addr(0), "internal-ip").await;
    let (status, started) = api_call(
        http.addr(),
        "POST",
        "/sim/in-place-upgrade",
        br#"{"node":0,"durationMs":100,"wait":true}"#,
    )
    .await;
    assert_eq!(status, 200, "{started}");
    // MIGRATING with no time and the shard id as one simple string, then the connection drops.
    let frame = client.frame().await;
    assert_eq!(
        &frame[..],
        format!(">3\r\n$9\r\nMIGRATING\r\n:{}\r\n+[1]\r\n", started["seq"]).as_bytes()
    );
    assert!(
        client.try_frame(WIDE).await.is_err(),
        "the connection is dropped"
    );
}
