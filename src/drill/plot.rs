//! The latency plot: an SVG written by hand.
//!
//! Per [`TIMELINE_BUCKET`] of start time, the 99th percentile and the maximum latency as two
//! lines over a logarithmic axis; maintenance windows as shaded bands; failed commands as red
//! marks along the bottom; handoff switches as dashed vertical lines.

use std::fmt::Write as _;
use std::time::Duration;

use super::report::{human_us, DrillReport, TIMELINE_BUCKET};
use super::svg::{escape, nice_step};

const WIDTH: f64 = 960.0;
const HEIGHT: f64 = 440.0;
const LEFT: f64 = 80.0;
const RIGHT: f64 = 24.0;
const TOP: f64 = 56.0;
const BOTTOM: f64 = 56.0;

/// Where the plot of a report ([`DrillReport::to_svg`]) draws things, in the SVG's user units
/// (pixels, when the picture is shown at its own size): the plot area, and where a time and a
/// latency fall in it. For tools that read the picture.
///
/// ```
/// # use redis_handoff::drill::DrillReport;
/// # fn window_columns(report: &DrillReport) {
/// let layout = report.plot_layout();
/// for w in &report.windows {
///     // The shaded band of this window spans these x positions.
///     let (x0, x1) = (layout.x(w.start), layout.x(w.end));
///     assert!(layout.left <= x0 && x0 <= x1 && x1 <= layout.right);
/// }
/// # }
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct PlotLayout {
    /// The width of the document.
    pub width: f64,
    /// The height of the document.
    pub height: f64,
    /// The left edge of the plot area: the start of the load.
    pub left: f64,
    /// The right edge of the plot area: [`span`](Self::span) after the start of the load.
    pub right: f64,
    /// The top edge of the plot area: the highest latency shown.
    pub top: f64,
    /// The bottom edge of the plot area, where the time axis is: the lowest latency shown.
    pub bottom: f64,
    /// The time from the left edge to the right edge: how long the drill ran.
    pub span: Duration,
    /// log10 of the lowest and highest latency shown, in microseconds.
    low: f64,
    high: f64,
}

impl PlotLayout {
    /// Where `t` after the start of the load falls across the plot area (clamped to it).
    pub fn x(&self, t: Duration) -> f64 {
        let seconds = self.span.as_secs_f64();
        self.left + (t.as_secs_f64() / seconds).clamp(0.0, 1.0) * (self.right - self.left)
    }

    /// Where a latency of `us` microseconds falls up the plot area, on its logarithmic axis
    /// (clamped to it).
    pub fn y(&self, us: u64) -> f64 {
        let v = (us.max(1) as f64).log10().clamp(self.low, self.high);
        self.bottom - (v - self.low) / (self.high - self.low) * (self.bottom - self.top)
    }
}

impl DrillReport {
    /// Where [`to_svg`](Self::to_svg) draws things for this report.
    pub fn plot_layout(&self) -> PlotLayout {
        let buckets = self.timeline.iter().filter(|b| b.commands > 0);
        let lowest = buckets
            .clone()
            .map(|b| b.p99_us)
            .min()
            .unwrap_or(100)
            .max(1);
        let highest = buckets.map(|b| b.max_us).max().unwrap_or(1000).max(10);
        let low = (lowest as f64).log10().floor();
        let high = (highest as f64).log10().ceil().max(low + 1.0);
        PlotLayout {
            width: WIDTH,
            height: HEIGHT,
            left: LEFT,
            right: WIDTH - RIGHT,
            top: TOP,
            bottom: HEIGHT - BOTTOM,
            span: Duration::from_secs_f64(self.elapsed.as_secs_f64().max(0.1)),
            low,
            high,
        }
    }

