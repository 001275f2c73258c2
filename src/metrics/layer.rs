//! [`MetricsHookLayer`].

use tower_layer::Layer;

use super::{Metrics, MetricsHook};

/// [`Layer`] that applies [`MetricsHook`], recording into a [`Metrics`] handle; see the
/// [module docs](super).
#[derive(Debug, Clone)]
pub struct MetricsHookLayer {
    metrics: Metrics,
}

impl MetricsHookLayer {
    /// Records every command of the wrapped service into `metrics`.
    pub const fn new(metrics: Metrics) -> Self {
        MetricsHookLayer { metrics }
    }

    /// The handle commands are recorded into.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }
}

impl<S> Layer<S> for MetricsHookLayer {
    type Service = MetricsHook<S>;

    fn layer(&self, inner: S) -> Self::Service {
        MetricsHook::new(inner, self.metrics.clone())
    }
}
