//! Azure Cache for Redis maintenance events, published on the `AzureRedisEvents` channel.

use std::fmt;
use std::net::IpAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use redis_protocol::resp3::types::BytesFrame;

use crate::endpoint::Endpoint;
use crate::frame::text;

/// The Pub/Sub channel Azure Cache for Redis publishes maintenance events on.
pub const AZURE_CHANNEL: &str = "AzureRedisEvents";

/// One maintenance event from Azure Cache for Redis.
///
/// Each message is a list of pipe-delimited key/value pairs:
///
/// ```text
/// NotificationType|NodeMaintenanceStarting|StartTimeInUTC|2021-03-02T23:34:56|IsReplica|False|IPAddress|10.0.0.5|SSLPort|15001|NonSSLPort|13001
/// ```
///
/// Keys may come in any order and in any case, unknown keys are ignored, booleans are `True` or
/// `False` in any case, and `StartTimeInUTC` is an ISO-8601 time without a zone that means UTC
/// (fractional seconds and a trailing `Z` are accepted). A type this crate does not know is kept
/// as [`AzureEventKind::Unknown`] rather than rejected. An empty value counts as absent; a value
/// that is present but wrong (a port of `"abc"`) makes the whole message malformed.
///
/// ```
/// use redis_handoff::maintenance::{AzureEvent, AzureEventKind};
/// use std::time::{Duration, SystemTime, UNIX_EPOCH};
///
/// let message = "NotificationType|NodeMaintenanceStarting|StartTimeInUTC|2021-03-02T23:34:56|\
///                IsReplica|False|IPAddress|10.0.0.5|SSLPort|15001|NonSSLPort|13001";
/// let event = AzureEvent::parse(message, SystemTime::now()).unwrap();
/// assert_eq!(event.kind, AzureEventKind::NodeMaintenanceStarting);
/// assert_eq!(event.start_time, Some(UNIX_EPOCH + Duration::from_secs(1_614_728_096)));
/// assert_eq!(event.endpoint(true).unwrap().to_string(), "10.0.0.5:15001");
/// assert!(event.is_late()); // received years after it started
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct AzureEvent {
    /// `NotificationType`.
    pub kind: AzureEventKind,
    /// `StartTimeInUTC`: when the maintenance starts, if the message says.
    pub start_time: Option<SystemTime>,
    /// When the client received the message. Received after the start time means the client is
    /// too slow to act on it in time (overloaded).
    pub received_at: SystemTime,
    /// `IsReplica`: whether the node under maintenance is a replica. False when absent.
    pub is_replica: bool,
    /// `IPAddress`: the node under maintenance.
    pub ip_address: Option<IpAddr>,
    /// `SSLPort`: its TLS port.
    pub ssl_port: Option<u16>,
    /// `NonSSLPort`: its plain port.
    pub non_ssl_port: Option<u16>,
}

/// The `NotificationType` of an [`AzureEvent`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum AzureEventKind {
    /// Maintenance is scheduled, up to 15 minutes ahead.
    NodeMaintenanceScheduled,
    /// Maintenance starts in about 20 seconds: relax timeouts.
    NodeMaintenanceStarting,
    /// Maintenance is imminent (no start time): stop sending for a moment.
    NodeMaintenanceStart,
    /// The failover finished (old servers send `NodeMaintenanceFailover`): refresh the
    /// connection.
    NodeMaintenanceFailoverComplete,
    /// A scale operation finished: refresh the connection.
    NodeMaintenanceScaleComplete,
    /// Maintenance ended: refresh the connection.
    NodeMaintenanceEnded,
    /// A type this crate does not know, kept as sent.
    Unknown(String),
}

impl AzureEventKind {
    /// The known kinds, in a fixed order (the order of counters; `Unknown` comes after them).
    pub const KNOWN: [AzureEventKind; 6] = [
        AzureEventKind::NodeMaintenanceScheduled,
        AzureEventKind::NodeMaintenanceStarting,
        AzureEventKind::NodeMaintenanceStart,
        AzureEventKind::NodeMaintenanceFailoverComplete,
        AzureEventKind::NodeMaintenanceScaleComplete,
        AzureEventKind::NodeMaintenanceEnded,
    ];

