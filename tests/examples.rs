//! The examples' own code (each example file is compiled in here as a module), driven through the
//! maintenance simulator in front of a real redis-server.

mod common;

#[allow(dead_code)]
#[path = "../examples/axum_app.rs"]
mod axum_app;
#[allow(dead_code)]
#[path = "../examples/azure_events.rs"]
mod azure_events;
#[allow(dead_code)]
#[path = "../examples/custom_hook.rs"]
mod custom_hook;
#[allow(dead_code)]
#[path = "../examples/tonic_service.rs"]
mod tonic_service;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::events::{handoff_drained, handoff_switched, next_event};
use common::sim::redis_and_sim;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use redis_handoff::maintenance::{AzureEventKind, MaintenanceEvents, NotificationKind};
use redis_handoff::sim::{self, Scope, Simulator};
use redis_handoff::{cmd, ConnectOptions, EventKind, Notification, Stack};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tower::ServiceExt;

/// A bound that only a hang reaches.
const WIDE: Duration = Duration::from_secs(30);
/// Concurrent clients of the HTTP and gRPC apps.
const CLIENTS: usize = 20;

fn options(sim: &Simulator) -> ConnectOptions {
    ConnectOptions::from_url(&sim.node(0).url()).unwrap()
}

/// Moves the stack's endpoint from node 0 to node 1 while the clients run, and waits until the
/// old node has closed its connections: `MOVING` with a 2 s grace period, the stack's switch
/// and drain, then the end of the grace period.
async fn move_endpoint(sim: &Simulator, events: &mut MaintenanceEvents) {
    tokio::time::sleep(Duration::from_millis(300)).await;
    let moving = sim.moving(0, 1, Duration::from_secs(2)).await.unwrap();
    assert_eq!(
        moving.recipients(),
        1,
        "the stack's connection heard MOVING"
    );
    next_event(events, handoff_switched).await;
    next_event(events, handoff_drained).await;
    moving.done().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
}

/// What one client did: its successful increments, and every call that did not succeed.
#[derive(Debug, Default)]
struct Tally {
    hits: i64,
    counts: u64,
    failures: Vec<String>,
}

struct Clients {
    stop: Arc<AtomicBool>,
    tasks: Vec<JoinHandle<Tally>>,
}

impl Clients {
    async fn finish(self) -> Vec<Tally> {
        self.stop.store(true, Ordering::Relaxed);
        let mut out = Vec::new();
        for t in self.tasks {
            out.push(
                tokio::time::timeout(WIDE, t)
                    .await
                    .expect("a client hung")
                    .unwrap(),
            );
        }
        out
    }
}

fn assert_all_succeeded(tallies: &[Tally]) {
    for (c, t) in tallies.iter().enumerate() {
        assert!(t.failures.is_empty(), "client {c}: {:?}", t.failures);
        assert!(t.hits > 0 && t.counts > 0, "client {c} made no progress");
    }
}

// ===== axum_app =====

type HttpClient = Client<HttpConnector, Empty<Bytes>>;

/// One request; its status and body.
async fn request(client: &HttpClient, method: &str, url: &str) -> Result<(u16, Bytes), String> {
    let req = http::Request::builder()
        .method(method)
        .uri(url)
        .body(Empty::new())
        .map_err(|e| e.to_string())?;
    let call = async {
        let res = client.request(req).await.map_err(|e| e.to_string())?;
        let status = res.status().as_u16();
        let body = res.into_body().collect().await.map_err(|e| e.to_string())?;
        Ok((status, body.to_bytes()))
    };
    tokio::time::timeout(WIDE, call)
        .await
        .map_err(|_| format!("{method} {url}: no answer"))?
}

fn visits(body: &Bytes) -> i64 {
    let json: serde_json::Value = serde_json::from_slice(body).expect("a JSON body");
    json["visits"].as_i64().expect("a visits count")
}

