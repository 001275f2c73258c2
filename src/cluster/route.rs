//! Where a command goes in a cluster: the slot of its keys, any primary, or every primary.
//!
//! The key positions come from what the crate knows of the commands, not from `COMMAND INFO`
//! or `COMMAND GETKEYS` (a round trip per command, or a table read from the server at start):
//!
//! | commands | keys |
//! |---|---|
//! | most (`GET`, `SET`, `HSET`, `INCR`, `LPUSH`, `XADD`, ...) and any command not listed | the first argument |
//! | `MGET`, `DEL`, `UNLINK`, `EXISTS`, `TOUCH`, `SUNION`, `SINTER`, `SDIFF` and their `STORE` forms, `PFCOUNT`, `PFMERGE`, `SSUBSCRIBE`, `SUNSUBSCRIBE` | every argument |
//! | `RENAME`, `RENAMENX`, `RPOPLPUSH`, `LMOVE`, `BLMOVE`, `BRPOPLPUSH`, `SMOVE`, `COPY`, `LCS`, `ZRANGESTORE`, `GEOSEARCHSTORE` | the first two |
//! | `MSET`, `MSETNX` | every other argument |
//! | `BLPOP`, `BRPOP`, `BZPOPMIN`, `BZPOPMAX` | all but the timeout |
//! | `EVAL`, `EVALSHA`, `FCALL` (and `_RO`), `BLMPOP`, `BZMPOP`, `ZUNIONSTORE`, `ZINTERSTORE`, `ZDIFFSTORE` | the `numkeys` keys (and the destination) |
//! | `ZUNION`, `ZINTER`, `ZDIFF`, `SINTERCARD`, `ZINTERCARD`, `LMPOP`, `ZMPOP` | the `numkeys` keys |
//! | `XREAD`, `XREADGROUP` | the streams after `STREAMS` |
//! | `BITOP` | the destination and the sources |
//! | `OBJECT`, `MEMORY USAGE`, `XINFO`, `XGROUP` | the argument after the subcommand |
//!
//! A command whose keys hash to more than one slot is refused before anything is sent
//! ([`Error::CrossSlot`]): Redis would answer `CROSSSLOT`, and splitting it across nodes would
//! quietly lose its atomicity (`MSET`, `RENAME`) or change its reply. Put such keys in one slot
//! with a hash tag, or send single-key commands in a [`Pipeline`](crate::Pipeline), which the
//! cluster splits by node.
//!
//! Commands without keys (`PING`, `INFO`, `TIME`, `CLUSTER ...`, a script with no keys) go to
//! any primary; `SUBSCRIBE`, `PSUBSCRIBE` and their unsubscribes to the primary that holds the
//! cluster's classic subscriptions ([Classic Pub/Sub](super#classic-pubsub)). `PUBLISH` goes to the node of its channel's slot, as if the channel were a key:
//! the cluster passes it on to every node from any of them, but a channel's messages keep
//! their order only when they enter at the same node. Those that change every node go to every primary, and their replies
//! are combined: `FLUSHALL`, `FLUSHDB`, `SCRIPT FLUSH`, `FUNCTION DELETE|FLUSH|RESTORE`,
//! `CONFIG SET|RESETSTAT|REWRITE` answer the first reply when every primary agreed, or the
//! first error; `SCRIPT LOAD` and `FUNCTION LOAD` answer the name every primary gave;
//! `DBSIZE` answers the sum and `KEYS` the concatenation over the primaries.
//!
//! `SCAN` is refused: its cursor belongs to one node, and a cursor from one node sent to
//! another starts over or skips keys. Scan each primary on its own stack, from
//! [`Cluster::primaries`](super::Cluster::primaries).
//!
//! # Reads a replica may serve
//! With a [`ReadFrom`](super::ReadFrom) other than `Primary`, these commands may go to a
//! replica of their slot's shard (they only read, and Redis runs them on a `READONLY`
//! replica); every other command goes to the primary:
//!
//! | kind | commands |
//! |---|---|
//! | strings, bits | `GET`, `MGET`, `STRLEN`, `GETRANGE`, `SUBSTR`, `LCS`, `GETBIT`, `BITCOUNT`, `BITPOS`, `BITFIELD_RO` |
//! | keys | `EXISTS`, `TYPE`, `TTL`, `PTTL`, `EXPIRETIME`, `PEXPIRETIME`, `DUMP`, `TOUCH`, `SORT_RO`, `OBJECT ...`, `MEMORY USAGE` |
//! | hashes | `HGET`, `HMGET`, `HGETALL`, `HKEYS`, `HVALS`, `HLEN`, `HEXISTS`, `HSTRLEN`, `HRANDFIELD` |
//! | lists | `LRANGE`, `LLEN`, `LINDEX`, `LPOS` |
//! | sets | `SMEMBERS`, `SISMEMBER`, `SMISMEMBER`, `SCARD`, `SRANDMEMBER`, `SINTER`, `SUNION`, `SDIFF`, `SINTERCARD` |
//! | sorted sets | `ZRANGE`, `ZRANGEBYSCORE`, `ZREVRANGE`, `ZREVRANGEBYSCORE`, `ZRANGEBYLEX`, `ZREVRANGEBYLEX`, `ZSCORE`, `ZMSCORE`, `ZCARD`, `ZCOUNT`, `ZLEXCOUNT`, `ZRANK`, `ZREVRANK`, `ZRANDMEMBER`, `ZINTER`, `ZUNION`, `ZDIFF`, `ZINTERCARD` |
//! | streams | `XRANGE`, `XREVRANGE`, `XLEN`, `XREAD`, `XPENDING`, `XINFO ...` |
//! | geo | `GEOPOS`, `GEODIST`, `GEOHASH`, `GEOSEARCH`, `GEORADIUS_RO`, `GEORADIUSBYMEMBER_RO` |
//! | scripts | `EVAL_RO`, `EVALSHA_RO`, `FCALL_RO` |
//!
//! Not in the list on purpose: `HSCAN`, `SSCAN`, `ZSCAN` (a cursor belongs to one node's table,
//! and the next call may go to another node), `PFCOUNT` (it may write its cached count), and
//! commands without keys (they go to a primary).

