//! Charts and picture sheets of fsvfm, drawn by [plotters] with DejaVu Sans (embedded by the
//! `dejavu` crate and rasterised by `ab_glyph`, so a PNG looks the same on every machine).
//!
//! - [`Figure`]: one or more [`Panel`]s (axes with ticks, labels, a title and a legend) of
//!   [`Series`] drawn as lines, dots or bars, written as PNG or SVG by [`Figure::save`];
//! - [`sheet`]: a grid of pictures (faces, masks, reconstructions, heat maps) with a title and
//!   column/row titles in the same font;
//! - [`draw_text`] / [`text_size`]: text on an [`RgbImage`];
//! - [`figures`]: the paper's figures built from data (Fig. 4 attention statistics).

use std::path::Path;
use std::sync::OnceLock;

use image::{Rgb, RgbImage};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::FontStyle;

pub mod figures;

/// The font family every text of this crate is drawn in (registered from DejaVu Sans).
const FONT: &str = "sans-serif";

/// An RGB colour.
pub type Colour = [u8; 3];

/// matplotlib's `tab10` colours, the palette the literature's figures use.
pub const PALETTE: [Colour; 10] = [
    [31, 119, 180],
    [255, 127, 14],
    [44, 160, 44],
    [214, 39, 40],
    [148, 103, 189],
    [140, 86, 75],
    [227, 119, 194],
    [127, 127, 127],
    [188, 189, 34],
    [23, 190, 207],
];

/// What went wrong drawing or writing a chart.
#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    /// plotters refused to draw (a backend or font error).
    #[error("drawing {what}: {message}")]
    Draw {
        /// The chart or text being drawn.
        what: String,
        /// plotters' message.
        message: String,
    },
    /// Writing the file failed.
    #[error("writing {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The path's extension names no format this crate writes.
    #[error("{0}: give a path ending in .png or .svg")]
    Format(String),
    /// A sheet or figure without content, or pictures of different sizes in one sheet.
    #[error("{0}")]
    Invalid(String),
}

/// `Result` of this crate.
pub type Result<T, E = PlotError> = std::result::Result<T, E>;

/// Registers DejaVu Sans (regular and bold) as [`FONT`] once per process.
fn fonts() -> Result<()> {
    static DONE: OnceLock<bool> = OnceLock::new();
    let ok = *DONE.get_or_init(|| {
        plotters::style::register_font(FONT, FontStyle::Normal, dejavu::sans::regular()).is_ok()
            && plotters::style::register_font(FONT, FontStyle::Bold, dejavu::sans::bold()).is_ok()
    });
    if ok {
        Ok(())
    } else {
        Err(PlotError::Draw {
            what: "fonts".into(),
            message: "the embedded DejaVu Sans did not parse".into(),
        })
    }
}

fn draw_err(what: &str) -> impl Fn(String) -> PlotError + '_ {
    move |message| PlotError::Draw {
        what: what.to_string(),
        message,
    }
}

fn rgb(c: Colour) -> RGBColor {
    RGBColor(c[0], c[1], c[2])
}

/// How a [`Series`] is drawn.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Mark {
    /// A polyline through the points, `width` pixels wide.
    Line {
        /// Stroke width in pixels.
        width: u32,
    },
    /// A filled circle per point.
    Dots {
        /// Radius in pixels.
        radius: u32,
    },
    /// A bar per point `(x, y)` from 0 to `y`, centred on `x`.
    Bars {
        /// Bar width in x units.
        width: f64,
    },
}

/// One data series of a [`Panel`]. Non-finite points are left out.
#[derive(Clone, Debug)]
pub struct Series {
    /// Legend text; an empty label puts no entry in the legend.
    pub label: String,
    /// `(x, y)` in data units.
    pub points: Vec<(f64, f64)>,
    /// Colour.
    pub colour: Colour,
    /// How the points are drawn.
    pub mark: Mark,
    /// Opacity in `[0, 1]` (bars of two overlaid histograms: 0.5).
    pub alpha: f64,
}

impl Series {
    /// A 2-pixel line.
    pub fn line(label: impl Into<String>, points: Vec<(f64, f64)>, colour: Colour) -> Self {
        Series {
            label: label.into(),
            points,
            colour,
            mark: Mark::Line { width: 2 },
            alpha: 1.0,
        }
    }

