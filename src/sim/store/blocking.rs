//! Blocking pops: `BLPOP`, `BRPOP`, `BLMOVE`, `BRPOPLPUSH`, `BLMPOP`, `BZPOPMIN`, `BZPOPMAX`,
//! `BZMPOP`.
//!
//! With something to take, a blocking command answers at once, as its plain form would. Otherwise
//! the session waits: it is queued on each of its keys ([`Waiters`]), and its connection awaits
//! the reply ([`Blocked::wait`]) while other sessions go on. When a command changes one of those
//! keys, the store serves that key's waiters in the order they came, under the same lock and
//! before any other command runs, so the first waiter takes what was pushed, as in Redis (which
//! serves it from that key). A waiter whose timeout passes gets a null array; one whose
//! connection goes away leaves the queues. Inside `MULTI` nothing blocks: the null reply comes at
//! once (a null array, a plain null for `BLMOVE`). Timeouts are seconds as a float, 0 meaning
//! forever, read as Redis reads them (rounded up to the millisecond).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::oneshot;

use super::{
    keys, lists, syntax_error, wrong_args, zsets, Data, Db, Family, MemoryStore, Run, StoreInner,
};
use crate::sim::lock;
use crate::sim::resp::Value;

pub(super) const FAMILY: Family = Family {
    commands: &[
        ("blpop", -3),
        ("brpop", -3),
        ("blmove", 6),
        ("brpoplpush", 4),
        ("blmpop", -5),
        ("bzpopmin", -3),
        ("bzpopmax", -3),
        ("bzmpop", -5),
    ],
    run: Run::Blocking(run),
};

/// What a blocking command comes to: an answer now, or a wait.
#[derive(Debug)]
pub(super) enum Attempt {
    Answer(Value),
    Wait(Wait),
}

/// A wait a command asks for: on which keys, for what, until when.
#[derive(Debug)]
pub(super) struct Wait {
    keys: Vec<Bytes>,
    op: Op,
    deadline: Option<Instant>,
}

impl Wait {
    /// The reply when the wait ends with nothing: a null array.
    fn timed_out(&self) -> Value {
        Value::NullArray
    }

    /// The reply when there is nothing to take and the session may not wait (inside `MULTI`):
    /// a null array, or a null for `BLMOVE`.
    pub(super) fn not_waiting(&self) -> Value {
        match self.op {
            Op::Move { .. } => Value::Null,
            _ => Value::NullArray,
        }
    }
}

/// What a waiter takes from the first of its keys that has something.
#[derive(Debug, Clone)]
enum Op {
    /// `BLPOP`, `BRPOP`: `[key, element]`.
    Pop { front: bool },
    /// `BLMPOP`: `[key, [element, ...]]`.
    MPop { front: bool, count: usize },
    /// `BLMOVE`, `BRPOPLPUSH`: the element moved.
    Move {
        to: Bytes,
        from_front: bool,
        to_front: bool,
    },
    /// `BZPOPMIN`, `BZPOPMAX`: `[key, member, score]`.
    ZPop { max: bool },
    /// `BZMPOP`: `[key, [[member, score], ...]]`.
    ZMPop { max: bool, count: usize },
}

// ===== impl Op =====

impl Op {
    /// Whether `data` is the type this op takes from.
    fn takes_from(&self, data: &Data) -> bool {
        match self {
            Op::Pop { .. } | Op::MPop { .. } | Op::Move { .. } => matches!(data, Data::List(_)),
            Op::ZPop { .. } | Op::ZMPop { .. } => matches!(data, Data::ZSet(_)),
        }
    }

    /// Takes from `key`: the reply, `None` when there is nothing there, `WRONGTYPE` when the key
    /// (or `BLMOVE`'s destination) holds another type.
    fn take(&self, db: &mut Db, key: &Bytes) -> Result<Option<Value>, Value> {
        let k = || Value::Bulk(key.clone());
        Ok(match self {
            Op::Pop { front } => lists::pop_n(db, key, *front, 1)?
                .and_then(|mut v| v.pop())
                .map(|v| Value::Array(vec![k(), Value::Bulk(v)])),
            Op::MPop { front, count } => {
                lists::pop_n(db, key, *front, *count)?.map(|v| lists::keyed(key, v))
            }
            Op::Move {
                to,
                from_front,
                to_front,
            } => match lists::lmove(db, key, to, *from_front, *to_front)? {
                Value::Null => None,
                v => Some(v),
            },
            Op::ZPop { max } => zsets::pop(db, key, *max, 1)?
                .and_then(|mut v| v.pop())
                .map(|(m, s)| Value::Array(vec![k(), Value::Bulk(m), Value::Double(s)])),
            Op::ZMPop { max, count } => {
                zsets::pop(db, key, *max, *count)?.map(|v| zsets::keyed(key, v))
            }
        })
    }
}

