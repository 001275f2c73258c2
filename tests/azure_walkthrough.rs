//! An Azure maintenance from announcement to end, replayed by the simulator on a compressed
//! timeline (seconds instead of minutes), through the recommended stack under load:
//! Scheduled, Starting (timeouts relax; new commands held from 1 s before the start), Start,
//! the server drops the connection, FailoverComplete (the connection is refreshed), Ended.

mod common;

use std::time::{Duration, SystemTime};

use common::load;
use common::sim::redis_and_sim;
use redis_handoff::circuit_breaker::{CircuitBreakerConfig, OpenMode};
use redis_handoff::maintenance::{format_utc, AzureEventKind, AzureEvents};
use redis_handoff::sim::{self, Scope};
use redis_handoff::{cmd, ConnectOptions, EventKind, MaintenanceConfig, Stack};
use tower::ServiceExt;

fn step(kind: &EventKind) -> Option<String> {
    Some(match kind {
        EventKind::Azure(a) => a.kind.name().to_string(),
        EventKind::CircuitOpened { .. } => "circuit opened".into(),
        EventKind::CircuitClosed { .. } => "circuit closed".into(),
        EventKind::Disconnected { .. } => "disconnected".into(),
        EventKind::Reconnected { .. } => "reconnected".into(),
        EventKind::HandoffSwitched { .. } => "refreshed".into(),
        _ => return None,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_azure_walkthrough_with_hold_fails_no_command_and_reports_every_step_in_order() {
    let (_server, sim) = redis_and_sim(1).await;
    let stack = Stack::builder(ConnectOptions::from_url(&sim.node(0).url()).unwrap())
        .maintenance(
            MaintenanceConfig::builder()
                .azure_events(AzureEvents::On)
                .build()
                .unwrap(),
        )
        .circuit_breaker(CircuitBreakerConfig {
            mode: OpenMode::Wait {
                max: Duration::from_secs(20),
            },
            azure_hold_before_start: Some(Duration::from_secs(1)),
            ..CircuitBreakerConfig::default()
        })
        .timeout(Duration::from_secs(1))
        .connect()
        .await
        .unwrap();
    let mut events = stack.maintenance().subscribe();

    let load = load::start(&stack, 20, "walk", Duration::ZERO, Duration::from_millis(2));

    let azure = |kind: sim::AzureEventKind, start: Option<SystemTime>| {
        let mut e = sim::AzureEvent::new(kind);
        if let Some(start) = start {
            e = e.start_time(format_utc(start));
        }
        assert_eq!(
            sim.azure(Scope::All, &e).unwrap(),
            1,
            "the stack is subscribed"
        );
    };
    let pause = |ms| tokio::time::sleep(Duration::from_millis(ms));

    let start = SystemTime::now() + Duration::from_secs(3);
    pause(300).await;
    azure(sim::AzureEventKind::Scheduled, Some(start));
    pause(300).await;
    azure(sim::AzureEventKind::Starting, Some(start));
    // The hold begins 1 s before the start; Start comes when it is imminent.
    tokio::time::sleep(start.duration_since(SystemTime::now()).unwrap_or_default()).await;
    assert!(
        stack
            .maintenance()
            .status(&sim.node(0).endpoint())
            .is_relaxed(std::time::Instant::now()),
        "Starting relaxed the timeouts"
    );
    azure(sim::AzureEventKind::Start, None);
    pause(300).await;
    // The server closes the connection; the stack reconnects by itself.
    sim.reset_all(0).unwrap();
    pause(800).await;
    azure(sim::AzureEventKind::FailoverComplete, None);
    pause(500).await;
    azure(sim::AzureEventKind::Ended, None);
    pause(500).await;
    let outcomes = load.finish().await;

    for (t, o) in outcomes.iter().enumerate() {
        let (incr_ok, errors) = (o.incr_ok, &o.errors);
        assert!(errors.is_empty(), "task {t}: {errors:?}");
        let v = stack
            .clone()
            .oneshot(cmd!("GET", format!("walk:{t}")))
            .await
            .unwrap();
        assert_eq!(v.as_i64(), Some(incr_ok as i64), "task {t}: counter");
    }

    let mut steps = Vec::new();
    while let Some(e) = events.try_recv() {
        if let Some(s) = step(&e.kind) {
            steps.push(s);
        }
    }
    let expected = [
        AzureEventKind::NodeMaintenanceScheduled.name().to_string(),
        AzureEventKind::NodeMaintenanceStarting.name().to_string(),
        "circuit opened".into(),
        AzureEventKind::NodeMaintenanceStart.name().to_string(),
        "disconnected".into(),
        "reconnected".into(),
        "circuit closed".into(),
        AzureEventKind::NodeMaintenanceFailoverComplete
            .name()
            .to_string(),
        "refreshed".into(),
        AzureEventKind::NodeMaintenanceEnded.name().to_string(),
    ];
    assert_eq!(steps, expected);
}