    /// Dots of `radius` pixels.
    pub fn dots(
        label: impl Into<String>,
        points: Vec<(f64, f64)>,
        colour: Colour,
        radius: u32,
    ) -> Self {
        Series {
            label: label.into(),
            points,
            colour,
            mark: Mark::Dots { radius },
            alpha: 1.0,
        }
    }

    /// Half-transparent bars `width` x-units wide (a histogram: `x` = bin centre, `y` = count).
    pub fn bars(
        label: impl Into<String>,
        points: Vec<(f64, f64)>,
        colour: Colour,
        width: f64,
    ) -> Self {
        Series {
            label: label.into(),
            points,
            colour,
            mark: Mark::Bars { width },
            alpha: 0.5,
        }
    }

    fn finite(&self) -> impl Iterator<Item = (f64, f64)> + '_ {
        self.points
            .iter()
            .copied()
            .filter(|(x, y)| x.is_finite() && y.is_finite())
    }
}

/// Where a panel's legend goes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Legend {
    /// The corner with the fewest points under it (the default).
    #[default]
    Auto,
    /// Top right.
    UpperRight,
    /// Top left.
    UpperLeft,
    /// Bottom right (ROC curves).
    LowerRight,
    /// Bottom left.
    LowerLeft,
}

/// One set of axes: a title, axis labels, ticks and the series drawn on them.
#[derive(Clone, Debug, Default)]
pub struct Panel {
    /// Title above the axes.
    pub title: String,
    /// Label of the horizontal axis.
    pub x_label: String,
    /// Label of the vertical axis.
    pub y_label: String,
    /// The x range; `None`: the data's, padded by 4 %.
    pub x_range: Option<(f64, f64)>,
    /// The y range; `None`: the data's, padded by 4 % (from 0 when there are bars).
    pub y_range: Option<(f64, f64)>,
    /// The series, drawn in order (later ones on top).
    pub series: Vec<Series>,
    /// Draw the dashed `y = x` diagonal (a ROC's chance line).
    pub diagonal: bool,
    /// Ticks on the x axis only at whole numbers (blocks, epochs).
    pub x_integer: bool,
    /// Legend position.
    pub legend: Legend,
}

impl Panel {
    /// A panel with a title and axis labels and no series.
    pub fn new(
        title: impl Into<String>,
        x_label: impl Into<String>,
        y_label: impl Into<String>,
    ) -> Self {
        Panel {
            title: title.into(),
            x_label: x_label.into(),
            y_label: y_label.into(),
            ..Panel::default()
        }
    }

    fn range(&self, x_axis: bool, forced: Option<(f64, f64)>, bars: bool) -> (f64, f64) {
        let axis = |p: (f64, f64)| if x_axis { p.0 } else { p.1 };
        if let Some((lo, hi)) =
            forced.filter(|(lo, hi)| lo.is_finite() && hi.is_finite() && hi > lo)
        {
            return (lo, hi);
        }
        let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
        for s in &self.series {
            let half = match (s.mark, x_axis) {
                (Mark::Bars { width }, true) => width.abs() / 2.0,
                _ => 0.0,
            };
            for p in s.finite() {
                lo = lo.min(axis(p) - half);
                hi = hi.max(axis(p) + half);
            }
        }
        if bars {
            lo = lo.min(0.0);
            hi = hi.max(0.0);
        }
        if !lo.is_finite() || !hi.is_finite() {
            return (0.0, 1.0);
        }
        if hi - lo < 1e-12 * hi.abs().max(1.0) {
            return (lo - 0.5, hi + 0.5);
        }
        let pad = 0.04 * (hi - lo);
        (if bars && lo == 0.0 { 0.0 } else { lo - pad }, hi + pad)
    }

