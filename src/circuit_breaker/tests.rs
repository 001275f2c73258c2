//! Unit tests of `circuit_breaker`.

use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::time::SystemTime;

use redis_protocol::resp3::types::BytesFrame;
use tower::{service_fn, ServiceExt};

use super::*;
use crate::command::Command;
use crate::error::ServerError;
use crate::maintenance::{
    AzureEvent, AzureEventKind, EventKind, MaintenanceEvent, MaintenanceEvents,
};
use crate::reply::Reply;

const OK: u8 = 0;
const DOWN: u8 = 1;
const WRONGTYPE: u8 = 2;

/// An in-process backend whose answer is switched by hand, counting the commands it gets.
#[derive(Clone, Default)]
struct Backend {
    calls: Arc<AtomicUsize>,
    answer: Arc<AtomicU8>,
}

impl Backend {
    fn set(&self, answer: u8) {
        self.answer.store(answer, Ordering::SeqCst);
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    fn service(
        &self,
    ) -> impl Service<Command, Response = Reply, Error = Error, Future: Send> + Clone + Send {
        let this = self.clone();
        service_fn(move |_: Command| {
            this.calls.fetch_add(1, Ordering::SeqCst);
            std::future::ready(match this.answer.load(Ordering::SeqCst) {
                OK => Ok(Reply::from(BytesFrame::Null)),
                DOWN => Err(Error::NotSent {
                    reason: "connection refused".into(),
                }),
                _ => Err(Error::Server(ServerError::new(
                    "WRONGTYPE Operation against a key holding the wrong kind of value",
                ))),
            })
        })
    }
}

fn endpoint() -> Endpoint {
    Endpoint::new("10.0.0.1", 6379)
}

fn breaker(
    config: CircuitBreakerConfig,
) -> (
    Maintenance,
    Backend,
    CircuitBreaker<
        impl Service<Command, Response = Reply, Error = Error, Future: Send> + Clone + Send,
    >,
) {
    let maintenance = Maintenance::default();
    let backend = Backend::default();
    let svc = CircuitBreaker::new(backend.service(), maintenance.clone(), endpoint(), config);
    (maintenance, backend, svc)
}

fn config() -> CircuitBreakerConfig {
    CircuitBreakerConfig {
        consecutive_failures: 3,
        open_wait: Duration::from_millis(50),
        ..CircuitBreakerConfig::default()
    }
}

async fn send<S>(svc: &S) -> Result<Reply, Error>
where
    S: Service<Command, Response = Reply, Error = Error> + Clone,
{
    svc.clone().oneshot(Command::new("PING")).await
}

fn spawn_send<S>(svc: &S) -> tokio::task::JoinHandle<Result<Reply, Error>>
where
    S: Service<Command, Response = Reply, Error = Error> + Clone + Send + 'static,
    S::Future: Send,
{
    let svc = svc.clone();
    tokio::spawn(async move { svc.oneshot(Command::new("PING")).await })
}

async fn next(events: &mut MaintenanceEvents, name: &str) -> EventKind {
    tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match events.recv().await {
                Some(e) if e.kind.name() == name => return e.kind,
                Some(_) => {}
                None => panic!("no more events"),
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no {name} event"))
}

fn azure(maintenance: &Maintenance, kind: AzureEventKind) {
    maintenance.emit(MaintenanceEvent::new(
        endpoint(),
        EventKind::Azure(AzureEvent::new(kind, SystemTime::now())),
    ));
}

fn handoff(maintenance: &Maintenance, kind: EventKind) {
    maintenance.emit(MaintenanceEvent::new(endpoint(), kind));
}

#[tokio::test]
async fn consecutive_failures_open_it_and_then_it_fails_fast_without_calling_inner() {
    let (maintenance, backend, svc) = breaker(config());
    let mut events = maintenance.subscribe();
    backend.set(DOWN);
    for _ in 0..3 {
        assert!(matches!(send(&svc).await, Err(Error::NotSent { .. })));
    }
    let EventKind::CircuitOpened { reason } = next(&mut events, "circuit_opened").await else {
        unreachable!()
    };
    assert!(
        reason.contains("3 connection failures in a row"),
        "{reason}"
    );
    for _ in 0..10 {
        match send(&svc).await {
            Err(Error::CircuitOpen {
                endpoint: e,
                reason: r,
            }) => {
                assert_eq!(e, endpoint());
                assert_eq!(r, reason);
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(backend.calls(), 3);
    let stats = svc.handle().stats();
    assert_eq!((stats.opened, stats.rejected), (1, 10));
}

#[tokio::test]
async fn a_success_ends_the_run_of_failures() {
    let (_m, backend, svc) = breaker(CircuitBreakerConfig {
        failure_rate: 0.0,
        ..config()
    });
    for _ in 0..10 {
        backend.set(DOWN);
        let _ = send(&svc).await;
        let _ = send(&svc).await;
        backend.set(OK);
        assert!(send(&svc).await.is_ok());
    }
    assert_eq!(svc.handle().state(), CircuitState::Closed);
    assert_eq!(svc.handle().stats().consecutive_failures, 0);
}

#[tokio::test]
async fn a_failure_rate_over_the_window_opens_it() {
    let (_m, backend, svc) = breaker(CircuitBreakerConfig {
        consecutive_failures: 0,
        minimum_calls: 10,
        failure_rate: 0.5,
        ..config()
    });
    for i in 0..9 {
        backend.set(if i % 2 == 0 { DOWN } else { OK });
        let _ = send(&svc).await;
    }
    // 5 of 9: under the minimum number of calls.
    assert_eq!(svc.handle().state(), CircuitState::Closed);
    backend.set(OK);
    let _ = send(&svc).await;
    backend.set(DOWN);
    let _ = send(&svc).await;
    // 6 of 11.
    assert_eq!(svc.handle().state(), CircuitState::Open);
    let reason = svc.handle().open_reason().unwrap();
    assert!(reason.contains("6 of the last 11 calls failed"), "{reason}");
}

#[tokio::test]
async fn server_errors_never_count() {
    let (_m, backend, svc) = breaker(CircuitBreakerConfig {
        minimum_calls: 1,
        ..config()
    });
    backend.set(WRONGTYPE);
    for _ in 0..100 {
        assert!(matches!(send(&svc).await, Err(Error::Server(_))));
    }
    let stats = svc.handle().stats();
    assert_eq!(stats.state, CircuitState::Closed);
    assert_eq!((stats.window_calls, stats.window_failures), (100, 0));
    assert_eq!((stats.consecutive_failures, stats.opened), (0, 0));
}

#[tokio::test]
async fn a_probe_failure_reopens_for_longer_and_a_probe_success_closes_it() {
    let (maintenance, backend, svc) = breaker(config());
    let mut events = maintenance.subscribe();
    backend.set(DOWN);
    for _ in 0..3 {
        let _ = send(&svc).await;
    }
    next(&mut events, "circuit_opened").await;
    next(&mut events, "circuit_half_open").await;
    assert_eq!(svc.handle().state(), CircuitState::HalfOpen);
    assert!(matches!(send(&svc).await, Err(Error::NotSent { .. })));
    let EventKind::CircuitOpened { reason } = next(&mut events, "circuit_opened").await else {
        unreachable!()
    };
    assert!(reason.contains("probe failed"), "{reason}");
    let until = svc.shared.open_until(svc.shared.word()).unwrap();
    assert!(
        until > Instant::now() + Duration::from_millis(60),
        "the wait doubled"
    );
    next(&mut events, "circuit_half_open").await;
    backend.set(OK);
    assert!(send(&svc).await.is_ok());
    assert!(matches!(
        next(&mut events, "circuit_closed").await,
        EventKind::CircuitClosed { open_for } if open_for >= Duration::from_millis(100)
    ));
    assert_eq!(svc.handle().state(), CircuitState::Closed);
    assert_eq!(backend.calls(), 5);
    assert_eq!(svc.handle().stats().probes, 2);
}

#[tokio::test]
async fn a_probe_slot_taken_in_poll_ready_is_given_back_when_the_call_never_comes() {
    let (_m, backend, svc) = breaker(CircuitBreakerConfig {
        open_wait: Duration::from_millis(1),
        max_open_wait: Duration::from_millis(1),
        ..config()
    });
    backend.set(DOWN);
    for _ in 0..3 {
        let _ = send(&svc).await;
    }
    tokio::time::sleep(Duration::from_millis(5)).await;
    let mut first = svc.clone();
    first.ready().await.unwrap();
    assert!(matches!(first.gate.ready, Ready::Probe(_)));
    // The only slot is taken: another command fails fast.
    assert!(matches!(send(&svc).await, Err(Error::CircuitOpen { .. })));
    drop(first);
    backend.set(OK);
    assert!(send(&svc).await.is_ok());
    assert_eq!(svc.handle().state(), CircuitState::Closed);
}

#[tokio::test]
async fn a_dropped_probe_gives_its_slot_back() {
    let layer = CircuitBreakerLayer::new(
        Maintenance::default(),
        endpoint(),
        CircuitBreakerConfig {
            open_wait: Duration::from_millis(1),
            max_open_wait: Duration::from_millis(1),
            ..config()
        },
    );
    let circuit = layer.handle();
    let backend = Backend::default();
    let svc = tower::Layer::layer(&layer, backend.service());
    let never = tower::Layer::layer(
        &layer,
        service_fn(|_: Command| std::future::pending::<Result<Reply, Error>>()),
    );
    backend.set(DOWN);
    for _ in 0..3 {
        let _ = send(&svc).await;
    }
    tokio::time::sleep(Duration::from_millis(5)).await;
    let probe = send(&never);
    assert!(tokio::time::timeout(Duration::from_millis(20), probe)
        .await
        .is_err());
    assert_eq!(circuit.state(), CircuitState::HalfOpen);
    backend.set(OK);
    assert!(send(&svc).await.is_ok());
    assert_eq!(circuit.state(), CircuitState::Closed);
}

#[tokio::test]
async fn wait_mode_holds_commands_until_the_circuit_closes() {
    let (maintenance, backend, svc) = breaker(CircuitBreakerConfig {
        mode: OpenMode::Wait {
            max: Duration::from_secs(10),
        },
        ..config()
    });
    let mut events = maintenance.subscribe();
    azure(&maintenance, AzureEventKind::NodeMaintenanceStart);
    next(&mut events, "circuit_opened").await;
    let held: Vec<_> = (0..5).map(|_| spawn_send(&svc)).collect();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(backend.calls(), 0);
    assert_eq!(svc.handle().stats().held, 5);
    azure(
        &maintenance,
        AzureEventKind::NodeMaintenanceFailoverComplete,
    );
    for h in held {
        assert!(h.await.unwrap().is_ok());
    }
    assert_eq!(backend.calls(), 5);
    assert_eq!(svc.handle().stats().rejected, 0);
}

#[tokio::test]
async fn wait_mode_gives_up_after_its_bound() {
    let (_m, backend, svc) = breaker(CircuitBreakerConfig {
        mode: OpenMode::Wait {
            max: Duration::from_millis(100),
        },
        ..config()
    });
    svc.handle().force_open("drill");
    let started = Instant::now();
    match send(&svc).await {
        Err(Error::CircuitOpen { reason, .. }) => {
            assert!(reason.starts_with("drill; still not closed"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
    assert!(started.elapsed() >= Duration::from_millis(100));
    assert_eq!(backend.calls(), 0);
}

#[tokio::test]
async fn an_open_circuit_holds_commands_while_a_handoff_switches() {
    let (maintenance, backend, svc) = breaker(config());
    let mut events = maintenance.subscribe();
    azure(&maintenance, AzureEventKind::NodeMaintenanceStart);
    next(&mut events, "circuit_opened").await;
    assert!(matches!(send(&svc).await, Err(Error::CircuitOpen { .. })));
    handoff(
        &maintenance,
        EventKind::HandoffStarted {
            from: endpoint(),
            to: Endpoint::new("10.0.0.2", 6379),
            seq: Some(1),
        },
    );
    next(&mut events, "handoff_started").await;
    let held = spawn_send(&svc);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!held.is_finished());
    handoff(
        &maintenance,
        EventKind::HandoffSwitched {
            from: endpoint(),
            to: Endpoint::new("10.0.0.2", 6379),
        },
    );
    assert!(held.await.unwrap().is_ok());
    assert_eq!(svc.handle().state(), CircuitState::Closed);
    assert_eq!(backend.calls(), 1);
}

#[tokio::test]
async fn failures_during_a_handoff_do_not_count() {
    let (maintenance, backend, svc) = breaker(config());
    let mut events = maintenance.subscribe();
    handoff(
        &maintenance,
        EventKind::HandoffStarted {
            from: endpoint(),
            to: Endpoint::new("10.0.0.2", 6379),
            seq: Some(1),
        },
    );
    next(&mut events, "handoff_started").await;
    // The task has seen it once a probe event of ours would come after it.
    tokio::time::sleep(Duration::from_millis(20)).await;
    backend.set(DOWN);
    for _ in 0..10 {
        let _ = send(&svc).await;
    }
    assert_eq!(svc.handle().state(), CircuitState::Closed);
    handoff(
        &maintenance,
        EventKind::HandoffFailed {
            to: Endpoint::new("10.0.0.2", 6379),
            attempts: 3,
            error: Error::NotSent {
                reason: "refused".into(),
            },
        },
    );
    next(&mut events, "handoff_failed").await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    for _ in 0..3 {
        let _ = send(&svc).await;
    }
    assert_eq!(svc.handle().state(), CircuitState::Open);
}

#[tokio::test]
async fn azure_start_opens_it_for_at_most_the_hold_then_it_half_opens() {
    let (maintenance, backend, svc) = breaker(CircuitBreakerConfig {
        azure_hold_max: Duration::from_millis(100),
        ..config()
    });
    let mut events = maintenance.subscribe();
    azure(&maintenance, AzureEventKind::NodeMaintenanceStart);
    let EventKind::CircuitOpened { reason } = next(&mut events, "circuit_opened").await else {
        unreachable!()
    };
    assert!(reason.contains("NodeMaintenanceStart"), "{reason}");
    assert!(matches!(send(&svc).await, Err(Error::CircuitOpen { .. })));
    next(&mut events, "circuit_half_open").await;
    assert!(send(&svc).await.is_ok());
    assert_eq!(svc.handle().state(), CircuitState::Closed);
    assert_eq!(backend.calls(), 1);
}

#[tokio::test]
async fn the_connection_coming_back_closes_an_azure_circuit_and_half_opens_a_failed_one() {
    let (maintenance, backend, svc) = breaker(CircuitBreakerConfig {
        open_wait: Duration::from_secs(30),
        ..config()
    });
    let mut events = maintenance.subscribe();
    azure(&maintenance, AzureEventKind::NodeMaintenanceStart);
    next(&mut events, "circuit_opened").await;
    handoff(
        &maintenance,
        EventKind::Reconnected {
            attempts: 1,
            took: Duration::from_millis(5),
        },
    );
    next(&mut events, "circuit_closed").await;

    backend.set(DOWN);
    for _ in 0..3 {
        let _ = send(&svc).await;
    }
    next(&mut events, "circuit_opened").await;
    handoff(
        &maintenance,
        EventKind::Reconnected {
            attempts: 1,
            took: Duration::from_millis(5),
        },
    );
    next(&mut events, "circuit_half_open").await;
    backend.set(OK);
    assert!(send(&svc).await.is_ok());
    next(&mut events, "circuit_closed").await;
}

#[tokio::test]
async fn a_forced_circuit_stays_open_until_reset() {
    let (maintenance, backend, svc) = breaker(CircuitBreakerConfig {
        open_wait: Duration::from_millis(1),
        ..config()
    });
    let mut events = maintenance.subscribe();
    let circuit = svc.handle();
    circuit.force_open("drill");
    next(&mut events, "circuit_opened").await;
    azure(&maintenance, AzureEventKind::NodeMaintenanceEnded);
    handoff(
        &maintenance,
        EventKind::Reconnected {
            attempts: 1,
            took: Duration::from_millis(5),
        },
    );
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(circuit.state(), CircuitState::Open);
    assert_eq!(circuit.open_reason().as_deref(), Some("drill"));
    assert!(matches!(send(&svc).await, Err(Error::CircuitOpen { .. })));
    circuit.reset();
    next(&mut events, "circuit_closed").await;
    assert!(send(&svc).await.is_ok());
    assert_eq!(backend.calls(), 1);
    assert_eq!(circuit.open_reason(), None);
}

#[test]
fn the_service_and_its_parts_can_cross_threads() {
    fn send_sync<T: Send + Sync + 'static>() {}
    fn send<T: Send + 'static>() {}
    send_sync::<CircuitBreaker<crate::handoff::HandoffRetry>>();
    send::<ResponseFuture<crate::handoff::ResponseFuture>>();
    send_sync::<CircuitBreakerLayer>();
    send_sync::<CircuitHandle>();
}

#[test]
fn without_a_runtime_it_still_opens_and_fails_fast() {
    let (_m, backend, mut svc) = breaker(config());
    assert!(!svc.shared.started());
    backend.set(DOWN);
    let mut cx = Context::from_waker(std::task::Waker::noop());
    let mut send_now = || {
        assert!(svc.poll_ready(&mut cx).is_ready());
        let mut response = std::pin::pin!(svc.call(Command::new("PING")));
        match response.as_mut().poll(&mut cx) {
            Poll::Ready(result) => result,
            Poll::Pending => panic!("the backend answers at once"),
        }
    };
    for _ in 0..3 {
        assert!(matches!(send_now(), Err(Error::NotSent { .. })));
    }
    assert!(matches!(send_now(), Err(Error::CircuitOpen { .. })));
    assert_eq!(backend.calls(), 3);
}
