//! Sending through the cluster when the straight path is not enough: after a refusal, for a
//! pipeline split across nodes, a transaction, a command for every primary.
//!
//! Every loop here is bounded twice: by the redirect limit (attempts) and by the retry budget
//! (time since the call). What the refusals mean is in [`redirect`](super::redirect).

use std::future::Future;
use std::sync::Arc;

use futures_util::future::join_all;
use redis_protocol::resp3::types::BytesFrame;
use tokio::time::Instant;
use tower::ServiceExt;

use super::redirect::{self, Next};
use super::route::{self, Combine, Route};
use super::Inner;
use crate::command::Command;
use crate::endpoint::Endpoint;
use crate::error::{Error, ServerError};
use crate::reply::Reply;
use crate::request::wire::Wire as _;
use crate::request::{Asking, ClusterAnswer, Pipeline, Transaction};
use crate::stack::Stack;

/// Where the next attempt goes.
enum Target {
    /// Wherever the map says now.
    Route(Route),
    /// This node (after a `MOVED`).
    Node(Stack),
    /// This node, after `ASKING`.
    Ask(Stack),
}

/// A request the cluster sends whole to one node: a command or a transaction.
trait Unit: Clone + Send + Sync + 'static {
    type Out: Send + 'static;

    fn send(self, stack: Stack) -> impl Future<Output = Result<Self::Out, Error>> + Send;

    fn send_asking(self, stack: Stack) -> impl Future<Output = Result<Self::Out, Error>> + Send;

    /// The server's refusal inside a failure, for the redirect rules.
    fn refusal(error: &Error) -> Option<&ServerError>;
}

impl Unit for Command {
    type Out = Reply;

    fn send(self, stack: Stack) -> impl Future<Output = Result<Reply, Error>> + Send {
        stack.oneshot(self)
    }

    fn send_asking(self, stack: Stack) -> impl Future<Output = Result<Reply, Error>> + Send {
        stack.oneshot(Asking(self))
    }

    fn refusal(error: &Error) -> Option<&ServerError> {
        error.server_error()
    }
}

impl Unit for Transaction {
    type Out = Vec<Result<Reply, Error>>;

    fn send(self, stack: Stack) -> impl Future<Output = Result<Self::Out, Error>> + Send {
        stack.oneshot(self)
    }

    fn send_asking(self, stack: Stack) -> impl Future<Output = Result<Self::Out, Error>> + Send {
        stack.oneshot(Asking(self))
    }

    /// A transaction whose queued commands were all refused with a redirect (the server then
    /// discards it at `EXEC`: nothing ran) follows that redirect.
    fn refusal(error: &Error) -> Option<&ServerError> {
        match error {
            Error::Server(e) => Some(e),
            Error::TransactionDiscarded { errors, .. } => {
                let first = &errors.first()?.1;
                errors
                    .iter()
                    .all(|(_, e)| {
                        matches!(
                            e.code(),
                            "MOVED" | "ASK" | "TRYAGAIN" | "CLUSTERDOWN" | "LOADING" | "MASTERDOWN"
                        )
                    })
                    .then_some(first)
            }
            _ => None,
        }
    }
}

/// A single command, from its first attempt's failure when there was one.
pub(super) async fn command(
    inner: Arc<Inner>,
    command: Command,
    route: Route,
    failed: Option<(Error, Endpoint)>,
    started: Instant,
) -> Result<ClusterAnswer, Error> {
    follow(&inner, command, route, failed, started)
        .await
        .map(ClusterAnswer::One)
}

/// A transaction: its keys on one slot (checked before anything is sent), then whole to that
/// slot's node.
pub(super) async fn transaction(
    inner: Arc<Inner>,
    commands: Vec<Command>,
    started: Instant,
) -> Result<ClusterAnswer, Error> {
    let transaction: Transaction = commands.into_iter().collect();
    transaction.check(false)?;
    let mut slot: Option<u16> = None;
    for c in transaction.commands() {
        match route::route(c)? {
            Route::Slot(s) => match slot {
                None => slot = Some(s),
                Some(first) if first != s => {
                    return Err(Error::CrossSlot {
                        command: "TRANSACTION".into(),
                        slots: (first, s),
                    })
                }
                Some(_) => {}
            },
            Route::All(_) => {
                return Err(Error::Refused {
                    command: c.name().to_ascii_uppercase().into(),
                    reason: "a command for every primary of a cluster cannot go inside a \
                             Transaction, which runs on one node; send it on its own",
                })
            }
            Route::Any | Route::PubSub => {}
        }
    }
    let route = slot.map_or(Route::Any, Route::Slot);
    follow(&inner, transaction, route, None, started)
        .await
        .map(ClusterAnswer::Many)
}

