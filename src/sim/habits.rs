//! Redis Software's habits, which a client must take in its stride: the shapes its notifications
//! come in, the delay between a notification and its effect, and what a connection that joins
//! during a maintenance window is sent.
//!
//! Set them with [`SimulatorBuilder::habits`](super::SimulatorBuilder::habits) or
//! [`Simulator::set_habits`](super::Simulator::set_habits). The defaults are the plain shapes
//! every scenario used before (shard ids as an array, `time` present, the effect at once, nothing
//! sent to late joiners); [`Habits::redis_software`] turns the habits on together.

use std::time::Duration;

/// How the shard ids of `MIGRATING`, `MIGRATED`, `FAILING_OVER`, `FAILED_OVER` are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum ShardIds {
    /// An array of bulk strings: `*1 $1 1`.
    #[default]
    Array,
    /// One simple string: `+[1]`.
    SimpleString,
    /// Left out.
    Absent,
}

/// What the simulator's notifications look like and when they act: the habits of the servers
/// it plays (PROTOCOL.md section 11), as options of its scenarios.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Habits {
    /// How shard ids are written.
    pub shard_ids: ShardIds,
    /// Whether `MIGRATING` carries its `time` (Redis Software sometimes leaves it out).
    pub migrating_without_time: bool,
    /// How long after `MIGRATING`/`FAILING_OVER` the slowdown or the pause begins (Redis
    /// Software's `state_machine_smart_client_handoffs_delay_ms`, 0 to 10 s, default 2 s there).
    /// Zero: the effect is in force before any client hears of it.
    pub effect_delay: Duration,
    /// Whether a connection that opts in during a window is sent the window's start notification
    /// (`MIGRATING`, `FAILING_OVER`) or its `MOVING` again, with the time left, which is 0 or
    /// negative once the window is over.
    pub late_joiners: bool,
}

impl Habits {
    /// Everything Redis Software does: shard ids as `+[1]`, `MIGRATING` without `time`, a 2 s
    /// delay before the effect, late joiners told. (The replay of the last end notification to
    /// a new connection is [`SimulatorBuilder::replay`](super::SimulatorBuilder::replay).)
    pub fn redis_software() -> Habits {
        Habits {
            shard_ids: ShardIds::SimpleString,
            migrating_without_time: true,
            effect_delay: Duration::from_secs(2),
            late_joiners: true,
        }
    }
}
