//! Attention heat maps over face crops (the paper's Fig. 5 style).

use image::RgbImage;

/// A blue→red colour for `t` in `[0, 1]` (jet-like), channels in `[0, 1]`.
pub fn heat_colour(t: f32) -> [f32; 3] {
    let t = t.clamp(0.0, 1.0);
    let ramp = |c: f32| (1.5 - (4.0 * t - c).abs()).clamp(0.0, 1.0);
    [ramp(3.0), ramp(2.0), ramp(1.0)]
}

/// The crop with a `g × g` map (raster order, `g² = map.len()`) upsampled bilinearly between
/// patch centres, min–max scaled, coloured by [`heat_colour`] and blended at 50 %.
pub fn overlay(crop: &RgbImage, map: &[f32]) -> RgbImage {
    let g = (map.len() as f64).sqrt() as usize;
    let (lo, hi) = map
        .iter()
        .fold((f32::MAX, f32::MIN), |(a, b), &v| (a.min(v), b.max(v)));
    let span = (hi - lo).max(1e-12);
    let (w, h) = crop.dimensions();
    let mut out = crop.clone();
    if g == 0 {
        return out;
    }
    for (x, y, px) in out.enumerate_pixels_mut() {
        let fx = ((x as f32 + 0.5) / w as f32 * g as f32 - 0.5).clamp(0.0, (g - 1) as f32);
        let fy = ((y as f32 + 0.5) / h as f32 * g as f32 - 0.5).clamp(0.0, (g - 1) as f32);
        let (x0, y0) = (fx.floor() as usize, fy.floor() as usize);
        let (x1, y1) = ((x0 + 1).min(g - 1), (y0 + 1).min(g - 1));
        let (ax, ay) = (fx - x0 as f32, fy - y0 as f32);
        let at = |r: usize, c: usize| map[r * g + c];
        let v = (at(y0, x0) * (1.0 - ax) + at(y0, x1) * ax) * (1.0 - ay)
            + (at(y1, x0) * (1.0 - ax) + at(y1, x1) * ax) * ay;
        let c = heat_colour((v - lo) / span);
        for (o, h) in px.0.iter_mut().zip(c) {
            *o = (0.5 * *o as f32 + 0.5 * 255.0 * h).round() as u8;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heat_colours_run_blue_to_red() {
        let (lo, hi) = (heat_colour(0.0), heat_colour(1.0));
        assert!(lo[2] > lo[0] && hi[0] > hi[2]);
    }

    #[test]
    fn heatmap_is_hot_where_attention_is() {
        let crop = RgbImage::from_pixel(32, 32, image::Rgb([0, 0, 0]));
        let mut map = vec![0.0f32; 4];
        map[3] = 1.0; // bottom-right patch of a 2x2 grid
        let pic = overlay(&crop, &map);
        let (tl, br) = (pic.get_pixel(2, 2).0, pic.get_pixel(29, 29).0);
        assert!(br[0] > tl[0] && tl[2] > br[2], "{tl:?} {br:?}");
    }
}
