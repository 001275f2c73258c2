//! The plots checked by looking at them: the drill's `--plot` SVG and the throughput bench's
//! chart are rendered to pixels and the picture is read back, at the places the report and the
//! chart's own layout say.
//!
//! Set `PLOTS_DIR` to a directory to keep the rendered pictures there as PNG files.

#[path = "../benches/support/chart.rs"]
mod chart;

/// Rendering an SVG document and reading its pixels.
mod picture {
    use resvg::tiny_skia::Pixmap;

    /// A rendered picture, one pixel per user unit.
    pub struct Picture {
        pixmap: Pixmap,
    }

    /// `#rrggbb` as its three channels.
    pub fn hex(colour: &str) -> [u8; 3] {
        let c = colour.trim_start_matches('#');
        let channel = |i: usize| u8::from_str_radix(&c[i..i + 2], 16).expect("a hex colour");
        [channel(0), channel(2), channel(4)]
    }

    /// `colour` laid over white at `opacity`, as the picture shows it.
    #[cfg_attr(not(feature = "sim"), allow(dead_code))]
    pub fn over_white(colour: [u8; 3], opacity: f64) -> [u8; 3] {
        colour.map(|c| (255.0 - (255.0 - f64::from(c)) * opacity).round() as u8)
    }

    impl Picture {
        /// Renders `svg` at its own size; keeps a PNG as `PLOTS_DIR/<name>.png` when asked to.
        pub fn render(svg: &str, name: &str) -> Picture {
            let tree = resvg::usvg::Tree::from_str(svg, &resvg::usvg::Options::default())
                .expect("the plot is a valid SVG document");
            let size = tree.size().to_int_size();
            let mut pixmap = Pixmap::new(size.width(), size.height()).expect("a non-empty picture");
            resvg::render(
                &tree,
                resvg::tiny_skia::Transform::default(),
                &mut pixmap.as_mut(),
            );
            if let Some(dir) = std::env::var_os("PLOTS_DIR") {
                let dir = std::path::PathBuf::from(dir);
                std::fs::create_dir_all(&dir).expect("PLOTS_DIR can be made");
                pixmap
                    .save_png(dir.join(format!("{name}.png")))
                    .expect("the PNG is written");
                std::fs::write(dir.join(format!("{name}.svg")), svg).expect("the SVG is written");
            }
            Picture { pixmap }
        }

        pub fn width(&self) -> u32 {
            self.pixmap.width()
        }

        pub fn height(&self) -> u32 {
            self.pixmap.height()
        }

        /// The colour of the pixel at (`x`, `y`).
        pub fn at(&self, x: u32, y: u32) -> [u8; 3] {
            let p = self
                .pixmap
                .pixel(x, y)
                .expect("inside the picture")
                .demultiply();
            [p.red(), p.green(), p.blue()]
        }

        /// Whether the pixel at (`x`, `y`) is `colour`, give or take `tolerance` per channel.
        pub fn is(&self, x: u32, y: u32, colour: [u8; 3], tolerance: u8) -> bool {
            let p = self.at(x, y);
            p.iter()
                .zip(colour)
                .all(|(a, b)| a.abs_diff(b) <= tolerance)
        }

        /// Whether a pixel within `reach` of (`x`, `y`) is `colour`.
        pub fn near(&self, x: f64, y: f64, reach: i64, colour: [u8; 3], tolerance: u8) -> bool {
            let (cx, cy) = (x.floor() as i64, y.floor() as i64);
            (cx - reach..=cx + reach).any(|px| {
                (cy - reach..=cy + reach).any(|py| {
                    px >= 0
                        && py >= 0
                        && px < i64::from(self.width())
                        && py < i64::from(self.height())
                        && self.is(px as u32, py as u32, colour, tolerance)
                })
            })
        }

        /// The pixels of `colour` in the box from (`x0`, `y0`) to (`x1`, `y1`), ends excluded.
        pub fn find(
            &self,
            (x0, y0): (u32, u32),
            (x1, y1): (u32, u32),
            colour: [u8; 3],
            tolerance: u8,
        ) -> Vec<(u32, u32)> {
            let mut found = Vec::new();
            for x in x0..x1.min(self.width()) {
                for y in y0..y1.min(self.height()) {
                    if self.is(x, y, colour, tolerance) {
                        found.push((x, y));
                    }
                }
            }
            found
        }
    }
}

use picture::{hex, Picture};

#[cfg(feature = "sim")]
mod drill_plot {
    use std::time::Duration;

    use redis_handoff::drill::{
        Drill, DrillConfig, DrillReport, Scenario, StackKind, Target, TIMELINE_BUCKET,
    };
    use redis_handoff::sim::Backend;

    use super::picture::over_white;
    use super::{hex, Picture};

    /// The colours `DrillReport::to_svg` documents: the window shade at a quarter opacity over
    /// the white background, the failure marks solid.
    fn shade() -> [u8; 3] {
        over_white(hex("#f4a261"), 0.25)
    }

    fn failure_red() -> [u8; 3] {
        hex("#d62828")
    }

