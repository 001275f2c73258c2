//! The state of one circuit, shared by every service a layer makes and by its handles, the
//! observer that acts on the maintenance events as they are emitted, and the background task
//! that keeps its timers.
//!
//! The state lives in one `AtomicU64` word: the state, why it opened, the half-open probe slots
//! left and the probes that succeeded, and a generation bumped by every transition. A call in
//! a closed circuit reads the word once and adds its outcome to a bucket of the sliding window
//! and to the run of failures: atomics only. Transitions (rare) are applied under a mutex, so
//! that the word, the reason and the timers change together and the events come out in order.
//!
//! It is one file of about 950 lines on purpose: the word's layout, every transition of it and
//! the task that drives the maintenance-triggered ones must be read together to see that no
//! transition is lost or applied twice.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::{Duration, Instant};

use tokio::sync::{oneshot, Notify};

use super::config::CircuitBreakerConfig;
use crate::clock;
use crate::endpoint::Endpoint;
use crate::error::{Error, ErrorClass};
use crate::maintenance::{AzureEventKind, EventKind, Maintenance, MaintenanceEvent, Observer};

/// How many buckets the failure-rate window is kept in.
pub(crate) const BUCKETS: usize = 10;

// ===== the state word =====

const STATE_BITS: u64 = 0b11;
const CAUSE_SHIFT: u32 = 2;
const PROBES_SHIFT: u32 = 4;
const SUCCESSES_SHIFT: u32 = 12;
const GEN_SHIFT: u32 = 20;
const BYTE: u64 = 0xff;

/// Where a circuit is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CircuitState {
    /// Commands flow; outcomes are counted.
    Closed,
    /// Commands are failed fast or held (see [`OpenMode`](super::OpenMode)).
    Open,
    /// A few trial commands go through; their outcome closes or reopens the circuit.
    HalfOpen,
}

/// Why the circuit opened; kept in the word so that the events that may close it can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cause {
    Failures = 0,
    Azure = 1,
    Forced = 2,
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct Word(u64);

impl Word {
    fn new(state: CircuitState, cause: Cause, probes: u8, generation: u64) -> Word {
        let state = match state {
            CircuitState::Closed => 0,
            CircuitState::Open => 1,
            CircuitState::HalfOpen => 2,
        };
        Word(
            state
                | (cause as u64) << CAUSE_SHIFT
                | u64::from(probes) << PROBES_SHIFT
                | generation << GEN_SHIFT,
        )
    }

    #[inline]
    pub(crate) fn state(self) -> CircuitState {
        match self.0 & STATE_BITS {
            0 => CircuitState::Closed,
            1 => CircuitState::Open,
            _ => CircuitState::HalfOpen,
        }
    }

    fn cause(self) -> Cause {
        match (self.0 >> CAUSE_SHIFT) & STATE_BITS {
            1 => Cause::Azure,
            2 => Cause::Forced,
            _ => Cause::Failures,
        }
    }

    fn probes_left(self) -> u64 {
        (self.0 >> PROBES_SHIFT) & BYTE
    }

    fn successes(self) -> u64 {
        (self.0 >> SUCCESSES_SHIFT) & BYTE
    }

    #[inline]
    pub(crate) fn generation(self) -> u64 {
        self.0 >> GEN_SHIFT
    }
}

impl fmt::Debug for Word {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Word")
            .field("state", &self.state())
            .field("cause", &self.cause())
            .field("probes_left", &self.probes_left())
            .field("successes", &self.successes())
            .field("generation", &self.generation())
            .finish()
    }
}

// Window buckets pack the calls in the high half and the failures in the low half, so that one
// `fetch_add` counts a call.
const SUCCESS: u64 = 1 << 32;
const FAILURE: u64 = (1 << 32) | 1;

/// Most rows of the window: a call is counted in its thread's row.
const STRIPES: usize = 4;

/// The sliding window's buckets, one row per stripe of threads, each row on cache lines of its
/// own: every call adds to the window, and calls finishing on different cores would otherwise
/// all write the same memory. One row per core, up to [`STRIPES`] (a power of two, so that a
/// thread finds its row with a mask): more rows than cores only take memory.
struct Window {
    rows: Box<[Row]>,
}

