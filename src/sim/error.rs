//! What can go wrong in the simulator, as one error type callers can act on.

use std::fmt;

/// What went wrong in the simulator.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum SimError {
    /// There is no node with this index (never started, or removed).
    NoSuchNode {
        /// The index asked for.
        node: usize,
    },
    /// A node could not listen on its address.
    Bind {
        /// The address.
        addr: String,
        /// The operating system's error.
        message: String,
    },
    /// An argument is out of range or malformed.
    InvalidArgument {
        /// What is wrong.
        message: String,
    },
    /// A node of the real cluster (cluster mode) could not be reached, or refused a command of
    /// a scenario.
    Cluster {
        /// The cluster node's address.
        addr: String,
        /// What happened.
        message: String,
    },
    /// A process the simulator starts ([`LocalCluster`](super::LocalCluster): `redis-server`,
    /// `redis-cli`) is missing, failed to start, or did not do its part.
    Process {
        /// The program.
        program: String,
        /// What happened.
        message: String,
    },
}

impl fmt::Display for SimError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SimError::NoSuchNode { node } => {
                write!(
                    f,
                    "the simulator has no node {node} (nodes are numbered from 0)"
                )
            }
            SimError::Bind { addr, message } => write!(
                f,
                "cannot listen on {addr}: {message}; pick another port or stop what uses it"
            ),
            SimError::InvalidArgument { message } => write!(f, "invalid argument: {message}"),
            SimError::Cluster { addr, message } => write!(
                f,
                "the cluster node at {addr}: {message}; check that the cluster is up and healthy (redis-cli --cluster check)"
            ),
            SimError::Process { program, message } => write!(f, "{program}: {message}"),
        }
    }
}

impl std::error::Error for SimError {}
