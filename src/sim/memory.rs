//! The `memory` backend: a small in-memory store that stands in for redis-server.
//!
//! It exists so that the simulator can be demonstrated on a machine without Redis. It speaks
//! RESP2 and RESP3 and covers the commands a demo or a client library's handshake uses:
//! connection (`HELLO`, `PING`, `ECHO`, `AUTH`, `SELECT`, `CLIENT SETNAME/GETNAME/SETINFO/ID`,
//! `RESET`, `QUIT`), strings, keys and expiry, hashes, lists, and Pub/Sub (`SUBSCRIBE`,
//! `PSUBSCRIBE`, their `UN` forms, `PUBLISH`). All nodes of a simulator share one store, so data
//! written through one node is read through another, as with a shared redis-server.
//! Tests of client behaviour should use a real redis-server.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use tokio::sync::mpsc;

use super::lock;
use super::resp::{format_double, Value};
use super::upstream::UpFrame;

const DATABASES: usize = 16;

/// The shared data of a `memory` backend.
#[derive(Debug, Default)]
pub(crate) struct MemoryStore {
    inner: Mutex<StoreInner>,
    next_client_id: AtomicI64,
}

#[derive(Debug, Default)]
struct StoreInner {
    dbs: Vec<HashMap<Bytes, Entry>>,
    channels: HashMap<Bytes, HashMap<i64, Subscriber>>,
    patterns: HashMap<Bytes, HashMap<i64, Subscriber>>,
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
}

#[derive(Debug, Clone)]
struct Subscriber {
    out: mpsc::Sender<UpFrame>,
    resp3: bool,
}

impl StoreInner {
    fn db(&mut self, i: usize) -> &mut HashMap<Bytes, Entry> {
        if self.dbs.len() < DATABASES {
            self.dbs.resize_with(DATABASES, HashMap::new);
        }
        &mut self.dbs[i.min(DATABASES - 1)]
    }
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

    /// Publishes a message; returns how many subscribers got it.
    pub(crate) fn publish(&self, channel: &Bytes, message: &Bytes) -> i64 {
        let inner = lock(&self.inner);
        let mut n = 0;
        if let Some(subs) = inner.channels.get(channel) {
            for sub in subs.values() {
                let msg = Value::Push(vec![
                    Value::bulk("message"),
                    Value::Bulk(channel.clone()),
                    Value::Bulk(message.clone()),
                ]);
                if deliver(sub, &msg) {
                    n += 1;
                }
            }
        }
        for (pattern, subs) in &inner.patterns {
            if glob_match(pattern, channel) {
                for sub in subs.values() {
                    let msg = Value::Push(vec![
                        Value::bulk("pmessage"),
                        Value::Bulk(pattern.clone()),
                        Value::Bulk(channel.clone()),
                        Value::Bulk(message.clone()),
                    ]);
                    if deliver(sub, &msg) {
                        n += 1;
                    }
                }
            }
        }
        n
    }
}

