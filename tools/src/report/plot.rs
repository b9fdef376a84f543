//! The report's SVG plots (`plotters`, SVG backend only: no font or bitmap libraries to build).
//! Each plot is drawn into a string; the caller writes it. A plot the trace has no data for is not
//! drawn (`None`).

use super::markdown::us;
use super::model::{MemorySeries, Report};
use plotters::prelude::*;

pub const FAULTS_SVG: &str = "faults.svg";
pub const CASES_SVG: &str = "cases.svg";
pub const LATENCY_SVG: &str = "latency.svg";
pub const LATENCY_CDF_SVG: &str = "latency-cdf.svg";
pub const MEMORY_SVG: &str = "memory.svg";
pub const SAVINGS_SVG: &str = "savings.svg";
pub const SHARING_SVG: &str = "sharing.svg";

const SIZE: (u32, u32) = (900, 450);

/// A plot: `None` when the report has no data for it, else its SVG or why it could not be drawn.
type Draw = fn(&Report) -> Option<Result<String, String>>;

/// Every plot `r` has data for: (file name, SVG text).
pub fn all(r: &Report) -> Result<Vec<(&'static str, String)>, String> {
    let mut out = Vec::new();
    let plots: [(&'static str, Draw); 7] = [
        (FAULTS_SVG, faults),
        (CASES_SVG, cases),
        (LATENCY_SVG, latency),
        (LATENCY_CDF_SVG, latency_cdf),
        (MEMORY_SVG, memory),
        (SAVINGS_SVG, savings),
        (SHARING_SVG, sharing),
    ];
    for (name, draw) in plots {
        if let Some(svg) = draw(r) {
            out.push((name, svg.map_err(|e| format!("{name}: {e}"))?));
        }
    }
    Ok(out)
}

pub fn color(i: usize) -> RGBAColor {
    Palette99::pick(i).mix(1.0)
}

/// Run `draw` on a fresh SVG canvas and return the text.
fn svg(draw: impl FnOnce(&DrawingArea<SVGBackend, plotters::coord::Shift>) -> Result<(), String>) -> Result<String, String> {
    let mut text = String::new();
    {
        let root = SVGBackend::with_string(&mut text, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        draw(&root)?;
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(text)
}

/// Records per timeline bucket, one line per VM.
fn faults(r: &Report) -> Option<Result<String, String>> {
    let t = &r.timeline;
    if t.buckets.is_empty() {
        return None;
    }
    let xmax = t.buckets.len() as f64 * t.width;
    let ymax = t.buckets.iter().flatten().copied().max().unwrap_or(0).max(1);
    Some(svg(|root| {
        let mut chart = ChartBuilder::on(root)
            .caption("faults over time", ("sans-serif", 20))
            .margin(10)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(0f64..xmax, 0u64..ymax + ymax / 10)
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .x_desc(t.axis.label())
            .y_desc(format!("fault records per {}", t.axis.bucket(t.width)))
            .draw()
            .map_err(|e| e.to_string())?;
        for (i, vm) in r.vms.iter().enumerate() {
            let c = color(i);
            let points = t.buckets.iter().enumerate().map(|(b, counts)| (b as f64 * t.width, counts[i]));
            chart
                .draw_series(LineSeries::new(points, c.stroke_width(2)))
                .map_err(|e| e.to_string())?
                .label(vm.name.clone())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2)));
        }
        chart.configure_series_labels().background_style(WHITE.mix(0.8)).border_style(BLACK).draw().map_err(|e| e.to_string())
    }))
}

