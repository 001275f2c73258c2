//! The lock-free recording side: log-linear latency buckets of counters, one set per thread,
//! and a fixed table of command names. Merged into `hdrhistogram` histograms only when a
//! snapshot is taken.

use std::cell::{Cell, RefCell};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock, Weak};
use std::time::Duration;

use hdrhistogram::Histogram;

// ===== buckets =====

/// Linear sub-buckets per power of two: 32, so a bucket is at most 1/32 of its value wide.
const SUB_BITS: u32 = 5;
const SUB: usize = 1 << SUB_BITS;
/// Values up to 2^40 ns (about 18 minutes) get their own bucket; longer ones share the last.
const MAX_BITS: u32 = 40;
/// The largest value recorded as itself, in nanoseconds.
pub(crate) const MAX_NANOS: u64 = (1 << MAX_BITS) - 1;
/// How many buckets a latency distribution has.
pub(crate) const BUCKETS: usize = (MAX_BITS - SUB_BITS + 1) as usize * SUB;

/// The bucket of a value in nanoseconds. Values below 64 ns have a bucket each; above that,
/// each power of two is split into 32 equal buckets.
#[inline]
pub(crate) fn bucket_of(nanos: u64) -> usize {
    if nanos < SUB as u64 {
        return nanos as usize;
    }
    let v = nanos.min(MAX_NANOS);
    let msb = 63 - v.leading_zeros();
    let shift = msb - SUB_BITS;
    ((shift as usize + 1) << SUB_BITS) + ((v >> shift) as usize - SUB)
}

/// The smallest value in bucket `index`, and the bucket's width.
fn bucket_bounds(index: usize) -> (u64, u64) {
    if index < SUB {
        return (index as u64, 1);
    }
    let row = index >> SUB_BITS;
    let shift = (row - 1) as u32;
    let sub = (index & (SUB - 1)) as u64;
    ((SUB as u64 + sub) << shift, 1 << shift)
}

/// The value a bucket stands for: its middle, so that the error is at most half its width.
pub(crate) fn bucket_value(index: usize) -> u64 {
    let (low, width) = bucket_bounds(index);
    low + width / 2
}

/// How many pages a distribution's buckets are kept in: one per row of [`SUB`] buckets.
const PAGES: usize = BUCKETS / SUB;

/// One latency distribution: a counter per bucket, kept in pages of one power of two each
/// ([`SUB`] counters), made when a value first falls in them. A command's latencies fill a few
/// powers of two, so a distribution takes a few hundred bytes instead of all 1,152 counters
/// (9 KiB) for every name on every thread of every stack.
pub(crate) struct Buckets {
    // A thin pointer, so that a table of distributions not yet made stays small.
    pages: Box<[OnceLock<Box<[AtomicU64; SUB]>>; PAGES]>,
}

impl Buckets {
    pub(crate) fn new() -> Self {
        Buckets {
            pages: Box::new(std::array::from_fn(|_| OnceLock::new())),
        }
    }

    /// The counter of bucket `index`, its page made if need be.
    #[inline]
    fn counter(&self, index: usize) -> Option<&AtomicU64> {
        let page = self.pages.get(index / SUB)?;
        let page = page.get_or_init(|| Box::new(std::array::from_fn(|_| AtomicU64::new(0))));
        page.get(index % SUB)
    }