/// Sends `unit` until a node runs it, following refusals; see the [module docs](self).
async fn follow<U: Unit>(
    inner: &Arc<Inner>,
    unit: U,
    route: Route,
    mut failed: Option<(Error, Endpoint)>,
    started: Instant,
) -> Result<U::Out, Error> {
    let deadline = started + inner.config.retry_budget;
    let mut target = Target::Route(route.clone());
    let mut followed = 0u32;
    let mut waits = 0u32;
    let mut bounces = redirect::Bounces::default();
    loop {
        let (error, by) = match failed.take() {
            Some(f) => f,
            None => {
                let stack = match &target {
                    Target::Route(r) => inner.routes.load().pick(r).cloned(),
                    Target::Node(s) | Target::Ask(s) => Some(s.clone()),
                };
                let Some(stack) = stack else {
                    // No node serves the slot (or none is known): ask the cluster again.
                    followed += 1;
                    if followed > inner.config.redirect_limit || Instant::now() >= deadline {
                        return Err(Error::Redirects {
                            followed,
                            last: format!("no node of the cluster serves {route:?}").into(),
                        });
                    }
                    inner.reroute(deadline).await;
                    continue;
                };
                let by = stack.handoff().configured_endpoint().clone();
                let result = match target {
                    Target::Ask(_) => unit.clone().send_asking(stack).await,
                    _ => unit.clone().send(stack).await,
                };
                match result {
                    Ok(out) => return Ok(out),
                    Err(e) => (e, by),
                }
            }
        };
        let map = |e: Endpoint| inner.map(e);
        let next = match U::refusal(&error) {
            Some(e) => redirect::refusal(e, &by, &map).unwrap_or(Next::Stop),
            None => redirect::next(&error, &by, &map),
        };
        if next == Next::Stop {
            if matches!(error, Error::ConnectionLost { .. }) {
                inner.refresh_lazily();
            }
            return Err(error);
        }
        // A `MOVED` back to a node that redirected this request already: the nodes disagree for
        // now. Waited out like `TRYAGAIN` (within the retry budget), not counted as a redirect.
        let bounce = matches!(&next, Next::Moved { to, .. } if bounces.bounced(&by, to));
        if !bounce {
            followed += 1;
        }
        if followed > inner.config.redirect_limit || Instant::now() >= deadline {
            return Err(match next {
                // A node that cannot be reached: its own error says it best.
                Next::Reroute => error,
                _ => exhausted(followed, &error),
            });
        }
        target = match next {
            Next::Moved { slot, to } => {
                if bounce {
                    inner.waited();
                    waits += 1;
                    sleep_until_before(redirect::backoff(waits), deadline).await;
                }
                Target::Node(inner.moved(slot, &to).await?)
            }
            Next::Ask { to } => Target::Ask(inner.asked(&to).await?),
            Next::Wait { refresh } => {
                inner.waited();
                if refresh {
                    inner.refresh_lazily();
                }
                waits += 1;
                sleep_until_before(redirect::backoff(waits), deadline).await;
                Target::Route(route.clone())
            }
            Next::Reroute => {
                inner.reroute(deadline).await;
                Target::Route(route.clone())
            }
            Next::Stop => return Err(error),
        };
    }
}

pub(super) fn exhausted(followed: u32, last: &Error) -> Error {
    let last = match last.server_error() {
        Some(e) => e.text().into(),
        None => last.to_string().into(),
    };
    Error::Redirects { followed, last }
}

async fn sleep_until_before(wait: std::time::Duration, deadline: Instant) {
    let until = (Instant::now() + wait).min(deadline);
    tokio::time::sleep_until(until).await;
}

