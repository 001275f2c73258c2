//! Commands: the request most services of the crate are called with (with pipelines and
//! transactions of them, [`crate::request`]).
//!
//! A [`Command`] is a list of arguments, the first being the command's name. It knows, from the
//! name and arguments, what kind of command it is: read-only, idempotent (safe to run twice),
//! blocking (and for how long), or a Pub/Sub subscription change. The retry and timeout layers make
//! their decisions from this one classification.
//!
//! ```
//! use redis_handoff::{cmd, Command};
//!
//! let set = Command::new("SET").arg("greeting").arg("hello").arg("EX").arg(60);
//! assert_eq!(set.name(), "SET");
//! assert!(set.is_idempotent());
//!
//! let incr = cmd!("INCR", "visits");
//! assert!(!incr.is_idempotent());
//! ```

use std::fmt;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};

/// A Redis command: its name and arguments, as binary-safe strings.
///
/// The arguments are kept already in their RESP form (`$<len>\r\n<bytes>\r\n` each) in one
/// buffer, which lives inside the `Command` itself while it is small (up to
/// [`Command::INLINE_BYTES`] bytes, enough for most commands on short keys) and on the heap
/// otherwise: building a typical command allocates nothing, and sending it is one copy.
#[derive(Clone)]
pub struct Command {
    body: Body,
    argc: u32,
    // Where the name's bytes are in `body` (end 0: not recorded, for a name too long for the
    // fields): every layer reads the name, and this saves parsing the buffer each time.
    // (The name is the first argument: it starts right after its length, within 23 bytes.)
    name_start: u8,
    // The name's first byte in upper case (0 for none): what the checks every layer makes
    // (blocking? a subscription?) look at first.
    initial: u8,
    name_end: u16,
}

/// Builds a [`Command`] from a name and any number of arguments.
///
/// ```
/// use redis_handoff::cmd;
/// let c = cmd!("HSET", "user:1", "name", "ada", "age", 36);
/// assert_eq!(c.args().len(), 6);
/// ```
#[macro_export]
macro_rules! cmd {
    ($name:expr $(, $arg:expr)* $(,)?) => {
        $crate::Command::new($name)$(.arg($arg))*
    };
}

/// A value that can be a command argument.
///
/// Implemented for strings, byte slices, [`Bytes`], integers and floats. To pass a type of your
/// own, implement [`with_bytes`](ToArg::with_bytes) to lend its bytes:
///
/// ```
/// use redis_handoff::{cmd, ToArg};
///
/// struct UserId(u32);
///
/// impl ToArg for UserId {
///     fn with_bytes<R>(self, f: impl FnOnce(&[u8]) -> R) -> R {
///         format!("user:{}", self.0).with_bytes(f)
///     }
/// }
///
/// let c = cmd!("GET", UserId(7));
/// assert_eq!(c.args().nth(1), Some(&b"user:7"[..]));
/// ```
pub trait ToArg {
    /// Calls `f` with the argument's bytes.
    fn with_bytes<R>(self, f: impl FnOnce(&[u8]) -> R) -> R;
}

impl ToArg for Bytes {
    fn with_bytes<R>(self, f: impl FnOnce(&[u8]) -> R) -> R {
        f(&self)
    }
}
impl ToArg for &Bytes {
    fn with_bytes<R>(self, f: impl FnOnce(&[u8]) -> R) -> R {
        f(self)
    }
}
impl ToArg for &str {
    fn with_bytes<R>(self, f: impl FnOnce(&[u8]) -> R) -> R {
        f(self.as_bytes())
    }
}
impl ToArg for String {
    fn with_bytes<R>(self, f: impl FnOnce(&[u8]) -> R) -> R {
        f(self.as_bytes())
    }
}
impl ToArg for &String {
    fn with_bytes<R>(self, f: impl FnOnce(&[u8]) -> R) -> R {
        f(self.as_bytes())
    }
}
impl ToArg for &[u8] {
    fn with_bytes<R>(self, f: impl FnOnce(&[u8]) -> R) -> R {
        f(self)
    }
}
impl<const N: usize> ToArg for &[u8; N] {
    fn with_bytes<R>(self, f: impl FnOnce(&[u8]) -> R) -> R {
        f(self)
    }
}
impl ToArg for Vec<u8> {
    fn with_bytes<R>(self, f: impl FnOnce(&[u8]) -> R) -> R {
        f(&self)
    }
}
impl ToArg for &Vec<u8> {
    fn with_bytes<R>(self, f: impl FnOnce(&[u8]) -> R) -> R {
        f(self)
    }
}
macro_rules! unsigned_arg {
    ($($t:ty),*) => {$(
        impl ToArg for $t {
            fn with_bytes<R>(self, f: impl FnOnce(&[u8]) -> R) -> R {
                let mut buf = [0u8; 20];
                f(decimal(&mut buf, self as u64))
            }
        }
    )*};
}
unsigned_arg!(u8, u16, u32, u64, usize);

