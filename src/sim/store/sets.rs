//! Sets: `SADD`, `SREM`, `SMEMBERS`, `SISMEMBER`, `SMISMEMBER`, `SCARD`, `SPOP`, `SRANDMEMBER`
//! (with a count, negative for repeats), `SINTER`, `SUNION`, `SDIFF`, their `STORE` forms,
//! `SMOVE`, `SINTERCARD` (with `LIMIT`), `SSCAN` (the whole set in one page).
//!
//! Members are listed in the order Redis 7.0 lists a small set of integers (an "intset": by
//! value) when every member is one, and in byte order otherwise, so replies are stable. Redis
//! lists other sets in hash order, which no client may rely on.

use std::collections::HashSet;

use bytes::Bytes;

use super::glob::glob_match;
use super::{
    collection_mut, eq, int_arg, keys, not_int, positive_arg, syntax_error, wrong_type, Data, Db,
    Entry, Family, Run,
};
use crate::sim::resp::Value;

pub(super) const FAMILY: Family = Family {
    commands: &[
        ("sadd", -3),
        ("srem", -3),
        ("smembers", 2),
        ("sismember", 3),
        ("smismember", -3),
        ("scard", 2),
        ("spop", -2),
        ("srandmember", -2),
        ("sinter", -2),
        ("sunion", -2),
        ("sdiff", -2),
        ("sinterstore", -3),
        ("sunionstore", -3),
        ("sdiffstore", -3),
        ("smove", 4),
        ("sintercard", -3),
        ("sscan", -3),
    ],
    run: Run::Data(run),
};

/// Redis keeps a set of at most this many integers as an intset, listed by value.
const INTSET_MAX: usize = 512;

/// The most elements `SRANDMEMBER` with a negative count answers with here.
const MAX_RANDOM: usize = 1 << 20;

fn run(db: &mut Db, name: &str, a: &[Bytes]) -> Value {
    let result = match (name, a) {
        ("sadd", [k, members @ ..]) => sadd(db, k, members),
        ("srem", [k, members @ ..]) => srem(db, k, members),
        ("smembers", [k]) => set_ref(db, k).map(|s| Value::Set(listed(s.into_iter().flatten()))),
        ("sismember", [k, m]) => {
            set_ref(db, k).map(|s| Value::Int(s.is_some_and(|s| s.contains(m)) as i64))
        }
        ("smismember", [k, members @ ..]) => set_ref(db, k).map(|s| {
            Value::Array(
                members
                    .iter()
                    .map(|m| Value::Int(s.is_some_and(|s| s.contains(m)) as i64))
                    .collect(),
            )
        }),
        ("scard", [k]) => set_ref(db, k).map(|s| Value::Int(s.map_or(0, |s| s.len() as i64))),
        ("spop", [k]) => spop(db, k, None),
        ("spop", [k, count]) => positive_arg(count).and_then(|n| spop(db, k, Some(n))),
        ("spop", _) => Err(syntax_error()),
        ("srandmember", [k]) => set_ref(db, k).map(|s| {
            s.and_then(|s| pick(s, 1).pop())
                .map_or(Value::Null, Value::Bulk)
        }),
        ("srandmember", [k, count]) => srandmember(db, k, count),
        ("srandmember", _) => Err(syntax_error()),
        ("sinter" | "sunion" | "sdiff", keys) => {
            combine(db, name, keys).map(|m| Value::Set(listed(m.iter())))
        }
        ("sinterstore" | "sunionstore" | "sdiffstore", [dst, keys @ ..]) => {
            combine(db, &name[..name.len() - 5], keys).map(|m| store(db, dst, m))
        }
        ("smove", [from, to, m]) => smove(db, from, to, m),
        ("sintercard", [numkeys, rest @ ..]) => sintercard(db, numkeys, rest),
        ("sscan", [k, cursor, opts @ ..]) => sscan(db, k, cursor, opts),
        _ => Ok(super::wrong_args(name)),
    };
    result.unwrap_or_else(|e| e)
}

fn sadd(db: &mut Db, k: &Bytes, members: &[Bytes]) -> Result<Value, Value> {
    let Some(s) = set_mut(db, k, true)? else {
        return Ok(Value::Int(0));
    };
    let added = members.iter().filter(|m| s.insert((*m).clone())).count();
    if added > 0 {
        db.touch(k);
    }
    Ok(Value::Int(added as i64))
}

fn srem(db: &mut Db, k: &Bytes, members: &[Bytes]) -> Result<Value, Value> {
    let Some(s) = set_mut(db, k, false)? else {
        return Ok(Value::Int(0));
    };
    let removed = members.iter().filter(|m| s.remove(*m)).count();
    let empty = s.is_empty();
    if empty {
        db.keys.remove(k);
    }
    if removed > 0 {
        db.touch(k);
    }
    Ok(Value::Int(removed as i64))
}