    #[inline]
    pub(crate) fn record(&self, nanos: u64) {
        if let Some(c) = self.counter(bucket_of(nanos)) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub(crate) fn record_duration(&self, d: Duration) {
        self.record(nanos(d));
    }

    /// Adds these counts to `out`.
    pub(crate) fn add_to(&self, out: &mut [u64]) {
        for (p, page) in self.pages.iter().enumerate() {
            let Some(page) = page.get() else { continue };
            let at = p * SUB;
            for (o, c) in out.iter_mut().skip(at).zip(page.iter()) {
                *o += c.load(Ordering::Relaxed);
            }
        }
    }

    pub(crate) fn counts(&self) -> Vec<u64> {
        let mut out = vec![0; BUCKETS];
        self.add_to(&mut out);
        out
    }
}

pub(crate) fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// An empty histogram with the range and precision the buckets need: 1 ns to 2^40 ns, two
/// significant digits (finer than the buckets, so it adds under 1%).
pub(crate) fn empty_histogram() -> Histogram<u64> {
    // The bounds are constants that hdrhistogram accepts; the fallback is never taken.
    Histogram::new_with_bounds(1, MAX_NANOS, 2)
        .or_else(|_| Histogram::new(2))
        .unwrap_or_else(|_| unreachable!("two significant digits are valid"))
}

/// Merges bucket counts into an hdrhistogram, each bucket at its middle value.
pub(crate) fn to_histogram(counts: &[u64]) -> Histogram<u64> {
    let mut h = empty_histogram();
    for (i, &n) in counts.iter().enumerate() {
        if n > 0 {
            h.saturating_record_n(bucket_value(i).clamp(1, MAX_NANOS), n);
        }
    }
    h
}

// ===== the clock =====

static CLOCK: OnceLock<quanta::Clock> = OnceLock::new();

/// The clock commands are timed with: the CPU's time-stamp counter where it is reliable
/// (calibrated once against the OS clock), the OS monotonic clock otherwise. Reading it costs a
/// fraction of what `std::time::Instant::now` does.
#[inline]
pub(crate) fn clock() -> &'static quanta::Clock {
    CLOCK.get_or_init(quanta::Clock::new)
}

// ===== per-thread recorders =====

/// The ways a command can fail, counted apart; `ok` is the rest of the latency count.
pub(crate) const ERROR_KINDS: usize = 7;

/// What became of one command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Failure {
    Server = 0,
    Timeout = 1,
    RelaxedTimeout = 2,
    CircuitOpen = 3,
    Connection = 4,
    Other = 5,
    /// Dropped before it finished: counted, but its time is not recorded.
    Cancelled = 6,
}

/// Adds one to a counter that only one thread writes: a plain load and store, no locked
/// instruction. Readers on other threads see every increment once the writer is done.
#[inline]
fn bump_owned(counter: &AtomicU64) {
    counter.store(
        counter.load(Ordering::Relaxed).wrapping_add(1),
        Ordering::Relaxed,
    );
}

/// Name slots per page of a thread's latency table.
const LATENCY_PAGE: usize = 8;

type LatencyPage = Box<[OnceLock<Buckets>; LATENCY_PAGE]>;

/// One thread's counters for one [`CommandRecorder`]: written by that thread alone.
struct ThreadRecorder {
    // The thread's number (see `thread_number`); 0 for the shared recorder.
    owner: u64,
    failures: [AtomicU64; ERROR_KINDS],
    // One distribution per name slot, plus "other"; made on first use, in pages of
    // `LATENCY_PAGE` slots, so that a thread that saw a few names holds a few pages.
    latency: Box<[OnceLock<LatencyPage>]>,
}

impl ThreadRecorder {
    fn new(owner: u64) -> Self {
        ThreadRecorder {
            owner,
            failures: Default::default(),
            latency: (0..=NAME_SLOTS / LATENCY_PAGE)
                .map(|_| OnceLock::new())
                .collect(),
        }
    }

    /// The distribution of name slot `slot` (made or not), its page made if need be.
    #[inline]
    fn distribution(&self, slot: usize) -> Option<&OnceLock<Buckets>> {
        let page = self.latency.get(slot / LATENCY_PAGE)?;
        page.get_or_init(|| Box::new(std::array::from_fn(|_| OnceLock::new())))
            .get(slot % LATENCY_PAGE)
    }

    /// The distribution of name slot `slot`, if one was made.
    fn made(&self, slot: usize) -> Option<&Buckets> {
        self.latency
            .get(slot / LATENCY_PAGE)?
            .get()?
            .get(slot % LATENCY_PAGE)?
            .get()
    }

    /// Records one command. `owned`: the calling thread is the only writer (else the
    /// increments are atomic read-modify-writes).
    #[inline]
    fn record(&self, event: &Finished, owned: bool) {
        let bump = |c: &AtomicU64| {
            if owned {
                bump_owned(c)
            } else {
                c.fetch_add(1, Ordering::Relaxed);
            }
        };
        if let Some(elapsed) = event.elapsed {
            if let Some(b) = self.distribution(event.slot) {
                if let Some(c) = b
                    .get_or_init(Buckets::new)
                    .counter(bucket_of(nanos(elapsed)))
                {
                    bump(c);
                }
            }
        }
        if let Some(f) = event.failure {
            bump(&self.failures[f as usize]);
        }
    }
}