use crate::command::Command;
use crate::error::Error;

use super::slot::key_slot;

/// Where a command goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Route {
    /// The node that serves this slot.
    Slot(u16),
    /// Any primary.
    Any,
    /// The node that holds the cluster's classic Pub/Sub subscriptions.
    PubSub,
    /// Every primary, the replies combined.
    All(Combine),
}

/// How the replies of a command sent to every primary become one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Combine {
    /// The first reply when none is an error, else the first error.
    Agree,
    /// The sum of the integer replies.
    Sum,
    /// The arrays, one after the other.
    Concat,
}

/// Where `command` goes, or why it is refused before sending.
pub(crate) fn route(command: &Command) -> Result<Route, Error> {
    let Some(name) = command.upper_name() else {
        // A name too long for any known command: its first argument is its key, if any.
        return Ok(first_key(command));
    };
    let argc = command.args().len();
    let sub = |i: usize| {
        command
            .arg_at(i)
            .map(|a| a.to_ascii_uppercase())
            .unwrap_or_default()
    };
    let spec = match name.as_str() {
        "PING" | "ECHO" | "INFO" | "TIME" | "LASTSAVE" | "LOLWUT" | "RANDOMKEY" | "COMMAND"
        | "CLUSTER" | "CLIENT" | "ACL" | "SLOWLOG" | "LATENCY" | "MODULE" | "ROLE" | "SAVE"
        | "BGSAVE" | "BGREWRITEAOF" | "PUBSUB" | "WAIT" | "WAITAOF" | "DEBUG" | "SWAPDB"
        | "SHUTDOWN" | "FAILOVER" | "REPLICAOF" | "SLAVEOF" => return Ok(Route::Any),
        "SUBSCRIBE" | "PSUBSCRIBE" | "UNSUBSCRIBE" | "PUNSUBSCRIBE" => return Ok(Route::PubSub),
        // Any node would do (the cluster passes it on to every node), but one channel's
        // messages keep their order only when they all enter the cluster at the same node.
        "PUBLISH" => return Ok(first_key(command)),
        "FLUSHALL" | "FLUSHDB" => return Ok(Route::All(Combine::Agree)),
        "DBSIZE" => return Ok(Route::All(Combine::Sum)),
        "KEYS" => return Ok(Route::All(Combine::Concat)),
        "SCAN" => {
            return Err(Error::Refused {
                command: "SCAN".into(),
                reason: "a SCAN cursor belongs to one node of the cluster: scan each primary \
                         on its own stack, from `Cluster::primaries()`",
            })
        }
        "SCRIPT" => {
            return Ok(match &sub(1)[..] {
                b"LOAD" | b"FLUSH" => Route::All(Combine::Agree),
                _ => Route::Any,
            })
        }
        "FUNCTION" => {
            return Ok(match &sub(1)[..] {
                b"LOAD" | b"DELETE" | b"FLUSH" | b"RESTORE" => Route::All(Combine::Agree),
                _ => Route::Any,
            })
        }
        "CONFIG" => {
            return Ok(match &sub(1)[..] {
                b"SET" | b"RESETSTAT" | b"REWRITE" => Route::All(Combine::Agree),
                _ => Route::Any,
            })
        }
        "MEMORY" => {
            return Ok(match &sub(1)[..] {
                b"USAGE" => at(command, 2),
                _ => Route::Any,
            })
        }
        "OBJECT" | "XINFO" | "XGROUP" => return Ok(at(command, 2)),
        "MGET" | "DEL" | "UNLINK" | "EXISTS" | "TOUCH" | "SUNION" | "SINTER" | "SDIFF"
        | "SUNIONSTORE" | "SINTERSTORE" | "SDIFFSTORE" | "PFCOUNT" | "PFMERGE" | "SSUBSCRIBE"
        | "SUNSUBSCRIBE" | "WATCH" => Keys::Range(1, argc, 1),
        "RENAME" | "RENAMENX" | "RPOPLPUSH" | "LMOVE" | "BLMOVE" | "BRPOPLPUSH" | "SMOVE"
        | "COPY" | "LCS" | "ZRANGESTORE" | "GEOSEARCHSTORE" => Keys::Range(1, argc.min(3), 1),
        "MSET" | "MSETNX" => Keys::Range(1, argc, 2),
        "BLPOP" | "BRPOP" | "BZPOPMIN" | "BZPOPMAX" => Keys::Range(1, argc.saturating_sub(1), 1),
        "BITOP" => Keys::Range(2, argc, 1),
        "EVAL" | "EVALSHA" | "EVAL_RO" | "EVALSHA_RO" | "FCALL" | "FCALL_RO" | "BLMPOP"
        | "BZMPOP" => Keys::NumKeys { at: 2, dest: None },
        "ZUNIONSTORE" | "ZINTERSTORE" | "ZDIFFSTORE" => Keys::NumKeys {
            at: 2,
            dest: Some(1),
        },
        "ZUNION" | "ZINTER" | "ZDIFF" | "SINTERCARD" | "ZINTERCARD" | "LMPOP" | "ZMPOP" => {
            Keys::NumKeys { at: 1, dest: None }
        }
        "XREAD" | "XREADGROUP" => match command
            .args()
            .position(|a| a.eq_ignore_ascii_case(b"STREAMS"))
        {
            Some(at) => {
                let streams = (argc - at - 1) / 2;
                Keys::Range(at + 1, at + 1 + streams, 1)
            }
            None => Keys::Range(1, argc.min(2), 1),
        },
        _ => return Ok(first_key(command)),
    };
    keys_route(command, spec)
}

