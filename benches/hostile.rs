//! What a large reply arriving in small reads costs the connection's frame scanner: a RESP3
//! array of `:1\r\n` integers (one payload byte each, the most elements a frame of that size can
//! hold but for nulls) against one bulk string of the same size, both handed to
//! `FrameScanner::next_frame` one read at a time, as the connection's I/O task does.
//!
//! ```sh
//! cargo bench --bench hostile                  # 64 MiB frames in 4 KiB reads
//! HOSTILE_MIB=4 HOSTILE_READ=1024 cargo bench --bench hostile
//! ```
//!
//! For each frame it prints the scan throughput while the frame arrives (the time spent in the
//! `next_frame` calls that return no frame yet, and that time with the copying of each read into
//! the buffer), the cost of the last call (its read and the decode of the whole frame), the
//! throughput from the first read to the decoded frame, and the peak memory above what the
//! bench held before the first read, while the frame arrives and with the decoded frame, as
//! multiples of the frame size.
//!
//! The limits are the defaults, which take the 64 MiB array's 16,777,214 values; for larger
//! frames the bench raises `max_frame_size` and `max_elements` as far as they need and says so.
//!
//! Peak memory is shown twice: counted by the allocator, where a `realloc` counts its old and
//! new blocks together, and as the resident set's high-water mark (`VmHWM` after resetting it).
//!
//! A second table shows the other end: the cost per call of small replies as the hot path sees
//! them (an integer, `+OK`, a 10-element array of short bulk strings, a 5-field map), taken off a
//! buffer holding many of them by `next_frame`, by the scan followed by redis-protocol's
//! `decode_bytes_mut`, and by `decode_bytes_mut` alone; the best of five runs.

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::BytesMut;

#[path = "support/env.rs"]
mod env;
#[path = "support/table.rs"]
mod table;

use env::Env;
use table::Table;

// The connection's scanner and decoder, compiled from their own source: they are private to the
// crate and need nothing of it but `crate::error::Error::protocol`, which `error` below provides.
#[allow(dead_code)]
#[path = "../src/connection/codec.rs"]
mod codec;
// Its tests' helpers come along, their tests do not.
#[allow(dead_code, unused_imports)]
#[path = "../src/connection/decode.rs"]
mod decode;

mod error {
    use std::fmt;
    use std::sync::Arc;

    /// What the scanner refused a frame for.
    #[derive(Debug)]
    pub(crate) struct Error(Arc<str>);

    impl Error {
        pub(crate) fn protocol(message: impl Into<Arc<str>>) -> Self {
            Error(message.into())
        }
    }

    impl fmt::Display for Error {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(&self.0)
        }
    }
}

use codec::{FrameScanner, Limits, Scan};

// ===== counting the heap =====

static CURRENT: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

struct Counting;

fn grew(by: usize, momentary: usize) {
    let now = CURRENT.fetch_add(by, Ordering::Relaxed) + by;
    PEAK.fetch_max(now.max(momentary), Ordering::Relaxed);
}

// SAFETY: every call is passed on to the system allocator unchanged; only sizes are counted.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = System.alloc(layout);
        if !p.is_null() {
            grew(layout.size(), 0);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = System.alloc_zeroed(layout);
        if !p.is_null() {
            grew(layout.size(), 0);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout);
        CURRENT.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = System.realloc(ptr, layout, new_size);
        if !p.is_null() {
            let old = layout.size();
            if new_size >= old {
                let both = CURRENT.load(Ordering::Relaxed) + new_size;
                grew(new_size - old, both);
            } else {
                CURRENT.fetch_sub(old - new_size, Ordering::Relaxed);
            }
        }
        p
    }
}

#[global_allocator]
static HEAP: Counting = Counting;

// ===== the frames =====

/// An array of `:1\r\n` filling `size` bytes, and how many elements it holds.
fn integer_array(size: usize) -> (Vec<u8>, usize) {
    let mut n = size / 4;
    while format!("*{n}\r\n").len() + 4 * n > size {
        n -= 1;
    }
    let mut out = format!("*{n}\r\n").into_bytes();
    out.reserve(4 * n);
    for _ in 0..n {
        out.extend_from_slice(b":1\r\n");
    }
    (out, n + 1)
}

/// One bulk string of `size` bytes, headers included.
fn bulk_string(size: usize) -> Vec<u8> {
    let mut len = size - 4;
    while format!("${len}\r\n").len() + len + 2 > size {
        len -= 1;
    }
    let mut out = format!("${len}\r\n").into_bytes();
    out.resize(out.len() + len, b'x');
    out.extend_from_slice(b"\r\n");
    out
}

// ===== one run =====

