//! The README picture of the generators, on the public-domain astronaut photo (the only face we may
//! commit) with MediaPipe's landmarks for it:
//! `cargo run --release -p fsvfm-synth --example synth_grid -- docs/synth_examples.png`.
//! Columns: real, SBI, its mask, swap, its mask, print, replay (rows: seeds). The "swap" donor is
//! the same photo scaled, shifted and tinted (one identity only), so it shows the warp, colour
//! transfer and blending, not a change of identity.
use fsvfm_synth::{Draw, Img, attack, mask_to_gray, sbi, swap};
use std::path::PathBuf;

fn main() {
    let out = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "docs/synth_examples.png".into());
    let fx = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fsvfm-faces/tests/fixtures");
    let full = image::open(fx.join("astronaut.jpg")).unwrap().to_rgb8();
    // The face region (the upper middle of the photo), at 224.
    let (x0, y0, side) = (120u32, 30u32, 224u32);
    let crop = image::imageops::crop_imm(&full, x0, y0, side, side).to_image();
    let r: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(fx.join("mediapipe_reference.json")).unwrap(),
    )
    .unwrap();
    let marks: Vec<(f32, f32)> = r["images"][0]["landmarks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p[0].as_f64().unwrap() as f32 * 512.0 - x0 as f32,
                p[1].as_f64().unwrap() as f32 * 512.0 - y0 as f32,
            )
        })
        .collect();
    let img = Img::from_rgb(&crop);
    let (s, c) = (0.92f32, 112.0f32);
    let mut donor = img.clone();
    for y in 0..img.h {
        for x in 0..img.w {
            let p = img.sample(c + (x as f32 - 4.0 - c) / s, c + (y as f32 + 3.0 - c) / s);
            let i = 3 * (y * img.w + x);
            donor.data[i..i + 3].copy_from_slice(&[
                (p[0] * 1.15).min(255.0),
                p[1] * 0.95,
                p[2] * 0.8,
            ]);
        }
    }
    let dmarks: Vec<(f32, f32)> = marks
        .iter()
        .map(|p| (c + s * (p.0 - c) + 4.0, c + s * (p.1 - c) - 3.0))
        .collect();
    let rows = 3u32;
    let mut grid = image::RgbImage::new(7 * side, rows * side);
    for row in 0..rows {
        let seed = row as u64;
        let b = sbi::self_blend(&img, &marks, &mut Draw::new(seed, 1, 0, 0));
        let w = swap::face_swap(&img, &marks, &donor, &dmarks, &mut Draw::new(seed, 2, 0, 0));
        let p = attack::print_attack(&img, &mut Draw::new(seed, 3, 0, 0));
        let q = attack::replay_attack(&img, &mut Draw::new(seed, 4, 0, 0));
        let gray =
            |m: &[f32]| image::DynamicImage::ImageLuma8(mask_to_gray(m, img.w, img.h)).to_rgb8();
        let tiles = [
            crop.clone(),
            b.image.to_rgb(),
            gray(&b.mask),
            w.image.to_rgb(),
            gray(&w.mask),
            p.image.to_rgb(),
            q.image.to_rgb(),
        ];
        for (col, t) in tiles.iter().enumerate() {
            image::imageops::replace(&mut grid, t, col as i64 * side as i64, (row * side) as i64);
        }
    }
    // Two thirds of full size keeps the committed picture small.
    let (gw, gh) = (grid.width() * 2 / 3, grid.height() * 2 / 3);
    image::imageops::resize(&grid, gw, gh, image::imageops::FilterType::Triangle)
        .save(&out)
        .unwrap();
    eprintln!("wrote {out}");
}