/// Whether `command` only reads and a `READONLY` replica runs it; see
/// [the list](self#reads-a-replica-may-serve).
pub(crate) fn replica_may_serve(command: &Command) -> bool {
    let Some(name) = command.upper_name() else {
        return false;
    };
    match name.as_str() {
        "GET"
        | "MGET"
        | "STRLEN"
        | "GETRANGE"
        | "SUBSTR"
        | "LCS"
        | "GETBIT"
        | "BITCOUNT"
        | "BITPOS"
        | "BITFIELD_RO"
        | "EXISTS"
        | "TYPE"
        | "TTL"
        | "PTTL"
        | "EXPIRETIME"
        | "PEXPIRETIME"
        | "DUMP"
        | "TOUCH"
        | "SORT_RO"
        | "OBJECT"
        | "HGET"
        | "HMGET"
        | "HGETALL"
        | "HKEYS"
        | "HVALS"
        | "HLEN"
        | "HEXISTS"
        | "HSTRLEN"
        | "HRANDFIELD"
        | "LRANGE"
        | "LLEN"
        | "LINDEX"
        | "LPOS"
        | "SMEMBERS"
        | "SISMEMBER"
        | "SMISMEMBER"
        | "SCARD"
        | "SRANDMEMBER"
        | "SINTER"
        | "SUNION"
        | "SDIFF"
        | "SINTERCARD"
        | "ZRANGE"
        | "ZRANGEBYSCORE"
        | "ZREVRANGE"
        | "ZREVRANGEBYSCORE"
        | "ZRANGEBYLEX"
        | "ZREVRANGEBYLEX"
        | "ZSCORE"
        | "ZMSCORE"
        | "ZCARD"
        | "ZCOUNT"
        | "ZLEXCOUNT"
        | "ZRANK"
        | "ZREVRANK"
        | "ZRANDMEMBER"
        | "ZINTER"
        | "ZUNION"
        | "ZDIFF"
        | "ZINTERCARD"
        | "XRANGE"
        | "XREVRANGE"
        | "XLEN"
        | "XREAD"
        | "XPENDING"
        | "XINFO"
        | "GEOPOS"
        | "GEODIST"
        | "GEOHASH"
        | "GEOSEARCH"
        | "GEORADIUS_RO"
        | "GEORADIUSBYMEMBER_RO"
        | "EVAL_RO"
        | "EVALSHA_RO"
        | "FCALL_RO" => true,
        "MEMORY" => command
            .arg_at(1)
            .is_some_and(|sub| sub.eq_ignore_ascii_case(b"USAGE")),
        _ => false,
    }
}