fn deliver(sub: &Subscriber, msg: &Value) -> bool {
    let frame = UpFrame {
        bytes: msg.encode(sub.resp3),
        due: Instant::now(),
    };
    match sub.out.try_send(frame) {
        Ok(()) => true,
        Err(_) => {
            tracing::warn!("memory backend: a subscriber is not reading; message dropped");
            false
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let channels: Vec<Bytes> = self.channels.drain().collect();
        let patterns: Vec<Bytes> = self.patterns.drain().collect();
        let mut inner = lock(&self.store.inner);
        for c in channels {
            remove_sub(&mut inner.channels, &c, self.id);
        }
        for p in patterns {
            remove_sub(&mut inner.patterns, &p, self.id);
        }
    }
}

fn remove_sub(map: &mut HashMap<Bytes, HashMap<i64, Subscriber>>, key: &Bytes, id: i64) {
    if let Some(subs) = map.get_mut(key) {
        subs.remove(&id);
        if subs.is_empty() {
            map.remove(key);
        }
    }
}

type Reply = Vec<Value>;

fn one(v: Value) -> Reply {
    vec![v]
}

fn wrong_args(name: &str) -> Reply {
    one(Value::err(format!(
        "ERR wrong number of arguments for '{name}' command"
    )))
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
        match lname.as_str() {
            "ping" => match a.len() {
                0 if self.subscribed() && !self.resp3 => {
                    one(Value::Array(vec![Value::bulk("pong"), Value::bulk("")]))
                }
                0 => one(Value::Simple("PONG".into())),
                1 => one(Value::Bulk(a[0].clone())),
                _ => wrong_args("ping"),
            },
            "echo" => match a {
                [m] => one(Value::Bulk(m.clone())),
                _ => wrong_args("echo"),
            },
            "hello" => self.hello(a),
            "auth" => match a.len() {
                1 | 2 => one(Value::ok()),
                _ => wrong_args("auth"),
            },
            "select" => match a {
                [db] => match int_arg(db) {
                    Some(i) if (0..DATABASES as i64).contains(&i) => {
                        self.db = i as usize;
                        one(Value::ok())
                    }
                    Some(_) => one(Value::err("ERR DB index is out of range")),
                    None => one(not_int()),
                },
                _ => wrong_args("select"),
            },
            "client" => self.client(a),
            "reset" => {
                self.unsubscribe_all();
                self.db = 0;
                self.resp3 = false;
                self.name = None;
                one(Value::Simple("RESET".into()))
            }
            "quit" => one(Value::ok()),
            "info" => one(Value::bulk(
                "# Server\r\nredis_version:7.2.0\r\nredis_mode:standalone\r\nserver_name:redis-handoff-sim\r\n",
            )),
            "command" => one(Value::Array(vec![])),
            "dbsize" => {
                let mut inner = lock(&self.store.inner);
                let db = inner.db(self.db);
                let now = Instant::now();
                db.retain(|_, e| e.expires.is_none_or(|t| t > now));
                one(Value::Int(db.len() as i64))
            }
            "flushdb" => {
                lock(&self.store.inner).db(self.db).clear();
                one(Value::ok())
            }
            "flushall" => {
                let mut inner = lock(&self.store.inner);
                for i in 0..DATABASES {
                    inner.db(i).clear();
                }
                one(Value::ok())
            }
            "time" => {
                let now = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap_or_default();
                one(Value::Array(vec![
                    Value::bulk(now.as_secs().to_string()),
                    Value::bulk(now.subsec_micros().to_string()),
                ]))
            }
            "subscribe" | "psubscribe" => {
                if a.is_empty() {
                    return wrong_args(&lname);
                }
                self.subscribe(lname == "psubscribe", a)
            }
            "unsubscribe" | "punsubscribe" => self.unsubscribe(lname == "punsubscribe", a),
            "publish" => match a {
                [channel, message] => one(Value::Int(self.store.publish(channel, message))),
                _ => wrong_args("publish"),
            },
            _ => {
                if self.subscribed() && !self.resp3 {
                    return one(Value::err(format!(
                        "ERR Can't execute '{lname}': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context"
                    )));
                }
                let mut inner = lock(&self.store.inner);
                let db = inner.db(self.db);
                data_command(db, &lname, a).unwrap_or_else(|| {
                    let mut msg = format!(
                        "ERR unknown command '{}', with args beginning with: ",
                        String::from_utf8_lossy(name)
                    );
                    for arg in a.iter().take(8) {
                        msg.push_str(&format!("'{}' ", String::from_utf8_lossy(arg)));
                    }
                    one(Value::err(msg))
                })
            }
        }
    }

    fn subscribed(&self) -> bool {
        !self.channels.is_empty() || !self.patterns.is_empty()
    }

    fn hello(&mut self, a: &[Bytes]) -> Reply {
        let mut i = 0;
        if let Some(v) = a.first() {
            match int_arg(v) {
                Some(2) => self.resp3 = false,
                Some(3) => self.resp3 = true,
                Some(_) => {
                    return one(Value::err(
                        "NOPROTO sorry, this protocol version is not supported",
                    ))
                }
                None => {
                    return one(Value::err(
                        "ERR Protocol version is not an integer or out of range",
                    ))
                }
            }
            i = 1;
        }
        while i < a.len() {
            if eq(&a[i], "auth") && a.len() >= i + 3 {
                i += 3;
            } else if eq(&a[i], "setname") && a.len() >= i + 2 {
                self.name = Some(a[i + 1].clone());
                i += 2;
            } else {
                return one(Value::err(format!(
                    "ERR Syntax error in HELLO option '{}'",
                    String::from_utf8_lossy(&a[i])
                )));
            }
        }
        one(Value::Map(vec![
            (Value::bulk("server"), Value::bulk("redis")),
            (Value::bulk("version"), Value::bulk("7.2.0")),
            (
                Value::bulk("proto"),
                Value::Int(if self.resp3 { 3 } else { 2 }),
            ),
            (Value::bulk("id"), Value::Int(self.id)),
            (Value::bulk("mode"), Value::bulk("standalone")),
            (Value::bulk("role"), Value::bulk("master")),
            (Value::bulk("modules"), Value::Array(vec![])),
        ]))
    }

    fn client(&mut self, a: &[Bytes]) -> Reply {
        let Some(sub) = a.first() else {
            return wrong_args("client");
        };
        let sub = String::from_utf8_lossy(sub).to_ascii_lowercase();
        match (sub.as_str(), &a[1..]) {
            ("setname", [name]) => {
                if name.iter().any(|b| *b == b' ' || *b == b'\n') {
                    return one(Value::err(
                        "ERR Client names cannot contain spaces, newlines or special characters.",
                    ));
                }
                self.name = if name.is_empty() {
                    None
                } else {
                    Some(name.clone())
                };
                one(Value::ok())
            }
            ("getname", []) => one(self.name.clone().map_or(Value::Null, Value::Bulk)),
            ("setinfo", [attr, _]) => {
                if eq(attr, "lib-name") || eq(attr, "lib-ver") {
                    one(Value::ok())
                } else {
                    one(Value::err(format!(
                        "ERR Unrecognized option '{}'",
                        String::from_utf8_lossy(attr)
                    )))
                }
            }
            ("id", []) => one(Value::Int(self.id)),
            ("info", []) => one(Value::bulk(format!(
                "id={} name={} db={} resp={}\n",
                self.id,
                self.name
                    .as_ref()
                    .map(|n| String::from_utf8_lossy(n).into_owned())
                    .unwrap_or_default(),
                self.db,
                if self.resp3 { 3 } else { 2 }
            ))),
            ("setname" | "getname" | "setinfo" | "id" | "info", _) => one(Value::err(format!(
                "ERR wrong number of arguments for 'client|{sub}' command"
            ))),
            _ => one(Value::err(format!(
                "ERR unknown subcommand '{sub}'. Try CLIENT HELP."
            ))),
        }
    }

    fn subscribe(&mut self, pattern: bool, names: &[Bytes]) -> Reply {
        let sub = Subscriber {
            out: self.out.clone(),
            resp3: self.resp3,
        };
        let mut replies = Vec::with_capacity(names.len());
        let mut inner = lock(&self.store.inner);
        for name in names {
            let (set, map) = if pattern {
                (&mut self.patterns, &mut inner.patterns)
            } else {
                (&mut self.channels, &mut inner.channels)
            };
            set.insert(name.clone());
            map.entry(name.clone())
                .or_default()
                .insert(self.id, sub.clone());
            let count = (self.channels.len() + self.patterns.len()) as i64;
            replies.push(Value::Push(vec![
                Value::bulk(if pattern { "psubscribe" } else { "subscribe" }),
                Value::Bulk(name.clone()),
                Value::Int(count),
            ]));
        }
        replies
    }

    fn unsubscribe(&mut self, pattern: bool, names: &[Bytes]) -> Reply {
        let kind = if pattern {
            "punsubscribe"
        } else {
            "unsubscribe"
        };
        let names: Vec<Bytes> = if names.is_empty() {
            let set = if pattern {
                &self.patterns
            } else {
                &self.channels
            };
            set.iter().cloned().collect()
        } else {
            names.to_vec()
        };
        let mut inner = lock(&self.store.inner);
        let mut replies = Vec::new();
        for name in &names {
            if pattern {
                self.patterns.remove(name);
                remove_sub(&mut inner.patterns, name, self.id);
            } else {
                self.channels.remove(name);
                remove_sub(&mut inner.channels, name, self.id);
            }
            let count = (self.channels.len() + self.patterns.len()) as i64;
            replies.push(Value::Push(vec![
                Value::bulk(kind),
                Value::Bulk(name.clone()),
                Value::Int(count),
            ]));
        }
        if replies.is_empty() {
            let count = (self.channels.len() + self.patterns.len()) as i64;
            replies.push(Value::Push(vec![
                Value::bulk(kind),
                Value::Null,
                Value::Int(count),
            ]));
        }
        replies
    }

    fn unsubscribe_all(&mut self) {
        let mut inner = lock(&self.store.inner);
        for c in self.channels.drain() {
            remove_sub(&mut inner.channels, &c, self.id);
        }
        for p in self.patterns.drain() {
            remove_sub(&mut inner.patterns, &p, self.id);
        }
    }
}

