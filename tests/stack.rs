//! The recommended stack as a whole, against a real redis-server.

mod common;

use std::time::Duration;

use common::RedisServer;
use redis_handoff::circuit_breaker::CircuitState;
use redis_handoff::{cmd, ConnectOptions, Connection, Error, ErrorClass, Stack};
use tower::ServiceExt;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_every_clone_of_a_stack_closes_its_connection() {
    let server = RedisServer::start();
    let watcher = Connection::connect(&server.url()).await.unwrap();
    let url = format!("{}?client_name=stack-under-test", server.url());
    let stack = Stack::connect(&url).await.unwrap();
    let other = stack.clone();
    stack.clone().oneshot(cmd!("SET", "k", "v")).await.unwrap();
    assert_eq!(
        other
            .clone()
            .oneshot(cmd!("GET", "k"))
            .await
            .unwrap()
            .as_str(),
        Some("v")
    );
    let listed = |list: &str| list.contains("name=stack-under-test");
    let list = watcher.send(cmd!("CLIENT", "LIST")).await.unwrap();
    assert!(listed(list.as_str().unwrap()));
    assert_eq!(stack.metrics().snapshot().outcomes.ok, 2);

    drop(stack);
    drop(other);
    // Its layers' tasks end and its connection closes: nothing keeps the stack alive.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let list = watcher.send(cmd!("CLIENT", "LIST")).await.unwrap();
        if !listed(list.as_str().unwrap()) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the server still sees the dropped stack's connection"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The fused `Stack` and the same layers nested (`into_service`) are one stack: one connection,
/// one circuit, one set of metrics.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stack_and_its_nested_layers_share_their_connection_circuit_and_metrics() {
    let server = RedisServer::start();
    let stack = Stack::connect(&server.url()).await.unwrap();
    let nested = stack.clone().into_service();
    let fused_id: i64 = stack.query(cmd!("CLIENT", "ID")).await.unwrap();
    let nested_id = nested
        .clone()
        .oneshot(cmd!("CLIENT", "ID"))
        .await
        .unwrap()
        .as_i64();
    assert_eq!(Some(fused_id), nested_id, "both send on one connection");

    stack.circuit().force_open("opened by the test");
    let fused = stack.clone().oneshot(cmd!("PING")).await.unwrap_err();
    let layered = nested.clone().oneshot(cmd!("PING")).await.unwrap_err();
    assert_eq!(fused.class(), ErrorClass::CircuitOpen, "{fused}");
    assert_eq!(layered.class(), ErrorClass::CircuitOpen, "{layered}");
    stack.circuit().reset();
    stack.clone().oneshot(cmd!("PING")).await.unwrap();
    nested.clone().oneshot(cmd!("PING")).await.unwrap();

    let outcomes = stack.metrics().snapshot().outcomes;
    assert_eq!(outcomes.ok, 4, "{outcomes:?}");
    assert_eq!(outcomes.circuit_open, 2, "{outcomes:?}");
    assert_eq!(stack.circuit().stats().rejected, 2);
}

/// A command the server does not answer in time fails with a timeout through the fused stack,
/// counted by the circuit and the metrics; one given up by its caller is counted as cancelled;
/// and their late replies reach nobody.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timed_out_and_a_cancelled_command_are_counted_and_their_late_replies_reach_nobody() {
    let server = RedisServer::start();
    let pauser = Connection::connect(&server.url()).await.unwrap();
    let options = ConnectOptions::from_url(&server.url()).unwrap();
    let stack = Stack::builder(options)
        .timeout(Duration::from_millis(300))
        .connect()
        .await
        .unwrap();
    stack
        .clone()
        .oneshot(cmd!("SET", "k", "before"))
        .await
        .unwrap();

    // Every client waits until the pause ends: well past the timeout, short of the
    // connection's own health bound.
    pauser
        .send(cmd!("CLIENT", "PAUSE", "1500", "ALL"))
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let timed_out = stack.clone().oneshot(cmd!("GET", "k")).await.unwrap_err();
    assert!(
        matches!(timed_out, Error::Timeout { relaxed: false, .. }),
        "{timed_out}"
    );
    assert!(
        started.elapsed() < Duration::from_millis(1400),
        "failed at the timeout, not after the pause"
    );
    let cancelled = tokio::time::timeout(
        Duration::from_millis(50),
        stack.clone().oneshot(cmd!("GET", "k")),
    )
    .await;
    assert!(cancelled.is_err(), "the server was paused");

    // After the pause each caller gets its own reply, not one of those given up on.
    tokio::time::sleep_until((started + Duration::from_millis(1600)).into()).await;
    let echoed: String = stack.query(cmd!("ECHO", "mine")).await.unwrap();
    assert_eq!(echoed, "mine");
    let value: String = stack.query(cmd!("GET", "k")).await.unwrap();
    assert_eq!(value, "before");

    let outcomes = stack.metrics().snapshot().outcomes;
    assert_eq!(outcomes.timeout, 1, "{outcomes:?}");
    assert_eq!(outcomes.cancelled, 1, "{outcomes:?}");
    assert_eq!(outcomes.ok, 3, "{outcomes:?}");
    let circuit = stack.circuit().stats();
    assert_eq!(circuit.window_failures, 1, "{circuit:?}");
    assert_eq!(circuit.state, CircuitState::Closed);
}

/// The stack's own push stream (the one that outlives its connections) keeps as many pushes
/// for a subscriber that falls behind as `ConnectOptions::push_buffer` says, and counts the
/// ones a full queue made it miss.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stacks_push_stream_keeps_as_many_pushes_as_the_options_say() {
    let server = RedisServer::start();
    let publisher = Connection::connect(&server.url()).await.unwrap();
    for (buffer, published) in [(4usize, 40u64), (4096, 40)] {
        let mut options = ConnectOptions::from_url(&server.url()).unwrap();
        options.push_buffer = buffer;
        let stack = Stack::builder(options).connect().await.unwrap();
        let mut pushes = stack.handoff().pushes();
        let channel = format!("buffered:{buffer}");
        stack
            .clone()
            .oneshot(cmd!("SUBSCRIBE", &channel))
            .await
            .unwrap();
        // Nobody reads the stream while the messages come.
        for i in 0..published {
            publisher
                .send(cmd!("PUBLISH", &channel, i.to_string()))
                .await
                .unwrap();
        }
        // A round trip on the stack's own connection: every message came before its reply.
        stack.clone().oneshot(cmd!("PING")).await.unwrap();
        let mut messages = 0u64;
        while let Some(frame) = pushes.try_recv() {
            let text = format!("{frame:?}");
            if text.contains("message") && text.contains(&channel) {
                messages += 1;
            }
        }
        if buffer < published as usize {
            assert!(
                messages <= buffer as u64,
                "{messages} messages kept by a stream of {buffer}"
            );
            assert!(
                pushes.missed() > 0,
                "a full stream of {buffer} missed nothing"
            );
        } else {
            assert_eq!(messages, published, "missed {}", pushes.missed());
            assert_eq!(pushes.missed(), 0);
        }
    }
}
