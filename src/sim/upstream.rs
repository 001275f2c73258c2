//! The upstream side of a client connection: where it goes, and the frames it hands back.
//!
//! [`Backend`] is what a user configures; each node holds it resolved into a [`Target`].
//! Both upstreams, a redis-server reached over TCP and a session of the embedded store, hand
//! their replies to the connection's writer as [`UpFrame`]s. The type lives here, apart from the
//! proxy and the store, so that each of them depends on it and neither on the other.

use std::time::Instant;

use bytes::Bytes;

use super::SimError;
use crate::endpoint::Endpoint;

/// What the nodes forward to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backend {
    /// A redis-server at `host:port`.
    Redis(String),
    /// The embedded in-memory store, shared by all nodes of the simulator (for demos and
    /// drills): strings, keys, hashes, lists, sets, sorted sets, transactions, blocking pops and
    /// Pub/Sub, answered as Redis 7.0 answers them.
    Memory,
}

// ===== impl Backend =====

impl Backend {
    /// A redis-server at `addr` (`host:port`).
    pub fn redis(addr: impl Into<String>) -> Self {
        Backend::Redis(addr.into())
    }

    /// Where a node's connections go: the backend with its address parsed.
    pub(crate) fn target(&self) -> Result<Target, SimError> {
        match self {
            Backend::Memory => Ok(Target::Memory),
            Backend::Redis(addr) => {
                let e: Endpoint = addr.parse().map_err(|e| SimError::InvalidArgument {
                    message: format!("backend address: {e}"),
                })?;
                Ok(Target::Redis {
                    host: e.host().to_string(),
                    port: e.port(),
                })
            }
        }
    }
}

/// A reply frame from upstream, and when it may be written (now, or later under added latency).
#[derive(Debug)]
pub(crate) struct UpFrame {
    pub(crate) bytes: Bytes,
    pub(crate) due: Instant,
}

/// Where a node's connections go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Target {
    Redis { host: String, port: u16 },
    Memory,
}

// ===== impl Target =====

impl Target {
    pub(crate) fn host(&self) -> &str {
        match self {
            Target::Redis { host, .. } => host,
            Target::Memory => "memory",
        }
    }

    pub(crate) fn port(&self) -> u16 {
        match self {
            Target::Redis { port, .. } => *port,
            Target::Memory => 0,
        }
    }
}
