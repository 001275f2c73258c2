//! `Stack::send`: the stack borrowed rather than cloned, against real redis-server processes
//! (through the simulator for a maintenance). It must behave as `stack.clone().oneshot(..)`
//! does: the same answers, the same counts, the same waits.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::RedisServer;
use redis_handoff::circuit_breaker::CircuitState;
use redis_handoff::{cmd, ConnectOptions, Connection, Error, ErrorClass, Pipeline, Stack};

async fn stack_on(url: &str, queue_size: Option<usize>, timeout: Duration) -> Stack {
    let mut options = ConnectOptions::from_url(url).unwrap();
    if let Some(size) = queue_size {
        options.queue_size = size;
    }
    Stack::builder(options)
        .timeout(timeout)
        .connect()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_takes_commands_pipelines_and_transactions_and_counts_each_once() {
    let server = RedisServer::start();
    let stack = stack_on(&server.url(), None, Duration::from_secs(1)).await;
    stack.send(cmd!("SET", "greeting", "hello")).await.unwrap();
    let greeting: String = stack
        .send(cmd!("GET", "greeting"))
        .await
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(greeting, "hello");
    let replies = stack
        .send(
            Pipeline::new()
                .cmd(cmd!("INCR", "n"))
                .cmd(cmd!("INCR", "n")),
        )
        .await
        .unwrap();
    assert_eq!(replies.len(), 2);
    assert_eq!(replies[1].clone().unwrap().parse::<i64>().unwrap(), 2);
    let exec = stack
        .send(
            redis_handoff::Transaction::new()
                .cmd(cmd!("INCR", "n"))
                .cmd(cmd!("GET", "n")),
        )
        .await
        .unwrap();
    assert_eq!(exec.len(), 2);
    // A reply of another shape is a conversion error; the command ran.
    let wrong = stack
        .send(cmd!("GET", "greeting"))
        .await
        .unwrap()
        .parse::<i64>();
    assert!(matches!(wrong, Err(Error::Conversion(_))), "{wrong:?}");

    let outcomes = stack.metrics().snapshot().outcomes;
    assert_eq!(outcomes.ok, 5, "{outcomes:?}");
    assert_eq!(outcomes.cancelled, 0, "{outcomes:?}");
    let circuit = stack.circuit().stats();
    assert_eq!(circuit.window_calls, 5, "{circuit:?}");
    assert_eq!(circuit.window_failures, 0, "{circuit:?}");
}

/// A queue of two slots and 200 senders at once: the ones that find no room take the full
/// path and wait for it; every command runs exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn senders_that_find_the_queue_full_wait_for_room_and_every_command_runs_once() {
    let server = RedisServer::start();
    let stack = stack_on(&server.url(), Some(2), Duration::from_secs(5)).await;
    let tasks: Vec<_> = (0..200)
        .map(|_| {
            let stack = stack.clone();
            tokio::spawn(async move { stack.send(cmd!("INCR", "full")).await })
        })
        .collect();
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    let n: i64 = stack.query(cmd!("GET", "full")).await.unwrap();
    assert_eq!(n, 200);
    assert_eq!(stack.metrics().snapshot().outcomes.ok, 201);
}