/// A finished (or cancelled) command, as recorded.
pub(crate) struct Finished {
    /// Its name slot.
    pub(crate) slot: usize,
    /// Its time; `None` when it was cancelled.
    pub(crate) elapsed: Option<Duration>,
    /// How it failed, if it did.
    pub(crate) failure: Option<Failure>,
}

/// Every thread recorder of one [`CommandRecorder`].
#[derive(Default)]
struct Recorders {
    threads: Mutex<Vec<Arc<ThreadRecorder>>>,
    // For a thread whose thread-locals are already gone (it is exiting): shared, atomic.
    shared: OnceLock<ThreadRecorder>,
}

/// The live command recorders by id, for a thread's first record into one.
static REGISTRY: RwLock<Vec<(u64, Weak<Recorders>)>> = RwLock::new(Vec::new());
static NEXT_ID: AtomicU64 = AtomicU64::new(1);
static NEXT_THREAD: AtomicU64 = AtomicU64::new(1);
/// How many command recorders a thread keeps at hand. A thread that records into more, in
/// turn, finds the others again through the registry, under a lock.
const CACHED: usize = 32;

type Cached = (u64, Arc<ThreadRecorder>, Weak<Recorders>);

thread_local! {
    // This thread's recorders, by command recorder id, the most recently added first.
    static LOCAL: RefCell<Vec<Cached>> = const { RefCell::new(Vec::new()) };
    // This thread's number, given on first use; 0 until then.
    static THREAD: Cell<u64> = const { Cell::new(0) };
}

/// A number for the calling thread, the same for its whole life; `None` while it is exiting.
fn thread_number() -> Option<u64> {
    THREAD
        .try_with(|t| {
            if t.get() == 0 {
                t.set(NEXT_THREAD.fetch_add(1, Ordering::Relaxed));
            }
            t.get()
        })
        .ok()
}

/// The command-path recorder: per-name latency distributions and failure counts, one set per
/// thread (each written by its thread alone), merged when read.
pub(crate) struct CommandRecorder {
    id: u64,
    recorders: Arc<Recorders>,
    pub(crate) names: Names,
}

impl CommandRecorder {
    pub(crate) fn new() -> Self {
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        let recorders = Arc::new(Recorders::default());
        let mut registry = REGISTRY.write().unwrap_or_else(|p| p.into_inner());
        registry.retain(|(_, r)| r.strong_count() > 0);
        registry.push((id, Arc::downgrade(&recorders)));
        CommandRecorder {
            id,
            recorders,
            names: Names::new(),
        }
    }

    /// The id commands in flight carry to find this recorder again.
    #[cfg(test)]
    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    /// The id, as commands in flight carry it (ids count from 1, so it is never 0).
    #[inline]
    pub(crate) fn key(&self) -> std::num::NonZeroU64 {
        std::num::NonZeroU64::new(self.id).unwrap_or(std::num::NonZeroU64::MAX)
    }

    fn all(&self) -> Vec<Arc<ThreadRecorder>> {
        self.recorders
            .threads
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The failure counts, summed over the threads.
    pub(crate) fn failures(&self) -> [u64; ERROR_KINDS] {
        let mut out = [0; ERROR_KINDS];
        let all = self.all();
        for t in all.iter().map(|t| &**t).chain(self.recorders.shared.get()) {
            for (o, c) in out.iter_mut().zip(t.failures.iter()) {
                *o += c.load(Ordering::Relaxed);
            }
        }
        out
    }

    /// The latency counts of one name slot (or [`OTHER`]), summed over the threads; `None`
    /// when nothing was recorded there.
    pub(crate) fn slot_counts(&self, slot: usize) -> Option<Vec<u64>> {
        let mut out: Option<Vec<u64>> = None;
        let all = self.all();
        for t in all.iter().map(|t| &**t).chain(self.recorders.shared.get()) {
            if let Some(b) = t.made(slot) {
                b.add_to(out.get_or_insert_with(|| vec![0; BUCKETS]));
            }
        }
        out
    }
}

impl Drop for CommandRecorder {
    fn drop(&mut self) {
        REGISTRY
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|(id, r)| *id != self.id && r.strong_count() > 0);
    }
}