/// `SPOP key` (one member or null) and `SPOP key count` (a set).
fn spop(db: &mut Db, k: &Bytes, count: Option<usize>) -> Result<Value, Value> {
    let Some(s) = set_mut(db, k, false)? else {
        return Ok(count.map_or(Value::Null, |_| Value::Set(vec![])));
    };
    let popped = pick(s, count.unwrap_or(1));
    for m in &popped {
        s.remove(m);
    }
    if s.is_empty() {
        db.keys.remove(k);
    }
    if !popped.is_empty() {
        db.touch(k);
    }
    Ok(match count {
        None => popped.into_iter().next().map_or(Value::Null, Value::Bulk),
        Some(_) => Value::Set(listed(popped.iter())),
    })
}

fn srandmember(db: &mut Db, k: &Bytes, count: &Bytes) -> Result<Value, Value> {
    let count = int_arg(count).ok_or_else(not_int)?;
    if count == i64::MIN {
        return Err(Value::err(
            "ERR value is out of range, value must between -9223372036854775807 and 9223372036854775807",
        ));
    }
    let Some(s) = set_ref(db, k)? else {
        return Ok(Value::Array(vec![]));
    };
    if count >= 0 {
        let n = usize::try_from(count).unwrap_or(usize::MAX);
        let picked = if n >= s.len() {
            listed(s.iter())
        } else {
            pick(s, n).into_iter().map(Value::Bulk).collect()
        };
        return Ok(Value::Array(picked));
    }
    // A negative count may repeat members: that many draws, each from the whole set.
    let n = usize::try_from(count.unsigned_abs()).unwrap_or(usize::MAX);
    if n > MAX_RANDOM {
        return Err(Value::err(format!(
            "ERR the memory backend answers SRANDMEMBER with at most {MAX_RANDOM} members"
        )));
    }
    let members: Vec<&Bytes> = s.iter().collect();
    if members.is_empty() {
        return Ok(Value::Array(vec![]));
    }
    Ok(Value::Array(
        (0..n)
            .map(|_| Value::Bulk(members[fastrand::usize(..members.len())].clone()))
            .collect(),
    ))
}

/// Up to `n` distinct members, drawn at random.
fn pick(s: &HashSet<Bytes>, n: usize) -> Vec<Bytes> {
    if n >= s.len() {
        return s.iter().cloned().collect();
    }
    let mut all: Vec<&Bytes> = s.iter().collect();
    fastrand::shuffle(&mut all);
    all.into_iter().take(n).cloned().collect()
}

/// `SINTER`, `SUNION` or `SDIFF` of the sets at `keys` (a missing key is an empty set).
fn combine(db: &mut Db, op: &str, keys: &[Bytes]) -> Result<Vec<Bytes>, Value> {
    let sets = sets_at(db, keys)?;
    let members: Vec<Bytes> = match op {
        "sinter" => {
            let Some(present) = sets.iter().copied().collect::<Option<Vec<_>>>() else {
                return Ok(vec![]);
            };
            let Some(smallest) = present.iter().min_by_key(|s| s.len()) else {
                return Ok(vec![]);
            };
            smallest
                .iter()
                .filter(|m| present.iter().all(|s| s.contains(*m)))
                .cloned()
                .collect()
        }
        "sunion" => {
            let mut all: HashSet<&Bytes> = HashSet::new();
            for s in sets.iter().flatten() {
                all.extend(s.iter());
            }
            all.into_iter().cloned().collect()
        }
        _ => match sets.split_first() {
            Some((Some(first), rest)) => first
                .iter()
                .filter(|m| rest.iter().flatten().all(|s| !s.contains(*m)))
                .cloned()
                .collect(),
            _ => vec![],
        },
    };
    Ok(members)
}

/// Stores `members` as the set at `dst`, replacing what was there; an empty result deletes it.
fn store(db: &mut Db, dst: &Bytes, members: Vec<Bytes>) -> Value {
    let n = members.len() as i64;
    let existed = keys::live(db, dst).is_some();
    if members.is_empty() {
        db.keys.remove(dst);
    } else {
        db.keys.insert(
            dst.clone(),
            Entry {
                data: Data::Set(members.into_iter().collect()),
                expires: None,
            },
        );
    }
    if existed || n > 0 {
        db.touch(dst);
    }
    Value::Int(n)
}

fn smove(db: &mut Db, from: &Bytes, to: &Bytes, m: &Bytes) -> Result<Value, Value> {
    if set_ref(db, from)?.is_none() {
        return Ok(Value::Int(0));
    }
    set_ref(db, to)?;
    if from == to {
        return Ok(Value::Int(
            set_ref(db, from)?.is_some_and(|s| s.contains(m)) as i64,
        ));
    }
    let Some(src) = set_mut(db, from, false)? else {
        return Ok(Value::Int(0));
    };
    if !src.remove(m) {
        return Ok(Value::Int(0));
    }
    if src.is_empty() {
        db.keys.remove(from);
    }
    db.touch(from);
    if let Some(dst) = set_mut(db, to, true)? {
        if dst.insert(m.clone()) {
            db.touch(to);
        }
    }
    Ok(Value::Int(1))
}

