//! Requests: what every service of the crate accepts. A [`Command`], a [`Pipeline`] of
//! commands, or a [`Transaction`].
//!
//! Every layer is a `tower::Service<R>` for any `R: Request`, so a pipeline or a transaction
//! goes through the same `ServiceBuilder` stack as a single command, and each layer treats it
//! as **one unit**: one timeout budget, one circuit-breaker call, one metrics entry (under the
//! name `PIPELINE` or `TRANSACTION`, with its size), one decision whether to send it again.
//!
//! - A [`Pipeline`] is a batch: its commands are written together, in order, with nothing else
//!   in between, and its replies come back together as a `Vec<Result<Reply, Error>>`, one per
//!   command in the same order; a server error is that command's own. Through a handoff a
//!   pipeline goes whole to one connection, so its order holds on the server.
//! - A [`Transaction`] is `MULTI`, its commands and `EXEC`, written as one so that no other
//!   caller's command can fall inside it. Its reply is the list of its commands' results. If
//!   the server refuses a command while queueing it, the transaction is discarded and the error
//!   ([`Error::TransactionDiscarded`]) says which commands and why; nothing ran.
//!
//! ```no_run
//! use redis_handoff::{cmd, Pipeline, Stack, Transaction};
//! use tower::ServiceExt;
//!
//! # async fn run() -> Result<(), redis_handoff::Error> {
//! let redis = Stack::connect("redis://127.0.0.1:6379").await?;
//!
//! let replies = redis
//!     .clone()
//!     .oneshot(Pipeline::new().cmd(cmd!("SET", "a", 1)).cmd(cmd!("INCR", "a")))
//!     .await?;
//! assert_eq!(replies[1].as_ref().ok().and_then(|r| r.as_i64()), Some(2));
//!
//! let results = redis
//!     .oneshot(
//!         Transaction::new()
//!             .cmd(cmd!("DECRBY", "account:a", 10))
//!             .cmd(cmd!("INCRBY", "account:b", 10)),
//!     )
//!     .await?;
//! assert_eq!(results.len(), 2);
//! # Ok(()) }
//! ```

use std::time::Duration;

use bytes::BytesMut;
use redis_protocol::resp3::types::BytesFrame;
use tokio::sync::oneshot;

use crate::command::{Block, Command};
use crate::connection::{Answer, BatchAnswer, Failed, Job};
use crate::error::{Error, Execution, ServerError};
use crate::handoff::ResendPolicy;
use crate::reply::{self, Reply};

/// Something a service of this crate sends: a [`Command`], a [`Pipeline`] or a [`Transaction`].
///
/// Sealed: the connection knows how to write and answer exactly these three. Write generic
/// layers of your own over `R: Request` to treat them alike.
pub trait Request: wire::Wire {
    /// What the request answers: a [`Reply`] for a command; one result per command for a
    /// pipeline or a transaction.
    type Response: Send + 'static;

    /// The name it is recorded under: the command's name, or `PIPELINE` / `TRANSACTION`.
    fn name(&self) -> &str;

    /// How many commands it holds (1 for a command).
    fn len(&self) -> usize;

    /// Whether it holds no command (an empty pipeline, answered at once with no reply).
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How long it may block on the server, beyond a normal command's time: the sum of its
    /// blocking commands' block times, or [`Block::Forever`] if one blocks forever. Commands
    /// inside a transaction never block (Redis runs them without waiting), so a transaction has
    /// none.
    fn blocking(&self) -> Option<Block>;

    /// The command, when the request is a single one.
    fn as_command(&self) -> Option<&Command>;
}

pub(crate) mod wire {
    use super::*;

    /// How a request is written and answered on a connection. Not nameable outside the crate.
    pub trait Wire: Send + Sized + 'static {
        /// What the connection's task sends back.
        type Raw: Send + 'static;

        /// Refuses the request before anything is written, if it cannot go on a connection
        /// (`dedicated` says whether one caller owns it).
        fn check(&self, dedicated: bool) -> Result<(), Error>;

        /// The job for the connection's task; the answer goes to `reply`.
        fn into_job(self, reply: oneshot::Sender<Self::Raw>) -> Job;

