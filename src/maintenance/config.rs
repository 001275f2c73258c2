//! Configuration of the maintenance layers, in one place, with the seeds' names and defaults.

use std::time::Duration;

use crate::endpoint::Endpoint;
use crate::error::Error;
use crate::maintenance::endpoint_type::EndpointType;

/// Whether to ask the server for maintenance notifications
/// (`CLIENT MAINT_NOTIFICATIONS ON ...` in the connection handshake).
///
/// The configured mode never changes by itself: a server that refused once is asked again on
/// the next connection (another endpoint, or the same one after a handoff), and one that said
/// yes does not turn `Auto` into `Enabled`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum MaintenanceMode {
    /// Never send the opt-in; no notifications.
    Disabled,
    /// Send it; a refusal fails the connection with
    /// [`Error::MaintenanceUnsupported`], which names the server's answer.
    Enabled,
    /// Send it; on a refusal keep the connection and carry on without notifications, with one
    /// debug-level log line. The default, and the right choice for open-source Redis or Valkey.
    #[default]
    Auto,
}

/// Whether to subscribe to Azure Cache for Redis maintenance events (`AzureRedisEvents`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum AzureEvents {
    /// Subscribe when the configured host is an Azure Cache for Redis name
    /// (`*.redis.cache.windows.net` and the other Azure clouds' cache domains).
    #[default]
    Auto,
    /// Always subscribe.
    On,
    /// Never subscribe.
    Off,
}

/// Host name suffixes of Azure Cache for Redis, in every Azure cloud.
const AZURE_SUFFIXES: [&str; 6] = [
    ".redis.cache.windows.net",
    ".redis.cache.chinacloudapi.cn",
    ".redis.cache.usgovcloudapi.net",
    ".redis.cache.cloudapi.de",
    ".redisenterprise.cache.azure.net",
    ".redis.azure.net",
];

/// Whether `host` is an Azure Cache for Redis name, such as `contoso.redis.cache.windows.net`.
pub(crate) fn is_azure_cache_host(host: &str) -> bool {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    AZURE_SUFFIXES.iter().any(|s| host.ends_with(s))
}

/// The automatic number of concurrent handoff workers for a pool of `pool_size` connections:
/// `min(pool/2, max(10, pool/3))`, and at least 1.
pub(crate) fn auto_max_workers(pool_size: usize) -> usize {
    (pool_size / 2).min((pool_size / 3).max(10)).max(1)
}

/// The automatic handoff queue size for a pool of `pool_size` connections served by `workers`
/// workers: `max(20 x workers, pool)`, capped at `max_active_conns + 1` when that is set and at
/// `5 x pool` otherwise, and at least 1.
pub(crate) fn auto_handoff_queue_size(
    pool_size: usize,
    workers: usize,
    max_active_conns: Option<usize>,
) -> usize {
    let wanted = workers.saturating_mul(20).max(pool_size);
    let cap = match max_active_conns {
        Some(max) => max.saturating_add(1),
        None => pool_size.saturating_mul(5),
    };
    wanted.min(cap).max(1)
}

