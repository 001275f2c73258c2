//! [`HandoffRetryLayer`].

use tower_layer::Layer;

use super::{HandoffConfig, HandoffRetry, MakeConnection};

/// [`Layer`] that turns a [`MakeConnection`] (a connector) into a [`HandoffRetry`] stack.
/// See the [module docs](super) for what it does.
///
/// Applying it spawns the stack's background task, so it needs a Tokio runtime.
#[derive(Debug, Clone, Default)]
pub struct HandoffRetryLayer {
    config: HandoffConfig,
}

impl HandoffRetryLayer {
    /// A layer with these settings.
    pub fn new(config: HandoffConfig) -> Self {
        HandoffRetryLayer { config }
    }
}

impl<M: MakeConnection> Layer<M> for HandoffRetryLayer {
    type Service = HandoffRetry;

    fn layer(&self, connector: M) -> HandoffRetry {
        HandoffRetry::new(connector, self.config.clone())
    }
}