        /// Turns the task's answer into the caller's.
        fn finish(raw: Self::Raw) -> Result<<Self as Request>::Response, Failed<Self>>
        where
            Self: Request;

        /// The answer when no I/O is needed (an empty pipeline).
        fn immediate(&self) -> Option<Self::Raw> {
            None
        }

        /// The answer when the connection's task is gone without answering.
        fn lost(error: Error) -> Self::Raw;

        /// The raw answer of a request answered without being sent (a command's reply).
        fn local(reply: Reply) -> Self::Raw;

        /// The commands it writes, `MULTI` and `EXEC` aside.
        fn parts(&self) -> &[Command];

        /// Whether it is a transaction (`MULTI` ... `EXEC`).
        fn is_transaction(&self) -> bool {
            false
        }

        /// Whether it is sent again on the next connection after the one it went to ended
        /// under it with `error`.
        fn resend(&self, error: &Error, policy: &dyn ResendPolicy) -> bool;

        /// What a cluster makes of it: one command, a pipeline or a transaction.
        fn into_cluster(self) -> ClusterRequest;

        /// The caller's answer from what the cluster answered.
        fn from_cluster(answer: ClusterAnswer) -> Result<<Self as Request>::Response, Error>
        where
            Self: Request;
    }

    /// A request as the cluster routes it.
    #[derive(Debug)]
    pub enum ClusterRequest {
        /// One command.
        Command(Command),
        /// A pipeline's commands.
        Pipeline(Vec<Command>),
        /// A transaction's commands.
        Transaction(Vec<Command>),
        /// A request only the crate makes, never sent through a cluster.
        Internal(&'static str),
    }

    /// What the cluster answers.
    #[derive(Debug)]
    pub enum ClusterAnswer {
        /// A command's reply.
        One(Reply),
        /// A pipeline's or a transaction's results.
        Many(Vec<Result<Reply, Error>>),
    }

    /// The commands of a pipeline or a transaction, as the connection's task sees them.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct Batch {
        pub(crate) commands: Vec<Command>,
        /// Wrapped in `MULTI` ... `EXEC`.
        pub(crate) atomic: bool,
        /// Preceded by `ASKING` (a cluster's redirect during a slot migration; see
        /// `Asking`).
        pub(crate) asking: bool,
    }

    impl Batch {
        /// How many reply frames the server sends for it.
        pub(crate) fn frames(&self) -> usize {
            self.commands.len() + if self.atomic { 2 } else { 0 } + usize::from(self.asking)
        }

        /// Writes it in RESP to `out`.
        pub(crate) fn encode(&self, out: &mut BytesMut) {
            if self.asking {
                out.extend_from_slice(ASKING);
            }
            if self.atomic {
                out.extend_from_slice(b"*1\r\n$5\r\nMULTI\r\n");
            }
            for c in &self.commands {
                c.encode(out);
            }
            if self.atomic {
                out.extend_from_slice(b"*1\r\n$4\r\nEXEC\r\n");
            }
        }
    }
}

pub(crate) use wire::{Batch, ClusterAnswer, ClusterRequest};

/// `ASKING` as written on the wire.
pub(crate) const ASKING: &[u8] = b"*1\r\n$6\r\nASKING\r\n";

// ===== Command =====

impl wire::Wire for Command {
    type Raw = Answer;

    #[inline]
    fn check(&self, dedicated: bool) -> Result<(), Error> {
        check_state(self, dedicated)
    }

    #[inline]
    fn into_job(self, reply: oneshot::Sender<Answer>) -> Job {
        Job::One {
            command: self,
            reply,
            expiry: None,
            asking: false,
        }
    }

    #[inline]
    fn finish(raw: Answer) -> Result<Reply, Failed<Command>> {
        raw
    }

    fn lost(error: Error) -> Answer {
        Err(Failed::from(error))
    }

    fn local(reply: Reply) -> Answer {
        Ok(reply)
    }

    fn parts(&self) -> &[Command] {
        std::slice::from_ref(self)
    }

    fn resend(&self, error: &Error, policy: &dyn ResendPolicy) -> bool {
        policy.resend(self, error)
    }