    /// The latency over time as an SVG document; see the module docs of [`drill`](super).
    ///
    /// Per [`TIMELINE_BUCKET`] of start time, the 99th percentile (`#264653`) and the maximum
    /// (`#e76f51`) latency as two lines over a logarithmic axis; the maintenance windows as bands
    /// shaded `#f4a261` at a quarter of its opacity, the full height of the plot area; the
    /// buckets with failed commands as solid `#d62828` marks 6 units high along the bottom;
    /// handoff switches as dashed `#2a9d8f` lines. [`plot_layout`](Self::plot_layout) says where.
    pub fn to_svg(&self) -> String {
        let buckets: Vec<_> = self.timeline.iter().filter(|b| b.commands > 0).collect();
        let layout = self.plot_layout();
        let (low, high) = (layout.low, layout.high);
        let (plot_top, plot_bottom) = (layout.top, layout.bottom);
        let mut s = String::new();
        let _ = writeln!(
            s,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12">"#
        );
        let _ = writeln!(
            s,
            r#"<rect x="0" y="0" width="{WIDTH}" height="{HEIGHT}" fill="white"/>"#
        );
        let _ = writeln!(
            s,
            r#"<text x="{LEFT}" y="20" font-size="15" font-weight="bold">redis-handoff drill: {} ({} tasks), scenarios: {}</text>"#,
            escape(self.stack_words()),
            self.concurrency,
            escape(
                &self
                    .scenarios
                    .iter()
                    .map(|s| s.name())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        );
        let _ = writeln!(
            s,
            r##"<text x="{LEFT}" y="38" fill="#555">{} commands, {} failed, {} handoffs; p99 {}, p99.9 {}, max {}</text>"##,
            self.commands,
            self.failed,
            self.handoffs,
            human_us(self.latency.p99_us),
            human_us(self.latency.p999_us),
            human_us(self.latency.max_us)
        );

        // Maintenance windows, under everything else.
        for w in &self.windows {
            let (x0, x1) = (layout.x(w.start), layout.x(w.end));
            let _ = writeln!(
                s,
                r##"<rect class="window" x="{x0:.1}" y="{plot_top:.1}" width="{:.1}" height="{:.1}" fill="#f4a261" fill-opacity="0.25"><title>{}</title></rect>"##,
                (x1 - x0).max(1.0),
                plot_bottom - plot_top,
                escape(&w.label)
            );
            let _ = writeln!(
                s,
                r##"<text x="{:.1}" y="{:.1}" fill="#b5651d">{}</text>"##,
                x0 + 3.0,
                plot_top + 14.0,
                escape(&w.label)
            );
        }

        // Gridlines and the latency axis: one line per power of ten.
        let mut decade = low as i32;
        while f64::from(decade) <= high {
            let us = 10f64.powi(decade) as u64;
            let y = layout.y(us);
            let _ = writeln!(
                s,
                r##"<line x1="{LEFT}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#ddd"/>"##,
                WIDTH - RIGHT
            );
            let _ = writeln!(
                s,
                r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"#,
                LEFT - 6.0,
                y + 4.0,
                escape(&decade_label(decade))
            );
            decade += 1;
        }
        // The time axis.
        let seconds = layout.span.as_secs_f64();
        let step = nice_step(seconds, 10.0);
        let mut t = 0.0;
        while t <= seconds + 1e-9 {
            let x = layout.x(Duration::from_secs_f64(t));
            let _ = writeln!(
                s,
                r##"<line x1="{x:.1}" y1="{plot_bottom:.1}" x2="{x:.1}" y2="{:.1}" stroke="#333"/>"##,
                plot_bottom + 5.0
            );
            let _ = writeln!(
                s,
                r#"<text x="{x:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
                plot_bottom + 19.0,
                trim_float(t)
            );
            t += step;
        }
        let _ = writeln!(
            s,
            r##"<line x1="{LEFT}" y1="{plot_bottom:.1}" x2="{:.1}" y2="{plot_bottom:.1}" stroke="#333"/>"##,
            WIDTH - RIGHT
        );
        let _ = writeln!(
            s,
            r##"<line x1="{LEFT}" y1="{plot_top:.1}" x2="{LEFT}" y2="{plot_bottom:.1}" stroke="#333"/>"##
        );
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">time since the load started (s)</text>"#,
            (LEFT + WIDTH - RIGHT) / 2.0,
            HEIGHT - 14.0
        );
        let _ = writeln!(
            s,
            r#"<text transform="translate(18 {:.1}) rotate(-90)" text-anchor="middle">latency per {} ms of start time (log scale)</text>"#,
            (plot_top + plot_bottom) / 2.0,
            TIMELINE_BUCKET.as_millis()
        );

        // Handoff switches.
        for at in &self.switches {
            let x = layout.x(*at);
            let _ = writeln!(
                s,
                r##"<line class="switch" x1="{x:.1}" y1="{plot_top:.1}" x2="{x:.1}" y2="{plot_bottom:.1}" stroke="#2a9d8f" stroke-dasharray="4 3"><title>handoff switch</title></line>"##
            );
        }

        // The latency lines, at the middle of each bucket; broken where no command started
        // (every task was waiting), rather than drawn straight across.
        let half = TIMELINE_BUCKET / 2;
        type Pick = fn(&super::TimelineBucket) -> u64;
        let lines: [(&str, &str, Pick); 2] = [
            ("max", "#e76f51", |b| b.max_us),
            ("p99", "#264653", |b| b.p99_us),
        ];
        for (class, colour, pick) in lines {
            for run in self.timeline.split(|b| b.commands == 0) {
                if run.is_empty() {
                    continue;
                }
                let mut points: Vec<String> = run
                    .iter()
                    .map(|b| format!("{:.1},{:.1}", layout.x(b.start + half), layout.y(pick(b))))
                    .collect();
                if let [b] = run {
                    // A lone bucket: a short flat line across it, so that it shows.
                    let y = layout.y(pick(b));
                    points = vec![
                        format!("{:.1},{y:.1}", layout.x(b.start)),
                        format!("{:.1},{y:.1}", layout.x(b.start + TIMELINE_BUCKET)),
                    ];
                }
                let _ = writeln!(
                    s,
                    r#"<polyline class="{class}" fill="none" stroke="{colour}" stroke-width="1.5" points="{}"/>"#,
                    points.join(" ")
                );
            }
        }

        // Failed commands, along the bottom.
        for b in buckets.iter().filter(|b| b.failed > 0) {
            let x0 = layout.x(b.start);
            let x1 = layout.x(b.start + TIMELINE_BUCKET);
            let _ = writeln!(
                s,
                r##"<rect class="failed" x="{x0:.1}" y="{:.1}" width="{:.1}" height="6" fill="#d62828"><title>{} failed</title></rect>"##,
                plot_bottom - 6.0,
                (x1 - x0).max(1.0),
                b.failed
            );
        }

        // Legend.
        let lx = WIDTH - RIGHT - 330.0;
        let ly = TOP - 8.0;
        let entries = [
            ("#264653", "line", "p99"),
            ("#e76f51", "line", "max"),
            ("#f4a261", "band", "maintenance window"),
            ("#d62828", "band", "failed"),
        ];
        let mut x = lx;
        for (colour, shape, label) in entries {
            if shape == "line" {
                let _ = writeln!(
                    s,
                    r#"<line x1="{x:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="{colour}" stroke-width="2"/>"#,
                    ly - 4.0,
                    x + 16.0,
                    ly - 4.0
                );
            } else {
                let _ = writeln!(
                    s,
                    r#"<rect x="{x:.1}" y="{:.1}" width="16" height="8" fill="{colour}" fill-opacity="0.6"/>"#,
                    ly - 8.0
                );
            }
            let _ = writeln!(
                s,
                r#"<text x="{:.1}" y="{ly:.1}">{}</text>"#,
                x + 20.0,
                escape(label)
            );
            x += 28.0 + 7.0 * label.len() as f64;
        }
        s.push_str("</svg>\n");
        s
    }
}