/// How the maintenance layers behave; see the table below for the settings and their
/// defaults (the seeds' names and defaults). Built with [`MaintenanceConfig::builder`]; cheap
/// to clone.
///
/// | setting | default |
/// |---|---|
/// | [`mode`](MaintenanceConfigBuilder::mode) | [`MaintenanceMode::Auto`] |
/// | [`endpoint_type`](MaintenanceConfigBuilder::endpoint_type) | [`EndpointType::Auto`] |
/// | [`relaxed_timeout`](MaintenanceConfigBuilder::relaxed_timeout) | 10 s |
/// | [`handoff_timeout`](MaintenanceConfigBuilder::handoff_timeout) | 15 s |
/// | [`max_handoff_retries`](MaintenanceConfigBuilder::max_handoff_retries) | 3 (1 to 10) |
/// | [`post_handoff_relaxed_duration`](MaintenanceConfigBuilder::post_handoff_relaxed_duration) | 2 x relaxed timeout |
/// | [`relaxation_backstop`](MaintenanceConfigBuilder::relaxation_backstop) | 60 s |
/// | [`azure_events`](MaintenanceConfigBuilder::azure_events) | [`AzureEvents::Auto`] |
/// | [`max_workers`](MaintenanceConfigBuilder::max_workers) | auto: `min(pool/2, max(10, pool/3))` |
/// | [`handoff_queue_size`](MaintenanceConfigBuilder::handoff_queue_size) | auto: `max(20 x workers, pool)`, capped at `max_active_conns + 1` or `5 x pool` |
///
/// ```
/// use redis_handoff::maintenance::{MaintenanceConfig, MaintenanceMode};
/// use std::time::Duration;
///
/// let config = MaintenanceConfig::builder()
///     .mode(MaintenanceMode::Enabled)
///     .relaxed_timeout(Duration::from_secs(5))
///     .build()
///     .unwrap();
/// assert_eq!(config.post_handoff_relaxed_duration(), Duration::from_secs(10));
/// assert_eq!(config.max_workers(100), 33);
/// assert_eq!(config.handoff_queue_size(100, None), 500);
///
/// let err = MaintenanceConfig::builder().max_handoff_retries(0).build().unwrap_err();
/// assert!(err.to_string().contains("max_handoff_retries"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MaintenanceConfig {
    mode: MaintenanceMode,
    endpoint_type: EndpointType,
    relaxed_timeout: Duration,
    handoff_timeout: Duration,
    max_handoff_retries: u32,
    post_handoff_relaxed_duration: Duration,
    relaxation_backstop: Duration,
    azure_events: AzureEvents,
    max_workers: Option<usize>,
    handoff_queue_size: Option<usize>,
    event_buffer: usize,
}

impl Default for MaintenanceConfig {
    fn default() -> Self {
        MaintenanceConfig {
            mode: MaintenanceMode::Auto,
            endpoint_type: EndpointType::Auto,
            relaxed_timeout: MaintenanceConfig::DEFAULT_RELAXED_TIMEOUT,
            handoff_timeout: MaintenanceConfig::DEFAULT_HANDOFF_TIMEOUT,
            max_handoff_retries: MaintenanceConfig::DEFAULT_MAX_HANDOFF_RETRIES,
            post_handoff_relaxed_duration: MaintenanceConfig::DEFAULT_RELAXED_TIMEOUT * 2,
            relaxation_backstop: MaintenanceConfig::DEFAULT_RELAXATION_BACKSTOP,
            azure_events: AzureEvents::Auto,
            max_workers: None,
            handoff_queue_size: None,
            event_buffer: MaintenanceConfig::DEFAULT_EVENT_BUFFER,
        }
    }
}

impl MaintenanceConfig {
    /// The default relaxed timeout, 10 s.
    pub const DEFAULT_RELAXED_TIMEOUT: Duration = Duration::from_secs(10);
    /// The default bound on a handoff's dial and handshake, 15 s.
    pub const DEFAULT_HANDOFF_TIMEOUT: Duration = Duration::from_secs(15);
    /// The default number of handoff attempts, 3.
    pub const DEFAULT_MAX_HANDOFF_RETRIES: u32 = 3;
    /// The default backstop for a maintenance start whose end never comes, 60 s.
    pub const DEFAULT_RELAXATION_BACKSTOP: Duration = Duration::from_secs(60);
    /// The default number of events a slow subscriber may fall behind, 64 (events are rare;
    /// the buffer is allocated whole, per handle).
    pub const DEFAULT_EVENT_BUFFER: usize = 64;

    /// A builder starting from the defaults.
    pub fn builder() -> MaintenanceConfigBuilder {
        MaintenanceConfigBuilder::default()
    }

    /// Whether to ask for notifications.
    pub fn mode(&self) -> MaintenanceMode {
        self.mode
    }

    /// The `moving-endpoint-type` to ask for ([`EndpointType::Auto`]: decided per configured
    /// address).
    pub fn endpoint_type(&self) -> EndpointType {
        self.endpoint_type
    }