impl Default for Window {
    fn default() -> Self {
        let rows = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
            .clamp(1, STRIPES);
        // The largest power of two not above that.
        let rows = 1 << rows.ilog2();
        Window {
            rows: (0..rows).map(|_| Row::default()).collect(),
        }
    }
}

#[derive(Default)]
#[repr(align(128))]
struct Row([AtomicU64; BUCKETS]);

impl Window {
    /// This thread's row.
    fn row(&self) -> &Row {
        thread_local! {
            static STRIPE: std::cell::Cell<usize> = const { std::cell::Cell::new(usize::MAX) };
        }
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let stripe = STRIPE
            .try_with(|s| {
                if s.get() == usize::MAX {
                    s.set(NEXT.fetch_add(1, Ordering::Relaxed) % STRIPES);
                }
                s.get()
            })
            .unwrap_or(0);
        // A power of two of rows, at least one (see `Default`).
        &self.rows[stripe & (self.rows.len().max(1) - 1)]
    }

    fn add(&self, bucket: usize, delta: u64) {
        if let Some(b) = self.row().0.get(bucket) {
            b.fetch_add(delta, Ordering::Relaxed);
        }
    }

    /// Calls and failures over every bucket of every row.
    fn sum(&self) -> (u64, u64) {
        self.rows
            .iter()
            .flat_map(|r| r.0.iter())
            .fold((0, 0), |(c, f), b| {
                let v = b.load(Ordering::Relaxed);
                (c + (v >> 32), f + (v & u64::from(u32::MAX)))
            })
    }

    fn clear(&self, bucket: usize) {
        for r in &self.rows {
            if let Some(b) = r.0.get(bucket) {
                b.store(0, Ordering::Relaxed);
            }
        }
    }

    fn clear_all(&self) {
        for b in self.rows.iter().flat_map(|r| r.0.iter()) {
            b.store(0, Ordering::Relaxed);
        }
    }
}

// ===== Shared =====

/// What a caller may do now.
pub(crate) enum Admit {
    /// Closed: go ahead; the outcome is counted against this generation.
    Pass(u64),
    /// Half-open: go ahead as a probe (boxed: a rare case, kept out of every command's size).
    Probe(Box<ProbeSlot>),
    /// Open, or half-open with every probe slot taken.
    Blocked(Word),
}

/// What a finished call says about the endpoint.
pub(crate) enum Outcome<'a> {
    Success,
    Failure(&'a Error),
    /// Says nothing (an inner circuit was open, the command was malformed).
    Neutral,
}

impl<'a> Outcome<'a> {
    #[inline]
    pub(crate) fn of<T>(result: &'a Result<T, Error>) -> Self {
        match result {
            Ok(_) => Outcome::Success,
            Err(e) if e.class().counts_as_failure() => Outcome::Failure(e),
            Err(e) if e.class() == ErrorClass::Server => Outcome::Success,
            Err(_) => Outcome::Neutral,
        }
    }
}

pub(crate) struct Shared {
    pub(crate) endpoint: Endpoint,
    pub(crate) config: CircuitBreakerConfig,
    maintenance: Maintenance,
    word: AtomicU64,
    consecutive: AtomicU32,
    buckets: Window,
    bucket: AtomicUsize,
    /// Nanoseconds after the clock's epoch (`crate::clock`) when an open circuit turns half-open; `u64::MAX`: never.
    open_until: AtomicU64,
    /// When the circuit last opened from closed, for `CircuitClosed { open_for }`.
    opened_at: AtomicU64,
    /// Openings in a row without a successful close: the exponent of the wait.
    openings: AtomicU32,
    /// Nanoseconds after the clock's epoch (`crate::clock`) until which a handoff in progress holds commands; 0: none.
    handoff_until: AtomicU64,
    // When a hold scheduled by an Azure `NodeMaintenanceStarting` begins (0: none scheduled).
    hold_at: AtomicU64,
    reason: RwLock<Arc<str>>,
    transition: Mutex<()>,
    /// Woken on every transition and at the end of a handoff: held commands look again.
    pub(crate) changed: Notify,
    /// Wakes the background task to re-arm its timer.
    kick: Arc<Notify>,
    started: AtomicBool,
    shutdown: Mutex<Option<oneshot::Sender<()>>>,
    opened: AtomicU64,
    rejected: AtomicU64,
    held: AtomicU64,
    probes: AtomicU64,
}