/// Records a command into the calling thread's recorder of command recorder `id`; dropped if
/// that recorder is gone.
#[inline]
pub(crate) fn record(id: u64, event: Finished) {
    let recorded = LOCAL
        .try_with(|local| match local.try_borrow() {
            Ok(local) => match local.iter().find(|(i, _, _)| *i == id) {
                Some((_, r, _)) => {
                    r.record(&event, true);
                    true
                }
                None => false,
            },
            Err(_) => false,
        })
        .unwrap_or(false);
    if !recorded {
        record_first(id, &event);
    }
}

/// A thread's first record into a recorder (or the first since it left the thread's cache):
/// finds or makes the thread's own counters there, and keeps them at hand.
#[cold]
fn record_first(id: u64, event: &Finished) {
    let recorders = REGISTRY
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .find(|(i, _)| *i == id)
        .and_then(|(_, r)| r.upgrade());
    let Some(recorders) = recorders else {
        // The Metrics handle is gone: nobody will read it.
        return;
    };
    let Some(me) = thread_number() else {
        // The thread is exiting and its thread-locals are gone: count atomically instead.
        recorders
            .shared
            .get_or_init(|| ThreadRecorder::new(0))
            .record(event, false);
        return;
    };
    let mine = {
        let mut threads = recorders.threads.lock().unwrap_or_else(|p| p.into_inner());
        match threads.iter().find(|t| t.owner == me) {
            Some(t) => t.clone(),
            None => {
                let t = Arc::new(ThreadRecorder::new(me));
                threads.push(t.clone());
                t
            }
        }
    };
    // Only this thread writes to its own counters, whether or not they are cached.
    mine.record(event, true);
    let _ = LOCAL.try_with(|local| {
        if let Ok(mut local) = local.try_borrow_mut() {
            local.retain(|(_, _, alive)| alive.strong_count() > 0);
            local.truncate(CACHED - 1);
            local.insert(0, (id, mine, Arc::downgrade(&recorders)));
        }
    });
}

// ===== command names =====

/// Slots in the name table: twice the names kept, so a lookup finds an empty slot quickly.
const NAME_SLOTS: usize = 128;
/// How many distinct command names get their own distribution; the rest count as "other".
pub(crate) const MAX_NAMES: usize = 64;
/// The slot of every name beyond the first [`MAX_NAMES`].
pub(crate) const OTHER: usize = NAME_SLOTS;
/// Longer names are not kept (no Redis command is this long).
const MAX_NAME_LEN: usize = 32;

/// A fixed table of command names, filled by compare-and-swap: a name is looked up by its hash
/// with a few atomic loads and no lock.
///
/// Two different names with the same 64-bit hash would share a slot (under the first one's
/// name); with at most 64 names that is too unlikely to matter.
pub(crate) struct Names {
    keys: Box<[AtomicU64]>,
    // Written once per name and read by snapshots only: a short list, not a slot per entry.
    texts: Mutex<Vec<(usize, Box<str>)>>,
    claimed: AtomicUsize,
}

/// Bit 5 of every byte: cleared, it folds ASCII letters to upper case, so that "get" and
/// "GET" are the same command (command names are letters).
const FOLD: u64 = !0x2020_2020_2020_2020;

#[inline]
fn mix(h: u64, word: u64) -> u64 {
    let h = (h ^ word).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^ (h >> 31)
}

/// The little-endian word of at most eight bytes, in two loads that may overlap (the bytes
/// they share land in the same places), not a loop over the bytes: every command's name is
/// hashed, and most names are three to eight bytes.
#[inline]
fn short_word(b: &[u8]) -> u64 {
    let n = b.len();
    if let (Some(lo), Some(hi)) = (b.first_chunk::<4>(), b.last_chunk::<4>()) {
        // Four to eight bytes.
        u64::from(u32::from_le_bytes(*lo)) | u64::from(u32::from_le_bytes(*hi)) << (8 * (n - 4))
    } else if let (Some(&first), Some(&last)) = (b.first(), b.last()) {
        // One to three bytes: the first, the middle and the last.
        let mid = b.get(n / 2).copied().unwrap_or(first);
        u64::from(first) | u64::from(mid) << (8 * (n / 2)) | u64::from(last) << (8 * (n - 1))
    } else {
        0
    }
}

