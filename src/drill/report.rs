//! What a drill reports: counts, latency percentiles overall and inside the maintenance
//! windows, notifications, a timeline; as text, as JSON, side by side.

use std::collections::BTreeMap;
use std::fmt::{self, Write as _};
use std::time::Duration;

use hdrhistogram::Histogram;
use serde_json::{json, Value};

use super::client::{ClientStats, Observed};
use super::workload::{Sample, FAILURES};
use super::{DrillConfig, Scenario, StackKind};
use crate::maintenance::{AzureEventKind, EventKind, Notification};

/// The width of a [`TimelineBucket`]: 100 ms.
pub const TIMELINE_BUCKET: Duration = Duration::from_millis(100);

/// A maintenance window, from its first notification to its end, as offsets from the start of
/// the load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    /// The scenario (`moving`, `migrate`, ...) or, for maintenance heard from an endpoint of
    /// your own, the name of the notification that opened it (`MIGRATING`, ...).
    pub label: String,
    /// When the first notification was sent (or heard).
    pub start: Duration,
    /// When the maintenance was over.
    pub end: Duration,
}

impl Window {
    /// Whether a command that started at `at` started inside the window.
    pub fn contains(&self, at: Duration) -> bool {
        self.start <= at && at <= self.end
    }
}

/// Latency percentiles of a set of commands, in microseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct LatencySummary {
    /// How many commands.
    pub commands: u64,
    /// How many of them failed.
    pub failed: u64,
    /// The median.
    pub p50_us: u64,
    /// The 99th percentile.
    pub p99_us: u64,
    /// The 99.9th percentile.
    pub p999_us: u64,
    /// The slowest.
    pub max_us: u64,
}

impl LatencySummary {
    fn of(histogram: &Histogram<u64>, failed: u64) -> LatencySummary {
        if histogram.is_empty() {
            return LatencySummary::default();
        }
        LatencySummary {
            commands: histogram.len(),
            failed,
            p50_us: histogram.value_at_quantile(0.5),
            p99_us: histogram.value_at_quantile(0.99),
            p999_us: histogram.value_at_quantile(0.999),
            max_us: histogram.max(),
        }
    }
}

/// The commands that started within one [`TIMELINE_BUCKET`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct TimelineBucket {
    /// Its start, from the start of the load.
    pub start: Duration,
    /// How many commands started in it.
    pub commands: u64,
    /// How many of them failed.
    pub failed: u64,
    /// Their 99th percentile latency, in microseconds.
    pub p99_us: u64,
    /// Their slowest, in microseconds.
    pub max_us: u64,
}

/// What a drill saw; `Display` prints it as a text report, [`to_json`](Self::to_json) as JSON,
/// [`to_svg`](Self::to_svg) as a plot.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct DrillReport {
    /// The client the load went through.
    pub stack: StackKind,
    /// Where the load went, in words.
    pub target: String,
    /// The scenarios played.
    pub scenarios: Vec<Scenario>,
    /// How many tasks sent commands.
    pub concurrency: usize,
    /// How long the load ran, the drain included.
    pub elapsed: Duration,
    /// Commands sent (answered or failed).
    pub commands: u64,
    /// Commands answered (error replies from the server count as failed).
    pub ok: u64,
    /// Commands failed.
    pub failed: u64,
    /// Commands the stack sent again after their connection ended.
    pub retried: u64,
    /// Handoffs that switched to a new connection.
    pub handoffs: u64,
    /// Handoffs where every attempt failed.
    pub handoffs_failed: u64,
    /// Reconnects after a connection was lost without notice (for the bare connection: every
    /// time it was dialled again).
    pub reconnects: u64,
    /// `MOVED` redirects the cluster client followed (0 for the other clients).
    pub moved_redirects: u64,
    /// `ASK` redirects the cluster client followed (0 for the other clients).
    pub ask_redirects: u64,
    /// Topology refreshes the cluster client made, the first one included (0 for the others).
    pub topology_refreshes: u64,
    /// Latency of every command.
    pub latency: LatencySummary,
    /// Latency of the commands that started inside a maintenance window.
    pub window_latency: LatencySummary,
    /// Every command's latency, in microseconds.
    pub histogram: Histogram<u64>,
    /// The latency of the commands that started inside a window, in microseconds.
    pub window_histogram: Histogram<u64>,
    /// The maintenance notifications and Azure events the client heard, by type (`MOVING`,
    /// `NodeMaintenanceStarting`, ...). Always empty for the bare connection, which does not
    /// ask for them.
    pub notifications: BTreeMap<String, u64>,
    /// Failed commands by kind: `timeout`, `connection_lost` (written, may have run),
    /// `not_sent` (did not run), `unanswered` (no answer by the end of the drain), ...
    pub failures: BTreeMap<String, u64>,
    /// The maintenance windows.
    pub windows: Vec<Window>,
    /// When the stack switched to a new connection, from the start of the load.
    pub switches: Vec<Duration>,
    /// Latency over time, one bucket per [`TIMELINE_BUCKET`].
    pub timeline: Vec<TimelineBucket>,
}

