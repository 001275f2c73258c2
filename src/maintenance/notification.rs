//! Smart-client-handoff notifications (RESP3 push frames) and their parser.

use std::fmt;
use std::time::Duration;

use bytes::Bytes;
use redis_protocol::resp3::types::BytesFrame;

use crate::endpoint::Endpoint;
use crate::frame::text;

/// The number of hash slots in a Redis cluster; slots are `0..SLOTS`.
pub const SLOTS: u16 = 16384;

/// A maintenance notification pushed by the server.
///
/// Times are whole seconds on the wire; a `time` is how long after the notification arrived
/// the announced change happens (for `MOVING`: when the server closes connections to the old
/// endpoint).
///
/// [`Notification::from_push`] is liberal in the shapes it accepts, because servers and proxies
/// differ: the name and strings may be simple or bulk strings, integers may be RESP3 numbers or
/// decimal strings, shard ids may be absent, a string (`"1,2"`) or an array, and extra trailing
/// elements are ignored. It is exact in what it means: an endpoint without a port means 6379, IPv6 endpoints
/// are split at their last `:` (or given as `[addr]:port`), a null endpoint is `None`, and a
/// negative sequence number or time is an error rather than a guess.
///
/// ```
/// use redis_handoff::maintenance::Notification;
/// use redis_handoff::frame::BytesFrame;
/// use std::time::Duration;
///
/// let push = BytesFrame::Push {
///     data: vec![
///         BytesFrame::BlobString { data: "MOVING".into(), attributes: None },
///         BytesFrame::Number { data: 17, attributes: None },
///         BytesFrame::Number { data: 15, attributes: None },
///         BytesFrame::BlobString { data: "10.0.0.2:12000".into(), attributes: None },
///     ],
///     attributes: None,
/// };
/// let parsed = Notification::from_push(&push).unwrap().unwrap();
/// assert_eq!(
///     parsed,
///     Notification::Moving {
///         seq: 17,
///         time: Duration::from_secs(15),
///         endpoint: Some("10.0.0.2:12000".parse().unwrap()),
///     }
/// );
/// // Anything that is not a maintenance notification is not ours: `Ok(None)`.
/// let message = BytesFrame::Push {
///     data: vec![BytesFrame::BlobString { data: "message".into(), attributes: None }],
///     attributes: None,
/// };
/// assert_eq!(Notification::from_push(&message), Ok(None));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Notification {
    /// This endpoint goes away in `time`; reconnect to `endpoint`, or to the configured address
    /// at `time / 2` when the server sent no endpoint.
    Moving {
        /// The server's sequence number.
        seq: u64,
        /// The grace period before the server closes connections to the old endpoint.
        time: Duration,
        /// Where to reconnect; `None` when the server sent a null endpoint.
        endpoint: Option<Endpoint>,
    },
    /// A shard migration starts; latency rises until `Migrated`.
    Migrating {
        /// The server's sequence number.
        seq: u64,
        /// How long the migration is expected to take.
        time: Duration,
        /// The shards involved; empty when the server named none.
        shards: Vec<String>,
    },
    /// A shard migration has finished.
    Migrated {
        /// The server's sequence number.
        seq: u64,
        /// The shards involved; empty when the server named none.
        shards: Vec<String>,
    },
    /// A failover starts; latency rises until `FailedOver`.
    FailingOver {
        /// The server's sequence number.
        seq: u64,
        /// How long the failover is expected to take.
        time: Duration,
        /// The shards involved; empty when the server named none.
        shards: Vec<String>,
    },
    /// A failover has finished.
    FailedOver {
        /// The server's sequence number.
        seq: u64,
        /// The shards involved; empty when the server named none.
        shards: Vec<String>,
    },
    /// OSS Cluster API: these slots of the node are moving.
    SMigrating {
        /// The server's sequence number.
        seq: u64,
        /// The slots that are moving.
        slots: Vec<SlotRange>,
    },
    /// OSS Cluster API: slots have moved between nodes; the topology should be refreshed.
    SMigrated {
        /// The server's sequence number.
        seq: u64,
        /// Each move: from where, to where, which slots.
        moves: Vec<SlotMove>,
    },
}

