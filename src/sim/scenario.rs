//! Scenarios: the maintenance the simulator plays on command, as Redis Software and Azure do.
//!
//! Each scenario sends its notifications to the clients it addresses, changes the node's fault
//! state for as long as the maintenance lasts, and undoes it at the end (also when its future is
//! dropped half-way).

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;

use super::fault::FaultGuard;
use super::notification::{end_frame, endpoint_for, moving_frame, secs_ceil, start_frame, Window};
use super::proxy::{Conn, Node};
use super::resp::Value;
use super::{lock, AzureEvent, SimError, Simulator, AZURE_CHANNEL};

/// Which clients a scenario addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// Every client of every node.
    All,
    /// Every client of one node.
    Node(usize),
    /// One connection, by its id (`conn_<millis>_<random>`).
    Connection(String),
}

impl From<usize> for Scope {
    fn from(node: usize) -> Self {
        Scope::Node(node)
    }
}

impl From<&str> for Scope {
    fn from(id: &str) -> Self {
        Scope::Connection(id.to_string())
    }
}

/// A `MOVING` that was sent; the old node closes its connections in the background.
#[derive(Debug)]
pub struct Moving {
    seq: i64,
    recipients: usize,
    task: JoinHandle<()>,
}

impl Moving {
    /// The notification's sequence number.
    pub fn seq(&self) -> i64 {
        self.seq
    }

    /// How many clients were sent the notification.
    pub fn recipients(&self) -> usize {
        self.recipients
    }

    /// Waits until the grace period is over and the old node's connections are closed (and, for
    /// [`Simulator::moving_null`], until the node accepts connections again).
    pub async fn done(self) {
        let _ = self.task.await;
    }

    /// Cancels what is still to come (closing, refusing, coming back).
    pub fn abort(&self) {
        self.task.abort();
    }
}

// ===== impl Simulator =====

impl Simulator {
    /// A shard migration on `node`: `MIGRATING` (seq, time, shard ids) to its opted-in clients,
    /// added latency on its replies for `duration`, then `MIGRATED` (same seq). Returns the seq.
    ///
    /// With [`Habits::effect_delay`](super::Habits::effect_delay) the latency begins that long
    /// after `MIGRATING` (and `duration` counts from then); without, it is in force before any
    /// client hears of the migration.
    pub async fn migrate(&self, node: usize, duration: Duration) -> Result<i64, SimError> {
        self.window(
            node,
            duration,
            ("MIGRATING", "MIGRATED"),
            |f| f.migrations += 1,
            |f| f.migrations = f.migrations.saturating_sub(1),
        )
        .await
    }

    /// An in-place upgrade of `node`, as Redis Software does it: `MIGRATING` (timeouts relax),
    /// then after `relax_for` every connection of the node is closed with no `MOVING` and no
    /// `MIGRATED`; the node accepts new connections at once. Clients must reconnect on their
    /// own. Returns the seq.
    pub async fn in_place_upgrade(
        &self,
        node: usize,
        relax_for: Duration,
    ) -> Result<i64, SimError> {
        let core = &*self.core;
        let node = core.node(node)?;
        let seq = core.next_seq();
        let shard = node.shard_id.clone();
        let habits = *lock(&core.habits);
        core.notify(&node, "MIGRATING", seq, |_| {
            start_frame("MIGRATING", seq, secs_ceil(relax_for), &shard, &habits)
        });
        tokio::time::sleep(relax_for).await;
        let closed = core.close_all(&node, false);
        tracing::info!(node = %node.id, closed, "in-place upgrade: connections dropped with no MOVING");
        Ok(seq)
    }

    /// A failover of `node`: `FAILING_OVER` to its opted-in clients, commands held (not
    /// forwarded) for `duration`, then `FAILED_OVER` (same seq). Returns the seq.
    ///
    /// [`Habits::effect_delay`](super::Habits::effect_delay) delays the hold as it delays a
    /// migration's latency.
    pub async fn failover(&self, node: usize, duration: Duration) -> Result<i64, SimError> {
        self.window(
            node,
            duration,
            ("FAILING_OVER", "FAILED_OVER"),
            |f| f.failovers += 1,
            |f| f.failovers = f.failovers.saturating_sub(1),
        )
        .await
    }

