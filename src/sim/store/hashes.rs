//! Hashes: `HSET`, `HMSET`, `HSETNX`, `HGET`, `HMGET`, `HDEL`, `HGETALL`, `HEXISTS`, `HLEN`,
//! `HKEYS`, `HVALS`, `HINCRBY`.
//!
//! Fields are listed in byte order (`HGETALL`, `HKEYS`, `HVALS`), so replies are stable.

use std::collections::HashMap;

use bytes::Bytes;

use super::{collection_mut, int_arg, not_int, wrong_args, Data, Db, Family, Run};
use crate::sim::resp::Value;

pub(super) const FAMILY: Family = Family {
    commands: &[
        ("hset", -4),
        ("hmset", -4),
        ("hsetnx", 4),
        ("hget", 3),
        ("hmget", -3),
        ("hdel", -3),
        ("hgetall", 2),
        ("hexists", 3),
        ("hlen", 2),
        ("hkeys", 2),
        ("hvals", 2),
        ("hincrby", 4),
    ],
    run: Run::Data(run),
};

fn run(db: &mut Db, name: &str, a: &[Bytes]) -> Value {
    match (name, a) {
        ("hset" | "hmset", [k, fv @ ..]) if !fv.is_empty() && fv.len() % 2 == 0 => {
            match hash_mut(db, k, true) {
                Ok(Some(h)) => {
                    let mut added = 0;
                    for pair in fv.chunks(2) {
                        if h.insert(pair[0].clone(), pair[1].clone()).is_none() {
                            added += 1;
                        }
                    }
                    db.touch(k);
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
                    db.touch(k);
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
                    db.keys.remove(k);
                }
                if n > 0 {
                    db.touch(k);
                }
                Value::Int(n)
            }
            Ok(None) => Value::Int(0),
            Err(e) => e,
        },
        ("hgetall", [k]) => match hash_mut(db, k, false) {
            Ok(h) => Value::Map(
                sorted_pairs(h)
                    .into_iter()
                    .map(|(f, v)| (Value::Bulk(f), Value::Bulk(v)))
                    .collect(),
            ),
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
            Ok(h) => Value::Array(
                sorted_pairs(h)
                    .into_iter()
                    .map(|(f, v)| Value::Bulk(if name == "hkeys" { f } else { v }))
                    .collect(),
            ),
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
                        db.touch(k);
                        Value::Int(n)
                    }
                    None => Value::err("ERR hash value is not an integer"),
                }
            }
            (Some(_), Ok(None)) => Value::Int(0),
        },
        _ => wrong_args(name),
    }
}

/// The hash at `key`, created empty when `create` is set and it does not exist.
fn hash_mut<'a>(
    db: &'a mut Db,
    key: &Bytes,
    create: bool,
) -> Result<Option<&'a mut HashMap<Bytes, Bytes>>, Value> {
    collection_mut(
        db,
        key,
        create,
        || Data::Hash(HashMap::new()),
        |data| match data {
            Data::Hash(v) => Some(v),
            _ => None,
        },
    )
}

/// The fields and values of a hash (none for a missing one), in byte order.
fn sorted_pairs(h: Option<&mut HashMap<Bytes, Bytes>>) -> Vec<(Bytes, Bytes)> {
    let mut pairs: Vec<(Bytes, Bytes)> = h
        .map(|h| h.iter().map(|(f, v)| (f.clone(), v.clone())).collect())
        .unwrap_or_default();
    pairs.sort();
    pairs
}