/// The kinds of [`Notification`], for counters and matching without the fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum NotificationKind {
    /// `MOVING`
    Moving,
    /// `MIGRATING`
    Migrating,
    /// `MIGRATED`
    Migrated,
    /// `FAILING_OVER`
    FailingOver,
    /// `FAILED_OVER`
    FailedOver,
    /// `SMIGRATING`
    SMigrating,
    /// `SMIGRATED`
    SMigrated,
}

impl NotificationKind {
    /// Every kind, in a fixed order (the order of counters).
    pub const ALL: [NotificationKind; 7] = [
        NotificationKind::Moving,
        NotificationKind::Migrating,
        NotificationKind::Migrated,
        NotificationKind::FailingOver,
        NotificationKind::FailedOver,
        NotificationKind::SMigrating,
        NotificationKind::SMigrated,
    ];

    /// The name on the wire, such as `"FAILING_OVER"`.
    pub const fn name(self) -> &'static str {
        match self {
            NotificationKind::Moving => "MOVING",
            NotificationKind::Migrating => "MIGRATING",
            NotificationKind::Migrated => "MIGRATED",
            NotificationKind::FailingOver => "FAILING_OVER",
            NotificationKind::FailedOver => "FAILED_OVER",
            NotificationKind::SMigrating => "SMIGRATING",
            NotificationKind::SMigrated => "SMIGRATED",
        }
    }

    /// The kind with this wire name, ignoring ASCII case.
    pub fn from_name(name: &[u8]) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|k| name.eq_ignore_ascii_case(k.name().as_bytes()))
    }

    /// The position of this kind in [`NotificationKind::ALL`].
    pub(crate) const fn index(self) -> usize {
        self as usize
    }

    /// Whether the kind starts a maintenance period (relax timeouts).
    pub const fn is_start(self) -> bool {
        matches!(
            self,
            NotificationKind::Migrating
                | NotificationKind::FailingOver
                | NotificationKind::SMigrating
        )
    }

    /// Whether the kind ends a maintenance period (end the relaxation).
    pub const fn is_end(self) -> bool {
        matches!(
            self,
            NotificationKind::Migrated | NotificationKind::FailedOver | NotificationKind::SMigrated
        )
    }
}