pub(crate) struct Inputs<'a> {
    pub(crate) config: &'a DrillConfig,
    pub(crate) samples: Vec<Sample>,
    pub(crate) windows: Vec<Window>,
    pub(crate) observed: &'a [Observed],
    pub(crate) stats: ClientStats,
    pub(crate) elapsed: Duration,
}

fn histogram() -> Histogram<u64> {
    // Three significant figures, growing as needed: it never refuses a value. The constant
    // is within hdrhistogram's range (at most 5), so creation cannot fail.
    Histogram::new(3).expect("3 significant figures is a valid precision")
}

/// Records a value, growing the histogram to hold it (`saturating_record` would clamp it to
/// the current highest trackable value instead).
fn record(histogram: &mut Histogram<u64>, value: u64) {
    if histogram.record(value).is_err() {
        histogram.saturating_record(value);
    }
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

pub(crate) fn build(inputs: Inputs<'_>) -> DrillReport {
    let Inputs {
        config,
        samples,
        windows,
        observed,
        stats,
        elapsed,
    } = inputs;
    let mut all = histogram();
    let mut inside = histogram();
    let (mut failed, mut window_failed) = (0, 0);
    let mut failures = BTreeMap::new();
    let bucket_us = micros(TIMELINE_BUCKET);
    let buckets = usize::try_from(micros(elapsed) / bucket_us + 1).unwrap_or(0);
    let mut per_bucket: Vec<Vec<u32>> = vec![Vec::new(); buckets];
    let mut bucket_failed = vec![0u64; buckets];
    let spans: Vec<(u64, u64)> = windows
        .iter()
        .map(|w| (micros(w.start), micros(w.end)))
        .collect();
    for s in &samples {
        let latency = u64::from(s.latency_us);
        let start = u64::from(s.start_us);
        record(&mut all, latency);
        let in_window = spans.iter().any(|&(a, b)| a <= start && start <= b);
        if in_window {
            record(&mut inside, latency);
        }
        let b = usize::try_from(start / bucket_us).unwrap_or(usize::MAX);
        if let Some(v) = per_bucket.get_mut(b) {
            v.push(s.latency_us);
        }
        if let Some(kind) = s.failure {
            failed += 1;
            if in_window {
                window_failed += 1;
            }
            if let Some(f) = bucket_failed.get_mut(b) {
                *f += 1;
            }
            let name = FAILURES.get(usize::from(kind)).copied().unwrap_or("other");
            *failures.entry(name.to_string()).or_insert(0) += 1;
        }
    }
    let timeline = per_bucket
        .into_iter()
        .zip(bucket_failed)
        .zip(0u32..)
        .map(|((mut v, failed), i)| {
            v.sort_unstable();
            let p99 = match v.len() {
                0 => 0,
                n => v[(n * 99).div_ceil(100).clamp(1, n) - 1],
            };
            TimelineBucket {
                start: TIMELINE_BUCKET * i,
                commands: v.len() as u64,
                failed,
                p99_us: u64::from(p99),
                max_us: u64::from(v.last().copied().unwrap_or(0)),
            }
        })
        .collect();
    let mut notifications = BTreeMap::new();
    let mut switches = Vec::new();
    for o in observed {
        match &o.kind {
            EventKind::Notification(n) => {
                *notifications.entry(n.name().to_string()).or_insert(0) += 1;
            }
            EventKind::Azure(e) => {
                *notifications.entry(e.kind.name().to_string()).or_insert(0) += 1;
            }
            EventKind::HandoffSwitched { .. } => switches.push(o.at),
            _ => {}
        }
    }
    let commands = samples.len() as u64;
    DrillReport {
        stack: config.stack,
        target: config.target.to_string(),
        scenarios: config.scenarios.clone(),
        concurrency: config.concurrency,
        elapsed,
        commands,
        ok: commands - failed,
        failed,
        retried: stats.retried,
        handoffs: stats.handoffs,
        handoffs_failed: stats.handoffs_failed,
        reconnects: stats.reconnects,
        moved_redirects: stats.moved,
        ask_redirects: stats.asked,
        topology_refreshes: stats.refreshes,
        latency: LatencySummary::of(&all, failed),
        window_latency: LatencySummary::of(&inside, window_failed),
        histogram: all,
        window_histogram: inside,
        notifications,
        failures,
        windows,
        switches,
        timeline,
    }
}

/// The maintenance windows announced by what a stack heard: a start notification opens one,
/// its end notification (same sequence number) closes it; a `MOVING` lasts its grace period;
/// Azure maintenance lasts from `NodeMaintenanceStarting` or `NodeMaintenanceStart` to
/// `NodeMaintenanceEnded`. Windows still open at `end` close there.
pub(crate) fn windows_from_events(observed: &[Observed], end: Duration) -> Vec<Window> {
    type Open = Vec<(&'static str, Option<u64>, Duration)>;
    fn close(open: &mut Open, done: &mut Vec<Window>, label: &str, seq: Option<u64>, at: Duration) {
        if let Some(i) = open.iter().position(|(l, s, _)| *l == label && *s == seq) {
            let (label, _, start) = open.remove(i);
            done.push(Window {
                label: label.to_string(),
                start,
                end: at,
            });
        }
    }
    let mut done = Vec::new();
    let mut open: Open = Vec::new();
    for o in observed {
        match &o.kind {
            EventKind::Notification(n) => match n {
                Notification::Moving { time, .. } => done.push(Window {
                    label: "MOVING".into(),
                    start: o.at,
                    end: (o.at + *time).min(end),
                }),
                Notification::Migrating { seq, .. } => open.push(("MIGRATING", Some(*seq), o.at)),
                Notification::FailingOver { seq, .. } => {
                    open.push(("FAILING_OVER", Some(*seq), o.at))
                }
                Notification::SMigrating { seq, .. } => open.push(("SMIGRATING", Some(*seq), o.at)),
                Notification::Migrated { seq, .. } => {
                    close(&mut open, &mut done, "MIGRATING", Some(*seq), o.at)
                }
                Notification::FailedOver { seq, .. } => {
                    close(&mut open, &mut done, "FAILING_OVER", Some(*seq), o.at)
                }
                Notification::SMigrated { seq, .. } => {
                    close(&mut open, &mut done, "SMIGRATING", Some(*seq), o.at)
                }
            },
            EventKind::Azure(e) => match e.kind {
                AzureEventKind::NodeMaintenanceStarting | AzureEventKind::NodeMaintenanceStart
                    if !open.iter().any(|(l, _, _)| *l == "azure") =>
                {
                    open.push(("azure", None, o.at));
                }
                AzureEventKind::NodeMaintenanceEnded => {
                    close(&mut open, &mut done, "azure", None, o.at)
                }
                _ => {}
            },
            _ => {}
        }
    }
    for (label, _, start) in open {
        done.push(Window {
            label: label.to_string(),
            start,
            end,
        });
    }
    done.sort_by_key(|w| w.start);
    done
}

// ===== rendering =====

/// A latency in microseconds, for people: `0.21 ms`, `12.3 ms`, `1.25 s`.
pub(crate) fn human_us(us: u64) -> String {
    let ms = us as f64 / 1000.0;
    if ms < 10.0 {
        format!("{ms:.2} ms")
    } else if ms < 1000.0 {
        format!("{ms:.1} ms")
    } else {
        format!("{:.2} s", ms / 1000.0)
    }
}

fn secs(d: Duration) -> String {
    format!("{:.1} s", d.as_secs_f64())
}

impl DrillReport {
    /// The scenarios as the command line names them (`none` for none).
    fn scenario_list(&self) -> String {
        if self.scenarios.is_empty() {
            "none".into()
        } else {
            let names: Vec<&str> = self.scenarios.iter().map(|s| s.name()).collect();
            names.join(", ")
        }
    }

    /// The stack, in words.
    pub(crate) fn stack_words(&self) -> &'static str {
        match self.stack {
            StackKind::Full => "full stack",
            StackKind::None => "bare connection",
            StackKind::Cluster => "cluster client",
        }
    }

    /// The report as one JSON object. Keys: `stack`, `target`, `scenarios`, `concurrency`,
    /// `elapsed_s`, `commands`, `ok`, `failed`, `retried`, `handoffs`, `handoffs_failed`,
    /// `reconnects`, `moved_redirects`, `ask_redirects`, `topology_refreshes`, `p50_us`, `p99_us`, `p999_us`, `max_us`, `window_commands`,
    /// `window_failed`, `window_p50_us`, `window_p99_us`, `window_p999_us`, `window_max_us`,
    /// `notifications` (type to count), `failures` (kind to count), `windows` (`label`,
    /// `start_ms`, `end_ms`).
    pub fn to_json(&self) -> Value {
        let l = &self.latency;
        let w = &self.window_latency;
        let windows: Vec<Value> = self
            .windows
            .iter()
            .map(|w| {
                json!({
                    "label": w.label,
                    "start_ms": w.start.as_millis() as u64,
                    "end_ms": w.end.as_millis() as u64,
                })
            })
            .collect();
        json!({
            "stack": self.stack.name(),
            "target": self.target,
            "scenarios": self.scenarios.iter().map(|s| s.name()).collect::<Vec<_>>(),
            "concurrency": self.concurrency,
            "elapsed_s": self.elapsed.as_secs_f64(),
            "commands": self.commands,
            "ok": self.ok,
            "failed": self.failed,
            "retried": self.retried,
            "handoffs": self.handoffs,
            "handoffs_failed": self.handoffs_failed,
            "reconnects": self.reconnects,
            "moved_redirects": self.moved_redirects,
            "ask_redirects": self.ask_redirects,
            "topology_refreshes": self.topology_refreshes,
            "p50_us": l.p50_us,
            "p99_us": l.p99_us,
            "p999_us": l.p999_us,
            "max_us": l.max_us,
            "window_commands": w.commands,
            "window_failed": w.failed,
            "window_p50_us": w.p50_us,
            "window_p99_us": w.p99_us,
            "window_p999_us": w.p999_us,
            "window_max_us": w.max_us,
            "notifications": self.notifications,
            "failures": self.failures,
            "windows": windows,
        })
    }
}

impl fmt::Display for DrillReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let rate = self.commands as f64 / self.elapsed.as_secs_f64().max(0.001);
        writeln!(
            f,
            "drill: {} against the {}; scenarios: {}",
            self.stack_words(),
            self.target,
            self.scenario_list()
        )?;
        writeln!(
            f,
            "load: {} tasks for {}, {:.0} commands/s",
            self.concurrency,
            secs(self.elapsed),
            rate
        )?;
        writeln!(f)?;
        writeln!(f, "  commands    {:>10}", self.commands)?;
        writeln!(f, "  ok          {:>10}", self.ok)?;
        writeln!(f, "  failed      {:>10}", self.failed)?;
        writeln!(f, "  retried     {:>10}", self.retried)?;
        writeln!(
            f,
            "  handoffs    {:>10}{}",
            self.handoffs,
            if self.handoffs_failed > 0 {
                format!("   ({} failed)", self.handoffs_failed)
            } else {
                String::new()
            }
        )?;
        writeln!(f, "  reconnects  {:>10}", self.reconnects)?;
        if self.stack == StackKind::Cluster {
            writeln!(f, "  MOVED       {:>10}", self.moved_redirects)?;
            writeln!(f, "  ASK         {:>10}", self.ask_redirects)?;
            writeln!(f, "  refreshes   {:>10}", self.topology_refreshes)?;
        }
        writeln!(f)?;
        writeln!(
            f,
            "  latency          {:>10} {:>10} {:>10} {:>10}   commands   failed",
            "p50", "p99", "p99.9", "max"
        )?;
        for (name, l) in [
            ("overall", &self.latency),
            ("in windows", &self.window_latency),
        ] {
            writeln!(
                f,
                "  {name:<15} {:>10} {:>10} {:>10} {:>10} {:>10} {:>8}",
                human_us(l.p50_us),
                human_us(l.p99_us),
                human_us(l.p999_us),
                human_us(l.max_us),
                l.commands,
                l.failed
            )?;
        }
        if !self.windows.is_empty() {
            writeln!(f)?;
            writeln!(f, "  maintenance windows")?;
            for w in &self.windows {
                writeln!(
                    f,
                    "    {:<16} {:>7.2} s to {:>7.2} s",
                    w.label,
                    w.start.as_secs_f64(),
                    w.end.as_secs_f64()
                )?;
            }
        }
        writeln!(f)?;
        if self.notifications.is_empty() {
            match self.stack {
                StackKind::None => writeln!(
                    f,
                    "  notifications: none (a bare connection does not ask for them)"
                )?,
                StackKind::Full | StackKind::Cluster => writeln!(f, "  notifications: none")?,
            }
        } else {
            writeln!(f, "  notifications")?;
            for (name, n) in &self.notifications {
                writeln!(f, "    {name:<32} {n:>6}")?;
            }
        }
        if !self.failures.is_empty() {
            writeln!(f)?;
            writeln!(f, "  failures")?;
            for (name, n) in &self.failures {
                writeln!(f, "    {name:<32} {n:>6}")?;
            }
        }
        Ok(())
    }
}