/// Commands a shared connection refuses (and ones answered without the server) are answered
/// on the spot and give back the queue slot they took: with two slots, a hundred of them
/// leave the queue as it was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_sends_give_back_their_queue_slot() {
    let server = RedisServer::start();
    let stack = stack_on(&server.url(), Some(2), Duration::from_secs(1)).await;
    for _ in 0..100 {
        match stack.send(cmd!("MULTI")).await {
            Err(Error::Refused { .. }) => {}
            other => panic!("MULTI on a shared stack: {other:?}"),
        }
        let empty = stack.send(Pipeline::new()).await.unwrap();
        assert!(empty.is_empty());
    }
    // Both slots are free: two commands go at once, each straight onto the connection.
    let (a, b) = tokio::join!(
        stack.send(cmd!("SET", "a", "1")),
        stack.send(cmd!("SET", "b", "2"))
    );
    a.unwrap();
    b.unwrap();
    let n: i64 = stack.query(cmd!("EXISTS", "a", "b")).await.unwrap();
    assert_eq!(n, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_circuit_turns_sends_away_and_they_are_counted() {
    let server = RedisServer::start();
    let stack = stack_on(&server.url(), None, Duration::from_secs(1)).await;
    stack.send(cmd!("PING")).await.unwrap();
    stack.circuit().force_open("maintenance window");
    let refused = stack.send(cmd!("SET", "k", "v")).await.unwrap_err();
    assert_eq!(refused.class(), ErrorClass::CircuitOpen, "{refused}");
    stack.circuit().reset();
    stack.send(cmd!("SET", "k", "after")).await.unwrap();
    let value: String = stack.query(cmd!("GET", "k")).await.unwrap();
    assert_eq!(value, "after", "the refused SET never ran");

    let outcomes = stack.metrics().snapshot().outcomes;
    assert_eq!(outcomes.circuit_open, 1, "{outcomes:?}");
    assert_eq!(outcomes.ok, 3, "{outcomes:?}");
    assert_eq!(stack.circuit().stats().state, CircuitState::Closed);
}

/// The deadline a send carries is kept by the connection as a clone's is: a paused server
/// times it out at the stack's timeout, a dropped send is counted as cancelled, and neither's
/// late reply reaches a later caller.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timed_out_and_a_dropped_send_are_counted_and_their_late_replies_reach_nobody() {
    let server = RedisServer::start();
    let pauser = Connection::connect(&server.url()).await.unwrap();
    let stack = stack_on(&server.url(), None, Duration::from_millis(300)).await;
    stack.send(cmd!("SET", "k", "before")).await.unwrap();
    pauser
        .send(cmd!("CLIENT", "PAUSE", "1500", "ALL"))
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let timed_out = stack.send(cmd!("GET", "k")).await.unwrap_err();
    assert!(
        matches!(timed_out, Error::Timeout { relaxed: false, .. }),
        "{timed_out}"
    );
    assert!(
        started.elapsed() < Duration::from_millis(1400),
        "failed at the timeout, not after the pause"
    );
    let dropped =
        tokio::time::timeout(Duration::from_millis(50), stack.send(cmd!("GET", "k"))).await;
    assert!(dropped.is_err(), "the server was paused");

    tokio::time::sleep_until((started + Duration::from_millis(1600)).into()).await;
    let echoed: String = stack
        .send(cmd!("ECHO", "mine"))
        .await
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(echoed, "mine");

    let outcomes = stack.metrics().snapshot().outcomes;
    assert_eq!(outcomes.timeout, 1, "{outcomes:?}");
    assert_eq!(outcomes.cancelled, 1, "{outcomes:?}");
    assert_eq!(outcomes.ok, 2, "{outcomes:?}");
    assert_eq!(stack.circuit().stats().window_failures, 1);
}

/// Senders through a `MOVING`: their stack clones were made before the handoff, so after it
/// they find their cached connection gone and send on the new current one. None fails, none
/// is lost or run twice, and the commands end on the new node.
#[cfg(feature = "sim")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sends_go_through_a_moving_with_none_failed_lost_or_doubled() {
    use redis_handoff::handoff::HandoffConfig;
    use redis_handoff::maintenance::EndpointType;
    use redis_handoff::MaintenanceConfig;

    let server = RedisServer::start();
    let sim = common::sim::sim_over(&server, 2).await;
    let maintenance = MaintenanceConfig::builder()
        .endpoint_type(EndpointType::InternalIp)
        .handoff_timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    let stack = Stack::builder(ConnectOptions::from_url(&sim.node(0).url()).unwrap())
        .maintenance(maintenance)
        .handoff(HandoffConfig {
            backoff_base: Duration::from_millis(20),
            ..HandoffConfig::default()
        })
        .timeout(Duration::from_secs(1))
        .connect()
        .await
        .unwrap();

    let ok = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let (stack, ok, failed, stop) =
                (stack.clone(), ok.clone(), failed.clone(), stop.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    match stack.send(cmd!("INCR", "moved")).await {
                        Ok(_) => ok.fetch_add(1, Ordering::Relaxed),
                        Err(_) => failed.fetch_add(1, Ordering::Relaxed),
                    };
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let moving = sim.moving(0, 1, Duration::from_secs(30)).await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while stack.handoff().stats().handoffs == 0 {
        assert!(std::time::Instant::now() < deadline, "no handoff");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let switched_at = ok.load(Ordering::Relaxed);
    // Long enough for each sender to send many commands on the new connection.
    while ok.load(Ordering::Relaxed) < switched_at + 500 {
        assert!(
            std::time::Instant::now() < deadline,
            "commands stopped after the handoff"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        task.await.unwrap();
    }
    moving.abort();

    assert_eq!(failed.load(Ordering::Relaxed), 0);
    let sent = ok.load(Ordering::Relaxed);
    let n: i64 = stack.query(cmd!("GET", "moved")).await.unwrap();
    assert_eq!(n as u64, sent, "every INCR ran once");
    let current = stack.handoff().current_endpoint().unwrap();
    assert_eq!(
        current,
        sim.node(1).endpoint(),
        "the stack is on the new node"
    );
    assert_eq!(stack.metrics().snapshot().outcomes.ok, sent + 1);
}