fn run(db: &mut Db, name: &str, a: &[Bytes]) -> Attempt {
    let (keys, op, timeout) = match parse(name, a) {
        Ok(parsed) => parsed,
        Err(e) => return Attempt::Answer(e),
    };
    for key in keys {
        match op.take(db, key) {
            Ok(Some(v)) => return Attempt::Answer(v),
            Ok(None) => {}
            Err(e) => return Attempt::Answer(e),
        }
    }
    let mut unique: Vec<Bytes> = Vec::with_capacity(keys.len());
    for k in keys {
        if !unique.contains(k) {
            unique.push(k.clone());
        }
    }
    Attempt::Wait(Wait {
        keys: unique,
        op,
        deadline: timeout.and_then(|t| Instant::now().checked_add(t)),
    })
}

/// The keys, what to take and the timeout of a blocking command, checked in Redis's order.
fn parse<'a>(name: &str, a: &'a [Bytes]) -> Result<(&'a [Bytes], Op, Option<Duration>), Value> {
    match (name, a) {
        ("blpop" | "brpop" | "bzpopmin" | "bzpopmax", [keys @ .., t]) if !keys.is_empty() => {
            let timeout = timeout(t)?;
            let op = match name {
                "blpop" => Op::Pop { front: true },
                "brpop" => Op::Pop { front: false },
                "bzpopmin" => Op::ZPop { max: false },
                _ => Op::ZPop { max: true },
            };
            Ok((keys, op, timeout))
        }
        ("blmove", [from, to, wherefrom, whereto, t]) => {
            let (Some(from_front), Some(to_front)) = (lists::side(wherefrom), lists::side(whereto))
            else {
                return Err(syntax_error());
            };
            let op = Op::Move {
                to: to.clone(),
                from_front,
                to_front,
            };
            Ok((std::slice::from_ref(from), op, timeout(t)?))
        }
        ("brpoplpush", [from, to, t]) => {
            let op = Op::Move {
                to: to.clone(),
                from_front: false,
                to_front: true,
            };
            Ok((std::slice::from_ref(from), op, timeout(t)?))
        }
        ("blmpop", [t, numkeys, rest @ ..]) => {
            let timeout = timeout(t)?;
            let (keys, front, count) = lists::mpop_args(numkeys, rest)?;
            Ok((keys, Op::MPop { front, count }, timeout))
        }
        ("bzmpop", [t, numkeys, rest @ ..]) => {
            let timeout = timeout(t)?;
            let (keys, max, count) = zsets::mpop_args(numkeys, rest)?;
            Ok((keys, Op::ZMPop { max, count }, timeout))
        }
        _ => Err(wrong_args(name)),
    }
}

/// A timeout in seconds as Redis 7.0 reads one: `None` for 0 (forever). Redis reads a long
/// double, multiplies by 1000, rounds up and converts to an integer, where C turns anything out
/// of range (`inf`, `1e20`) into the lowest integer: hence "negative" for those.
fn timeout(b: &[u8]) -> Result<Option<Duration>, Value> {
    let secs =
        seconds(b).ok_or_else(|| Value::err("ERR timeout is not a float or out of range"))?;
    let ms = (secs * 1000.0).ceil();
    let ms: i64 = if (-9.223_372_036_854_776e18..9.223_372_036_854_776e18).contains(&ms) {
        ms as i64
    } else {
        i64::MIN
    };
    if ms < 0 {
        return Err(Value::err("ERR timeout is negative"));
    }
    if ms == 0 {
        return Ok(None);
    }
    // A wait too long for the clock is a wait forever.
    Ok(Some(Duration::from_millis(ms.unsigned_abs())))
}

/// Seconds as `strtold` reads them over the whole argument, with no leading space and no NaN.
/// A value too small for a double but not zero for a long double stays positive.
fn seconds(b: &[u8]) -> Option<f64> {
    let s = std::str::from_utf8(b).ok()?;
    if s.is_empty() || s.starts_with(|c: char| c.is_ascii_whitespace() || c == '\x0b') {
        return None;
    }
    let d = zsets::c_double(s)?;
    if d.is_nan() {
        return None;
    }
    let lower = s.to_ascii_lowercase();
    if d == 0.0 && !lower.contains("0x") && zsets::mantissa_nonzero(&lower) {
        return Some(if lower.starts_with('-') {
            -f64::MIN_POSITIVE
        } else {
            f64::MIN_POSITIVE
        });
    }
    Some(d)
}

// ===== waiters =====

/// The sessions blocked on keys: a queue per key, first come first served.
#[derive(Debug, Default)]
pub(super) struct Waiters {
    next_id: u64,
    queues: HashMap<(usize, Bytes), VecDeque<u64>>,
    waiting: HashMap<u64, Waiter>,
}

