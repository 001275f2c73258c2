//! Benchmark settings read from the environment, remembering which were set so that the report
//! can print the command that reproduces the run.
//! Shared by the benches with `#[path = "support/env.rs"] mod env;`; each uses a part of it.
#![allow(dead_code)]

use std::error::Error as StdError;
use std::fmt::Write as _;
use std::time::Duration;

type BoxError = Box<dyn StdError + Send + Sync>;
type Result<T, E = BoxError> = std::result::Result<T, E>;

/// The environment variables a bench read, and those of them that were set.
#[derive(Default)]
pub(crate) struct Env {
    given: Vec<(&'static str, String)>,
}

impl Env {
    /// The variable's value, when it is set and not blank.
    pub(crate) fn var(&mut self, name: &'static str) -> Option<String> {
        let v = std::env::var(name).ok().filter(|v| !v.trim().is_empty())?;
        self.given.push((name, v.clone()));
        Some(v)
    }

    /// A finite, non-negative number; `default` when unset.
    pub(crate) fn number(&mut self, name: &'static str, default: f64) -> Result<f64> {
        let Some(v) = self.var(name) else {
            return Ok(default);
        };
        match v.trim().parse::<f64>() {
            Ok(x) if x.is_finite() && x >= 0.0 => Ok(x),
            _ => Err(format!("{name}={v:?} is not a non-negative number").into()),
        }
    }

    /// A number of seconds; `default` when unset.
    pub(crate) fn secs(&mut self, name: &'static str, default: f64) -> Result<Duration> {
        Ok(Duration::from_secs_f64(self.number(name, default)?))
    }

    /// A count of at least one; `default` when unset.
    pub(crate) fn count(&mut self, name: &'static str, default: usize) -> Result<usize> {
        let Some(v) = self.var(name) else {
            return Ok(default);
        };
        match v.trim().parse::<usize>() {
            Ok(n) if n > 0 => Ok(n),
            _ => Err(format!("{name}={v:?} is not a positive count").into()),
        }
    }

    /// The command that reruns `cargo bench --bench <bench>` with the variables that were set.
    pub(crate) fn command_line(&self, bench: &str) -> String {
        let mut s = String::new();
        for (k, v) in &self.given {
            let _ = write!(s, "{k}={v} ");
        }
        let _ = write!(s, "cargo bench --bench {bench}");
        s
    }
}
