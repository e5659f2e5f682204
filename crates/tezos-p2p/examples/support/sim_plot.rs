//! The `sim` example's figures, as SVG files (plotters' SVG backend).

use std::path::Path;

use plotters::prelude::*;

type Result = std::result::Result<(), Box<dyn std::error::Error>>;

const SIZE: (u32, u32) = (800, 480);

/// One line of a chart: a label, a colour index and its points.
pub struct Series<'a> {
    pub label: &'a str,
    pub points: Vec<(f64, f64)>,
}

fn colour(i: usize) -> RGBColor {
    const C: [RGBColor; 6] = [
        RGBColor(31, 119, 180),
        RGBColor(255, 127, 14),
        RGBColor(44, 160, 44),
        RGBColor(214, 39, 40),
        RGBColor(148, 103, 189),
        RGBColor(140, 86, 75),
    ];
    C[i % C.len()]
}

/// Lines over a shared x axis.
pub fn lines(
    path: &Path,
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[Series<'_>],
    y_range: Option<(f64, f64)>,
) -> Result {
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE)?;
    let all = series.iter().flat_map(|s| s.points.iter());
    let x_max = all.clone().map(|p| p.0).fold(0.0f64, f64::max).max(1e-9);
    let (y_min, y_max) = y_range.unwrap_or_else(|| {
        let max = all.clone().map(|p| p.1).fold(0.0f64, f64::max);
        (0.0, (max * 1.05).max(1e-9))
    });
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..x_max, y_min..y_max)?;
    chart
        .configure_mesh()
        .x_desc(x_label)
        .y_desc(y_label)
        .draw()?;
    for (i, s) in series.iter().enumerate() {
        let c = colour(i);
        chart
            .draw_series(LineSeries::new(s.points.iter().copied(), c.stroke_width(2)))?
            .label(s.label)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::LowerRight)
        .draw()?;
    root.present()?;
    Ok(())
}

/// A histogram: `counts[i]` nodes have `i` connections; the bars inside
/// `[lo, hi]` (the thresholds) are drawn in another colour.
pub fn histogram(path: &Path, title: &str, counts: &[usize], lo: usize, hi: usize) -> Result {
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE)?;
    let x_max = counts.len().max(hi + 2) as u32;
    let y_max = counts.iter().copied().max().unwrap_or(1).max(1) as f64 * 1.05;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d((0u32..x_max).into_segmented(), 0.0..y_max)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_desc("connections")
        .y_desc("nodes")
        .draw()?;
    chart.draw_series(counts.iter().enumerate().map(|(i, &n)| {
        let style = if (lo..=hi).contains(&i) {
            colour(0).filled()
        } else {
            colour(3).filled()
        };
        let x = i as u32;
        Rectangle::new(
            [
                (SegmentValue::Exact(x), 0.0),
                (SegmentValue::Exact(x + 1), n as f64),
            ],
            style,
        )
    }))?;
    root.present()?;
    Ok(())
}