// ===== data commands =====

/// Looks a key up, dropping it first if it has expired.
fn live<'a>(db: &'a mut HashMap<Bytes, Entry>, key: &Bytes) -> Option<&'a mut Entry> {
    let now = Instant::now();
    if db
        .get(key)
        .is_some_and(|e| e.expires.is_some_and(|t| t <= now))
    {
        db.remove(key);
    }
    db.get_mut(key)
}

fn get_str(db: &mut HashMap<Bytes, Entry>, key: &Bytes) -> Result<Option<Bytes>, Value> {
    match live(db, key) {
        None => Ok(None),
        Some(Entry {
            data: Data::Str(s), ..
        }) => Ok(Some(s.clone())),
        Some(_) => Err(wrong_type()),
    }
}

fn hash_mut<'a>(
    db: &'a mut HashMap<Bytes, Entry>,
    key: &Bytes,
    create: bool,
) -> Result<Option<&'a mut HashMap<Bytes, Bytes>>, Value> {
    if live(db, key).is_none() {
        if !create {
            return Ok(None);
        }
        db.insert(
            key.clone(),
            Entry {
                data: Data::Hash(HashMap::new()),
                expires: None,
            },
        );
    }
    match db.get_mut(key) {
        Some(Entry {
            data: Data::Hash(h),
            ..
        }) => Ok(Some(h)),
        Some(_) => Err(wrong_type()),
        None => Ok(None),
    }
}

