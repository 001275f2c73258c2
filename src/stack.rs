//! The recommended stack in one call.
//!
//! [`Stack::connect`] builds, over one multiplexed connection:
//!
//! ```text
//! MetricsHook         latency histograms and outcome counts; maintenance counts
//! CircuitBreaker      fails fast while the endpoint is down; holds commands through a handoff
//! RelaxedTimeout      timeout, relaxed (never tightened) while the endpoint is in maintenance
//! HandoffRetry        make-before-break handoffs on MOVING, reconnects, safe resends
//! NotificationDemux   maintenance notifications and Azure events into the Maintenance handle
//! Connection          RESP3, pipelined
//! ```
//!
//! The result is a cheap `Clone` [`tower::Service`] for commands, pipelines and transactions
//! (any [`Request`]): share it between axum handlers, tonic services or tasks as it is.
//! [`Stack::dedicated`] opens a connection of one's own under the same layers for `WATCH` and
//! other connection-state commands, which the shared one refuses. Each part stays available for
//! callers who want to assemble their own stack with `ServiceBuilder`, and
//! [`Stack::maintenance`] gives the handle to subscribe to what happens.
//!
//! ```no_run
//! use redis_handoff::{cmd, Stack};
//! use tower::ServiceExt;
//!
//! # async fn run() -> Result<(), redis_handoff::Error> {
//! let redis = Stack::connect("redis://127.0.0.1:6379").await?;
//! redis.clone().oneshot(cmd!("SET", "greeting", "hello")).await?;
//! // Typed: the reply converted to the type asked for.
//! let greeting: Option<String> = redis.query(cmd!("GET", "greeting")).await?;
//! let visits: i64 = redis.query(cmd!("INCR", "visits")).await?;
//! # Ok(()) }
//! ```

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tower_service::Service;

use crate::circuit_breaker::{CircuitBreaker, CircuitBreakerConfig, CircuitHandle};
use crate::command::{Command, ToArg};
use crate::connection::{ConnectOptions, Connector, Liveness};
use crate::dedicated::Dedicated;
use crate::demux::NotificationDemux;
use crate::endpoint::Endpoint;
use crate::error::Error;
use crate::handoff::{HandoffConfig, HandoffRetry};
use crate::maintenance::{EndpointStatus, Maintenance, MaintenanceConfig};
use crate::metrics::{Metrics, MetricsHook};
use crate::relaxed_timeout::{self, RelaxedTimeout};
use crate::reply::{FromReply, Reply};
use crate::request::{Request, Transaction};

/// The service type of the recommended stack.
pub type StackService =
    MetricsHook<CircuitBreaker<RelaxedTimeout<HandoffRetry, Arc<EndpointStatus>>>>;

/// The recommended stack; see the [module docs](self).
#[derive(Clone)]
pub struct Stack {
    // Cloned for every call in the usual `stack.clone().oneshot(..)`: every field is a
    // reference count touched by all tasks, so the stack keeps none of its own (the
    // maintenance handle is the handoff layer's).
    service: StackService,
}

impl fmt::Debug for Stack {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Stack")
            .field("handoff", self.handoff())
            .field("circuit", &self.circuit().state())
            .finish()
    }
}

/// Settings of a [`Stack`], with the defaults of the individual layers.
#[derive(Debug, Clone)]
pub struct StackBuilder {
    pub(crate) options: ConnectOptions,
    pub(crate) maintenance: MaintenanceConfig,
    pub(crate) handoff: HandoffConfig,
    pub(crate) circuit: CircuitBreakerConfig,
    pub(crate) timeout: Duration,
}

impl Stack {
    /// Connects to a `redis://` or `rediss://` URL with every default.
    pub async fn connect(url: &str) -> Result<Stack, Error> {
        Stack::builder(ConnectOptions::from_url(url)?)
            .connect()
            .await
    }

    /// A builder for these connection options.
    pub fn builder(options: ConnectOptions) -> StackBuilder {
        StackBuilder {
            options,
            maintenance: MaintenanceConfig::default(),
            handoff: HandoffConfig::default(),
            circuit: CircuitBreakerConfig::default(),
            timeout: Duration::from_secs(1),
        }
    }

    /// Sends `command` through every layer and converts its reply to `T` (any
    /// [`FromReply`] type: `String`, integers, floats, `bool`, `Option<T>`, `Vec<T>`, maps,
    /// tuples, ...). A reply of another shape is an [`Error::Conversion`]; the command ran.
    ///
    /// ```no_run
    /// use std::collections::HashMap;
    /// use redis_handoff::{cmd, Stack};
    ///
    /// # async fn run() -> Result<(), redis_handoff::Error> {
    /// let redis = Stack::connect("redis://127.0.0.1:6379").await?;
    /// let n: i64 = redis.query(cmd!("INCR", "visits")).await?;
    /// let user: HashMap<String, String> = redis.query(cmd!("HGETALL", "user:1")).await?;
    /// let missing: Option<String> = redis.query(cmd!("GET", "no-such-key")).await?;
    /// # Ok(()) }
    /// ```
    pub fn query<T: FromReply>(
        &self,
        command: Command,
    ) -> impl Future<Output = Result<T, Error>> + Send {
        let service = self.clone();
        async move { tower::ServiceExt::oneshot(service, command).await?.parse() }
    }

    /// The maintenance handle: notifications, handoffs, reconnects, as events and state.
    pub fn maintenance(&self) -> &Maintenance {
        self.handoff().maintenance()
    }