macro_rules! signed_arg {
    ($($t:ty),*) => {$(
        impl ToArg for $t {
            fn with_bytes<R>(self, f: impl FnOnce(&[u8]) -> R) -> R {
                let mut buf = [0u8; 21];
                let n = decimal(&mut buf[1..], (self as i64).unsigned_abs()).len();
                let start = 21 - n;
                if self < 0 {
                    buf[start - 1] = b'-';
                    f(&buf[start - 1..])
                } else {
                    f(&buf[start..])
                }
            }
        }
    )*};
}
signed_arg!(i8, i16, i32, i64, isize);

macro_rules! wide_arg {
    ($($t:ty),*) => {$(
        impl ToArg for $t {
            fn with_bytes<R>(self, f: impl FnOnce(&[u8]) -> R) -> R {
                let mut buf = [0u8; 40];
                let n = format_display(&mut buf, self);
                f(&buf[..n])
            }
        }
    )*};
}
wide_arg!(i128, u128);

/// Writes `n` in decimal at the end of `buf` (20 bytes hold any `u64`) and returns the digits.
fn decimal(buf: &mut [u8], mut n: u64) -> &[u8] {
    let mut i = buf.len();
    loop {
        if i == 0 {
            break;
        }
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    &buf[i..]
}

/// `$<n>\r\n`, the header of a bulk string of `n` bytes, written at the end of `buf`.
#[inline]
fn bulk_header(buf: &mut [u8; 24], n: usize) -> &[u8] {
    buf[22] = b'\r';
    buf[23] = b'\n';
    let digits = if n < 10 {
        // Most arguments (names, keys, small values): no division.
        buf[21] = b'0' + n as u8;
        1
    } else {
        decimal(&mut buf[..22], n as u64).len()
    };
    // At most 20 digits: `$` still fits in front of them.
    let start = 22 - digits - 1;
    buf[start] = b'$';
    &buf[start..]
}

macro_rules! float_arg {
    ($($t:ty),*) => {$(
        impl ToArg for $t {
            fn with_bytes<R>(self, f: impl FnOnce(&[u8]) -> R) -> R {
                // Redis parses `inf`, `-inf` and plain decimals; Display never uses exponents.
                f(self.to_string().as_bytes())
            }
        }
    )*};
}
float_arg!(f32, f64);

/// Writes a value's `Display` form into `buf`, which is large enough for any integer.
fn format_display(buf: &mut [u8], value: impl fmt::Display) -> usize {
    use std::io::Write as _;
    let total = buf.len();
    let mut rest = &mut buf[..];
    // Cannot fail: every integer's decimal form fits in 40 bytes.
    let _ = write!(rest, "{value}");
    total - rest.len()
}

impl Command {
    /// How many bytes of encoded arguments a command holds without allocating.
    pub const INLINE_BYTES: usize = INLINE;

    /// A command with the given name and no arguments yet.
    pub fn new(name: impl ToArg) -> Self {
        let mut c = Command {
            body: Body::new(),
            argc: 0,
            name_start: 0,
            name_end: 0,
            initial: 0,
        };
        c.push_arg(name);
        c
    }

    /// Adds an argument.
    #[must_use]
    pub fn arg(mut self, arg: impl ToArg) -> Self {
        self.push_arg(arg);
        self
    }

    /// Adds several arguments.
    #[must_use]
    pub fn args_from<I, A>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = A>,
        A: ToArg,
    {
        for a in args {
            self.push_arg(a);
        }
        self
    }

    /// Adds an argument in place.
    pub fn push_arg(&mut self, arg: impl ToArg) {
        let body = &mut self.body;
        let first = self.argc == 0;
        let mut name = (0, 0);
        let mut initial = 0;
        arg.with_bytes(|bytes| {
            let mut buf = [0u8; 24];
            let header = bulk_header(&mut buf, bytes.len());
            if first {
                let start = body.len() + header.len();
                name = (start, start + bytes.len());
                initial = bytes.first().map_or(0, u8::to_ascii_uppercase);
            }
            body.push_bulk(header, bytes);
        });
        if first {
            self.initial = initial;
            if let (Ok(start), Ok(end)) = (u8::try_from(name.0), u16::try_from(name.1)) {
                self.name_start = start;
                self.name_end = end;
            }
        }
        self.argc += 1;
    }

    /// All the arguments, the name first.
    pub fn args(&self) -> Args<'_> {
        Args {
            rest: self.body.as_slice(),
            left: self.argc as usize,
        }
    }

    /// The argument at `index` (the name is 0).
    pub fn arg_at(&self, index: usize) -> Option<&[u8]> {
        self.args().nth(index)
    }

    /// The command's name as sent, as bytes.
    #[inline]
    pub fn name_bytes(&self) -> &[u8] {
        if self.name_end != 0 {
            if let Some(name) = self
                .body
                .as_slice()
                .get(usize::from(self.name_start)..usize::from(self.name_end))
            {
                return name;
            }
        }
        self.args().next().unwrap_or(&[])
    }

    /// The command's name as given (`"get"` stays `"get"`); `""` if it is not UTF-8.
    pub fn name(&self) -> &str {
        std::str::from_utf8(self.name_bytes()).unwrap_or("")
    }

    /// Whether the name is `name`, ignoring ASCII case.
    pub fn is(&self, name: &str) -> bool {
        self.name_bytes().eq_ignore_ascii_case(name.as_bytes())
    }

    fn arg_is(&self, index: usize, word: &str) -> bool {
        self.arg_at(index)
            .is_some_and(|a| a.eq_ignore_ascii_case(word.as_bytes()))
    }

    fn has_option(&self, word: &str) -> bool {
        self.args()
            .skip(1)
            .any(|a| a.eq_ignore_ascii_case(word.as_bytes()))
    }

    /// Whether the command only reads. Read-only commands are safe to retry.
    pub fn is_read_only(&self) -> bool {
        let Some(name) = self.upper_name() else {
            return false;
        };
        if READ_ONLY.binary_search(&name.as_str()).is_ok() {
            return true;
        }
        match name.as_str() {
            "CONFIG" => self.arg_is(1, "GET"),
            "CLIENT" => ["ID", "GETNAME", "INFO", "LIST"]
                .iter()
                .any(|s| self.arg_is(1, s)),
            _ => false,
        }
    }

    /// Whether the command can be sent again after its reply was lost: running it twice leaves
    /// the same data **and** gives the same reply as running it once, so the caller cannot tell.
    ///
    /// True for read-only commands and for the writes in [`Command::RESENDABLE_WRITES`]: `SET`
    /// (without `NX`, `XX` or `GET`), `SETEX`, `PSETEX`, `MSET`, `HMSET`, `LSET`, `SETRANGE`,
    /// `LTRIM`, and `EXPIRE`, `PEXPIRE`, `EXPIREAT`, `PEXPIREAT` without a condition (`NX`,
    /// `XX`, `GT`, `LT`). Everything else is not, among them commands whose second run changes
    /// the reply (`DEL`, `UNLINK`, `SADD`, `SREM`, `HSET`, `HDEL`, `ZADD`, `ZREM`, `PFADD`,
    /// `PERSIST`, `SETBIT`, `TOUCH`), that change data each time (`INCR`, `LPUSH`, `PUBLISH`),
    /// that wipe other clients' writes made in between (`FLUSHALL`, `FLUSHDB`), scripts,
    /// transactions and connection-state commands.
    pub fn is_idempotent(&self) -> bool {
        if self.is_read_only() {
            return true;
        }
        let Some(name) = self.upper_name() else {
            return false;
        };
        let name = name.as_str();
        if RESENDABLE_WRITES
            .binary_search_by(|(n, _)| n.cmp(&name))
            .is_err()
        {
            return false;
        }
        match name {
            // `NX`/`XX` answer differently the second time; `GET` returns the first run's value.
            "SET" => !["NX", "XX", "GET"].iter().any(|o| self.has_option(o)),
            // A condition can hold the first time and not the second (`NX`, `GT` at the same
            // absolute time).
            "EXPIRE" | "PEXPIRE" | "EXPIREAT" | "PEXPIREAT" => {
                !["NX", "XX", "GT", "LT"].iter().any(|o| self.has_option(o))
            }
            _ => true,
        }
    }

    /// The writes [`Command::is_idempotent`] lets be sent again after a lost reply, each with
    /// why running it twice is indistinguishable from running it once. Sorted by name.
    pub const RESENDABLE_WRITES: &'static [(&'static str, &'static str)] = RESENDABLE_WRITES;

    /// How the command changes the connection it is sent on rather than the data, if it does.
    ///
    /// Such commands are refused on a connection that several callers share: see
    /// [`StateCommand`]. Cheap for every other command: a length and first-byte check.
    pub fn state_change(&self) -> Option<StateCommand> {
        let name = self.name_bytes();
        let first = name.first()?.to_ascii_uppercase();
        // Only names of these lengths and initials can be state commands.
        let candidate = matches!(
            (name.len(), first),
            (4, b'A' | b'E' | b'Q' | b'S')
                | (5, b'M' | b'W' | b'H' | b'R' | b'P')
                | (6, b'S' | b'C' | b'A')
                | (7, b'D' | b'U' | b'M')
                | (8, b'R')
                | (9, b'R')
        );
        if !candidate {
            return None;
        }
        let is = |n: &str| name.eq_ignore_ascii_case(n.as_bytes());
        let state = if is("MULTI") || is("EXEC") || is("DISCARD") {
            StateCommand::Transaction
        } else if is("WATCH") || is("UNWATCH") {
            StateCommand::Watch
        } else if is("SELECT") {
            StateCommand::Select
        } else if is("AUTH") {
            StateCommand::Auth
        } else if is("READONLY") || is("READWRITE") {
            StateCommand::ReadOnly
        } else if is("ASKING") {
            StateCommand::Asking
        } else if is("HELLO") || is("RESET") {
            StateCommand::Protocol
        } else if is("MONITOR") || is("QUIT") || is("SYNC") || is("PSYNC") || is("REPLCONF") {
            // REPLCONF from a client that is not a replica is answered with nothing at all.
            StateCommand::Replies
        } else if is("SCRIPT") && self.arg_is(1, "DEBUG") {
            // A Lua debugging session talks to the client outside one reply per command.
            StateCommand::Replies
        } else if is("CLIENT") {
            let sub = |w: &str| self.arg_is(1, w);
            if sub("REPLY") {
                StateCommand::Replies
            } else if sub("SETNAME") || sub("SETINFO") {
                StateCommand::ClientName
            } else if sub("TRACKING") || sub("CACHING") {
                StateCommand::Tracking
            } else if sub("NO-EVICT") || sub("NO-TOUCH") {
                StateCommand::ClientFlag
            } else if sub("MAINT_NOTIFICATIONS") {
                StateCommand::Maintenance
            } else {
                return None;
            }
        } else {
            return None;
        };
        Some(state)
    }

    /// How long the command may block on the server, when it is a blocking command.
    ///
    /// `Some(Block::Forever)` for a zero timeout (`BLPOP key 0`, `XREAD BLOCK 0`, `WAIT n 0`).
    /// `None` for a command that does not block.
    #[inline]
    pub fn blocking(&self) -> Option<Block> {
        // Cheap first-byte filter: this runs for every command, in more than one layer.
        if !matches!(self.initial, b'B' | b'W' | b'X') {
            return None;
        }
        let name = self.upper_name()?;
        // A malformed timeout gets no budget of its own: the server refuses it at once.
        let secs_at = |i: usize| self.arg_at(i).and_then(parse_seconds);
        let millis_at = |i: usize| self.arg_at(i).and_then(parse_millis);
        let last = (self.argc as usize).checked_sub(1).filter(|&l| l >= 2)?;
        let block = match name.as_str() {
            "BLPOP" | "BRPOP" | "BLMOVE" | "BRPOPLPUSH" | "BZPOPMIN" | "BZPOPMAX" => secs_at(last)?,
            "BLMPOP" | "BZMPOP" => secs_at(1)?,
            "WAIT" => millis_at(2)?,
            "WAITAOF" => millis_at(3)?,
            "XREAD" | "XREADGROUP" => {
                let at = self.args().position(|a| a.eq_ignore_ascii_case(b"BLOCK"))?;
                millis_at(at + 1)?
            }
            _ => return None,
        };
        Some(block)
    }

    /// The channels (patterns, shard channels) a subscription command names, copied out.
    pub(crate) fn subscription_names(&self) -> Vec<bytes::Bytes> {
        self.args()
            .skip(1)
            .map(bytes::Bytes::copy_from_slice)
            .collect()
    }

    /// The Pub/Sub subscription change this command makes, if any. In RESP3 the server answers
    /// these with push frames, one per channel, instead of a reply.
    #[inline]
    pub fn subscription(&self) -> Option<Subscription> {
        // Cheap first-byte filter: this runs for every command.
        if !matches!(self.initial, b'S' | b'P' | b'U') {
            return None;
        }
        let kind = SubscriptionKind::from_command(self.name_bytes())?;
        Some(Subscription {
            kind,
            channels: (self.argc as usize).saturating_sub(1),
        })
    }

    /// Writes the command in RESP (an array of bulk strings) to `out`.
    pub fn encode(&self, out: &mut BytesMut) {
        let body = self.body.as_slice();
        out.reserve(body.len() + 16);
        out.put_u8(b'*');
        put_decimal(out, self.argc as usize);
        out.put_slice(b"\r\n");
        out.put_slice(body);
    }

    /// The name in upper case, on the stack: classification runs on the command path.
    pub(crate) fn upper_name(&self) -> Option<UpperName> {
        let n = self.name_bytes();
        let mut buf = [0u8; 24];
        let dst = buf.get_mut(..n.len())?;
        dst.copy_from_slice(n);
        dst.make_ascii_uppercase();
        std::str::from_utf8(dst).ok()?;
        Some(UpperName {
            buf,
            len: n.len() as u8,
        })
    }

    /// Whether the arguments carry secrets that must not be logged.
    fn is_sensitive(&self) -> bool {
        const SECRET: [&str; 5] = ["AUTH", "HELLO", "MIGRATE", "ACL", "CONFIG"];
        SECRET.iter().any(|n| self.is(n))
    }
}