/// A bar chart of `bars` (label, value) on a log scale: the counts span orders of magnitude
/// (16384 zero-fills beside 3 copies; 15000 fast faults beside a few slow ones).
fn bars(caption: &str, x_desc: &str, y_desc: &str, bars: &[(String, u64)]) -> Result<String, String> {
    let ymax = bars.iter().map(|b| b.1).max().unwrap_or(0).max(1) as f64;
    // A segmented range `0..n` has segments 0..=n: one per bar is `0..n-1`.
    let x = (0u32..(bars.len() as u32).saturating_sub(1)).into_segmented();
    let label = |v: &SegmentValue<u32>| match v {
        SegmentValue::CenterOf(i) => bars.get(*i as usize).map_or(String::new(), |b| b.0.clone()),
        _ => String::new(),
    };
    // An empty bucket gets no bar (on a log axis a 0 would reach down past the plot).
    let data = bars.iter().enumerate().filter(|(_, b)| b.1 > 0).map(|(i, b)| (i as u32, b.1 as f64));
    svg(|root| {
        let mut builder = ChartBuilder::on(root);
        let chart = builder.caption(caption, ("sans-serif", 20)).margin(10).x_label_area_size(40).y_label_area_size(60);
        let e = |e: plotters::drawing::DrawingAreaErrorKind<std::io::Error>| e.to_string();
        // Bars start at 0.5: below a count of 1, so a single fault still shows.
        let mut c = chart.build_cartesian_2d(x, (0.5f64..ymax * 2.0).log_scale()).map_err(e)?;
        c.configure_mesh()
            .disable_x_mesh()
            .x_labels(bars.len())
            .x_label_formatter(&label)
            .y_label_formatter(&|v| format!("{v:.0}"))
            .x_desc(x_desc)
            .y_desc(format!("{y_desc} (log)"))
            .draw()
            .map_err(e)?;
        c.draw_series(Histogram::vertical(&c).style(color(0).filled()).margin(4).baseline(0.5).data(data)).map_err(e)?;
        Ok(())
    })
}

/// How faults ended, over all VMs.
fn cases(r: &Report) -> Option<Result<String, String>> {
    let b: Vec<(String, u64)> = r.cases.iter().map(|(k, v)| (k.clone(), *v)).collect();
    (!b.is_empty()).then(|| bars("fault-case mix", "case or outcome", "faults", &b))
}

/// The cost histogram, power-of-two buckets labelled by their lower edge.
fn latency(r: &Report) -> Option<Result<String, String>> {
    let l = r.latency.as_ref()?;
    let b: Vec<(String, u64)> = l.histogram.iter().map(|(lo, _, n)| (us(*lo), *n)).collect();
    Some(bars("fault latency (trap entry to ERET)", "µs, at least", "faults", &b))
}

/// The cost CDF on a log time axis (the tail is what differs between runs).
fn latency_cdf(r: &Report) -> Option<Result<String, String>> {
    let l = r.latency.as_ref()?;
    let us: Vec<(f64, f64)> = l.cdf.iter().map(|&(ns, f)| ((ns / 1000.0).max(1e-3), f)).collect();
    let lo = us.first().map_or(1e-3, |p| p.0) / 2.0;
    let hi = us.last().map_or(1.0, |p| p.0) * 2.0;
    Some(svg(|root| {
        let mut chart = ChartBuilder::on(root)
            .caption("fault latency CDF", ("sans-serif", 20))
            .margin(10)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d((lo..hi).log_scale(), 0f64..1.0)
            .map_err(|e| e.to_string())?;
        chart.configure_mesh().x_desc("µs (log)").y_desc("fraction of faults").draw().map_err(|e| e.to_string())?;
        chart.draw_series(LineSeries::new(us, color(0).stroke_width(2))).map_err(|e| e.to_string())?;
        Ok(())
    }))
}

