//! The fused Stack's deadlines, which its connection keeps: a command, pipeline or transaction
//! past its timeout is answered with `Error::Timeout` while its reply is still owed, the late
//! reply reaches nobody, and a maintenance that begins while a command waits gives it the
//! relaxed timeout. Against a real redis-server paused with `CLIENT PAUSE`, through the
//! maintenance simulator where a notification is needed.
#![cfg(feature = "sim")]

mod common;

use std::time::{Duration, Instant};

use common::events::wait_until;
use common::sim::sim_over;
use common::RedisServer;
use redis_handoff::{
    cmd, ConnectOptions, Connection, Error, MaintenanceConfig, Pipeline, Stack, Transaction,
};
use tower::ServiceExt;

/// Bound on anything the tests wait for; only reached when something is broken.
const WIDE: Duration = Duration::from_secs(30);

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// A stack on `url` with a `timeout`, and at most `max_in_flight` commands on the wire when set
/// (the others wait in the connection's queue).
async fn stack_on(url: &str, timeout: Duration, max_in_flight: Option<usize>) -> Stack {
    let mut options = ConnectOptions::from_url(url).unwrap();
    if let Some(n) = max_in_flight {
        options.max_in_flight = n;
    }
    Stack::builder(options)
        .timeout(timeout)
        .connect()
        .await
        .unwrap()
}