pub(crate) struct UpperName {
    buf: [u8; 24],
    len: u8,
}

impl UpperName {
    pub(crate) fn as_str(&self) -> &str {
        // Checked to be UTF-8 when built.
        std::str::from_utf8(&self.buf[..self.len as usize]).unwrap_or("")
    }
}

fn put_decimal(out: &mut BytesMut, n: usize) {
    let mut buf = [0u8; 20];
    out.put_slice(decimal(&mut buf, n as u64));
}

fn parse_seconds(arg: &[u8]) -> Option<Block> {
    let secs = std::str::from_utf8(arg)
        .ok()?
        .parse::<f64>()
        .ok()
        .filter(|s| s.is_finite() && *s >= 0.0)?;
    Some(if secs == 0.0 {
        Block::Forever
    } else {
        Block::For(Duration::from_secs_f64(secs.min(1e9)))
    })
}

fn parse_millis(arg: &[u8]) -> Option<Block> {
    let ms = std::str::from_utf8(arg).ok()?.parse::<u64>().ok()?;
    Some(if ms == 0 {
        Block::Forever
    } else {
        Block::For(Duration::from_millis(ms))
    })
}

/// How long a blocking command may wait on the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Block {
    /// Until data arrives, however long that takes (a zero timeout).
    Forever,
    /// At most this long.
    For(Duration),
}

