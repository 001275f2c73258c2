//! The cluster client through `SMIGRATING` and `SMIGRATED`: one simulator in front of each
//! node of a real Redis Cluster injects the notifications (the cluster's announced addresses
//! are mapped to the simulators' with the builder's address map), while the slot is moved
//! for real.
#![cfg(feature = "sim")]

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::cluster::{key_slot, RedisCluster};
use common::events::wait_until;
use redis_handoff::sim::{Backend, Simulator};
use redis_handoff::{cmd, Cluster, ClusterEvent, ConnectOptions, Endpoint};
use tower::ServiceExt;

struct Setup {
    cluster: RedisCluster,
    // One simulator per node, by the node's real port.
    sims: HashMap<u16, Simulator>,
    redis: Cluster,
}

async fn setup() -> Setup {
    let cluster = RedisCluster::start(3, 0);
    let mut sims = HashMap::new();
    for node in &cluster.nodes {
        let sim = Simulator::builder()
            .backend(Backend::redis(node.addr()))
            .start()
            .await
            .unwrap();
        sims.insert(node.port, sim);
    }
    let to_sim: HashMap<u16, u16> = sims
        .iter()
        .map(|(&real, s)| (real, s.node(0).port()))
        .collect();
    let seed = sims[&cluster.nodes[0].port].node(0).url();
    let redis = Cluster::builder(ConnectOptions::from_url(&seed).unwrap())
        .address_map(move |e: &Endpoint| match to_sim.get(&e.port()) {
            Some(&port) => Endpoint::new("127.0.0.1", port),
            None => e.clone(),
        })
        .refresh_period(None)
        .connect()
        .await
        .unwrap();
    Setup {
        cluster,
        sims,
        redis,
    }
}

impl Setup {
    fn sim_endpoint(&self, real: u16) -> Endpoint {
        Endpoint::new("127.0.0.1", self.sims[&real].node(0).port())
    }

    fn relaxed(&self, real: u16) -> bool {
        self.redis
            .maintenance()
            .status(&self.sim_endpoint(real))
            .is_relaxed(Instant::now())
    }
}

fn smigrating(seq: u64, slots: &str) -> Vec<u8> {
    format!(">3\r\n+SMIGRATING\r\n:{seq}\r\n+{slots}\r\n").into_bytes()
}