fn list_mut<'a>(
    db: &'a mut HashMap<Bytes, Entry>,
    key: &Bytes,
    create: bool,
) -> Result<Option<&'a mut VecDeque<Bytes>>, Value> {
    if live(db, key).is_none() {
        if !create {
            return Ok(None);
        }
        db.insert(
            key.clone(),
            Entry {
                data: Data::List(VecDeque::new()),
                expires: None,
            },
        );
    }
    match db.get_mut(key) {
        Some(Entry {
            data: Data::List(l),
            ..
        }) => Ok(Some(l)),
        Some(_) => Err(wrong_type()),
        None => Ok(None),
    }
}

fn set_str(db: &mut HashMap<Bytes, Entry>, key: &Bytes, value: Bytes, expires: Option<Instant>) {
    db.insert(
        key.clone(),
        Entry {
            data: Data::Str(value),
            expires,
        },
    );
}

fn ttl_of(db: &mut HashMap<Bytes, Entry>, key: &Bytes, millis: bool) -> i64 {
    match live(db, key) {
        None => -2,
        Some(Entry { expires: None, .. }) => -1,
        Some(Entry {
            expires: Some(t), ..
        }) => {
            let left = t.saturating_duration_since(Instant::now());
            if millis {
                left.as_millis() as i64
            } else {
                // Redis rounds to the nearest second.
                ((left.as_millis() + 500) / 1000) as i64
            }
        }
    }
}

fn deadline(amount: i64, millis: bool) -> Option<Instant> {
    if amount <= 0 {
        return None;
    }
    let d = if millis {
        Duration::from_millis(amount as u64)
    } else {
        Duration::from_secs(amount as u64)
    };
    Instant::now().checked_add(d)
}

fn incr_by(db: &mut HashMap<Bytes, Entry>, key: &Bytes, by: i64) -> Value {
    let (current, expires) = match live(db, key) {
        None => (0, None),
        Some(Entry {
            data: Data::Str(s),
            expires,
        }) => match int_arg(s) {
            Some(i) => (i, *expires),
            None => return not_int(),
        },
        Some(_) => return wrong_type(),
    };
    match current.checked_add(by) {
        Some(n) => {
            set_str(db, key, Bytes::from(n.to_string()), expires);
            Value::Int(n)
        }
        None => Value::err("ERR increment or decrement would overflow"),
    }
}

fn list_range(len: usize, start: i64, stop: i64) -> Option<(usize, usize)> {
    let len = len as i64;
    let mut start = if start < 0 { len + start } else { start };
    let mut stop = if stop < 0 { len + stop } else { stop };
    if start < 0 {
        start = 0;
    }
    if stop >= len {
        stop = len - 1;
    }
    if start > stop || start >= len {
        return None;
    }
    Some((start as usize, stop as usize))
}

fn type_name(e: &Entry) -> &'static str {
    match e.data {
        Data::Str(_) => "string",
        Data::Hash(_) => "hash",
        Data::List(_) => "list",
    }
}