#[inline]
fn name_hash(name: &[u8]) -> u64 {
    // Eight bytes at a time, letters folded to upper case.
    let mut h: u64 = 0x9e37_79b9_7f4a_7c15 ^ name.len() as u64;
    let mut words = name.chunks_exact(8);
    for word in &mut words {
        h = mix(h, short_word(word) & FOLD);
    }
    let rest = words.remainder();
    if !rest.is_empty() {
        h = mix(h, short_word(rest) & FOLD);
    }
    // 0 marks an empty slot.
    h.max(1)
}

impl Names {
    fn new() -> Self {
        Names {
            keys: (0..NAME_SLOTS).map(|_| AtomicU64::new(0)).collect(),
            texts: Mutex::new(Vec::new()),
            claimed: AtomicUsize::new(0),
        }
    }

    /// The slot of a command name, claiming a free one for a new name while fewer than
    /// [`MAX_NAMES`] are kept; [`OTHER`] otherwise.
    #[inline]
    pub(crate) fn slot(&self, name: &[u8]) -> usize {
        if name.is_empty() || name.len() > MAX_NAME_LEN {
            return OTHER;
        }
        let h = name_hash(name);
        let mut i = (h ^ (h >> 32)) as usize & (NAME_SLOTS - 1);
        let mut reserved = false;
        for _ in 0..NAME_SLOTS {
            let key = self.keys[i].load(Ordering::Acquire);
            if key == h {
                self.release(reserved);
                return i;
            }
            if key == 0 {
                // Not kept yet (names are never removed, so it is not further on).
                if !reserved {
                    if !self.reserve() {
                        return OTHER;
                    }
                    reserved = true;
                }
                match self.keys[i].compare_exchange(0, h, Ordering::AcqRel, Ordering::Acquire) {
                    Ok(_) => {
                        let text = String::from_utf8_lossy(name).to_ascii_uppercase();
                        self.texts
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .push((i, text.into_boxed_str()));
                        return i;
                    }
                    Err(now) if now == h => {
                        self.release(true);
                        return i;
                    }
                    // Another name took the slot first: look further.
                    Err(_) => {}
                }
            }
            i = (i + 1) & (NAME_SLOTS - 1);
        }
        self.release(reserved);
        OTHER
    }

