//! When the scenarios are played, and playing them on the simulator.

use std::time::{Duration, Instant};

use super::report::Window;
use super::{DrillConfig, Progress, Scenario};
use crate::sim::{AzureEvent, AzureEventKind, MigrateSlots, Scope, SimError, Simulator, Slots};

/// The pause between the end of one scenario and the start of the next, at least.
const REST: Duration = Duration::from_millis(300);
/// How long a node refuses connections after a `MOVING` with a null endpoint.
const NULL_OUTAGE: Duration = Duration::from_millis(500);
/// The latency Azure maintenance adds to the node's replies.
const AZURE_LATENCY: Duration = Duration::from_millis(100);

/// When each scenario starts and how long it lasts.
#[derive(Debug, Clone)]
pub(crate) struct Schedule {
    items: Vec<Planned>,
    lead: Duration,
}

#[derive(Debug, Clone, Copy)]
struct Planned {
    scenario: Scenario,
    /// When it is due, from the start of the load.
    at: Duration,
    /// The length of its maintenance (the grace period for `MOVING`).
    length: Duration,
}

/// Rounded up to whole seconds: notifications give their times in seconds.
fn whole_seconds(d: Duration) -> Duration {
    Duration::from_secs(d.as_millis().div_ceil(1000).max(1) as u64)
}

impl Schedule {
    /// The scenarios spread over `duration`: a lead-in of load first, then one slot each, the
    /// maintenance in the first half of its slot.
    pub(crate) fn new(scenarios: &[Scenario], duration: Duration) -> Schedule {
        let lead = (duration / 10).clamp(Duration::from_millis(300), Duration::from_secs(2));
        let n = u32::try_from(scenarios.len()).unwrap_or(u32::MAX).max(1);
        let slot = duration.saturating_sub(lead * 2) / n;
        let active = (slot / 2).clamp(Duration::from_secs(1), Duration::from_secs(5));
        let items = scenarios
            .iter()
            .zip(0u32..)
            .map(|(&scenario, i)| Planned {
                scenario,
                at: lead + slot * i,
                length: match scenario {
                    Scenario::Migrate | Scenario::Azure | Scenario::MigrateSlots => active,
                    Scenario::Failover => active.min(Duration::from_secs(3)),
                    Scenario::Moving | Scenario::MovingNull => whole_seconds(active),
                },
            })
            .collect();
        Schedule { items, lead }
    }

    /// The load after the last scenario, before the drill ends.
    pub(crate) fn tail(&self) -> Duration {
        self.lead
    }

    /// How long the load must run for every scenario to be played, the tail included.
    pub(crate) fn needs(&self) -> Duration {
        let mut end = Duration::ZERO;
        for p in &self.items {
            let start = if end.is_zero() {
                p.at
            } else {
                p.at.max(end + REST)
            };
            end = start + p.length + extra(p.scenario);
        }
        end + self.lead
    }
}

/// How much longer than its length a scenario's window lasts.
fn extra(scenario: Scenario) -> Duration {
    match scenario {
        Scenario::MovingNull => NULL_OUTAGE,
        _ => Duration::ZERO,
    }
}

/// How long a window lasts after its scenario returns: the simulator closes a node's connections
/// as a `MOVING`'s grace period ends, and the commands caught by that close fail a moment later,
/// still inside the window. Shorter than the rest between scenarios.
fn tail(scenario: Scenario) -> Duration {
    match scenario {
        Scenario::Moving => Duration::from_millis(250),
        _ => Duration::ZERO,
    }
}

/// Plays the schedule on `sim`, the client on node 0; returns the maintenance windows.
pub(crate) async fn play(
    sim: &Simulator,
    schedule: &Schedule,
    t0: Instant,
    progress: &Progress,
    config: &DrillConfig,
) -> Result<Vec<Window>, SimError> {
    let mut windows = Vec::new();
    // The node the client is on: a `MOVING` takes it to the other one.
    let mut node = 0;
    let mut last_end: Option<Instant> = None;
    for p in &schedule.items {
        let due = t0 + p.at;
        let due = last_end.map_or(due, |end| due.max(end + REST));
        tokio::time::sleep_until(due.into()).await;
        progress.set_phase(p.scenario.name());
        let start = t0.elapsed();
        node = play_one(sim, p.scenario, node, p.length, config).await?;
        let end = t0.elapsed() + tail(p.scenario);
        windows.push(Window {
            label: p.scenario.name().to_string(),
            start,
            end,
        });
        last_end = Some(Instant::now());
        progress.set_phase("load");
    }
    Ok(windows)
}

