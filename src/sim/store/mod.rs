//! The `memory` backend: a small in-memory store that stands in for redis-server.
//!
//! It exists so that the simulator can be demonstrated, and an application drilled, on a machine
//! without Redis. It speaks RESP2 and RESP3 and answers as Redis 7.0 does, byte for byte (the
//! crate's conformance tests run the same commands against a redis-server and compare), for:
//!
//! - connection and server: `HELLO`, `PING`, `ECHO`, `AUTH`, `SELECT`,
//!   `CLIENT SETNAME/GETNAME/SETINFO/ID/INFO`, `RESET`, `QUIT`, `INFO`, `COMMAND`, `DBSIZE`,
//!   `FLUSHDB`, `FLUSHALL`, `TIME`;
//! - strings, keys and expiry, hashes, lists (with `LMOVE`, `LMPOP`, `RPOPLPUSH`);
//! - sets (`SADD` ... `SSCAN`) and sorted sets (`ZADD` ... `ZUNIONSTORE`);
//! - transactions: `MULTI`, `EXEC`, `DISCARD`, `WATCH`, `UNWATCH`;
//! - blocking pops: `BLPOP`, `BRPOP`, `BLMOVE`, `BRPOPLPUSH`, `BLMPOP`, `BZPOPMIN`, `BZPOPMAX`,
//!   `BZMPOP`;
//! - Pub/Sub: `SUBSCRIBE`, `PSUBSCRIBE`, their `UN` forms, `PUBLISH`.
//!
//! Each family's module lists its commands and what it leaves out. An unknown command gets
//! Redis's own error. All nodes of a simulator share one store, so data written through one node
//! is read through another, as with a shared redis-server. Tests of client behaviour should still
//! use a real redis-server.
//!
//! A command is run by looking its name up in [`FAMILIES`], checking its arity as Redis does, and
//! handing it to its family with the store locked. Everything a command changes is then followed
//! up under the same lock ([`StoreInner::settle`]): sessions that watch a changed key see their
//! next `EXEC` fail, and sessions blocked on it are served, first come first served. A blocked
//! session waits without holding the lock or a thread: [`Session::execute`] awaits its turn.

mod blocking;
mod glob;
mod hashes;
mod keys;
mod lists;
mod pubsub;
mod server;
mod sets;
mod strings;
mod transaction;
mod zsets;

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use tokio::sync::mpsc;

use super::lock;
use super::resp::Value;
use super::upstream::UpFrame;
use pubsub::Subscriber;

const DATABASES: usize = 16;

/// The shared data of a `memory` backend.
#[derive(Debug, Default)]
pub(crate) struct MemoryStore {
    inner: Mutex<StoreInner>,
    next_client_id: AtomicI64,
}

#[derive(Debug, Default)]
struct StoreInner {
    dbs: Vec<Db>,
    channels: HashMap<Bytes, HashMap<i64, Subscriber>>,
    patterns: HashMap<Bytes, HashMap<i64, Subscriber>>,
    /// The sessions watching each key (`WATCH`), by database and key.
    watchers: HashMap<(usize, Bytes), HashSet<i64>>,
    /// The sessions a watched key changed under since they watched it.
    dirty: HashSet<i64>,
    /// The sessions blocked on keys (`BLPOP` and the like).
    waiters: blocking::Waiters,
}

/// One numbered database: keys and what they hold.
#[derive(Debug, Default)]
struct Db {
    keys: HashMap<Bytes, Entry>,
    /// The keys changed since the store last settled: they may be watched or awaited.
    touched: Vec<Bytes>,
}

#[derive(Debug)]
struct Entry {
    data: Data,
    expires: Option<Instant>,
}

#[derive(Debug)]
enum Data {
    Str(Bytes),
    Hash(HashMap<Bytes, Bytes>),
    List(VecDeque<Bytes>),
    Set(HashSet<Bytes>),
    ZSet(zsets::SortedSet),
}

/// One client's view of the store: its selected database, protocol, subscriptions, open
/// transaction and watched keys.
#[derive(Debug)]
pub(crate) struct Session {
    store: Arc<MemoryStore>,
    id: i64,
    db: usize,
    resp3: bool,
    name: Option<Bytes>,
    channels: HashSet<Bytes>,
    patterns: HashSet<Bytes>,
    out: mpsc::Sender<UpFrame>,
    // Boxed: most sessions never open one, and the session lives inline in the proxy.
    multi: Option<Box<transaction::Transaction>>,
    watching: Vec<transaction::Watch>,
}