/// A command that changes the connection it is sent on rather than the data; from
/// [`Command::state_change`].
///
/// On a connection that many callers share, such a command would change what every other
/// caller's commands do (a `MULTI` makes the server queue them, a `SELECT` moves them to
/// another database) or break the order in which replies are matched to commands. They are
/// refused there with [`Error::Refused`](crate::Error::Refused) before anything is written. On
/// a dedicated connection (`Stack::dedicated`) the first kinds are allowed; the last three
/// never are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum StateCommand {
    /// `MULTI`, `EXEC`, `DISCARD`.
    Transaction,
    /// `WATCH`, `UNWATCH`.
    Watch,
    /// `SELECT`.
    Select,
    /// `AUTH` after the handshake.
    Auth,
    /// `CLIENT SETNAME`, `CLIENT SETINFO`.
    ClientName,
    /// `CLIENT TRACKING`, `CLIENT CACHING`.
    Tracking,
    /// `CLIENT NO-EVICT`, `CLIENT NO-TOUCH`.
    ClientFlag,
    /// `READONLY`, `READWRITE` (cluster replicas).
    ReadOnly,
    /// `ASKING` (a cluster redirect; applies to the next command on the connection).
    Asking,
    /// `HELLO`, `RESET`: they change the protocol and drop subscriptions. Never allowed.
    Protocol,
    /// `CLIENT REPLY`, `MONITOR`, `QUIT`, `SYNC`, `PSYNC`, `REPLCONF`, `SCRIPT DEBUG`: the
    /// server stops answering one reply per command. Never allowed.
    Replies,
    /// `CLIENT MAINT_NOTIFICATIONS`: set by the maintenance configuration. Never allowed by hand.
    Maintenance,
}