    fn into_cluster(self) -> ClusterRequest {
        ClusterRequest::Command(self)
    }

    fn from_cluster(answer: ClusterAnswer) -> Result<Reply, Error> {
        match answer {
            ClusterAnswer::One(reply) => Ok(reply),
            ClusterAnswer::Many(_) => Err(Error::protocol(
                "the cluster answered a command with a list of results",
            )),
        }
    }
}

impl Request for Command {
    type Response = Reply;

    fn name(&self) -> &str {
        Command::name(self)
    }

    fn len(&self) -> usize {
        1
    }

    #[inline]
    fn blocking(&self) -> Option<Block> {
        Command::blocking(self)
    }

    fn as_command(&self) -> Option<&Command> {
        Some(self)
    }
}

/// Refuses a connection-state command on a shared connection, and those no connection takes.
#[inline]
fn check_state(command: &Command, dedicated: bool) -> Result<(), Error> {
    match command.state_change() {
        Some(state) if !(dedicated && state.allowed_on_dedicated()) => Err(Error::Refused {
            command: refused_name(command).into(),
            reason: state.advice(),
        }),
        _ => Ok(()),
    }
}

/// The name of a refused command for its error: `CLIENT REPLY`, `MULTI`.
fn refused_name(command: &Command) -> String {
    let mut name = command.name().to_ascii_uppercase();
    if name == "CLIENT" {
        if let Some(sub) = command.arg_at(1) {
            name.push(' ');
            name.push_str(&String::from_utf8_lossy(sub).to_ascii_uppercase());
        }
    }
    name
}

// ===== batches =====

fn batch_lost(error: Error) -> BatchAnswer {
    Err(Failed::from(error))
}

/// The builder methods pipelines and transactions share.
macro_rules! batch_builder {
    ($t:ident, $what:literal) => {
        impl $t {
            #[doc = concat!("An empty ", $what, ".")]
            pub fn new() -> Self {
                $t::default()
            }

            #[doc = concat!("An empty ", $what, " with room for `n` commands.")]
            pub fn with_capacity(n: usize) -> Self {
                $t {
                    batch: Vec::with_capacity(n),
                }
            }

            /// Adds a command at the end.
            #[must_use]
            pub fn cmd(mut self, command: Command) -> Self {
                self.batch.push(command);
                self
            }

            /// Adds a command at the end, in place.
            pub fn push(&mut self, command: Command) {
                self.batch.push(command);
            }

            /// The commands, in order (a transaction's without its `MULTI` and `EXEC`).
            pub fn commands(&self) -> &[Command] {
                &self.batch
            }

            /// The commands, by value.
            pub fn into_commands(self) -> Vec<Command> {
                self.batch
            }
        }

        impl FromIterator<Command> for $t {
            fn from_iter<I: IntoIterator<Item = Command>>(iter: I) -> Self {
                $t {
                    batch: iter.into_iter().collect(),
                }
            }
        }

        impl Extend<Command> for $t {
            fn extend<I: IntoIterator<Item = Command>>(&mut self, iter: I) {
                self.batch.extend(iter);
            }
        }
    };
}

/// A batch of commands written together, in order, and answered together; see the
/// [module docs](self).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pipeline {
    batch: Vec<Command>,
}

batch_builder!(Pipeline, "pipeline");

impl wire::Wire for Pipeline {
    type Raw = BatchAnswer;

    fn check(&self, dedicated: bool) -> Result<(), Error> {
        check_commands(&self.batch, false, dedicated)
    }

    fn into_job(self, reply: oneshot::Sender<BatchAnswer>) -> Job {
        Job::Batch {
            batch: Batch {
                commands: self.batch,
                atomic: false,
                asking: false,
            },
            reply,
            expiry: None,
        }
    }

    fn finish(raw: BatchAnswer) -> Result<Vec<Result<Reply, Error>>, Failed<Pipeline>> {
        match raw {
            Ok(frames) => Ok(frames.into_iter().map(reply::from_frame).collect()),
            Err(failed) => Err(failed.map(|b| Pipeline { batch: b.commands })),
        }
    }