    async fn drill(stack: StackKind, scenario: Scenario) -> DrillReport {
        Drill::new(DrillConfig {
            target: Target::Simulator(Backend::Memory),
            stack,
            scenarios: vec![scenario],
            concurrency: 8,
            duration: Duration::from_secs(3),
            ..DrillConfig::default()
        })
        .run()
        .await
        .expect("the drill runs")
    }

    /// Every pixel column of the plot area is shaded (most of its height is the window shade)
    /// exactly where the report has a window; the columns a window edge cuts through, and those
    /// next to a dashed handoff line, are not judged.
    fn windows_are_shaded_where_the_report_says(report: &DrillReport, picture: &Picture) {
        let layout = report.plot_layout();
        let spans: Vec<(f64, f64)> = report
            .windows
            .iter()
            .map(|w| (layout.x(w.start), layout.x(w.end)))
            .collect();
        let switches: Vec<f64> = report.switches.iter().map(|t| layout.x(*t)).collect();
        assert!(!spans.is_empty(), "{report}");
        let (top, bottom) = (
            layout.top.ceil() as u32 + 1,
            layout.bottom.floor() as u32 - 1,
        );
        let mut judged_inside = 0;
        let mut judged_outside = 0;
        for column in layout.left.ceil() as u32 + 1..layout.right.floor() as u32 - 1 {
            let (c0, c1) = (f64::from(column), f64::from(column + 1));
            // The SVG writes positions to a tenth of a unit.
            let inside = spans
                .iter()
                .any(|&(x0, x1)| x0 + 0.1 <= c0 && c1 <= x1 - 0.1);
            let outside = spans
                .iter()
                .all(|&(x0, x1)| c1 <= x0 - 0.1 || c0 >= x1 + 0.1);
            let by_a_switch = switches.iter().any(|x| (x - c0).abs() < 2.5);
            if !(inside || outside) || by_a_switch {
                continue;
            }
            let shaded = (top..bottom)
                .filter(|&y| picture.is(column, y, shade(), 3))
                .count();
            let share = shaded as f64 / f64::from(bottom - top);
            if inside {
                judged_inside += 1;
                assert!(
                    share > 0.5,
                    "column {column} is inside a window {spans:?} but only {share:.2} shaded"
                );
            } else {
                judged_outside += 1;
                assert!(
                    share < 0.05,
                    "column {column} is outside every window {spans:?} but {share:.2} shaded"
                );
            }
        }
        assert!(judged_inside > 50, "{judged_inside} columns inside windows");
        assert!(
            judged_outside > 50,
            "{judged_outside} columns outside windows"
        );
    }

