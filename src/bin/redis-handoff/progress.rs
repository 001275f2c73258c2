//! The drill's progress on stderr: a live bar on a terminal, a plain line every 2 s otherwise.
//!
//! While a bar is drawn, log lines go around it ([`Logs`]): the bar is taken off, the line
//! printed, the bar drawn again below it, so that neither garbles the other.

use std::fmt;
use std::io::{self, IsTerminal, Write};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle, TermLike};
use redis_handoff::drill::{Progress, ProgressSnapshot};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tracing_subscriber::fmt::MakeWriter;

/// How often a plain line is printed.
const PLAIN_EVERY: Duration = Duration::from_secs(2);
/// How often the bar is brought up to date.
const BAR_EVERY: Duration = Duration::from_millis(200);
/// The most times a second the bar is drawn.
const BAR_HZ: u8 = 10;
/// The width a bar assumes when it is drawn to something that is not a terminal.
const SINK_WIDTH: u16 = 100;
/// `label: [####>-----] 1.2/3.0 s  1234 commands  0 failed  migrate`
const TEMPLATE: &str = "{prefix}: [{bar:24}] {drill}";

/// How the progress shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// A bar redrawn a few times a second.
    Bar,
    /// A line every 2 s.
    Plain,
    /// Nothing.
    Off,
}

impl Mode {
    /// A bar when stderr is a terminal, plain lines when it is not (a pipe, a file, CI).
    pub(crate) fn auto() -> Mode {
        if io::stderr().is_terminal() {
            Mode::Bar
        } else {
            Mode::Plain
        }
    }
}

/// The progress of one drill being shown, until [`Display::finish`].
pub(crate) struct Display {
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl Display {
    /// Stops showing the progress; a bar is cleared off the screen.
    pub(crate) async fn finish(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }
}

/// Shows `progress` on stderr the way `mode` says, until [`Display::finish`].
pub(crate) fn spawn(progress: Progress, label: &'static str, mode: Mode) -> Option<Display> {
    match mode {
        Mode::Off => None,
        Mode::Plain => Some(plain(progress, label)),
        Mode::Bar => {
            let target = if io::stderr().is_terminal() {
                ProgressDrawTarget::stderr_with_hz(BAR_HZ)
            } else {
                // Asked for by name where there is no terminal: drawn all the same (indicatif
                // hides a bar on a stderr that is not a terminal).
                ProgressDrawTarget::term_like_with_hz(
                    Box::new(AnsiSink::new(io::stderr(), SINK_WIDTH)),
                    BAR_HZ,
                )
            };
            Some(bar(progress, label, target))
        }
    }
}

/// The plain line, printed every [`PLAIN_EVERY`].
fn plain(progress: Progress, label: &'static str) -> Display {
    let (stop, mut stopped) = oneshot::channel();
    let task = tokio::spawn(async move {
        let mut tick = tokio::time::interval(PLAIN_EVERY);
        tick.tick().await;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = &mut stopped => break,
            }
            let mut err = io::stderr().lock();
            let _ = writeln!(err, "{}", line(label, &progress.snapshot()));
            let _ = err.flush();
        }
    });
    Display { stop, task }
}

/// The bar, drawn to `target`.
fn bar(progress: Progress, label: &'static str, target: ProgressDrawTarget) -> Display {
    let bar = ProgressBar::with_draw_target(Some(1), target);
    bar.set_style(style(progress.clone()));
    bar.set_prefix(label);
    set_shown(Some(bar.clone()));
    let (stop, mut stopped) = oneshot::channel();
    let task = tokio::spawn(async move {
        let mut tick = tokio::time::interval(BAR_EVERY);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = &mut stopped => break,
            }
            update(&bar, &progress.snapshot());
        }
        set_shown(None);
        bar.finish_and_clear();
    });
    Display { stop, task }
}

/// [`TEMPLATE`], its `{drill}` read from `progress` each time the bar is drawn.
fn style(progress: Progress) -> ProgressStyle {
    // The template is a constant known to parse; the default bar is only a fallback.
    ProgressStyle::with_template(TEMPLATE)
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("#>-")
        .with_key(
            "drill",
            move |_: &ProgressState, out: &mut dyn fmt::Write| {
                let _ = out.write_str(&fields(&progress.snapshot()));
            },
        )
}