    fn immediate(&self) -> Option<BatchAnswer> {
        self.batch.is_empty().then(|| Ok(Vec::new()))
    }

    fn lost(error: Error) -> BatchAnswer {
        batch_lost(error)
    }

    fn local(reply: Reply) -> BatchAnswer {
        Ok(vec![reply.into_frame()])
    }

    fn parts(&self) -> &[Command] {
        &self.batch
    }

    /// Whole or not at all, on one connection, so its order holds: when none of it ran, or
    /// when the policy would send every one of its commands again.
    fn resend(&self, error: &Error, policy: &dyn ResendPolicy) -> bool {
        match error.execution() {
            Execution::NotRun => true,
            Execution::MayHaveRun => self.batch.iter().all(|c| policy.resend(c, error)),
            _ => false,
        }
    }

    fn into_cluster(self) -> ClusterRequest {
        ClusterRequest::Pipeline(self.batch)
    }

    fn from_cluster(answer: ClusterAnswer) -> Result<Vec<Result<Reply, Error>>, Error> {
        many(answer)
    }
}

/// A pipeline's or a transaction's results from a cluster's answer.
fn many(answer: ClusterAnswer) -> Result<Vec<Result<Reply, Error>>, Error> {
    match answer {
        ClusterAnswer::Many(results) => Ok(results),
        ClusterAnswer::One(_) => Err(Error::protocol(
            "the cluster answered a batch with a single reply",
        )),
    }
}

impl Request for Pipeline {
    type Response = Vec<Result<Reply, Error>>;

    fn name(&self) -> &str {
        "PIPELINE"
    }

    fn len(&self) -> usize {
        self.batch.len()
    }

    fn blocking(&self) -> Option<Block> {
        let mut total: Option<Duration> = None;
        for c in &self.batch {
            match c.blocking() {
                None => {}
                Some(Block::Forever) => return Some(Block::Forever),
                Some(Block::For(d)) => total = Some(total.unwrap_or_default().saturating_add(d)),
            }
        }
        total.map(Block::For)
    }

    fn as_command(&self) -> Option<&Command> {
        None
    }
}

/// `MULTI`, commands, `EXEC`, written as one so that nothing else can fall inside; see the
/// [module docs](self).
///
/// To read before writing under a `WATCH`, use a dedicated connection and its `watch` helper:
/// a shared connection refuses `WATCH`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Transaction {
    batch: Vec<Command>,
}

batch_builder!(Transaction, "transaction");

/// Refuses what cannot go inside a pipeline or transaction, before anything is written.
fn check_commands(commands: &[Command], atomic: bool, dedicated: bool) -> Result<(), Error> {
    let what = if atomic {
        "a Transaction"
    } else {
        "a Pipeline"
    };
    for c in commands {
        if c.subscription().is_some() {
            return Err(Error::Refused {
                command: refused_name(c).into(),
                reason: "subscription commands are answered by pushes, not replies: send them \
                         on their own, not inside a Pipeline or a Transaction",
            });
        }
        if let Some(state) = c.state_change() {
            return Err(Error::Refused {
                command: refused_name(c).into(),
                reason: if atomic {
                    "connection-state commands cannot go inside a Transaction: it writes MULTI \
                     and EXEC itself, and a WATCH goes before it, on a dedicated connection"
                } else if dedicated && state.allowed_on_dedicated() {
                    "connection-state commands go on their own, not inside a Pipeline, so that \
                     the dedicated connection knows what they set"
                } else {
                    state.advice()
                },
            });
        }
        if c.name_bytes().is_empty() {
            return Err(Error::config(format!(
                "{what} holds a command with an empty name"
            )));
        }
    }
    Ok(())
}

impl wire::Wire for Transaction {
    type Raw = BatchAnswer;

    fn check(&self, dedicated: bool) -> Result<(), Error> {
        if self.batch.is_empty() {
            return Err(Error::config(
                "an empty Transaction: add at least one command",
            ));
        }
        check_commands(&self.batch, true, dedicated)
    }

    fn into_job(self, reply: oneshot::Sender<BatchAnswer>) -> Job {
        Job::Batch {
            batch: Batch {
                commands: self.batch,
                atomic: true,
                asking: false,
            },
            reply,
            expiry: None,
        }
    }

