//! Keys and expiry: `DEL`, `UNLINK`, `EXISTS`, `EXPIRE`, `PEXPIRE`, `TTL`, `PTTL`, `PERSIST`,
//! `TYPE`, `KEYS`, `SCAN`, `RENAME`.
//!
//! Keys expire lazily: a key past its deadline is dropped when a command looks it up
//! ([`live`]), which every family does, so an expired key is never seen.

use std::time::{Duration, Instant};

use bytes::Bytes;

use super::glob::glob_match;
use super::{eq, int_arg, not_int, wrong_args, Data, Db, Entry, Family, Run};
use crate::sim::resp::Value;

pub(super) const FAMILY: Family = Family {
    commands: &[
        ("del", -2),
        ("unlink", -2),
        ("exists", -2),
        ("expire", -3),
        ("pexpire", -3),
        ("ttl", 2),
        ("pttl", 2),
        ("persist", 2),
        ("type", 2),
        ("keys", 2),
        ("scan", -2),
        ("rename", 3),
    ],
    run: Run::Data(run),
};

fn run(db: &mut Db, name: &str, a: &[Bytes]) -> Value {
    match (name, a) {
        ("del" | "unlink", keys) if !keys.is_empty() => {
            let mut n = 0;
            for k in keys {
                if live(db, k).is_some() && db.keys.remove(k).is_some() {
                    db.touch(k);
                    n += 1;
                }
            }
            Value::Int(n)
        }
        ("exists", keys) if !keys.is_empty() => {
            Value::Int(keys.iter().filter(|k| live(db, k).is_some()).count() as i64)
        }
        ("expire" | "pexpire", [k, t]) => match int_arg(t) {
            Some(t) => match live(db, k) {
                None => Value::Int(0),
                Some(_) if t <= 0 => {
                    db.keys.remove(k);
                    db.touch(k);
                    Value::Int(1)
                }
                Some(e) => {
                    e.expires = deadline(t, name == "pexpire");
                    db.touch(k);
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
                db.touch(k);
                Value::Int(1)
            }
            _ => Value::Int(0),
        },
        ("type", [k]) => Value::Simple(live(db, k).map_or("none", |e| type_name(e)).into()),
        ("keys", [pattern]) => {
            let now = Instant::now();
            let mut keys: Vec<Value> = db
                .keys
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
                .keys
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
                if let Some(e) = db.keys.remove(from) {
                    db.keys.insert(to.clone(), e);
                    db.touch(from);
                    db.touch(to);
                }
                Value::ok()
            }
        },
        _ => wrong_args(name),
    }
}

/// Looks a key up, dropping it first if it has expired (which counts as a change).
pub(super) fn live<'a>(db: &'a mut Db, key: &Bytes) -> Option<&'a mut Entry> {
    let now = Instant::now();
    if db
        .keys
        .get(key)
        .is_some_and(|e| e.expires.is_some_and(|t| t <= now))
    {
        db.keys.remove(key);
        db.touch(key);
    }
    db.keys.get_mut(key)
}

/// The deadline `amount` seconds (or milliseconds) from now; `None` (no expiry) for a
/// non-positive amount.
pub(super) fn deadline(amount: i64, millis: bool) -> Option<Instant> {
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

fn ttl_of(db: &mut Db, key: &Bytes, millis: bool) -> i64 {
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

fn type_name(e: &Entry) -> &'static str {
    match e.data {
        Data::Str(_) => "string",
        Data::Hash(_) => "hash",
        Data::List(_) => "list",
        Data::Set(_) => "set",
        Data::ZSet(_) => "zset",
    }
}