impl StateCommand {
    /// Whether a dedicated connection, which no other caller uses, accepts it.
    pub fn allowed_on_dedicated(self) -> bool {
        !matches!(
            self,
            StateCommand::Protocol | StateCommand::Replies | StateCommand::Maintenance
        )
    }

    /// Why it is refused on a shared connection, and what to use instead.
    pub fn advice(self) -> &'static str {
        match self {
            StateCommand::Transaction => {
                "on a shared connection the server would queue other callers' commands in this \
                 transaction; send a `Transaction` (MULTI ... EXEC written as one), or use a \
                 dedicated connection"
            }
            StateCommand::Watch => {
                "a WATCH belongs to the connection, which other callers share; use a dedicated \
                 connection (`dedicated()` or the `watch` helper)"
            }
            StateCommand::Select => {
                "SELECT would move every caller of the connection to another database; set the \
                 database in the URL (`redis://host/3`) or `ConnectOptions::with_database`, or \
                 use a dedicated connection"
            }
            StateCommand::Auth => {
                "AUTH would change the user of every caller of the connection; set the user and \
                 password in the URL or `ConnectOptions::with_auth`, or use a dedicated connection"
            }
            StateCommand::ClientName => {
                "the connection's name is set once for everyone: use `client_name` in the URL or \
                 `ConnectOptions::with_client_name`, or a dedicated connection"
            }
            StateCommand::Tracking => {
                "client tracking is set for the whole connection: use \
                 `ConnectOptions::with_tracking`, or a dedicated connection"
            }
            StateCommand::ClientFlag => {
                "this flag would apply to every caller of the connection; use a dedicated connection"
            }
            StateCommand::ReadOnly => {
                "READONLY/READWRITE would change where every caller of the connection may read; \
                 use a dedicated connection"
            }
            StateCommand::Asking => {
                "ASKING applies to whichever command comes next on the connection, possibly \
                 another caller's; use a dedicated connection"
            }
            StateCommand::Protocol => {
                "HELLO and RESET change the protocol and drop subscriptions under the \
                 connection; the protocol is RESP3 and set at connect time"
            }
            StateCommand::Replies => {
                "the server would stop answering one reply per command, and replies could no \
                 longer be matched to their callers; not supported on any connection"
            }
            StateCommand::Maintenance => {
                "maintenance notifications are switched on by the `MaintenanceConfig` of the \
                 stack, for every new connection"
            }
        }
    }
}