fn start_http_clients(addr: SocketAddr) -> Clients {
    let stop = Arc::new(AtomicBool::new(false));
    let tasks = (0..CLIENTS)
        .map(|c| {
            let stop = stop.clone();
            tokio::spawn(async move {
                let client: HttpClient = Client::builder(TokioExecutor::new()).build_http();
                let url = format!("http://{addr}/visits/axum-{c}");
                let mut t = Tally::default();
                tokio::time::sleep(Duration::from_millis(5 * c as u64)).await;
                while !stop.load(Ordering::Relaxed) {
                    match request(&client, "POST", &url).await {
                        Ok((200, _)) => t.hits += 1,
                        Ok((status, body)) => t
                            .failures
                            .push(format!("POST {status}: {}", String::from_utf8_lossy(&body))),
                        Err(e) => t.failures.push(e),
                    }
                    match request(&client, "GET", &url).await {
                        Ok((200, _)) => t.counts += 1,
                        Ok((status, body)) => t
                            .failures
                            .push(format!("GET {status}: {}", String::from_utf8_lossy(&body))),
                        Err(e) => t.failures.push(e),
                    }
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                t
            })
        })
        .collect();
    Clients { stop, tasks }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn axum_app_answers_every_request_with_200_while_the_endpoint_moves() {
    let (_server, sim) = redis_and_sim(2).await;
    let stack = Stack::builder(options(&sim)).connect().await.unwrap();
    let mut events = stack.maintenance().subscribe();

    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum_app::app(stack.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });

    let clients = start_http_clients(addr);
    move_endpoint(&sim, &mut events).await;
    let tallies = clients.finish().await;

    assert_all_succeeded(&tallies);
    // Every acknowledged visit was counted once, as the app itself reports.
    let client: HttpClient = Client::builder(TokioExecutor::new()).build_http();
    for (c, t) in tallies.iter().enumerate() {
        let url = format!("http://{addr}/visits/axum-{c}");
        let (status, body) = request(&client, "GET", &url).await.unwrap();
        assert_eq!(status, 200);
        assert_eq!(visits(&body), t.hits, "client {c}");
    }
    let (status, body) = request(&client, "GET", &format!("http://{addr}/healthz"))
        .await
        .unwrap();
    assert_eq!((status, &body[..]), (200, &b"ok"[..]));
    assert_eq!(
        stack.handoff().current_endpoint(),
        Some(sim.node(1).endpoint())
    );
    assert_eq!(stack.handoff().stats().handoffs, 1);
}

// ===== tonic_service =====

fn start_grpc_clients(addr: SocketAddr) -> Clients {
    let stop = Arc::new(AtomicBool::new(false));
    let tasks = (0..CLIENTS)
        .map(|c| {
            let stop = stop.clone();
            tokio::spawn(async move {
                let mut t = Tally::default();
                let mut client =
                    match tonic_service::VisitsClient::connect(format!("http://{addr}")).await {
                        Ok(client) => client,
                        Err(e) => {
                            t.failures.push(format!("connect: {e}"));
                            return t;
                        }
                    };
                let page = format!("tonic-{c}");
                tokio::time::sleep(Duration::from_millis(5 * c as u64)).await;
                while !stop.load(Ordering::Relaxed) {
                    match tokio::time::timeout(WIDE, client.hit(&page)).await {
                        Ok(Ok(_)) => t.hits += 1,
                        Ok(Err(status)) => t.failures.push(format!("Hit: {status}")),
                        Err(_) => t.failures.push("Hit: no answer".into()),
                    }
                    match tokio::time::timeout(WIDE, client.count(&page)).await {
                        Ok(Ok(_)) => t.counts += 1,
                        Ok(Err(status)) => t.failures.push(format!("Count: {status}")),
                        Err(_) => t.failures.push("Count: no answer".into()),
                    }
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                t
            })
        })
        .collect();
    Clients { stop, tasks }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tonic_service_answers_every_call_with_ok_while_the_endpoint_moves() {
    let (_server, sim) = redis_and_sim(2).await;
    let stack = Stack::builder(options(&sim)).connect().await.unwrap();
    let mut events = stack.maintenance().subscribe();

    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let service = tonic_service::service(stack.clone());
    let (shutdown, stopped) = tokio::sync::oneshot::channel::<()>();
    let grpc = tokio::spawn(tonic_service::serve(listener, service, async {
        let _ = stopped.await;
    }));

    let clients = start_grpc_clients(addr);
    move_endpoint(&sim, &mut events).await;
    let tallies = clients.finish().await;

    assert_all_succeeded(&tallies);
    let mut client = tonic_service::VisitsClient::connect(format!("http://{addr}"))
        .await
        .unwrap();
    for (c, t) in tallies.iter().enumerate() {
        let counted = client.count(&format!("tonic-{c}")).await.unwrap();
        assert_eq!(counted, t.hits, "client {c}");
    }
    assert_eq!(
        stack.handoff().current_endpoint(),
        Some(sim.node(1).endpoint())
    );
    assert_eq!(stack.handoff().stats().handoffs, 1);
    let _ = shutdown.send(());
    tokio::time::timeout(WIDE, grpc)
        .await
        .expect("the server stops")
        .unwrap()
        .unwrap();
}

// ===== custom_hook =====

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_hook_layer_sees_every_command_and_the_hook_skips_failing_over() {
    let (_server, sim) = redis_and_sim(1).await;
    let app = custom_hook::build(options(&sim)).unwrap();
    let mut events = app.maintenance.subscribe();
    app.redis.clone().oneshot(cmd!("PING")).await.unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..10)
        .map(|w| {
            let redis = app.redis.clone();
            let stop = stop.clone();
            tokio::spawn(async move {
                let key = format!("custom_hook:{w}");
                let (mut sent, mut failures) = (0u64, Vec::new());
                while !stop.load(Ordering::Relaxed) {
                    for command in [cmd!("SET", &key, sent), cmd!("GET", &key)] {
                        sent += 1;
                        if let Err(e) = redis.clone().oneshot(command).await {
                            failures.push(e.to_string());
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                (sent, failures)
            })
        })
        .collect();

    tokio::time::sleep(Duration::from_millis(200)).await;
    sim.migrate(0, Duration::from_millis(500)).await.unwrap();
    sim.failover(0, Duration::from_millis(300)).await.unwrap();
    // FAILED_OVER is not skipped, and comes after FAILING_OVER on the same connection.
    let mut seen = Vec::new();
    tokio::time::timeout(WIDE, async {
        while let Some(e) = events.recv().await {
            let last = matches!(
                e.kind,
                EventKind::Notification(Notification::FailedOver { .. })
            );
            seen.push(e.kind);
            if last {
                break;
            }
        }
    })
    .await
    .expect("FAILED_OVER came");
    tokio::time::sleep(Duration::from_millis(100)).await;
    stop.store(true, Ordering::Relaxed);
    let mut sent = 1; // the PING
    for w in workers {
        let (n, failures) = tokio::time::timeout(WIDE, w).await.unwrap().unwrap();
        assert!(failures.is_empty(), "{failures:?}");
        sent += n;
    }

    // The user's layer saw every command; the migration's added latency made some slow.
    assert_eq!(app.slow_log.commands(), sent);
    assert!(app.slow_log.slow() >= 1, "no command was slow");
    // The hook logged the MIGRATING and skipped the FAILING_OVER.
    let counts = app.maintenance.counts();
    assert_eq!(app.hook.migrations(), 1);
    assert_eq!(counts.notifications(NotificationKind::Migrating), 1);
    assert_eq!(counts.notifications(NotificationKind::FailingOver), 1);
    assert_eq!(counts.skipped(), 1);
    // A skipped notification publishes no event; the others do.
    let published = |pred: fn(&Notification) -> bool| {
        seen.iter()
            .any(|k| matches!(k, EventKind::Notification(n) if pred(n)))
    };
    assert!(
        published(|n| matches!(n, Notification::Migrating { .. })),
        "{seen:?}"
    );
    assert!(
        !published(|n| matches!(n, Notification::FailingOver { .. })),
        "{seen:?}"
    );
}

// ===== azure_events =====

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn azure_events_app_observes_each_event_in_order_and_reacts() {
    let (_server, sim) = redis_and_sim(1).await;
    let stack = Stack::builder(options(&sim))
        .maintenance(azure_events::config().unwrap())
        .connect()
        .await
        .unwrap();
    let mut events = stack.maintenance().subscribe();
    let worker = azure_events::Worker::default();
    let mut reactions = azure_events::watch(&stack, worker.clone());
    tokio::spawn(worker.clone().run(stack.clone(), Duration::from_millis(20)));

    let mut observed = Vec::new();
    for kind in [
        sim::AzureEventKind::Scheduled,
        sim::AzureEventKind::Starting,
        sim::AzureEventKind::Start,
        sim::AzureEventKind::FailoverComplete,
        sim::AzureEventKind::Ended,
    ] {
        let refresh = kind == sim::AzureEventKind::FailoverComplete;
        let sent = sim.azure(Scope::All, &sim::AzureEvent::new(kind)).unwrap();
        assert!(sent >= 1, "the stack's connection is subscribed");
        let reaction = tokio::time::timeout(WIDE, reactions.recv())
            .await
            .expect("the app reacted")
            .expect("the watcher runs");
        observed.push(reaction);
        if refresh {
            next_event(&mut events, handoff_switched).await;
        }
    }

    use azure_events::Action;
    let expected = [
        (AzureEventKind::NodeMaintenanceScheduled, Action::Logged),
        (
            AzureEventKind::NodeMaintenanceStarting,
            Action::Relaxed(true),
        ),
        (AzureEventKind::NodeMaintenanceStart, Action::Paused),
        (
            AzureEventKind::NodeMaintenanceFailoverComplete,
            Action::Resumed,
        ),
        (AzureEventKind::NodeMaintenanceEnded, Action::Normal),
    ];
    let observed: Vec<_> = observed.into_iter().map(|r| (r.kind, r.action)).collect();
    assert_eq!(observed, expected);
    assert!(!worker.is_paused());
    assert_eq!(stack.handoff().stats().handoffs, 1);
    // The app wrote through the refresh, and the stack still serves it.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (written, _) = worker.tally();
    assert!(written > 0);
    let beats = stack
        .clone()
        .oneshot(cmd!("GET", "azure_events:heartbeats"))
        .await
        .unwrap();
    assert!(beats.as_i64().unwrap_or(0) >= written as i64);
    assert!(
        reactions.try_recv().is_err(),
        "no event was reacted to twice"
    );
}