/// A command for every primary, the replies combined (see [`route`](super::route)).
pub(super) async fn fan_out(
    inner: Arc<Inner>,
    command: Command,
    combine: Combine,
) -> Result<ClusterAnswer, Error> {
    let mut routes = inner.routes.load_full();
    if routes.stacks.is_empty() {
        let deadline = Instant::now() + inner.config.retry_budget;
        inner.reroute(deadline).await;
        routes = inner.routes.load_full();
    }
    if routes.stacks.is_empty() {
        return Err(Error::NotSent {
            reason: "no primary of the cluster is known".into(),
        });
    }
    let replies = join_all(
        routes
            .stacks
            .iter()
            .map(|s| s.clone().oneshot(command.clone())),
    )
    .await;
    let (asked, ran) = (replies.len(), replies.iter().filter(|r| r.is_ok()).count());
    let mut replies = match replies.into_iter().collect::<Result<Vec<Reply>, Error>>() {
        Ok(replies) => replies,
        // It ran on some primaries: one's "not run" is not true of the command.
        Err(error) if ran > 0 && error.certainly_not_executed() => {
            return Err(Error::ConnectionLost {
                reason: format!(
                    "{} ran on {ran} of {asked} primaries, not on another: {error}",
                    command.name()
                )
                .into(),
            })
        }
        Err(error) => return Err(error),
    };
    let reply = match combine {
        Combine::Agree => replies.swap_remove(0),
        Combine::Sum => {
            let mut sum: i64 = 0;
            for r in &replies {
                let n = r.as_i64().ok_or_else(|| {
                    Error::protocol(format!(
                        "{} answered {r:?} on a primary, not a number",
                        command.name()
                    ))
                })?;
                sum = sum.saturating_add(n);
            }
            Reply::from(BytesFrame::Number {
                data: sum,
                attributes: None,
            })
        }
        Combine::Concat => {
            let mut all = Vec::new();
            for r in replies {
                match r.into_frame() {
                    BytesFrame::Array { data, .. } => all.extend(data),
                    BytesFrame::Set { data, .. } => all.extend(data),
                    other => {
                        return Err(Error::protocol(format!(
                            "{} answered {} on a primary, not an array",
                            command.name(),
                            crate::frame::preview(&other)
                        )))
                    }
                }
            }
            Reply::from(BytesFrame::Array {
                data: all,
                attributes: None,
            })
        }
    };
    Ok(ClusterAnswer::One(reply))
}

/// A command of a pipeline still to be answered.
struct Pending {
    index: usize,
    route: Route,
    target: Target,
    last: Option<Error>,
}