/// Resident (thick) pages per VM over time, and shared and swapped (thin) where any VM has some
/// (all zero until page sharing and swap land: lines at 0 would only hide the axis).
fn memory(r: &Report) -> Option<Result<String, String>> {
    if r.memory.is_empty() {
        return None;
    }
    let xmax = r.memory.iter().flat_map(|s| s.t_s.iter().copied()).fold(0.0, f64::max).max(1e-3);
    let ymax = r.memory.iter().flat_map(|s| s.resident.iter().chain(&s.shared).copied()).max().unwrap_or(0).max(1);
    Some(svg(|root| {
        let mut chart = ChartBuilder::on(root)
            .caption("memory over time", ("sans-serif", 20))
            .margin(10)
            .x_label_area_size(40)
            .y_label_area_size(70)
            .build_cartesian_2d(0f64..xmax, 0u64..ymax + ymax / 10)
            .map_err(|e| e.to_string())?;
        chart.configure_mesh().x_desc("time (s)").y_desc("pages").draw().map_err(|e| e.to_string())?;
        for (i, s) in r.memory.iter().enumerate() {
            let c = color(i);
            let any = |f: fn(&MemorySeries) -> &Vec<u64>| r.memory.iter().any(|s| f(s).iter().any(|&v| v > 0));
            let kinds = [("resident", &s.resident, 2, true), ("shared", &s.shared, 1, any(|s| &s.shared)), ("swapped", &s.swapped, 1, any(|s| &s.swapped))];
            for (what, values, width, _) in kinds.into_iter().filter(|k| k.3) {
                chart
                    .draw_series(LineSeries::new(s.t_s.iter().copied().zip(values.iter().copied()), c.stroke_width(width)))
                    .map_err(|e| e.to_string())?
                    .label(format!("{} {what}", s.name))
                    .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(width)));
            }
        }
        chart.configure_series_labels().background_style(WHITE.mix(0.8)).border_style(BLACK).draw().map_err(|e| e.to_string())
    }))
}

/// Frames the dedup passes saved so far, a step at each pass.
fn savings(r: &Report) -> Option<Result<String, String>> {
    let last = r.savings.last()?;
    let xmax = last.0.max(1e-3) * 1.05;
    let ymax = last.1.max(1);
    // A step line: the count holds from one pass to the next.
    let mut steps = vec![(0.0, 0)];
    for &(t, saved) in &r.savings {
        steps.push((t, steps.last().map_or(0, |p| p.1)));
        steps.push((t, saved));
    }
    Some(svg(|root| {
        let mut chart = ChartBuilder::on(root)
            .caption("frames saved by dedup", ("sans-serif", 20))
            .margin(10)
            .x_label_area_size(40)
            .y_label_area_size(70)
            .build_cartesian_2d(0f64..xmax, 0u64..ymax + ymax / 10)
            .map_err(|e| e.to_string())?;
        chart.configure_mesh().x_desc("time (s)").y_desc("pages merged so far").draw().map_err(|e| e.to_string())?;
        chart.draw_series(LineSeries::new(steps, color(0).stroke_width(2))).map_err(|e| e.to_string())?;
        Ok(())
    }))
}

/// One figure of a sharing point.
type Figure = fn(&super::model::SharingPoint) -> u64;

/// Frames saved by sharing at each accounting pass: by clone, image and dedup (thin) and all
/// together (thick).
fn sharing(r: &Report) -> Option<Result<String, String>> {
    let last = r.sharing.last()?;
    let xmax = last.t_s.max(1e-3) * 1.05;
    let ymax = r.sharing.iter().map(|p| p.saved()).max().unwrap_or(0).max(1);
    Some(svg(|root| {
        let mut chart = ChartBuilder::on(root)
            .caption("frames saved by sharing", ("sans-serif", 20))
            .margin(10)
            .x_label_area_size(40)
            .y_label_area_size(70)
            .build_cartesian_2d(0f64..xmax, 0u64..ymax + ymax / 10)
            .map_err(|e| e.to_string())?;
        chart.configure_mesh().x_desc("time (s)").y_desc("frames saved").draw().map_err(|e| e.to_string())?;
        let lines: [(&str, Figure, u32); 4] =
            [("all", |p| p.saved(), 2), ("clone", |p| p.clone, 1), ("image", |p| p.image, 1), ("dedup", |p| p.dedup, 1)];
        for (i, (what, f, width)) in lines.into_iter().enumerate() {
            let c = color(i);
            chart
                .draw_series(LineSeries::new(r.sharing.iter().map(|p| (p.t_s, f(p))), c.stroke_width(width)))
                .map_err(|e| e.to_string())?
                .label(what)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(width)));
        }
        chart.configure_series_labels().background_style(WHITE.mix(0.8)).border_style(BLACK).draw().map_err(|e| e.to_string())
    }))
}
