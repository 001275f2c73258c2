//! The maintenance drill, in process and through `redis-handoff drill`, and the quick start
//! example.
#![cfg(feature = "sim")]

mod common;

#[allow(dead_code)]
#[path = "../examples/quickstart.rs"]
mod quickstart;

use std::process::Command;
use std::time::{Duration, Instant};

use common::RedisServer;
use redis_handoff::drill::{Drill, DrillConfig, DrillReport, Scenario, StackKind, Target};
use redis_handoff::sim::Backend;

/// A short drill: one scenario, 8 tasks, 3 s.
async fn drill(target: Target, stack: StackKind, scenario: Scenario) -> DrillReport {
    let started = Instant::now();
    let report = Drill::new(DrillConfig {
        target,
        stack,
        scenarios: vec![scenario],
        concurrency: 8,
        duration: Duration::from_secs(3),
        ..DrillConfig::default()
    })
    .run()
    .await
    .expect("the drill runs");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "a 3 s drill took {:?}",
        started.elapsed()
    );
    report
}

fn json_keys_present(v: &serde_json::Value) {
    for key in [
        "commands",
        "ok",
        "failed",
        "retried",
        "handoffs",
        "p50_us",
        "p99_us",
        "p999_us",
        "max_us",
        "window_p999_us",
    ] {
        assert!(v[key].is_u64(), "{key} is missing or not a count: {v}");
    }
    assert!(v["notifications"].is_object(), "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moving_through_the_full_stack_fails_nothing_and_hands_off_once() {
    let server = RedisServer::start();
    let report = drill(
        Target::Simulator(Backend::redis(server.addr())),
        StackKind::Full,
        Scenario::Moving,
    )
    .await;
    assert_eq!(report.failed, 0, "{report}");
    assert!(report.failures.is_empty(), "{report}");
    assert_eq!(report.handoffs, 1, "{report}");
    assert_eq!(report.ok, report.commands);
    assert!(report.commands > 100, "{report}");
    assert_eq!(report.notifications.get("MOVING"), Some(&1), "{report}");
    assert_eq!(report.notifications.len(), 1, "{report}");
    assert_eq!(report.switches.len(), 1, "{report}");
    // One window, from the MOVING to the end of its grace period, with commands inside.
    assert_eq!(report.windows.len(), 1);
    let w = &report.windows[0];
    assert_eq!(w.label, "moving");
    assert!(w.end > w.start && w.end <= report.elapsed, "{w:?} {report}");
    assert!(
        w.contains(report.switches[0]),
        "the switch is inside the window"
    );
    assert!(report.window_latency.commands > 0, "{report}");
    assert_eq!(report.window_latency.failed, 0);
    assert_eq!(report.histogram.len(), report.commands);
    assert!(report.latency.p50_us <= report.latency.p99_us);
    assert!(report.latency.p99_us <= report.latency.p999_us);
    assert!(report.latency.p999_us <= report.latency.max_us);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moving_through_a_bare_connection_fails_the_commands_it_owed() {
    let report = drill(
        Target::Simulator(Backend::Memory),
        StackKind::None,
        Scenario::Moving,
    )
    .await;
    assert!(report.failed > 0, "{report}");
    assert_eq!(report.ok + report.failed, report.commands);
    let counted: u64 = report.failures.values().sum();
    assert_eq!(counted, report.failed, "{report}");
    assert!(
        report.failures.contains_key("connection_lost") || report.failures.contains_key("not_sent"),
        "{report}"
    );
    assert_eq!(report.handoffs, 0);
    assert!(report.reconnects >= 1, "it was dialled again: {report}");
    assert!(
        report.notifications.is_empty(),
        "a bare connection does not opt in"
    );
    // The old node closed the connection when the grace period ended, inside the window.
    assert!(report.window_latency.failed > 0, "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_json_report_parses_and_counts_notifications_by_type() {
    let report = drill(
        Target::Simulator(Backend::Memory),
        StackKind::Full,
        Scenario::Migrate,
    )
    .await;
    let line = report.to_json().to_string();
    assert!(!line.contains('\n'), "one line");
    let v: serde_json::Value = serde_json::from_str(&line).expect("valid JSON");
    json_keys_present(&v);
    assert_eq!(v["commands"], report.commands);
    assert_eq!(v["failed"], 0, "{report}");
    assert_eq!(v["handoffs"], 0);
    assert_eq!(
        v["notifications"],
        serde_json::json!({ "MIGRATING": 1, "MIGRATED": 1 })
    );
    assert_eq!(v["windows"][0]["label"], "migrate");
    // The migration adds 100 ms to every reply: commands inside the window wait for it.
    let window_p50 = v["window_p50_us"].as_u64().unwrap();
    assert!(window_p50 >= 90_000, "window p50 {window_p50} µs: {report}");
    assert!(v["window_p999_us"].as_u64().unwrap() >= window_p50);
}

#[test]
fn the_drill_command_prints_json_last_and_writes_the_plot() {
    let dir = tempfile::tempdir().unwrap();
    let plot = dir.path().join("drill.svg");
    let out = Command::new(env!("CARGO_BIN_EXE_redis-handoff"))
        .args([
            "drill",
            "--sim",
            "--backend",
            "memory",
            "--scenario",
            "migrate",
            "--duration",
            "3s",
            "--concurrency",
            "8",
            "--json",
            "--plot",
        ])
        .arg(&plot)
        .env("RUST_LOG", "warn")
        .output()
        .expect("the binary runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("maintenance windows"), "{stdout}");
    let last = stdout.lines().last().expect("some output");
    let v: serde_json::Value = serde_json::from_str(last).expect("the last line is JSON");
    json_keys_present(&v);
    assert_eq!(v["failed"], 0, "{stdout}");
    assert_eq!(v["notifications"]["MIGRATING"], 1, "{stdout}");
    // Not a terminal: progress comes as plain lines, never a carriage return.
    assert!(!stderr.contains('\r'), "{stderr:?}");

    let svg = std::fs::read_to_string(&plot).expect("the plot was written");
    assert!(svg.starts_with("<svg"), "{svg}");
    assert!(svg.trim_end().ends_with("</svg>"));
    let shaded = svg
        .lines()
        .find(|l| l.starts_with(r#"<rect class="window""#))
        .expect("a shaded window");
    assert!(shaded.contains("fill-opacity"), "{shaded}");
    assert!(svg.contains("<polyline"), "latency lines");
    assert!(svg.contains("time since the load started"), "axis label");
}

#[test]
fn compare_runs_both_clients_and_only_the_bare_one_fails() {
    let out = Command::new(env!("CARGO_BIN_EXE_redis-handoff"))
        .args([
            "drill",
            "--scenario",
            "moving",
            "--duration",
            "3s",
            "--concurrency",
            "8",
            "--compare",
            "--json",
            "--quiet",
        ])
        .env("RUST_LOG", "warn")
        .output()
        .expect("the binary runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("full stack"), "{stdout}");
    assert!(stdout.contains("bare connection"), "{stdout}");
    let v: serde_json::Value =
        serde_json::from_str(stdout.lines().last().unwrap()).expect("JSON last");
    json_keys_present(&v["full"]);
    json_keys_present(&v["none"]);
    assert_eq!(v["full"]["failed"], 0, "{stdout}");
    assert_eq!(v["full"]["handoffs"], 1, "{stdout}");
    assert!(v["none"]["failed"].as_u64().unwrap() > 0, "{stdout}");
}

#[test]
fn a_bar_asked_for_is_drawn_on_stderr_and_cleared_off_it_and_off_prints_none() {
    let run = |progress: &str| {
        let out = Command::new(env!("CARGO_BIN_EXE_redis-handoff"))
            .args(["drill", "--scenario", "none", "--duration", "1s"])
            .args(["--concurrency", "2", "--progress", progress])
            .env("RUST_LOG", "warn")
            .output()
            .expect("the binary runs");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "{stdout}\n{stderr}");
        assert!(stdout.starts_with("drill: full stack"), "{stdout}");
        assert!(
            !stdout.contains('\x1b'),
            "the report has no escapes: {stdout:?}"
        );
        stderr
    };
    let bar = run("bar");
    assert!(bar.contains("full stack: ["), "{bar:?}");
    assert!(bar.contains(" commands  "), "{bar:?}");
    assert!(bar.contains(" failed"), "{bar:?}");
    assert!(bar.ends_with("\r\x1b[2K"), "cleared at the end: {bar:?}");
    assert!(!bar.contains('\n'), "redrawn in place: {bar:?}");
    assert_eq!(run("off"), "");
}

#[test]
fn scenarios_need_the_embedded_simulator() {
    let out = Command::new(env!("CARGO_BIN_EXE_redis-handoff"))
        .args(["drill", "--addr", "127.0.0.1:1", "--scenario", "moving"])
        .output()
        .expect("the binary runs");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("embedded simulator"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drill_against_an_endpoint_of_your_own_records_no_window_and_leaves_no_keys() {
    let server = RedisServer::start();
    let report = Drill::new(DrillConfig {
        target: Target::Endpoint(server.url()),
        scenarios: Vec::new(),
        concurrency: 4,
        duration: Duration::from_secs(1),
        ..DrillConfig::default()
    })
    .run()
    .await
    .unwrap();
    assert_eq!(report.failed, 0, "{report}");
    assert!(report.commands > 0);
    assert!(report.windows.is_empty());
    assert_eq!(report.window_latency.commands, 0);
    assert!(report.notifications.is_empty());
    // The keys the load wrote are gone.
    let conn = redis_handoff::Connection::connect(&server.url())
        .await
        .unwrap();
    let size = conn.send(redis_handoff::cmd!("DBSIZE")).await.unwrap();
    assert_eq!(size.as_i64(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_quickstart_sees_a_migration_and_a_handoff_and_fails_nothing() {
    let server = RedisServer::start();
    let started = Instant::now();
    let summary = quickstart::run(&server.url()).await.unwrap();
    assert_eq!(summary.failed, 0, "{summary:?}");
    assert_eq!(summary.counters_wrong, 0, "{summary:?}");
    assert_eq!(summary.handoffs, 1, "{summary:?}");
    assert_eq!(summary.notifications, ["MIGRATING", "MIGRATED", "MOVING"]);
    assert!(summary.commands > 0);
    assert!(started.elapsed() < Duration::from_secs(30));
}

#[test]
fn the_drill_runs_a_simulated_cluster_through_a_slot_migration() {
    let out = Command::new(env!("CARGO_BIN_EXE_redis-handoff"))
        .args(["drill", "--sim", "--cluster", "--duration", "4s"])
        .args(["--concurrency", "8", "--json", "--quiet"])
        .env("RUST_LOG", "warn")
        .output()
        .expect("the binary runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("cluster client"), "{stdout}");
    assert!(
        stdout.contains("MOVED") && stdout.contains("refreshes"),
        "{stdout}"
    );
    let last = stdout.lines().last().expect("some output");
    let v: serde_json::Value = serde_json::from_str(last).expect("the last line is JSON");
    assert_eq!(v["stack"], "cluster", "{stdout}");
    assert_eq!(v["failed"], 0, "{stdout}");
    assert!(v["commands"].as_u64().unwrap() > 100, "{stdout}");
    assert!(v["moved_redirects"].as_u64().is_some(), "{stdout}");
    assert!(v["ask_redirects"].as_u64().is_some(), "{stdout}");
    assert!(v["topology_refreshes"].as_u64().unwrap() >= 1, "{stdout}");
    // The migration was heard: SMIGRATING and SMIGRATED, one window for the scenario.
    assert!(
        v["notifications"]["SMIGRATING"].as_u64().unwrap_or(0) >= 1,
        "{stdout}"
    );
    assert!(
        v["notifications"]["SMIGRATED"].as_u64().unwrap_or(0) >= 1,
        "{stdout}"
    );
    assert!(stdout.contains("migrate-slots"), "{stdout}");

    let help = Command::new(env!("CARGO_BIN_EXE_redis-handoff"))
        .args(["drill", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(help.contains("--sim --cluster"), "{help}");
    assert!(help.contains("migrate-slots"), "{help}");
}
