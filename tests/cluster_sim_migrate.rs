//! The cluster client through the simulator's real slot migration: a real 3-primary cluster,
//! the simulator in cluster mode in front of it (its topology replies and redirects name the
//! simulator's nodes, so the client needs no address map), and `Simulator::migrate_slots`
//! moving slots for real, with `SMIGRATING` before and `SMIGRATED` after, while tasks
//! increment counters on the moved slots and on others.
#![cfg(feature = "sim")]

mod common;

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::cluster::{key_slot, RedisCluster};
use common::events::wait_until;
use redis_handoff::sim::{Simulator, Slots};
use redis_handoff::{cmd, Cluster, ClusterEvent, ConnectOptions};
use tower::ServiceExt;

const TASKS: usize = 16;
const KEYS: usize = 48;

fn key(i: usize) -> String {
    format!("migrate:{i}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cluster_client_rides_a_real_slot_migration_through_the_simulator() {
    let cluster = RedisCluster::start(3, 0);
    let sim = Simulator::builder()
        .cluster(cluster.addrs())
        .start()
        .await
        .expect("the simulator starts in front of the cluster");
    let sim_ports: BTreeSet<u16> = sim.nodes().iter().map(|n| n.port()).collect();
    let redis = Cluster::builder(ConnectOptions::from_url(&sim.node(0).url()).unwrap())
        .refresh_period(None)
        .connect()
        .await
        .expect("the cluster client connects through the simulator");
    // No address map: the topology the client read names the simulator's nodes only.
    let primaries = redis.primaries();
    assert_eq!(primaries.len(), 3);
    for (endpoint, _) in &primaries {
        assert!(sim_ports.contains(&endpoint.port()), "{endpoint}");
    }

    // Move every slot of every third key to the cluster node behind simulator node 2 (those
    // it owns already are left out by the simulator); the other keys stay where they are.
    let to = 2;
    let dest_port = cluster.nodes[to].port;
    let moving: Vec<u16> = (0..KEYS)
        .step_by(3)
        .map(|i| key_slot(&key(i)))
        .filter(|&s| cluster.owner_port(s) != dest_port)
        .collect();
    assert!(!moving.is_empty());
    let slots = Slots::from_ranges(moving.iter().map(|&s| s..=s)).unwrap();
    let moved_keys: Vec<usize> = (0..KEYS)
        .filter(|&i| slots.contains(key_slot(&key(i))))
        .collect();
    let mut events = redis.events();

    let stop = Arc::new(AtomicBool::new(false));
    let tasks: Vec<_> = (0..TASKS)
        .map(|t| {
            let redis = redis.clone();
            let stop = stop.clone();
            tokio::spawn(async move {
                let mut counts: HashMap<usize, i64> = HashMap::new();
                let mut failures = Vec::new();
                let mut round = t;
                while !stop.load(Ordering::Relaxed) {
                    let k = round % KEYS;
                    round += 1;
                    match redis.clone().oneshot(cmd!("INCR", key(k))).await {
                        Ok(_) => *counts.entry(k).or_default() += 1,
                        Err(e) => failures.push(format!("INCR {}: {e}", key(k))),
                    }
                }
                (counts, failures)
            })
        })
        .collect();

    tokio::time::sleep(Duration::from_millis(300)).await;
    let done = sim
        .migrate_slots(&slots, to)
        .await
        .expect("the slots move for real");
    assert!(done.smigrated_seq.is_some());
    assert!(done.keys_moved >= 1, "{done:?}");
    for &s in &moving {
        assert_eq!(cluster.owner_port(s), dest_port, "slot {s}");
    }
    // SMIGRATED reaches the client and is applied to its map: the moved slots' owner is the
    // simulator node in front of the destination.
    wait_until(
        "SMIGRATED applied",
        Duration::from_secs(10),
        Duration::from_millis(10),
        || redis.stats().migrations >= 1,
    )
    .await;
    let dest = sim.node(to).port();
    for &s in &moving {
        assert_eq!(redis.topology().owner(s).map(|e| e.port()), Some(dest));
    }

    // From now on, commands on the moved slots go straight to the new owner: no MOVED.
    let moved_before = redis.stats().moved;
    tokio::time::sleep(Duration::from_millis(500)).await;
    for &k in &moved_keys {
        redis.clone().oneshot(cmd!("INCR", key(k))).await.unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    let mut expected: HashMap<usize, i64> = HashMap::new();
    for &k in &moved_keys {
        *expected.entry(k).or_default() += 1;
    }
    let mut failures = Vec::new();
    let mut total = 0;
    for task in tasks {
        let (counts, failed) = task.await.unwrap();
        failures.extend(failed);
        for (k, n) in counts {
            total += n;
            *expected.entry(k).or_default() += n;
        }
    }
    let stats = redis.stats();
    eprintln!("{total} commands, {} slots moved: {stats:?}", moving.len());
    assert!(
        failures.is_empty(),
        "{} failed: {failures:?}",
        failures.len()
    );
    assert!(total > 100, "the load ran: {total} commands");
    assert_eq!(
        stats.moved, moved_before,
        "no MOVED once SMIGRATED was applied: {stats:?}"
    );

    // Every counter is exact, read straight from the cluster node that owns it now.
    for i in 0..KEYS {
        let owner = cluster.owner_port(key_slot(&key(i)));
        let got = common::cluster::Admin::connect(owner).cmd(&["GET", &key(i)]);
        let want = expected.get(&i).copied().unwrap_or(0);
        let got = match got {
            common::cluster::Value::Text(t) => t.parse::<i64>().unwrap(),
            common::cluster::Value::Nil => 0,
            other => panic!("GET {} answered {other:?}", key(i)),
        };
        assert_eq!(got, want, "{}", key(i));
    }

    // SMIGRATING was heard on the connections (its event names the node and slots), and
    // the SMIGRATED event names the destination as the simulator's node.
    let mut migrating = 0;
    let mut migrated = 0;
    while let Ok(e) = events.try_recv() {
        match e {
            ClusterEvent::SlotsMigrating { node, slots: s, .. } => {
                assert!(sim_ports.contains(&node.port()), "{node}");
                assert!(moving.iter().all(|&m| s.iter().any(|r| r.contains(m))));
                migrating += 1;
            }
            ClusterEvent::SlotsMigrated { moves, .. } => {
                assert!(moves.iter().all(|m| m.destination.port() == dest));
                migrated += 1;
            }
            _ => {}
        }
    }
    assert!(migrating >= 1, "SMIGRATING was seen");
    assert_eq!(migrated, 1, "SMIGRATED applied once: {stats:?}");
    let maintenance = redis.metrics().snapshot().maintenance;
    assert!(
        maintenance
            .notifications
            .iter()
            .any(|n| n.name == "SMIGRATING" && n.received >= 1),
        "{:?}",
        maintenance.notifications
    );
    assert!(maintenance.relaxations >= 1, "SMIGRATING relaxed timeouts");
    sim.shutdown();
}