fn smigrated(seq: u64, from: u16, to: u16, slots: &str) -> Vec<u8> {
    format!(
        ">3\r\n+SMIGRATED\r\n:{seq}\r\n*1\r\n*3\r\n+127.0.0.1:{from}\r\n+127.0.0.1:{to}\r\n+{slots}\r\n"
    )
    .into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smigrated_moves_the_slot_before_any_redirect_and_duplicates_are_ignored() {
    let s = setup().await;
    let redis = &s.redis;
    // Every node is reached through its simulator.
    for (endpoint, _) in redis.primaries() {
        assert!(
            s.sims
                .values()
                .any(|sim| sim.node(0).port() == endpoint.port()),
            "{endpoint}"
        );
    }
    let key = "smigrated:{s}";
    let slot = key_slot(key);
    redis.clone().oneshot(cmd!("SET", key, "v")).await.unwrap();
    let from = s.cluster.owner_port(slot);
    let to = s.cluster.ports().into_iter().find(|&p| p != from).unwrap();
    let other = s
        .cluster
        .ports()
        .into_iter()
        .find(|&p| p != from && p != to)
        .unwrap();
    let mut events = redis.events();

    // SMIGRATING relaxes the node that sent it, and only that one.
    let sent = s.sims[&from]
        .send_raw(0, smigrating(12, &slot.to_string()))
        .unwrap();
    assert!(sent >= 1);
    wait_until(
        "the source node relaxed",
        Duration::from_secs(5),
        Duration::from_millis(10),
        || s.relaxed(from),
    )
    .await;
    assert!(!s.relaxed(to) && !s.relaxed(other));

    // The slot moves for real, and every node broadcasts SMIGRATED (seq 13) before any
    // command touches the slot again.
    tokio::task::block_in_place(|| s.cluster.move_slot(slot, from, to));
    for sim in s.sims.values() {
        sim.send_raw(0, smigrated(13, from, to, &slot.to_string()))
            .unwrap();
    }
    wait_until(
        "SMIGRATED applied",
        Duration::from_secs(5),
        Duration::from_millis(10),
        || redis.stats().migrations == 1 && redis.stats().duplicate_migrations == 2,
    )
    .await;
    assert_eq!(redis.topology().owner(slot), Some(&s.sim_endpoint(to)));
    wait_until(
        "the relaxation ended",
        Duration::from_secs(5),
        Duration::from_millis(10),
        || !s.relaxed(from),
    )
    .await;

    // The command goes straight to the new owner: no MOVED at all, let alone to the caller.
    let v = redis.clone().oneshot(cmd!("GET", key)).await.unwrap();
    assert_eq!(v.as_str(), Some("v"));
    assert_eq!(redis.stats().moved, 0, "{:?}", redis.stats());
    assert_eq!(
        redis.stats().migrations,
        1,
        "the copies from the other nodes were ignored"
    );

    // The events named the node and the slots.
    let mut saw_migrating = false;
    let mut saw_migrated = false;
    while let Ok(e) = events.try_recv() {
        match e {
            ClusterEvent::SlotsMigrating {
                node,
                seq: 12,
                slots,
            } => {
                assert_eq!(node, s.sim_endpoint(from));
                assert!(slots.iter().any(|r| r.contains(slot)));
                saw_migrating = true;
            }
            ClusterEvent::SlotsMigrated { seq: 13, moves, .. } => {
                assert_eq!(moves[0].destination, s.sim_endpoint(to));
                assert_eq!(moves[0].source, s.sim_endpoint(from));
                saw_migrated = true;
            }
            _ => {}
        }
    }
    assert!(saw_migrating && saw_migrated);

    // A later SMIGRATED with the same seq (a replay) changes nothing, even one that says
    // otherwise.
    for sim in s.sims.values() {
        sim.send_raw(0, smigrated(13, to, from, &slot.to_string()))
            .unwrap();
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(redis.topology().owner(slot), Some(&s.sim_endpoint(to)));
    assert_eq!(redis.stats().migrations, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_node_maintenance_keeps_working_in_a_cluster() {
    let s = setup().await;
    let redis = &s.redis;
    let key = "migrating:{n}";
    let slot = key_slot(key);
    let owner = s.cluster.owner_port(slot);
    // MIGRATING on one node relaxes that node's timeouts; MIGRATED ends it.
    s.sims[&owner]
        .send_raw(0, b">4\r\n+MIGRATING\r\n:30\r\n:10\r\n+[1]\r\n".to_vec())
        .unwrap();
    wait_until(
        "relaxed",
        Duration::from_secs(5),
        Duration::from_millis(10),
        || s.relaxed(owner),
    )
    .await;
    assert!(s
        .cluster
        .ports()
        .iter()
        .filter(|&&p| p != owner)
        .all(|&p| !s.relaxed(p)));
    redis.clone().oneshot(cmd!("SET", key, 1)).await.unwrap();
    s.sims[&owner]
        .send_raw(0, b">3\r\n+MIGRATED\r\n:31\r\n+[1]\r\n".to_vec())
        .unwrap();
    wait_until(
        "no longer relaxed",
        Duration::from_secs(5),
        Duration::from_millis(10),
        || !s.relaxed(owner),
    )
    .await;
    let v = redis.clone().oneshot(cmd!("INCR", key)).await.unwrap();
    assert_eq!(v.as_i64(), Some(2));
}

#[test]
fn the_drill_runs_across_a_cluster_through_moved_slots_and_counts_the_redirects() {
    let cluster = std::sync::Arc::new(RedisCluster::start(3, 0));
    // Slots the drill's keys (`drill:0`, `drill:1`, ...) hash to, moved while it runs.
    let mut slots: Vec<u16> = (0..20).map(|k| key_slot(&format!("drill:{k}"))).collect();
    slots.sort();
    slots.dedup();
    let mover = {
        let cluster = cluster.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(800));
            let ports = cluster.ports();
            for &slot in &slots {
                let from = cluster.owner_port(slot);
                let to = ports[(ports.iter().position(|&p| p == from).unwrap() + 1) % ports.len()];
                cluster.move_slot(slot, from, to);
            }
        })
    };
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_redis-handoff"))
        .args(["drill", "--cluster", "--addr"])
        .arg(cluster.nodes[0].addr())
        .args([
            "--duration",
            "3s",
            "--concurrency",
            "8",
            "--json",
            "--quiet",
        ])
        .env("RUST_LOG", "warn")
        .output()
        .expect("the binary runs");
    mover.join().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("cluster client"), "{stdout}");
    let last = stdout.lines().last().expect("some output");
    let v: serde_json::Value = serde_json::from_str(last).expect("the last line is JSON");
    assert_eq!(v["stack"], "cluster", "{stdout}");
    assert_eq!(v["failed"], 0, "{stdout}");
    assert!(v["commands"].as_u64().unwrap() > 100, "{stdout}");
    assert!(v["moved_redirects"].as_u64().unwrap() >= 1, "{stdout}");
    assert!(v["ask_redirects"].as_u64().is_some(), "{stdout}");
    assert!(v["topology_refreshes"].as_u64().unwrap() >= 1, "{stdout}");
    // The drill cleaned up after itself on every node, across slots.
    for node in &cluster.nodes {
        let mut admin = common::cluster::Admin::connect(node.port);
        assert_eq!(admin.cmd(&["DBSIZE"]), common::cluster::Value::Int(0));
    }
}
