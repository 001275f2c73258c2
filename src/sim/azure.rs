//! Azure Cache for Redis maintenance events, as the simulator sends them.
//!
//! Azure publishes maintenance on the Pub/Sub channel `AzureRedisEvents`; each message is a
//! pipe-delimited list of keys and values:
//!
//! ```text
//! NotificationType|NodeMaintenanceStarting|StartTimeInUTC|2021-03-02T23:34:56|IsReplica|False|IPAddress|10.0.0.5|SSLPort|15001|NonSSLPort|13001
//! ```
//!
//! [`AzureEvent`] builds such a payload. [`Simulator::azure`](super::Simulator::azure) delivers it
//! to every client subscribed to the channel, as a Pub/Sub message.
//!
//! The library's [`maintenance::AzureEvent`] is the other side: what a client parses. This
//! builder is for sending, with defaults for every field and the start time as text, so that a
//! test can also send what no parser would accept. It holds the library's
//! [`maintenance::AzureEventKind`], and times are written by the library's [`format_utc`].

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::maintenance::{self, format_utc};

/// Short names for the library's [`maintenance::AzureEventKind`], for writing scenarios:
/// `AzureEventKind::Starting` is `NodeMaintenanceStarting`.
///
/// The wire names are the library's; [`Other`](AzureEventKind::Other) sends any name as given,
/// such as `NodeMaintenanceFailover`, which older servers send. Parsing accepts the short names
/// in any case and spelling (`starting`, `failover-complete`) as well as the wire names.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum AzureEventKind {
    /// `NodeMaintenanceScheduled`: maintenance is planned (up to 15 minutes ahead).
    Scheduled,
    /// `NodeMaintenanceStarting`: maintenance starts in about 20 seconds.
    Starting,
    /// `NodeMaintenanceStart`: maintenance is imminent; no start time.
    Start,
    /// `NodeMaintenanceFailoverComplete`: the replica took over.
    FailoverComplete,
    /// `NodeMaintenanceScaleComplete`: a scaling operation finished.
    ScaleComplete,
    /// `NodeMaintenanceEnded`: maintenance is over.
    Ended,
    /// Any other notification type, sent as given (old servers send `NodeMaintenanceFailover`).
    Other(String),
}

impl AzureEventKind {
    /// The `NotificationType` value on the wire.
    pub fn wire_name(&self) -> &str {
        match self.known() {
            Ok(kind) => kind.name(),
            Err(name) => name,
        }
    }

    /// The library's kind of this name, or the name of an [`Other`](AzureEventKind::Other).
    fn known(&self) -> Result<&'static maintenance::AzureEventKind, &str> {
        use maintenance::AzureEventKind as Wire;
        Ok(match self {
            AzureEventKind::Scheduled => &Wire::NodeMaintenanceScheduled,
            AzureEventKind::Starting => &Wire::NodeMaintenanceStarting,
            AzureEventKind::Start => &Wire::NodeMaintenanceStart,
            AzureEventKind::FailoverComplete => &Wire::NodeMaintenanceFailoverComplete,
            AzureEventKind::ScaleComplete => &Wire::NodeMaintenanceScaleComplete,
            AzureEventKind::Ended => &Wire::NodeMaintenanceEnded,
            AzureEventKind::Other(name) => return Err(name),
        })
    }
}

impl From<AzureEventKind> for maintenance::AzureEventKind {
    /// The library's kind; an [`Other`](AzureEventKind::Other) is kept as `Unknown` with its
    /// name as given, so it is sent as given.
    fn from(kind: AzureEventKind) -> Self {
        match kind.known() {
            Ok(known) => known.clone(),
            Err(name) => maintenance::AzureEventKind::Unknown(name.to_string()),
        }
    }
}

impl fmt::Display for AzureEventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.wire_name())
    }
}

impl FromStr for AzureEventKind {
    type Err = std::convert::Infallible;

    /// Accepts the wire name (`NodeMaintenanceStarting`) or the short one (`Starting`,
    /// `starting`, `failover-complete`); anything else becomes [`AzureEventKind::Other`].
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let short = s.strip_prefix("NodeMaintenance").unwrap_or(s);
        let key: String = short
            .chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .collect::<String>()
            .to_ascii_lowercase();
        Ok(match key.as_str() {
            "scheduled" => AzureEventKind::Scheduled,
            "starting" => AzureEventKind::Starting,
            "start" => AzureEventKind::Start,
            "failovercomplete" => AzureEventKind::FailoverComplete,
            "scalecomplete" => AzureEventKind::ScaleComplete,
            "ended" => AzureEventKind::Ended,
            _ => AzureEventKind::Other(s.to_string()),
        })
    }
}

