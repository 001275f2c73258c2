//! The cluster client through failovers of a real Redis Cluster: a coordinated
//! `CLUSTER FAILOVER`, and a primary killed with its replica promoted by `TAKEOVER`. The
//! client finds the new primary; commands in flight are answered or reported as may-have-run;
//! no `INCR` is silently run twice.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::cluster::{key_slot, Admin, RedisCluster, Value};
use redis_handoff::{cmd, Cluster, ConnectOptions, Execution};
use tower::ServiceExt;

const TASKS: usize = 8;

/// Per key: INCRs answered, INCRs that may have run, and the errors that said neither.
#[derive(Default, Debug)]
struct Tally {
    ok: HashMap<String, i64>,
    maybe: HashMap<String, i64>,
    maybe_errors: Vec<String>,
    wrong: Vec<String>,
    answered_after: Vec<Instant>,
}

/// `TASKS` tasks INCR their own keys (spread over every slot) until `stop`.
fn workload(redis: &Cluster, stop: &Arc<AtomicBool>) -> Vec<tokio::task::JoinHandle<Tally>> {
    (0..TASKS)
        .map(|t| {
            let (redis, stop) = (redis.clone(), stop.clone());
            tokio::spawn(async move {
                let mut tally = Tally::default();
                let mut i = 0usize;
                while !stop.load(Ordering::Relaxed) {
                    let key = format!("f{t}:{}", i % 64);
                    match redis.clone().oneshot(cmd!("INCR", &key)).await {
                        Ok(_) => {
                            *tally.ok.entry(key).or_default() += 1;
                            tally.answered_after.push(Instant::now());
                        }
                        Err(e) if e.execution() == Execution::MayHaveRun => {
                            tally.maybe_errors.push(format!("INCR {key}: {e}"));
                            *tally.maybe.entry(key).or_default() += 1;
                        }
                        Err(e) if e.execution() == Execution::NotRun => {
                            // Refused or never sent: it did not run, and the error says so.
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                        Err(e) => tally.wrong.push(format!("INCR {key}: {e}")),
                    }
                    i += 1;
                }
                tally
            })
        })
        .collect()
}

async fn finish(tasks: Vec<tokio::task::JoinHandle<Tally>>) -> Tally {
    let mut all = Tally::default();
    for t in tasks {
        let tally = t.await.unwrap();
        for (k, n) in tally.ok {
            *all.ok.entry(k).or_default() += n;
        }
        for (k, n) in tally.maybe {
            *all.maybe.entry(k).or_default() += n;
        }
        all.wrong.extend(tally.wrong);
        all.maybe_errors.extend(tally.maybe_errors);
        all.answered_after.extend(tally.answered_after);
    }
    all
}

fn value_of(cluster: &RedisCluster, key: &str) -> i64 {
    let mut owner = Admin::connect(cluster.owner_port(key_slot(key)));
    match owner.cmd(&["GET", key]) {
        Value::Text(s) => s.parse().unwrap(),
        Value::Nil => 0,
        other => panic!("GET {key} answered {other:?}"),
    }
}

async fn connect(cluster: &RedisCluster) -> Cluster {
    Cluster::builder(ConnectOptions::from_url(&cluster.nodes[0].url()).unwrap())
        .retry_budget(Duration::from_secs(10))
        .connect()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_coordinated_failover_is_followed_with_no_failed_command() {
    let cluster = RedisCluster::start(3, 1);
    // The old primary holds writes from the start of a coordinated failover until its replica
    // has taken over (a second or two here): a timeout that covers it sees no error at all.
    let redis = Cluster::builder(ConnectOptions::from_url(&cluster.nodes[0].url()).unwrap())
        .timeout(Duration::from_secs(5))
        .retry_budget(Duration::from_secs(10))
        .connect()
        .await
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let tasks = workload(&redis, &stop);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let replica = cluster.replica_of(0).expect("node 0 has a replica");
    let promoted = cluster.nodes[replica].port;
    tokio::task::block_in_place(|| {
        cluster.wait_for_replica_sync(replica);
        cluster.failover(replica, false);
        cluster.wait_until_settled();
    });
    let failed_over = Instant::now();
    tokio::time::sleep(Duration::from_millis(700)).await;
    stop.store(true, Ordering::Relaxed);
    let tally = finish(tasks).await;
    assert!(tally.wrong.is_empty(), "{:?}", tally.wrong);
    assert!(
        tally.answered_after.iter().any(|&t| t > failed_over),
        "commands go on after the failover"
    );
    // Redis moves the slots over without closing anyone's connection: with the timeout above,
    // nothing may have run without an answer.
    let maybe: i64 = tally.maybe.values().sum();
    assert_eq!(maybe, 0, "{:?}", tally.maybe_errors);
    for (key, n) in &tally.ok {
        assert_eq!(value_of(&cluster, key), *n, "{key}");
    }
    assert!(
        redis.primaries().iter().any(|(e, _)| e.port() == promoted),
        "the promoted replica is a primary in the client's map: {:?}",
        redis.topology()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_primary_is_replaced_and_nothing_runs_twice() {
    let mut cluster = RedisCluster::start(3, 1);
    let redis = connect(&cluster).await;
    let victim = 1;
    let replica = cluster.replica_of(victim).expect("a replica");
    tokio::task::block_in_place(|| cluster.wait_for_replica_sync(replica));
    let victim_port = cluster.nodes[victim].port;
    let victim_slots: Vec<u16> = (0..16384u16)
        .filter(|&s| redis.topology().owner(s).map(|e| e.port()) == Some(victim_port))
        .collect();
    assert!(!victim_slots.is_empty());
    let stop = Arc::new(AtomicBool::new(false));
    let tasks = workload(&redis, &stop);
    tokio::time::sleep(Duration::from_millis(300)).await;
    tokio::task::block_in_place(|| {
        cluster.kill(victim);
        cluster.failover(replica, true);
    });
    let promoted = Instant::now();
    // The client recovers: commands to the dead primary's slots are answered by its
    // successor.
    let probe = (0..)
        .map(|i| format!("probe{i}"))
        .find(|k| victim_slots.contains(&key_slot(k)))
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match redis.clone().oneshot(cmd!("SET", &probe, "1")).await {
            Ok(_) => break,
            Err(e) => {
                assert!(Instant::now() < deadline, "no recovery within 30 s: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    tokio::time::sleep(Duration::from_millis(700)).await;
    stop.store(true, Ordering::Relaxed);
    let tally = finish(tasks).await;
    assert!(tally.wrong.is_empty(), "{:?}", tally.wrong);
    assert!(tally.answered_after.iter().any(|&t| t > promoted));
    tokio::task::block_in_place(|| cluster.wait_until_settled());
    for (key, ok) in &tally.ok {
        let maybe = tally.maybe.get(key).copied().unwrap_or(0);
        let value = value_of(&cluster, key);
        // Never more than what was answered plus what may have run: nothing ran twice
        // silently. (Fewer is possible only on the killed primary's keys: replication is
        // asynchronous, so a write it answered just before dying may not have reached the
        // replica.)
        assert!(
            value <= ok + maybe,
            "{key}: {value} > {ok} answered + {maybe} may-have-run"
        );
        if !victim_slots.contains(&key_slot(key)) {
            assert!(value >= *ok, "{key}: {value} < {ok} answered");
        }
    }
    assert!(
        !redis
            .primaries()
            .iter()
            .any(|(e, _)| e.port() == victim_port),
        "the dead primary left the client's map"
    );
}
