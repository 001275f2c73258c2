//! The cluster client against a real Redis Cluster started by the tests: routing by slot,
//! hash tags, CROSSSLOT refused before sending, pipelines across nodes, transactions on one
//! slot, keyless commands, MOVED and ASK followed, and a workload through slots moved back and
//! forth for real.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::cluster::{key_slot, Admin, RedisCluster, Value};
use redis_handoff::{cmd, Cluster, ConnectOptions, Error, Pipeline, Transaction};
use tower::ServiceExt;

async fn client(cluster: &RedisCluster) -> Cluster {
    Cluster::builder(ConnectOptions::from_url(&cluster.nodes[0].url()).unwrap())
        .connect()
        .await
        .expect("the cluster client connects")
}

/// One key for every slot, found by counting up.
fn key_per_slot() -> Vec<String> {
    let mut keys: Vec<Option<String>> = vec![None; 16384];
    let mut left = 16384;
    let mut i = 0u64;
    while left > 0 {
        let k = format!("k{i}");
        let s = key_slot(&k) as usize;
        if keys[s].is_none() {
            keys[s] = Some(k);
            left -= 1;
        }
        i += 1;
    }
    keys.into_iter().map(|k| k.unwrap()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_slot_is_written_and_read_back_through_pipelines_across_nodes() {
    let cluster = RedisCluster::start(3, 0);
    let redis = client(&cluster).await;
    assert_eq!(redis.topology().covered(), 16384);
    assert_eq!(redis.primaries().len(), 3);
    let keys = key_per_slot();
    for chunk in keys.chunks(2048) {
        let p: Pipeline = chunk.iter().map(|k| cmd!("SET", k, k)).collect();
        let replies = redis.clone().oneshot(p).await.unwrap();
        assert_eq!(replies.len(), chunk.len());
        assert!(replies.iter().all(|r| r.as_ref().is_ok_and(|r| r.is_ok())));
    }
    for chunk in keys.chunks(2048) {
        let p: Pipeline = chunk.iter().map(|k| cmd!("GET", k)).collect();
        let replies = redis.clone().oneshot(p).await.unwrap();
        // In the caller's order, whichever node answered each.
        for (k, r) in chunk.iter().zip(replies) {
            assert_eq!(r.unwrap().as_str(), Some(k.as_str()));
        }
    }
    // Single commands too, on a sample of slots.
    for k in keys.iter().step_by(97) {
        let v = redis.clone().oneshot(cmd!("GET", k)).await.unwrap();
        assert_eq!(v.as_str(), Some(k.as_str()));
        // And the key really is on the node the harness says owns its slot.
        let mut owner = Admin::connect(cluster.owner_port(key_slot(k)));
        assert_eq!(owner.cmd(&["EXISTS", k]), Value::Int(1), "{k}");
    }
    assert_eq!(redis.stats().moved, 0);
    let dbsize = redis.clone().oneshot(cmd!("DBSIZE")).await.unwrap();
    assert_eq!(
        dbsize.as_i64(),
        Some(16384),
        "DBSIZE is summed over the primaries"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hash_tags_keep_multi_key_commands_together_and_crossslot_is_refused_before_sending() {
    let cluster = RedisCluster::start(3, 0);
    let redis = client(&cluster).await;
    redis
        .clone()
        .oneshot(cmd!(
            "MSET",
            "{user1000}.following",
            "a",
            "{user1000}.followers",
            "b"
        ))
        .await
        .unwrap();
    let both = redis
        .clone()
        .oneshot(cmd!("MGET", "{user1000}.following", "{user1000}.followers"))
        .await
        .unwrap();
    let values: Vec<String> = both.convert().unwrap();
    assert_eq!(values, ["a", "b"]);

    // Two keys in different slots: refused here, nothing reaches a server.
    assert_ne!(key_slot("left"), key_slot("right"));
    let err = redis
        .clone()
        .oneshot(cmd!("MSET", "left", "1", "right", "2"))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::CrossSlot { command, .. } if &**command == "MSET"),
        "{err}"
    );
    assert!(err.certainly_not_executed());
    assert!(err.to_string().contains("hash tag"), "{err}");
    let left = redis.clone().oneshot(cmd!("GET", "left")).await.unwrap();
    assert!(left.is_null(), "nothing of the refused MSET ran");

    // In a pipeline, only that command is refused; the others run.
    let replies = redis
        .clone()
        .oneshot(
            Pipeline::new()
                .cmd(cmd!("SET", "left", "1"))
                .cmd(cmd!("DEL", "left", "right"))
                .cmd(cmd!("GET", "left")),
        )
        .await
        .unwrap();
    assert!(replies[0].is_ok());
    assert!(matches!(replies[1], Err(Error::CrossSlot { .. })));
    assert_eq!(replies[2].as_ref().unwrap().as_str(), Some("1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactions_run_on_one_slot_and_are_refused_across_slots() {
    let cluster = RedisCluster::start(3, 0);
    let redis = client(&cluster).await;
    let results = redis
        .clone()
        .oneshot(
            Transaction::new()
                .cmd(cmd!("SET", "{acct}:a", 10))
                .cmd(cmd!("INCRBY", "{acct}:a", 5))
                .cmd(cmd!("INCRBY", "{acct}:b", 7))
                .cmd(cmd!("PING")),
        )
        .await
        .unwrap();
    assert_eq!(results[1].as_ref().unwrap().as_i64(), Some(15));
    assert_eq!(results[2].as_ref().unwrap().as_i64(), Some(7));

    let err = redis
        .clone()
        .oneshot(
            Transaction::new()
                .cmd(cmd!("INCR", "a"))
                .cmd(cmd!("INCR", "b")),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::CrossSlot { command, .. } if &**command == "TRANSACTION"),
        "{err}"
    );
    let a = redis.clone().oneshot(cmd!("GET", "a")).await.unwrap();
    assert!(a.is_null(), "nothing of the refused transaction ran");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyless_commands_go_to_one_primary_or_to_all() {
    let cluster = RedisCluster::start(3, 0);
    let redis = client(&cluster).await;
    let pong = redis.clone().oneshot(cmd!("PING")).await.unwrap();
    assert_eq!(pong.as_str(), Some("PONG"));
    let info = redis
        .clone()
        .oneshot(cmd!("CLUSTER", "INFO"))
        .await
        .unwrap();
    assert!(info.as_str().unwrap().contains("cluster_state:ok"));
    let keys = key_per_slot();
    let p: Pipeline = keys
        .iter()
        .step_by(1000)
        .map(|k| cmd!("SET", k, 1))
        .collect();
    let n = p.commands().len();
    redis.clone().oneshot(p).await.unwrap();
    let all = redis.clone().oneshot(cmd!("KEYS", "*")).await.unwrap();
    assert_eq!(
        all.as_array().unwrap().len(),
        n,
        "KEYS is gathered from every primary"
    );
    // A script is loaded on every primary, so EVALSHA works on any slot.
    let sha = redis
        .clone()
        .oneshot(cmd!("SCRIPT", "LOAD", "return redis.call('GET', KEYS[1])"))
        .await
        .unwrap();
    let sha = sha.as_str().unwrap().to_string();
    for k in keys.iter().step_by(1000) {
        let v = redis
            .clone()
            .oneshot(cmd!("EVALSHA", &sha, 1, k))
            .await
            .unwrap();
        assert_eq!(v.as_i64(), Some(1));
    }
    let err = redis.clone().oneshot(cmd!("SCAN", 0)).await.unwrap_err();
    assert!(matches!(err, Error::Refused { .. }), "{err}");
    let ok = redis.clone().oneshot(cmd!("FLUSHALL")).await.unwrap();
    assert!(ok.is_ok());
    let dbsize = redis.clone().oneshot(cmd!("DBSIZE")).await.unwrap();
    assert_eq!(dbsize.as_i64(), Some(0), "FLUSHALL went to every primary");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_moved_slot_is_followed_and_the_map_updated() {
    let cluster = RedisCluster::start(3, 0);
    let redis = client(&cluster).await;
    let key = "moving:{m}";
    let slot = key_slot(key);
    redis.clone().oneshot(cmd!("SET", key, "v")).await.unwrap();
    let from = cluster.owner_port(slot);
    let to = cluster.ports().into_iter().find(|&p| p != from).unwrap();
    let before = redis.topology().owner(slot).unwrap().port();
    assert_eq!(before, from);
    let mut events = redis.events();
    {
        let cluster_ref = &cluster;
        tokio::task::block_in_place(|| cluster_ref.move_slot(slot, from, to));
    }
    let v = redis.clone().oneshot(cmd!("GET", key)).await.unwrap();
    assert_eq!(v.as_str(), Some("v"), "the MOVED did not reach the caller");
    assert!(redis.stats().moved >= 1);
    assert_eq!(redis.topology().owner(slot).unwrap().port(), to);
    // The map moved the slot, and an event said so.
    let moved = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            if let Ok(redis_handoff::ClusterEvent::Moved { slot: s, to: t }) = events.recv().await {
                return (s, t);
            }
        }
    })
    .await
    .unwrap();
    assert_eq!(moved, (slot, redis_handoff::Endpoint::new("127.0.0.1", to)));
    // The next command goes straight to the new owner.
    let moved_before = redis.stats().moved;
    redis.clone().oneshot(cmd!("GET", key)).await.unwrap();
    assert_eq!(redis.stats().moved, moved_before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ask_during_a_migration_reaches_the_key_on_the_target_without_changing_the_map() {
    let cluster = RedisCluster::start(3, 0);
    let redis = client(&cluster).await;
    let (moved_key, staying_key) = ("ask:{x}:1", "ask:{x}:2");
    let slot = key_slot(moved_key);
    redis
        .clone()
        .oneshot(cmd!("SET", moved_key, "there"))
        .await
        .unwrap();
    redis
        .clone()
        .oneshot(cmd!("SET", staying_key, "here"))
        .await
        .unwrap();
    let from = cluster.owner_port(slot);
    let to = cluster.ports().into_iter().find(|&p| p != from).unwrap();
    let (fi, ti) = (cluster.index_of(from), cluster.index_of(to));
    let (from_id, to_id) = (cluster.node_id(fi), cluster.node_id(ti));
    let s = slot.to_string();
    let mut src = cluster.admin(fi);
    let mut dst = cluster.admin(ti);
    dst.ok(&["CLUSTER", "SETSLOT", &s, "IMPORTING", &from_id]);
    src.ok(&["CLUSTER", "SETSLOT", &s, "MIGRATING", &to_id]);
    let port = to.to_string();
    src.ok(&["MIGRATE", "127.0.0.1", &port, moved_key, "0", "5000"]);

    // The migrated key answers ASK at the source: followed with ASKING, once.
    let v = redis.clone().oneshot(cmd!("GET", moved_key)).await.unwrap();
    assert_eq!(v.as_str(), Some("there"));
    assert!(redis.stats().asked >= 1);
    // The one still at the source answers there.
    let v = redis
        .clone()
        .oneshot(cmd!("GET", staying_key))
        .await
        .unwrap();
    assert_eq!(v.as_str(), Some("here"));
    assert_eq!(
        redis.topology().owner(slot).unwrap().port(),
        from,
        "ASK changes no map"
    );
    // The same in a pipeline, in order.
    let replies = redis
        .clone()
        .oneshot(
            Pipeline::new()
                .cmd(cmd!("GET", staying_key))
                .cmd(cmd!("GET", moved_key))
                .cmd(cmd!("APPEND", moved_key, "!")),
        )
        .await
        .unwrap();
    assert_eq!(replies[0].as_ref().unwrap().as_str(), Some("here"));
    assert_eq!(replies[1].as_ref().unwrap().as_str(), Some("there"));
    assert_eq!(replies[2].as_ref().unwrap().as_i64(), Some(6));
    // And a transaction on the migrated key goes after ASKING too.
    let results = redis
        .clone()
        .oneshot(Transaction::new().cmd(cmd!("APPEND", moved_key, "?")))
        .await
        .unwrap();
    assert_eq!(results[0].as_ref().unwrap().as_i64(), Some(7));
    // A multi-key command whose keys are split by the migration waits (TRYAGAIN) and then
    // fails clearly once the budget is spent, or succeeds if the migration ends in time: here
    // it ends, in the background.
    let finish = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        src.ok(&["MIGRATE", "127.0.0.1", &port, staying_key, "0", "5000"]);
        dst.ok(&["CLUSTER", "SETSLOT", &s, "NODE", &to_id]);
        src.ok(&["CLUSTER", "SETSLOT", &s, "NODE", &to_id]);
    });
    let waits = redis.stats().waits;
    let both = redis
        .clone()
        .oneshot(cmd!("MGET", moved_key, staying_key))
        .await
        .unwrap();
    let values: Vec<String> = both.convert().unwrap();
    assert_eq!(values, ["there!?", "here"]);
    // Waited out by the cluster, which knows the slots, not by the node's own layers.
    assert!(redis.stats().waits > waits, "{:?}", redis.stats());
    finish.join().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thirty_two_tasks_through_slots_moved_back_and_forth_fail_nothing() {
    let cluster = Arc::new(RedisCluster::start(3, 0));
    let redis = Cluster::builder(ConnectOptions::from_url(&cluster.nodes[0].url()).unwrap())
        .timeout(Duration::from_secs(2))
        .retry_budget(Duration::from_secs(10))
        .connect()
        .await
        .unwrap();
    const TASKS: usize = 32;
    const KEYS: usize = 16;
    // Each task's keys spread over the slots; INCR on its own keys, so the final values can
    // be checked; reads of a shared set of keys in between.
    let keys: Vec<Vec<String>> = (0..TASKS)
        .map(|t| (0..KEYS).map(|k| format!("t{t}:k{k}")).collect())
        .collect();
    // The slots to move: those of a few keys of each task, so that the workload runs into them.
    let mut moving: Vec<u16> = keys
        .iter()
        .flat_map(|ks| ks.iter().take(2))
        .map(|k| key_slot(k))
        .collect();
    moving.sort();
    moving.dedup();
    let stop = Arc::new(AtomicBool::new(false));
    let mover = {
        let (cluster, stop, moving) = (cluster.clone(), stop.clone(), moving.clone());
        std::thread::spawn(move || {
            let ports = cluster.ports();
            let mut moves = 0;
            while !stop.load(Ordering::Relaxed) || moves < moving.len() {
                let slot = moving[moves % moving.len()];
                let from = cluster.owner_port(slot);
                let to = ports[(ports.iter().position(|&p| p == from).unwrap() + 1) % ports.len()];
                cluster.move_slot(slot, from, to);
                moves += 1;
                if moves >= moving.len() * 3 {
                    break;
                }
            }
            moves
        })
    };
    let mut tasks = Vec::new();
    for t in 0..TASKS {
        let (redis, keys, stop) = (redis.clone(), keys.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let mut counts: HashMap<String, i64> = HashMap::new();
            let mut failures = Vec::new();
            let mut i = 0usize;
            while !stop.load(Ordering::Relaxed) {
                let key = &keys[t][i % KEYS];
                match redis.clone().oneshot(cmd!("INCR", key)).await {
                    Ok(n) => {
                        let c = counts.entry(key.clone()).or_default();
                        *c += 1;
                        if n.as_i64() != Some(*c) {
                            failures.push(format!("INCR {key} answered {n:?}, expected {c}"));
                        }
                    }
                    Err(e) => failures.push(format!("INCR {key}: {e}")),
                }
                let other = &keys[(t + i) % TASKS][i % KEYS];
                if let Err(e) = redis.clone().oneshot(cmd!("GET", other)).await {
                    failures.push(format!("GET {other}: {e}"));
                }
                i += 1;
            }
            (counts, failures)
        }));
    }
    let moves = tokio::task::spawn_blocking(move || mover.join().unwrap())
        .await
        .unwrap();
    stop.store(true, Ordering::Relaxed);
    let mut failures = Vec::new();
    let mut expected: HashMap<String, i64> = HashMap::new();
    for t in tasks {
        let (counts, f) = t.await.unwrap();
        failures.extend(f);
        expected.extend(counts);
    }
    assert!(
        failures.is_empty(),
        "{} failures, first: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    assert!(
        moves >= moving.len(),
        "the slots were moved ({moves} moves)"
    );
    let stats = redis.stats();
    assert!(
        stats.moved > 0,
        "the workload ran into moved slots: {stats:?}"
    );
    // Every key's final value, read from the node that owns it now.
    for (key, count) in expected {
        let mut owner = Admin::connect(cluster.owner_port(key_slot(&key)));
        assert_eq!(
            owner.cmd(&["GET", &key]),
            Value::Text(count.to_string()),
            "{key}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn classic_and_sharded_pub_sub_through_the_cluster() {
    use redis_handoff::frame::BytesFrame;
    let cluster = RedisCluster::start(3, 0);
    let redis = client(&cluster).await;
    let mut pushes = redis.pushes();
    redis
        .clone()
        .oneshot(cmd!("SUBSCRIBE", "news"))
        .await
        .unwrap();
    redis
        .clone()
        .oneshot(cmd!("SSUBSCRIBE", "{shard}ch"))
        .await
        .unwrap();
    // A PUBLISH reaches every node of the cluster, whichever node it was sent to (the client
    // sends one channel's messages to one node, so they keep their order); an SPUBLISH goes
    // to its channel's slot, where the SSUBSCRIBE went.
    for i in 0..3 {
        redis
            .clone()
            .oneshot(cmd!("PUBLISH", "news", i))
            .await
            .unwrap();
        redis
            .clone()
            .oneshot(cmd!("SPUBLISH", "{shard}ch", i))
            .await
            .unwrap();
    }
    let text = |f: &BytesFrame| match f {
        BytesFrame::BlobString { data, .. } | BytesFrame::SimpleString { data, .. } => {
            String::from_utf8_lossy(data).into_owned()
        }
        _ => String::new(),
    };
    let (mut messages, mut smessages) = (Vec::new(), Vec::new());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while messages.len() < 3 || smessages.len() < 3 {
        let frame = tokio::time::timeout_at(deadline, pushes.recv())
            .await
            .expect("every message within 5 s")
            .expect("the stream stays open");
        let BytesFrame::Push { data, .. } = frame else {
            continue;
        };
        match text(&data[0]).as_str() {
            "message" => messages.push(text(&data[2])),
            "smessage" => smessages.push(text(&data[2])),
            _ => {}
        }
    }
    assert_eq!(messages, ["0", "1", "2"]);
    assert_eq!(smessages, ["0", "1", "2"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_redirect_limit_the_caller_gets_a_clear_error_and_nothing_ran() {
    let cluster = RedisCluster::start(3, 0);
    let redis = Cluster::builder(ConnectOptions::from_url(&cluster.nodes[0].url()).unwrap())
        .redirect_limit(0)
        .refresh_period(None)
        .connect()
        .await
        .unwrap();
    let key = "limit:{l}";
    let slot = key_slot(key);
    let from = cluster.owner_port(slot);
    let to = cluster.ports().into_iter().find(|&p| p != from).unwrap();
    tokio::task::block_in_place(|| cluster.move_slot(slot, from, to));
    let err = redis.clone().oneshot(cmd!("INCR", key)).await.unwrap_err();
    match &err {
        Error::Redirects { followed, last } => {
            assert_eq!(*followed, 1);
            assert!(last.starts_with("MOVED"), "{last}");
        }
        other => panic!("{other:?}"),
    }
    assert!(err.certainly_not_executed(), "{err}");
    let mut owner = Admin::connect(to);
    assert_eq!(owner.cmd(&["GET", key]), Value::Nil, "the INCR did not run");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_for_every_primary_that_one_could_not_take_does_not_say_it_ran_nowhere() {
    let mut cluster = RedisCluster::start(3, 0);
    let redis = client(&cluster).await;
    // The seed stays up; another primary dies. Within the cluster's node timeout (2 s) it is
    // still in the map, so a command for every primary still goes to it.
    let victim = 2;
    tokio::task::block_in_place(|| cluster.kill(victim));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let error = redis.clone().oneshot(cmd!("DBSIZE")).await.unwrap_err();
    // Two primaries ran it: the dead one's "not sent" is not true of the command.
    assert!(matches!(&error, Error::ConnectionLost { .. }), "{error:?}");
    assert!(!error.certainly_not_executed(), "{error}");
    assert!(
        error.to_string().contains("ran on 2 of 3 primaries"),
        "{error}"
    );
}
