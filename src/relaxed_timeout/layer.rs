//! [`RelaxedTimeoutLayer`].

use std::time::Duration;

use tower_layer::Layer;

use super::{Relaxation, RelaxedTimeout};

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

impl<S, R: Relaxation + Clone> Layer<S> for RelaxedTimeoutLayer<R> {
    type Service = RelaxedTimeout<S, R>;

    fn layer(&self, inner: S) -> Self::Service {
        RelaxedTimeout::new(inner, self.timeout, self.relaxed, self.relaxation.clone())
    }
}