    /// The handoff layer: the current endpoint, counters, the stable push stream.
    pub fn handoff(&self) -> &HandoffRetry {
        self.service.get_ref().get_ref().get_ref()
    }

    /// The circuit breaker: its state, counters, and manual `force_open` / `reset`.
    pub fn circuit(&self) -> CircuitHandle {
        self.service.get_ref().handle()
    }

    /// The metrics: `metrics().snapshot()` for counts and percentiles.
    pub fn metrics(&self) -> &Metrics {
        self.service.metrics()
    }

    /// Opens a connection of one's own under the same layers (the same timeouts, circuit
    /// breaker and metrics as this stack, its own handoffs), for what a shared connection
    /// refuses: `WATCH`/`MULTI`/`EXEC` by hand, `SELECT`, client tracking. Closed when dropped.
    /// See [`Dedicated`].
    pub async fn dedicated(&self) -> Result<Dedicated<StackService>, Error> {
        let own = self.handoff().dedicated().await?.into_inner();
        let mut service = self.service.clone();
        *service.get_mut().get_mut().get_mut() = own;
        Ok(Dedicated::new(service))
    }

    /// The optimistic-locking loop on a dedicated connection opened for it:
    /// [`Dedicated::watch`]. For several transactions in a row, keep one
    /// [`dedicated`](Stack::dedicated) connection and call `watch` on it instead.
    pub async fn watch<K, F, Fut>(
        &self,
        keys: impl IntoIterator<Item = K>,
        attempts: u32,
        body: F,
    ) -> Result<Option<Vec<Result<Reply, Error>>>, Error>
    where
        K: ToArg,
        F: FnMut(StackService) -> Fut,
        Fut: std::future::Future<Output = Result<Option<Transaction>, Error>>,
    {
        self.dedicated().await?.watch(keys, attempts, body).await
    }

    /// The whole service, for wrapping in more layers.
    pub fn into_service(self) -> StackService {
        self.service
    }
}

impl StackBuilder {
    /// The maintenance settings (mode, endpoint type, relaxed timeout, handoff bounds, ...).
    #[must_use]
    pub fn maintenance(mut self, config: MaintenanceConfig) -> Self {
        self.maintenance = config;
        self
    }

    /// Reconnect and resend settings.
    #[must_use]
    pub fn handoff(mut self, config: HandoffConfig) -> Self {
        self.handoff = config;
        self
    }

    /// Circuit breaker settings.
    #[must_use]
    pub fn circuit_breaker(mut self, config: CircuitBreakerConfig) -> Self {
        self.circuit = config;
        self
    }

    /// The normal per-command timeout (default 1 s); relaxed to the maintenance settings'
    /// relaxed timeout during maintenance. Unless the options set their own
    /// [`Liveness`], it is also the connection's health bound (at least 1 s):
    /// with replies owed and nothing read for that long the connection is probed with `PING`,
    /// and replaced if the probe goes unanswered as long again.
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Connects and waits for the first connection.
    pub async fn connect(self) -> Result<Stack, Error> {
        let maintenance = Maintenance::new(self.maintenance.clone());
        let metrics = Metrics::new();
        metrics.attach(&maintenance);
        let stack = self.start(maintenance, metrics)?;
        stack.handoff().wait_connected().await?;
        Ok(stack)
    }

    /// A stack for `endpoint` with these settings, sharing `maintenance` and `metrics` with
    /// others (the nodes of a cluster), which connects in the background: commands sent
    /// before its first connection wait for it. Needs a Tokio runtime.
    pub(crate) fn start_node(
        &self,
        endpoint: Endpoint,
        maintenance: &Maintenance,
        metrics: &Metrics,
    ) -> Result<Stack, Error> {
        let mut builder = self.clone();
        builder.options.endpoint = endpoint;
        builder.start(maintenance.clone(), metrics.clone())
    }

    fn start(self, maintenance: Maintenance, metrics: Metrics) -> Result<Stack, Error> {
        let endpoint = self.options.endpoint.clone();
        let mut options = self.options;
        if options.liveness == Liveness::default() {
            // A dead peer is found in two to three command timeouts, not the kernel's minutes.
            options.liveness.timeout = Some(self.timeout.max(Duration::from_secs(1)));
            options.liveness.relaxed_timeout = maintenance
                .config()
                .relaxed_timeout()
                .max(options.liveness.relaxed_timeout);
        }
        let connector = Connector::new(options)?;
        let demuxed = NotificationDemux::over_connector(connector, maintenance.clone());
        let handoff = HandoffRetry::new(demuxed, maintenance.clone(), self.handoff);
        let relaxed = maintenance.config().relaxed_timeout();
        let timed = relaxed_timeout::RelaxedTimeout::new(
            handoff,
            self.timeout,
            relaxed,
            maintenance.status(&endpoint),
        );
        let guarded = CircuitBreaker::new(timed, maintenance.clone(), endpoint, self.circuit);
        let service = MetricsHook::new(guarded, metrics);
        Ok(Stack { service })
    }
}

/// Commands, pipelines and transactions alike.
impl<R: Request> Service<R> for Stack {
    type Response = R::Response;
    type Error = Error;
    type Future = <StackService as Service<R>>::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        Service::<R>::poll_ready(&mut self.service, cx)
    }

    fn call(&mut self, request: R) -> Self::Future {
        self.service.call(request)
    }
}
