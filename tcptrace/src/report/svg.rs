//! The report's charts as inline SVG, drawn here: stacked bars (counts
//! per interval) and lines (latency percentiles, a backlog), on a shared
//! time axis so charts stacked on the page line up. No script, no fonts
//! or styles from elsewhere; every label goes through [`Html`].

use std::fmt::Write as _;

use crate::escape::Html;

const WIDTH: f64 = 960.0;
const LEFT: f64 = 64.0;
const RIGHT: f64 = 190.0;
const TOP: f64 = 10.0;
const BOTTOM: f64 = 26.0;

/// Colours for series, in order.
pub const PALETTE: [&str; 9] = [
    "#1f77b4", "#d62728", "#ff7f0e", "#9467bd", "#2ca02c", "#8c564b", "#e377c2", "#17becf",
    "#7f7f7f",
];

/// The time axis: how many intervals, and labels under some of them.
pub struct Axis {
    pub intervals: usize,
    /// (interval, text), e.g. the wall-clock time it starts.
    pub labels: Vec<(usize, String)>,
}

/// One series of a chart: a value per interval (`None`: nothing known).
pub struct Series<'a> {
    pub name: &'a str,
    pub color: &'a str,
    pub values: Vec<Option<f64>>,
    pub dashed: bool,
}

/// How the value axis is drawn.
#[derive(Clone, Copy)]
pub enum Scale {
    /// From 0 to the largest value (counts).
    Linear,
    /// Powers of ten (latencies), from the smallest to the largest value.
    Log,
}

struct Frame {
    height: f64,
    plot_w: f64,
    plot_h: f64,
    intervals: usize,
}

impl Frame {
    fn new(axis: &Axis, height: f64) -> Self {
        Self {
            height,
            plot_w: WIDTH - LEFT - RIGHT,
            plot_h: height - TOP - BOTTOM,
            intervals: axis.intervals.max(1),
        }
    }

    fn x(&self, i: usize) -> f64 {
        LEFT + self.plot_w * i as f64 / self.intervals as f64
    }

    fn step(&self) -> f64 {
        self.plot_w / self.intervals as f64
    }

    fn bottom(&self) -> f64 {
        TOP + self.plot_h
    }
}

fn open(out: &mut String, id: &str, title: &str, f: &Frame) {
    let _ = write!(
        out,
        r#"<svg id="{}" class="chart" width="{WIDTH}" height="{}" viewBox="0 0 {WIDTH} {}" role="img"><title>{}</title>"#,
        Html(id),
        f.height,
        f.height,
        Html(title)
    );
    let _ = write!(
        out,
        r##"<rect x="{LEFT}" y="{TOP}" width="{:.1}" height="{:.1}" fill="#fafafa" stroke="#ccc"/>"##,
        f.plot_w, f.plot_h
    );
}

fn x_labels(out: &mut String, axis: &Axis, f: &Frame) {
    for (i, text) in &axis.labels {
        let x = f.x(*i);
        let _ = write!(
            out,
            r##"<line x1="{x:.1}" y1="{:.1}" x2="{x:.1}" y2="{:.1}" stroke="#999"/><text x="{x:.1}" y="{:.1}" font-size="11" text-anchor="middle">{}</text>"##,
            f.bottom(),
            f.bottom() + 4.0,
            f.bottom() + 16.0,
            Html(text)
        );
    }
}