/// A subscription change: which family, and how many channels the command names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subscription {
    /// Subscribe or unsubscribe, to channels, patterns or shard channels.
    pub kind: SubscriptionKind,
    /// How many channels or patterns the command names (zero: "all of them", for unsubscribes).
    pub channels: usize,
}

/// The six Pub/Sub subscription commands; their RESP3 confirmations are push frames of the same
/// name in lower case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SubscriptionKind {
    /// `SUBSCRIBE`
    Subscribe,
    /// `PSUBSCRIBE`
    PSubscribe,
    /// `SSUBSCRIBE`
    SSubscribe,
    /// `UNSUBSCRIBE`
    Unsubscribe,
    /// `PUNSUBSCRIBE`
    PUnsubscribe,
    /// `SUNSUBSCRIBE`
    SUnsubscribe,
}

impl SubscriptionKind {
    const ALL: [(SubscriptionKind, &'static str); 6] = [
        (SubscriptionKind::Subscribe, "subscribe"),
        (SubscriptionKind::PSubscribe, "psubscribe"),
        (SubscriptionKind::SSubscribe, "ssubscribe"),
        (SubscriptionKind::Unsubscribe, "unsubscribe"),
        (SubscriptionKind::PUnsubscribe, "punsubscribe"),
        (SubscriptionKind::SUnsubscribe, "sunsubscribe"),
    ];

    /// The kind whose command or push name this is, ignoring case.
    pub fn from_command(name: &[u8]) -> Option<Self> {
        Self::ALL
            .iter()
            .find(|(_, n)| name.eq_ignore_ascii_case(n.as_bytes()))
            .map(|(k, _)| *k)
    }

    /// The name of the push frames that confirm it, such as `"subscribe"`.
    pub fn push_name(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(k, _)| *k == self)
            .map(|(_, n)| *n)
            .unwrap_or("")
    }

    /// Whether this removes subscriptions.
    pub fn is_unsubscribe(self) -> bool {
        matches!(
            self,
            SubscriptionKind::Unsubscribe
                | SubscriptionKind::PUnsubscribe
                | SubscriptionKind::SUnsubscribe
        )
    }
}