/// The frames a command is answered with: none, one, or one per channel for Pub/Sub.
type Reply = Vec<Value>;

/// A family of commands: the names it answers, with their arity, and how it runs them.
struct Family {
    /// `(name, arity)`, the arity counted as Redis's `COMMAND` does: the number of arguments
    /// with the name, or at least that many when negative.
    commands: &'static [(&'static str, i32)],
    run: Run,
}

/// How a family runs a command.
#[derive(Debug, Clone, Copy)]
enum Run {
    /// On the session itself (connection, server, transaction and Pub/Sub commands); allowed
    /// while a RESP2 client is subscribed.
    Session(fn(&mut Session, &mut StoreInner, &str, &[Bytes]) -> Reply),
    /// On the keys of the selected database.
    Data(fn(&mut Db, &str, &[Bytes]) -> Value),
    /// On the keys of the selected database, waiting for data when there is none.
    Blocking(fn(&mut Db, &str, &[Bytes]) -> blocking::Attempt),
}

/// Every command family, looked up by command name.
const FAMILIES: [Family; 10] = [
    server::FAMILY,
    pubsub::FAMILY,
    transaction::FAMILY,
    strings::FAMILY,
    keys::FAMILY,
    hashes::FAMILY,
    lists::FAMILY,
    sets::FAMILY,
    zsets::FAMILY,
    blocking::FAMILY,
];

/// How the family of the (lowercase) command `name` runs it, and its arity; `None` for an
/// unknown command.
fn command_named(name: &str) -> Option<(Run, i32)> {
    FAMILIES.iter().find_map(|f| {
        f.commands
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, arity)| (f.run, *arity))
    })
}

/// Whether `argc` arguments (the name included) suit `arity`.
fn arity_fits(arity: i32, argc: usize) -> bool {
    let argc = i64::try_from(argc).unwrap_or(i64::MAX);
    let arity = i64::from(arity);
    if arity >= 0 {
        argc == arity
    } else {
        argc >= -arity
    }
}

/// What running a command comes to: replies now, or a wait for data.
#[derive(Debug)]
enum Step {
    Done(Reply),
    Block(blocking::Wait),
}

// ===== impl StoreInner =====

impl StoreInner {
    fn db(&mut self, i: usize) -> &mut Db {
        if self.dbs.len() < DATABASES {
            self.dbs.resize_with(DATABASES, Db::default);
        }
        &mut self.dbs[i.min(DATABASES - 1)]
    }

    /// Follows up on the keys changed since the last call: marks the sessions that watch them,
    /// then serves the sessions blocked on them. Serving changes keys too (a pop, the push of a
    /// `BLMOVE`), so it repeats until nothing changed.
    fn settle(&mut self) {
        loop {
            let mut changed = Vec::new();
            for (i, db) in self.dbs.iter_mut().enumerate() {
                changed.extend(db.touched.drain(..).map(|k| (i, k)));
            }
            if changed.is_empty() {
                return;
            }
            for place in changed {
                if let Some(ids) = self.watchers.get(&place) {
                    self.dirty.extend(ids.iter().copied());
                }
                blocking::serve(self, place.0, &place.1);
            }
        }
    }
}

// ===== impl Db =====

impl Db {
    /// Notes that `key` changed (written, deleted or expired).
    fn touch(&mut self, key: &Bytes) {
        self.touched.push(key.clone());
    }
}

// ===== impl MemoryStore =====

impl MemoryStore {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(MemoryStore::default())
    }

    /// A new client session; Pub/Sub messages for it go to `out`.
    pub(crate) fn session(self: &Arc<Self>, out: mpsc::Sender<UpFrame>) -> Session {
        Session {
            store: Arc::clone(self),
            id: self.next_client_id.fetch_add(1, Ordering::Relaxed) + 1,
            db: 0,
            resp3: false,
            name: None,
            channels: HashSet::new(),
            patterns: HashSet::new(),
            out,
            multi: None,
            watching: Vec::new(),
        }
    }
}

// ===== impl Session =====