    /// The red pixels of the plot area: along its bottom, under the buckets with failures.
    fn failure_marks(report: &DrillReport, picture: &Picture) -> Vec<(u32, u32)> {
        let layout = report.plot_layout();
        picture.find(
            (layout.left.floor() as u32, layout.top.floor() as u32),
            (layout.right.ceil() as u32, layout.bottom.ceil() as u32 + 1),
            failure_red(),
            8,
        )
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_migration_is_shaded_where_the_report_says_and_shows_no_failure() {
        let report = drill(StackKind::Full, Scenario::Migrate).await;
        assert_eq!(report.failed, 0, "{report}");
        assert_eq!(report.windows.len(), 1, "{report}");
        let picture = Picture::render(&report.to_svg(), "drill-migrate-full");
        windows_are_shaded_where_the_report_says(&report, &picture);
        let red = failure_marks(&report, &picture);
        assert!(
            red.is_empty(),
            "no command failed, yet red at {:?}",
            &red[..5.min(red.len())]
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_bare_connection_through_a_move_shows_its_failures_in_red() {
        let report = drill(StackKind::None, Scenario::Moving).await;
        assert!(report.failed > 0, "{report}");
        let picture = Picture::render(&report.to_svg(), "drill-moving-bare");
        windows_are_shaded_where_the_report_says(&report, &picture);

        let layout = report.plot_layout();
        let failed: Vec<(f64, f64)> = report
            .timeline
            .iter()
            .filter(|b| b.failed > 0)
            .map(|b| (layout.x(b.start), layout.x(b.start + TIMELINE_BUCKET)))
            .collect();
        assert!(!failed.is_empty(), "{report}");
        // A mark under every bucket with failures, in the middle of its 6-unit strip...
        for &(x0, x1) in &failed {
            let (x, y) = ((x0 + x1) / 2.0, layout.bottom - 3.0);
            assert!(
                picture.is(x as u32, y as u32, failure_red(), 8),
                "no failure mark at ({x:.0}, {y:.0}): {:?}",
                picture.at(x as u32, y as u32)
            );
        }
        // ...and red nowhere else.
        for (x, y) in failure_marks(&report, &picture) {
            let (x, y) = (f64::from(x), f64::from(y));
            assert!(
                failed
                    .iter()
                    .any(|&(x0, x1)| x0 - 1.0 <= x && x <= x1 + 1.0),
                "red at ({x}, {y}), under no bucket with failures {failed:?}"
            );
            assert!(
                y >= layout.bottom - 7.0 && y <= layout.bottom + 1.0,
                "red at ({x}, {y}), off the bottom strip"
            );
        }
    }
}

mod bench_chart {
    use super::chart::{Chart, Point};
    use super::{hex, Picture};

    fn point(operation: &str, tasks: usize, client: &str, ops: f64) -> Point {
        Point {
            operation: operation.to_owned(),
            tasks,
            client: client.to_owned(),
            ops,
        }
    }

    /// Made-up numbers, far enough apart for every marker to show.
    fn numbers() -> Vec<Point> {
        vec![
            point("INCR", 1, "redis-handoff", 300_000.0),
            point("INCR", 10, "redis-handoff", 650_000.0),
            point("INCR", 100, "redis-handoff", 1_100_000.0),
            point("INCR", 1, "redis-rs 1.8", 100_000.0),
            point("INCR", 10, "redis-rs 1.8", 250_000.0),
            point("INCR", 100, "redis-rs 1.8", 420_000.0),
            point("GET 1 KiB", 100, "redis-handoff", 900_000.0),
            point("GET 1 KiB", 100, "redis-rs 1.8", 350_000.0),
            // A client whose numbers are missing: in the legend, nowhere in the panels.
            point("INCR", 100, "fred 10.1", f64::NAN),
        ]
    }

    #[test]
    fn every_client_is_a_line_through_its_numbers_and_missing_numbers_are_not_drawn() {
        let points = numbers();
        let chart = Chart::new(points.clone());
        assert_eq!(chart.operations(), ["INCR", "GET 1 KiB"]);
        let svg = chart.to_svg("throughput by tasks");
        let picture = Picture::render(&svg, "bench-throughput");
        assert_eq!(picture.width() as f64, chart.width());
        assert_eq!(picture.height() as f64, chart.height());

        let panels: Vec<_> = (0..chart.operations().len())
            .map(|i| chart.panel(i))
            .collect();
        assert!(panels[0].right < panels[1].left, "side by side: {panels:?}");
        let client = |name: &str| {
            chart
                .clients()
                .iter()
                .position(|c| c == name)
                .expect("a client")
        };
        let operation = |name: &str| {
            chart
                .operations()
                .iter()
                .position(|o| o == name)
                .expect("an operation")
        };

        // A marker of the client's colour at every number it has.
        for p in points.iter().filter(|p| p.ops.is_finite()) {
            let panel = &panels[operation(&p.operation)];
            let (x, y) = (chart.x(panel, p.tasks), chart.y(panel, p.ops));
            let colour = hex(chart.colour(client(&p.client)));
            assert!(
                picture.is(x as u32, y as u32, colour, 6),
                "{p:?}: {:?} at ({x:.0}, {y:.0}), not {colour:?}",
                picture.at(x as u32, y as u32)
            );
        }
        // More operations per second are drawn higher up.
        let incr = &panels[operation("INCR")];
        assert!(chart.y(incr, 1_100_000.0) < chart.y(incr, 420_000.0));
        assert!(chart.y(incr, 1_100_000.0) >= incr.top);

        // The line from one task count to the next, halfway along.
        for name in ["redis-handoff", "redis-rs 1.8"] {
            let colour = hex(chart.colour(client(name)));
            let mut mine: Vec<&Point> = points
                .iter()
                .filter(|p| p.client == name && p.operation == "INCR")
                .collect();
            mine.sort_by_key(|p| p.tasks);
            for pair in mine.windows(2) {
                let (a, b) = (pair[0], pair[1]);
                let x = (chart.x(incr, a.tasks) + chart.x(incr, b.tasks)) / 2.0;
                let y = (chart.y(incr, a.ops) + chart.y(incr, b.ops)) / 2.0;
                assert!(
                    picture.near(x, y, 1, colour, 40),
                    "{name}: no line between {} and {} tasks at ({x:.0}, {y:.0})",
                    a.tasks,
                    b.tasks
                );
            }
        }

        // The missing numbers: fred's colour is in the legend only, above the panels.
        let fred = hex(chart.colour(client("fred 10.1")));
        let top = panels[0].top.floor() as u32 - 2;
        let in_panels = picture.find((0, top), (picture.width(), picture.height()), fred, 6);
        assert!(in_panels.is_empty(), "fred drawn at {:?}", &in_panels[..1]);
        let in_legend = picture.find((0, 0), (picture.width(), top), fred, 6);
        assert!(!in_legend.is_empty(), "fred is in the legend");
    }

    #[test]
    fn a_chart_with_one_task_count_and_no_numbers_is_still_a_picture() {
        let chart = Chart::new(vec![point("INCR", 100, "redis-handoff", 5.0)]);
        let panel = chart.panel(0);
        // One task count: in the middle of the panel.
        let x = chart.x(&panel, 100);
        assert!((x - (panel.left + panel.right) / 2.0).abs() < 1e-9, "{x}");
        Picture::render(&chart.to_svg("one"), "bench-one");
        let empty = Chart::new(Vec::new());
        Picture::render(&empty.to_svg("none"), "bench-empty");
    }
}
