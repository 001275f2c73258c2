//! Strings and counters: `GET`, `SET` (with `NX`, `XX`, `GET`, `KEEPTTL`, `EX`, `PX`), `SETNX`,
//! `SETEX`, `PSETEX`, `GETSET`, `GETDEL`, `MGET`, `MSET`, `INCR`, `DECR`, `INCRBY`, `DECRBY`,
//! `INCRBYFLOAT`, `APPEND`, `STRLEN`.

use std::time::Instant;

use bytes::Bytes;

use super::keys::{deadline, live};
use super::{eq, int_arg, not_int, wrong_args, wrong_type, Data, Db, Entry, Family, Run};
use crate::sim::resp::{format_double, Value};

pub(super) const FAMILY: Family = Family {
    commands: &[
        ("get", 2),
        ("set", -3),
        ("setnx", 3),
        ("setex", 4),
        ("psetex", 4),
        ("getset", 3),
        ("getdel", 2),
        ("mget", -2),
        ("mset", -3),
        ("incr", 2),
        ("decr", 2),
        ("incrby", 3),
        ("decrby", 3),
        ("incrbyfloat", 3),
        ("append", 3),
        ("strlen", 2),
    ],
    run: Run::Data(run),
};

fn run(db: &mut Db, name: &str, a: &[Bytes]) -> Value {
    match (name, a) {
        ("get", [k]) => match get_str(db, k) {
            Ok(v) => v.map_or(Value::Null, Value::Bulk),
            Err(e) => e,
        },
        ("set", [k, v, opts @ ..]) => set_command(db, k, v, opts),
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
                    db.keys.remove(k);
                    db.touch(k);
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
        ("incrbyfloat", [k, by]) => incr_by_float(db, k, by),
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
        _ => wrong_args(name),
    }
}

fn get_str(db: &mut Db, key: &Bytes) -> Result<Option<Bytes>, Value> {
    match live(db, key) {
        None => Ok(None),
        Some(Entry {
            data: Data::Str(s), ..
        }) => Ok(Some(s.clone())),
        Some(_) => Err(wrong_type()),
    }
}

fn set_str(db: &mut Db, key: &Bytes, value: Bytes, expires: Option<Instant>) {
    db.keys.insert(
        key.clone(),
        Entry {
            data: Data::Str(value),
            expires,
        },
    );
    db.touch(key);
}

fn set_command(db: &mut Db, k: &Bytes, v: &Bytes, opts: &[Bytes]) -> Value {
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
            let Some(t) = opts.get(i + 1) else {
                return Value::err("ERR syntax error");
            };
            let Some(t) = int_arg(t) else {
                return not_int();
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

fn incr_by(db: &mut Db, key: &Bytes, by: i64) -> Value {
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

fn incr_by_float(db: &mut Db, k: &Bytes, by: &Bytes) -> Value {
    let by: Option<f64> = std::str::from_utf8(by).ok().and_then(|s| s.parse().ok());
    let Some(by) = by.filter(|b| b.is_finite()) else {
        return Value::err("ERR value is not a valid float");
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
