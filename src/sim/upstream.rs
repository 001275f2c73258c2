//! The upstream side of a client connection: where it goes, and the frames it hands back.
//!
//! Both upstreams, a redis-server reached over TCP and a session of the embedded store, hand
//! their replies to the connection's writer as [`UpFrame`]s. The type lives here, apart from the
//! proxy and the store, so that each of them depends on it and neither on the other.

use std::time::Instant;

use bytes::Bytes;

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