    fn draw<DB: DrawingBackend>(
        &self,
        area: &DrawingArea<DB, Shift>,
        height: u32,
    ) -> Result<(), String> {
        let has_bars = self
            .series
            .iter()
            .any(|s| matches!(s.mark, Mark::Bars { .. }));
        let (x0, x1) = self.range(true, self.x_range, false);
        let (y0, y1) = self.range(false, self.y_range, has_bars);
        let fs = font_scale(height);
        let mut chart = ChartBuilder::on(area)
            .caption(
                &self.title,
                (FONT, 15.0 * fs).into_font().style(FontStyle::Bold),
            )
            .margin((10.0 * fs) as u32)
            .x_label_area_size((40.0 * fs) as u32)
            .y_label_area_size((58.0 * fs) as u32)
            .build_cartesian_2d(x0..x1, y0..y1)
            .map_err(|e| e.to_string())?;
        let x_fmt = |v: &f64| tick(*v);
        let x_int = |v: &f64| {
            if (v - v.round()).abs() < 1e-9 {
                format!("{}", v.round() as i64)
            } else {
                String::new()
            }
        };
        let mut mesh = chart.configure_mesh();
        mesh.x_desc(&self.x_label)
            .y_desc(&self.y_label)
            .label_style((FONT, 11.0 * fs))
            .axis_desc_style((FONT, 12.5 * fs))
            .bold_line_style(RGBColor(225, 225, 225))
            .light_line_style(WHITE)
            .y_label_formatter(&x_fmt);
        if self.x_integer {
            let span = (x1 - x0).max(1.0);
            mesh.x_labels((span.ceil() as usize + 1).min(13))
                .x_label_formatter(&x_int);
        } else {
            mesh.x_label_formatter(&x_fmt);
        }
        mesh.draw().map_err(|e| e.to_string())?;
        if self.diagonal {
            let (lo, hi) = (x0.max(y0), x1.min(y1));
            if hi > lo {
                chart
                    .draw_series(DashedLineSeries::new(
                        [(lo, lo), (hi, hi)],
                        5,
                        4,
                        RGBColor(160, 160, 160).stroke_width(1),
                    ))
                    .map_err(|e| e.to_string())?;
            }
        }
        let mut labelled = false;
        for s in &self.series {
            let c = rgb(s.colour);
            let style = c.mix(s.alpha.clamp(0.0, 1.0));
            let label = !s.label.is_empty();
            labelled |= label;
            match s.mark {
                Mark::Line { width } => {
                    let a = chart
                        .draw_series(LineSeries::new(s.finite(), style.stroke_width(width)))
                        .map_err(|e| e.to_string())?;
                    if label {
                        a.label(&s.label).legend(move |(x, y)| {
                            PathElement::new(
                                vec![(x, y), (x + 18, y)],
                                c.stroke_width(width.max(2)),
                            )
                        });
                    }
                }
                Mark::Dots { radius } => {
                    let a = chart
                        .draw_series(s.finite().map(|p| Circle::new(p, radius, style.filled())))
                        .map_err(|e| e.to_string())?;
                    if label {
                        a.label(&s.label).legend(move |(x, y)| {
                            Circle::new((x + 9, y), radius.clamp(3, 6), c.filled())
                        });
                    }
                }
                Mark::Bars { width } => {
                    let half = width.abs() / 2.0;
                    let a = chart
                        .draw_series(s.finite().map(|(x, y)| {
                            Rectangle::new([(x - half, 0.0), (x + half, y)], style.filled())
                        }))
                        .map_err(|e| e.to_string())?;
                    if label {
                        a.label(&s.label).legend(move |(x, y)| {
                            Rectangle::new([(x, y - 5), (x + 18, y + 5)], style.filled())
                        });
                    }
                }
            }
        }
        if labelled {
            let legend = match self.legend {
                Legend::Auto => self.emptiest_corner((x0, x1), (y0, y1)),
                l => l,
            };
            let position = match legend {
                Legend::Auto | Legend::UpperRight => SeriesLabelPosition::UpperRight,
                Legend::UpperLeft => SeriesLabelPosition::UpperLeft,
                Legend::LowerRight => SeriesLabelPosition::LowerRight,
                Legend::LowerLeft => SeriesLabelPosition::LowerLeft,
            };
            chart
                .configure_series_labels()
                .position(position)
                .label_font((FONT, 11.0 * fs))
                .background_style(WHITE.mix(0.85))
                .border_style(RGBColor(190, 190, 190))
                .draw()
                .map_err(|e| e.to_string())?;
        }
        Ok(())
    }
}