impl fmt::Display for NotificationKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An inclusive range of cluster hash slots, `start..=end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SlotRange {
    /// The first slot.
    pub start: u16,
    /// The last slot, inclusive.
    pub end: u16,
}

impl SlotRange {
    /// A range of slots; `None` unless `start <= end < 16384`.
    pub fn new(start: u16, end: u16) -> Option<Self> {
        (start <= end && end < SLOTS).then_some(SlotRange { start, end })
    }

    /// Whether `slot` is in the range.
    pub fn contains(&self, slot: u16) -> bool {
        (self.start..=self.end).contains(&slot)
    }

    /// How many slots the range holds.
    pub fn len(&self) -> usize {
        usize::from(self.end - self.start) + 1
    }

    /// Always false: a range holds at least one slot.
    pub fn is_empty(&self) -> bool {
        false
    }
}

impl fmt::Display for SlotRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.start == self.end {
            write!(f, "{}", self.start)
        } else {
            write!(f, "{}-{}", self.start, self.end)
        }
    }
}

/// One entry of `SMIGRATED`: slots that moved from one node to another.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SlotMove {
    /// The node the slots left.
    pub source: Endpoint,
    /// The node that serves them now.
    pub destination: Endpoint,
    /// The slots that moved.
    pub slots: Vec<SlotRange>,
}

/// A push frame named like a maintenance notification that could not be understood.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseNotificationError {
    kind: NotificationKind,
    reason: String,
}

impl ParseNotificationError {
    /// The kind of notification the frame claimed to be.
    pub fn kind(&self) -> NotificationKind {
        self.kind
    }

    /// What was wrong with it.
    pub fn reason(&self) -> &str {
        &self.reason
    }
}

impl fmt::Display for ParseNotificationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "malformed {} notification: {}", self.kind, self.reason)
    }
}

impl std::error::Error for ParseNotificationError {}

// ===== impl Notification =====

impl Notification {
    /// Parses a push frame.
    ///
    /// `Ok(None)` when the frame is not a maintenance notification at all (a Pub/Sub message,
    /// an invalidation, an unknown name, not a push); `Err` when it is named like one but its
    /// elements cannot be understood. Arrays are accepted like pushes.
    pub fn from_push(frame: &BytesFrame) -> Result<Option<Notification>, ParseNotificationError> {
        match frame {
            BytesFrame::Push { data, .. } | BytesFrame::Array { data, .. } => {
                Notification::from_elements(data)
            }
            _ => Ok(None),
        }
    }

    /// Parses the elements of a push frame, the name first; see [`Notification::from_push`].
    pub fn from_elements(
        elements: &[BytesFrame],
    ) -> Result<Option<Notification>, ParseNotificationError> {
        let Some((name, args)) = elements.split_first() else {
            return Ok(None);
        };
        let Some(kind) = text(name).and_then(|n| NotificationKind::from_name(n)) else {
            return Ok(None);
        };
        parse(kind, args)
            .map(Some)
            .map_err(|reason| ParseNotificationError { kind, reason })
    }

    /// The kind, without the fields.
    pub fn kind(&self) -> NotificationKind {
        match self {
            Notification::Moving { .. } => NotificationKind::Moving,
            Notification::Migrating { .. } => NotificationKind::Migrating,
            Notification::Migrated { .. } => NotificationKind::Migrated,
            Notification::FailingOver { .. } => NotificationKind::FailingOver,
            Notification::FailedOver { .. } => NotificationKind::FailedOver,
            Notification::SMigrating { .. } => NotificationKind::SMigrating,
            Notification::SMigrated { .. } => NotificationKind::SMigrated,
        }
    }

    /// The name on the wire, such as `"MIGRATING"`.
    pub fn name(&self) -> &'static str {
        self.kind().name()
    }

    /// The server's sequence number.
    pub fn seq(&self) -> u64 {
        match self {
            Notification::Moving { seq, .. }
            | Notification::Migrating { seq, .. }
            | Notification::Migrated { seq, .. }
            | Notification::FailingOver { seq, .. }
            | Notification::FailedOver { seq, .. }
            | Notification::SMigrating { seq, .. }
            | Notification::SMigrated { seq, .. } => *seq,
        }
    }

    /// The push frame a server would send for this notification (times in whole seconds,
    /// strings as bulk strings, shard ids as an array and left out when there are none).
    ///
    /// ```
    /// use redis_handoff::maintenance::Notification;
    ///
    /// let n = Notification::Migrated { seq: 19, shards: vec!["1".into()] };
    /// assert_eq!(Notification::from_push(&n.to_push()), Ok(Some(n)));
    /// ```
    pub fn to_push(&self) -> BytesFrame {
        let mut data = vec![blob(self.name())];
        data.push(number(self.seq()));
        match self {
            Notification::Moving { time, endpoint, .. } => {
                data.push(number(time.as_secs()));
                data.push(match endpoint {
                    Some(e) => blob(&e.to_string()),
                    None => BytesFrame::Null,
                });
            }
            Notification::Migrating { time, shards, .. }
            | Notification::FailingOver { time, shards, .. } => {
                data.push(number(time.as_secs()));
                if !shards.is_empty() {
                    data.push(array(shards.iter().map(|s| blob(s)).collect()));
                }
            }
            Notification::Migrated { shards, .. } | Notification::FailedOver { shards, .. } => {
                if !shards.is_empty() {
                    data.push(array(shards.iter().map(|s| blob(s)).collect()));
                }
            }
            Notification::SMigrating { slots, .. } => data.push(blob(&slots_to_string(slots))),
            Notification::SMigrated { moves, .. } => data.push(array(
                moves
                    .iter()
                    .map(|m| {
                        array(vec![
                            blob(&m.source.to_string()),
                            blob(&m.destination.to_string()),
                            blob(&slots_to_string(&m.slots)),
                        ])
                    })
                    .collect(),
            )),
        }
        BytesFrame::Push {
            data,
            attributes: None,
        }
    }
}