/// Brings the bar up to date, in one draw: its length is the planned time, its position the
/// elapsed time.
fn update(bar: &ProgressBar, s: &ProgressSnapshot) {
    let millis = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    let planned = millis(s.planned).max(1);
    let elapsed = millis(s.elapsed).min(planned);
    bar.update(|state| {
        state.set_len(planned);
        state.set_pos(elapsed);
    });
}

/// The plain line: `full stack: 1.2/3.0 s  1234 commands  0 failed  migrate`.
fn line(label: &str, s: &ProgressSnapshot) -> String {
    format!("{label}: {}", fields(s))
}

/// What both the bar and the plain line say: elapsed and planned time, commands, failures and
/// what the drill is doing.
fn fields(s: &ProgressSnapshot) -> String {
    let planned = s.planned.as_secs_f64().max(0.001);
    let elapsed = s.elapsed.as_secs_f64();
    format!(
        "{elapsed:.1}/{planned:.1} s  {} commands  {} failed  {}",
        s.commands, s.failed, s.phase
    )
}

// ===== log lines around the bar =====

/// The bar on the screen, if any: log lines are printed around it.
static SHOWN: Mutex<Option<ProgressBar>> = Mutex::new(None);

fn set_shown(bar: Option<ProgressBar>) {
    *SHOWN.lock().unwrap_or_else(PoisonError::into_inner) = bar;
}

fn shown() -> Option<ProgressBar> {
    SHOWN.lock().unwrap_or_else(PoisonError::into_inner).clone()
}

/// Where the drill's log lines go: stderr, around the bar while one is drawn.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Logs;

impl<'a> MakeWriter<'a> for Logs {
    type Writer = LogLine;

    fn make_writer(&'a self) -> LogLine {
        LogLine::default()
    }
}

/// One log event, gathered and printed in one piece when dropped.
#[derive(Debug, Default)]
pub(crate) struct LogLine {
    text: Vec<u8>,
}

impl Write for LogLine {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.text.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for LogLine {
    fn drop(&mut self) {
        if self.text.is_empty() {
            return;
        }
        print_around(shown().as_ref(), &mut io::stderr().lock(), &self.text);
    }
}

/// Prints `text` to `out`, taking `bar` off the screen meanwhile and drawing it again below.
fn print_around(bar: Option<&ProgressBar>, out: &mut dyn Write, text: &[u8]) {
    let mut print = || {
        let _ = out.write_all(text);
        let _ = out.flush();
    };
    match bar {
        Some(bar) => bar.suspend(print),
        None => print(),
    }
}

// ===== a terminal made of a writer =====

/// A writer taken for a terminal of a fixed width, moved about with ANSI escapes: stderr when a
/// bar was asked for without a terminal, a buffer in tests.
#[derive(Debug)]
pub(crate) struct AnsiSink<W> {
    out: Mutex<W>,
    width: u16,
}

impl<W> AnsiSink<W> {
    pub(crate) fn new(out: W, width: u16) -> Self {
        AnsiSink {
            out: Mutex::new(out),
            width,
        }
    }

    fn write(&self, text: fmt::Arguments<'_>) -> io::Result<()>
    where
        W: Write,
    {
        let mut out = self.out.lock().unwrap_or_else(PoisonError::into_inner);
        out.write_fmt(text)
    }
}

impl<W: Write + Send + fmt::Debug> TermLike for AnsiSink<W> {
    fn width(&self) -> u16 {
        self.width
    }

    fn move_cursor_up(&self, n: usize) -> io::Result<()> {
        match n {
            0 => Ok(()),
            n => self.write(format_args!("\x1b[{n}A")),
        }
    }

    fn move_cursor_down(&self, n: usize) -> io::Result<()> {
        match n {
            0 => Ok(()),
            n => self.write(format_args!("\x1b[{n}B")),
        }
    }

    fn move_cursor_right(&self, n: usize) -> io::Result<()> {
        match n {
            0 => Ok(()),
            n => self.write(format_args!("\x1b[{n}C")),
        }
    }

    fn move_cursor_left(&self, n: usize) -> io::Result<()> {
        match n {
            0 => Ok(()),
            n => self.write(format_args!("\x1b[{n}D")),
        }
    }

