//! HandoffRetry against real redis-server processes: switching, failing handoffs, reconnects.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::RedisServer;
use redis_handoff::handoff::{HandoffConfig, HandoffRetry};
use redis_handoff::maintenance::MaintenanceEvents;
use redis_handoff::{
    cmd, ConnectOptions, Connector, Endpoint, Error, EventKind, Maintenance, MaintenanceConfig,
};
use tower::ServiceExt;

const WIDE: Duration = Duration::from_secs(30);

struct Load {
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<TaskResult>>,
}

#[derive(Debug, Default)]
struct TaskResult {
    ok: u64,
    incr_ok: u64,
    incr_maybe: u64,
    errors: Vec<String>,
}

/// 50 tasks, each INCRs its own counter and reads it back, until stopped.
fn start_load(redis: &HandoffRetry, tasks: usize) -> Load {
    let stop = Arc::new(AtomicBool::new(false));
    let tasks = (0..tasks)
        .map(|t| {
            let redis = redis.clone();
            let stop = stop.clone();
            tokio::spawn(async move {
                let mut r = TaskResult::default();
                let key = format!("load:{t}");
                while !stop.load(Ordering::Relaxed) {
                    match redis.clone().oneshot(cmd!("INCR", &key)).await {
                        Ok(_) => {
                            r.ok += 1;
                            r.incr_ok += 1;
                        }
                        Err(e) if e.may_have_executed() => {
                            r.incr_maybe += 1;
                            r.errors.push(e.to_string());
                        }
                        Err(e) => r.errors.push(e.to_string()),
                    }
                    match redis.clone().oneshot(cmd!("GET", &key)).await {
                        Ok(_) => r.ok += 1,
                        Err(e) => r.errors.push(e.to_string()),
                    }
                }
                r
            })
        })
        .collect();
    Load { stop, tasks }
}

impl Load {
    async fn finish(self) -> Vec<TaskResult> {
        self.stop.store(true, Ordering::Relaxed);
        let mut out = Vec::new();
        for t in self.tasks {
            out.push(
                tokio::time::timeout(WIDE, t)
                    .await
                    .expect("task hung")
                    .unwrap(),
            );
        }
        out
    }
}

async fn counter(redis: &HandoffRetry, t: usize) -> u64 {
    let r = redis
        .clone()
        .oneshot(cmd!("GET", format!("load:{t}")))
        .await
        .unwrap();
    r.as_i64().unwrap_or(0) as u64
}

async fn wait_for_event(
    events: &mut MaintenanceEvents,
    pred: impl Fn(&EventKind) -> bool,
) -> EventKind {
    tokio::time::timeout(WIDE, async {
        loop {
            match events.recv().await {
                Some(e) if pred(&e.kind) => return e.kind,
                Some(_) => {}
                None => panic!("events ended"),
            }
        }
    })
    .await
    .expect("the event came")
}

fn connector(url: &str) -> Connector {
    Connector::new(ConnectOptions::from_url(url).unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handoff_under_load_switches_with_zero_failed_commands() {
    let server = RedisServer::start();
    let redis = HandoffRetry::connect(
        connector(&server.url()),
        Maintenance::default(),
        HandoffConfig::default(),
    )
    .await
    .unwrap();
    let mut events = redis.events();
    let load = start_load(&redis, 50);
    tokio::time::sleep(Duration::from_millis(300)).await;

    // The same server under another name: a new endpoint with the same data.
    let target = Endpoint::new("localhost", server.port);
    redis.moving(1, Duration::from_secs(15), Some(target.clone()));
    wait_for_event(&mut events, |e| {
        matches!(e, EventKind::HandoffSwitched { .. })
    })
    .await;
    wait_for_event(&mut events, |e| {
        matches!(e, EventKind::HandoffDrained { .. })
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let results = load.finish().await;

    assert_eq!(redis.current_endpoint(), Some(target));
    assert_eq!(redis.configured_endpoint().host(), "127.0.0.1");
    for (t, r) in results.iter().enumerate() {
        assert!(r.errors.is_empty(), "task {t}: {:?}", r.errors);
        assert_eq!(counter(&redis, t).await, r.incr_ok, "task {t}: counter");
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
    let redis = HandoffRetry::connect(connector(&server.url()), maintenance, config)
        .await
        .unwrap();
    let mut events = redis.events();
    let load = start_load(&redis, 50);
    let nobody = Endpoint::new("127.0.0.1", common::free_port());
    redis.moving(1, Duration::from_secs(15), Some(nobody.clone()));
    let failed = wait_for_event(&mut events, |e| {
        matches!(e, EventKind::HandoffFailed { .. })
    })
    .await;
    let results = load.finish().await;
    assert!(matches!(failed, EventKind::HandoffFailed { to, attempts: 3, .. } if to == nobody));
    for (t, r) in results.iter().enumerate() {
        assert!(r.errors.is_empty(), "task {t}: {:?}", r.errors);
        assert_eq!(counter(&redis, t).await, r.incr_ok);
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
    let redis = HandoffRetry::connect(connector(&server.url()), Maintenance::default(), config)
        .await
        .unwrap();
    let mut events = redis.events();
    let load = start_load(&redis, 50);
    tokio::time::sleep(Duration::from_millis(500)).await;
    server.restart();
    wait_for_event(&mut events, |e| matches!(e, EventKind::Reconnected { .. })).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let results = load.finish().await;

    for (t, r) in results.iter().enumerate() {
        let value = counter(&redis, t).await;
        // Acknowledged increments all counted; those whose reply was lost counted at most once.
        assert!(
            value >= r.incr_ok && value <= r.incr_ok + r.incr_maybe,
            "task {t}: value {value}, ok {}, maybe {}",
            r.incr_ok,
            r.incr_maybe
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
    let redis = HandoffRetry::connect(
        connector(&server.url()),
        Maintenance::default(),
        HandoffConfig::default(),
    )
    .await
    .unwrap();
    let mut pushes = redis.pushes();
    let mut events = redis.events();
    redis
        .clone()
        .oneshot(cmd!("SUBSCRIBE", "orders"))
        .await
        .unwrap();
    let publisher = redis_handoff::Connection::connect(&server.url())
        .await
        .unwrap();
    let published = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let pub_task = {
        let published = published.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                publisher.send(cmd!("PUBLISH", "orders", i)).await.unwrap();
                i += 1;
                published.store(i, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            i
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    redis.moving(
        1,
        Duration::from_secs(15),
        Some(Endpoint::new("localhost", server.port)),
    );
    wait_for_event(&mut events, |e| {
        matches!(e, EventKind::HandoffDrained { .. })
    })
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.store(true, Ordering::Relaxed);
    let total = pub_task.await.unwrap();

    let mut seen = std::collections::BTreeSet::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while (seen.len() as u64) < total && tokio::time::Instant::now() < deadline {
        match tokio::time::timeout(Duration::from_secs(5), pushes.recv()).await {
            Ok(Some(redis_handoff::frame::BytesFrame::Push { data, .. })) => {
                if let Some(redis_handoff::frame::BytesFrame::BlobString { data: kind, .. }) =
                    data.first()
                {
                    if &kind[..] == b"message" {
                        if let Some(redis_handoff::frame::BytesFrame::BlobString {
                            data: m, ..
                        }) = data.get(2)
                        {
                            seen.insert(String::from_utf8_lossy(m).parse::<u64>().unwrap());
                        }
                    }
                }
            }
            Ok(Some(_)) => {}
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