/// Plays one scenario on `node`; returns the node the client is on afterwards.
async fn play_one(
    sim: &Simulator,
    scenario: Scenario,
    node: usize,
    length: Duration,
    config: &DrillConfig,
) -> Result<usize, SimError> {
    match scenario {
        Scenario::MigrateSlots => {
            let slots = drill_slots(config)?;
            // The move starts half-way through the window's planned length (at most 1 s
            // after SMIGRATING); the window lasts until SMIGRATED is sent.
            let options = MigrateSlots::new().delay((length / 2).min(Duration::from_secs(1)));
            sim.migrate_slots_with(&slots, MIGRATE_SLOTS_TO, options)
                .await?;
        }
        Scenario::Migrate => {
            sim.migrate(node, length).await?;
        }
        Scenario::Failover => {
            sim.failover(node, length).await?;
        }
        Scenario::MovingNull => {
            sim.moving_null(node, length, NULL_OUTAGE)
                .await?
                .done()
                .await;
        }
        Scenario::Moving => {
            let to = 1 - node;
            sim.moving(node, to, length).await?.done().await;
            // The old address serves again, for clients that dial it after the move (as a
            // database's public address leads to the new node once the move is over).
            sim.restore(node)?;
            return Ok(to);
        }
        Scenario::Azure => {
            let port = sim.try_node(node).map_or(0, |n| n.port());
            let event = |kind| AzureEvent::new(kind).ip_address("127.0.0.1").ports(0, port);
            sim.azure(Scope::All, &event(AzureEventKind::Starting))?;
            sim.latency(node, AZURE_LATENCY)?;
            tokio::time::sleep(length / 2).await;
            sim.azure(Scope::All, &event(AzureEventKind::FailoverComplete))?;
            tokio::time::sleep(length / 2).await;
            sim.latency(node, Duration::ZERO)?;
            sim.azure(Scope::All, &event(AzureEventKind::Ended))?;
        }
    }
    Ok(node)
}

/// The simulator node whose cluster node the `migrate-slots` scenario moves slots to.
const MIGRATE_SLOTS_TO: usize = 1;
/// How many of the drill's `GET`/`SET` keys have their slots moved.
const MIGRATED_KEYS: usize = 64;

/// The slots `migrate-slots` moves: those of every task's counter and of the first
/// `MIGRATED_KEYS` keys, so that every task's commands meet the move.
fn drill_slots(config: &DrillConfig) -> Result<Slots, SimError> {
    let mut slots: Vec<u16> = (0..config.keys.min(MIGRATED_KEYS))
        .map(|k| crate::cluster::key_slot(format!("drill:{k}").as_bytes()))
        .chain(
            (0..config.concurrency)
                .map(|t| crate::cluster::key_slot(format!("drill:counter:{t}").as_bytes())),
        )
        .collect();
    slots.sort_unstable();
    slots.dedup();
    Slots::from_ranges(slots.into_iter().map(|s| s..=s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_scenario_fits_in_the_default_twenty_seconds() {
        let s = Schedule::new(&Scenario::ALL, Duration::from_secs(20));
        assert!(s.needs() <= Duration::from_secs(20), "{:?}", s.needs());
        // In order, each after the one before, the movings in whole seconds.
        for pair in s.items.windows(2) {
            assert!(pair[0].at + pair[0].length <= pair[1].at, "{pair:?}");
        }
        for p in &s.items {
            if matches!(p.scenario, Scenario::Moving | Scenario::MovingNull) {
                assert_eq!(p.length.subsec_nanos(), 0, "{p:?}");
            }
        }
    }

    #[test]
    fn a_short_drill_runs_on_until_its_scenarios_are_over() {
        let s = Schedule::new(&[Scenario::Moving], Duration::from_secs(3));
        assert!(s.needs() <= Duration::from_secs(3), "{:?}", s.needs());
        let s = Schedule::new(&Scenario::ALL, Duration::from_secs(3));
        assert!(s.needs() > Duration::from_secs(3), "{:?}", s.needs());
        assert!(Schedule::new(&[], Duration::from_secs(3)).needs() < Duration::from_secs(3));
    }
}