/// A pipeline, split by node: each node's commands go as one pipeline, all nodes at once, and
/// the results are put back in the caller's order. Commands the servers refuse (`MOVED`,
/// `ASK`, `TRYAGAIN`) are sent again, the others' results stand; a node's whole part that
/// could not be sent is routed again after a refresh, one that may have run gives each of its
/// commands that error.
pub(super) async fn pipeline(
    inner: Arc<Inner>,
    commands: Vec<Command>,
    started: Instant,
) -> Result<ClusterAnswer, Error> {
    let pipeline: Pipeline = commands.into_iter().collect();
    pipeline.check(false)?;
    let commands = pipeline.into_commands();
    let deadline = started + inner.config.retry_budget;
    let mut results: Vec<Option<Result<Reply, Error>>> = commands.iter().map(|_| None).collect();
    let mut todo = Vec::with_capacity(commands.len());
    for (index, c) in commands.iter().enumerate() {
        match route::route(c) {
            Ok(Route::All(_)) => {
                results[index] = Some(Err(Error::Refused {
                    command: c.name().to_ascii_uppercase().into(),
                    reason: "a command for every primary of a cluster goes on its own, not \
                             inside a Pipeline",
                }))
            }
            Ok(route) => todo.push(Pending {
                index,
                target: Target::Route(route.clone()),
                route,
                last: None,
            }),
            Err(e) => results[index] = Some(Err(e)),
        }
    }
    let mut rounds = 0u32;
    let mut waits = 0u32;
    let map = |e: Endpoint| inner.map(e);
    while !todo.is_empty() {
        if rounds > inner.config.redirect_limit || (rounds > 0 && Instant::now() >= deadline) {
            for p in todo.drain(..) {
                results[p.index] = Some(Err(match p.last {
                    Some(e) if redirect::unreachable(&e) => e,
                    Some(e) => exhausted(rounds, &e),
                    None => exhausted(
                        rounds,
                        &Error::NotSent {
                            reason: "no node of the cluster serves its slot".into(),
                        },
                    ),
                }));
            }
            break;
        }
        rounds += 1;
        let routes = inner.routes.load_full();
        // Keyless commands go with the first keyed one, so that a small pipeline stays on one
        // node.
        let anchor = todo.iter().find_map(|p| match &p.target {
            Target::Route(r @ Route::Slot(_)) => routes.pick(r).cloned(),
            Target::Node(s) => Some(s.clone()),
            _ => None,
        });
        let mut groups: Vec<(Stack, Vec<usize>)> = Vec::new();
        let mut asks: Vec<(Stack, usize)> = Vec::new();
        let mut unrouted: Vec<usize> = Vec::new();
        for (pos, p) in todo.iter().enumerate() {
            let stack = match &p.target {
                Target::Ask(s) => {
                    asks.push((s.clone(), pos));
                    continue;
                }
                Target::Node(s) => Some(s.clone()),
                Target::Route(Route::Any | Route::PubSub) => {
                    anchor.clone().or_else(|| routes.pick(&Route::Any).cloned())
                }
                Target::Route(r) => routes.pick(r).cloned(),
            };
            let Some(stack) = stack else {
                unrouted.push(pos);
                continue;
            };
            let endpoint = stack.handoff().configured_endpoint();
            match groups
                .iter_mut()
                .find(|(s, _)| s.handoff().configured_endpoint() == endpoint)
            {
                Some((_, members)) => members.push(pos),
                None => groups.push((stack, vec![pos])),
            }
        }
        let sends = groups.iter().map(|(stack, members)| {
            let part: Pipeline = members
                .iter()
                .map(|&pos| commands[todo[pos].index].clone())
                .collect();
            stack.clone().oneshot(part)
        });
        let asked = asks.iter().map(|(stack, pos)| {
            stack
                .clone()
                .oneshot(Asking(commands[todo[*pos].index].clone()))
        });
        let (parts, asked) = futures_util::future::join(join_all(sends), join_all(asked)).await;

        // What each command's answer asks for.
        let mut outcomes: Vec<(usize, Result<Reply, Error>, Endpoint)> =
            Vec::with_capacity(todo.len());
        for ((stack, members), part) in groups.iter().zip(parts) {
            let by = stack.handoff().configured_endpoint().clone();
            match part {
                Ok(replies) => {
                    for (&pos, reply) in members.iter().zip(replies) {
                        outcomes.push((pos, reply, by.clone()));
                    }
                }
                Err(e) => {
                    for &pos in members {
                        outcomes.push((pos, Err(e.clone()), by.clone()));
                    }
                }
            }
        }
        for ((stack, pos), reply) in asks.iter().zip(asked) {
            outcomes.push((*pos, reply, stack.handoff().configured_endpoint().clone()));
        }
        let mut slots: Vec<Option<Pending>> = todo.into_iter().map(Some).collect();
        let mut again = Vec::new();
        let mut refresh = !unrouted.is_empty();
        let mut wait = false;
        for pos in unrouted {
            if let Some(p) = slots[pos].take() {
                again.push(p);
            }
        }
        for (pos, reply, by) in outcomes {
            let Some(mut p) = slots[pos].take() else {
                continue;
            };
            let error = match reply {
                Ok(r) => {
                    results[p.index] = Some(Ok(r));
                    continue;
                }
                Err(e) => e,
            };
            match redirect::next(&error, &by, &map) {
                Next::Stop => {
                    if matches!(error, Error::ConnectionLost { .. }) {
                        inner.refresh_lazily();
                    }
                    results[p.index] = Some(Err(error));
                    continue;
                }
                Next::Moved { slot, to } => match inner.moved(slot, &to).await {
                    Ok(stack) => p.target = Target::Node(stack),
                    Err(e) => {
                        results[p.index] = Some(Err(e));
                        continue;
                    }
                },
                Next::Ask { to } => match inner.asked(&to).await {
                    Ok(stack) => p.target = Target::Ask(stack),
                    Err(e) => {
                        results[p.index] = Some(Err(e));
                        continue;
                    }
                },
                Next::Wait { refresh: r } => {
                    wait = true;
                    refresh |= r;
                    p.target = Target::Route(p.route.clone());
                }
                Next::Reroute => {
                    refresh = true;
                    p.target = Target::Route(p.route.clone());
                }
            }
            p.last = Some(error);
            again.push(p);
        }
        again.sort_by_key(|p| p.index);
        todo = again;
        if todo.is_empty() {
            break;
        }
        if refresh {
            inner.reroute(deadline).await;
        } else if wait {
            inner.waited();
            waits += 1;
            sleep_until_before(redirect::backoff(waits), deadline).await;
        }
    }
    Ok(ClusterAnswer::Many(
        results
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Err(Error::protocol("a pipeline command got no answer"))))
            .collect(),
    ))
}