    /// The names of [`AzureEventKind::KNOWN`], in the same order.
    pub const KNOWN_NAMES: [&'static str; 6] = [
        "NodeMaintenanceScheduled",
        "NodeMaintenanceStarting",
        "NodeMaintenanceStart",
        "NodeMaintenanceFailoverComplete",
        "NodeMaintenanceScaleComplete",
        "NodeMaintenanceEnded",
    ];

    /// The type as Azure names it.
    pub fn name(&self) -> &str {
        match self {
            AzureEventKind::Unknown(name) => name,
            known => Self::KNOWN_NAMES[known.index()],
        }
    }

    /// The kind named `name`, ignoring ASCII case; anything else is `Unknown(name)`.
    pub fn from_name(name: &str) -> Self {
        if name.eq_ignore_ascii_case("NodeMaintenanceFailover") {
            return AzureEventKind::NodeMaintenanceFailoverComplete;
        }
        Self::KNOWN
            .into_iter()
            .find(|k| name.eq_ignore_ascii_case(k.name()))
            .unwrap_or_else(|| AzureEventKind::Unknown(name.to_string()))
    }

    /// The position of this kind in the counters: its place in [`AzureEventKind::KNOWN`], or
    /// the one after them for `Unknown`.
    pub(crate) fn index(&self) -> usize {
        Self::KNOWN
            .iter()
            .position(|k| k == self)
            .unwrap_or(Self::KNOWN.len())
    }

    /// Whether the event starts a maintenance period (relax timeouts).
    pub fn is_start(&self) -> bool {
        matches!(
            self,
            AzureEventKind::NodeMaintenanceStarting | AzureEventKind::NodeMaintenanceStart
        )
    }

    /// Whether the event ends a maintenance period (end the relaxation, refresh the connection).
    pub fn is_end(&self) -> bool {
        matches!(
            self,
            AzureEventKind::NodeMaintenanceFailoverComplete
                | AzureEventKind::NodeMaintenanceScaleComplete
                | AzureEventKind::NodeMaintenanceEnded
        )
    }
}

impl fmt::Display for AzureEventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An `AzureRedisEvents` message that could not be understood.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseAzureEventError {
    reason: String,
}

impl ParseAzureEventError {
    fn new(reason: impl Into<String>) -> Self {
        ParseAzureEventError {
            reason: reason.into(),
        }
    }

    /// What was wrong with the message.
    pub fn reason(&self) -> &str {
        &self.reason
    }
}

impl fmt::Display for ParseAzureEventError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "malformed {AZURE_CHANNEL} message: {}", self.reason)
    }
}

impl std::error::Error for ParseAzureEventError {}

// ===== impl AzureEvent =====

impl AzureEvent {
    /// An event of this kind with nothing else known, received at `received_at`.
    pub fn new(kind: AzureEventKind, received_at: SystemTime) -> Self {
        AzureEvent {
            kind,
            start_time: None,
            received_at,
            is_replica: false,
            ip_address: None,
            ssl_port: None,
            non_ssl_port: None,
        }
    }