fn sintercard(db: &mut Db, numkeys: &Bytes, rest: &[Bytes]) -> Result<Value, Value> {
    let n = match int_arg(numkeys) {
        Some(n) if n > 0 => usize::try_from(n).unwrap_or(usize::MAX),
        _ => return Err(Value::err("ERR numkeys should be greater than 0")),
    };
    if n > rest.len() {
        return Err(Value::err(
            "ERR Number of keys can't be greater than number of args",
        ));
    }
    let (keys, mut opts) = rest.split_at(n);
    let mut limit = 0usize;
    while let Some((opt, tail)) = opts.split_first() {
        match tail.split_first() {
            Some((l, tail)) if eq(opt, "limit") => {
                limit = match int_arg(l) {
                    Some(l) if l >= 0 => usize::try_from(l).unwrap_or(usize::MAX),
                    _ => return Err(Value::err("ERR LIMIT can't be negative")),
                };
                opts = tail;
            }
            _ => return Err(syntax_error()),
        }
    }
    let sets = sets_at(db, keys)?;
    let Some(present) = sets.into_iter().collect::<Option<Vec<_>>>() else {
        return Ok(Value::Int(0));
    };
    let Some(smallest) = present.iter().min_by_key(|s| s.len()) else {
        return Ok(Value::Int(0));
    };
    let mut n = 0usize;
    for m in smallest.iter() {
        if present.iter().all(|s| s.contains(m)) {
            n += 1;
            if n == limit {
                break;
            }
        }
    }
    Ok(Value::Int(n as i64))
}

/// `SSCAN key cursor [MATCH pattern] [COUNT n]`: every matching member in one page, cursor 0.
fn sscan(db: &mut Db, k: &Bytes, cursor: &Bytes, opts: &[Bytes]) -> Result<Value, Value> {
    let cursor = std::str::from_utf8(cursor)
        .ok()
        .and_then(|c| c.parse::<u64>().ok())
        .ok_or_else(|| Value::err("ERR invalid cursor"))?;
    let page = |members: Vec<Value>| Value::Array(vec![Value::bulk("0"), Value::Array(members)]);
    let Some(s) = set_ref(db, k)? else {
        return Ok(page(vec![]));
    };
    let mut pattern: Option<&Bytes> = None;
    let mut i = 0;
    while i < opts.len() {
        match opts.get(i + 1) {
            Some(n) if eq(&opts[i], "count") => match int_arg(n) {
                Some(c) if c >= 1 => {}
                Some(_) => return Err(syntax_error()),
                None => return Err(not_int()),
            },
            Some(p) if eq(&opts[i], "match") => pattern = Some(p),
            _ => return Err(syntax_error()),
        }
        i += 2;
    }
    // This store hands out no cursor but 0, so any other starts past the end.
    if cursor != 0 {
        return Ok(page(vec![]));
    }
    Ok(page(listed(
        s.iter()
            .filter(|m| pattern.is_none_or(|p| glob_match(p, m))),
    )))
}

/// Members as Redis 7.0 lists them (see the module docs).
fn listed<'a>(members: impl Iterator<Item = &'a Bytes>) -> Vec<Value> {
    let mut members: Vec<&Bytes> = members.collect();
    let ints: Option<Vec<i64>> = if members.len() <= INTSET_MAX {
        members.iter().map(|m| int_arg(m)).collect()
    } else {
        None
    };
    match ints {
        Some(mut ints) => {
            ints.sort_unstable();
            ints.into_iter()
                .map(|i| Value::bulk(i.to_string()))
                .collect()
        }
        None => {
            members.sort();
            members.into_iter().cloned().map(Value::Bulk).collect()
        }
    }
}

/// The sets at `keys` (`None` for a missing key); `WRONGTYPE` if any holds another type.
fn sets_at<'a>(db: &'a mut Db, keys: &[Bytes]) -> Result<Vec<Option<&'a HashSet<Bytes>>>, Value> {
    for k in keys {
        if keys::live(db, k).is_some_and(|e| !matches!(e.data, Data::Set(_))) {
            return Err(wrong_type());
        }
    }
    Ok(keys
        .iter()
        .map(|k| match db.keys.get(k) {
            Some(Entry {
                data: Data::Set(s), ..
            }) => Some(s),
            _ => None,
        })
        .collect())
}

fn set_ref<'a>(db: &'a mut Db, key: &Bytes) -> Result<Option<&'a HashSet<Bytes>>, Value> {
    set_mut(db, key, false).map(|s| s.map(|s| &*s))
}

/// The set at `key`, created empty when `create` is set and it does not exist.
fn set_mut<'a>(
    db: &'a mut Db,
    key: &Bytes,
    create: bool,
) -> Result<Option<&'a mut HashSet<Bytes>>, Value> {
    collection_mut(
        db,
        key,
        create,
        || Data::Set(HashSet::new()),
        |data| match data {
            Data::Set(v) => Some(v),
            _ => None,
        },
    )
}
