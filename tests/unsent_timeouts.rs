//! A command whose timeout passes before it was ever written says so: it did not run, so its
//! caller (or the cluster layer) may send it again, where a plain timeout would say it may
//! have run. Real redis-server processes behind the simulator, whose blackhole holds the
//! handshake of a reconnect and whose scenarios answer as a server loading its data.
#![cfg(feature = "sim")]

mod common;

use std::time::{Duration, Instant};

use redis_handoff::{
    cmd, ConnectOptions, Error, EventKind, HandoffConfig, Maintenance, Resend, Stack,
};
use tower::ServiceExt;

use common::client::handoff_to_url;
use common::events::next_event;
use common::sim::{answer_next_with, redis_and_sim, LOADING};

async fn stack(url: &str, timeout: Duration) -> Stack {
    Stack::builder(ConnectOptions::from_url(url).unwrap())
        .timeout(timeout)
        .connect()
        .await
        .unwrap()
}

/// Sends `INCR key` until it succeeds (within 30 s) and gives its value; every failure on the
/// way must say the INCR did not run, or the value would not tell how many did.
async fn incr_until_ok(stack: &Stack, key: &str) -> i64 {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match stack.clone().oneshot(cmd!("INCR", key)).await {
            Ok(reply) => return reply.as_i64().unwrap(),
            Err(e) if e.certainly_not_executed() && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("INCR {key} failed as {e}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_that_times_out_waiting_for_a_reconnect_says_it_was_never_sent() {
    let (_server, sim) = redis_and_sim(1).await;
    let redis = stack(&sim.node(0).url(), Duration::from_millis(300)).await;
    redis
        .clone()
        .oneshot(cmd!("SET", "unsent:n", "0"))
        .await
        .unwrap();
    // The connection is cut, and the node then takes connections but answers nothing: the
    // reconnect's handshake hangs, and commands wait for a connection past their timeout.
    let mut events = redis.maintenance().subscribe();
    sim.blackhole(0).unwrap();
    assert!(sim.reset_all(0).unwrap() >= 1);
    // Once the stack has seen its connection go, nothing it is given is written anywhere
    // until a new connection is up.
    next_event(&mut events, |e| matches!(e, EventKind::Disconnected { .. })).await;
    let mut not_sent = 0;
    for _ in 0..3 {
        let error = redis
            .clone()
            .oneshot(cmd!("INCR", "unsent:n"))
            .await
            .unwrap_err();
        // The first ones fail as never sent; once the circuit has counted enough of them it
        // may open and turn the rest away (not sent either).
        match &error {
            Error::NotSent { reason } => {
                assert!(reason.contains("before the command's timeout"), "{error}");
                not_sent += 1;
            }
            Error::CircuitOpen { .. } => {}
            other => panic!("a command never written failed as {other:?}"),
        }
        assert!(error.certainly_not_executed(), "{error}");
    }
    assert!(not_sent >= 1);
    // Counted as what they were: the endpoint could not be reached, not a command that
    // took too long.
    let outcomes = redis.metrics().snapshot().outcomes;
    assert_eq!(outcomes.timeout, 0, "{outcomes:?}");
    assert_eq!(outcomes.connection_lost, not_sent, "{outcomes:?}");
    sim.restore(0).unwrap();
    // Back: the first INCR that succeeds is the first that ran.
    assert_eq!(incr_until_ok(&redis, "unsent:n").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_that_times_out_while_the_server_loads_gets_the_refusal() {
    let (_server, sim) = redis_and_sim(1).await;
    let http = sim.serve_http("127.0.0.1:0").await.unwrap();
    // Between the tries at about 150 and 310 ms (10 ms, then 20, 40, ... apart).
    let redis = stack(&sim.node(0).url(), Duration::from_millis(230)).await;
    // Nine refusals: their tries outlast the 230 ms.
    answer_next_with(http.addr(), &[LOADING; 9]).await;

    let error = redis
        .clone()
        .oneshot(cmd!("INCR", "loading:n"))
        .await
        .unwrap_err();
    // The refusal it was waiting out when its time ran out, not a timeout that says it may
    // have run; and, a server error, not a failure of the endpoint for the circuit.
    assert!(
        matches!(&error, Error::Server(e) if e.code() == "LOADING"),
        "{error:?}"
    );
    assert!(error.certainly_not_executed(), "{error}");
    let outcomes = redis.metrics().snapshot().outcomes;
    assert_eq!(outcomes.timeout, 0, "{outcomes:?}");
    assert_eq!(outcomes.server_error, 1, "{outcomes:?}");
    // For the circuit it is the timeout it is: a server that stays loading opens it.
    assert_eq!(redis.circuit().stats().window_failures, 1);
    assert_eq!(
        incr_until_ok(&redis, "loading:n").await,
        1,
        "the refused one never ran"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_lost_with_its_connection_is_never_said_to_be_unsent_later() {
    let (_server, sim) = redis_and_sim(1).await;
    let config = HandoffConfig {
        wait_for_connection: Duration::from_millis(300),
        ..HandoffConfig::default()
    }
    .resend(Resend::Always);
    let redis = handoff_to_url(&sim.node(0).url(), &Maintenance::default(), config).await;
    let mut events = redis.maintenance().subscribe();
    // The INCR is written (and held by the blackhole), then its connection is cut: it may
    // have run. It is sent again (the policy says so), but no connection comes back in time.
    sim.blackhole(0).unwrap();
    let incr = tokio::spawn({
        let redis = redis.clone();
        async move { redis.oneshot(cmd!("INCR", "lost:n")).await }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(sim.reset_all(0).unwrap() >= 1);
    next_event(&mut events, |e| matches!(e, EventKind::Disconnected { .. })).await;
    let error = incr.await.unwrap().unwrap_err();
    // The wait for a connection ended in "not sent", but the first try may have run it.
    assert!(matches!(&error, Error::ConnectionLost { .. }), "{error:?}");
    assert!(!error.certainly_not_executed(), "{error}");
}