impl Panel {
    /// The corner (of the four, in the order upper right, upper left, lower right, lower left)
    /// whose box — the outer 45 % of the width and 35 % of the height — holds the fewest points.
    fn emptiest_corner(&self, (x0, x1): (f64, f64), (y0, y1): (f64, f64)) -> Legend {
        let (wx, wy) = (0.45 * (x1 - x0), 0.35 * (y1 - y0));
        let corners = [
            (Legend::UpperRight, true, true),
            (Legend::UpperLeft, false, true),
            (Legend::LowerRight, true, false),
            (Legend::LowerLeft, false, false),
        ];
        let count = |right: bool, upper: bool| {
            self.series
                .iter()
                .flat_map(Series::finite)
                .filter(|&(x, y)| {
                    (if right { x >= x1 - wx } else { x <= x0 + wx })
                        && (if upper { y >= y1 - wy } else { y <= y0 + wy })
                })
                .count()
        };
        corners
            .iter()
            .min_by_key(|(_, r, u)| count(*r, *u))
            .map_or(Legend::UpperRight, |c| c.0)
    }
}

/// Text grows with the panel: sizes are set for a 300-pixel-high panel and never shrink below.
fn font_scale(panel_height: u32) -> f64 {
    (f64::from(panel_height) / 300.0).clamp(1.0, 2.5)
}

/// A tick label: whole numbers plainly, others with up to 4 significant decimals, very large or
/// small magnitudes in exponent form.
pub fn tick(v: f64) -> String {
    // A tick at zero computed as a sum of steps comes out as ±1e-17.
    if v.abs() < 1e-12 || !v.is_finite() {
        return if v.is_finite() {
            "0".into()
        } else {
            v.to_string()
        };
    }
    let a = v.abs();
    if !(1e-3..1e5).contains(&a) {
        return format!("{v:.1e}");
    }
    let s = format!("{v:.4}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" { "0".into() } else { s.to_string() }
}

/// A chart: one or more [`Panel`]s in a grid of `columns`, each `panel_size` pixels, under an
/// optional title.
#[derive(Clone, Debug)]
pub struct Figure {
    /// Title over all panels.
    pub title: Option<String>,
    /// The panels, row by row.
    pub panels: Vec<Panel>,
    /// Panels per row.
    pub columns: usize,
    /// `(width, height)` of each panel in pixels.
    pub panel_size: (u32, u32),
}

impl Figure {
    /// One panel of 420 × 340 pixels.
    pub fn single(panel: Panel) -> Self {
        Figure {
            title: None,
            panels: vec![panel],
            columns: 1,
            panel_size: (420, 340),
        }
    }

    fn title_height(&self) -> u32 {
        if self.title.is_some() {
            (30.0 * font_scale(self.panel_size.1)) as u32
        } else {
            0
        }
    }

    /// `(width, height)` of the whole picture in pixels.
    pub fn size(&self) -> (u32, u32) {
        let cols = self.columns.clamp(1, self.panels.len().max(1));
        let rows = self.panels.len().div_ceil(cols).max(1);
        (
            self.panel_size.0 * cols as u32,
            self.panel_size.1 * rows as u32 + self.title_height(),
        )
    }

    fn check(&self) -> Result<()> {
        let (w, h) = self.size();
        if self.panels.is_empty() || w == 0 || h == 0 || u64::from(w) * u64::from(h) > 64 << 20 {
            return Err(PlotError::Invalid(format!(
                "a figure needs at least one panel and a size up to 64 Mpixel (got {} panels, {w}×{h})",
                self.panels.len()
            )));
        }
        Ok(())
    }

    fn draw<DB: DrawingBackend>(&self, root: DrawingArea<DB, Shift>) -> Result<(), String> {
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let body = match &self.title {
            Some(t) => {
                let fs = font_scale(self.panel_size.1);
                let (top, rest) = root.split_vertically(self.title_height());
                let style = TextStyle::from((FONT, 17.0 * fs).into_font().style(FontStyle::Bold))
                    .pos(plotters::style::text_anchor::Pos::new(
                        plotters::style::text_anchor::HPos::Center,
                        plotters::style::text_anchor::VPos::Center,
                    ));
                let (w, h) = top.dim_in_pixel();
                top.draw_text(t, &style, (w as i32 / 2, h as i32 / 2))
                    .map_err(|e| e.to_string())?;
                rest
            }
            None => root.clone(),
        };
        let cols = self.columns.clamp(1, self.panels.len().max(1));
        let rows = self.panels.len().div_ceil(cols).max(1);
        let areas = body.split_evenly((rows, cols));
        for (panel, area) in self.panels.iter().zip(&areas) {
            panel.draw(area, self.panel_size.1)?;
        }
        root.present().map_err(|e| e.to_string())
    }

    fn what(&self) -> String {
        self.title
            .clone()
            .or_else(|| self.panels.first().map(|p| p.title.clone()))
            .unwrap_or_else(|| "a figure".into())
    }

    /// The figure as a picture.
    pub fn to_image(&self) -> Result<RgbImage> {
        self.check()?;
        fonts()?;
        let (w, h) = self.size();
        let mut buf = vec![255u8; w as usize * h as usize * 3];
        self.draw(BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area())
            .map_err(draw_err(&self.what()))?;
        RgbImage::from_raw(w, h, buf).ok_or_else(|| PlotError::Invalid("figure buffer".into()))
    }

    /// The figure as an SVG document (text as `<text>` in `sans-serif`).
    pub fn to_svg(&self) -> Result<String> {
        self.check()?;
        fonts()?;
        let mut s = String::new();
        self.draw(SVGBackend::with_string(&mut s, self.size()).into_drawing_area())
            .map_err(draw_err(&self.what()))?;
        Ok(s)
    }

    /// Writes the figure atomically as PNG (`.png`) or SVG (`.svg`), by the path's extension.
    pub fn save(&self, path: &Path) -> Result<()> {
        let io = |source| PlotError::Io {
            path: path.display().to_string(),
            source,
        };
        match Format::of(path)? {
            Format::Png => fsvfm_data::atomic::write_png(&self.to_image()?, path).map_err(io),
            Format::Svg => {
                fsvfm_data::atomic::write_atomic(path, self.to_svg()?.as_bytes(), false).map_err(io)
            }
        }
    }

    /// Writes `STEM.png` and `STEM.svg` (the report shows the PNG; the SVG is for papers). The
    /// extension is appended, so a stem with a dot (`roc-celeb.v2`) keeps it.
    pub fn save_both(&self, stem: &Path) -> Result<()> {
        for ext in [".png", ".svg"] {
            let mut p = stem.as_os_str().to_owned();
            p.push(ext);
            self.save(Path::new(&p))?;
        }
        Ok(())
    }
}

/// A file format of [`Figure::save`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// PNG (RGB, 8 bits).
    Png,
    /// SVG 1.1.
    Svg,
}