    /// The timeout commands get while their endpoint is in maintenance (never shorter than
    /// their normal timeout).
    pub fn relaxed_timeout(&self) -> Duration {
        self.relaxed_timeout
    }

    /// The bound on a handoff's dial and handshake.
    pub fn handoff_timeout(&self) -> Duration {
        self.handoff_timeout
    }

    /// How many times a handoff is attempted before it is given up (1 to 10).
    pub fn max_handoff_retries(&self) -> u32 {
        self.max_handoff_retries
    }

    /// How long timeouts stay relaxed after a handoff has switched to the new connection.
    pub fn post_handoff_relaxed_duration(&self) -> Duration {
        self.post_handoff_relaxed_duration
    }

    /// How long a maintenance start relaxes timeouts when its end never arrives.
    pub fn relaxation_backstop(&self) -> Duration {
        self.relaxation_backstop
    }

    /// Whether to subscribe to Azure maintenance events.
    pub fn azure_events(&self) -> AzureEvents {
        self.azure_events
    }

    /// Whether connections to `configured` subscribe to Azure maintenance events.
    pub fn azure_events_for(&self, configured: &Endpoint) -> bool {
        match self.azure_events {
            AzureEvents::On => true,
            AzureEvents::Off => false,
            AzureEvents::Auto => is_azure_cache_host(configured.host()),
        }
    }

    /// How many handoffs a pool of `pool_size` connections runs at once: the configured number,
    /// or by default `min(pool_size / 2, max(10, pool_size / 3))`, at least 1.
    pub fn max_workers(&self, pool_size: usize) -> usize {
        self.max_workers
            .unwrap_or_else(|| auto_max_workers(pool_size))
    }

    /// How many handoffs a pool of `pool_size` connections (at most `max_active_conns` active,
    /// when limited) may queue: the configured number, or by default `max(20 x workers, pool_size)`
    /// capped at `max_active_conns + 1` when that is set and at `5 x pool_size` otherwise.
    pub fn handoff_queue_size(&self, pool_size: usize, max_active_conns: Option<usize>) -> usize {
        self.handoff_queue_size.unwrap_or_else(|| {
            auto_handoff_queue_size(pool_size, self.max_workers(pool_size), max_active_conns)
        })
    }

    /// How many events a slow subscriber of the [`Maintenance`](crate::maintenance::Maintenance)
    /// handle may fall behind before it misses some.
    pub fn event_buffer(&self) -> usize {
        self.event_buffer
    }

    /// A builder starting from this configuration.
    pub fn to_builder(&self) -> MaintenanceConfigBuilder {
        MaintenanceConfigBuilder {
            config: self.clone(),
            post_handoff_set: true,
        }
    }
}

/// Builds a [`MaintenanceConfig`]; every setting starts at its default.
#[derive(Debug, Clone, Default)]
pub struct MaintenanceConfigBuilder {
    config: MaintenanceConfig,
    post_handoff_set: bool,
}

impl MaintenanceConfigBuilder {
    /// Whether to ask for notifications. Default [`MaintenanceMode::Auto`].
    #[must_use]
    pub fn mode(mut self, mode: MaintenanceMode) -> Self {
        self.config.mode = mode;
        self
    }

    /// The `moving-endpoint-type` to ask for. Default [`EndpointType::Auto`].
    #[must_use]
    pub fn endpoint_type(mut self, endpoint_type: EndpointType) -> Self {
        self.config.endpoint_type = endpoint_type;
        self
    }

    /// The timeout during maintenance. Default 10 s; must not be zero.
    #[must_use]
    pub fn relaxed_timeout(mut self, timeout: Duration) -> Self {
        self.config.relaxed_timeout = timeout;
        self
    }

    /// The bound on a handoff's dial and handshake. Default 15 s; must not be zero.
    #[must_use]
    pub fn handoff_timeout(mut self, timeout: Duration) -> Self {
        self.config.handoff_timeout = timeout;
        self
    }

