//! Notification hooks: code of yours that runs on every maintenance notice.

use std::fmt;
use std::sync::Arc;
use std::time::Instant;

use crate::maintenance::azure::AzureEvent;
use crate::maintenance::events::PushOrigin;
use crate::maintenance::notification::Notification;

/// A maintenance notice from the server: a smart-client-handoff push notification or an Azure
/// maintenance event.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Notice {
    /// A RESP3 push notification (`MOVING`, `MIGRATING`, ...).
    Push(Notification),
    /// A message on `AzureRedisEvents`.
    Azure(AzureEvent),
}

impl Notice {
    /// The notice's name: the push's name (`"MOVING"`) or the Azure type
    /// (`"NodeMaintenanceStarting"`).
    pub fn name(&self) -> &str {
        match self {
            Notice::Push(n) => n.name(),
            Notice::Azure(e) => e.kind.name(),
        }
    }

    /// The server's sequence number; Azure events have none.
    pub fn seq(&self) -> Option<u64> {
        match self {
            Notice::Push(n) => Some(n.seq()),
            Notice::Azure(_) => None,
        }
    }

    /// Whether the notice starts a maintenance period (timeouts are relaxed).
    pub fn is_start(&self) -> bool {
        match self {
            Notice::Push(n) => n.kind().is_start(),
            Notice::Azure(e) => e.kind.is_start(),
        }
    }

    /// Whether the notice ends a maintenance period.
    pub fn is_end(&self) -> bool {
        match self {
            Notice::Push(n) => n.kind().is_end(),
            Notice::Azure(e) => e.kind.is_end(),
        }
    }
}

/// What a hook knows about a notice besides the notice itself.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct HookContext<'a> {
    /// Where the notice came from.
    pub origin: &'a PushOrigin,
    /// When it was received; `received.elapsed()` in a post-hook is the processing time.
    pub received: Instant,
}

/// What a pre-hook wants done with a notice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HookAction {
    /// Process it (as changed by the hook, if it changed it).
    #[default]
    Continue,
    /// Do not process it: no state change, no event. Later pre-hooks do not see it; the
    /// post-hooks do, with [`HookOutcome::Skipped`].
    Skip,
}

/// What became of a notice, as the post-hooks see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum HookOutcome {
    /// The state was updated and the event published.
    Applied,
    /// A pre-hook skipped it.
    Skipped,
    /// It repeated one already processed, so it was suppressed.
    Duplicate,
}

/// Code that runs on every maintenance notice.
///
/// Both methods do nothing by default, so a hook implements the one it needs.
///
/// A [`NotificationHook`] has a pre-hook, which sees each notice first and may change it or
/// skip its processing, and a post-hook, which sees the outcome. Hooks are added to the
/// [`Maintenance`](crate::maintenance::Maintenance) handle and run in the order they were added,
/// on the task that reads the connection's pushes, so they should be quick and must not block.
///
/// A closure `Fn(&HookContext, &mut Notice) -> HookAction` is a pre-hook; [`post_hook`] makes
/// one from a closure `Fn(&HookContext, &Notice, HookOutcome)`.
///
/// ```
/// use redis_handoff::maintenance::{
///     post_hook, HookAction, HookContext, HookOutcome, Maintenance, Notice, Notification,
/// };
///
/// let maintenance = Maintenance::default();
/// // Ignore failovers of replicas we do not care about (say), and log everything else.
/// maintenance.add_hook(|_cx: &HookContext<'_>, notice: &mut Notice| match notice {
///     Notice::Push(Notification::FailingOver { shards, .. }) if shards.is_empty() => HookAction::Skip,
///     _ => HookAction::Continue,
/// });
/// maintenance.add_hook(post_hook(|cx: &HookContext<'_>, notice: &Notice, outcome: HookOutcome| {
///     println!("{notice:?} from {}: {outcome:?} in {:?}", cx.origin.source, cx.received.elapsed());
/// }));
/// ```
pub trait NotificationHook: Send + Sync + 'static {
    /// Sees the notice before it is acted on; may change it or skip it.
    fn pre(&self, cx: &HookContext<'_>, notice: &mut Notice) -> HookAction {
        let _ = (cx, notice);
        HookAction::Continue
    }

    /// Sees the notice (as processed) and what became of it.
    fn post(&self, cx: &HookContext<'_>, notice: &Notice, outcome: HookOutcome) {
        let _ = (cx, notice, outcome);
    }
}

/// A closure is a pre-hook.
impl<F> NotificationHook for F
where
    F: Fn(&HookContext<'_>, &mut Notice) -> HookAction + Send + Sync + 'static,
{
    fn pre(&self, cx: &HookContext<'_>, notice: &mut Notice) -> HookAction {
        self(cx, notice)
    }
}

/// A post-hook made from a closure; see [`post_hook`].
#[derive(Clone)]
pub struct PostHook<F>(F);

impl<F> fmt::Debug for PostHook<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PostHook")
    }
}

/// Makes a post-hook from a closure that sees each notice and its outcome.
pub fn post_hook<F>(f: F) -> PostHook<F>
where
    F: Fn(&HookContext<'_>, &Notice, HookOutcome) + Send + Sync + 'static,
{
    PostHook(f)
}

impl<F> NotificationHook for PostHook<F>
where
    F: Fn(&HookContext<'_>, &Notice, HookOutcome) + Send + Sync + 'static,
{
    fn post(&self, cx: &HookContext<'_>, notice: &Notice, outcome: HookOutcome) {
        (self.0)(cx, notice, outcome)
    }
}
/// What [`Maintenance::process_push`](crate::Maintenance::process_push) did with a push frame.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PushOutcome {
    /// Not a maintenance notification nor an Azure event: left alone.
    NotMaintenance,
    /// Processed: the state was updated and the event published.
    Applied(Notice),
    /// A pre-hook skipped it.
    Skipped,
    /// It repeated one already processed.
    Duplicate,
    /// It was malformed: counted, logged and dropped.
    Dropped {
        /// What was wrong with it.
        reason: Arc<str>,
    },
}