impl Format {
    /// The format a path's extension names (case-insensitive).
    pub fn of(path: &Path) -> Result<Format> {
        match path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            Some("png") => Ok(Format::Png),
            Some("svg") => Ok(Format::Svg),
            _ => Err(PlotError::Format(path.display().to_string())),
        }
    }
}

/// `(width, height)` in pixels of `text` at `size` pixels (the font's em height).
pub fn text_size(text: &str, size: f64) -> Result<(u32, u32)> {
    fonts()?;
    (FONT, size)
        .into_font()
        .box_size(text)
        .map_err(|e| draw_err("text")(e.to_string()))
}

/// Draws `text` on `img` with its top-left corner at `pos`, `size` pixels high, anti-aliased;
/// what falls outside the picture is clipped.
pub fn draw_text(
    img: &mut RgbImage,
    pos: (i32, i32),
    text: &str,
    size: f64,
    colour: Colour,
) -> Result<()> {
    draw_text_styled(img, pos, text, size, colour, false)
}

fn draw_text_styled(
    img: &mut RgbImage,
    pos: (i32, i32),
    text: &str,
    size: f64,
    colour: Colour,
    bold: bool,
) -> Result<()> {
    fonts()?;
    let (w, h) = img.dimensions();
    if w == 0 || h == 0 || text.is_empty() {
        return Ok(());
    }
    let buf: &mut [u8] = std::ops::DerefMut::deref_mut(img);
    let root = BitMapBackend::with_buffer(buf, (w, h)).into_drawing_area();
    let font = (FONT, size).into_font();
    let font = if bold {
        font.style(FontStyle::Bold)
    } else {
        font
    };
    let colour = rgb(colour);
    let style = TextStyle::from(font).color(&colour);
    root.draw_text(text, &style, pos)
        .and_then(|()| root.present())
        .map_err(|e| draw_err("text")(e.to_string()))
}