impl fmt::Display for Notification {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} seq={}", self.name(), self.seq())?;
        match self {
            Notification::Moving { time, endpoint, .. } => match endpoint {
                Some(e) => write!(f, " time={}s endpoint={e}", time.as_secs()),
                None => write!(f, " time={}s endpoint=null", time.as_secs()),
            },
            Notification::Migrating { time, shards, .. }
            | Notification::FailingOver { time, shards, .. } => {
                write!(f, " time={}s shards={shards:?}", time.as_secs())
            }
            Notification::Migrated { shards, .. } | Notification::FailedOver { shards, .. } => {
                write!(f, " shards={shards:?}")
            }
            Notification::SMigrating { slots, .. } => {
                write!(f, " slots={}", slots_to_string(slots))
            }
            Notification::SMigrated { moves, .. } => write!(f, " moves={}", moves.len()),
        }
    }
}

/// Writes slot ranges as the servers do: `"1,5-10"`.
pub(crate) fn slots_to_string(slots: &[SlotRange]) -> String {
    let mut out = String::new();
    for (i, r) in slots.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&r.to_string());
    }
    out
}

/// Parses slot ranges written as the servers do: `"1,5-10"` (spaces and empty parts ignored).
pub(crate) fn parse_slots(s: &str) -> Result<Vec<SlotRange>, String> {
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (a, b) = match part.split_once('-') {
            Some((a, b)) => (a.trim(), b.trim()),
            None => (part, part),
        };
        let slot = |x: &str| {
            x.parse::<u16>()
                .ok()
                .filter(|&n| n < SLOTS)
                .ok_or_else(|| format!("slot {:?} is not a number from 0 to 16383", clip(x)))
        };
        let (start, end) = (slot(a)?, slot(b)?);
        out.push(
            SlotRange::new(start, end)
                .ok_or_else(|| format!("slot range {:?} ends before it starts", clip(part)))?,
        );
    }
    Ok(out)
}

/// The start of a server's string, for an error message: at most 64 characters.
fn clip(s: &str) -> &str {
    s.char_indices().nth(64).map_or(s, |(i, _)| &s[..i])
}

// ===== parsing =====

fn parse(kind: NotificationKind, args: &[BytesFrame]) -> Result<Notification, String> {
    let seq = uint(args.first(), "sequence number")?;
    Ok(match kind {
        NotificationKind::Moving => Notification::Moving {
            seq,
            time: seconds(args.get(1))?,
            endpoint: moving_endpoint(args.get(2))?,
        },
        NotificationKind::Migrating => {
            let (time, shards) = time_then_shards(args.get(1..).unwrap_or(&[]))?;
            Notification::Migrating { seq, time, shards }
        }
        NotificationKind::FailingOver => {
            let (time, shards) = time_then_shards(args.get(1..).unwrap_or(&[]))?;
            Notification::FailingOver { seq, time, shards }
        }
        NotificationKind::Migrated => Notification::Migrated {
            seq,
            shards: shards(args.get(1))?,
        },
        NotificationKind::FailedOver => Notification::FailedOver {
            seq,
            shards: shards(args.get(1))?,
        },
        NotificationKind::SMigrating => Notification::SMigrating {
            seq,
            slots: slots(args.get(1))?,
        },
        NotificationKind::SMigrated => Notification::SMigrated {
            seq,
            moves: moves(args.get(1))?,
        },
    })
}

