//! HandoffRetry against real redis-server processes: switching, failing handoffs, reconnects.

mod common;

use std::time::Duration;

use common::client::{connector, handoff_to_url, message_number, Publisher};
use common::events::{handoff_drained, handoff_failed, handoff_switched, next_event};
use common::load::{self, counter};
use common::RedisServer;
use redis_handoff::handoff::{HandoffConfig, HandoffRetry};
use redis_handoff::{cmd, Endpoint, Error, EventKind, Maintenance, MaintenanceConfig};
use tower::ServiceExt;

const WIDE: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handoff_under_load_switches_with_zero_failed_commands() {
    let server = RedisServer::start();
    let redis = handoff_to_url(
        &server.url(),
        &Maintenance::default(),
        HandoffConfig::default(),
    )
    .await;
    let mut events = redis.events();
    let load = load::start(&redis, 50, "load", Duration::ZERO, Duration::ZERO);
    tokio::time::sleep(Duration::from_millis(300)).await;

    // The same server under another name: a new endpoint with the same data.
    let target = Endpoint::new("localhost", server.port);
    redis.moving(1, Duration::from_secs(15), Some(target.clone()));
    next_event(&mut events, handoff_switched).await;
    next_event(&mut events, handoff_drained).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let results = load.finish().await;

    assert_eq!(redis.current_endpoint(), Some(target));
    assert_eq!(redis.configured_endpoint().host(), "127.0.0.1");
    for (t, r) in results.iter().enumerate() {
        assert!(r.errors.is_empty(), "task {t}: {:?}", r.errors);
        assert_eq!(
            counter(&redis, format!("load:{t}")).await,
            r.incr_ok,
            "task {t}: counter"
        );
    }
    assert_eq!(redis.stats().handoffs, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handoff_to_an_endpoint_that_refuses_fails_and_keeps_serving() {
    let server = RedisServer::start();
    let config = HandoffConfig {
        backoff_base: Duration::from_millis(20),
        ..HandoffConfig::default()
    };
    let maintenance = Maintenance::new(
        MaintenanceConfig::builder()
            .handoff_timeout(Duration::from_secs(1))
            .build()
            .unwrap(),
    );
    let redis = handoff_to_url(&server.url(), &maintenance, config).await;
    let mut events = redis.events();
    let load = load::start(&redis, 50, "load", Duration::ZERO, Duration::ZERO);
    let nobody = Endpoint::new("127.0.0.1", common::free_port());
    redis.moving(1, Duration::from_secs(15), Some(nobody.clone()));
    let failed = next_event(&mut events, handoff_failed).await;
    let results = load.finish().await;
    assert!(matches!(failed, EventKind::HandoffFailed { to, attempts: 3, .. } if to == nobody));
    for (t, r) in results.iter().enumerate() {
        assert!(r.errors.is_empty(), "task {t}: {:?}", r.errors);
        assert_eq!(counter(&redis, format!("load:{t}")).await, r.incr_ok);
    }
    assert_eq!(
        redis.current_endpoint().map(|e| e.port()),
        Some(server.port)
    );
    assert_eq!(redis.stats().handoffs_failed, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_server_is_reconnected_and_no_increment_is_lost_or_doubled() {
    // Every acknowledged write reaches the disk, so the counters survive the restart.
    let mut server = RedisServer::start_with(&["--appendonly", "yes", "--appendfsync", "always"]);
    let config = HandoffConfig {
        backoff_base: Duration::from_millis(50),
        ..HandoffConfig::default()
    };
    let redis = handoff_to_url(&server.url(), &Maintenance::default(), config).await;
    let mut events = redis.events();
    let load = load::start(&redis, 50, "load", Duration::ZERO, Duration::ZERO);
    tokio::time::sleep(Duration::from_millis(500)).await;
    server.restart();
    next_event(&mut events, |e| matches!(e, EventKind::Reconnected { .. })).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let results = load.finish().await;

    for (t, r) in results.iter().enumerate() {
        let value = counter(&redis, format!("load:{t}")).await;
        // Acknowledged increments all counted; those whose reply was lost counted at most once.
        assert!(
            value >= r.incr_ok && value <= r.incr_ok + r.incr_lost,
            "task {t}: value {value}, ok {}, maybe {}",
            r.incr_ok,
            r.incr_lost
        );
        for e in &r.errors {
            assert!(
                e.contains("may have been executed") || e.contains("did not run"),
                "undocumented error: {e}"
            );
        }
    }
    // After recovery every command succeeds.
    for t in 0..50 {
        redis
            .clone()
            .oneshot(cmd!("INCR", format!("load:{t}")))
            .await
            .unwrap();
    }
    assert!(redis.stats().reconnects >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_wait_for_the_first_connection_and_fail_clearly_when_none_comes() {
    let port = common::free_port();
    let config = HandoffConfig {
        max_reconnect_attempts: 2,
        backoff_base: Duration::from_millis(10),
        ..HandoffConfig::default()
    };
    let err = HandoffRetry::connect(
        connector(&format!("redis://127.0.0.1:{port}")),
        Maintenance::default(),
        config.clone(),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, Error::Connect { .. }), "{err:?}");

    let redis = HandoffRetry::new(
        connector(&format!("redis://127.0.0.1:{port}")),
        Maintenance::default(),
        config,
    );
    let err = tokio::time::timeout(WIDE, redis.clone().oneshot(cmd!("PING")))
        .await
        .expect("fails, does not hang")
        .unwrap_err();
    assert!(err.certainly_not_executed(), "{err:?}");
    assert!(err.to_string().contains(&port.to_string()), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriptions_follow_the_connection_and_no_message_is_lost() {
    let server = RedisServer::start();
    let redis = handoff_to_url(
        &server.url(),
        &Maintenance::default(),
        HandoffConfig::default(),
    )
    .await;
    let mut pushes = redis.pushes();
    let mut events = redis.events();
    redis
        .clone()
        .oneshot(cmd!("SUBSCRIBE", "orders"))
        .await
        .unwrap();
    let publisher = Publisher::start(&server.url(), "orders", Duration::from_millis(1)).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    redis.moving(
        1,
        Duration::from_secs(15),
        Some(Endpoint::new("localhost", server.port)),
    );
    next_event(&mut events, handoff_drained).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let total = publisher.stop().await;

    let mut seen = std::collections::BTreeSet::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while (seen.len() as u64) < total && tokio::time::Instant::now() < deadline {
        match tokio::time::timeout(Duration::from_secs(5), pushes.recv()).await {
            Ok(Some(frame)) => {
                if let Some(n) = message_number(&frame) {
                    seen.insert(n);
                }
            }
            _ => break,
        }
    }
    let missing: Vec<u64> = (0..total).filter(|i| !seen.contains(i)).collect();
    assert!(
        missing.is_empty(),
        "lost {} of {total} messages: {missing:?}",
        missing.len()
    );
}
