//! MetricsHook and the Metrics handle: exact counts under concurrency against a real
//! redis-server, latency percentiles of known delays, maintenance counts from a simulator
//! scenario, the `metrics` facade export, and the spans and log lines.

mod common;

use common::logs::CapturedLogs;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::RedisServer;
use redis_handoff::maintenance::{Notification, PushOrigin};
use redis_handoff::metrics::{Metrics, MetricsHook, MetricsSnapshot};
use redis_handoff::{cmd, Command, Connection, Endpoint, Error, Maintenance, Reply, ServerError};
use tower::{service_fn, Layer, ServiceBuilder, ServiceExt};

const WIDE: Duration = Duration::from_secs(30);

fn null() -> Reply {
    Reply::from(redis_handoff::frame::BytesFrame::Null)
}

/// Polls the snapshot until `done` holds (at most `WIDE`), then waits a moment more so that a
/// count still growing past its expected value would show.
async fn settled(metrics: &Metrics, done: impl Fn(&MetricsSnapshot) -> bool) -> MetricsSnapshot {
    let deadline = tokio::time::Instant::now() + WIDE;
    loop {
        let s = metrics.snapshot();
        if done(&s) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the counts never settled:\n{s}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    metrics.snapshot()
}

// ===== commands =====

#[derive(Debug, Default, Clone, Copy)]
struct Sent {
    set: u64,
    get: u64,
    incr: u64,
    hset: u64,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn counts_are_exact_after_a_concurrent_workload_against_redis() {
    let server = RedisServer::start();
    let conn = Connection::connect(&server.url()).await.unwrap();
    let metrics = Metrics::new();
    let svc = ServiceBuilder::new()
        .layer(metrics.layer())
        .service(conn.clone());

    let tasks: Vec<_> = (0..16)
        .map(|t| {
            let svc = svc.clone();
            tokio::spawn(async move {
                let mut sent = Sent::default();
                let key = format!("metrics:{t}");
                for i in 0..250 {
                    svc.clone().oneshot(cmd!("SET", &key, i)).await.unwrap();
                    sent.set += 1;
                    svc.clone().oneshot(cmd!("get", &key)).await.unwrap();
                    sent.get += 1;
                    svc.clone()
                        .oneshot(cmd!("INCR", "metrics:total"))
                        .await
                        .unwrap();
                    sent.incr += 1;
                    // A hash command on a string: the server answers WRONGTYPE.
                    let e = svc
                        .clone()
                        .oneshot(cmd!("HSET", &key, "f", "v"))
                        .await
                        .unwrap_err();
                    assert_eq!(e.server_error().map(|e| e.code()), Some("WRONGTYPE"));
                    sent.hset += 1;
                }
                sent
            })
        })
        .collect();
    let mut sent = Sent::default();
    for t in tasks {
        let s = t.await.unwrap();
        sent.set += s.set;
        sent.get += s.get;
        sent.incr += s.incr;
        sent.hset += s.hset;
    }

    let s = metrics.snapshot();
    let o = s.outcomes;
    assert_eq!(o.ok, sent.set + sent.get + sent.incr, "{s}");
    assert_eq!(o.server_error, sent.hset, "{s}");
    assert_eq!(
        o.timeout + o.relaxed_timeout + o.circuit_open + o.connection_lost + o.other_error,
        0
    );
    assert_eq!((o.cancelled, o.retried), (0, 0));
    assert_eq!(o.total(), 4 * 16 * 250);
    assert_eq!(s.latency.count, o.total());
    for (name, n) in [
        ("SET", sent.set),
        ("GET", sent.get),
        ("INCR", sent.incr),
        ("HSET", sent.hset),
    ] {
        assert_eq!(s.command(name).map(|l| l.count), Some(n), "{name}\n{s}");
    }
    assert_eq!(s.by_command.len(), 4, "{s}");
    assert!(s.latency.min > Duration::ZERO && s.latency.p50 <= s.latency.p99);
    // The server saw exactly what the counts say.
    let total = conn.send(cmd!("GET", "metrics:total")).await.unwrap();
    assert_eq!(total.as_i64(), Some(sent.incr as i64));
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Expected {
    ok: u64,
    server: u64,
    timeout: u64,
    relaxed: u64,
    open: u64,
    lost: u64,
    other: u64,
    cancelled: u64,
}

/// A service that answers each command the way its name says.
async fn answer(c: Command) -> Result<Reply, Error> {
    let name = c.name().to_ascii_uppercase();
    let endpoint = || Endpoint::new("db", 6379);
    match name.as_str() {
        "OK" => Ok(null()),
        "ERR" => Err(Error::Server(ServerError::new("ERR no"))),
        "SLOW" => Err(Error::Timeout {
            after: Duration::from_millis(5),
            relaxed: false,
        }),
        "RELAXED" => Err(Error::Timeout {
            after: Duration::from_millis(50),
            relaxed: true,
        }),
        "OPEN" => Err(Error::CircuitOpen {
            endpoint: endpoint(),
            reason: "down".into(),
        }),
        "LOST" => Err(Error::ConnectionLost {
            reason: "reset".into(),
        }),
        "UNSENT" => Err(Error::NotSent {
            reason: "closed".into(),
        }),
        "HANG" => std::future::pending().await,
        // A usage error: counted as "other".
        _ => Err(Error::Config {
            message: "bad argument".into(),
        }),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_outcome_is_counted_once_under_concurrency() {
    let metrics = Metrics::new();
    let svc = ServiceBuilder::new()
        .layer(metrics.layer())
        .service(service_fn(answer));
    let tasks: Vec<_> = (0..12)
        .map(|_| {
            let svc = svc.clone();
            tokio::spawn(async move {
                let mut e = Expected::default();
                for i in 0..200u64 {
                    let name = match i % 10 {
                        0 | 1 => "ok",
                        2 => "ERR",
                        3 => "SLOW",
                        4 => "RELAXED",
                        5 => "OPEN",
                        6 => "LOST",
                        7 => "UNSENT",
                        8 => "BAD",
                        _ => "HANG",
                    };
                    let call = svc.clone().oneshot(Command::new(name));
                    match tokio::time::timeout(Duration::from_millis(1), call).await {
                        Err(_) => e.cancelled += 1,
                        Ok(Ok(_)) => e.ok += 1,
                        Ok(Err(err)) => match err {
                            Error::Server(_) => e.server += 1,
                            Error::Timeout { relaxed: false, .. } => e.timeout += 1,
                            Error::Timeout { relaxed: true, .. } => e.relaxed += 1,
                            Error::CircuitOpen { .. } => e.open += 1,
                            Error::ConnectionLost { .. } | Error::NotSent { .. } => e.lost += 1,
                            _ => e.other += 1,
                        },
                    }
                }
                e
            })
        })
        .collect();
    let mut want = Expected::default();
    for t in tasks {
        let e = t.await.unwrap();
        want.ok += e.ok;
        want.server += e.server;
        want.timeout += e.timeout;
        want.relaxed += e.relaxed;
        want.open += e.open;
        want.lost += e.lost;
        want.other += e.other;
        want.cancelled += e.cancelled;
    }
    assert!(want.ok > 0 && want.cancelled > 0 && want.lost > 0 && want.other > 0);
    metrics.add_retry_source(|| 5);

    let s = metrics.snapshot();
    let o = s.outcomes;
    let got = Expected {
        ok: o.ok,
        server: o.server_error,
        timeout: o.timeout,
        relaxed: o.relaxed_timeout,
        open: o.circuit_open,
        lost: o.connection_lost,
        other: o.other_error,
        cancelled: o.cancelled,
    };
    assert_eq!(got, want, "{s}");
    assert_eq!(o.retried, 5);
    assert_eq!(o.total(), 12 * 200);
    // Cancelled commands have no time: the latencies hold the rest.
    assert_eq!(s.latency.count, o.total() - o.cancelled);
    assert_eq!(s.command("ok").map(|l| l.count), Some(want.ok));
}

#[tokio::test(flavor = "current_thread")]
async fn names_past_the_first_64_share_other() {
    let metrics = Metrics::new();
    let svc = MetricsHook::new(
        service_fn(|_: Command| async { Ok(null()) }),
        metrics.clone(),
    );
    for round in 0..2 {
        for i in 0..100 {
            let name = if round == 0 {
                format!("cmd{i}")
            } else {
                format!("CMD{i}")
            };
            svc.clone().oneshot(Command::new(name)).await.unwrap();
        }
    }
    let s = metrics.snapshot();
    assert_eq!(s.by_command.len(), 65, "{s}");
    for i in 0..64 {
        assert_eq!(s.command(&format!("CMD{i}")).map(|l| l.count), Some(2));
    }
    assert_eq!(s.command("CMD64"), None);
    let other = s.by_command.last().unwrap();
    assert_eq!((other.name.as_str(), other.latency.count), ("other", 72));
    assert_eq!(s.outcomes.ok, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn percentiles_follow_known_injected_latencies() {
    let metrics = Metrics::new();
    // Sleeps for the milliseconds given as the argument.
    let svc = ServiceBuilder::new()
        .layer(metrics.layer())
        .service(service_fn(|c: Command| async move {
            let ms: u64 = std::str::from_utf8(c.arg_at(1).unwrap())
                .unwrap()
                .parse()
                .unwrap();
            tokio::time::sleep(Duration::from_millis(ms)).await;
            Ok::<_, Error>(null())
        }));
    let mut calls = tokio::task::JoinSet::new();
    for i in 0..100 {
        let ms = if i < 80 { 10 } else { 100 };
        calls.spawn(svc.clone().oneshot(cmd!("SLEEP", ms)));
    }
    while let Some(r) = calls.join_next().await {
        r.unwrap().unwrap();
    }

    let l = metrics.snapshot().latency;
    let ms = Duration::from_millis;
    // A sleep never ends early, and the histogram is within 2.5% of what it recorded; above,
    // a wide margin for timer granularity and a busy machine.
    let check = |what: &str, got: Duration, want: Duration, slack: Duration| {
        let low = want.mul_f64(0.975);
        let high = want.mul_f64(1.025) + slack;
        assert!(
            got >= low && got <= high,
            "{what}: {got:?} is not within [{low:?}, {high:?}]"
        );
    };
    assert_eq!(l.count, 100);
    check("min", l.min, ms(10), ms(25));
    check("p50", l.p50, ms(10), ms(25));
    check("p90", l.p90, ms(100), ms(50));
    check("p99", l.p99, ms(100), ms(50));
    check("max", l.max, ms(100), ms(50));
    assert!(l.p50 < ms(50) && l.p90 > ms(90), "{l:?}");
    let h = metrics.command_histogram("sleep").unwrap();
    assert_eq!(h.len(), 100);
}

// ===== maintenance through the simulator =====

#[cfg(feature = "sim")]
mod simulator {
    use super::*;
    use common::events::{handoff_drained, handoff_failed};
    use common::load;
    use common::sim::{handoff_to, moving_until, redis_and_sim};
    use redis_handoff::handoff::{HandoffConfig, HandoffRetry};
    use redis_handoff::maintenance::{EndpointType, MaintenanceEvents};
    use redis_handoff::sim::Simulator;
    use redis_handoff::MaintenanceConfig;

    struct Stack {
        _server: RedisServer,
        sim: Simulator,
        stack: HandoffRetry,
        metrics: Metrics,
        events: MaintenanceEvents,
    }

    async fn stack(nodes: usize) -> Stack {
        let (server, sim) = redis_and_sim(nodes).await;
        let config = MaintenanceConfig::builder()
            .endpoint_type(EndpointType::InternalIp)
            .handoff_timeout(Duration::from_millis(500))
            .post_handoff_relaxed_duration(Duration::from_millis(300))
            .build()
            .unwrap();
        let maintenance = Maintenance::new(config);
        let metrics = Metrics::new();
        metrics.attach(&maintenance);
        let events = maintenance.subscribe();
        let handoff = HandoffConfig {
            backoff_base: Duration::from_millis(20),
            ..HandoffConfig::default()
        };
        let stack = handoff_to(&sim, &maintenance, handoff).await;
        Stack {
            _server: server,
            sim,
            stack,
            metrics,
            events,
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_simulator_scenario_yields_the_expected_notification_and_handoff_counts() {
        let mut s = stack(2).await;
        let svc = s.metrics.layer().layer(s.stack.clone());
        let running = load::start(&svc, 4, "m", Duration::ZERO, Duration::from_millis(2));
        tokio::time::sleep(Duration::from_millis(100)).await;

        s.sim.migrate(0, Duration::from_millis(200)).await.unwrap();
        s.sim.failover(0, Duration::from_millis(200)).await.unwrap();
        // A MIGRATING whose sequence number is not a number: dropped, counted as an error.
        let bad = &b">3\r\n$9\r\nMIGRATING\r\n$3\r\nabc\r\n:5\r\n"[..];
        assert_eq!(s.sim.send_raw(0, bad).unwrap(), 1);
        let grace = Duration::from_secs(2);
        let (moving, _) = moving_until(&s.sim, &mut s.events, (0, 1), grace, handoff_drained).await;
        moving.done().await;
        let outcomes = running.finish().await;
        for o in &outcomes {
            assert!(o.errors.is_empty(), "{:?}", o.errors);
        }
        let ok: u64 = outcomes.iter().map(|o| o.incr_ok + o.get_ok).sum();

        let snap = settled(&s.metrics, |x| {
            let m = &x.maintenance;
            m.total_notifications() >= 5 && m.relaxed_now == 0 && m.connections_closed >= 1
        })
        .await;
        println!("{snap}");
        let m = &snap.maintenance;
        for name in [
            "MIGRATING",
            "MIGRATED",
            "FAILING_OVER",
            "FAILED_OVER",
            "MOVING",
        ] {
            assert_eq!(m.notifications(name), 1, "{name}\n{snap}");
        }
        assert_eq!(m.total_notifications(), 5, "{snap}");
        assert!(m.notifications.iter().all(|n| n.applied == n.received));
        assert_eq!((m.duplicates, m.skipped, m.errors), (0, 0, 1), "{snap}");
        assert_eq!(m.processing.count, 5);
        assert_eq!(
            (m.handoffs_started, m.handoffs_succeeded, m.handoffs_failed),
            (1, 1, 0),
            "{snap}"
        );
        assert_eq!(m.handoff_duration.count, 1);
        assert_eq!(m.failed_handoff_duration.count, 0);
        // Relaxed by the migration, the failover and the MOVING (until 300 ms after the switch).
        assert_eq!((m.relaxations, m.relaxed_now), (3, 0), "{snap}");
        assert!(m.time_relaxed >= Duration::from_millis(650), "{snap}");
        // The first connection and the handoff's; the old one drained and closed.
        assert_eq!(
            (m.connections_opened, m.connections_closed),
            (2, 1),
            "{snap}"
        );
        assert_eq!((m.reconnects, m.reconnect_failures), (0, 0));
        // Every command answered, none failed; nothing needed a retry.
        let o = snap.outcomes;
        assert_eq!((o.ok, o.errors(), o.cancelled), (ok, 0, 0), "{snap}");
        assert_eq!(o.retried, s.stack.stats().retried);
        assert_eq!(s.stack.stats().handoffs, 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failed_handoff_is_counted_with_its_duration() {
        let mut s = stack(2).await;
        s.sim.refuse(1).unwrap();
        let grace = Duration::from_secs(30);
        let (moving, _) = moving_until(&s.sim, &mut s.events, (0, 1), grace, handoff_failed).await;
        let snap = settled(&s.metrics, |x| x.maintenance.handoffs_failed >= 1).await;
        moving.abort();
        let m = &snap.maintenance;
        assert_eq!(m.notifications("MOVING"), 1, "{snap}");
        assert_eq!(
            (m.handoffs_started, m.handoffs_succeeded, m.handoffs_failed),
            (1, 0, 1),
            "{snap}"
        );
        assert_eq!(m.failed_handoff_duration.count, 1);
        assert_eq!(m.handoff_duration.count, 0);
        assert_eq!(m.connections_opened, 1, "{snap}");
        // The MOVING keeps timeouts relaxed for its grace period.
        assert_eq!((m.relaxations, m.relaxed_now), (1, 1));
        assert_eq!(s.stack.stats().handoffs_failed, 1);
    }
}

// ===== the metrics facade =====

#[cfg(feature = "metrics")]
mod facade {
    use super::*;
    use ::metrics::{
        Counter, CounterFn, Gauge, GaugeFn, Histogram, HistogramFn, Key, KeyName, Metadata,
        Recorder, SharedString, Unit,
    };
    use std::collections::HashMap;

    /// A recorder that keeps everything, by name and sorted labels.
    #[derive(Default)]
    struct Store {
        counters: Mutex<HashMap<String, Arc<Value>>>,
        gauges: Mutex<HashMap<String, Arc<Value>>>,
        histograms: Mutex<HashMap<String, Arc<Values>>>,
    }

    #[derive(Default)]
    struct Value(Mutex<f64>);
    #[derive(Default)]
    struct Values(Mutex<Vec<f64>>);

    impl CounterFn for Value {
        fn increment(&self, value: u64) {
            *self.0.lock().unwrap() += value as f64;
        }
        fn absolute(&self, value: u64) {
            *self.0.lock().unwrap() = value as f64;
        }
    }

    impl GaugeFn for Value {
        fn increment(&self, value: f64) {
            *self.0.lock().unwrap() += value;
        }
        fn decrement(&self, value: f64) {
            *self.0.lock().unwrap() -= value;
        }
        fn set(&self, value: f64) {
            *self.0.lock().unwrap() = value;
        }
    }

    impl HistogramFn for Values {
        fn record(&self, value: f64) {
            self.0.lock().unwrap().push(value);
        }
    }

    fn text(key: &Key) -> String {
        let mut labels: Vec<String> = key
            .labels()
            .map(|l| format!("{}={}", l.key(), l.value()))
            .collect();
        labels.sort();
        format!("{}{{{}}}", key.name(), labels.join(","))
    }

    impl Recorder for Store {
        fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

        fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
            let mut c = self.counters.lock().unwrap();
            Counter::from_arc(c.entry(text(key)).or_default().clone())
        }

        fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
            let mut g = self.gauges.lock().unwrap();
            Gauge::from_arc(g.entry(text(key)).or_default().clone())
        }

        fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
            let mut h = self.histograms.lock().unwrap();
            Histogram::from_arc(h.entry(text(key)).or_default().clone())
        }
    }

    impl Store {
        fn counter(&self, key: &str) -> f64 {
            self.counters
                .lock()
                .unwrap()
                .get(key)
                .map_or(0.0, |v| *v.0.lock().unwrap())
        }

        fn gauge(&self, key: &str) -> Option<f64> {
            self.gauges
                .lock()
                .unwrap()
                .get(key)
                .map(|v| *v.0.lock().unwrap())
        }

        fn histogram(&self, key: &str) -> Vec<f64> {
            self.histograms
                .lock()
                .unwrap()
                .get(key)
                .map_or_else(Vec::new, |v| v.0.lock().unwrap().clone())
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn export_hands_new_values_to_the_metrics_facade_under_otel_names() {
        let metrics = Metrics::new();
        let maintenance = Maintenance::default();
        metrics.attach(&maintenance);
        let svc = ServiceBuilder::new()
            .layer(metrics.layer())
            .service(service_fn(answer));
        for _ in 0..5 {
            svc.clone().oneshot(cmd!("OK")).await.unwrap();
        }
        for _ in 0..2 {
            svc.clone().oneshot(cmd!("ERR")).await.unwrap_err();
        }
        let origin = PushOrigin::new(Endpoint::new("db", 6379));
        let moving = Notification::Moving {
            seq: 9,
            time: Duration::from_secs(15),
            endpoint: None,
        };
        maintenance.process_push(&origin, &moving.to_push());
        settled(&metrics, |s| s.maintenance.relaxed_now == 1).await;

        let store = Store::default();
        ::metrics::with_local_recorder(&store, || metrics.export());
        let ok = "db.client.operation.duration{db.operation.name=OK,db.system.name=redis}";
        let err = "db.client.operation.duration{db.operation.name=ERR,db.system.name=redis}";
        assert_eq!(store.histogram(ok).len(), 5);
        assert!(store.histogram(ok).iter().all(|&v| v > 0.0 && v < 1.0));
        assert_eq!(store.histogram(err).len(), 2);
        let server_errors = "redis.client.errors{db.system.name=redis,error.type=server_error}";
        assert_eq!(store.counter(server_errors), 2.0);
        assert_eq!(
            store.counter(
                "redis.client.maintenance.notifications{redis.client.connection.notification=MOVING}"
            ),
            1.0
        );
        assert_eq!(
            store.gauge("redis.client.connection.relaxed_timeout{}"),
            Some(1.0)
        );
        assert_eq!(store.counter("redis.client.connection.handoff{}"), 0.0);
        assert_eq!(
            store
                .histogram("redis.client.maintenance.notification.duration{}")
                .len(),
            1
        );

        // A second export hands over only what is new.
        for _ in 0..3 {
            svc.clone().oneshot(cmd!("OK")).await.unwrap();
        }
        ::metrics::with_local_recorder(&store, || metrics.export());
        assert_eq!(store.histogram(ok).len(), 8);
        assert_eq!(store.counter(server_errors), 2.0);
        assert_eq!(
            store.counter(
                "redis.client.maintenance.notifications{redis.client.connection.notification=MOVING}"
            ),
            1.0
        );
    }
}

// ===== spans and logs =====

fn init_logging() {
    common::logs::init("redis_handoff::metrics=debug", true);
}

#[tokio::test(flavor = "current_thread")]
async fn each_command_has_a_debug_span_with_its_name_and_outcome_and_events_log_at_info() {
    init_logging();
    let logs = CapturedLogs::start();
    let metrics = Metrics::new();
    let maintenance = Maintenance::default();
    metrics.attach(&maintenance);
    let svc = ServiceBuilder::new()
        .layer(metrics.layer())
        .service(service_fn(answer));
    svc.clone().oneshot(cmd!("OK")).await.unwrap();
    svc.clone().oneshot(cmd!("ERR")).await.unwrap_err();

    let origin = PushOrigin::new(Endpoint::new("db", 6379));
    let migrating = Notification::Migrating {
        seq: 3,
        time: Duration::from_secs(5),
        shards: vec![],
    };
    maintenance.process_push(&origin, &migrating.to_push());
    settled(&metrics, |s| s.maintenance.relaxations == 1).await;

    let lines = logs.lines();
    let span = |command: &str, outcome: &str| {
        lines.iter().any(|l| {
            l.contains("DEBUG")
                && l.contains("redis.command{")
                && l.contains(&format!("command=\"{command}\""))
                && l.contains(&format!("outcome=\"{outcome}\""))
                && l.contains("close")
        })
    };
    assert!(span("OK", "ok"), "{lines:#?}");
    assert!(span("ERR", "server_error"), "{lines:#?}");
    assert!(
        lines.iter().any(|l| l.contains(" INFO ")
            && l.contains("maintenance event")
            && l.contains("event=\"notification\"")
            && l.contains("Migrating")),
        "{lines:#?}"
    );
}

#[test]
fn the_metrics_handle_counts_across_clones_and_threads_without_a_runtime() {
    let metrics = Metrics::new();
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let svc = metrics
                .layer()
                .layer(service_fn(|_: Command| async { Ok::<_, Error>(null()) }));
            std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .build()
                    .unwrap();
                rt.block_on(async {
                    for _ in 0..1000 {
                        svc.clone().oneshot(cmd!("PING")).await.unwrap();
                    }
                })
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let s = metrics.snapshot();
    assert_eq!((s.outcomes.ok, s.outcomes.total()), (4000, 4000));
    assert_eq!(s.command("PING").map(|l| l.count), Some(4000));
    assert_eq!(s.latency.count, 4000);
}
