//! Faults: what goes wrong with a node on command, until it is restored.
//!
//! A node's fault state ([`Faults`](super::proxy::Faults)) is applied by the proxy: connections
//! refused, traffic held, latency added to replies, replies trickled byte by byte. Scenarios use
//! the same state for as long as they last; faults set here last until [`Simulator::restore`].

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use super::proxy::{self, Node};
use super::{Core, Scope, SimError, Simulator};

/// Undoes a counted fault when a scenario ends, even if its future is dropped half-way.
pub(super) struct FaultGuard<'a> {
    pub(super) core: &'a Core,
    pub(super) node: Arc<Node>,
    pub(super) undo: fn(&mut proxy::Faults),
}

impl Drop for FaultGuard<'_> {
    fn drop(&mut self) {
        self.core.update_faults(&self.node, self.undo);
    }
}

// ===== impl Core =====

impl Core {
    /// Changes the fault state of a node; a migration adds the simulator's migration latency.
    pub(super) fn update_faults(&self, node: &Node, f: impl FnOnce(&mut proxy::Faults)) {
        node.update_faults(self.migrate_latency, f);
    }
}

// ===== impl Simulator =====

impl Simulator {
    /// Refuses new connections to `node` (its listener is closed) until [`restore`](Self::restore).
    pub fn refuse(&self, node: usize) -> Result<(), SimError> {
        let node = self.core.node(node)?;
        self.core.update_faults(&node, |f| f.refusing = true);
        Ok(())
    }

    /// Blackholes `node` until [`restore`](Self::restore), in both directions: connections are
    /// accepted but nothing is forwarded (what clients send is held) and nothing is written to
    /// its clients, on new and established connections alike: no replies (also to commands
    /// forwarded before), no Pub/Sub messages, no notifications. What was held goes through
    /// once it is restored. A close (a reset, the end of a `MOVING`'s grace period) still
    /// reaches the client.
    pub fn blackhole(&self, node: usize) -> Result<(), SimError> {
        let node = self.core.node(node)?;
        self.core.update_faults(&node, |f| f.blackhole = true);
        Ok(())
    }

    /// Blackholes the connections in `scope` that are open now, in both directions as
    /// [`blackhole`](Self::blackhole) does, while the node keeps serving new connections: a
    /// peer or a network path that went silent without closing anything. Lasts until
    /// [`restore`](Self::restore) of their node; returns how many connections went dark.
    pub fn blackhole_connections(&self, scope: impl Into<Scope>) -> Result<usize, SimError> {
        let conns = self.scoped(scope.into())?;
        for c in &conns {
            c.set_dark(true);
        }
        Ok(conns.len())
    }

    /// Writes everything `node` sends to its clients one byte at a time, each byte its own
    /// write followed by `pause` (zero: a yield to the runtime, so the client reads the bytes
    /// one by one), until [`restore`](Self::restore); `None` ends it. Frames stay whole and in
    /// order: only how they are cut on the wire changes.
    pub fn trickle(&self, node: usize, pause: Option<Duration>) -> Result<(), SimError> {
        let node = self.core.node(node)?;
        self.core.update_faults(&node, |f| f.trickle = pause);
        Ok(())
    }

    /// Resets (TCP RST) every connection of `node`; returns how many.
    pub fn reset_all(&self, node: usize) -> Result<usize, SimError> {
        let node = self.core.node(node)?;
        Ok(self.core.close_all(&node, true))
    }

    /// Adds `latency` to every reply of `node` (zero removes it).
    pub fn latency(&self, node: usize, latency: Duration) -> Result<(), SimError> {
        let node = self.core.node(node)?;
        self.core.update_faults(&node, |f| f.latency = latency);
        Ok(())
    }

    /// Writes bytes that are not RESP to every client of `node` (between two replies);
    /// returns how many clients got them.
    pub fn garbage(&self, node: usize) -> Result<usize, SimError> {
        let node = self.core.node(node)?;
        let bytes = Bytes::from_static(b"\x00\x13garbage\xff\xfe not RESP\r\n");
        Ok(self
            .core
            .conns(Some(node.key))
            .iter()
            .filter(|c| self.core.send_recorded(c, "garbage", None, bytes.clone()))
            .count())
    }

    /// Writes a raw frame to the clients in `scope` (between two replies); returns how many
    /// clients got it. Nothing checks that the bytes are valid RESP.
    pub fn send_raw(
        &self,
        scope: impl Into<Scope>,
        bytes: impl Into<Bytes>,
    ) -> Result<usize, SimError> {
        let bytes = bytes.into();
        Ok(self
            .scoped(scope.into())?
            .iter()
            .filter(|c| self.core.send_recorded(c, "raw", None, bytes.clone()))
            .count())
    }

    /// Ends the faults of `node`: accepts connections again, no blackhole (of the node or of
    /// its connections), no added latency, no trickle. Migrations and failovers in progress
    /// keep their effect until they end.
    pub fn restore(&self, node: usize) -> Result<(), SimError> {
        let node = self.core.node(node)?;
        self.core.update_faults(&node, |f| {
            f.refusing = false;
            f.blackhole = false;
            f.latency = Duration::ZERO;
            f.trickle = None;
        });
        for c in self.core.conns(Some(node.key)) {
            c.set_dark(false);
        }
        Ok(())
    }
}