impl fmt::Debug for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut list = f.debug_tuple("Command");
        list.field(&String::from_utf8_lossy(self.name_bytes()));
        let argc = self.argc as usize;
        if self.is_sensitive() {
            if argc > 1 {
                list.field(&format_args!("<{} arguments redacted>", argc - 1));
            }
        } else {
            for arg in self.args().skip(1).take(16) {
                if arg.len() > 64 {
                    list.field(&format_args!("<{} bytes>", arg.len()));
                } else {
                    list.field(&String::from_utf8_lossy(arg));
                }
            }
            if argc > 17 {
                list.field(&format_args!("... {} more", argc - 17));
            }
        }
        list.finish()
    }
}

impl PartialEq for Command {
    fn eq(&self, other: &Self) -> bool {
        self.argc == other.argc && self.body.as_slice() == other.body.as_slice()
    }
}

impl Eq for Command {}

/// The arguments of a [`Command`], the name first; from [`Command::args`].
#[derive(Debug, Clone)]
pub struct Args<'a> {
    rest: &'a [u8],
    left: usize,
}

impl<'a> Iterator for Args<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        if self.left == 0 {
            return None;
        }
        // Each argument is `$<len>\r\n<bytes>\r\n`, as `push_arg` wrote it.
        let rest = self.rest;
        let mut i = 1;
        let mut len = 0usize;
        while let Some(&b) = rest.get(i) {
            if !b.is_ascii_digit() {
                break;
            }
            len = len * 10 + usize::from(b - b'0');
            i += 1;
        }
        let start = i + 2;
        let Some(arg) = rest.get(start..start + len) else {
            self.left = 0;
            return None;
        };
        self.rest = rest.get(start + len + 2..).unwrap_or(&[]);
        self.left -= 1;
        Some(arg)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left, Some(self.left))
    }
}

impl ExactSizeIterator for Args<'_> {}
impl std::iter::FusedIterator for Args<'_> {}

// Encoded argument bytes kept inside the command before it moves to the heap; with the tag and
// length the buffer is 56 bytes, and a command 64.
const INLINE: usize = 54;

/// A command's encoded arguments: inline while small, on the heap after.
#[derive(Clone)]
enum Body {
    Inline { len: u8, data: [u8; INLINE] },
    Heap(Vec<u8>),
}

impl Body {
    fn new() -> Self {
        Body::Inline {
            len: 0,
            data: [0; INLINE],
        }
    }

    fn as_slice(&self) -> &[u8] {
        match self {
            Body::Inline { len, data } => &data[..usize::from(*len)],
            Body::Heap(v) => v,
        }
    }

    /// Makes room for `more` bytes, moving to the heap when they do not fit inline.
    fn reserve(&mut self, more: usize) {
        match self {
            Body::Inline { len, data } => {
                let len = usize::from(*len);
                if len + more > INLINE {
                    let mut v = Vec::with_capacity((len + more).max(2 * INLINE));
                    v.extend_from_slice(&data[..len]);
                    *self = Body::Heap(v);
                }
            }
            Body::Heap(v) => v.reserve(more),
        }
    }

    fn len(&self) -> usize {
        match self {
            Body::Inline { len, .. } => usize::from(*len),
            Body::Heap(v) => v.len(),
        }
    }

    /// Appends one argument, its `header` (`$<len>\r\n`), its bytes and `\r\n`: while it
    /// fits inline, with one check of room and three copies.
    #[inline]
    fn push_bulk(&mut self, header: &[u8], bytes: &[u8]) {
        let more = header.len() + bytes.len() + 2;
        if let Body::Inline { len, data } = self {
            let at = usize::from(*len);
            if let Some(dst) = at.checked_add(more).and_then(|end| data.get_mut(at..end)) {
                let (head, rest) = dst.split_at_mut(header.len());
                head.copy_from_slice(header);
                let (body, tail) = rest.split_at_mut(bytes.len());
                body.copy_from_slice(bytes);
                tail.copy_from_slice(b"\r\n");
                // At most `INLINE`, so it fits.
                *len = (at + more) as u8;
                return;
            }
        }
        self.reserve(more);
        self.extend(header);
        self.extend(bytes);
        self.extend(b"\r\n");
    }

    fn extend(&mut self, bytes: &[u8]) {
        self.reserve(bytes.len());
        match self {
            Body::Inline { len, data } => {
                let at = usize::from(*len);
                let end = at + bytes.len();
                // `reserve` moved the body to the heap if this did not fit; should it ever not
                // have, the bytes still go to the heap rather than being lost.
                match data.get_mut(at..end) {
                    Some(dst) => {
                        dst.copy_from_slice(bytes);
                        *len = end as u8;
                    }
                    None => {
                        let mut v = Vec::with_capacity(end);
                        v.extend_from_slice(&data[..at]);
                        v.extend_from_slice(bytes);
                        *self = Body::Heap(v);
                    }
                }
            }
            Body::Heap(v) => v.extend_from_slice(bytes),
        }
    }
}