/// The data commands, or `None` for an unknown command.
fn data_command(db: &mut HashMap<Bytes, Entry>, name: &str, a: &[Bytes]) -> Option<Reply> {
    let r = |v: Value| Some(one(v));
    let reply = match (name, a) {
        ("get", [k]) => match get_str(db, k) {
            Ok(v) => v.map_or(Value::Null, Value::Bulk),
            Err(e) => e,
        },
        ("set", [k, v, opts @ ..]) => return Some(one(set_command(db, k, v, opts))),
        ("setnx", [k, v]) => {
            if live(db, k).is_some() {
                Value::Int(0)
            } else {
                set_str(db, k, v.clone(), None);
                Value::Int(1)
            }
        }
        ("setex" | "psetex", [k, t, v]) => match int_arg(t) {
            Some(t) if t > 0 => {
                set_str(db, k, v.clone(), deadline(t, name == "psetex"));
                Value::ok()
            }
            Some(_) => Value::err(format!("ERR invalid expire time in '{name}' command")),
            None => not_int(),
        },
        ("getset", [k, v]) => match get_str(db, k) {
            Ok(old) => {
                set_str(db, k, v.clone(), None);
                old.map_or(Value::Null, Value::Bulk)
            }
            Err(e) => e,
        },
        ("getdel", [k]) => match get_str(db, k) {
            Ok(old) => {
                if old.is_some() {
                    db.remove(k);
                }
                old.map_or(Value::Null, Value::Bulk)
            }
            Err(e) => e,
        },
        ("mget", keys) if !keys.is_empty() => Value::Array(
            keys.iter()
                .map(|k| match get_str(db, k) {
                    Ok(Some(v)) => Value::Bulk(v),
                    _ => Value::Null,
                })
                .collect(),
        ),
        ("mset", kv) if !kv.is_empty() && kv.len() % 2 == 0 => {
            for pair in kv.chunks(2) {
                set_str(db, &pair[0], pair[1].clone(), None);
            }
            Value::ok()
        }
        ("incr", [k]) => incr_by(db, k, 1),
        ("decr", [k]) => incr_by(db, k, -1),
        ("incrby", [k, by]) => match int_arg(by) {
            Some(by) => incr_by(db, k, by),
            None => not_int(),
        },
        ("decrby", [k, by]) => match int_arg(by).and_then(|b| b.checked_neg()) {
            Some(by) => incr_by(db, k, by),
            None => not_int(),
        },
        ("incrbyfloat", [k, by]) => {
            let by: Option<f64> = std::str::from_utf8(by).ok().and_then(|s| s.parse().ok());
            let Some(by) = by.filter(|b| b.is_finite()) else {
                return r(Value::err("ERR value is not a valid float"));
            };
            match get_str(db, k) {
                Ok(cur) => {
                    let cur: Option<f64> = match cur {
                        None => Some(0.0),
                        Some(s) => std::str::from_utf8(&s).ok().and_then(|s| s.parse().ok()),
                    };
                    match cur {
                        Some(c) => {
                            let text = format_double(c + by);
                            let expires = live(db, k).and_then(|e| e.expires);
                            set_str(db, k, Bytes::from(text.clone()), expires);
                            Value::bulk(text)
                        }
                        None => Value::err("ERR value is not a valid float"),
                    }
                }
                Err(e) => e,
            }
        }
        ("append", [k, v]) => match get_str(db, k) {
            Ok(cur) => {
                let mut s = cur.map(|b| b.to_vec()).unwrap_or_default();
                s.extend_from_slice(v);
                let n = s.len() as i64;
                let expires = live(db, k).and_then(|e| e.expires);
                set_str(db, k, Bytes::from(s), expires);
                Value::Int(n)
            }
            Err(e) => e,
        },
        ("strlen", [k]) => match get_str(db, k) {
            Ok(v) => Value::Int(v.map_or(0, |b| b.len() as i64)),
            Err(e) => e,
        },
        ("del" | "unlink", keys) if !keys.is_empty() => Value::Int(
            keys.iter()
                .filter(|k| live(db, k).is_some() && db.remove(*k).is_some())
                .count() as i64,
        ),
        ("exists", keys) if !keys.is_empty() => {
            Value::Int(keys.iter().filter(|k| live(db, k).is_some()).count() as i64)
        }
        ("expire" | "pexpire", [k, t]) => match int_arg(t) {
            Some(t) => match live(db, k) {
                None => Value::Int(0),
                Some(_) if t <= 0 => {
                    db.remove(k);
                    Value::Int(1)
                }
                Some(e) => {
                    e.expires = deadline(t, name == "pexpire");
                    Value::Int(1)
                }
            },
            None => not_int(),
        },
        ("ttl", [k]) => Value::Int(ttl_of(db, k, false)),
        ("pttl", [k]) => Value::Int(ttl_of(db, k, true)),
        ("persist", [k]) => match live(db, k) {
            Some(e) if e.expires.is_some() => {
                e.expires = None;
                Value::Int(1)
            }
            _ => Value::Int(0),
        },
        ("type", [k]) => Value::Simple(live(db, k).map_or("none", |e| type_name(e)).into()),
        ("keys", [pattern]) => {
            let now = Instant::now();
            let mut keys: Vec<Value> = db
                .iter()
                .filter(|(k, e)| e.expires.is_none_or(|t| t > now) && glob_match(pattern, k))
                .map(|(k, _)| Value::Bulk(k.clone()))
                .collect();
            keys.sort_by(|a, b| format!("{a:?}").cmp(&format!("{b:?}")));
            Value::Array(keys)
        }
        ("scan", [_cursor, opts @ ..]) => {
            let mut pattern: Option<&Bytes> = None;
            let mut i = 0;
            while i + 1 < opts.len() {
                if eq(&opts[i], "match") {
                    pattern = Some(&opts[i + 1]);
                }
                i += 2;
            }
            let now = Instant::now();
            let keys: Vec<Value> = db
                .iter()
                .filter(|(k, e)| {
                    e.expires.is_none_or(|t| t > now) && pattern.is_none_or(|p| glob_match(p, k))
                })
                .map(|(k, _)| Value::Bulk(k.clone()))
                .collect();
            Value::Array(vec![Value::bulk("0"), Value::Array(keys)])
        }
        ("rename", [from, to]) => match live(db, from).is_some() {
            false => Value::err("ERR no such key"),
            true => {
                if let Some(e) = db.remove(from) {
                    db.insert(to.clone(), e);
                }
                Value::ok()
            }
        },
        ("hset" | "hmset", [k, fv @ ..]) if !fv.is_empty() && fv.len() % 2 == 0 => {
            match hash_mut(db, k, true) {
                Ok(Some(h)) => {
                    let mut added = 0;
                    for pair in fv.chunks(2) {
                        if h.insert(pair[0].clone(), pair[1].clone()).is_none() {
                            added += 1;
                        }
                    }
                    if name == "hmset" {
                        Value::ok()
                    } else {
                        Value::Int(added)
                    }
                }
                Ok(None) => Value::Int(0),
                Err(e) => e,
            }
        }
        ("hsetnx", [k, f, v]) => match hash_mut(db, k, true) {
            Ok(Some(h)) => {
                if h.contains_key(f) {
                    Value::Int(0)
                } else {
                    h.insert(f.clone(), v.clone());
                    Value::Int(1)
                }
            }
            Ok(None) => Value::Int(0),
            Err(e) => e,
        },
        ("hget", [k, f]) => match hash_mut(db, k, false) {
            Ok(h) => h
                .and_then(|h| h.get(f).cloned())
                .map_or(Value::Null, Value::Bulk),
            Err(e) => e,
        },
        ("hmget", [k, fields @ ..]) if !fields.is_empty() => match hash_mut(db, k, false) {
            Ok(h) => Value::Array(
                fields
                    .iter()
                    .map(|f| {
                        h.as_ref()
                            .and_then(|h| h.get(f).cloned())
                            .map_or(Value::Null, Value::Bulk)
                    })
                    .collect(),
            ),
            Err(e) => e,
        },
        ("hdel", [k, fields @ ..]) if !fields.is_empty() => match hash_mut(db, k, false) {
            Ok(Some(h)) => {
                let n = fields.iter().filter(|f| h.remove(*f).is_some()).count() as i64;
                if h.is_empty() {
                    db.remove(k);
                }
                Value::Int(n)
            }
            Ok(None) => Value::Int(0),
            Err(e) => e,
        },
        ("hgetall", [k]) => match hash_mut(db, k, false) {
            Ok(h) => {
                let mut pairs: Vec<(Bytes, Bytes)> = h
                    .map(|h| h.iter().map(|(f, v)| (f.clone(), v.clone())).collect())
                    .unwrap_or_default();
                pairs.sort();
                Value::Map(
                    pairs
                        .into_iter()
                        .map(|(f, v)| (Value::Bulk(f), Value::Bulk(v)))
                        .collect(),
                )
            }
            Err(e) => e,
        },
        ("hexists", [k, f]) => match hash_mut(db, k, false) {
            Ok(h) => Value::Int(h.is_some_and(|h| h.contains_key(f)) as i64),
            Err(e) => e,
        },
        ("hlen", [k]) => match hash_mut(db, k, false) {
            Ok(h) => Value::Int(h.map_or(0, |h| h.len() as i64)),
            Err(e) => e,
        },
        ("hkeys" | "hvals", [k]) => match hash_mut(db, k, false) {
            Ok(h) => {
                let mut pairs: Vec<(Bytes, Bytes)> = h
                    .map(|h| h.iter().map(|(f, v)| (f.clone(), v.clone())).collect())
                    .unwrap_or_default();
                pairs.sort();
                Value::Array(
                    pairs
                        .into_iter()
                        .map(|(f, v)| Value::Bulk(if name == "hkeys" { f } else { v }))
                        .collect(),
                )
            }
            Err(e) => e,
        },
        ("hincrby", [k, f, by]) => match (int_arg(by), hash_mut(db, k, true)) {
            (None, _) => not_int(),
            (_, Err(e)) => e,
            (Some(by), Ok(Some(h))) => {
                let cur = match h.get(f) {
                    None => Some(0),
                    Some(v) => int_arg(v),
                };
                match cur.and_then(|c| c.checked_add(by)) {
                    Some(n) => {
                        h.insert(f.clone(), Bytes::from(n.to_string()));
                        Value::Int(n)
                    }
                    None => Value::err("ERR hash value is not an integer"),
                }
            }
            (Some(_), Ok(None)) => Value::Int(0),
        },
        ("lpush" | "rpush", [k, values @ ..]) if !values.is_empty() => {
            match list_mut(db, k, true) {
                Ok(Some(l)) => {
                    for v in values {
                        if name == "lpush" {
                            l.push_front(v.clone());
                        } else {
                            l.push_back(v.clone());
                        }
                    }
                    Value::Int(l.len() as i64)
                }
                Ok(None) => Value::Int(0),
                Err(e) => e,
            }
        }
        ("lpop" | "rpop", [k, count @ ..]) if count.len() <= 1 => {
            let count = match count.first().map(|c| int_arg(c)) {
                None => None,
                Some(Some(c)) if c >= 0 => Some(c as usize),
                Some(_) => return r(Value::err("ERR value is out of range, must be positive")),
            };
            match list_mut(db, k, false) {
                Ok(Some(l)) => {
                    let mut popped = Vec::new();
                    for _ in 0..count.unwrap_or(1) {
                        let v = if name == "lpop" {
                            l.pop_front()
                        } else {
                            l.pop_back()
                        };
                        match v {
                            Some(v) => popped.push(Value::Bulk(v)),
                            None => break,
                        }
                    }
                    if l.is_empty() {
                        db.remove(k);
                    }
                    match count {
                        None => popped.pop().unwrap_or(Value::Null),
                        Some(_) => Value::Array(popped),
                    }
                }
                Ok(None) => Value::Null,
                Err(e) => e,
            }
        }
        ("llen", [k]) => match list_mut(db, k, false) {
            Ok(l) => Value::Int(l.map_or(0, |l| l.len() as i64)),
            Err(e) => e,
        },
        ("lrange", [k, start, stop]) => match (int_arg(start), int_arg(stop)) {
            (Some(start), Some(stop)) => match list_mut(db, k, false) {
                Ok(Some(l)) => match list_range(l.len(), start, stop) {
                    Some((s, e)) => Value::Array(
                        l.iter()
                            .skip(s)
                            .take(e - s + 1)
                            .cloned()
                            .map(Value::Bulk)
                            .collect(),
                    ),
                    None => Value::Array(vec![]),
                },
                Ok(None) => Value::Array(vec![]),
                Err(e) => e,
            },
            _ => not_int(),
        },
        ("lindex", [k, i]) => match int_arg(i) {
            Some(i) => match list_mut(db, k, false) {
                Ok(Some(l)) => {
                    let idx = if i < 0 { l.len() as i64 + i } else { i };
                    usize::try_from(idx)
                        .ok()
                        .and_then(|i| l.get(i).cloned())
                        .map_or(Value::Null, Value::Bulk)
                }
                Ok(None) => Value::Null,
                Err(e) => e,
            },
            None => not_int(),
        },
        (
            "get" | "set" | "setnx" | "setex" | "psetex" | "getset" | "getdel" | "mget" | "mset"
            | "incr" | "decr" | "incrby" | "decrby" | "incrbyfloat" | "append" | "strlen" | "del"
            | "unlink" | "exists" | "expire" | "pexpire" | "ttl" | "pttl" | "persist" | "type"
            | "keys" | "scan" | "rename" | "hset" | "hmset" | "hsetnx" | "hget" | "hmget" | "hdel"
            | "hgetall" | "hexists" | "hlen" | "hkeys" | "hvals" | "hincrby" | "lpush" | "rpush"
            | "lpop" | "rpop" | "llen" | "lrange" | "lindex",
            _,
        ) => return Some(wrong_args(name)),
        _ => return None,
    };
    r(reply)
}

