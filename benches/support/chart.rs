//! Operations per second against the number of tasks, one line per client, as an SVG written by
//! hand: one panel per operation, the tasks on a logarithmic axis shared by the panels, each
//! panel's throughput on a linear axis from zero.
//! Shared with `#[path = "support/chart.rs"] mod chart;` (the throughput bench, and the test that
//! renders the picture).
#![allow(dead_code)]

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
#[path = "../../src/drill/svg.rs"]
mod svg;
use svg::{escape, nice_step};

const WIDTH: f64 = 960.0;
const HEIGHT: f64 = 440.0;
/// Room left of each panel for its throughput labels.
const GAP: f64 = 64.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 84.0;
const BOTTOM: f64 = 56.0;
/// Room at each end of a panel's task axis, so that no marker sits on the frame.
const PAD: f64 = 22.0;
const MARKER_RADIUS: f64 = 4.0;

/// A colour per client, in the order the clients come.
const PALETTE: [&str; 8] = [
    "#264653", "#e76f51", "#2a9d8f", "#e9c46a", "#8e44ad", "#457b9d", "#6a994e", "#b5651d",
];

/// One measurement: a client's throughput on an operation with a number of tasks.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Point {
    /// The operation, one panel each: `INCR`, `GET 1 KiB`, ...
    pub(crate) operation: String,
    /// How many tasks sent it.
    pub(crate) tasks: usize,
    /// The client, one line each.
    pub(crate) client: String,
    /// Operations per second; a value that is not finite is not drawn.
    pub(crate) ops: f64,
}

/// A panel's place in the picture and its throughput scale.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Panel {
    pub(crate) left: f64,
    pub(crate) right: f64,
    pub(crate) top: f64,
    pub(crate) bottom: f64,
    /// The throughput at the top edge (the bottom edge is zero).
    pub(crate) max_ops: f64,
}

/// The chart of a set of measurements; [`Chart::to_svg`] draws it, the other methods say where.
#[derive(Debug, Clone)]
pub(crate) struct Chart {
    points: Vec<Point>,
    operations: Vec<String>,
    clients: Vec<String>,
    /// log10 of the fewest and the most tasks measured.
    low: f64,
    high: f64,
    width: f64,
}

impl Chart {
    pub(crate) fn new(points: Vec<Point>) -> Chart {
        let mut operations: Vec<String> = Vec::new();
        let mut clients: Vec<String> = Vec::new();
        for p in &points {
            if !operations.contains(&p.operation) {
                operations.push(p.operation.clone());
            }
            if !clients.contains(&p.client) {
                clients.push(p.client.clone());
            }
        }
        let tasks = || points.iter().map(|p| (p.tasks.max(1) as f64).log10());
        let low = tasks().fold(f64::INFINITY, f64::min);
        let high = tasks().fold(f64::NEG_INFINITY, f64::max);
        let (low, high) = if low.is_finite() {
            (low, high)
        } else {
            (0.0, 0.0)
        };
        // Panels of at least 200 units: a wider picture rather than a cramped one.
        let width = WIDTH.max(RIGHT + operations.len() as f64 * (GAP + 200.0));
        Chart {
            points,
            operations,
            clients,
            low,
            high,
            width,
        }
    }

    pub(crate) fn width(&self) -> f64 {
        self.width
    }

    pub(crate) fn height(&self) -> f64 {
        HEIGHT
    }

    /// The operations, in the order of their panels from the left.
    pub(crate) fn operations(&self) -> &[String] {
        &self.operations
    }

    /// The clients, in the order of [`Chart::colour`].
    pub(crate) fn clients(&self) -> &[String] {
        &self.clients
    }