impl Shared {
    /// A closed circuit; its background task starts now when a Tokio runtime is running, or
    /// with the first command.
    pub(crate) fn new(
        maintenance: Maintenance,
        endpoint: Endpoint,
        config: CircuitBreakerConfig,
    ) -> Arc<Shared> {
        let shared = Arc::new(Shared {
            endpoint,
            config,
            maintenance,

            word: AtomicU64::new(Word::new(CircuitState::Closed, Cause::Failures, 0, 0).0),
            consecutive: AtomicU32::new(0),
            buckets: Default::default(),
            bucket: AtomicUsize::new(0),
            open_until: AtomicU64::new(0),
            opened_at: AtomicU64::new(0),
            openings: AtomicU32::new(0),
            handoff_until: AtomicU64::new(0),
            hold_at: AtomicU64::new(0),
            reason: RwLock::new(Arc::from("")),
            transition: Mutex::new(()),
            changed: Notify::new(),
            kick: Arc::new(Notify::new()),
            started: AtomicBool::new(false),
            shutdown: Mutex::new(None),
            opened: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            held: AtomicU64::new(0),
            probes: AtomicU64::new(0),
        });
        shared.ensure_started();
        shared
    }

    #[inline]
    pub(crate) fn word(&self) -> Word {
        Word(self.word.load(Ordering::Acquire))
    }

    #[cfg(test)]
    pub(crate) fn started(&self) -> bool {
        self.started.load(Ordering::Relaxed)
    }

    /// Starts the background task if it is not running and a runtime is at hand.
    #[inline]
    pub(crate) fn ensure_started(self: &Arc<Self>) {
        if !self.started.load(Ordering::Relaxed) {
            self.start();
        }
    }

