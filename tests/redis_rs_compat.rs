//! Code written against redis-rs, run on the crate's `Stack` and `Pool` (feature `redis-rs`):
//! against a real redis-server behind the simulator, through a `MOVING`.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::events::{handoff_drained, handoff_switched, next_event};
use common::sim::{redis_and_sim, sim_over};
use common::RedisServer;
use redis::{AsyncCommands, ErrorKind, FromRedisValue, ParsingError, RedisResult, Value};
use redis_handoff::compat::redis_rs::{cause, RedisRs};
use redis_handoff::handoff::HandoffConfig;
use redis_handoff::sim::Simulator;
use redis_handoff::{
    cmd, ConnectOptions, Connection, EndpointType, Execution, MaintenanceConfig, Notification,
    NotificationDemux, Pool, Stack,
};

/// The recommended stack on node 0 of `sim`, opted in to `MOVING`s with an IP endpoint.
async fn stack_on(sim: &Simulator) -> Stack {
    let maintenance = MaintenanceConfig::builder()
        .endpoint_type(EndpointType::InternalIp)
        .handoff_timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    Stack::builder(ConnectOptions::from_url(&sim.node(0).url()).unwrap())
        .maintenance(maintenance)
        .handoff(HandoffConfig {
            backoff_base: Duration::from_millis(20),
            ..HandoffConfig::default()
        })
        .connect()
        .await
        .expect("the stack connects through the simulator")
}

/// A user record as an app would read it with redis-rs: from `HGETALL`.
#[derive(Debug, PartialEq)]
struct User {
    name: String,
    age: u32,
}