    fn write_line(&self, s: &str) -> io::Result<()> {
        self.write(format_args!("{s}\n"))
    }

    fn write_str(&self, s: &str) -> io::Result<()> {
        self.write(format_args!("{s}"))
    }

    fn clear_line(&self) -> io::Result<()> {
        self.write(format_args!("\r\x1b[2K"))
    }

    fn flush(&self) -> io::Result<()> {
        self.out
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .flush()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use redis_handoff::drill::{Drill, DrillConfig, Scenario, StackKind, Target};
    use redis_handoff::sim::Backend;

    use super::*;

    /// A buffer the bar draws into and the test reads.
    #[derive(Debug, Clone, Default)]
    struct Screen(Arc<Mutex<Vec<u8>>>);

    impl Write for Screen {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Screen {
        fn text(&self) -> String {
            String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
        }
    }

    #[test]
    fn the_plain_line_reads_as_it_always_did() {
        let snapshot = Progress::default().snapshot();
        assert_eq!(
            line("full stack", &snapshot),
            "full stack: 0.0/0.0 s  0 commands  0 failed  "
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_bar_shows_time_commands_failures_and_the_scenario_then_clears() {
        let screen = Screen::default();
        let drill = Drill::new(DrillConfig {
            target: Target::Simulator(Backend::Memory),
            stack: StackKind::Full,
            scenarios: vec![Scenario::Migrate],
            concurrency: 2,
            duration: Duration::from_secs(2),
            ..DrillConfig::default()
        });
        let target =
            ProgressDrawTarget::term_like_with_hz(Box::new(AnsiSink::new(screen.clone(), 120)), 50);
        let display = bar(drill.progress(), "full stack", target);
        let report = drill.run().await.expect("the drill runs");
        display.finish().await;
        assert_eq!(report.failed, 0, "{report}");

        let text = screen.text();
        // Every frame is drawn over the one before: never a new line.
        assert!(!text.contains('\n'), "{text:?}");
        let frames: Vec<&str> = text
            .split("\r\x1b[2K")
            .map(str::trim_end)
            .filter(|f| !f.is_empty())
            .collect();
        assert!(frames.len() > 2, "{text:?}");
        for frame in &frames {
            assert!(frame.starts_with("full stack: ["), "{frame:?}");
            assert!(frame.contains(" s  "), "elapsed/planned: {frame:?}");
            assert!(frame.contains(" commands  "), "{frame:?}");
            assert!(frame.contains(" failed"), "{frame:?}");
        }
        // The scenario is named while it plays, and the commands are counted as they go.
        assert!(frames.iter().any(|f| f.ends_with("  migrate")), "{text:?}");
        let most = frames
            .iter()
            .filter_map(|f| {
                f.split(" s  ")
                    .nth(1)?
                    .split(' ')
                    .next()?
                    .parse::<u64>()
                    .ok()
            })
            .max();
        assert!(most > Some(0), "{text:?}");
        // Finished: the last thing written clears the line, leaving nothing behind.
        assert!(text.ends_with("\r\x1b[2K"), "{text:?}");
        assert!(shown().is_none(), "log lines go straight to stderr again");
    }

    #[test]
    fn a_log_line_is_printed_above_the_bar_not_through_it() {
        let screen = Screen::default();
        let target =
            ProgressDrawTarget::term_like_with_hz(Box::new(AnsiSink::new(screen.clone(), 120)), 50);
        let bar = ProgressBar::with_draw_target(Some(10), target);
        bar.set_style(style(Progress::default()));
        bar.set_prefix("bare connection");
        bar.set_position(5);
        let before = screen.text();
        assert!(before.contains("bare connection: ["), "{before:?}");
        print_around(Some(&bar), &mut screen.clone(), b"WARN a log line\n");
        let after = screen.text();
        let added = &after[before.len()..];
        // The bar is cleared, the line printed whole on a line of its own, the bar drawn again.
        let at = added
            .find("WARN a log line\n")
            .expect("the line is printed");
        assert!(added[..at].ends_with("\r\x1b[2K"), "{added:?}");
        assert!(added[at..].contains("bare connection: ["), "{added:?}");
        bar.finish_and_clear();
    }
}