    /// Parses one message received at `received_at`.
    pub fn parse(message: &str, received_at: SystemTime) -> Result<Self, ParseAzureEventError> {
        let mut parts: Vec<&str> = message.split('|').collect();
        // A trailing separator leaves an empty last part: not a key.
        if parts.len() % 2 == 1 && parts.last().is_some_and(|p| p.trim().is_empty()) {
            parts.pop();
        }
        if parts.len() % 2 == 1 {
            return Err(ParseAzureEventError::new(format!(
                "the key {:?} has no value",
                truncate(parts.last().copied().unwrap_or_default())
            )));
        }
        let mut kind = None;
        let mut event = AzureEvent::new(AzureEventKind::NodeMaintenanceStart, received_at);
        for pair in parts.chunks_exact(2) {
            let (key, value) = (pair[0].trim(), pair[1].trim());
            if value.is_empty() {
                continue;
            }
            let bad = |what: &str| {
                ParseAzureEventError::new(format!(
                    "{key} must be {what}, got {:?}",
                    truncate(value)
                ))
            };
            if key.eq_ignore_ascii_case("NotificationType") {
                kind = Some(AzureEventKind::from_name(value));
            } else if key.eq_ignore_ascii_case("StartTimeInUTC") {
                event.start_time =
                    Some(parse_utc(value).ok_or_else(|| bad("a time like 2021-03-02T23:34:56"))?);
            } else if key.eq_ignore_ascii_case("IsReplica") {
                event.is_replica = if value.eq_ignore_ascii_case("true") {
                    true
                } else if value.eq_ignore_ascii_case("false") {
                    false
                } else {
                    return Err(bad("True or False"));
                };
            } else if key.eq_ignore_ascii_case("IPAddress") {
                let bare = value
                    .strip_prefix('[')
                    .and_then(|v| v.strip_suffix(']'))
                    .unwrap_or(value);
                event.ip_address = Some(bare.parse().map_err(|_| bad("an IP address"))?);
            } else if key.eq_ignore_ascii_case("SSLPort") {
                event.ssl_port = Some(value.parse().map_err(|_| bad("a port number"))?);
            } else if key.eq_ignore_ascii_case("NonSSLPort") {
                event.non_ssl_port = Some(value.parse().map_err(|_| bad("a port number"))?);
            }
        }
        event.kind =
            kind.ok_or_else(|| ParseAzureEventError::new("NotificationType is missing"))?;
        Ok(event)
    }

    /// Whether the message arrived after the maintenance's start time: the client is too slow
    /// to act on events in time.
    pub fn is_late(&self) -> bool {
        self.start_time
            .is_some_and(|start| self.received_at > start)
    }

    /// The node under maintenance, with its TLS or plain port.
    pub fn endpoint(&self, tls: bool) -> Option<Endpoint> {
        let port = if tls {
            self.ssl_port
        } else {
            self.non_ssl_port
        }?;
        Some(Endpoint::new(self.ip_address?.to_string(), port))
    }

    /// The message as Azure would publish it, with the fields that are known.
    ///
    /// ```
    /// use redis_handoff::maintenance::{AzureEvent, AzureEventKind};
    /// use std::time::SystemTime;
    ///
    /// let now = SystemTime::now();
    /// let mut event = AzureEvent::new(AzureEventKind::NodeMaintenanceEnded, now);
    /// event.non_ssl_port = Some(13001);
    /// assert_eq!(event.to_message(), "NotificationType|NodeMaintenanceEnded|IsReplica|False|NonSSLPort|13001");
    /// assert_eq!(AzureEvent::parse(&event.to_message(), now), Ok(event));
    /// ```
    pub fn to_message(&self) -> String {
        let mut out = format!("NotificationType|{}", self.kind);
        if let Some(t) = self.start_time {
            out.push_str("|StartTimeInUTC|");
            out.push_str(&format_utc(t));
        }
        out.push_str(if self.is_replica {
            "|IsReplica|True"
        } else {
            "|IsReplica|False"
        });
        if let Some(ip) = self.ip_address {
            out.push_str(&format!("|IPAddress|{ip}"));
        }
        if let Some(p) = self.ssl_port {
            out.push_str(&format!("|SSLPort|{p}"));
        }
        if let Some(p) = self.non_ssl_port {
            out.push_str(&format!("|NonSSLPort|{p}"));
        }
        out
    }
}

fn truncate(s: &str) -> &str {
    match s.char_indices().nth(64) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

// ===== UTC times without a date library =====

/// Days from 1970-01-01 to the given proleptic Gregorian date.
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of a day counted from 1970-01-01.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        _ => 28,
    }
}

