//! Reading from replicas on a real Redis Cluster of three primaries with one replica each,
//! started by the tests: reads go to the replicas and writes to the primaries, reads spread
//! over both, a replica killed under load leaves its reads to the primary with no read lost,
//! and the default dials no replica.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::cluster::{Admin, RedisCluster, Value};
use redis_handoff::{cmd, Cluster, ConnectOptions, ReadFrom};
use tower::ServiceExt;

/// The `calls` of `command` in node `port`'s `INFO commandstats`.
fn calls(port: u16, command: &str) -> u64 {
    let info = Admin::connect(port).cmd(&["INFO", "commandstats"]);
    let prefix = format!("cmdstat_{command}:calls=");
    info.text()
        .lines()
        .find_map(|l| l.strip_prefix(prefix.as_str()))
        .and_then(|rest| rest.split(',').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// Waits (at most 30 s) until `port`'s `CLUSTER NODES` lists `count` replicas, connected.
fn replicas_listed(port: u16, count: usize) {
    let start = Instant::now();
    loop {
        let nodes = Admin::connect(port).cmd(&["CLUSTER", "NODES"]);
        let listed = nodes
            .text()
            .lines()
            .filter(|l| l.contains("slave") && !l.contains("fail") && l.contains("connected"))
            .count();
        if listed >= count {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "node {port} lists {listed} replicas, not {count}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// An integer field of `INFO replication` on `port`.
fn repl_field(port: u16, field: &str) -> Option<i64> {
    let info = Admin::connect(port).cmd(&["INFO", "replication"]);
    let prefix = format!("{field}:");
    info.text()
        .lines()
        .find_map(|l| l.strip_prefix(prefix.as_str()))
        .and_then(|v| v.trim().parse().ok())
}

/// The ports of the primaries and of the replicas, by the nodes' own `ROLE`.
fn roles(cluster: &RedisCluster) -> (Vec<u16>, Vec<u16>) {
    let mut primaries = Vec::new();
    let mut replicas = Vec::new();
    for node in &cluster.nodes {
        let role = Admin::connect(node.port).cmd(&["ROLE"]);
        match role {
            Value::Array(items) if items.first().is_some_and(|r| r.text() == "master") => {
                primaries.push(node.port)
            }
            _ => replicas.push(node.port),
        }
    }
    (primaries, replicas)
}

/// Waits (at most 30 s) until every replica has applied everything its primary wrote.
fn wait_replicated(primaries: &[u16], replicas: &[u16]) {
    let start = Instant::now();
    loop {
        let written: i64 = primaries
            .iter()
            .filter_map(|&p| repl_field(p, "master_repl_offset"))
            .sum();
        let applied: i64 = replicas
            .iter()
            .filter_map(|&r| repl_field(r, "slave_repl_offset"))
            .sum();
        if written == applied {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the replicas did not catch up within 30 s ({applied} of {written})"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits until the client has a connected stack for each of `count` replicas.
async fn replicas_connected(redis: &Cluster, count: usize) {
    let start = Instant::now();
    loop {
        let replicas = redis.replicas();
        if replicas.len() == count {
            for (_, stack) in &replicas {
                tokio::time::timeout(Duration::from_secs(10), stack.handoff().wait_connected())
                    .await
                    .expect("a replica connects within 10 s")
                    .expect("a replica connects");
            }
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the client lists {} replicas, not {count}",
            replicas.len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn write_keys(redis: &Cluster, n: usize) -> Vec<String> {
    let keys: Vec<String> = (0..n).map(|i| format!("key:{i}")).collect();
    for k in &keys {
        let reply = redis.clone().oneshot(cmd!("SET", k, k)).await.unwrap();
        assert!(reply.is_ok(), "{k}: {reply:?}");
    }
    keys
}

/// A cluster of three primaries with a replica each, a client reading as `read_from` with its
/// replicas connected (none with `Primary`), and `n` keys written and replicated.
struct Replicated {
    cluster: RedisCluster,
    primaries: Vec<u16>,
    replicas: Vec<u16>,
    redis: Cluster,
    keys: Arc<Vec<String>>,
}

async fn replicated(read_from: ReadFrom, refresh: Option<Duration>, n: usize) -> Replicated {
    let cluster = RedisCluster::start(3, 1);
    let (primaries, replicas) = roles(&cluster);
    assert_eq!((primaries.len(), replicas.len()), (3, 3));
    let mut builder = Cluster::builder(ConnectOptions::from_url(&cluster.nodes[0].url()).unwrap())
        .read_from(read_from);
    if refresh.is_some() {
        builder = builder.refresh_period(refresh);
    }
    // The client reads the replicas from the topology it is given at start (later ones come
    // with the next refresh): wait until the seed lists them all.
    tokio::task::block_in_place(|| replicas_listed(cluster.nodes[0].port, 3));
    let redis = builder
        .connect()
        .await
        .expect("the cluster client connects");
    if read_from != ReadFrom::Primary {
        replicas_connected(&redis, 3).await;
    }
    let keys = Arc::new(write_keys(&redis, n).await);
    tokio::task::block_in_place(|| wait_replicated(&primaries, &replicas));
    Replicated {
        cluster,
        primaries,
        replicas,
        redis,
        keys,
    }
}

/// Reads every key once and checks its value.
async fn read_back(redis: &Cluster, keys: &[String]) {
    for k in keys {
        let v: String = redis.query(cmd!("GET", k)).await.unwrap();
        assert_eq!(&v, k);
    }
}

/// Eight tasks reading the keys round and round until `stop`; each hands back its failures.
fn readers(
    redis: &Cluster,
    keys: &Arc<Vec<String>>,
    stop: &Arc<AtomicBool>,
    reads: &Arc<AtomicU64>,
) -> Vec<tokio::task::JoinHandle<Vec<String>>> {
    (0..8)
        .map(|t| {
            let (redis, keys, stop, reads) =
                (redis.clone(), keys.clone(), stop.clone(), reads.clone());
            tokio::spawn(async move {
                let mut failures = Vec::new();
                let mut i = t;
                while !stop.load(Ordering::Relaxed) {
                    let k = &keys[i % keys.len()];
                    match redis.query::<Option<String>>(cmd!("GET", k)).await {
                        Ok(Some(v)) if &v == k => {}
                        other => failures.push(format!("{k}: {other:?}")),
                    }
                    reads.fetch_add(1, Ordering::Relaxed);
                    i += 8;
                }
                failures
            })
        })
        .collect()
}

/// Stops the readers and asserts that none of their reads failed.
async fn no_read_failed(stop: &AtomicBool, tasks: Vec<tokio::task::JoinHandle<Vec<String>>>) {
    stop.store(true, Ordering::Relaxed);
    let mut failures = Vec::new();
    for t in tasks {
        failures.extend(t.await.unwrap());
    }
    assert!(
        failures.is_empty(),
        "{} reads failed: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_go_to_the_replicas_and_writes_to_the_primaries() {
    let Replicated {
        primaries,
        replicas,
        redis,
        keys,
        // Kept to the end: dropping it stops the servers.
        cluster: _cluster,
        ..
    } = replicated(ReadFrom::PreferReplica, None, 300).await;
    let mut listed: Vec<u16> = redis.replicas().iter().map(|(e, _)| e.port()).collect();
    listed.sort_unstable();
    let mut expected = replicas.clone();
    expected.sort_unstable();
    assert_eq!(
        listed, expected,
        "the client reads from the cluster's replicas"
    );

    // Writes: every SET went to a primary (a replica would have answered MOVED).
    assert_eq!(redis.stats().moved, 0);
    assert_eq!(redis.stats().replica_reads, 0, "no write counts as a read");

    let before: Vec<u64> = primaries.iter().map(|&p| calls(p, "get")).collect();
    read_back(&redis, &keys).await;
    let n: i64 = redis.query(cmd!("EXISTS", &keys[0])).await.unwrap();
    assert_eq!(n, 1);
    // A command that writes goes to the primary even with replicas preferred.
    let len: i64 = redis.query(cmd!("APPEND", &keys[0], "!")).await.unwrap();
    assert_eq!(len as usize, keys[0].len() + 1);

    let stats = redis.stats();
    assert_eq!(stats.replica_reads, 301, "every read went to a replica");
    assert_eq!(stats.moved, 0);
    assert_eq!(stats.replica_reads_retried, 0);
    let after: Vec<u64> = primaries.iter().map(|&p| calls(p, "get")).collect();
    assert_eq!(before, after, "no GET reached a primary");
    let served: u64 = replicas.iter().map(|&r| calls(r, "get")).sum();
    assert_eq!(served, 300, "the replicas answered every GET");
    assert!(
        replicas.iter().all(|&r| calls(r, "get") > 0),
        "every shard's replica served its slots' reads"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_spread_over_the_primaries_and_the_replicas() {
    let Replicated {
        primaries,
        replicas,
        redis,
        keys,
        // Kept to the end: dropping it stops the servers.
        cluster: _cluster,
        ..
    } = replicated(ReadFrom::PrimaryAndReplicas, None, 200).await;
    let before: u64 = primaries.iter().map(|&p| calls(p, "get")).sum();
    for _ in 0..3 {
        read_back(&redis, &keys).await;
    }
    let on_primaries = primaries.iter().map(|&p| calls(p, "get")).sum::<u64>() - before;
    let on_replicas: u64 = replicas.iter().map(|&r| calls(r, "get")).sum();
    assert_eq!(on_primaries + on_replicas, 600);
    assert_eq!(redis.stats().replica_reads, on_replicas);
    // Picked at random, one in two per shard: 600 reads all on one side is out of the question.
    assert!(
        on_primaries > 100 && on_replicas > 100,
        "primaries {on_primaries}, replicas {on_replicas}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_killed_under_load_leaves_its_reads_to_the_primary_and_none_fails() {
    let Replicated {
        mut cluster,
        primaries,
        replicas,
        redis,
        keys,
    } = replicated(ReadFrom::PreferReplica, None, 300).await;
    let stop = Arc::new(AtomicBool::new(false));
    let reads = Arc::new(AtomicU64::new(0));
    let tasks = readers(&redis, &keys, &stop, &reads);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let victim = replicas[0];
    let index = cluster.nodes.iter().position(|n| n.port == victim).unwrap();
    let at_kill = reads.load(Ordering::Relaxed);
    cluster.kill(index);
    // Long enough for the replica's stack to find its peer gone and stay down.
    tokio::time::sleep(Duration::from_secs(2)).await;
    no_read_failed(&stop, tasks).await;
    let total = reads.load(Ordering::Relaxed);
    assert!(
        at_kill > 0 && total > at_kill,
        "reads before {at_kill}, in all {total}"
    );

    let stats = redis.stats();
    assert!(stats.replica_reads > 0);
    assert!(
        stats.replica_reads_retried <= stats.replica_reads,
        "only reads sent to a replica are sent again: {stats:?}"
    );

    // The dead replica's slots are read from its primary now.
    let victim_primary = primaries
        .iter()
        .copied()
        .find(|&p| {
            Admin::connect(p)
                .cmd(&["INFO", "replication"])
                .text()
                .contains("connected_slaves:0")
        })
        .or_else(|| primaries.first().copied())
        .unwrap();
    let before = calls(victim_primary, "get");
    read_back(&redis, &keys).await;
    assert!(
        calls(victim_primary, "get") > before,
        "the primary of the dead replica serves its reads"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn by_default_every_read_goes_to_a_primary_and_no_replica_is_dialled() {
    let Replicated {
        primaries,
        replicas,
        redis,
        keys,
        // Kept to the end: dropping it stops the servers.
        cluster: _cluster,
        ..
    } = replicated(ReadFrom::Primary, None, 100).await;
    assert!(redis.replicas().is_empty());
    read_back(&redis, &keys).await;
    assert_eq!(redis.stats().replica_reads, 0);
    assert_eq!(primaries.iter().map(|&p| calls(p, "get")).sum::<u64>(), 100);
    assert_eq!(replicas.iter().map(|&r| calls(r, "get")).sum::<u64>(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_go_on_through_a_primary_killed_and_replaced_by_its_replica() {
    let Replicated {
        mut cluster,
        primaries,
        redis,
        keys,
        ..
    } = replicated(
        ReadFrom::PreferReplica,
        Some(Duration::from_millis(500)),
        300,
    )
    .await;
    let victim = cluster
        .nodes
        .iter()
        .position(|n| n.port == primaries[0])
        .unwrap();
    let replica = cluster
        .replica_of(victim)
        .expect("the victim has a replica");
    let promoted_port = cluster.nodes[replica].port;
    let stop = Arc::new(AtomicBool::new(false));
    let tasks = readers(&redis, &keys, &stop, &Arc::new(AtomicU64::new(0)));
    tokio::time::sleep(Duration::from_millis(300)).await;
    tokio::task::block_in_place(|| {
        cluster.kill(victim);
        cluster.failover(replica, true);
    });
    // Until the client's map has the promoted node as a primary, and a little after.
    let start = Instant::now();
    while !redis
        .primaries()
        .iter()
        .any(|(e, _)| e.port() == promoted_port)
    {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the promoted replica is not a primary in the client's map: {:?}",
            redis.topology()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    no_read_failed(&stop, tasks).await;
    // The promoted node is a primary now, with its own stack: no longer read as a replica.
    assert!(
        redis
            .replicas()
            .iter()
            .all(|(e, _)| e.port() != promoted_port),
        "{:?}",
        redis.replicas()
    );
    // Its slots are read from it, as the primary it is.
    let before = calls(promoted_port, "get");
    read_back(&redis, &keys).await;
    assert!(calls(promoted_port, "get") > before);
}
