//! [`HandoffRetryLayer`].

use tower_layer::Layer;

use super::{HandoffConfig, HandoffRetry, MakeConnection};
use crate::maintenance::Maintenance;

/// [`Layer`] that turns a [`MakeConnection`] (a connector) into a [`HandoffRetry`] stack.
/// See the [module docs](super) for what it does.
///
/// Applying it spawns the stack's background task, so it needs a Tokio runtime.
#[derive(Debug, Clone)]
pub struct HandoffRetryLayer {
    maintenance: Maintenance,
    config: HandoffConfig,
}

impl HandoffRetryLayer {
    /// A layer that listens on and reports to `maintenance`, with these settings.
    pub fn new(maintenance: Maintenance, config: HandoffConfig) -> Self {
        HandoffRetryLayer {
            maintenance,
            config,
        }
    }
}

impl<M: MakeConnection> Layer<M> for HandoffRetryLayer {
    type Service = HandoffRetry;

    fn layer(&self, connector: M) -> HandoffRetry {
        HandoffRetry::new(connector, self.maintenance.clone(), self.config.clone())
    }
}