fn utf8<'a>(bytes: &'a Bytes, what: &str) -> Result<&'a str, String> {
    std::str::from_utf8(bytes).map_err(|_| format!("the {what} is not UTF-8"))
}

fn describe(frame: &BytesFrame) -> &'static str {
    match frame {
        BytesFrame::BlobString { .. } => "a bulk string",
        BytesFrame::SimpleString { .. } => "a simple string",
        BytesFrame::VerbatimString { .. } => "a verbatim string",
        BytesFrame::BlobError { .. } | BytesFrame::SimpleError { .. } => "an error",
        BytesFrame::Boolean { .. } => "a boolean",
        BytesFrame::Null => "null",
        BytesFrame::Number { .. } => "a number",
        BytesFrame::Double { .. } => "a double",
        BytesFrame::BigNumber { .. } => "a big number",
        BytesFrame::Array { .. } => "an array",
        BytesFrame::Map { .. } => "a map",
        BytesFrame::Set { .. } => "a set",
        BytesFrame::Push { .. } => "a push",
        BytesFrame::Hello { .. } => "a HELLO",
        BytesFrame::ChunkedString(_) => "a chunked string",
    }
}

fn uint(frame: Option<&BytesFrame>, what: &str) -> Result<u64, String> {
    let frame = frame.ok_or_else(|| format!("the {what} is missing"))?;
    let bad = || {
        format!(
            "the {what} must be a non-negative integer, got {}",
            describe(frame)
        )
    };
    match frame {
        BytesFrame::Number { data, .. } => u64::try_from(*data).map_err(|_| bad()),
        BytesFrame::BigNumber { data, .. } => std::str::from_utf8(data)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .ok_or_else(bad),
        f => text(f)
            .and_then(|t| std::str::from_utf8(t).ok())
            .and_then(|s| s.trim().parse().ok())
            .ok_or_else(bad),
    }
}

/// The `time` and shard ids of a start notification. Redis Software sometimes leaves `time`
/// out (`MIGRATING <seq> <shards>`): what follows the seq is then the shard ids, and the time is
/// zero (the relaxation lasts until the end notification or the backstop, as always).
fn time_then_shards(rest: &[BytesFrame]) -> Result<(Duration, Vec<String>), String> {
    match rest.first() {
        Some(BytesFrame::Number { .. }) | None => {
            Ok((seconds(rest.first())?, shards(rest.get(1))?))
        }
        Some(f) if text(f).is_some_and(|t| !t.is_empty() && t.iter().all(u8::is_ascii_digit)) => {
            Ok((seconds(rest.first())?, shards(rest.get(1))?))
        }
        Some(_) if rest.len() == 1 => Ok((Duration::ZERO, shards(rest.first())?)),
        Some(_) => Ok((seconds(rest.first())?, shards(rest.get(1))?)),
    }
}

fn seconds(frame: Option<&BytesFrame>) -> Result<Duration, String> {
    uint(frame, "time").map(Duration::from_secs)
}

fn endpoint(frame: &BytesFrame, what: &str) -> Result<Endpoint, String> {
    let bytes = text(frame)
        .ok_or_else(|| format!("the {what} must be a string, got {}", describe(frame)))?;
    utf8(bytes, what)?
        .parse()
        .map_err(|e| format!("the {what}: {e}"))
}

fn moving_endpoint(frame: Option<&BytesFrame>) -> Result<Option<Endpoint>, String> {
    match frame {
        None | Some(BytesFrame::Null) => Ok(None),
        Some(f) if text(f).is_some_and(|t| t.iter().all(u8::is_ascii_whitespace)) => Ok(None),
        Some(f) => endpoint(f, "endpoint").map(Some),
    }
}

fn shard_id(frame: &BytesFrame) -> Result<Vec<String>, String> {
    match frame {
        BytesFrame::Number { data, .. } => Ok(vec![data.to_string()]),
        f => {
            let t = text(f).ok_or_else(|| {
                format!(
                    "shard ids must be strings or numbers, got {}",
                    describe(frame)
                )
            })?;
            Ok(vec![utf8(t, "shard id")?.trim().to_string()]
                .into_iter()
                .filter(|s| !s.is_empty())
                .collect())
        }
    }
}