/// The largest size ≤ `size` (down to 8 px) at which `text` fits in `width` pixels.
fn fitting(text: &str, size: f64, width: u32) -> Result<f64> {
    let mut s = size;
    while s > 8.0 && text_size(text, s)?.0 > width {
        s -= 1.0;
    }
    Ok(s)
}

/// A picture sheet: `rows` of equally sized pictures under an optional bold `title`, with a title
/// over each column and, when given, one left of each row (every text at most 14 px, shrunk to
/// fit its cell).
///
/// # Errors
/// No pictures, rows of different lengths, or pictures of different sizes.
pub fn sheet(
    title: Option<&str>,
    column_titles: &[String],
    row_titles: &[String],
    rows: &[Vec<RgbImage>],
) -> Result<RgbImage> {
    let first = rows
        .first()
        .and_then(|r| r.first())
        .ok_or_else(|| PlotError::Invalid("a sheet needs at least one picture".into()))?;
    let (cw, ch) = first.dimensions();
    let cols = rows[0].len();
    for r in rows {
        if r.len() != cols || r.iter().any(|p| p.dimensions() != (cw, ch)) {
            return Err(PlotError::Invalid(format!(
                "a sheet's rows need {cols} pictures of {cw}×{ch} each"
            )));
        }
    }
    let gap = 6u32;
    let size = 14.0f64.min(8.0 + f64::from(cw) / 16.0);
    let label_h = if column_titles.is_empty() {
        0
    } else {
        size as u32 + 8
    };
    let title_h = if title.is_some() { 28 } else { 0 };
    let mut left = 0u32;
    for t in row_titles {
        left = left.max(text_size(t, size)?.0 + gap);
    }
    let (w, h) = (
        left + cols as u32 * (cw + gap) + gap,
        title_h + label_h + rows.len() as u32 * (ch + gap) + gap,
    );
    if u64::from(w) * u64::from(h) > 64 << 20 {
        return Err(PlotError::Invalid(format!(
            "a sheet of {w}×{h} pixels is too large"
        )));
    }
    let mut canvas = RgbImage::from_pixel(w, h, Rgb([255; 3]));
    if let Some(t) = title {
        let s = fitting(t, 17.0, w.saturating_sub(2 * gap))?;
        let tw = text_size(t, s)?.0;
        draw_text_styled(
            &mut canvas,
            (((w - tw.min(w)) / 2) as i32, 6),
            t,
            s,
            [0; 3],
            true,
        )?;
    }
    for (k, t) in column_titles.iter().take(cols).enumerate() {
        let s = fitting(t, size, cw)?;
        let tw = text_size(t, s)?.0.min(cw);
        let x = left + gap + k as u32 * (cw + gap) + (cw - tw) / 2;
        draw_text(&mut canvas, (x as i32, (title_h + 3) as i32), t, s, [0; 3])?;
    }
    for (i, row) in rows.iter().enumerate() {
        let y = title_h + label_h + gap + i as u32 * (ch + gap);
        for (k, pic) in row.iter().enumerate() {
            let x = left + gap + k as u32 * (cw + gap);
            image::imageops::replace(&mut canvas, pic, i64::from(x), i64::from(y));
        }
        if let Some(t) = row_titles.get(i) {
            let y = y + ch / 2 - (size as u32) / 2;
            draw_text(&mut canvas, (gap as i32 / 2, y as i32), t, size, [0; 3])?;
        }
    }
    Ok(canvas)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_legend_goes_where_the_data_is_not() {
        let mut p = Panel::new("t", "x", "y");
        // Points fill the upper half and the lower right: the lower left is empty.
        let pts = vec![
            (0.1, 0.9),
            (0.9, 0.9),
            (0.5, 0.95),
            (0.9, 0.1),
            (0.95, 0.05),
        ];
        p.series.push(Series::dots("a", pts, PALETTE[0], 3));
        assert_eq!(p.emptiest_corner((0.0, 1.0), (0.0, 1.0)), Legend::LowerLeft);
        p.series[0].points = vec![(0.1, 0.1), (0.9, 0.1)];
        assert_eq!(
            p.emptiest_corner((0.0, 1.0), (0.0, 1.0)),
            Legend::UpperRight
        );
    }
}