    /// The colour of the `client`-th client's line and markers.
    pub(crate) fn colour(&self, client: usize) -> &'static str {
        PALETTE[client % PALETTE.len()]
    }

    /// The panel of the `operation`-th operation.
    pub(crate) fn panel(&self, operation: usize) -> Panel {
        let n = self.operations.len().max(1) as f64;
        let inner = (self.width - RIGHT - GAP * n) / n;
        let left = GAP + operation as f64 * (inner + GAP);
        let highest = self.points_of(operation).map(|p| p.ops).fold(0.0, f64::max);
        Panel {
            left,
            right: left + inner,
            top: TOP,
            bottom: HEIGHT - BOTTOM,
            max_ops: nice_ceiling(highest * 1.05),
        }
    }

    /// Where a number of tasks falls across `panel`.
    pub(crate) fn x(&self, panel: &Panel, tasks: usize) -> f64 {
        let (from, to) = (panel.left + PAD, panel.right - PAD);
        if self.high <= self.low {
            return (from + to) / 2.0;
        }
        let t = (tasks.max(1) as f64).log10();
        from + (t - self.low) / (self.high - self.low) * (to - from)
    }

    /// Where a throughput falls up `panel`.
    pub(crate) fn y(&self, panel: &Panel, ops: f64) -> f64 {
        let share = (ops / panel.max_ops).clamp(0.0, 1.0);
        panel.bottom - share * (panel.bottom - panel.top)
    }

    /// The points of the `operation`-th operation that are drawn (finite, not negative).
    fn points_of(&self, operation: usize) -> impl Iterator<Item = &Point> + '_ {
        let name = self.operations.get(operation);
        self.points
            .iter()
            .filter(move |p| Some(&p.operation) == name && p.ops.is_finite() && p.ops >= 0.0)
    }

    /// Every task count measured, fewest first.
    fn task_counts(&self) -> Vec<usize> {
        let mut tasks: Vec<usize> = self.points.iter().map(|p| p.tasks.max(1)).collect();
        tasks.sort_unstable();
        tasks.dedup();
        tasks
    }

    /// The chart as an SVG document, `title` at the top.
    pub(crate) fn to_svg(&self, title: &str) -> String {
        let (width, height) = (self.width, HEIGHT);
        let mut s = String::new();
        let _ = writeln!(
            s,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">"#
        );
        let _ = writeln!(
            s,
            r#"<rect x="0" y="0" width="{width}" height="{height}" fill="white"/>"#
        );
        let _ = writeln!(
            s,
            r#"<text x="{GAP}" y="22" font-size="15" font-weight="bold">{}</text>"#,
            escape(title)
        );

        // Legend: one entry per client.
        let mut x = GAP;
        for (i, client) in self.clients.iter().enumerate() {
            let colour = self.colour(i);
            let _ = writeln!(
                s,
                r#"<line x1="{x:.1}" y1="40" x2="{:.1}" y2="40" stroke="{colour}" stroke-width="2"/><circle cx="{:.1}" cy="40" r="{MARKER_RADIUS}" fill="{colour}"/>"#,
                x + 18.0,
                x + 9.0
            );
            let _ = writeln!(
                s,
                r#"<text x="{:.1}" y="44">{}</text>"#,
                x + 24.0,
                escape(client)
            );
            x += 40.0 + 7.0 * client.chars().count() as f64;
        }

        let tasks = self.task_counts();
        for (oi, operation) in self.operations.iter().enumerate() {
            let panel = self.panel(oi);
            let _ = writeln!(
                s,
                r#"<text x="{:.1}" y="{:.1}" font-weight="bold">{}</text>"#,
                panel.left,
                panel.top - 12.0,
                escape(operation)
            );
            // Throughput gridlines and labels.
            let step = nice_step(panel.max_ops, 5.0);
            let mut v = 0.0;
            while v <= panel.max_ops * (1.0 + 1e-9) {
                let y = self.y(&panel, v);
                let _ = writeln!(
                    s,
                    r##"<line x1="{:.1}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#ddd"/>"##,
                    panel.left, panel.right
                );
                let _ = writeln!(
                    s,
                    r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"#,
                    panel.left - 6.0,
                    y + 4.0,
                    short(v)
                );
                v += step;
            }
            // The task axis: a tick at every task count measured.
            for &t in &tasks {
                let x = self.x(&panel, t);
                let _ = writeln!(
                    s,
                    r##"<line x1="{x:.1}" y1="{:.1}" x2="{x:.1}" y2="{:.1}" stroke="#333"/>"##,
                    panel.bottom,
                    panel.bottom + 5.0
                );
                let _ = writeln!(
                    s,
                    r#"<text x="{x:.1}" y="{:.1}" text-anchor="middle">{t}</text>"#,
                    panel.bottom + 19.0
                );
            }
            let _ = writeln!(
                s,
                r##"<path d="M{:.1},{:.1} V{:.1} H{:.1}" fill="none" stroke="#333"/>"##,
                panel.left, panel.top, panel.bottom, panel.right
            );
        }
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">tasks on one connection (log scale)</text>"#,
            width / 2.0,
            height - 14.0
        );
        let _ = writeln!(
            s,
            r#"<text transform="translate(16 {:.1}) rotate(-90)" text-anchor="middle">operations per second</text>"#,
            (TOP + HEIGHT - BOTTOM) / 2.0
        );

        // The lines first, then every marker over them.
        let mut markers = String::new();
        for oi in 0..self.operations.len() {
            let panel = self.panel(oi);
            for (ci, client) in self.clients.iter().enumerate() {
                let colour = self.colour(ci);
                let mut mine: Vec<&Point> =
                    self.points_of(oi).filter(|p| &p.client == client).collect();
                mine.sort_by_key(|p| p.tasks);
                let at: Vec<(f64, f64)> = mine
                    .iter()
                    .map(|p| (self.x(&panel, p.tasks), self.y(&panel, p.ops)))
                    .collect();
                if at.len() > 1 {
                    let points: Vec<String> =
                        at.iter().map(|(x, y)| format!("{x:.1},{y:.1}")).collect();
                    let _ = writeln!(
                        s,
                        r#"<polyline fill="none" stroke="{colour}" stroke-width="2" points="{}"/>"#,
                        points.join(" ")
                    );
                }
                for (p, (x, y)) in mine.iter().zip(&at) {
                    let _ = writeln!(
                        markers,
                        r#"<circle cx="{x:.1}" cy="{y:.1}" r="{MARKER_RADIUS}" fill="{colour}"><title>{}, {} task{}: {} ops/s</title></circle>"#,
                        escape(client),
                        p.tasks,
                        if p.tasks == 1 { "" } else { "s" },
                        short(p.ops)
                    );
                }
            }
        }
        s.push_str(&markers);
        s.push_str("</svg>\n");
        s
    }
}