/// Pauses every client of `server` for `pause`, through a connection of its own.
async fn pause(server: &RedisServer, pause: Duration) {
    let pauser = Connection::connect(&server.url()).await.unwrap();
    pauser
        .send(cmd!("CLIENT", "PAUSE", pause.as_millis() as u64, "ALL"))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_in_flight_when_a_migration_begins_gets_the_relaxed_timeout() {
    let server = RedisServer::start();
    let sim = sim_over(&server, 1).await;
    let config = MaintenanceConfig::builder()
        .relaxed_timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let stack = Stack::builder(ConnectOptions::from_url(&sim.node(0).url()).unwrap())
        .maintenance(config)
        .timeout(ms(200))
        .connect()
        .await
        .unwrap();
    stack.clone().oneshot(cmd!("SET", "k", "v")).await.unwrap();

    // The server holds the command well past its normal timeout; a migration begins while it
    // waits, so it gets the relaxed one and is answered.
    pause(&server, ms(1500)).await;
    let started = Instant::now();
    let waiting = tokio::spawn(stack.query::<String>(cmd!("GET", "k")));
    tokio::time::sleep(ms(50)).await;
    let migration = {
        let sim = sim.clone();
        tokio::spawn(async move { sim.migrate(0, Duration::from_secs(3)).await })
    };
    let status = stack.maintenance().status(&sim.node(0).endpoint());
    wait_until("the endpoint is relaxed", WIDE, ms(5), || {
        status.is_relaxed(std::time::Instant::now())
    })
    .await;
    let answered = tokio::time::timeout(WIDE, waiting).await.unwrap().unwrap();
    assert_eq!(answered.unwrap(), "v");
    assert!(
        started.elapsed() >= ms(1000),
        "answered after the pause, not before: {:?}",
        started.elapsed()
    );
    migration.await.unwrap().unwrap();
    assert_eq!(stack.metrics().snapshot().outcomes.timeout, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelines_and_transactions_time_out_and_their_late_replies_reach_nobody() {
    let server = RedisServer::start();
    let stack = stack_on(&server.url(), ms(200), None).await;
    stack.clone().oneshot(cmd!("SET", "n", "0")).await.unwrap();

    pause(&server, ms(1200)).await;
    let started = Instant::now();
    let pipeline = Pipeline::new()
        .cmd(cmd!("INCR", "n"))
        .cmd(cmd!("INCR", "n"))
        .cmd(cmd!("GET", "n"));
    let transaction = Transaction::new()
        .cmd(cmd!("INCR", "n"))
        .cmd(cmd!("GET", "n"));
    let (p, t, c) = tokio::join!(
        stack.clone().oneshot(pipeline),
        stack.clone().oneshot(transaction),
        stack.clone().oneshot(cmd!("INCR", "n")),
    );
    for (what, err) in [
        ("pipeline", p.map(|_| ()).unwrap_err()),
        ("transaction", t.map(|_| ()).unwrap_err()),
        ("command", c.map(|_| ()).unwrap_err()),
    ] {
        match err {
            Error::Timeout { after, relaxed } => {
                assert!(!relaxed, "{what}");
                assert!(after >= ms(200), "{what} timed out early: {after:?}");
            }
            other => panic!("{what}: expected a timeout, got {other}"),
        }
    }
    assert!(
        started.elapsed() < ms(1100),
        "failed at the timeout, not after the pause: {:?}",
        started.elapsed()
    );

    // After the pause each caller gets its own reply: the replies of the three given up on
    // (they were written, so they ran) go nowhere.
    tokio::time::sleep_until((started + ms(1300)).into()).await;
    let echoed: String = stack.query(cmd!("ECHO", "mine")).await.unwrap();
    assert_eq!(echoed, "mine");
    let n: i64 = stack.query(cmd!("GET", "n")).await.unwrap();
    assert_eq!(n, 4, "every command given up on ran once");
    let replies = stack
        .clone()
        .oneshot(
            Pipeline::new()
                .cmd(cmd!("ECHO", "a"))
                .cmd(cmd!("ECHO", "b")),
        )
        .await
        .unwrap();
    let replies: Vec<String> = replies
        .into_iter()
        .map(|r| r.unwrap().parse().unwrap())
        .collect();
    assert_eq!(replies, ["a", "b"]);

    let outcomes = stack.metrics().snapshot().outcomes;
    assert_eq!(outcomes.timeout, 3, "{outcomes:?}");
    assert_eq!(stack.circuit().stats().window_failures, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_callers_time_out_together_and_the_connection_goes_on() {
    let server = RedisServer::start();
    let stack = stack_on(&server.url(), ms(150), None).await;
    pause(&server, ms(800)).await;
    let calls: Vec<_> = (0..200)
        .map(|i| tokio::spawn(stack.query::<i64>(cmd!("INCR", format!("many:{i}")))))
        .collect();
    for call in calls {
        let err = tokio::time::timeout(WIDE, call)
            .await
            .unwrap()
            .unwrap()
            .unwrap_err();
        assert!(matches!(err, Error::Timeout { .. }), "{err}");
    }
    // After the pause the 200 ran once each (their replies went nowhere); so many failures
    // may have opened the circuit, so this looks from a connection of its own.
    tokio::time::sleep(ms(900)).await;
    let other = Connection::connect(&server.url()).await.unwrap();
    for i in [0, 99, 199] {
        let reply = other.send(cmd!("GET", format!("many:{i}"))).await.unwrap();
        assert_eq!(reply.as_str(), Some("1"));
    }
    assert_eq!(stack.metrics().snapshot().outcomes.timeout, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_still_queued_when_its_deadline_passes_is_never_sent() {
    let server = RedisServer::start();
    // One command on the wire at a time: the others wait in the connection's queue.
    let stack = stack_on(&server.url(), ms(200), Some(1)).await;
    stack.clone().oneshot(cmd!("SET", "n", "0")).await.unwrap();

    pause(&server, ms(800)).await;
    let started = Instant::now();
    let first = tokio::spawn(stack.query::<i64>(cmd!("INCR", "n")));
    tokio::time::sleep(ms(20)).await;
    let queued: Vec<_> = (0..3)
        .map(|_| tokio::spawn(stack.query::<i64>(cmd!("INCR", "n"))))
        .collect();
    for call in std::iter::once(first).chain(queued) {
        let err = tokio::time::timeout(WIDE, call)
            .await
            .unwrap()
            .unwrap()
            .unwrap_err();
        assert!(matches!(err, Error::Timeout { .. }), "{err}");
    }
    assert!(started.elapsed() < ms(700), "{:?}", started.elapsed());

    // The one written ran once the pause ended; the three never written never ran.
    tokio::time::sleep_until((started + ms(1000)).into()).await;
    let n: i64 = stack.query(cmd!("GET", "n")).await.unwrap();
    assert_eq!(n, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_queued_behind_one_without_a_deadline_still_times_out() {
    let server = RedisServer::start();
    let stack = stack_on(&server.url(), ms(200), Some(1)).await;
    // A blocking command with no deadline of its own holds the one place on the wire.
    let blocked = tokio::spawn(stack.query::<Option<Vec<String>>>(cmd!("BLPOP", "list", 0)));
    tokio::time::sleep(ms(50)).await;
    let started = Instant::now();
    let err = tokio::time::timeout(WIDE, stack.query::<Option<String>>(cmd!("GET", "k")))
        .await
        .expect("the queued command's deadline was kept")
        .unwrap_err();
    assert!(matches!(err, Error::Timeout { .. }), "{err}");
    assert!(started.elapsed() < ms(2000), "{:?}", started.elapsed());
    // The blocked command still gets its own answer.
    let other = Connection::connect(&server.url()).await.unwrap();
    other.send(cmd!("RPUSH", "list", "x")).await.unwrap();
    let popped = tokio::time::timeout(WIDE, blocked)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(popped, Some(vec!["list".to_owned(), "x".to_owned()]));
}
