//! Charts and sheets: what is drawn lands where the axes say, text is a proportional TrueType
//! font (anti-aliased, glyph widths differ), both formats are written, bad requests are errors.

use fsvfm_plot::figures::{AttentionEntry, attention_statistics};
use fsvfm_plot::{Figure, Format, Panel, PlotError, Series, draw_text, sheet, text_size, tick};
use image::{Rgb, RgbImage};

const RED: [u8; 3] = [214, 39, 40];

fn reddish(p: &Rgb<u8>) -> bool {
    p.0[0] > 150 && p.0[1] < 120 && p.0[2] < 120
}

#[test]
fn a_proportional_anti_aliased_font() {
    let (wide, _) = text_size("WWWWWWWWWW", 14.0).unwrap();
    let (narrow, h) = text_size("iiiiiiiiii", 14.0).unwrap();
    // A 5×7 bitmap font gives every glyph the same advance.
    assert!(wide > 2 * narrow, "{wide} vs {narrow}");
    assert!((8..=20).contains(&h), "{h}");
    let (big, _) = text_size("WWWWWWWWWW", 28.0).unwrap();
    assert!(
        (big as f64 / wide as f64 - 2.0).abs() < 0.15,
        "{big} vs {wide}"
    );

    let mut img = RgbImage::from_pixel(200, 40, Rgb([255; 3]));
    draw_text(&mut img, (10, 10), "Mean attention", 14.0, [0, 0, 0]).unwrap();
    let inked: Vec<u8> = img.pixels().map(|p| p.0[0]).filter(|&v| v < 255).collect();
    assert!(inked.len() > 100, "{}", inked.len());
    // Anti-aliasing: intermediate levels, not only ink and paper.
    assert!(inked.iter().any(|&v| v > 60 && v < 200));
    // Nothing left of the anchor nor far right of the measured width.
    let (tw, _) = text_size("Mean attention", 14.0).unwrap();
    for (x, _, p) in img.enumerate_pixels() {
        if p.0[0] < 255 {
            assert!(
                x >= 9 && x <= 10 + tw + 2,
                "ink at x = {x} (text {tw} wide from 10)"
            );
        }
    }
}

#[test]
fn a_line_lands_where_its_axes_put_it() {
    let mut p = Panel::new("line", "x", "y");
    p.x_range = Some((0.0, 1.0));
    p.y_range = Some((0.0, 1.0));
    p.series.push(Series {
        mark: fsvfm_plot::Mark::Line { width: 3 },
        ..Series::line("up", vec![(0.0, 0.0), (1.0, 1.0)], RED)
    });
    let f = Figure::single(p);
    let img = f.to_image().unwrap();
    assert_eq!(img.dimensions(), f.size());
    // Find the plotting area from the red pixels: the line runs bottom-left to top-right.
    let red: Vec<(u32, u32)> = img
        .enumerate_pixels()
        .filter(|(_, _, p)| reddish(p))
        .map(|(x, y, _)| (x, y))
        .collect();
    assert!(red.len() > 200, "{}", red.len());
    let left = red.iter().filter(|(x, _)| *x < img.width() / 2);
    let right = red.iter().filter(|(x, _)| *x >= img.width() / 2);
    let mean_y = |v: Vec<&(u32, u32)>| v.iter().map(|p| p.1 as f64).sum::<f64>() / v.len() as f64;
    assert!(mean_y(left.collect()) > mean_y(right.collect()) + 50.0);
    // The legend's sample and label are there too (red pixels beyond the line's band).
}

#[test]
fn bars_and_dots_and_bad_values() {
    let mut p = Panel::new("histogram", "score", "images");
    p.series.push(Series::bars(
        "real",
        vec![(0.25, 3.0), (0.75, 1.0)],
        [31, 119, 180],
        0.5,
    ));
    p.series.push(Series::dots(
        "fake",
        vec![(0.5, f64::NAN), (f64::INFINITY, 1.0), (0.5, 2.0)],
        RED,
        4,
    ));
    let img = Figure::single(p.clone()).to_image().unwrap();
    assert!(img.pixels().any(reddish));
    // An empty panel still draws its axes.
    let empty = Figure::single(Panel::new("nothing", "x", "y"))
        .to_image()
        .unwrap();
    assert!(empty.pixels().any(|q| q.0[0] < 100));
    let svg = Figure::single(p).to_svg().unwrap();
    assert!(
        svg.starts_with("<svg") && svg.contains("histogram") && svg.contains("<rect"),
        "{}",
        &svg[..200.min(svg.len())]
    );
}