// Sorted: looked up with binary_search.
const READ_ONLY: &[&str] = &[
    "BITCOUNT",
    "BITFIELD_RO",
    "BITPOS",
    "DBSIZE",
    "DUMP",
    "ECHO",
    "EVALSHA_RO",
    "EVAL_RO",
    "EXISTS",
    "EXPIRETIME",
    "FCALL_RO",
    "GEODIST",
    "GEOHASH",
    "GEOPOS",
    "GEORADIUSBYMEMBER_RO",
    "GEORADIUS_RO",
    "GEOSEARCH",
    "GET",
    "GETBIT",
    "GETRANGE",
    "HEXISTS",
    "HGET",
    "HGETALL",
    "HKEYS",
    "HLEN",
    "HMGET",
    "HRANDFIELD",
    "HSCAN",
    "HSTRLEN",
    "HVALS",
    "INFO",
    "KEYS",
    "LASTSAVE",
    "LCS",
    "LINDEX",
    "LLEN",
    "LOLWUT",
    "LPOS",
    "LRANGE",
    "MGET",
    "PEXPIRETIME",
    "PFCOUNT",
    "PING",
    "PTTL",
    "RANDOMKEY",
    "SCAN",
    "SCARD",
    "SDIFF",
    "SINTER",
    "SINTERCARD",
    "SISMEMBER",
    "SMEMBERS",
    "SMISMEMBER",
    "SORT_RO",
    "SRANDMEMBER",
    "SSCAN",
    "STRLEN",
    "SUBSTR",
    "SUNION",
    "TIME",
    "TTL",
    "TYPE",
    "XINFO",
    "XLEN",
    "XPENDING",
    "XRANGE",
    "XREAD",
    "XREVRANGE",
    "ZCARD",
    "ZCOUNT",
    "ZDIFF",
    "ZINTER",
    "ZINTERCARD",
    "ZLEXCOUNT",
    "ZMSCORE",
    "ZRANDMEMBER",
    "ZRANGE",
    "ZRANGEBYLEX",
    "ZRANGEBYSCORE",
    "ZRANK",
    "ZREVRANGE",
    "ZREVRANGEBYLEX",
    "ZREVRANGEBYSCORE",
    "ZREVRANK",
    "ZSCAN",
    "ZSCORE",
    "ZUNION",
];

// The one list of writes sent again after a lost reply, sorted by name (binary search), each
// with why a second run cannot be told from the first: same data, same reply. Options that break
// this (`SET ... NX`, `EXPIRE ... GT`) are checked in `Command::is_idempotent`.
//
// Left out on purpose, with the reason: DEL, UNLINK, PERSIST (1 then 0); SADD, SREM, HSET, HDEL,
// ZADD, ZREM, PFADD (the count of changed members drops to 0); SETBIT (returns the old bit, the
// new one the second time); TOUCH (harmless to repeat, but never worth the risk of a changed
// count); FLUSHALL, FLUSHDB (a second run wipes what other clients wrote in between); SELECT and
// other connection-state commands (refused on shared connections); GETSET, GETDEL, MSETNX,
// HSETNX, RENAME, COPY (reply or effect differ the second time).
const RESENDABLE_WRITES: &[(&str, &str)] = &[
    (
        "EXPIRE",
        "without NX/XX/GT/LT: sets the same TTL again, answers 1 again",
    ),
    (
        "EXPIREAT",
        "without NX/XX/GT/LT: the same absolute time, answers 1 again",
    ),
    (
        "HMSET",
        "sets the same fields to the same values, answers OK",
    ),
    ("LSET", "sets the same index to the same value, answers OK"),
    (
        "LTRIM",
        "a list already trimmed to the range stays the same, answers OK",
    ),
    ("MSET", "sets the same values, answers OK"),
    (
        "PEXPIRE",
        "without NX/XX/GT/LT: sets the same TTL again, answers 1 again",
    ),
    (
        "PEXPIREAT",
        "without NX/XX/GT/LT: the same absolute time, answers 1 again",
    ),
    ("PSETEX", "sets the same value and TTL, answers OK"),
    (
        "SET",
        "without NX/XX/GET: sets the same value (and TTL), answers OK",
    ),
    ("SETEX", "sets the same value and TTL, answers OK"),
    (
        "SETRANGE",
        "writes the same bytes at the same offset, answers the same length",
    ),
];

#[cfg(test)]
mod tests;