/// Two reports in two columns, the first one's on the left: for `drill --compare`.
pub fn side_by_side(left: &DrillReport, right: &DrillReport) -> String {
    let mut out = String::new();
    let mut row = |name: &str, value: &dyn Fn(&DrillReport) -> String| {
        let _ = writeln!(out, "  {name:<46} {:>16} {:>16}", value(left), value(right));
    };
    row("", &|r| r.stack_words().to_string());
    row("commands", &|r| r.commands.to_string());
    row("ok", &|r| r.ok.to_string());
    row("failed", &|r| r.failed.to_string());
    row("retried", &|r| r.retried.to_string());
    row("handoffs", &|r| r.handoffs.to_string());
    row("reconnects", &|r| r.reconnects.to_string());
    row("commands in windows", &|r| {
        r.window_latency.commands.to_string()
    });
    row("failed in windows", &|r| {
        r.window_latency.failed.to_string()
    });
    for (scope, windows) in [("latency", false), ("latency in windows", true)] {
        let pick = move |r: &DrillReport| {
            if windows {
                r.window_latency
            } else {
                r.latency
            }
        };
        row(&format!("{scope} p50"), &|r| human_us(pick(r).p50_us));
        row(&format!("{scope} p99"), &|r| human_us(pick(r).p99_us));
        row(&format!("{scope} p99.9"), &|r| human_us(pick(r).p999_us));
        row(&format!("{scope} max"), &|r| human_us(pick(r).max_us));
    }
    let mut names: Vec<&String> = left
        .notifications
        .keys()
        .chain(right.notifications.keys())
        .collect();
    names.sort();
    names.dedup();
    for name in names {
        row(&format!("notification {name}"), &|r| {
            r.notifications.get(name).copied().unwrap_or(0).to_string()
        });
    }
    let mut kinds: Vec<&String> = left.failures.keys().chain(right.failures.keys()).collect();
    kinds.sort();
    kinds.dedup();
    for kind in kinds {
        row(&format!("failed: {kind}"), &|r| {
            r.failures.get(kind).copied().unwrap_or(0).to_string()
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::maintenance::AzureEvent;
    use std::time::SystemTime;

    fn at(ms: u64, kind: EventKind) -> Observed {
        Observed {
            at: Duration::from_millis(ms),
            kind,
        }
    }

    fn azure(kind: AzureEventKind) -> EventKind {
        EventKind::Azure(AzureEvent {
            kind,
            start_time: None,
            received_at: SystemTime::now(),
            is_replica: false,
            ip_address: None,
            ssl_port: None,
            non_ssl_port: None,
        })
    }

    #[test]
    fn windows_pair_starts_and_ends_by_sequence_number() {
        let ms = Duration::from_millis;
        let observed = [
            at(
                100,
                EventKind::Notification(Notification::Migrating {
                    seq: 1,
                    time: ms(2000),
                    shards: vec![],
                }),
            ),
            at(
                200,
                EventKind::Notification(Notification::FailingOver {
                    seq: 2,
                    time: ms(1000),
                    shards: vec![],
                }),
            ),
            at(
                900,
                EventKind::Notification(Notification::Migrated {
                    seq: 1,
                    shards: vec![],
                }),
            ),
            at(
                1000,
                EventKind::Notification(Notification::Moving {
                    seq: 3,
                    time: ms(2000),
                    endpoint: None,
                }),
            ),
            at(1500, azure(AzureEventKind::NodeMaintenanceStarting)),
            at(1600, azure(AzureEventKind::NodeMaintenanceStart)),
            at(1800, azure(AzureEventKind::NodeMaintenanceEnded)),
        ];
        let windows = windows_from_events(&observed, ms(2500));
        let got: Vec<(&str, u64, u64)> = windows
            .iter()
            .map(|w| {
                (
                    w.label.as_str(),
                    w.start.as_millis() as u64,
                    w.end.as_millis() as u64,
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                ("MIGRATING", 100, 900),
                // FAILED_OVER never came: open until the end of the drill.
                ("FAILING_OVER", 200, 2500),
                // The grace period, cut at the end of the drill.
                ("MOVING", 1000, 2500),
                ("azure", 1500, 1800),
            ]
        );
    }

    #[test]
    fn commands_are_counted_inside_a_window_by_their_start() {
        let config = DrillConfig::default();
        let sample = |start_ms: u32, latency_ms: u32, failure| Sample {
            start_us: start_ms * 1000,
            latency_us: latency_ms * 1000,
            failure,
        };
        let samples = vec![
            sample(50, 1, None),
            sample(150, 900, None), // starts inside, ends after the window
            sample(180, 2, Some(1)),
            sample(450, 3, Some(2)),
        ];
        let report = build(Inputs {
            config: &config,
            samples,
            windows: vec![Window {
                label: "moving".into(),
                start: Duration::from_millis(100),
                end: Duration::from_millis(300),
            }],
            observed: &[],
            stats: ClientStats::default(),
            elapsed: Duration::from_millis(500),
        });
        assert_eq!((report.commands, report.ok, report.failed), (4, 2, 2));
        assert_eq!(report.window_latency.commands, 2);
        assert_eq!(report.window_latency.failed, 1);
        assert!(report.window_latency.max_us >= 899_000, "{report}");
        assert_eq!(report.failures.get("connection_lost"), Some(&1));
        assert_eq!(report.failures.get("not_sent"), Some(&1));
        assert_eq!(report.timeline.len(), 6);
        let b = report.timeline[1];
        assert_eq!((b.commands, b.failed), (2, 1));
        assert_eq!(b.max_us, 900_000);
        assert_eq!(report.timeline[2].commands, 0);
        let text = report.to_string();
        assert!(text.contains("failed               2"), "{text}");
    }

    #[test]
    fn latencies_read_in_the_right_unit() {
        assert_eq!(human_us(210), "0.21 ms");
        assert_eq!(human_us(12_345), "12.3 ms");
        assert_eq!(human_us(1_250_000), "1.25 s");
    }
}
