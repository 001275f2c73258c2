//! Connection and server commands: `PING`, `ECHO`, `HELLO`, `AUTH`, `SELECT`, `CLIENT ...`,
//! `RESET`, `QUIT`, `INFO`, `COMMAND`, `DBSIZE`, `FLUSHDB`, `FLUSHALL`, `TIME`.
//!
//! They act on the session (its protocol, name and database) or on the store as a whole, and
//! are answered even while a RESP2 client is subscribed.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;

use super::{
    eq, int_arg, not_int, one, wrong_args, Family, Reply, Run, Session, StoreInner, DATABASES,
};
use crate::sim::resp::Value;

pub(super) const FAMILY: Family = Family {
    commands: &[
        ("ping", -1),
        ("echo", 2),
        ("hello", -1),
        ("auth", -2),
        ("select", 2),
        ("client", -2),
        ("reset", 1),
        ("quit", -1),
        ("info", -1),
        ("command", -1),
        ("dbsize", 1),
        ("flushdb", -1),
        ("flushall", -1),
        ("time", 1),
    ],
    run: Run::Session(run),
};

fn run(s: &mut Session, inner: &mut StoreInner, name: &str, a: &[Bytes]) -> Reply {
    match name {
        "ping" => match a.len() {
            0 if s.subscribed() && !s.resp3 => {
                one(Value::Array(vec![Value::bulk("pong"), Value::bulk("")]))
            }
            0 => one(Value::Simple("PONG".into())),
            1 => one(Value::Bulk(a[0].clone())),
            _ => one(wrong_args("ping")),
        },
        "echo" => match a {
            [m] => one(Value::Bulk(m.clone())),
            _ => one(wrong_args("echo")),
        },
        "hello" => s.hello(a),
        "auth" => match a.len() {
            1 | 2 => one(Value::ok()),
            _ => one(wrong_args("auth")),
        },
        "select" => match a {
            [db] => match int_arg(db) {
                Some(i) if (0..DATABASES as i64).contains(&i) => {
                    s.db = i as usize;
                    one(Value::ok())
                }
                Some(_) => one(Value::err("ERR DB index is out of range")),
                None => one(not_int()),
            },
            _ => one(wrong_args("select")),
        },
        "client" => s.client(a),
        "reset" => {
            s.leave(inner);
            s.db = 0;
            s.resp3 = false;
            s.name = None;
            one(Value::Simple("RESET".into()))
        }
        "quit" => one(Value::ok()),
        "info" => one(Value::bulk(
            "# Server\r\nredis_version:7.2.0\r\nredis_mode:standalone\r\nserver_name:redis-handoff-sim\r\n",
        )),
        "command" => one(Value::Array(vec![])),
        "dbsize" => {
            let now = Instant::now();
            let db = inner.db(s.db);
            let live = db
                .keys
                .values()
                .filter(|e| e.expires.is_none_or(|t| t > now))
                .count();
            one(Value::Int(live as i64))
        }
        "flushdb" => {
            flush(inner, s.db);
            one(Value::ok())
        }
        "flushall" => {
            for i in 0..DATABASES {
                flush(inner, i);
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
        _ => one(wrong_args(name)),
    }
}

/// Empties database `i`; every key it held counts as changed (for `WATCH`).
fn flush(inner: &mut StoreInner, i: usize) {
    let db = inner.db(i);
    let keys: Vec<Bytes> = db.keys.drain().map(|(k, _)| k).collect();
    db.touched.extend(keys);
}

// ===== impl Session =====

impl Session {
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
            return one(wrong_args("client"));
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
}