impl Session {
    /// Whether the client speaks RESP3 (after `HELLO 3`).
    pub(crate) fn resp3(&self) -> bool {
        self.resp3
    }

    /// Runs one command; returns the frames to send back (none, one, or one per channel for
    /// the Pub/Sub commands).
    ///
    /// A blocking command with nothing to take (`BLPOP` on empty lists) resolves when another
    /// session's write serves it or its timeout passes. Dropping the future gives up the wait,
    /// as a client that disconnects does.
    pub(crate) async fn execute(&mut self, args: &[Bytes]) -> Vec<Bytes> {
        let replies = match self.start(args) {
            Started::Done(replies) => replies,
            Started::Blocked(blocked) => vec![blocked.wait().await],
        };
        // Encoded in the protocol in force once the command ran: `HELLO 3` is answered in RESP3.
        replies.iter().map(|v| v.encode(self.resp3)).collect()
    }

    /// Runs a command with the store locked, and settles what it changed before unlocking.
    fn start(&mut self, args: &[Bytes]) -> Started {
        let store = Arc::clone(&self.store);
        let mut inner = lock(&store.inner);
        let started = match self.run(&mut inner, args) {
            Step::Done(replies) => Started::Done(replies),
            Step::Block(wait) => Started::Blocked(blocking::Blocked::new(
                Arc::clone(&store),
                &mut inner,
                self.db,
                wait,
            )),
        };
        inner.settle();
        started
    }

    fn run(&mut self, inner: &mut StoreInner, args: &[Bytes]) -> Step {
        let Some(name) = args.first() else {
            return Step::Done(vec![]);
        };
        let lname = String::from_utf8_lossy(name).to_ascii_lowercase();
        let a = &args[1..];
        // Checked in Redis's order; inside MULTI a refused command dooms the transaction.
        let Some((run, arity)) = command_named(&lname) else {
            self.refuse();
            return Step::Done(one(unknown_command(name, a)));
        };
        if !arity_fits(arity, args.len()) {
            // Redis ends a transaction with this, open or not.
            if lname == "exec" {
                return Step::Done(one(
                    self.abort_exec(inner, "wrong number of arguments for 'exec' command")
                ));
            }
            self.refuse();
            return Step::Done(one(wrong_args(&lname)));
        }
        if self.subscribed() && !self.resp3 && !matches!(run, Run::Session(_)) {
            self.refuse();
            return Step::Done(one(Value::err(format!(
                "ERR Can't execute '{lname}': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context"
            ))));
        }
        if let Some(multi) = &mut self.multi {
            if !transaction::runs_at_once(&lname) {
                multi.queue(run, lname, a);
                return Step::Done(one(Value::Simple("QUEUED".into())));
            }
        }
        self.dispatch(inner, run, &lname, a, false)
    }

    /// Runs a known command with a fitting number of arguments. In a transaction (`in_exec`)
    /// blocking commands answer at once, as in Redis.
    fn dispatch(
        &mut self,
        inner: &mut StoreInner,
        run: Run,
        name: &str,
        a: &[Bytes],
        in_exec: bool,
    ) -> Step {
        match run {
            Run::Session(run) => Step::Done(run(self, inner, name, a)),
            Run::Data(run) => Step::Done(one(run(inner.db(self.db), name, a))),
            Run::Blocking(run) => match run(inner.db(self.db), name, a) {
                blocking::Attempt::Answer(v) => Step::Done(one(v)),
                blocking::Attempt::Wait(wait) if in_exec => Step::Done(one(wait.not_waiting())),
                blocking::Attempt::Wait(wait) => Step::Block(wait),
            },
        }
    }

    /// Leaves everything the session holds in the store: subscriptions and watched keys.
    fn leave(&mut self, inner: &mut StoreInner) {
        self.unsubscribe_all(inner);
        self.unwatch(inner);
        self.multi = None;
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let store = Arc::clone(&self.store);
        let mut inner = lock(&store.inner);
        self.leave(&mut inner);
    }
}

/// What [`Session::start`] hands back: replies, or a wait to await without the lock.
enum Started {
    Done(Reply),
    Blocked(blocking::Blocked),
}

// ===== replies and arguments shared by the families =====

fn one(v: Value) -> Reply {
    vec![v]
}

fn wrong_args(name: &str) -> Value {
    Value::err(format!(
        "ERR wrong number of arguments for '{name}' command"
    ))
}