    fn reserve(&self) -> bool {
        // A plain load first: once the table is full, "other" names cost no write.
        self.claimed.load(Ordering::Relaxed) < MAX_NAMES
            && self
                .claimed
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                    (n < MAX_NAMES).then_some(n + 1)
                })
                .is_ok()
    }

    fn release(&self, reserved: bool) {
        if reserved {
            self.claimed.fetch_sub(1, Ordering::AcqRel);
        }
    }

    /// The kept names and their slots.
    pub(crate) fn entries(&self) -> Vec<(usize, String)> {
        let mut out = Vec::new();
        for i in 0..NAME_SLOTS {
            if self.keys[i].load(Ordering::Acquire) == 0 {
                continue;
            }
            // The claimer writes the text right after the key; wait for it if we are between.
            let text = |i: usize| {
                self.texts
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .iter()
                    .find(|(at, _)| *at == i)
                    .map(|(_, t)| t.to_string())
            };
            let mut found = text(i);
            for _ in 0..1000 {
                if found.is_some() {
                    break;
                }
                std::thread::yield_now();
                found = text(i);
            }
            out.push((i, found.unwrap_or_else(|| "?".to_string())));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The hash as it reads, one byte at a time: what the word-at-a-time one must give.
    fn name_hash_bytewise(name: &[u8]) -> u64 {
        let mut h: u64 = 0x9e37_79b9_7f4a_7c15 ^ name.len() as u64;
        let (mut word, mut shift) = (0u64, 0);
        for &b in name {
            word |= u64::from(b & 0xdf) << shift;
            shift += 8;
            if shift == 64 {
                h = mix(h, word);
                (word, shift) = (0, 0);
            }
        }
        if shift > 0 {
            h = mix(h, word);
        }
        h.max(1)
    }

    #[test]
    fn names_hash_as_their_bytes_say_and_letters_fold_to_upper_case() {
        let text: Vec<u8> = (0..40u32).map(|i| b'a' + (i * 7 % 26) as u8).collect();
        for n in 0..=text.len() {
            let name = &text[..n];
            assert_eq!(name_hash(name), name_hash_bytewise(name), "{n} bytes");
            assert_eq!(name_hash(name), name_hash(&name.to_ascii_uppercase()));
        }
        assert_ne!(name_hash(b"GET"), name_hash(b"SET"));
        assert_ne!(name_hash(b"GETEX"), name_hash(b"GETDEL"));
        // Every byte counts: names that differ in one place only.
        let base = *b"HGETALLX";
        for i in 0..base.len() {
            let mut other = base;
            other[i] ^= 0x01;
            assert_ne!(name_hash(&base), name_hash(&other), "byte {i}");
        }
    }

    #[test]
    fn buckets_cover_every_value_in_order_and_within_a_32nd() {
        for v in (0..5000u64)
            .chain((0..40).map(|s| 1u64 << s))
            .chain([MAX_NANOS])
        {
            let b = bucket_of(v);
            assert!(b < BUCKETS, "{v} -> {b}");
            let (low, width) = bucket_bounds(b);
            assert!(
                low <= v && v < low + width,
                "{v} in [{low}, {})",
                low + width
            );
            assert!(width == 1 || width * 32 <= low, "bucket of {v} is too wide");
        }
        assert!((1..5000u64).all(|v| bucket_of(v) >= bucket_of(v - 1)));
        assert_eq!(bucket_of(u64::MAX), BUCKETS - 1);
        assert_eq!(bucket_of(MAX_NANOS), BUCKETS - 1);
    }

    #[test]
    fn the_middle_of_a_bucket_is_within_two_percent_of_its_values() {
        for v in [
            100u64,
            1_000,
            12_345,
            1_000_000,
            5_000_000,
            123_456_789,
            9_999_999_999,
        ] {
            let m = bucket_value(bucket_of(v));
            let err = m.abs_diff(v) as f64 / v as f64;
            assert!(err <= 1.0 / 64.0 + 1e-9, "{v}: {m} ({err})");
        }
    }

    fn finished(slot: usize) -> Finished {
        Finished {
            slot,
            elapsed: Some(Duration::from_micros(100)),
            failure: None,
        }
    }

    #[test]
    fn a_thread_recording_into_many_handles_in_turn_keeps_one_set_of_counters_each() {
        let recorders: Vec<CommandRecorder> =
            (0..CACHED + 8).map(|_| CommandRecorder::new()).collect();
        for _ in 0..3 {
            for r in &recorders {
                record(r.id(), finished(OTHER));
            }
        }
        for r in &recorders {
            assert_eq!(r.all().len(), 1);
            assert_eq!(r.slot_counts(OTHER).map(|c| c.iter().sum::<u64>()), Some(3));
        }
    }

    #[test]
    fn records_for_a_dropped_recorder_are_dropped() {
        let r = CommandRecorder::new();
        let id = r.id();
        record(id, finished(OTHER));
        drop(r);
        record(id, finished(OTHER));
        let fresh = CommandRecorder::new();
        assert_ne!(fresh.id(), id);
        assert_eq!(fresh.slot_counts(OTHER), None);
    }

    #[test]
    fn names_are_case_blind_and_bounded() {
        let names = Names::new();
        let get = names.slot(b"GET");
        assert_eq!(names.slot(b"get"), get);
        assert_ne!(names.slot(b"SET"), get);
        for i in 0..200 {
            names.slot(format!("CMD{i}").as_bytes());
        }
        let entries = names.entries();
        assert_eq!(entries.len(), MAX_NAMES);
        assert!(entries.iter().any(|(s, n)| *s == get && n == "GET"));
        assert_eq!(names.slot(b"NEVER-SEEN"), OTHER);
        assert_eq!(names.slot(b""), OTHER);
        assert_eq!(names.slot(b"GET"), get);
    }

    #[test]
    fn names_claimed_from_many_threads_are_kept_once() {
        let names = std::sync::Arc::new(Names::new());
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let names = names.clone();
                std::thread::spawn(move || {
                    (0..40)
                        .map(|i| names.slot(format!("C{i}").as_bytes()))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let seen: Vec<Vec<usize>> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        assert!(seen.windows(2).all(|w| w[0] == w[1]));
        assert_eq!(names.entries().len(), 40);
    }
}