    fn finish(raw: BatchAnswer) -> Result<Vec<Result<Reply, Error>>, Failed<Transaction>> {
        match raw {
            Ok(frames) => exec_results(frames).map_err(Failed::from),
            Err(failed) => Err(failed.map(|b| Transaction { batch: b.commands })),
        }
    }

    fn lost(error: Error) -> BatchAnswer {
        batch_lost(error)
    }

    fn local(reply: Reply) -> BatchAnswer {
        Ok(vec![reply.into_frame()])
    }

    fn parts(&self) -> &[Command] {
        &self.batch
    }

    fn is_transaction(&self) -> bool {
        true
    }

    /// Only whole, and only when it certainly did not run: once its `EXEC` may have reached the
    /// server, the caller gets the error, which says it may have run.
    fn resend(&self, error: &Error, _policy: &dyn ResendPolicy) -> bool {
        error.execution() == Execution::NotRun
    }

    fn into_cluster(self) -> ClusterRequest {
        ClusterRequest::Transaction(self.batch)
    }

    fn from_cluster(answer: ClusterAnswer) -> Result<Vec<Result<Reply, Error>>, Error> {
        many(answer)
    }
}

impl Request for Transaction {
    type Response = Vec<Result<Reply, Error>>;

    fn name(&self) -> &str {
        "TRANSACTION"
    }

    fn len(&self) -> usize {
        self.batch.len()
    }

    fn blocking(&self) -> Option<Block> {
        // Redis runs blocking commands inside MULTI without waiting.
        None
    }

    fn as_command(&self) -> Option<&Command> {
        None
    }
}

/// The results of a transaction from its frames: `MULTI`'s `OK`, one `QUEUED` (or error) per
/// command, then `EXEC`'s answer.
fn exec_results(mut frames: Vec<BytesFrame>) -> Result<Vec<Result<Reply, Error>>, Error> {
    let exec = frames
        .pop()
        .ok_or_else(|| Error::protocol("a transaction got no reply at all"))?;
    let mut frames = frames.into_iter();
    if let Some(multi) = frames.next() {
        if let Err(Error::Server(e)) = reply::from_frame(multi) {
            // Without MULTI the server ran each command on its own as it came.
            return Err(Error::Server(ServerError::new(format!(
                "{} (MULTI was refused, so the commands ran one by one, not as a transaction)",
                e.text()
            ))));
        }
    }
    // What the server said when queueing each command.
    let queued: Vec<Result<Reply, Error>> = frames.map(reply::from_frame).collect();
    match exec {
        BytesFrame::Array { data, .. } => Ok(data.into_iter().map(reply::from_frame).collect()),
        BytesFrame::Null => Err(Error::WatchConflict { attempts: 1 }),
        frame => match reply::from_frame(frame) {
            Err(Error::Server(e)) if e.code() == "EXECABORT" => {
                let errors: Vec<(usize, ServerError)> = queued
                    .into_iter()
                    .enumerate()
                    .filter_map(|(i, q)| match q {
                        Err(Error::Server(e)) => Some((i, e)),
                        _ => None,
                    })
                    .collect();
                Err(Error::TransactionDiscarded {
                    reason: e,
                    errors: errors.into(),
                })
            }
            Err(e) => Err(e),
            Ok(other) => Err(Error::protocol(format!(
                "EXEC answered neither an array nor null: {}",
                crate::frame::preview(other.frame())
            ))),
        },
    }
}

// ===== ASKING =====

/// A request sent after `ASKING`, for a cluster's `ASK` redirect: the slot is being migrated,
/// the key is already on the target node, and the target runs a command for that slot only
/// right after an `ASKING` on the same connection.
///
/// `ASKING` is refused on a shared connection when a caller sends it
/// ([`StateCommand::Asking`](crate::StateCommand::Asking)): alone, it would apply to whichever
/// command comes next on the connection, possibly another caller's. Written here, it is safe on
/// a shared connection, because the connection writes a batch contiguously, with nothing
/// between its commands: the command after each `ASKING` is the one it was meant for, and the
/// flag ends with that command (inside `MULTI` it lasts until `EXEC`, which is what a
/// transaction after `ASK` needs). Only the crate builds one; its `ASKING` replies are
/// dropped and the caller sees the request's own answer.
#[derive(Debug, Clone)]
pub(crate) struct Asking<R>(pub(crate) R);