impl FromRedisValue for User {
    fn from_redis_value(v: Value) -> Result<Self, ParsingError> {
        let mut fields: HashMap<String, String> = FromRedisValue::from_redis_value(v)?;
        let name = fields.remove("name").ok_or("no name")?;
        let age = fields
            .remove("age")
            .and_then(|a| a.parse().ok())
            .ok_or("no age")?;
        Ok(User { name, age })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_commands_run_on_a_stack_with_typed_replies() {
    let (_server, sim) = redis_and_sim(1).await;
    let mut redis = stack_on(&sim).await;

    let () = redis.set("greeting", "hello").await.unwrap();
    let greeting: String = redis.get("greeting").await.unwrap();
    assert_eq!(greeting, "hello");
    let missing: Option<String> = redis.get("no-such-key").await.unwrap();
    assert_eq!(missing, None);
    let first: i64 = redis.incr("visits", 1).await.unwrap();
    let second: u8 = redis.incr("visits", 2).await.unwrap();
    assert_eq!((first, second), (1, 3));
    let exists: bool = redis.exists("visits").await.unwrap();
    assert!(exists);

    let added: usize = redis.hset("user:1", "name", "ada").await.unwrap();
    assert_eq!(added, 1);
    let _: usize = redis.hset("user:1", "age", 36).await.unwrap();
    let fields: HashMap<String, String> = redis.hgetall("user:1").await.unwrap();
    assert_eq!(fields["name"], "ada");
    let sorted: BTreeMap<String, String> = redis.hgetall("user:1").await.unwrap();
    assert_eq!(sorted.keys().collect::<Vec<_>>(), ["age", "name"]);
    let user: User = redis.hgetall("user:1").await.unwrap();
    assert_eq!(
        user,
        User {
            name: "ada".into(),
            age: 36
        }
    );

    let _: usize = redis
        .zadd_multiple("board", &[(1.5, "ada"), (3.0, "bob")])
        .await
        .unwrap();
    let board: Vec<(String, f64)> = redis.zrange_withscores("board", 0, -1).await.unwrap();
    assert_eq!(board, [("ada".to_owned(), 1.5), ("bob".to_owned(), 3.0)]);

    // A scan: redis-rs's cursor argument, sent again with each cursor the server answers.
    for i in 0..30 {
        let () = redis.set(format!("scan:{i}"), i).await.unwrap();
    }
    let mut found: Vec<String> = {
        let mut iter = redis.scan_match::<_, String>("scan:*").await.unwrap();
        let mut keys = Vec::new();
        while let Some(key) = iter.next_item().await {
            keys.push(key.unwrap());
        }
        keys
    };
    found.sort();
    found.dedup();
    assert_eq!(found.len(), 30);

    // A server error reply keeps its code.
    let wrong: RedisResult<i64> = redis.incr("user:1", 1).await;
    let e = wrong.unwrap_err();
    assert_eq!(e.code(), Some("WRONGTYPE"), "{e}");
    assert!(cause(&e).is_none());
    // And it went through every layer: the stack's metrics counted each command.
    assert!(redis.metrics().snapshot().outcomes.ok >= 40);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelines_plain_and_atomic_map_to_our_pipelines_and_transactions() {
    let (server, sim) = redis_and_sim(1).await;
    let mut redis = stack_on(&sim).await;

    let (a, b): (i64, String) = redis::pipe()
        .set("p:a", 41)
        .ignore()
        .incr("p:a", 1)
        .set("p:b", "x")
        .ignore()
        .get("p:b")
        .query_async(&mut redis)
        .await
        .unwrap();
    assert_eq!((a, b.as_str()), (42, "x"));
    let empty: Vec<Value> = redis::pipe().query_async(&mut redis).await.unwrap();
    assert!(empty.is_empty());

    // An error reply in a pipeline is that command's own.
    let failed: RedisResult<(i64, i64)> = redis::pipe()
        .incr("p:a", 1)
        .incr("p:b", 1)
        .query_async(&mut redis)
        .await;
    let e = failed.unwrap_err();
    assert!(e.to_string().contains("not an integer"), "{e}");
    let tolerant: Vec<Value> = redis::pipe()
        .incr("p:a", 1)
        .incr("p:b", 1)
        .ignore_errors()
        .query_async(&mut redis)
        .await
        .unwrap();
    assert!(matches!(
        tolerant[..],
        [Value::Int(44), Value::ServerError(_)]
    ));

    // Atomic: MULTI ... EXEC as one; nothing else falls inside.
    let (x, y): (i64, i64) = redis::pipe()
        .atomic()
        .incr("t:x", 5)
        .incr("t:y", 7)
        .query_async(&mut redis)
        .await
        .unwrap();
    assert_eq!((x, y), (5, 7));
    let (only,): (i64,) = redis::pipe()
        .atomic()
        .set("t:x", 1)
        .ignore()
        .incr("t:x", 1)
        .query_async(&mut redis)
        .await
        .unwrap();
    assert_eq!(only, 2);
    let nothing: Vec<Value> = redis::pipe()
        .atomic()
        .query_async(&mut redis)
        .await
        .unwrap();
    assert!(nothing.is_empty());
    // A command the server refuses while queueing discards the transaction: nothing ran.
    let discarded: RedisResult<(i64, i64)> = redis::pipe()
        .atomic()
        .incr("t:x", 1)
        .cmd("GET")
        .query_async(&mut redis)
        .await;
    let e = discarded.unwrap_err();
    assert_eq!(
        e.kind(),
        ErrorKind::Server(redis::ServerErrorKind::ExecAbort),
        "{e}"
    );
    let x: i64 = redis.get("t:x").await.unwrap();
    assert_eq!(x, 2, "the discarded transaction's INCR did not run");

    // Both went to the server as one transaction each: MULTI and EXEC were written by us.
    let watcher = Connection::connect(&server.url()).await.unwrap();
    let stats = watcher
        .send(cmd!("INFO", "commandstats"))
        .await
        .unwrap()
        .parse::<String>()
        .unwrap();
    assert!(stats.contains("cmdstat_multi:calls=3"), "{stats}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_script_falls_back_from_evalsha_when_the_server_lacks_it() {
    let (server, sim) = redis_and_sim(1).await;
    let mut redis = stack_on(&sim).await;
    let script = redis::Script::new("return redis.call('INCRBY', KEYS[1], ARGV[1])");
    // The server does not know the script: EVALSHA answers NOSCRIPT, redis-rs loads it, again.
    let n: i64 = script
        .key("s:counter")
        .arg(5)
        .invoke_async(&mut redis)
        .await
        .unwrap();
    assert_eq!(n, 5);
    // Known now: EVALSHA alone.
    let n: i64 = script
        .key("s:counter")
        .arg(1)
        .invoke_async(&mut redis)
        .await
        .unwrap();
    assert_eq!(n, 6);
    let watcher = Connection::connect(&server.url()).await.unwrap();
    let stats: String = watcher
        .send(cmd!("INFO", "commandstats"))
        .await
        .unwrap()
        .parse()
        .unwrap();
    let evalsha = stats
        .lines()
        .find(|l| l.starts_with("cmdstat_evalsha:"))
        .unwrap_or_else(|| panic!("{stats}"));
    assert!(evalsha.contains("calls=3"), "{evalsha}");
    assert!(stats.contains("cmdstat_script|load:calls=1"), "{stats}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_state_commands_are_refused_before_anything_is_sent() {
    let (_server, sim) = redis_and_sim(1).await;
    let mut redis = stack_on(&sim).await;
    for refused in [
        redis::cmd("SELECT").arg(1).clone(),
        redis::cmd("MULTI"),
        redis::cmd("WATCH").arg("k").clone(),
        redis::cmd("CLIENT").arg("SETNAME").arg("other").clone(),
    ] {
        let e = refused.exec_async(&mut redis).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Client, "{e}");
        assert!(e.to_string().contains("nothing was sent"), "{e}");
    }
    // Inside a pipeline too, and the pipeline is not sent at all.
    let e = redis::pipe()
        .set("r:k", 1)
        .cmd("SELECT")
        .arg(2)
        .exec_async(&mut redis)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Client, "{e}");
    let k: Option<i64> = redis.get("r:k").await.unwrap();
    assert_eq!(k, None);

    // A dedicated connection takes them, as redis-rs sends them.
    let mut own = RedisRs::new(redis.dedicated().await.unwrap());
    redis::cmd("WATCH")
        .arg("r:w")
        .exec_async(&mut own)
        .await
        .unwrap();
    let applied: Option<(i64,)> = redis::pipe()
        .atomic()
        .incr("r:w", 1)
        .query_async(&mut own)
        .await
        .unwrap();
    assert_eq!(applied, Some((1,)));
    // A watched key changed by someone else: EXEC answers nil, as redis-rs expects.
    redis::cmd("WATCH")
        .arg("r:w")
        .exec_async(&mut own)
        .await
        .unwrap();
    let () = redis.set("r:w", 10).await.unwrap();
    let conflict: Option<(i64,)> = redis::pipe()
        .atomic()
        .incr("r:w", 1)
        .query_async(&mut own)
        .await
        .unwrap();
    assert_eq!(conflict, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_is_a_redis_rs_connection_too() {
    let server = RedisServer::start();
    let sim = sim_over(&server, 1).await;
    let maintenance = redis_handoff::Maintenance::default();
    let connector =
        redis_handoff::Connector::new(ConnectOptions::from_url(&sim.node(0).url()).unwrap())
            .unwrap();
    let demuxed = NotificationDemux::over_connector(connector, maintenance.clone());
    let mut pool = Pool::connect(demuxed, maintenance, 3, HandoffConfig::default())
        .await
        .unwrap();
    let () = pool.set("pool:k", 7).await.unwrap();
    let k: i64 = pool.get("pool:k").await.unwrap();
    assert_eq!(k, 7);
    let (a, b): (i64, i64) = redis::pipe()
        .atomic()
        .incr("pool:k", 1)
        .incr("pool:k", 1)
        .query_async(&mut pool)
        .await
        .unwrap();
    assert_eq!((a, b), (8, 9));
    // A blocking command gets a connection of its own; the others are not held up.
    let popped: Option<(String, String)> = pool.blpop("pool:empty", 0.2).await.unwrap();
    assert_eq!(popped, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_connection_surfaces_as_a_redis_rs_io_error_that_says_the_command_may_have_run() {
    let (_server, sim) = redis_and_sim(1).await;
    let mut redis = stack_on(&sim).await;
    let () = redis.set("lost:k", 1).await.unwrap();
    // The INCR is written and held; then the connection is reset under it.
    sim.blackhole(0).unwrap();
    let mut sender = redis.clone();
    let incr = tokio::spawn(async move {
        redis::cmd("INCR")
            .arg("lost:k")
            .query_async::<i64>(&mut sender)
            .await
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(sim.reset_all(0).unwrap() >= 1);
    let e = incr.await.unwrap().unwrap_err();
    assert!(e.is_io_error() && e.is_connection_dropped(), "{e}");
    assert!(
        matches!(e.retry_method(), redis::RetryMethod::Reconnect),
        "{e}"
    );
    assert!(e.to_string().contains("may have been executed"), "{e}");
    let ours = cause(&e).unwrap_or_else(|| panic!("no cause in {e}"));
    assert_eq!(ours.execution(), Execution::MayHaveRun, "{ours}");
}

/// An app written against redis-rs's API: tasks that each increment their own counter, read it
/// back, and bump two counters together in a transaction, recording every failure.
struct App {
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<(u64, Vec<String>)>>,
}

async fn app_round<C: redis::aio::ConnectionLike + Send + Sync>(
    con: &mut C,
    key: &str,
    expected: &mut i64,
) -> RedisResult<()> {
    let n: i64 = redis::AsyncCommands::incr(con, key, 1).await?;
    *expected += 1;
    if n != *expected {
        return Err(redis::RedisError::from((
            ErrorKind::Client,
            "counter mismatch",
            format!("{key}: INCR answered {n}, expected {expected}"),
        )));
    }
    let read: i64 = redis::AsyncCommands::get(con, key).await?;
    if read != n {
        return Err(redis::RedisError::from((
            ErrorKind::Client,
            "counter mismatch",
            format!("{key}: GET answered {read}, expected {n}"),
        )));
    }
    let (a, b): (i64, i64) = redis::pipe()
        .atomic()
        .incr(format!("{key}:pair:a"), 1)
        .incr(format!("{key}:pair:b"), 1)
        .query_async(con)
        .await?;
    if a != b {
        return Err(redis::RedisError::from((
            ErrorKind::Client,
            "transaction split",
            format!("{key}: {a} != {b}"),
        )));
    }
    Ok(())
}

impl App {
    fn start<C>(con: &C, tasks: usize) -> App
    where
        C: redis::aio::ConnectionLike + Clone + Send + Sync + 'static,
    {
        let stop = Arc::new(AtomicBool::new(false));
        let tasks = (0..tasks)
            .map(|t| {
                let mut con = con.clone();
                let stop = stop.clone();
                tokio::spawn(async move {
                    let key = format!("app:{t}");
                    let (mut rounds, mut errors, mut expected) = (0u64, Vec::new(), 0i64);
                    while !stop.load(Ordering::Relaxed) {
                        match app_round(&mut con, &key, &mut expected).await {
                            Ok(()) => rounds += 1,
                            Err(e) => errors.push(e.to_string()),
                        }
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                    (rounds, errors)
                })
            })
            .collect();
        App { stop, tasks }
    }

    async fn finish(self) -> Vec<(u64, Vec<String>)> {
        self.stop.store(true, Ordering::Relaxed);
        let mut out = Vec::new();
        for t in self.tasks {
            let outcome = tokio::time::timeout(Duration::from_secs(30), t)
                .await
                .expect("an app task hung");
            out.push(outcome.expect("an app task panicked"));
        }
        out
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_rs_app_on_a_stack_goes_through_a_moving_with_no_failed_command() {
    let (_server, sim) = redis_and_sim(2).await;
    let redis = stack_on(&sim).await;
    let mut events = redis.maintenance().subscribe();
    let app = App::start(&redis, 20);
    tokio::time::sleep(Duration::from_millis(300)).await;

    let moving = sim.moving(0, 1, Duration::from_secs(2)).await.unwrap();
    let seen = next_event(&mut events, |k| {
        matches!(
            k,
            redis_handoff::EventKind::Notification(Notification::Moving { .. })
        )
    })
    .await;
    assert!(
        matches!(seen, redis_handoff::EventKind::Notification(Notification::Moving { endpoint: Some(ref e), .. }) if *e == sim.node(1).endpoint()),
        "{seen:?}"
    );
    next_event(&mut events, handoff_switched).await;
    next_event(&mut events, handoff_drained).await;
    // The grace period ends and node 0 closes its connections: the app does not notice.
    moving.done().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let outcomes = app.finish().await;

    assert_eq!(
        redis.handoff().current_endpoint(),
        Some(sim.node(1).endpoint())
    );
    assert_eq!(redis.handoff().stats().handoffs, 1);
    let mut check = redis.clone();
    for (t, (rounds, errors)) in outcomes.iter().enumerate() {
        assert!(errors.is_empty(), "task {t}: {errors:?}");
        assert!(*rounds > 0, "task {t} made no progress");
        let counter: u64 = check.get(format!("app:{t}")).await.unwrap();
        assert_eq!(counter, *rounds, "task {t}: every INCR ran exactly once");
        let pair: (u64, u64) = redis::pipe()
            .get(format!("app:{t}:pair:a"))
            .get(format!("app:{t}:pair:b"))
            .query_async(&mut check)
            .await
            .unwrap();
        assert_eq!(
            pair,
            (*rounds, *rounds),
            "task {t}: every transaction ran once"
        );
    }
}