    #[cold]
    fn start(self: &Arc<Self>) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if self
            .started
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Relaxed)
            .is_err()
        {
            return;
        }
        // Observed from here, before returning, so that no event after construction is missed.
        // Events are acted on as they are emitted; the task then looks at its timers again.
        self.maintenance.observe(Arc::new(EventWatch {
            shared: Arc::downgrade(self),
            kick: self.kick.clone(),
        }));
        let (tx, rx) = oneshot::channel();
        *self.shutdown.lock().unwrap_or_else(|p| p.into_inner()) = Some(tx);
        let tick = (self.config.window / BUCKETS as u32).max(Duration::from_millis(1));
        runtime.spawn(run(Arc::downgrade(self), self.kick.clone(), rx, tick));
    }

    // ===== admission =====

    /// Whether a command may go now.
    #[inline]
    pub(crate) fn admit(self: &Arc<Self>) -> Admit {
        loop {
            let w = self.word();
            match w.state() {
                CircuitState::Closed => return Admit::Pass(w.generation()),
                CircuitState::HalfOpen => {
                    return match self.take_probe(w) {
                        Some(slot) => Admit::Probe(slot),
                        None => Admit::Blocked(self.word()),
                    }
                }
                CircuitState::Open => {
                    if self.open_expired(w, Instant::now()) && self.half_open(w.generation()) {
                        continue;
                    }
                    return Admit::Blocked(w);
                }
            }
        }
    }

    fn open_expired(&self, w: Word, now: Instant) -> bool {
        w.state() == CircuitState::Open
            && w.cause() != Cause::Forced
            && clock::nanos(now) >= self.open_until.load(Ordering::Acquire)
    }

    fn take_probe(self: &Arc<Self>, mut w: Word) -> Option<Box<ProbeSlot>> {
        loop {
            if w.state() != CircuitState::HalfOpen || w.probes_left() == 0 {
                return None;
            }
            let next = w.0 - (1 << PROBES_SHIFT);
            match self
                .word
                .compare_exchange(w.0, next, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => {
                    self.probes.fetch_add(1, Ordering::Relaxed);
                    return Some(Box::new(ProbeSlot {
                        shared: self.clone(),
                        generation: w.generation(),
                        armed: true,
                    }));
                }
                Err(now) => w = Word(now),
            }
        }
    }

    /// Gives back a probe slot whose command never ran or said nothing.
    fn release_probe(&self, generation: u64) {
        let limit = u64::from(self.config.probes());
        let mut w = self.word();
        loop {
            if w.state() != CircuitState::HalfOpen
                || w.generation() != generation
                || w.probes_left() >= limit
            {
                return;
            }
            let next = w.0 + (1 << PROBES_SHIFT);
            match self
                .word
                .compare_exchange(w.0, next, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => {
                    // Someone held at the circuit can take it.
                    self.changed.notify_waiters();
                    return;
                }
                Err(now) => w = Word(now),
            }
        }
    }

    /// Until when a command blocked at the circuit may be held because a handoff is
    /// switching, if one is.
    pub(crate) fn handoff_hold_until(&self, now: Instant) -> Option<Instant> {
        let until = self.handoff_until.load(Ordering::Acquire);
        (clock::nanos(now) < until)
            .then(|| clock::instant(until))
            .flatten()
    }

    /// When an open circuit turns half-open by itself, if it does.
    /// When a hold scheduled ahead of an Azure maintenance begins, if one is.
    fn hold_at(&self) -> Option<Instant> {
        match self.hold_at.load(Ordering::Acquire) {
            0 => None,
            n => clock::instant(n),
        }
    }

    pub(crate) fn open_until(&self, w: Word) -> Option<Instant> {
        if w.state() != CircuitState::Open || w.cause() == Cause::Forced {
            return None;
        }
        clock::instant(self.open_until.load(Ordering::Acquire))
    }

    pub(crate) fn note_held(&self) {
        self.held.fetch_add(1, Ordering::Relaxed);
    }

    /// The error for a command the circuit did not let through.
    pub(crate) fn rejection(&self, waited: Option<Duration>) -> Error {
        self.rejected.fetch_add(1, Ordering::Relaxed);
        let reason = self
            .reason
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let reason = match waited {
            None => reason,
            Some(w) => format!("{reason}; still not closed after holding the command {w:?}").into(),
        };
        Error::CircuitOpen {
            endpoint: self.endpoint.clone(),
            reason,
        }
    }

    // ===== outcomes =====

    /// Counts the outcome of a call let through while closed, in `generation`.
    #[inline]
    pub(crate) fn record(&self, generation: u64, outcome: Outcome<'_>) {
        match outcome {
            Outcome::Success => {
                self.count(SUCCESS);
                // A load first: most of the time there is no run to end, and no write.
                if self.consecutive.load(Ordering::Relaxed) != 0 {
                    self.consecutive.store(0, Ordering::Relaxed);
                }
            }
            Outcome::Failure(error) => self.record_failure(generation, error),
            Outcome::Neutral => {}
        }
    }

    #[inline]
    fn count(&self, delta: u64) {
        // The task keeps the index below BUCKETS.
        self.buckets.add(self.bucket.load(Ordering::Relaxed), delta);
    }

    #[cold]
    fn record_failure(&self, generation: u64, error: &Error) {
        if self.handoff_hold_until(Instant::now()).is_some() {
            // A handoff is moving the stack: its failures are the maintenance, not the endpoint.
            return;
        }
        let w = self.word();
        if w.state() != CircuitState::Closed || w.generation() != generation {
            // A call from before the circuit last changed (or the connection came back): what
            // became of it says nothing about the endpoint now.
            return;
        }
        self.count(FAILURE);
        let run = self
            .consecutive
            .fetch_add(1, Ordering::AcqRel)
            .saturating_add(1);
        let threshold = self.config.consecutive_failures;
        if threshold > 0 && run >= threshold {
            let reason = format!("{run} connection failures in a row; the last: {error}");
            self.open(Some(generation), Cause::Failures, reason.into());
            return;
        }
        let rate = self.config.failure_rate;
        if rate > 0.0 {
            let (calls, failures) = self.window();
            if calls >= u64::from(self.config.minimum_calls.max(1))
                && failures as f64 >= rate * calls as f64
            {
                let reason = format!(
                    "{failures} of the last {calls} calls failed within {:?}; the last: {error}",
                    self.config.window
                );
                self.open(Some(generation), Cause::Failures, reason.into());
            }
        }
    }

    /// The calls and failures in the sliding window.
    fn window(&self) -> (u64, u64) {
        self.buckets.sum()
    }

    /// Counts the outcome of a probe.
    pub(crate) fn record_probe(&self, slot: &mut ProbeSlot, outcome: Outcome<'_>) {
        let generation = slot.generation;
        match outcome {
            Outcome::Neutral => {}
            Outcome::Success => {
                slot.armed = false;
                self.count(SUCCESS);
                self.probe_succeeded(generation);
            }
            Outcome::Failure(error) => {
                slot.armed = false;
                self.count(FAILURE);
                let reason = format!("a half-open probe failed: {error}");
                self.open(Some(generation), Cause::Failures, reason.into());
            }
        }
    }

    fn probe_succeeded(&self, generation: u64) {
        let needed = u64::from(self.config.probes());
        let mut w = self.word();
        loop {
            if w.state() != CircuitState::HalfOpen || w.generation() != generation {
                return;
            }
            let next = Word(w.0 + (1 << SUCCESSES_SHIFT));
            match self
                .word
                .compare_exchange(w.0, next.0, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => {
                    if next.successes() >= needed {
                        self.close(Some(generation), "the half-open probes succeeded");
                    }
                    return;
                }
                Err(now) => w = Word(now),
            }
        }
    }

    // ===== transitions =====

    fn publish(&self, kind: EventKind) {
        self.maintenance
            .emit(MaintenanceEvent::new(self.endpoint.clone(), kind));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ()> {
        self.transition.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Opens the circuit (if it is still in `generation`, when given). An open circuit only
    /// takes the new cause, reason and time; a forced one stays as it is until reset.
    pub(crate) fn open(&self, generation: Option<u64>, cause: Cause, reason: Arc<str>) -> bool {
        let _guard = self.lock();
        let w = self.word();
        if generation.is_some_and(|g| g != w.generation()) {
            return false;
        }
        let now = Instant::now();
        if w.state() == CircuitState::Open {
            if w.cause() == Cause::Forced && cause != Cause::Forced {
                return false;
            }
            let until = match cause {
                Cause::Forced => u64::MAX,
                Cause::Azure => {
                    clock::nanos(now).saturating_add(clock::to_nanos(self.config.azure_hold_max))
                }
                Cause::Failures => self.open_until.load(Ordering::Acquire),
            };
            self.open_until.store(until, Ordering::Release);
            *self.reason.write().unwrap_or_else(|p| p.into_inner()) = reason;
            self.word.store(
                Word::new(CircuitState::Open, cause, 0, w.generation()).0,
                Ordering::Release,
            );
            drop(_guard);
            self.kick.notify_one();
            return true;
        }
        if w.state() == CircuitState::Closed {
            self.opened_at.store(clock::nanos(now), Ordering::Release);
        }
        let until = match cause {
            Cause::Forced => u64::MAX,
            Cause::Azure => {
                clock::nanos(now).saturating_add(clock::to_nanos(self.config.azure_hold_max))
            }
            Cause::Failures => {
                let opening = self
                    .openings
                    .fetch_add(1, Ordering::AcqRel)
                    .saturating_add(1);
                clock::nanos(now)
                    .saturating_add(clock::to_nanos(self.config.open_wait_for(opening)))
            }
        };
        self.open_until.store(until, Ordering::Release);
        *self.reason.write().unwrap_or_else(|p| p.into_inner()) = reason.clone();
        self.word.store(
            Word::new(CircuitState::Open, cause, 0, w.generation() + 1).0,
            Ordering::Release,
        );
        self.opened.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(endpoint = %self.endpoint, %reason, "circuit opened");
        self.publish(EventKind::CircuitOpened { reason });
        drop(_guard);
        self.changed.notify_waiters();
        self.kick.notify_one();
        true
    }

    /// Lets probes through, if the circuit is still open in `generation`.
    fn half_open(&self, generation: u64) -> bool {
        let _guard = self.lock();
        let w = self.word();
        if w.state() != CircuitState::Open || w.generation() != generation {
            return false;
        }
        self.word.store(
            Word::new(
                CircuitState::HalfOpen,
                w.cause(),
                self.config.probes(),
                generation + 1,
            )
            .0,
            Ordering::Release,
        );
        tracing::info!(endpoint = %self.endpoint, "circuit half-open");
        self.publish(EventKind::CircuitHalfOpen);
        drop(_guard);
        self.changed.notify_waiters();
        true
    }

    /// A closed circuit, still in `generation`, moves to a new generation: what becomes of the
    /// calls made before (their late timeouts) is not counted. The failures counted so far stay,
    /// so an endpoint that fails again at once after each reconnect still opens it.
    fn count_afresh(&self, generation: u64) {
        let _guard = self.lock();
        let w = self.word();
        if w.generation() != generation || w.state() != CircuitState::Closed {
            return;
        }
        self.word.store(
            Word::new(CircuitState::Closed, w.cause(), 0, w.generation() + 1).0,
            Ordering::Release,
        );
    }

    /// Closes the circuit (if it is still in `generation`, when given) and starts counting
    /// afresh.
    pub(crate) fn close(&self, generation: Option<u64>, why: &str) -> bool {
        let _guard = self.lock();
        let w = self.word();
        if generation.is_some_and(|g| g != w.generation()) || w.state() == CircuitState::Closed {
            return false;
        }
        self.consecutive.store(0, Ordering::Relaxed);
        self.buckets.clear_all();
        self.openings.store(0, Ordering::Release);
        self.word.store(
            Word::new(CircuitState::Closed, Cause::Failures, 0, w.generation() + 1).0,
            Ordering::Release,
        );
        let opened_at = self.opened_at.load(Ordering::Acquire);
        let open_for = Duration::from_nanos(clock::nanos(Instant::now()).saturating_sub(opened_at));
        tracing::info!(endpoint = %self.endpoint, ?open_for, why, "circuit closed");
        self.publish(EventKind::CircuitClosed { open_for });
        drop(_guard);
        self.changed.notify_waiters();
        true
    }

    /// The connection is back, or Azure says the maintenance is over: a circuit that Azure
    /// opened closes; one that failures opened turns half-open at once, to probe; a closed one
    /// moves to a new generation, so that the failures of calls made on the connection that
    /// was lost (their timeouts come in after the new one is up) are not counted.
    fn connection_back(&self, why: &str) {
        let w = self.word();
        match (w.state(), w.cause()) {
            (CircuitState::Closed, _) => self.count_afresh(w.generation()),
            (_, Cause::Forced) => {}
            (_, Cause::Azure) => {
                self.close(Some(w.generation()), why);
            }
            (CircuitState::Open, Cause::Failures) => {
                self.half_open(w.generation());
            }
            (CircuitState::HalfOpen, Cause::Failures) => {}
        }
    }

    // ===== background =====

    /// Acts on a maintenance event for this endpoint.
    fn on_event(&self, event: &MaintenanceEvent) {
        if event.endpoint != self.endpoint {
            return;
        }
        match &event.kind {
            EventKind::Azure(azure) if azure.kind == AzureEventKind::NodeMaintenanceStart => {
                self.open(
                    None,
                    Cause::Azure,
                    Arc::from("Azure NodeMaintenanceStart: the node is going down for maintenance"),
                );
            }
            EventKind::Azure(azure) if azure.kind == AzureEventKind::NodeMaintenanceStarting => {
                // Optionally hold new commands from a moment before the announced start.
                if let (Some(lead), Some(start)) =
                    (self.config.azure_hold_before_start, azure.start_time)
                {
                    let until_start = start
                        .duration_since(std::time::SystemTime::now())
                        .unwrap_or(Duration::ZERO);
                    let at = Instant::now() + until_start.saturating_sub(lead);
                    tracing::info!(endpoint = %self.endpoint, in_ = ?until_start.saturating_sub(lead), "Azure maintenance announced: holding new commands from shortly before it starts");
                    self.hold_at
                        .store(clock::nanos(at).max(1), Ordering::Release);
                }
            }
            EventKind::Azure(azure) if azure.kind.is_end() => {
                self.hold_at.store(0, Ordering::Release);
                self.connection_back(azure.kind.name());
            }
            EventKind::HandoffStarted { .. } => {
                let until = clock::nanos(Instant::now())
                    .saturating_add(clock::to_nanos(self.config.handoff_hold));
                self.handoff_until.store(until, Ordering::Release);
            }
            EventKind::HandoffSwitched { .. } => {
                self.handoff_until.store(0, Ordering::Release);
                self.connection_back("the handoff switched to the new connection");
                self.changed.notify_waiters();
            }
            EventKind::HandoffFailed { .. } => {
                self.handoff_until.store(0, Ordering::Release);
                self.changed.notify_waiters();
            }
            EventKind::Reconnected { .. } => self.connection_back("the connection is back"),
            _ => {}
        }
    }

    /// Ages the window by one bucket.
    fn rotate(&self) {
        let next = (self.bucket.load(Ordering::Relaxed) + 1) % BUCKETS;
        self.buckets.clear(next);
        self.bucket.store(next, Ordering::Relaxed);
    }

    /// Turns an open circuit whose wait is over half-open.
    fn on_timer(&self, now: Instant) {
        if self.hold_at().is_some_and(|at| at <= now) {
            self.hold_at.store(0, Ordering::Release);
            self.open(
                None,
                Cause::Azure,
                Arc::from(
                    "Azure maintenance is about to start (NodeMaintenanceStarting's start time)",
                ),
            );
        }
        let w = self.word();
        if self.open_expired(w, now) {
            self.half_open(w.generation());
        }
    }

    // ===== handle =====

    pub(crate) fn stats(&self) -> CircuitStats {
        let (window_calls, window_failures) = self.window();
        CircuitStats {
            state: self.word().state(),
            opened: self.opened.load(Ordering::Relaxed),
            rejected: self.rejected.load(Ordering::Relaxed),
            held: self.held.load(Ordering::Relaxed),
            probes: self.probes.load(Ordering::Relaxed),
            consecutive_failures: self.consecutive.load(Ordering::Relaxed),
            window_calls,
            window_failures,
        }
    }

    fn reset(&self) {
        self.close(None, "reset by hand");
        let _guard = self.lock();
        self.consecutive.store(0, Ordering::Relaxed);
        self.openings.store(0, Ordering::Release);
        self.buckets.clear_all();
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        // The sender goes with us: the task sees its receiver end and stops.
        if let Ok(mut tx) = self.shutdown.lock() {
            tx.take();
        }
    }
}

/// Acts on a maintenance handle's events for one circuit, as they are emitted.
struct EventWatch {
    shared: Weak<Shared>,
    kick: Arc<Notify>,
}

impl Observer for EventWatch {
    fn on_event(&self, event: &MaintenanceEvent) -> bool {
        let Some(shared) = self.shared.upgrade() else {
            return false;
        };
        shared.on_event(event);
        // The task recomputes when to wake: the event may have opened or held the circuit.
        self.kick.notify_one();
        true
    }

    fn alive(&self) -> bool {
        self.shared.strong_count() > 0
    }
}

/// Ages the window and turns the circuit half-open when its wait is over (and acts on a hold
/// that comes due). Ends with the circuit.
async fn run(
    weak: Weak<Shared>,
    kick: Arc<Notify>,
    mut shutdown: oneshot::Receiver<()>,
    tick: Duration,
) {
    let mut next_tick = tokio::time::Instant::now() + tick;
    loop {
        let wake = {
            let Some(shared) = weak.upgrade() else { return };
            let w = shared.word();
            [shared.open_until(w), shared.hold_at()]
                .into_iter()
                .flatten()
                .map(tokio::time::Instant::from_std)
                .fold(next_tick, |a, b| a.min(b))
        };
        tokio::select! {
            biased;
            _ = &mut shutdown => return,
            _ = kick.notified() => {}
            _ = tokio::time::sleep_until(wake) => {}
        }
        let Some(shared) = weak.upgrade() else { return };
        let now = tokio::time::Instant::now();
        if now >= next_tick {
            shared.rotate();
            next_tick = now + tick;
        }
        shared.on_timer(now.into_std());
    }
}

// ===== ProbeSlot =====

/// A half-open probe slot taken by one command; given back if the command never runs.
pub(crate) struct ProbeSlot {
    shared: Arc<Shared>,
    generation: u64,
    armed: bool,
}

impl ProbeSlot {
    pub(crate) fn record(&mut self, outcome: Outcome<'_>) {
        let shared = self.shared.clone();
        shared.record_probe(self, outcome);
    }
}

impl fmt::Debug for ProbeSlot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProbeSlot")
            .field("generation", &self.generation)
            .finish()
    }
}