fn asking_command() -> Command {
    Command::new("ASKING")
}

impl wire::Wire for Asking<Command> {
    type Raw = BatchAnswer;

    fn check(&self, dedicated: bool) -> Result<(), Error> {
        check_state(&self.0, dedicated)
    }

    fn into_job(self, reply: oneshot::Sender<BatchAnswer>) -> Job {
        Job::Batch {
            batch: Batch {
                commands: vec![asking_command(), self.0],
                atomic: false,
                asking: false,
            },
            reply,
            expiry: None,
        }
    }

    fn finish(raw: BatchAnswer) -> Result<Reply, Failed<Asking<Command>>> {
        match raw {
            Ok(frames) => match frames.into_iter().nth(1) {
                Some(frame) => reply::from_frame(frame).map_err(Failed::from),
                None => Err(Failed::from(Error::protocol(
                    "a command after ASKING got no reply of its own",
                ))),
            },
            Err(failed) => Err(Failed {
                error: failed.error,
                command: failed
                    .command
                    .and_then(|b| b.commands.into_iter().nth(1))
                    .map(Asking),
            }),
        }
    }

    fn lost(error: Error) -> BatchAnswer {
        batch_lost(error)
    }

    fn local(reply: Reply) -> BatchAnswer {
        Ok(vec![BytesFrame::Null, reply.into_frame()])
    }

    fn parts(&self) -> &[Command] {
        std::slice::from_ref(&self.0)
    }

    fn resend(&self, error: &Error, policy: &dyn ResendPolicy) -> bool {
        policy.resend(&self.0, error)
    }

    fn into_cluster(self) -> ClusterRequest {
        ClusterRequest::Internal("ASKING")
    }

    fn from_cluster(answer: ClusterAnswer) -> Result<Reply, Error> {
        Command::from_cluster(answer)
    }
}

impl Request for Asking<Command> {
    type Response = Reply;

    fn name(&self) -> &str {
        self.0.name()
    }

    fn len(&self) -> usize {
        1
    }

    fn blocking(&self) -> Option<Block> {
        self.0.blocking()
    }

    fn as_command(&self) -> Option<&Command> {
        None
    }
}

impl wire::Wire for Asking<Transaction> {
    type Raw = BatchAnswer;

    fn check(&self, dedicated: bool) -> Result<(), Error> {
        self.0.check(dedicated)
    }

    fn into_job(self, reply: oneshot::Sender<BatchAnswer>) -> Job {
        Job::Batch {
            batch: Batch {
                commands: self.0.batch,
                atomic: true,
                asking: true,
            },
            reply,
            expiry: None,
        }
    }

    fn finish(raw: BatchAnswer) -> Result<Vec<Result<Reply, Error>>, Failed<Self>> {
        match raw {
            // ASKING's own reply first, then the transaction's.
            Ok(frames) => exec_results(frames.into_iter().skip(1).collect()).map_err(Failed::from),
            Err(failed) => Err(failed.map(|b| Asking(Transaction { batch: b.commands }))),
        }
    }

    fn lost(error: Error) -> BatchAnswer {
        batch_lost(error)
    }

    fn local(reply: Reply) -> BatchAnswer {
        Ok(vec![BytesFrame::Null, reply.into_frame()])
    }

    fn parts(&self) -> &[Command] {
        &self.0.batch
    }

    fn is_transaction(&self) -> bool {
        true
    }

    fn resend(&self, error: &Error, _policy: &dyn ResendPolicy) -> bool {
        error.execution() == Execution::NotRun
    }

    fn into_cluster(self) -> ClusterRequest {
        ClusterRequest::Internal("ASKING")
    }

    fn from_cluster(answer: ClusterAnswer) -> Result<Vec<Result<Reply, Error>>, Error> {
        many(answer)
    }
}

