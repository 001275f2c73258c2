//! The `memory` backend: a small in-memory store that stands in for redis-server.
//!
//! It exists so that the simulator can be demonstrated on a machine without Redis. It speaks
//! RESP2 and RESP3 and covers the commands a demo or a client library's handshake uses:
//! connection (`HELLO`, `PING`, `ECHO`, `AUTH`, `SELECT`, `CLIENT SETNAME/GETNAME/SETINFO/ID`,
//! `RESET`, `QUIT`), strings, keys and expiry, hashes, lists, and Pub/Sub (`SUBSCRIBE`,
//! `PSUBSCRIBE`, their `UN` forms, `PUBLISH`). All nodes of a simulator share one store, so data
//! written through one node is read through another, as with a shared redis-server.
//! Tests of client behaviour should use a real redis-server.
//!
//! Each command family has its own module, which lists the commands it answers; a command is
//! run by looking its name up in [`FAMILIES`] and handing it to that family.

mod glob;
mod hashes;
mod keys;
mod lists;
mod pubsub;
mod server;
mod strings;

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
}

/// One numbered database: keys and what they hold.
type Db = HashMap<Bytes, Entry>;

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
}

/// One client's view of the store: its selected database, protocol and subscriptions.
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
}

/// The frames a command is answered with: none, one, or one per channel for Pub/Sub.
type Reply = Vec<Value>;

/// A family of commands: the names it answers and how it runs them.
struct Family {
    commands: &'static [&'static str],
    run: Run,
}

/// How a family runs a command.
#[derive(Clone, Copy)]
enum Run {
    /// On the session itself (connection, server and Pub/Sub commands); allowed while a RESP2
    /// client is subscribed.
    Session(fn(&mut Session, &str, &[Bytes]) -> Reply),
    /// On the keys of the selected database, with the store locked.
    Data(fn(&mut Db, &str, &[Bytes]) -> Value),
}

/// Every command family, looked up by command name.
const FAMILIES: [Family; 6] = [
    server::FAMILY,
    pubsub::FAMILY,
    strings::FAMILY,
    keys::FAMILY,
    hashes::FAMILY,
    lists::FAMILY,
];

/// How the family of the (lowercase) command `name` runs it; `None` for an unknown command.
fn family_of(name: &str) -> Option<Run> {
    FAMILIES
        .iter()
        .find(|f| f.commands.contains(&name))
        .map(|f| f.run)
}

// ===== impl StoreInner =====

impl StoreInner {
    fn db(&mut self, i: usize) -> &mut Db {
        if self.dbs.len() < DATABASES {
            self.dbs.resize_with(DATABASES, HashMap::new);
        }
        &mut self.dbs[i.min(DATABASES - 1)]
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
    pub(crate) fn execute(&mut self, args: &[Bytes]) -> Vec<Bytes> {
        let replies = self.run(args);
        // Encoded in the protocol in force once the command ran: `HELLO 3` is answered in RESP3.
        replies.iter().map(|v| v.encode(self.resp3)).collect()
    }

    fn run(&mut self, args: &[Bytes]) -> Reply {
        let Some(name) = args.first() else {
            return vec![];
        };
        let lname = String::from_utf8_lossy(name).to_ascii_lowercase();
        let a = &args[1..];
        match family_of(&lname) {
            Some(Run::Session(run)) => run(self, &lname, a),
            _ if self.subscribed() && !self.resp3 => one(Value::err(format!(
                "ERR Can't execute '{lname}': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context"
            ))),
            Some(Run::Data(run)) => {
                let mut inner = lock(&self.store.inner);
                one(run(inner.db(self.db), &lname, a))
            }
            None => {
                let mut msg = format!(
                    "ERR unknown command '{}', with args beginning with: ",
                    String::from_utf8_lossy(name)
                );
                for arg in a.iter().take(8) {
                    msg.push_str(&format!("'{}' ", String::from_utf8_lossy(arg)));
                }
                one(Value::err(msg))
            }
        }
    }
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

fn int_arg(b: &[u8]) -> Option<i64> {
    std::str::from_utf8(b).ok()?.parse().ok()
}

fn eq(a: &[u8], b: &str) -> bool {
    a.eq_ignore_ascii_case(b.as_bytes())
}

/// The collection at `key` (a hash or a list: `pick` finds it in the data), created as `empty()`
/// when `create` is set and the key does not exist. `WRONGTYPE` when the key holds another type.
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
        db.insert(
            key.clone(),
            Entry {
                data: empty(),
                expires: None,
            },
        );
    }
    match db.get_mut(key) {
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
            for name in family.commands {
                assert!(seen.insert(*name), "{name} is in two families");
                assert_eq!(*name, name.to_ascii_lowercase());
            }
        }
    }
}