/// One blocked session: where it waits, what it takes, where its reply goes.
#[derive(Debug)]
struct Waiter {
    db: usize,
    keys: Vec<Bytes>,
    op: Op,
    reply: oneshot::Sender<Value>,
}

impl Waiters {
    fn add(&mut self, db: usize, wait: Wait) -> (u64, oneshot::Receiver<Value>) {
        self.next_id += 1;
        let id = self.next_id;
        for k in &wait.keys {
            self.queues
                .entry((db, k.clone()))
                .or_default()
                .push_back(id);
        }
        let (tx, rx) = oneshot::channel();
        self.waiting.insert(
            id,
            Waiter {
                db,
                keys: wait.keys,
                op: wait.op,
                reply: tx,
            },
        );
        (id, rx)
    }

    fn remove(&mut self, id: u64) -> Option<Waiter> {
        let w = self.waiting.remove(&id)?;
        for k in &w.keys {
            let place = (w.db, k.clone());
            if let Some(q) = self.queues.get_mut(&place) {
                q.retain(|&other| other != id);
                if q.is_empty() {
                    self.queues.remove(&place);
                }
            }
        }
        Some(w)
    }
}

/// Serves the sessions blocked on `key` in database `db`, oldest first, while it has something
/// for them. A waiter for another type than the key holds goes on waiting.
pub(super) fn serve(inner: &mut StoreInner, db: usize, key: &Bytes) {
    let Some(queue) = inner.waiters.queues.get(&(db, key.clone())) else {
        return;
    };
    let ids: Vec<u64> = queue.iter().copied().collect();
    for id in ids {
        let Some(op) = inner.waiters.waiting.get(&id).map(|w| w.op.clone()) else {
            continue;
        };
        let data = inner.db(db);
        match keys::live(data, key) {
            None => return,
            Some(e) if !op.takes_from(&e.data) => continue,
            Some(_) => {}
        }
        let reply = match op.take(data, key) {
            Ok(Some(v)) => v,
            Ok(None) => continue,
            // BLMOVE to a key of another type: Redis ends the wait with the error.
            Err(e) => e,
        };
        if let Some(w) = inner.waiters.remove(id) {
            let _ = w.reply.send(reply);
        }
    }
}

/// A session waiting for its reply. Dropping it (the connection went away) leaves the queues.
#[derive(Debug)]
pub(super) struct Blocked {
    store: Arc<MemoryStore>,
    id: u64,
    reply: oneshot::Receiver<Value>,
    deadline: Option<Instant>,
    timed_out: Value,
}

impl Blocked {
    /// Queues the session on the keys of `wait` (the store is locked by the caller).
    pub(super) fn new(
        store: Arc<MemoryStore>,
        inner: &mut StoreInner,
        db: usize,
        wait: Wait,
    ) -> Blocked {
        let deadline = wait.deadline;
        let timed_out = wait.timed_out();
        let (id, reply) = inner.waiters.add(db, wait);
        Blocked {
            store,
            id,
            reply,
            deadline,
            timed_out,
        }
    }

    /// The reply: what a write served this session, or the null reply once the timeout passed.
    pub(super) async fn wait(mut self) -> Value {
        let served = match self.deadline {
            None => (&mut self.reply).await.ok(),
            Some(d) => tokio::time::timeout_at(d.into(), &mut self.reply)
                .await
                .ok()
                .and_then(Result::ok),
        };
        if let Some(v) = served {
            return v;
        }
        // Timed out: leave the queues, unless a write served this session just now.
        lock(&self.store.inner).waiters.remove(self.id);
        match self.reply.try_recv() {
            Ok(v) => v,
            Err(_) => self.timed_out.clone(),
        }
    }
}

impl Drop for Blocked {
    fn drop(&mut self) {
        lock(&self.store.inner).waiters.remove(self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_are_read_as_redis_reads_them() {
        assert_eq!(timeout(b"0"), Ok(None));
        assert_eq!(timeout(b"0.1"), Ok(Some(Duration::from_millis(100))));
        assert_eq!(timeout(b"0.0001"), Ok(Some(Duration::from_millis(1))));
        assert_eq!(timeout(b"1e-400"), Ok(Some(Duration::from_millis(1))));
        assert_eq!(timeout(b"-0.0001"), Ok(None));
        let negative = Err(Value::err("ERR timeout is negative"));
        assert_eq!(timeout(b"-1"), negative);
        assert_eq!(timeout(b"inf"), negative);
        assert_eq!(timeout(b"1e20"), negative);
        let not_float = Err(Value::err("ERR timeout is not a float or out of range"));
        for bad in [&b"x"[..], b"nan", b" 1", b""] {
            assert_eq!(timeout(bad), not_float);
        }
    }
}
