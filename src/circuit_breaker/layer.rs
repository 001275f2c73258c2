//! [`CircuitBreakerLayer`].

use std::sync::Arc;

use tower_layer::Layer;

use super::state::Shared;
use super::{CircuitBreaker, CircuitBreakerConfig, CircuitHandle};
use crate::endpoint::Endpoint;
use crate::maintenance::Maintenance;

/// [`Layer`] that applies [`CircuitBreaker`]; see the [module docs](super).
///
/// Every service the layer makes shares one circuit: the layer is the circuit of one
/// configured endpoint.
#[derive(Clone)]
pub struct CircuitBreakerLayer {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for CircuitBreakerLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CircuitBreakerLayer")
            .field("endpoint", &self.shared.endpoint)
            .field("config", &self.shared.config)
            .finish()
    }
}

impl CircuitBreakerLayer {
    /// A closed circuit for the stack configured with `endpoint` (the key of its state in
    /// `maintenance`, whose events it follows and reports its transitions to).
    ///
    /// Its background task starts now when called inside a Tokio runtime, otherwise with the
    /// first command; see the [module docs](super#runtime).
    pub fn new(maintenance: Maintenance, endpoint: Endpoint, config: CircuitBreakerConfig) -> Self {
        CircuitBreakerLayer {
            shared: Shared::new(maintenance, endpoint, config),
        }
    }

    /// A handle on the circuit: state, counters, `force_open` and `reset`.
    pub fn handle(&self) -> CircuitHandle {
        CircuitHandle {
            shared: self.shared.clone(),
        }
    }
}

impl<S> Layer<S> for CircuitBreakerLayer {
    type Service = CircuitBreaker<S>;

    fn layer(&self, inner: S) -> Self::Service {
        CircuitBreaker::from_shared(inner, self.shared.clone())
    }
}