impl Request for Asking<Transaction> {
    type Response = Vec<Result<Reply, Error>>;

    fn name(&self) -> &str {
        "TRANSACTION"
    }

    fn len(&self) -> usize {
        self.0.batch.len()
    }

    fn blocking(&self) -> Option<Block> {
        None
    }

    fn as_command(&self) -> Option<&Command> {
        None
    }
}

/// A subscription command sent right after an `ASKING`, for a cluster that subscribes a shard
/// channel on the node importing its slot before the slot has moved (Redis serves a shard
/// channel command there only after `ASKING`).
///
/// Unlike [`Asking`], it is one job, not a batch: the command is answered by its confirmation
/// pushes, which the connection takes as the answer of the subscription at the front of its
/// queue, and `ASKING`'s reply is dropped before them. It is what the stacks see as the command
/// itself ([`as_command`](Request::as_command)), so a node's stack records the subscription
/// and makes it again (without `ASKING`: by then the slot is the node's, or the node refuses it)
/// after its reconnects. Only the crate builds one.
#[derive(Debug, Clone)]
pub(crate) struct AskingSubscription(pub(crate) Command);

impl wire::Wire for AskingSubscription {
    type Raw = Answer;

    fn check(&self, dedicated: bool) -> Result<(), Error> {
        check_state(&self.0, dedicated)
    }

    fn into_job(self, reply: oneshot::Sender<Answer>) -> Job {
        Job::One {
            command: self.0,
            reply,
            expiry: None,
            asking: true,
        }
    }

    fn finish(raw: Answer) -> Result<Reply, Failed<AskingSubscription>> {
        raw.map_err(|f| f.map(AskingSubscription))
    }

    fn lost(error: Error) -> Answer {
        Err(Failed::from(error))
    }

    fn local(reply: Reply) -> Answer {
        Ok(reply)
    }

    fn parts(&self) -> &[Command] {
        std::slice::from_ref(&self.0)
    }

    fn resend(&self, error: &Error, policy: &dyn ResendPolicy) -> bool {
        policy.resend(&self.0, error)
    }

    fn into_cluster(self) -> ClusterRequest {
        ClusterRequest::Internal("ASKING")
    }

    fn from_cluster(answer: ClusterAnswer) -> Result<Reply, Error> {
        Command::from_cluster(answer)
    }
}

impl Request for AskingSubscription {
    type Response = Reply;

    fn name(&self) -> &str {
        self.0.name()
    }

    fn len(&self) -> usize {
        1
    }

    fn blocking(&self) -> Option<Block> {
        None
    }