fn legend(out: &mut String, series: &[Series<'_>]) {
    for (i, s) in series.iter().enumerate() {
        let y = TOP + 6.0 + 15.0 * i as f64;
        let x = WIDTH - RIGHT + 12.0;
        let _ = write!(
            out,
            r#"<rect x="{x:.1}" y="{y:.1}" width="10" height="10" fill="{}"/><text x="{:.1}" y="{:.1}" font-size="11">{}</text>"#,
            Html(s.color),
            x + 14.0,
            y + 9.0,
            Html(s.name)
        );
    }
}

fn y_label(out: &mut String, y: f64, text: &str) {
    let _ = write!(
        out,
        r##"<line x1="{:.1}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" font-size="11" text-anchor="end">{}</text>"##,
        LEFT,
        WIDTH - RIGHT,
        LEFT - 4.0,
        y + 4.0,
        Html(text)
    );
}

/// Bars per interval, the series stacked in order (counts).
pub fn stacked_bars(id: &str, title: &str, axis: &Axis, series: &[Series<'_>]) -> String {
    let f = Frame::new(axis, 200.0);
    let mut out = String::new();
    open(&mut out, id, title, &f);
    let totals: Vec<f64> = (0..axis.intervals)
        .map(|i| {
            series
                .iter()
                .filter_map(|s| s.values.get(i).copied().flatten())
                .sum()
        })
        .collect();
    let max = totals.iter().copied().fold(0.0, f64::max).max(1.0);
    y_label(&mut out, TOP, &fmt_count(max));
    y_label(&mut out, TOP + f.plot_h / 2.0, &fmt_count(max / 2.0));
    y_label(&mut out, f.bottom(), "0");
    let w = (f.step() - 0.5).max(0.5);
    for i in 0..axis.intervals {
        let mut y = f.bottom();
        for s in series {
            let v = s.values.get(i).copied().flatten().unwrap_or(0.0);
            if v <= 0.0 {
                continue;
            }
            let h = f.plot_h * v / max;
            y -= h;
            let _ = write!(
                out,
                r#"<rect x="{:.2}" y="{y:.2}" width="{w:.2}" height="{h:.2}" fill="{}"><title>{}: {}</title></rect>"#,
                f.x(i),
                Html(s.color),
                Html(s.name),
                fmt_count(v)
            );
        }
    }
    x_labels(&mut out, axis, &f);
    legend(&mut out, series);
    out.push_str("</svg>");
    out
}

/// Lines through each interval's value; gaps where there is none.
/// `fmt` writes a value of the value axis.
pub fn lines(
    id: &str,
    title: &str,
    axis: &Axis,
    series: &[Series<'_>],
    scale: Scale,
    fmt: fn(f64) -> String,
) -> String {
    let f = Frame::new(axis, 200.0);
    let mut out = String::new();
    open(&mut out, id, title, &f);
    let values = || {
        series
            .iter()
            .flat_map(|s| s.values.iter().flatten().copied())
    };
    let max = values().fold(0.0, f64::max);
    let (lo, hi) = match scale {
        Scale::Linear => (0.0, max.max(1.0)),
        Scale::Log => {
            let min = values().filter(|v| *v > 0.0).fold(f64::MAX, f64::min);
            let lo = if min == f64::MAX {
                0.0
            } else {
                min.log10().floor()
            };
            (lo, max.max(1.0).log10().ceil().max(lo + 1.0))
        }
    };
    let pos = |v: f64| -> f64 {
        let t = match scale {
            Scale::Linear => v,
            Scale::Log => v.max(1.0).log10(),
        };
        f.bottom() - f.plot_h * ((t - lo) / (hi - lo)).clamp(0.0, 1.0)
    };
    match scale {
        Scale::Linear => {
            for v in [0.0, hi / 2.0, hi] {
                y_label(&mut out, pos(v), &fmt(v));
            }
        }
        Scale::Log => {
            let mut e = lo;
            while e <= hi {
                let v = 10f64.powf(e);
                y_label(&mut out, pos(v), &fmt(v));
                e += 1.0;
            }
        }
    }
    for s in series {
        let mut d = String::new();
        let mut pen_down = false;
        for i in 0..axis.intervals {
            match s.values.get(i).copied().flatten() {
                Some(v) => {
                    let cmd = if pen_down { 'L' } else { 'M' };
                    let _ = write!(d, "{cmd}{:.1},{:.1} ", f.x(i) + f.step() / 2.0, pos(v));
                    pen_down = true;
                }
                None => pen_down = false,
            }
        }
        if d.is_empty() {
            continue;
        }
        let dash = if s.dashed {
            r#" stroke-dasharray="5,3""#
        } else {
            ""
        };
        let _ = write!(
            out,
            r#"<path d="{}" fill="none" stroke="{}" stroke-width="1.5"{dash}><title>{}</title></path>"#,
            d.trim_end(),
            Html(s.color),
            Html(s.name)
        );
    }
    x_labels(&mut out, axis, &f);
    legend(&mut out, series);
    out.push_str("</svg>");
    out
}

/// A log2 heatmap: one column per interval, one row per histogram slot
/// (`cells[interval][slot]`, counts), the darker the more calls; `label`
/// names a slot's lower bound. Only the slots with calls are drawn.
pub fn heatmap(
    id: &str,
    title: &str,
    axis: &Axis,
    cells: &[Vec<u64>],
    label: fn(usize) -> String,
) -> String {
    let used = |i: usize| cells.iter().any(|c| c.get(i).is_some_and(|n| *n > 0));
    let slots = cells.iter().map(Vec::len).max().unwrap_or(0);
    let (Some(lo), Some(hi)) = (
        (0..slots).find(|&i| used(i)),
        (0..slots).rfind(|&i| used(i)),
    ) else {
        return String::new();
    };
    let rows = hi - lo + 1;
    let f = Frame::new(axis, (14.0 * rows as f64).max(60.0) + TOP + BOTTOM);
    let row_h = f.plot_h / rows as f64;
    let max = cells.iter().flatten().copied().max().unwrap_or(1).max(1) as f64;
    let mut out = String::new();
    open(&mut out, id, title, &f);
    for r in 0..rows {
        let slot = lo + r;
        let y = f.bottom() - row_h * (r as f64 + 1.0);
        if rows <= 12 || r % 2 == 0 {
            y_label(&mut out, y + row_h / 2.0, &label(slot));
        }
        for (i, col) in cells.iter().enumerate() {
            let n = col.get(slot).copied().unwrap_or(0);
            if n == 0 {
                continue;
            }
            // Log shading: one call is visible beside a million.
            let t = ((n as f64).ln_1p() / max.ln_1p()).clamp(0.08, 1.0);
            let _ = write!(
                out,
                r#"<rect x="{:.2}" y="{y:.2}" width="{:.2}" height="{row_h:.2}" fill="rgb({},{},{})"><title>{}: {n}</title></rect>"#,
                f.x(i),
                f.step().max(0.5),
                (255.0 - 224.0 * t) as u8,
                (255.0 - 136.0 * t) as u8,
                (255.0 - 75.0 * t) as u8,
                Html(&label(slot))
            );
        }
    }
    x_labels(&mut out, axis, &f);
    out.push_str("</svg>");
    out
}

/// A count for an axis: whole numbers, k and M above ten thousand.
pub fn fmt_count(v: f64) -> String {
    if v >= 10_000_000.0 {
        format!("{:.0}M", v / 1e6)
    } else if v >= 10_000.0 {
        format!("{:.0}k", v / 1e3)
    } else if v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn axis() -> Axis {
        Axis {
            intervals: 3,
            labels: vec![(0, "10:00:00".into()), (2, "<b>".into())],
        }
    }

    #[test]
    fn bars_stack_and_labels_are_escaped() {
        let svg = stacked_bars(
            "t",
            "events",
            &axis(),
            &[
                Series {
                    name: "connect",
                    color: PALETTE[0],
                    values: vec![Some(2.0), None, Some(1.0)],
                    dashed: false,
                },
                Series {
                    name: "<script>",
                    color: PALETTE[1],
                    values: vec![Some(2.0), Some(0.0), None],
                    dashed: false,
                },
            ],
        );
        assert!(svg.starts_with(r#"<svg id="t""#) && svg.ends_with("</svg>"));
        assert_eq!(svg.matches("<rect x=").count(), 3 + 1 + 2);
        assert!(svg.contains("&lt;script&gt;") && !svg.contains("<script"));
        assert!(svg.contains("&lt;b&gt;"));
    }

    #[test]
    fn heatmap_draws_the_slots_with_calls() {
        let cells = vec![vec![0, 0, 3, 0, 1], vec![], vec![0, 0, 0, 0, 9]];
        let svg = heatmap("h", "latency", &axis(), &cells, |s| format!("s{s}"));
        // Rows 2..=4, three cells.
        assert_eq!(svg.matches("<title>s").count(), 3, "{svg}");
        assert!(svg.contains(">s2<") && svg.contains(">s4<") && !svg.contains(">s1<"));
        assert!(heatmap("h", "t", &axis(), &[vec![0; 3]], |s| format!("{s}")).is_empty());
    }

    #[test]
    fn lines_break_where_values_are_missing() {
        let svg = lines(
            "l",
            "latency",
            &axis(),
            &[Series {
                name: "p99",
                color: PALETTE[0],
                values: vec![Some(1000.0), None, Some(1_000_000.0)],
                dashed: true,
            }],
            Scale::Log,
            |v| format!("{v:.0}"),
        );
        assert_eq!(svg.matches('M').count(), 2, "{svg}");
        assert!(svg.contains("stroke-dasharray"));
        assert!(svg.contains(">1000000<"), "{svg}");
    }
}
