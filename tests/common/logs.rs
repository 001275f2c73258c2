//! Log capture for tests that assert on what the crate logs: one global subscriber writing to
//! a per-thread buffer (each test runs its runtime on its own thread).

use std::cell::RefCell;
use std::io;
use std::sync::{Arc, Mutex, Once};

/// Log lines written on one test's thread.
#[derive(Clone, Default)]
pub struct CapturedLogs(Arc<Mutex<Vec<u8>>>);

thread_local! {
    static CAPTURE: RefCell<Option<CapturedLogs>> = const { RefCell::new(None) };
}

/// Writes to the capture of the current thread, if it has one.
struct ThreadWriter;

impl io::Write for ThreadWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        CAPTURE.with(|c| {
            if let Some(logs) = &*c.borrow() {
                logs.0.lock().unwrap().extend_from_slice(buf);
            }
        });
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Installs the one global subscriber (the first call in a test binary decides `filter` and
/// whether span closes are logged). A per-test `set_default` would race with other threads
/// registering the same call sites and miss events.
pub fn init(filter: &str, span_close: bool) {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        let spans = if span_close {
            tracing_subscriber::fmt::format::FmtSpan::CLOSE
        } else {
            tracing_subscriber::fmt::format::FmtSpan::NONE
        };
        let subscriber = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_span_events(spans)
            .with_ansi(false)
            .with_writer(|| ThreadWriter)
            .finish();
        tracing::subscriber::set_global_default(subscriber).expect("no other subscriber");
    });
}

impl CapturedLogs {
    /// Captures what this thread logs from now on.
    pub fn start() -> Self {
        let logs = CapturedLogs::default();
        CAPTURE.with(|c| *c.borrow_mut() = Some(logs.clone()));
        logs
    }

    /// The lines captured so far.
    pub fn lines(&self) -> Vec<String> {
        String::from_utf8_lossy(&self.0.lock().unwrap())
            .lines()
            .map(str::to_owned)
            .collect()
    }
}