impl Drop for ProbeSlot {
    fn drop(&mut self) {
        if self.armed {
            self.shared.release_probe(self.generation);
        }
    }
}

// ===== waiting =====

/// Resolves when the state word is no longer `seen`, or at `wake_at`.
pub(crate) async fn changed_or(shared: Arc<Shared>, seen: Word, wake_at: Instant) {
    let notified = shared.changed.notified();
    tokio::pin!(notified);
    notified.as_mut().enable();
    if shared.word() != seen {
        return;
    }
    tokio::select! {
        _ = notified => {}
        _ = tokio::time::sleep_until(tokio::time::Instant::from_std(wake_at)) => {}
    }
}

// ===== CircuitHandle =====

/// Counters and state of a circuit; see [`CircuitHandle::stats`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct CircuitStats {
    /// The state now.
    pub state: CircuitState,
    /// How many times it opened (from closed or half-open).
    pub opened: u64,
    /// Commands failed with [`Error::CircuitOpen`] without being sent.
    pub rejected: u64,
    /// Commands held at an open circuit (wait mode, or during a handoff), whatever came of them.
    pub held: u64,
    /// Half-open probes let through.
    pub probes: u64,
    /// The current run of failures.
    pub consecutive_failures: u32,
    /// Calls counted in the failure-rate window.
    pub window_calls: u64,
    /// Failures among them.
    pub window_failures: u64,
}