fn decade_label(decade: i32) -> String {
    match decade {
        i32::MIN..=0 => "1 µs".into(),
        1 => "10 µs".into(),
        2 => "100 µs".into(),
        3 => "1 ms".into(),
        4 => "10 ms".into(),
        5 => "100 ms".into(),
        6 => "1 s".into(),
        7 => "10 s".into(),
        8 => "100 s".into(),
        d => format!("1e{} s", d - 6),
    }
}

fn trim_float(t: f64) -> String {
    let s = format!("{t:.2}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// Several reports' plots one above the other in one SVG document: for `drill --compare`.
pub fn stacked_svg(reports: &[&DrillReport]) -> String {
    let mut s = String::new();
    let total = HEIGHT * reports.len().max(1) as f64;
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{total}" viewBox="0 0 {WIDTH} {total}">"#
    );
    for (i, r) in reports.iter().enumerate() {
        let inner = r.to_svg();
        let y = HEIGHT * i as f64;
        // The same document, placed lower: a nested <svg> with its own position.
        let inner = inner.replacen("<svg ", &format!(r#"<svg y="{y}" "#), 1);
        s.push_str(&inner);
    }
    s.push_str("</svg>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped_and_steps_are_round() {
        assert_eq!(escape("a<b & \"c\""), "a&lt;b &amp; &quot;c&quot;");
        assert_eq!(nice_step(20.0, 10.0), 2.0);
        assert_eq!(nice_step(3.0, 10.0), 0.5);
        assert_eq!(trim_float(2.5), "2.5");
        assert_eq!(trim_float(3.0), "3");
        assert_eq!(decade_label(3), "1 ms");
    }
}