fn set_command(db: &mut HashMap<Bytes, Entry>, k: &Bytes, v: &Bytes, opts: &[Bytes]) -> Value {
    let (mut nx, mut xx, mut get, mut keep_ttl) = (false, false, false, false);
    let mut expires: Option<Instant> = None;
    let mut i = 0;
    while i < opts.len() {
        let o = &opts[i];
        if eq(o, "nx") {
            nx = true;
        } else if eq(o, "xx") {
            xx = true;
        } else if eq(o, "get") {
            get = true;
        } else if eq(o, "keepttl") {
            keep_ttl = true;
        } else if eq(o, "ex") || eq(o, "px") {
            let Some(t) = opts.get(i + 1).and_then(|t| int_arg(t)) else {
                return Value::err("ERR syntax error");
            };
            if t <= 0 {
                return Value::err("ERR invalid expire time in 'set' command");
            }
            expires = deadline(t, eq(o, "px"));
            i += 1;
        } else {
            return Value::err("ERR syntax error");
        }
        i += 1;
    }
    if nx && xx {
        return Value::err("ERR syntax error");
    }
    let old = match live(db, k) {
        None => None,
        Some(Entry {
            data: Data::Str(s),
            expires,
        }) => Some((s.clone(), *expires)),
        Some(_) if get => return wrong_type(),
        Some(e) => Some((Bytes::new(), e.expires)),
    };
    let exists = old.is_some();
    let old_value = || {
        old.as_ref()
            .map_or(Value::Null, |(s, _)| Value::Bulk(s.clone()))
    };
    if (nx && exists) || (xx && !exists) {
        return if get { old_value() } else { Value::Null };
    }
    if keep_ttl && expires.is_none() {
        expires = old.as_ref().and_then(|(_, e)| *e);
    }
    let reply = if get { old_value() } else { Value::ok() };
    set_str(db, k, v.clone(), expires);
    reply
}