struct Run {
    reads: usize,
    // In `next_frame` before the frame was whole; and with the copies of the reads.
    arriving: Duration,
    with_copies: Duration,
    last: Duration,
    peak_arriving: usize,
    peak_decoded: usize,
    peak_rss: Option<usize>,
}

/// Resets the process's peak resident set size (Linux: `clear_refs`), so that `VmHWM` shows
/// the peak of what follows.
fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

fn status_bytes(field: &str) -> Option<usize> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    let kb: usize = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

const READ_CHUNK: usize = 16 * 1024;

/// Feeds `frame` to a scanner `read` bytes at a time, growing the buffer as the I/O task does.
fn run(frame: &[u8], read: usize, limits: Limits) -> Result<Run, String> {
    let mut scanner = FrameScanner::new(limits);
    let rss = (reset_peak_rss().then(|| status_bytes("VmRSS:"))).flatten();
    let base = CURRENT.load(Ordering::Relaxed);
    PEAK.store(base, Ordering::Relaxed);
    let mut buf = BytesMut::with_capacity(READ_CHUNK);
    let mut arriving = Duration::ZERO;
    let mut reads = 0;
    let began = Instant::now();
    for chunk in frame.chunks(read) {
        if buf.capacity() - buf.len() < READ_CHUNK / 4 {
            buf.reserve(READ_CHUNK);
        }
        buf.extend_from_slice(chunk);
        reads += 1;
        let last = reads * read >= frame.len();
        if last {
            let with_copies = began.elapsed();
            let peak_arriving = PEAK.load(Ordering::Relaxed) - base;
            let start = Instant::now();
            let got = scanner.next_frame(&mut buf).map_err(|e| e.to_string())?;
            let last = start.elapsed();
            let peak_decoded = PEAK.load(Ordering::Relaxed) - base;
            let peak_rss =
                rss.and_then(|before| Some(status_bytes("VmHWM:")?.saturating_sub(before)));
            if got.is_none() || !buf.is_empty() {
                return Err("the frame did not come out whole at its last byte".into());
            }
            drop(black_box(got));
            return Ok(Run {
                reads,
                arriving,
                with_copies,
                last,
                peak_arriving,
                peak_decoded,
                peak_rss,
            });
        }
        let start = Instant::now();
        let got = scanner.next_frame(&mut buf).map_err(|e| e.to_string())?;
        arriving += start.elapsed();
        if got.is_some() {
            return Err("a frame came out before its last byte".into());
        }
    }
    Err("no bytes".into())
}

// ===== small replies =====

/// Typical replies: what `INCR`, `SET`, `LRANGE 0 9` and `HGETALL` of five fields return.
fn small_replies() -> Vec<(&'static str, Vec<u8>)> {
    let mut array = b"*10\r\n".to_vec();
    for i in 0..10 {
        array.extend_from_slice(format!("$8\r\nvalue-{i:02}\r\n").as_bytes());
    }
    let mut map = b"%5\r\n".to_vec();
    for i in 0..5 {
        map.extend_from_slice(format!("$7\r\nfield-{i}\r\n$7\r\nvalue-{i}\r\n").as_bytes());
    }
    vec![
        ("integer", b":12345\r\n".to_vec()),
        ("+OK", b"+OK\r\n".to_vec()),
        ("array of 10 bulk strings", array),
        ("map of 5 fields", map),
    ]
}

const SMALL_FRAMES: usize = 100_000;

/// Nanoseconds per frame taking `SMALL_FRAMES` copies of `frame` off one buffer with `take`,
/// the best of five runs.
fn per_frame(frame: &[u8], mut take: impl FnMut(&mut BytesMut) -> bool) -> f64 {
    let mut best = f64::INFINITY;
    for _ in 0..5 {
        let mut buf = BytesMut::with_capacity(frame.len() * SMALL_FRAMES);
        for _ in 0..SMALL_FRAMES {
            buf.extend_from_slice(frame);
        }
        let start = Instant::now();
        let mut n = 0;
        while take(&mut buf) {
            n += 1;
        }
        let took = start.elapsed();
        assert_eq!(n, SMALL_FRAMES, "every frame came out");
        best = best.min(took.as_secs_f64() * 1e9 / n as f64);
    }
    best
}

