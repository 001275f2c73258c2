//! A peer that goes silent without closing the socket: the connection's health rule finds it
//! (a `PING` nobody answers), fails what was in flight as "may have run", and a stack
//! reconnects. Real redis-server processes behind the simulator, whose blackhole holds every
//! byte a client sends.
#![cfg(feature = "sim")]

mod common;

use std::time::{Duration, Instant};

use redis_handoff::{cmd, ConnectOptions, Connection, Error, EventKind, Liveness, Stack};
use tower::ServiceExt;

use common::events::next_matching;
use common::sim::redis_and_sim;

/// Options for node 0 of the simulator with this silence bound.
fn options(url: &str, timeout: Duration) -> ConnectOptions {
    ConnectOptions::from_url(url)
        .unwrap()
        .with_liveness(Liveness::default().with_timeout(Some(timeout)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_server_is_taken_for_dead_and_its_commands_may_have_run() {
    let (_server, sim) = redis_and_sim(1).await;
    let conn = Connection::connect_with(options(&sim.node(0).url(), Duration::from_millis(300)))
        .await
        .unwrap();
    conn.send(cmd!("SET", "live:a", "1")).await.unwrap();
    sim.blackhole(0).unwrap();
    let started = Instant::now();
    let err = tokio::time::timeout(Duration::from_secs(30), conn.send(cmd!("INCR", "live:a")))
        .await
        .expect("the command is answered, not left hanging")
        .unwrap_err();
    assert!(
        matches!(&err, Error::ConnectionLost { reason } if reason.contains("PING")),
        "{err}"
    );
    // Written, and the server may have run it: never "not sent".
    assert!(err.may_have_executed(), "{err}");
    assert!(conn.is_closed());
    // Three silence bounds at most; the margin is for a slow machine.
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );
    // Later commands fail at once, as on any closed connection.
    assert!(matches!(
        conn.send(cmd!("PING")).await,
        Err(Error::NotSent { .. })
    ));
    sim.restore(0).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_connection_to_a_silent_server_closes_by_itself() {
    let (_server, sim) = redis_and_sim(1).await;
    let liveness = Liveness::default()
        .with_timeout(Some(Duration::from_millis(200)))
        .with_idle_ping(Some(Duration::from_millis(300)));
    let conn = Connection::connect_with(
        ConnectOptions::from_url(&sim.node(0).url())
            .unwrap()
            .with_liveness(liveness),
    )
    .await
    .unwrap();
    sim.blackhole(0).unwrap();
    let reason = tokio::time::timeout(Duration::from_secs(30), conn.closed())
        .await
        .expect("the idle probe goes unanswered and the connection closes");
    assert!(reason.contains("PING"), "{reason}");
    sim.restore(0).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_server_keeps_its_connection_through_slow_replies_and_blocking_commands() {
    let (_server, sim) = redis_and_sim(1).await;
    let conn = Connection::connect_with(options(&sim.node(0).url(), Duration::from_millis(100)))
        .await
        .unwrap();
    // A blocking command keeps the server silent on purpose for longer than the bound.
    let popped = conn.send(cmd!("BLPOP", "live:nothing", "1")).await.unwrap();
    assert!(popped.is_null(), "{popped:?}");
    // Idle for many bounds: the idle probes are answered.
    tokio::time::sleep(Duration::from_millis(800)).await;
    // Replies slower than the bound (the simulator delays each): the probe is answered behind
    // them, so the connection stays.
    sim.latency(0, Duration::from_millis(150)).unwrap();
    for i in 0..5 {
        conn.send(cmd!("SET", "live:slow", i)).await.unwrap();
    }
    sim.latency(0, Duration::ZERO).unwrap();
    assert!(!conn.is_closed(), "{:?}", conn.closed_reason());
    assert_eq!(
        conn.send(cmd!("GET", "live:slow")).await.unwrap().as_str(),
        Some("4")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stack_replaces_a_silently_dead_connection_and_traffic_flows_again() {
    let (_server, sim) = redis_and_sim(1).await;
    let stack = Stack::builder(ConnectOptions::from_url(&sim.node(0).url()).unwrap())
        .timeout(Duration::from_secs(1))
        .connect()
        .await
        .unwrap();
    let mut events = stack.maintenance().subscribe();
    stack
        .clone()
        .oneshot(cmd!("SET", "live:stack", "before"))
        .await
        .unwrap();
    // The open connection goes dark in both directions (a NAT entry dropped, a VM gone behind
    // a load balancer); new connections to the node still work.
    assert_eq!(sim.blackhole_connections(0).unwrap(), 1);
    let started = Instant::now();
    // Commands from now on: those on the dark connection time out (the stack's 1 s); once the
    // health rule has closed it, they go to a new one.
    let deadline = started + Duration::from_secs(30);
    let mut failed = 0;
    let reply = loop {
        match stack.clone().oneshot(cmd!("GET", "live:stack")).await {
            Ok(reply) => break reply,
            Err(e) if Instant::now() < deadline => {
                assert!(
                    // On the dark connection, or waiting for the new one past the timeout.
                    matches!(
                        e,
                        Error::Timeout { .. }
                            | Error::ConnectionLost { .. }
                            | Error::NotSent { .. }
                    ),
                    "{e}"
                );
                failed += 1;
            }
            Err(e) => panic!("no traffic on a new connection: {e}"),
        }
    };
    let flowing = started.elapsed();
    assert_eq!(reply.as_str(), Some("before"));
    let lost = next_matching(&mut events, Duration::from_secs(30), |k| {
        matches!(k, EventKind::Disconnected { .. })
    })
    .await;
    let EventKind::Disconnected { reason } = &lost.kind else {
        unreachable!()
    };
    assert!(reason.contains("PING"), "{reason}");
    assert_eq!(stack.handoff().stats().reconnects, 1);
    assert!(failed >= 1);
    // With a 1 s command timeout the rule takes two to three seconds; the bound is wide for a
    // slow machine (the exact figure is in `cargo bench --features sim --bench handoff`, the
    // `silent` scenario).
    println!("traffic flowed again {flowing:?} after the connection went dark ({failed} failed)");
    assert!(flowing < Duration::from_secs(15), "{flowing:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_for_room_in_a_stuck_queue_is_bounded_by_the_timeout() {
    use redis_handoff::relaxed_timeout::{RelaxationSwitch, RelaxedTimeout};
    let (_server, sim) = redis_and_sim(1).await;
    let mut options = ConnectOptions::from_url(&sim.node(0).url())
        .unwrap()
        .with_liveness(Liveness::off());
    // One command on the wire, one waiting: a third has no room while the server is silent.
    options.queue_size = 1;
    options.max_in_flight = 1;
    let conn = Connection::connect_with(options).await.unwrap();
    let timeout = Duration::from_millis(300);
    let svc = RelaxedTimeout::new(conn, timeout, timeout, RelaxationSwitch::new());
    sim.blackhole(0).unwrap();
    let first = tokio::spawn(svc.clone().oneshot(cmd!("INCR", "room:a")));
    tokio::time::sleep(Duration::from_millis(50)).await;
    let second = tokio::spawn(svc.clone().oneshot(cmd!("INCR", "room:b")));
    tokio::time::sleep(Duration::from_millis(50)).await;
    let started = Instant::now();
    let third = tokio::time::timeout(
        Duration::from_secs(30),
        svc.clone().oneshot(cmd!("INCR", "room:c")),
    )
    .await
    .expect("poll_ready does not wait forever");
    assert!(
        matches!(&third, Err(Error::NotSent { reason }) if reason.contains("no room")),
        "{third:?}"
    );
    assert!(started.elapsed() >= timeout, "{:?}", started.elapsed());
    // The two that found room time out as commands do.
    for waiting in [first, second] {
        let outcome = waiting.await.unwrap();
        assert!(matches!(outcome, Err(Error::Timeout { .. })), "{outcome:?}");
    }
    sim.restore(0).unwrap();
}