/// Parses `YYYY-MM-DDTHH:MM:SS[.fraction][Z]` (a space may stand for the `T`) as UTC.
pub(crate) fn parse_utc(s: &str) -> Option<SystemTime> {
    let s = s
        .strip_suffix('Z')
        .or_else(|| s.strip_suffix('z'))
        .or_else(|| s.strip_suffix("+00:00"))
        .unwrap_or(s);
    let b = s.as_bytes();
    if b.len() < 19 || b[4] != b'-' || b[7] != b'-' || b[13] != b':' || b[16] != b':' {
        return None;
    }
    if !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    let num = |range: std::ops::Range<usize>| -> Option<u32> {
        let part = s.get(range)?;
        part.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| part.parse().ok())
            .flatten()
    };
    let year = i64::from(num(0..4)?);
    let (month, day) = (num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&month)
        || day == 0
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 59
    {
        return None;
    }
    let mut nanos = 0u32;
    if b.len() > 19 {
        let fraction = s.get(19..)?.strip_prefix('.')?;
        if fraction.is_empty() || !fraction.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        // Nanosecond precision; further digits are dropped.
        for (i, c) in fraction.bytes().take(9).enumerate() {
            nanos += u32::from(c - b'0') * 10u32.pow(8 - i as u32);
        }
    }
    let secs = days_from_civil(year, month, day) * 86_400
        + i64::from(hour) * 3600
        + i64::from(minute) * 60
        + i64::from(second);
    let whole = if secs >= 0 {
        UNIX_EPOCH.checked_add(Duration::from_secs(secs.unsigned_abs()))?
    } else {
        UNIX_EPOCH.checked_sub(Duration::from_secs(secs.unsigned_abs()))?
    };
    whole.checked_add(Duration::from_nanos(u64::from(nanos)))
}

/// Writes a time as `YYYY-MM-DDTHH:MM:SS[.fraction]`, UTC, the way Azure does.
pub fn format_utc(t: SystemTime) -> String {
    let nanos_total: i128 = match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_nanos() as i128,
        Err(e) => -(e.duration().as_nanos() as i128),
    };
    let secs = nanos_total.div_euclid(1_000_000_000) as i64;
    let nanos = nanos_total.rem_euclid(1_000_000_000) as u32;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (year, month, day) = civil_from_days(days);
    let mut out = format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    );
    if nanos != 0 {
        let fraction = format!("{nanos:09}");
        out.push('.');
        out.push_str(fraction.trim_end_matches('0'));
    }
    out
}