#[test]
fn saves_png_and_svg_by_extension_and_refuses_others() {
    let dir = tempfile::tempdir().unwrap();
    let mut p = Panel::new("t", "x", "y");
    p.series
        .push(Series::line("a", vec![(0.0, 1.0), (1.0, 2.0)], RED));
    let f = Figure {
        title: Some("Both".into()),
        panels: vec![p.clone(), p],
        columns: 2,
        panel_size: (300, 240),
    };
    assert_eq!(f.size(), (600, 240 + 30));
    f.save_both(&dir.path().join("chart")).unwrap();
    let png = image::open(dir.path().join("chart.png")).unwrap().to_rgb8();
    assert_eq!(png.dimensions(), f.size());
    let svg = std::fs::read_to_string(dir.path().join("chart.svg")).unwrap();
    assert!(svg.contains("Both") && svg.contains("<polyline"));
    assert!(matches!(
        f.save(&dir.path().join("chart.jpg")),
        Err(PlotError::Format(_))
    ));
    assert_eq!(Format::of("A.SVG".as_ref()).unwrap(), Format::Svg);
    let none = Figure {
        panels: vec![],
        ..f
    };
    assert!(matches!(none.to_image(), Err(PlotError::Invalid(_))));
}

#[test]
fn sheets_place_pictures_under_titles() {
    let a = RgbImage::from_pixel(40, 30, Rgb([0, 200, 0]));
    let b = RgbImage::from_pixel(40, 30, Rgb([0, 0, 200]));
    let s = sheet(
        Some("A sheet"),
        &["first".into(), "second".into()],
        &["row".into()],
        &[vec![a.clone(), b.clone()]],
    )
    .unwrap();
    // Row title on the left, so the pictures start right of it; find the green and the blue block.
    let find = |c: [u8; 3]| {
        s.enumerate_pixels()
            .find(|(_, _, p)| p.0 == c)
            .map(|(x, y, _)| (x, y))
            .unwrap()
    };
    let (gx, gy) = find([0, 200, 0]);
    let (bx, by) = find([0, 0, 200]);
    assert_eq!(gy, by);
    assert_eq!(bx - gx, 40 + 6);
    assert!(gy > 28, "{gy}: below the title and the column titles");
    assert!(gx > 6 + text_size("row", 10.5).unwrap().0 / 2);
    // Titles are ink above the pictures.
    assert!((0..gy).any(|y| (0..s.width()).any(|x| s.get_pixel(x, y).0[0] < 128)));
    assert!(sheet(None, &[], &[], &[vec![a.clone()], vec![]]).is_err());
    assert!(sheet(None, &[], &[], &[vec![a, RgbImage::new(3, 3)]]).is_err());
    assert!(sheet(None, &[], &[], &[]).is_err());
}

#[test]
fn attention_figure_has_a_series_per_encoder_and_granularity() {
    let d = vec![vec![10.0, 20.0], vec![30.0, 60.0]];
    let k = vec![vec![0.1, 0.2], vec![0.3, 0.4]];
    let f = attention_statistics(
        "Fig. 4",
        &[
            AttentionEntry {
                name: "(a)",
                distance: &d,
                kl: &k,
            },
            AttentionEntry {
                name: "(c)",
                distance: &d,
                kl: &k,
            },
        ],
    );
    assert_eq!(f.panels.len(), 2);
    for p in &f.panels {
        assert_eq!(p.series.len(), 4);
        // Per head: 2 blocks × 2 heads; block means: one per block.
        assert_eq!(p.series[0].points.len(), 4);
        assert_eq!(p.series[1].points.len(), 2);
        assert_eq!(p.series[1].label, "(a)");
    }
    assert_eq!(f.panels[0].series[1].points[1], (2.0 - 0.2, 45.0));
    assert_eq!(
        f.panels[1].series[3].points[0],
        (1.0 + 0.2, 0.15000000000000002)
    );
    f.to_image().unwrap();
}

#[test]
fn ticks_read_as_numbers() {
    assert_eq!(tick(0.0), "0");
    assert_eq!(tick(-5.6e-17), "0");
    assert_eq!(tick(0.5), "0.5");
    assert_eq!(tick(2.0), "2");
    assert_eq!(tick(0.12345), "0.1235");
    assert_eq!(tick(-0.00001), "-1.0e-5");
    assert_eq!(tick(250000.0), "2.5e5");
}