fn shards(frame: Option<&BytesFrame>) -> Result<Vec<String>, String> {
    match frame {
        None | Some(BytesFrame::Null) => Ok(Vec::new()),
        Some(BytesFrame::Array { data, .. }) => {
            let mut out = Vec::with_capacity(data.len());
            for f in data {
                out.extend(shard_id(f)?);
            }
            Ok(out)
        }
        Some(BytesFrame::Set { data, .. }) => {
            let mut out = Vec::with_capacity(data.len());
            for f in data {
                out.extend(shard_id(f)?);
            }
            out.sort();
            Ok(out)
        }
        Some(BytesFrame::Number { data, .. }) => Ok(vec![data.to_string()]),
        // A lone string may list several ids: "1,2".
        Some(f) => {
            let t = text(f).ok_or_else(|| {
                format!(
                    "shard ids must be a string or an array, got {}",
                    describe(f)
                )
            })?;
            // Also `[1]` or `[1,2]`, as Redis Software writes them in one simple string.
            Ok(utf8(t, "shard ids")?
                .trim()
                .trim_start_matches('[')
                .trim_end_matches(']')
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect())
        }
    }
}

fn slots(frame: Option<&BytesFrame>) -> Result<Vec<SlotRange>, String> {
    let frame = frame.ok_or("the slots are missing")?;
    match frame {
        BytesFrame::Array { data, .. } => {
            let mut out = Vec::new();
            for f in data {
                out.extend(slots(Some(f))?);
            }
            Ok(out)
        }
        BytesFrame::Number { data, .. } => {
            let slot = u16::try_from(*data)
                .ok()
                .and_then(|s| SlotRange::new(s, s))
                .ok_or_else(|| format!("slot {data} is not from 0 to 16383"))?;
            Ok(vec![slot])
        }
        f => {
            let t = text(f)
                .ok_or_else(|| format!("the slots must be a string, got {}", describe(f)))?;
            parse_slots(utf8(t, "slots")?)
        }
    }
}

fn slot_move(items: &[BytesFrame]) -> Result<SlotMove, String> {
    let (Some(src), Some(dst)) = (items.first(), items.get(1)) else {
        return Err("a move needs a source, a destination and slots".into());
    };
    Ok(SlotMove {
        source: endpoint(src, "source endpoint")?,
        destination: endpoint(dst, "destination endpoint")?,
        slots: slots(items.get(2))?,
    })
}

fn moves(frame: Option<&BytesFrame>) -> Result<Vec<SlotMove>, String> {
    let frame = frame.ok_or("the moves are missing")?;
    let BytesFrame::Array { data, .. } = frame else {
        return Err(format!(
            "the moves must be an array, got {}",
            describe(frame)
        ));
    };
    // One move given flat, `[src, dst, slots]`, rather than as a list of moves.
    if data.first().is_some_and(|f| text(f).is_some()) {
        return Ok(vec![slot_move(data)?]);
    }
    data.iter()
        .map(|m| match m {
            BytesFrame::Array { data, .. } => slot_move(data),
            other => Err(format!("a move must be an array, got {}", describe(other))),
        })
        .collect()
}

fn blob(s: &str) -> BytesFrame {
    BytesFrame::BlobString {
        data: Bytes::copy_from_slice(s.as_bytes()),
        attributes: None,
    }
}

fn number(n: u64) -> BytesFrame {
    match i64::try_from(n) {
        Ok(data) => BytesFrame::Number {
            data,
            attributes: None,
        },
        // Beyond RESP3's integers: the decimal text, which the parser also accepts.
        Err(_) => blob(&n.to_string()),
    }
}

fn array(data: Vec<BytesFrame>) -> BytesFrame {
    BytesFrame::Array {
        data,
        attributes: None,
    }
}

#[cfg(test)]
mod tests;