fn wrong_type() -> Value {
    Value::err("WRONGTYPE Operation against a key holding the wrong kind of value")
}

fn not_int() -> Value {
    Value::err("ERR value is not an integer or out of range")
}

fn syntax_error() -> Value {
    Value::err("ERR syntax error")
}

/// Redis's answer to a command it does not know: the name and the first arguments, quoted, as
/// C's `%.128s` prints them (at most 128 bytes, up to a NUL byte).
fn unknown_command(name: &[u8], args: &[Bytes]) -> Value {
    fn c_str(b: &[u8], max: usize) -> &[u8] {
        let b = &b[..b.len().min(max)];
        b.iter().position(|&c| c == 0).map_or(b, |nul| &b[..nul])
    }
    let mut listed: Vec<u8> = Vec::new();
    for arg in args {
        if listed.len() >= 128 {
            break;
        }
        let room = 128 - listed.len();
        listed.push(b'\'');
        listed.extend_from_slice(c_str(arg, room));
        listed.extend_from_slice(b"' ");
    }
    let mut msg = b"ERR unknown command '".to_vec();
    msg.extend_from_slice(c_str(name, 128));
    msg.extend_from_slice(b"', with args beginning with: ");
    msg.extend_from_slice(&listed);
    Value::err(String::from_utf8_lossy(&msg).into_owned())
}

/// An integer argument as Redis reads one: no sign `+`, no spaces, no leading zeros.
fn int_arg(b: &[u8]) -> Option<i64> {
    let n: i64 = std::str::from_utf8(b).ok()?.parse().ok()?;
    (n.to_string().as_bytes() == b).then_some(n)
}

/// A count that must not be negative (`SPOP`, `ZPOPMIN`, `LPOP`), with Redis's one error for
/// a negative count and for something that is no integer.
fn positive_arg(b: &[u8]) -> Result<usize, Value> {
    int_arg(b)
        .and_then(|n| usize::try_from(n).ok())
        .ok_or_else(|| Value::err("ERR value is out of range, must be positive"))
}

fn eq(a: &[u8], b: &str) -> bool {
    a.eq_ignore_ascii_case(b.as_bytes())
}

/// The collection at `key` (`pick` finds it in the data), created as `empty()` when `create` is
/// set and the key does not exist. `WRONGTYPE` when the key holds another type.
fn collection_mut<'a, T>(
    db: &'a mut Db,
    key: &Bytes,
    create: bool,
    empty: fn() -> Data,
    pick: fn(&mut Data) -> Option<&mut T>,
) -> Result<Option<&'a mut T>, Value> {
    if keys::live(db, key).is_none() {
        if !create {
            return Ok(None);
        }
        db.keys.insert(
            key.clone(),
            Entry {
                data: empty(),
                expires: None,
            },
        );
    }
    match db.keys.get_mut(key) {
        Some(entry) => pick(&mut entry.data).map(Some).ok_or_else(wrong_type),
        None => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_command_belongs_to_one_family() {
        let mut seen = HashSet::new();
        for family in &FAMILIES {
            for (name, arity) in family.commands {
                assert!(seen.insert(*name), "{name} is in two families");
                assert_eq!(*name, name.to_ascii_lowercase());
                assert_ne!(*arity, 0, "{name}");
            }
        }
    }

    #[test]
    fn unknown_commands_are_reported_as_redis_does() {
        let args: Vec<Bytes> = ["a", "b"].iter().map(|s| Bytes::from(*s)).collect();
        assert_eq!(
            unknown_command(b"NOSUCH", &args),
            Value::err("ERR unknown command 'NOSUCH', with args beginning with: 'a' 'b' ")
        );
        let long: Vec<Bytes> = vec![Bytes::from(vec![b'x'; 200]), Bytes::from_static(b"y")];
        let Value::Error(msg) = unknown_command(b"x", &long) else {
            panic!("not an error");
        };
        assert!(msg.ends_with(&format!("'{}' ", "x".repeat(128))), "{msg}");
    }

    #[test]
    fn arity_is_checked_as_redis_counts_it() {
        assert!(arity_fits(2, 2));
        assert!(!arity_fits(2, 3));
        assert!(arity_fits(-3, 5));
        assert!(!arity_fits(-3, 2));
    }
}