fn small_reply_table() -> Table {
    let mut rows = Vec::new();
    for (name, frame) in small_replies() {
        let mut scanner = FrameScanner::new(Limits::default());
        let ours = per_frame(&frame, |buf| {
            black_box(scanner.next_frame(buf).expect("a valid frame")).is_some()
        });
        let mut scanner = FrameScanner::new(Limits::default());
        let scan_then_theirs = per_frame(&frame, |buf| match scanner.scan(buf) {
            Ok(Scan::Complete(len)) => {
                let mut frame = buf.split_to(len);
                let got = redis_protocol::resp3::decode::complete::decode_bytes_mut(&mut frame);
                black_box(got.expect("a valid frame")).is_some()
            }
            _ => false,
        });
        let theirs = per_frame(&frame, |buf| {
            let got = redis_protocol::resp3::decode::complete::decode_bytes_mut(buf);
            black_box(got.expect("a valid frame")).is_some()
        });
        rows.push(vec![
            name.to_string(),
            frame.len().to_string(),
            format!("{ours:.0}"),
            format!("{scan_then_theirs:.0}"),
            format!("{theirs:.0}"),
        ]);
    }
    Table {
        header: [
            "reply",
            "bytes",
            "next_frame, ns",
            "scan + redis-protocol decode, ns",
            "redis-protocol decode alone, ns",
        ]
        .map(String::from)
        .to_vec(),
        rows,
        left: 1,
    }
}

fn mb_per_s(bytes: usize, d: Duration) -> f64 {
    bytes as f64 / 1e6 / d.as_secs_f64().max(1e-9)
}

fn main() {
    let mut env = Env::default();
    let (mib, read) = match (
        env.count("HOSTILE_MIB", 64),
        env.count("HOSTILE_READ", 4096),
    ) {
        (Ok(m), Ok(r)) => (m, r),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    let size = mib * 1024 * 1024;
    let (array, elements) = integer_array(size);
    let bulk = bulk_string(size);
    // The defaults, raised only where a frame this size needs it.
    let mut limits = Limits::default();
    let mut raised = Vec::new();
    if size > limits.max_frame_size {
        limits.max_frame_size = size;
        raised.push(format!("max_frame_size = {size}"));
    }
    if elements > limits.max_elements {
        limits.max_elements = elements;
        raised.push(format!("max_elements = {elements}"));
    }
    let cases = [
        (
            "array of :1 integers",
            &array[..],
            format!("{elements} elements"),
        ),
        ("bulk string", &bulk[..], "1 element".to_string()),
    ];
    let mut rows = Vec::new();
    let mut rates = Vec::new();
    for (name, frame, what) in cases {
        let r = match run(frame, read, limits) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("{name}: {e}");
                std::process::exit(1);
            }
        };
        let arrived = frame.len().saturating_sub(read);
        let rate = mb_per_s(arrived, r.arriving);
        let copied = mb_per_s(arrived, r.with_copies);
        let total = mb_per_s(frame.len(), r.with_copies + r.last);
        rates.push((rate, copied, total));
        let times = |bytes: usize| format!("{:.2}x", bytes as f64 / frame.len() as f64);
        rows.push(vec![
            name.to_string(),
            what,
            format!("{:.1} MiB", frame.len() as f64 / (1024.0 * 1024.0)),
            r.reads.to_string(),
            format!("{:.1} ms", r.arriving.as_secs_f64() * 1e3),
            format!("{rate:.0}"),
            format!("{copied:.0}"),
            format!("{:.1} ms", r.last.as_secs_f64() * 1e3),
            format!("{total:.0}"),
            times(r.peak_arriving),
            times(r.peak_decoded),
            r.peak_rss.map_or_else(|| "n/a".to_string(), times),
        ]);
    }
    let report = Table {
        header: [
            "frame",
            "elements",
            "size",
            "reads",
            "in next_frame while arriving",
            "scan MB/s",
            "with copying the reads, MB/s",
            "last read + decode",
            "with the decode, MB/s",
            "peak heap while arriving",
            "peak heap with decoded frame",
            "peak RSS with decoded frame",
        ]
        .map(String::from)
        .to_vec(),
        rows,
        left: 2,
    };
    println!("\nOne frame of {mib} MiB handed to FrameScanner::next_frame in {read}-byte reads\n");
    println!("{}", report.plain());
    let (array_rates, bulk_rates) = (rates[0], rates[1]);
    println!(
        "array / bulk string: scan MB/s {:.4}, with copying the reads {:.3}, with the decode {:.3}",
        array_rates.0 / bulk_rates.0.max(1e-9),
        array_rates.1 / bulk_rates.1.max(1e-9),
        array_rates.2 / bulk_rates.2.max(1e-9)
    );
    if raised.is_empty() {
        println!("limits: the defaults\n");
    } else {
        println!("limits: the defaults but {}\n", raised.join(", "));
    }
    println!("{}", report.markdown());
    let small = small_reply_table();
    println!(
        "Small replies, {SMALL_FRAMES} in one buffer, per frame (best of 5)\n\n{}\n",
        small.plain()
    );
    println!("{}", small.markdown());
    println!("command: {}", env.command_line("hostile"));
}