    /// A maintenance window on `node`: the start notification, the fault `apply` sets (at once,
    /// or after the habits' effect delay) for `duration`, undone by `undo` (also when the
    /// scenario is dropped), then the end notification with the same seq.
    async fn window(
        &self,
        node: usize,
        duration: Duration,
        (start, end): (&'static str, &'static str),
        apply: fn(&mut super::proxy::Faults),
        undo: fn(&mut super::proxy::Faults),
    ) -> Result<i64, SimError> {
        let core = &*self.core;
        let node = core.node(node)?;
        let seq = core.next_seq();
        let shard = node.shard_id.clone();
        let habits = *lock(&core.habits);
        let delay = habits.effect_delay;
        if delay.is_zero() {
            core.update_faults(&node, apply);
        }
        *lock(&node.window) = Some(Window::Start {
            name: start,
            seq,
            ends: Instant::now() + delay + duration,
        });
        core.notify(&node, start, seq, |_| {
            start_frame(start, seq, secs_ceil(delay + duration), &shard, &habits)
        });
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
            core.update_faults(&node, apply);
        }
        {
            let _guard = FaultGuard {
                core,
                node: Arc::clone(&node),
                undo,
            };
            tokio::time::sleep(duration).await;
        }
        *lock(&node.window) = None;
        core.notify(&node, end, seq, |_| end_frame(end, seq, &shard, &habits));
        *lock(&node.last_end) = Some((end, seq));
        Ok(seq)
    }

    /// `MOVING` from node `from` to node `to`: each opted-in client of `from` gets `to`'s address
    /// in the form it asked for (ip: `127.0.0.1:port`, fqdn: `localhost:port`, none: null) and
    /// the grace period in seconds. After `grace`, every connection of `from` is closed and new
    /// ones are refused until [`restore`](Self::restore). Returns once the notification is sent.
    pub async fn moving(
        &self,
        from: usize,
        to: usize,
        grace: Duration,
    ) -> Result<Moving, SimError> {
        let core = &self.core;
        let from_node = core.node(from)?;
        let to_node = core.node(to)?;
        let seq = core.next_seq();
        let time = secs_ceil(grace);
        *lock(&from_node.window) = Some(Window::Moving {
            seq,
            ends: Instant::now() + grace,
            to: Some(Arc::clone(&to_node)),
        });
        let recipients = core.notify(&from_node, "MOVING", seq, |kind| {
            moving_frame(seq, time, endpoint_for(&to_node, kind))
        });
        let task = self.after_grace(from_node, grace, None);
        Ok(Moving {
            seq,
            recipients,
            task,
        })
    }

    /// `MOVING` with a null endpoint to every opted-in client of `node`: the address stays, the
    /// node behind it changes. After `grace` the connections that existed when the `MOVING` was
    /// sent are closed and new ones refused for `outage`, then it accepts again at the same
    /// address. Connections made after the `MOVING` (a client reconnecting at half the grace
    /// period, as it should) count as made to the new node and stay open.
    pub async fn moving_null(
        &self,
        node: usize,
        grace: Duration,
        outage: Duration,
    ) -> Result<Moving, SimError> {
        let core = &self.core;
        let node = core.node(node)?;
        let seq = core.next_seq();
        let time = secs_ceil(grace);
        let existing: Vec<String> = core
            .conns(Some(node.key))
            .iter()
            .map(|c| c.id.clone())
            .collect();
        *lock(&node.window) = Some(Window::Moving {
            seq,
            ends: Instant::now() + grace,
            to: None,
        });
        let recipients = core.notify(&node, "MOVING", seq, |_| moving_frame(seq, time, None));
        let task = self.after_grace(node, grace, Some((outage, existing)));
        Ok(Moving {
            seq,
            recipients,
            task,
        })
    }

    /// After `grace`: refuse new connections and close the node's connections (with an outage,
    /// only the listed ones, and accept again after it).
    fn after_grace(
        &self,
        node: Arc<Node>,
        grace: Duration,
        outage: Option<(Duration, Vec<String>)>,
    ) -> JoinHandle<()> {
        let core = Arc::clone(&self.core);
        tokio::spawn(async move {
            let stop = node.stop.clone();
            let run = async {
                tokio::time::sleep(grace).await;
                // Connections from now on are made to the node that took over.
                *lock(&node.window) = None;
                core.update_faults(&node, |f| f.refusing = true);
                let closed = match &outage {
                    None => core.close_all(&node, false),
                    Some((_, old)) => old
                        .iter()
                        .filter_map(|id| core.conn(id))
                        .filter(|c| c.close(false))
                        .count(),
                };
                tracing::info!(node = %node.id, closed, "grace period over: connections closed, new ones refused");
                if let Some((outage, _)) = outage {
                    tokio::time::sleep(outage).await;
                    core.update_faults(&node, |f| f.refusing = false);
                    tracing::info!(node = %node.id, "node is back");
                }
            };
            tokio::select! {
                _ = stop.cancelled() => {}
                _ = run => {}
            }
        })
    }

    /// Publishes an Azure maintenance event on `AzureRedisEvents` to the clients in `scope`
    /// that are subscribed to it (RESP3 clients get a push, RESP2 clients a Pub/Sub message).
    /// Returns how many clients got it.
    pub fn azure(&self, scope: impl Into<Scope>, event: &AzureEvent) -> Result<usize, SimError> {
        let payload = event.payload();
        let conns = self.scoped(scope.into())?;
        let mut sent = 0;
        for conn in conns {
            let state = conn.state();
            if !state.azure {
                continue;
            }
            let msg = Value::Push(vec![
                Value::bulk("message"),
                Value::bulk(AZURE_CHANNEL),
                Value::bulk(&payload),
            ]);
            if self
                .core
                .send_recorded(&conn, event.kind.name(), None, msg.encode(state.resp3))
            {
                sent += 1;
            }
        }
        tracing::info!(kind = %event.kind, clients = sent, "Azure event sent");
        Ok(sent)
    }

    /// The live connections `scope` addresses.
    pub(super) fn scoped(&self, scope: Scope) -> Result<Vec<Arc<Conn>>, SimError> {
        Ok(match scope {
            Scope::All => self.core.conns(None),
            Scope::Node(n) => {
                self.core.node(n)?;
                self.core.conns(Some(n))
            }
            Scope::Connection(id) => self.core.conn(&id).into_iter().collect(),
        })
    }
}