    fn as_command(&self) -> Option<&Command> {
        Some(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cmd;
    use bytes::Bytes;

    fn simple(s: &'static str) -> BytesFrame {
        BytesFrame::SimpleString {
            data: Bytes::from_static(s.as_bytes()),
            attributes: None,
        }
    }

    fn error(s: &'static str) -> BytesFrame {
        BytesFrame::SimpleError {
            data: s.into(),
            attributes: None,
        }
    }

    #[test]
    fn a_transaction_is_written_as_one() {
        let batch = Batch {
            commands: vec![cmd!("INCR", "a"), cmd!("GET", "a")],
            atomic: true,
            asking: false,
        };
        let mut out = BytesMut::new();
        batch.encode(&mut out);
        assert_eq!(
            &out[..],
            &b"*1\r\n$5\r\nMULTI\r\n*2\r\n$4\r\nINCR\r\n$1\r\na\r\n*2\r\n$3\r\nGET\r\n$1\r\na\r\n*1\r\n$4\r\nEXEC\r\n"[..]
        );
        assert_eq!(batch.frames(), 4);
    }

    #[test]
    fn asking_is_written_right_before_what_it_is_for() {
        use super::wire::Wire;
        let (tx, _rx) = oneshot::channel();
        let Job::Batch { batch, .. } = Asking(cmd!("GET", "k")).into_job(tx) else {
            panic!("a batch")
        };
        let mut out = BytesMut::new();
        batch.encode(&mut out);
        assert_eq!(
            &out[..],
            &b"*1\r\n$6\r\nASKING\r\n*2\r\n$3\r\nGET\r\n$1\r\nk\r\n"[..]
        );
        assert_eq!(batch.frames(), 2);
        let reply = Asking::<Command>::finish(Ok(vec![simple("OK"), simple("v")])).unwrap();
        assert_eq!(reply.as_str(), Some("v"));

        let (tx, _rx) = oneshot::channel();
        let t = Asking(Transaction::new().cmd(cmd!("INCR", "k")));
        let Job::Batch { batch, .. } = t.into_job(tx) else {
            panic!("a batch")
        };
        let mut out = BytesMut::new();
        batch.encode(&mut out);
        assert!(out.starts_with(b"*1\r\n$6\r\nASKING\r\n*1\r\n$5\r\nMULTI\r\n"));
        assert_eq!(batch.frames(), 4);
        let results = Asking::<Transaction>::finish(Ok(vec![
            simple("OK"),
            simple("OK"),
            simple("QUEUED"),
            BytesFrame::Array {
                data: vec![BytesFrame::Number {
                    data: 1,
                    attributes: None,
                }],
                attributes: None,
            },
        ]))
        .unwrap();
        assert_eq!(results[0].as_ref().unwrap().as_i64(), Some(1));
    }

    #[test]
    fn exec_answers_become_results_errors_and_aborts() {
        let ok = exec_results(vec![
            simple("OK"),
            simple("QUEUED"),
            simple("QUEUED"),
            BytesFrame::Array {
                data: vec![
                    BytesFrame::Number {
                        data: 1,
                        attributes: None,
                    },
                    error("WRONGTYPE x"),
                ],
                attributes: None,
            },
        ])
        .unwrap();
        assert_eq!(ok[0].as_ref().unwrap().as_i64(), Some(1));
        assert!(matches!(&ok[1], Err(Error::Server(e)) if e.code() == "WRONGTYPE"));

        let watched = exec_results(vec![simple("OK"), simple("QUEUED"), BytesFrame::Null]);
        assert!(matches!(watched, Err(Error::WatchConflict { attempts: 1 })));

        let aborted = exec_results(vec![
            simple("OK"),
            simple("QUEUED"),
            error("ERR wrong number of arguments for 'get' command"),
            error("EXECABORT Transaction discarded because of previous errors."),
        ]);
        match aborted {
            Err(Error::TransactionDiscarded { errors, reason }) => {
                assert_eq!(reason.code(), "EXECABORT");
                assert_eq!(errors.len(), 1);
                assert_eq!(errors[0].0, 1);
                assert!(errors[0].1.text().contains("wrong number"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn batches_refuse_what_cannot_go_inside() {
        use super::wire::Wire;
        let p = Pipeline::new()
            .cmd(cmd!("GET", "a"))
            .cmd(cmd!("SUBSCRIBE", "c"));
        assert!(matches!(p.check(false), Err(Error::Refused { .. })));
        let p = Pipeline::new().cmd(cmd!("SELECT", 2));
        assert!(p.check(false).is_err());
        assert!(
            p.check(true).is_err(),
            "on its own, even on a dedicated connection"
        );
        let t = Transaction::new().cmd(cmd!("WATCH", "a"));
        assert!(t.check(true).is_err(), "never inside a transaction");
        assert!(Transaction::new().check(false).is_err());
        assert!(Transaction::new()
            .cmd(cmd!("INCR", "a"))
            .check(false)
            .is_ok());
        assert!(Pipeline::new().immediate().is_some());
    }

    #[test]
    fn a_pipeline_blocks_for_the_sum_of_its_blocking_commands() {
        let p = Pipeline::new()
            .cmd(cmd!("BLPOP", "a", 1))
            .cmd(cmd!("GET", "a"))
            .cmd(cmd!("BLPOP", "b", 2));
        assert_eq!(p.blocking(), Some(Block::For(Duration::from_secs(3))));
        let p = p.cmd(cmd!("BLPOP", "c", 0));
        assert_eq!(p.blocking(), Some(Block::Forever));
        let t = Transaction::new().cmd(cmd!("BLPOP", "a", 0));
        assert_eq!(t.blocking(), None);
    }
}