/// Redis-style glob matching: `*`, `?`, `[abc]`, `[^a-z]`, `\x`.
pub(crate) fn glob_match(pattern: &[u8], text: &[u8]) -> bool {
    // Iterative with one backtrack point for the last `*`, like most glob matchers.
    let (mut p, mut t) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() {
            match pattern[p] {
                b'*' => {
                    star = Some((p, t));
                    p += 1;
                    continue;
                }
                b'?' => {
                    p += 1;
                    t += 1;
                    continue;
                }
                b'[' => {
                    if let Some((matched, next)) = class_match(pattern, p, text[t]) {
                        if matched {
                            p = next;
                            t += 1;
                            continue;
                        }
                    }
                }
                b'\\' if p + 1 < pattern.len() => {
                    if pattern[p + 1] == text[t] {
                        p += 2;
                        t += 1;
                        continue;
                    }
                }
                c => {
                    if c == text[t] {
                        p += 1;
                        t += 1;
                        continue;
                    }
                }
            }
        }
        match star {
            Some((sp, st)) => {
                p = sp + 1;
                t = st + 1;
                star = Some((sp, st + 1));
            }
            None => return false,
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

/// Matches `c` against the class starting at `pattern[p] == b'['`; returns the result and the
/// index after the class, or `None` for an unterminated class.
fn class_match(pattern: &[u8], p: usize, c: u8) -> Option<(bool, usize)> {
    let mut i = p + 1;
    let negate = pattern.get(i) == Some(&b'^');
    if negate {
        i += 1;
    }
    let mut matched = false;
    while i < pattern.len() && pattern[i] != b']' {
        if pattern[i] == b'\\' && i + 1 < pattern.len() {
            matched |= pattern[i + 1] == c;
            i += 2;
        } else if i + 2 < pattern.len() && pattern[i + 1] == b'-' && pattern[i + 2] != b']' {
            let (lo, hi) = (
                pattern[i].min(pattern[i + 2]),
                pattern[i].max(pattern[i + 2]),
            );
            matched |= (lo..=hi).contains(&c);
            i += 3;
        } else {
            matched |= pattern[i] == c;
            i += 1;
        }
    }
    if i >= pattern.len() {
        return None;
    }
    Some((matched != negate, i + 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_like_redis() {
        assert!(glob_match(b"*", b"anything"));
        assert!(glob_match(b"h?llo", b"hello"));
        assert!(glob_match(b"h*llo", b"heeeello"));
        assert!(glob_match(b"h[ae]llo", b"hallo"));
        assert!(!glob_match(b"h[^e]llo", b"hello"));
        assert!(glob_match(b"h[a-b]llo", b"hbllo"));
        assert!(glob_match(b"Azure*", b"AzureRedisEvents"));
        assert!(!glob_match(b"a*b", b"acd"));
        assert!(glob_match(b"\\*", b"*"));
        assert!(!glob_match(b"[abc", b"a"));
    }
}
