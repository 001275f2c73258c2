//! [`RelaxedTimeoutLayer`].

use std::sync::Arc;
use std::time::Duration;

use tower_layer::Layer;

use super::{Relaxation, RelaxedTimeout};
use crate::endpoint::Endpoint;
use crate::maintenance::{EndpointStatus, Maintenance};

/// [`Layer`] that applies [`RelaxedTimeout`]; see the [module docs](super).
#[derive(Debug, Clone)]
pub struct RelaxedTimeoutLayer<R> {
    timeout: Duration,
    relaxed: Duration,
    relaxation: R,
}

impl<R: Relaxation + Clone> RelaxedTimeoutLayer<R> {
    /// A normal `timeout`, and `relaxed` while `relaxation` says so.
    pub const fn new(timeout: Duration, relaxed: Duration, relaxation: R) -> Self {
        RelaxedTimeoutLayer {
            timeout,
            relaxed,
            relaxation,
        }
    }
}

impl RelaxedTimeoutLayer<Arc<EndpointStatus>> {
    /// A normal `timeout`, relaxed as `maintenance` says for `endpoint` (the stack's configured
    /// address), to the relaxed timeout of its configuration: the form to use in a stack,
    /// where every maintenance setting lives in one [`MaintenanceConfig`](crate::MaintenanceConfig).
    pub fn from_maintenance(
        timeout: Duration,
        maintenance: &Maintenance,
        endpoint: &Endpoint,
    ) -> Self {
        RelaxedTimeoutLayer::new(
            timeout,
            maintenance.config().relaxed_timeout(),
            maintenance.status(endpoint),
        )
    }
}

impl<S, R: Relaxation + Clone> Layer<S> for RelaxedTimeoutLayer<R> {
    type Service = RelaxedTimeout<S, R>;

    fn layer(&self, inner: S) -> Self::Service {
        RelaxedTimeout::new(inner, self.timeout, self.relaxed, self.relaxation.clone())
    }
}