    /// How many times a handoff is attempted. Default 3; must be from 1 to 10.
    #[must_use]
    pub fn max_handoff_retries(mut self, retries: u32) -> Self {
        self.config.max_handoff_retries = retries;
        self
    }

    /// How long timeouts stay relaxed after a handoff. Default twice the relaxed timeout.
    #[must_use]
    pub fn post_handoff_relaxed_duration(mut self, duration: Duration) -> Self {
        self.config.post_handoff_relaxed_duration = duration;
        self.post_handoff_set = true;
        self
    }

    /// How long a maintenance start relaxes timeouts when its end never comes. Default 60 s;
    /// must not be zero.
    #[must_use]
    pub fn relaxation_backstop(mut self, backstop: Duration) -> Self {
        self.config.relaxation_backstop = backstop;
        self
    }

    /// Whether to subscribe to Azure maintenance events. Default [`AzureEvents::Auto`].
    #[must_use]
    pub fn azure_events(mut self, azure: AzureEvents) -> Self {
        self.config.azure_events = azure;
        self
    }

    /// A fixed number of concurrent handoff workers instead of the automatic one.
    #[must_use]
    pub fn max_workers(mut self, workers: usize) -> Self {
        self.config.max_workers = Some(workers);
        self
    }

    /// A fixed handoff queue size instead of the automatic one.
    #[must_use]
    pub fn handoff_queue_size(mut self, size: usize) -> Self {
        self.config.handoff_queue_size = Some(size);
        self
    }

    /// How many events a slow subscriber may fall behind. Default 64 (events come with
    /// maintenance, reconnects and handoffs, a few at a time; the buffer is allocated in full
    /// with the first subscriber). The layers that count or act on events (metrics, circuit
    /// breakers) see every event as it is emitted and need no room here.
    #[must_use]
    pub fn event_buffer(mut self, events: usize) -> Self {
        self.config.event_buffer = events;
        self
    }