/// One Azure maintenance event: what [`Simulator::azure`](super::Simulator::azure) publishes.
///
/// The kind may be given by its short name ([`AzureEventKind`]) or as the library's
/// [`maintenance::AzureEventKind`].
///
/// ```
/// use redis_handoff::sim::{AzureEvent, AzureEventKind};
///
/// let e = AzureEvent::new(AzureEventKind::Starting)
///     .start_time("2021-03-02T23:34:56")
///     .ip_address("10.0.0.5")
///     .ports(15001, 13001);
/// assert_eq!(
///     e.payload(),
///     "NotificationType|NodeMaintenanceStarting|StartTimeInUTC|2021-03-02T23:34:56|IsReplica|False|IPAddress|10.0.0.5|SSLPort|15001|NonSSLPort|13001"
/// );
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AzureEvent {
    /// The notification type.
    pub kind: maintenance::AzureEventKind,
    /// `StartTimeInUTC`, ISO-8601 without zone. When `None`, Scheduled and Starting events get a
    /// time 20 seconds from now and the others carry no start time.
    pub start_time: Option<String>,
    /// `IsReplica`.
    pub is_replica: bool,
    /// `IPAddress` of the node under maintenance.
    pub ip_address: String,
    /// `SSLPort`.
    pub ssl_port: u16,
    /// `NonSSLPort`.
    pub non_ssl_port: u16,
}

impl AzureEvent {
    /// An event of this kind for a primary at 10.0.0.5, ports 15001 (TLS) and 13001.
    pub fn new(kind: impl Into<maintenance::AzureEventKind>) -> Self {
        AzureEvent {
            kind: kind.into(),
            start_time: None,
            is_replica: false,
            ip_address: "10.0.0.5".to_string(),
            ssl_port: 15001,
            non_ssl_port: 13001,
        }
    }

    /// Sets `StartTimeInUTC` (ISO-8601 without zone, such as `2021-03-02T23:34:56`).
    pub fn start_time(mut self, time: impl Into<String>) -> Self {
        self.start_time = Some(time.into());
        self
    }

    /// Sets `IsReplica`.
    pub fn replica(mut self, is_replica: bool) -> Self {
        self.is_replica = is_replica;
        self
    }

    /// Sets `IPAddress`.
    pub fn ip_address(mut self, ip: impl Into<String>) -> Self {
        self.ip_address = ip.into();
        self
    }

    /// Sets `SSLPort` and `NonSSLPort`.
    pub fn ports(mut self, ssl_port: u16, non_ssl_port: u16) -> Self {
        self.ssl_port = ssl_port;
        self.non_ssl_port = non_ssl_port;
        self
    }

    /// The message published on `AzureRedisEvents`.
    pub fn payload(&self) -> String {
        let mut parts: Vec<String> = vec!["NotificationType".into(), self.kind.name().to_string()];
        let start = match &self.start_time {
            Some(t) => Some(t.clone()),
            None if has_start_time(&self.kind) => Some(utc_in(20)),
            None => None,
        };
        if let Some(t) = start {
            parts.push("StartTimeInUTC".into());
            parts.push(t);
        }
        parts.extend([
            "IsReplica".to_string(),
            if self.is_replica { "True" } else { "False" }.to_string(),
            "IPAddress".to_string(),
            self.ip_address.clone(),
            "SSLPort".to_string(),
            self.ssl_port.to_string(),
            "NonSSLPort".to_string(),
            self.non_ssl_port.to_string(),
        ]);
        parts.join("|")
    }
}

/// Whether events of this kind carry a start time by default.
fn has_start_time(kind: &maintenance::AzureEventKind) -> bool {
    matches!(
        kind,
        maintenance::AzureEventKind::NodeMaintenanceScheduled
            | maintenance::AzureEventKind::NodeMaintenanceStarting
    )
}

/// The UTC time `secs` whole seconds from now, as `YYYY-MM-DDTHH:MM:SS`.
fn utc_in(secs: u64) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
        + secs;
    iso_utc(now)
}

/// Formats whole seconds since the Unix epoch as `YYYY-MM-DDTHH:MM:SS` (UTC), with the
/// library's [`format_utc`]. Empty for a time the system clock cannot hold.
pub(crate) fn iso_utc(epoch_secs: u64) -> String {
    UNIX_EPOCH
        .checked_add(Duration::from_secs(epoch_secs))
        .map_or_else(String::new, format_utc)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_are_pipe_delimited_pairs() {
        let e = AzureEvent::new(AzureEventKind::Start);
        assert_eq!(
            e.payload(),
            "NotificationType|NodeMaintenanceStart|IsReplica|False|IPAddress|10.0.0.5|SSLPort|15001|NonSSLPort|13001"
        );
        let e = AzureEvent::new(AzureEventKind::FailoverComplete).replica(true);
        assert!(e
            .payload()
            .starts_with("NotificationType|NodeMaintenanceFailoverComplete|IsReplica|True|"));
        let s = AzureEvent::new(AzureEventKind::Scheduled).payload();
        assert!(s.contains("|StartTimeInUTC|20"), "{s}");
    }

    #[test]
    fn kinds_parse_from_short_and_wire_names() {
        assert_eq!("Starting".parse(), Ok(AzureEventKind::Starting));
        assert_eq!(
            "NodeMaintenanceScaleComplete".parse(),
            Ok(AzureEventKind::ScaleComplete)
        );
        assert_eq!(
            "failover-complete".parse(),
            Ok(AzureEventKind::FailoverComplete)
        );
        assert_eq!(
            "NodeMaintenanceFailover"
                .parse::<AzureEventKind>()
                .unwrap()
                .wire_name(),
            "NodeMaintenanceFailover"
        );
    }

    #[test]
    fn formats_utc_dates() {
        assert_eq!(iso_utc(0), "1970-01-01T00:00:00");
        assert_eq!(iso_utc(1_614_728_096), "2021-03-02T23:34:56");
        assert_eq!(iso_utc(951_782_400), "2000-02-29T00:00:00");
    }
}