/// A handle on a circuit: its state and counters, and manual control. Cheap to clone.
///
/// Get one from [`CircuitBreakerLayer::handle`](super::CircuitBreakerLayer::handle) or
/// [`CircuitBreaker::handle`](super::CircuitBreaker::handle).
#[derive(Clone)]
pub struct CircuitHandle {
    pub(crate) shared: Arc<Shared>,
}

impl fmt::Debug for CircuitHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CircuitHandle")
            .field("endpoint", &self.shared.endpoint)
            .field("word", &self.shared.word())
            .finish()
    }
}

impl CircuitHandle {
    /// The configured endpoint this circuit guards.
    pub fn endpoint(&self) -> &Endpoint {
        &self.shared.endpoint
    }

    /// Where the circuit is now.
    pub fn state(&self) -> CircuitState {
        self.shared.word().state()
    }

    /// Why it opened, while it is open or half-open.
    pub fn open_reason(&self) -> Option<Arc<str>> {
        (self.state() != CircuitState::Closed).then(|| {
            self.shared
                .reason
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .clone()
        })
    }

    /// Counters and state.
    pub fn stats(&self) -> CircuitStats {
        self.shared.stats()
    }

    /// Opens the circuit by hand. It stays open, whatever the events and timers say, until
    /// [`reset`](Self::reset).
    pub fn force_open(&self, reason: impl Into<Arc<str>>) {
        self.shared.open(None, Cause::Forced, reason.into());
    }

    /// Closes the circuit and forgets the failures counted so far (and the backoff).
    pub fn reset(&self) {
        self.shared.reset();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_word_packs_its_fields() {
        let w = Word::new(CircuitState::HalfOpen, Cause::Azure, 7, 123_456);
        assert_eq!(w.state(), CircuitState::HalfOpen);
        assert_eq!(w.cause(), Cause::Azure);
        assert_eq!(w.probes_left(), 7);
        assert_eq!(w.successes(), 0);
        assert_eq!(w.generation(), 123_456);
        let w = Word(w.0 + (3 << SUCCESSES_SHIFT) - (1 << PROBES_SHIFT));
        assert_eq!((w.probes_left(), w.successes()), (6, 3));
        assert_eq!(
            Word::new(CircuitState::Open, Cause::Forced, 255, 1).probes_left(),
            255
        );
    }
}