    /// Checks the settings and builds the configuration.
    ///
    /// Fails with [`Error::Config`] naming the setting when one is out of range.
    pub fn build(self) -> Result<MaintenanceConfig, Error> {
        let mut c = self.config;
        if !self.post_handoff_set {
            c.post_handoff_relaxed_duration = c.relaxed_timeout.saturating_mul(2);
        }
        if !(1..=10).contains(&c.max_handoff_retries) {
            return Err(Error::config(format!(
                "max_handoff_retries must be from 1 to 10, got {}",
                c.max_handoff_retries
            )));
        }
        for (name, value) in [
            ("relaxed_timeout", c.relaxed_timeout),
            ("handoff_timeout", c.handoff_timeout),
            ("relaxation_backstop", c.relaxation_backstop),
        ] {
            if value.is_zero() {
                return Err(Error::config(format!("{name} must be longer than zero")));
            }
        }
        for (name, value) in [
            ("max_workers", c.max_workers),
            ("handoff_queue_size", c.handoff_queue_size),
            ("event_buffer", Some(c.event_buffer)),
        ] {
            if value == Some(0) {
                return Err(Error::config(format!("{name} must be at least 1")));
            }
        }
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_seeds() {
        let c = MaintenanceConfig::default();
        assert_eq!(c, MaintenanceConfig::builder().build().unwrap());
        assert_eq!(c.mode(), MaintenanceMode::Auto);
        assert_eq!(c.endpoint_type(), EndpointType::Auto);
        assert_eq!(c.relaxed_timeout(), Duration::from_secs(10));
        assert_eq!(c.handoff_timeout(), Duration::from_secs(15));
        assert_eq!(c.max_handoff_retries(), 3);
        assert_eq!(c.post_handoff_relaxed_duration(), Duration::from_secs(20));
        assert_eq!(c.relaxation_backstop(), Duration::from_secs(60));
        assert_eq!(c.azure_events(), AzureEvents::Auto);
    }

    #[test]
    fn pool_figures_follow_the_seeds_worked_examples() {
        let c = MaintenanceConfig::default();
        assert_eq!(c.max_workers(100), 33);
        assert_eq!(c.handoff_queue_size(100, None), 500);
        assert_eq!(c.max_workers(100), 33);
        assert_eq!(c.handoff_queue_size(100, Some(150)), 151);
        // Small pools: at least one worker, the 10-worker floor capped by pool/2.
        assert_eq!(c.max_workers(0), 1);
        assert_eq!(c.max_workers(30), 10);
        assert_eq!(c.max_workers(1000), 333);
        assert_eq!(c.handoff_queue_size(0, None), 1);
        let fixed = MaintenanceConfig::builder()
            .max_workers(4)
            .handoff_queue_size(9)
            .build()
            .unwrap();
        assert_eq!(
            (fixed.max_workers(100), fixed.handoff_queue_size(100, None)),
            (4, 9)
        );
        let workers_only = MaintenanceConfig::builder().max_workers(4).build().unwrap();
        assert_eq!(workers_only.handoff_queue_size(100, None), 100);
    }

    #[test]
    fn post_handoff_duration_follows_the_relaxed_timeout_unless_set() {
        let c = MaintenanceConfig::builder()
            .relaxed_timeout(Duration::from_secs(3))
            .build()
            .unwrap();
        assert_eq!(c.post_handoff_relaxed_duration(), Duration::from_secs(6));
        let c = MaintenanceConfig::builder()
            .post_handoff_relaxed_duration(Duration::from_secs(1))
            .relaxed_timeout(Duration::from_secs(3))
            .build()
            .unwrap();
        assert_eq!(c.post_handoff_relaxed_duration(), Duration::from_secs(1));
        let again = c.to_builder().build().unwrap();
        assert_eq!(again, c);
    }

    #[test]
    fn out_of_range_settings_are_refused_by_name() {
        for retries in [0, 11, 100] {
            let err = MaintenanceConfig::builder()
                .max_handoff_retries(retries)
                .build()
                .unwrap_err();
            assert!(
                err.to_string()
                    .contains("max_handoff_retries must be from 1 to 10"),
                "{err}"
            );
        }
        for retries in 1..=10 {
            assert!(MaintenanceConfig::builder()
                .max_handoff_retries(retries)
                .build()
                .is_ok());
        }
        let err = MaintenanceConfig::builder()
            .relaxed_timeout(Duration::ZERO)
            .build()
            .unwrap_err();
        assert!(err.to_string().contains("relaxed_timeout"), "{err}");
        let err = MaintenanceConfig::builder()
            .max_workers(0)
            .build()
            .unwrap_err();
        assert!(err.to_string().contains("max_workers"), "{err}");
    }

    #[test]
    fn azure_events_auto_follows_the_host() {
        let c = MaintenanceConfig::default();
        assert!(c.azure_events_for(&Endpoint::new("contoso.redis.cache.windows.net", 6380)));
        assert!(!c.azure_events_for(&Endpoint::new("127.0.0.1", 6379)));
        let on = MaintenanceConfig::builder()
            .azure_events(AzureEvents::On)
            .build()
            .unwrap();
        assert!(on.azure_events_for(&Endpoint::new("127.0.0.1", 6379)));
        let off = MaintenanceConfig::builder()
            .azure_events(AzureEvents::Off)
            .build()
            .unwrap();
        assert!(!off.azure_events_for(&Endpoint::new("x.redis.cache.windows.net", 6380)));
    }

    #[test]
    fn azure_cache_hosts_are_recognised() {
        assert!(is_azure_cache_host("contoso.redis.cache.windows.net"));
        assert!(is_azure_cache_host("Contoso.Redis.Cache.Windows.Net."));
        assert!(!is_azure_cache_host("redis.example.com"));
    }

    #[test]
    fn auto_workers_follow_the_formula() {
        assert_eq!(auto_max_workers(100), 33);
        assert_eq!(auto_max_workers(10), 5);
        assert_eq!(auto_max_workers(1), 1);
    }

    #[test]
    fn auto_queue_size_follows_the_formula() {
        assert_eq!(auto_handoff_queue_size(100, 33, None), 500);
        assert_eq!(auto_handoff_queue_size(100, 33, Some(150)), 151);
    }
}