/// Where a bench writes its chart: `target/bench/<name>.svg` (under `CARGO_TARGET_DIR` when it
/// is set).
pub(crate) fn default_path(name: &str) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("target"),
        PathBuf::from,
    );
    target.join("bench").join(format!("{name}.svg"))
}

/// Writes `svg` to `path`, making its directory first.
pub(crate) fn write(path: &Path, svg: &str) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(path, svg)
}

/// A round number at least `x`, not much more (1 for nothing to show).
fn nice_ceiling(x: f64) -> f64 {
    if !(x.is_finite() && x > 0.0) {
        return 1.0;
    }
    let magnitude = 10f64.powf(x.log10().floor());
    [1.0, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0]
        .into_iter()
        .map(|m| m * magnitude)
        .find(|c| *c >= x * (1.0 - 1e-12))
        .unwrap_or(10.0 * magnitude)
}

/// A throughput for a label: `950`, `12k`, `1.5M`.
fn short(x: f64) -> String {
    let trim = |v: f64, unit: &str| {
        let text = format!("{v:.1}");
        format!("{}{unit}", text.trim_end_matches('0').trim_end_matches('.'))
    };
    if x >= 1e6 {
        trim(x / 1e6, "M")
    } else if x >= 1e3 {
        trim(x / 1e3, "k")
    } else {
        trim(x, "")
    }
}