/// Which arguments are keys.
enum Keys {
    /// Arguments `from..to`, every `step`th.
    Range(usize, usize, usize),
    /// A count at `at`, that many keys after it, and maybe a destination key before it.
    NumKeys { at: usize, dest: Option<usize> },
}

fn first_key(command: &Command) -> Route {
    at(command, 1)
}

fn at(command: &Command, index: usize) -> Route {
    match command.arg_at(index) {
        Some(key) => Route::Slot(key_slot(key)),
        None => Route::Any,
    }
}

/// The one slot of the keys `spec` names, or [`Error::CrossSlot`].
fn keys_route(command: &Command, spec: Keys) -> Result<Route, Error> {
    let mut slot: Option<u16> = None;
    let mut check = |key: &[u8]| -> Result<(), Error> {
        let s = key_slot(key);
        match slot {
            None => slot = Some(s),
            Some(first) if first != s => {
                return Err(Error::CrossSlot {
                    command: command.name().to_ascii_uppercase().into(),
                    slots: (first, s),
                })
            }
            Some(_) => {}
        }
        Ok(())
    };
    match spec {
        Keys::Range(from, to, step) => {
            for key in command.args().take(to).skip(from).step_by(step.max(1)) {
                check(key)?;
            }
        }
        Keys::NumKeys { at, dest } => {
            if let Some(d) = dest.and_then(|d| command.arg_at(d)) {
                check(d)?;
            }
            let n = command
                .arg_at(at)
                .and_then(|n| std::str::from_utf8(n).ok())
                .and_then(|n| n.parse::<usize>().ok())
                .unwrap_or(0);
            for key in command.args().skip(at + 1).take(n) {
                check(key)?;
            }
        }
    }
    Ok(slot.map_or(Route::Any, Route::Slot))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cmd;

    fn slot(k: &str) -> Route {
        Route::Slot(key_slot(k.as_bytes()))
    }

    #[test]
    fn single_key_commands_go_to_their_keys_slot() {
        assert_eq!(route(&cmd!("GET", "foo")).unwrap(), Route::Slot(12182));
        assert_eq!(route(&cmd!("set", "foo", "1")).unwrap(), Route::Slot(12182));
        assert_eq!(route(&cmd!("HSET", "h", "f", "v")).unwrap(), slot("h"));
        assert_eq!(route(&cmd!("MYMODULE.CMD", "k", "x")).unwrap(), slot("k"));
        assert_eq!(route(&cmd!("OBJECT", "ENCODING", "k")).unwrap(), slot("k"));
        assert_eq!(route(&cmd!("MEMORY", "USAGE", "k")).unwrap(), slot("k"));
        assert_eq!(route(&cmd!("XINFO", "STREAM", "s")).unwrap(), slot("s"));
    }

    #[test]
    fn multi_key_commands_on_one_slot_and_across_slots() {
        assert_eq!(
            route(&cmd!("MGET", "{u}a", "{u}b", "{u}c")).unwrap(),
            slot("u")
        );
        let err = route(&cmd!("MGET", "a", "b")).unwrap_err();
        match &err {
            Error::CrossSlot { command, slots } => {
                assert_eq!(&**command, "MGET");
                assert_eq!(*slots, (key_slot(b"a"), key_slot(b"b")));
            }
            other => panic!("{other:?}"),
        }
        assert!(err.certainly_not_executed());
        assert!(route(&cmd!("MSET", "{u}a", "1", "{u}b", "2")).is_ok());
        assert!(route(&cmd!("MSET", "a", "1", "b", "2")).is_err());
        // The values of MSET are not keys.
        assert_eq!(
            route(&cmd!("MSET", "foo", "a", "{foo}x", "b")).unwrap(),
            slot("foo")
        );
        assert!(route(&cmd!("BLPOP", "{q}1", "{q}2", 0)).is_ok());
        assert!(route(&cmd!("BLPOP", "q1", "q2", 0)).is_err());
        assert!(route(&cmd!("RENAME", "a", "b")).is_err());
        assert!(route(&cmd!("LMOVE", "{l}a", "{l}b", "LEFT", "RIGHT")).is_ok());
    }

    #[test]
    fn numkeys_and_streams() {
        assert_eq!(route(&cmd!("EVAL", "return 1", 0)).unwrap(), Route::Any);
        assert_eq!(
            route(&cmd!("EVAL", "return 1", 2, "{a}1", "{a}2", "arg")).unwrap(),
            slot("a")
        );
        assert!(route(&cmd!("EVALSHA", "abc", 2, "x", "y")).is_err());
        assert!(route(&cmd!("ZUNIONSTORE", "{z}d", 2, "{z}a", "{z}b")).is_ok());
        assert!(route(&cmd!("ZUNIONSTORE", "d", 2, "{z}a", "{z}b")).is_err());
        assert_eq!(
            route(&cmd!("ZUNION", 1, "z", "WITHSCORES")).unwrap(),
            slot("z")
        );
        assert_eq!(
            route(&cmd!(
                "XREAD", "COUNT", 2, "STREAMS", "{s}1", "{s}2", "0", "0"
            ))
            .unwrap(),
            slot("s")
        );
        assert!(route(&cmd!("XREAD", "STREAMS", "s1", "s2", "0", "0")).is_err());
        // A count larger than the arguments reads what is there.
        assert_eq!(route(&cmd!("EVAL", "s", 9, "k")).unwrap(), slot("k"));
    }

    #[test]
    fn only_reads_may_go_to_a_replica() {
        for c in [
            cmd!("GET", "k"),
            cmd!("get", "k"),
            cmd!("MGET", "{u}a", "{u}b"),
            cmd!("HGETALL", "h"),
            cmd!("ZRANGE", "z", 0, -1),
            cmd!("XREAD", "STREAMS", "s", "0"),
            cmd!("MEMORY", "usage", "k"),
            cmd!("EVAL_RO", "return 1", 1, "k"),
        ] {
            assert!(replica_may_serve(&c), "{c:?}");
        }
        for c in [
            cmd!("SET", "k", "v"),
            cmd!("INCR", "k"),
            cmd!("GETDEL", "k"),
            cmd!("GETEX", "k"),
            cmd!("EVAL", "return 1", 1, "k"),
            cmd!("XREADGROUP", "GROUP", "g", "c", "STREAMS", "s", ">"),
            cmd!("HSCAN", "h", 0),
            cmd!("PFCOUNT", "p"),
            cmd!("MEMORY", "STATS"),
            cmd!("MYMODULE.GET", "k"),
        ] {
            assert!(!replica_may_serve(&c), "{c:?}");
        }
    }

    #[test]
    fn keyless_and_fan_out_commands() {
        assert_eq!(route(&cmd!("PING")).unwrap(), Route::Any);
        assert_eq!(route(&cmd!("CLUSTER", "INFO")).unwrap(), Route::Any);
        assert_eq!(route(&cmd!("GET")).unwrap(), Route::Any);
        assert_eq!(
            route(&cmd!("FLUSHALL")).unwrap(),
            Route::All(Combine::Agree)
        );
        assert_eq!(route(&cmd!("DBSIZE")).unwrap(), Route::All(Combine::Sum));
        assert_eq!(
            route(&cmd!("KEYS", "*")).unwrap(),
            Route::All(Combine::Concat)
        );
        assert_eq!(
            route(&cmd!("SCRIPT", "load", "return 1")).unwrap(),
            Route::All(Combine::Agree)
        );
        assert_eq!(route(&cmd!("SCRIPT", "EXISTS", "abc")).unwrap(), Route::Any);
        assert_eq!(
            route(&cmd!("CONFIG", "SET", "x", "y")).unwrap(),
            Route::All(Combine::Agree)
        );
        assert_eq!(route(&cmd!("CONFIG", "GET", "x")).unwrap(), Route::Any);
        assert!(matches!(
            route(&cmd!("SCAN", 0)),
            Err(Error::Refused { .. })
        ));
        assert_eq!(route(&cmd!("SUBSCRIBE", "c")).unwrap(), Route::PubSub);
        assert_eq!(route(&cmd!("PUBLISH", "c", "m")).unwrap(), slot("c"));
        assert_eq!(route(&cmd!("SSUBSCRIBE", "c")).unwrap(), slot("c"));
        // The message of SPUBLISH is no key.
        assert_eq!(route(&cmd!("SPUBLISH", "c", "hello")).unwrap(), slot("c"));
    }
}