/// The payload of a Pub/Sub message on `AzureRedisEvents`, if the push is one.
pub(crate) fn payload(elements: &[BytesFrame]) -> Option<Result<&Bytes, &'static str>> {
    let name = text(elements.first()?)?;
    let (channel, payload) = if name.eq_ignore_ascii_case(b"message") {
        (elements.get(1)?, elements.get(2))
    } else if name.eq_ignore_ascii_case(b"pmessage") {
        (elements.get(2)?, elements.get(3))
    } else {
        return None;
    };
    if text(channel)?.as_ref() != AZURE_CHANNEL.as_bytes() {
        return None;
    }
    Some(
        payload
            .and_then(text)
            .ok_or("malformed AzureRedisEvents message: the payload is not a string"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = "NotificationType|NodeMaintenanceStarting|StartTimeInUTC|2021-03-02T23:34:56|IsReplica|False|IPAddress|10.0.0.5|SSLPort|15001|NonSSLPort|13001";

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn parses_the_documented_example() {
        let got = AzureEvent::parse(EXAMPLE, at(0)).unwrap();
        assert_eq!(
            got,
            AzureEvent {
                kind: AzureEventKind::NodeMaintenanceStarting,
                start_time: Some(at(1_614_728_096)),
                received_at: at(0),
                is_replica: false,
                ip_address: Some("10.0.0.5".parse().unwrap()),
                ssl_port: Some(15001),
                non_ssl_port: Some(13001),
            }
        );
        assert!(!got.is_late());
        assert_eq!(got.endpoint(false).unwrap().to_string(), "10.0.0.5:13001");
    }

    #[test]
    fn every_type_including_unknown_and_the_old_failover_name() {
        for (name, kind) in [
            (
                "NodeMaintenanceScheduled",
                AzureEventKind::NodeMaintenanceScheduled,
            ),
            (
                "NodeMaintenanceStarting",
                AzureEventKind::NodeMaintenanceStarting,
            ),
            ("NodeMaintenanceStart", AzureEventKind::NodeMaintenanceStart),
            (
                "NodeMaintenanceFailoverComplete",
                AzureEventKind::NodeMaintenanceFailoverComplete,
            ),
            (
                "NodeMaintenanceFailover",
                AzureEventKind::NodeMaintenanceFailoverComplete,
            ),
            (
                "NodeMaintenanceScaleComplete",
                AzureEventKind::NodeMaintenanceScaleComplete,
            ),
            ("NodeMaintenanceEnded", AzureEventKind::NodeMaintenanceEnded),
            (
                "NodeMaintenanceRebooted",
                AzureEventKind::Unknown("NodeMaintenanceRebooted".into()),
            ),
        ] {
            let e = AzureEvent::parse(&format!("NotificationType|{name}"), at(0)).unwrap();
            assert_eq!(e.kind, kind, "{name}");
        }
    }

    #[test]
    fn keys_in_any_order_unknown_keys_ignored() {
        let e = AzureEvent::parse(
            "isreplica|TRUE|Color|blue|NonSSLPort|6379|notificationtype|NodeMaintenanceEnded|IPAddress||",
            at(5),
        )
        .unwrap();
        assert_eq!(e.kind, AzureEventKind::NodeMaintenanceEnded);
        assert!(e.is_replica);
        assert_eq!(e.non_ssl_port, Some(6379));
        assert_eq!(e.ip_address, None);
        assert_eq!(e.received_at, at(5));
    }

    #[test]
    fn malformed_messages_say_what_is_wrong() {
        for (message, says) in [
            ("", "NotificationType is missing"),
            ("hello", "has no value"),
            ("IsReplica|False", "NotificationType is missing"),
            ("NotificationType|X|IsReplica|maybe", "True or False"),
            ("NotificationType|X|SSLPort|70000", "port"),
            ("NotificationType|X|IPAddress|10.0.0", "IP address"),
            ("NotificationType|X|StartTimeInUTC|yesterday", "time"),
            (
                "NotificationType|X|StartTimeInUTC|2021-02-29T00:00:00",
                "time",
            ),
        ] {
            let err = AzureEvent::parse(message, at(0)).unwrap_err();
            assert!(err.to_string().contains(says), "{message:?}: {err}");
        }
    }

    #[test]
    fn utc_times_parse_and_format() {
        assert_eq!(parse_utc("1970-01-01T00:00:00"), Some(at(0)));
        assert_eq!(parse_utc("2000-02-29 12:00:00Z"), Some(at(951_825_600)));
        assert_eq!(
            parse_utc("2021-03-02T23:34:56.1234567"),
            Some(at(1_614_728_096) + Duration::from_nanos(123_456_700))
        );
        assert_eq!(parse_utc("2021-03-02T23:34:56."), None);
        assert_eq!(parse_utc("2021-13-02T23:34:56"), None);
        assert_eq!(parse_utc("2021-03-02T24:00:00"), None);
        assert_eq!(parse_utc("+021-03-02T23:34:56"), None);
        assert_eq!(format_utc(at(1_614_728_096)), "2021-03-02T23:34:56");
        let t = at(1_614_728_096) + Duration::from_millis(250);
        assert_eq!(format_utc(t), "2021-03-02T23:34:56.25");
        assert_eq!(parse_utc(&format_utc(t)), Some(t));
        for days in [-800_000i64, -1, 0, 59, 60, 11_016, 2_932_896] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
    }

    #[test]
    fn late_events_are_recognised() {
        let e = AzureEvent::parse(EXAMPLE, at(1_614_728_100)).unwrap();
        assert!(e.is_late());
    }
}
