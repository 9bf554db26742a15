//! Synthetic face crops with exact region maps, in the official pre-training layout
//! (`images/NAME.png`, `parsing_maps/NAME.png`), for tests, the CPU demo and benchmarks.
//!
//! Each face is a [`SyntheticFace`] label map with jittered geometry, painted with per-region
//! colours (a random skin tone, dark hair and eyes, red lips, a random background), a lighting
//! gradient and pixel noise. Not a substitute for real faces: it makes the pipeline runnable
//! end to end without any download, and the reconstructions easy to judge.

use std::path::Path;

use fsvfm_masking::{SyntheticFace, lapa, rng_for};
use rand_chacha::rand_core::RngCore;

use crate::{TrainError, io_error};

fn unit(rng: &mut impl RngCore) -> f32 {
    (rng.next_u32() >> 8) as f32 / (1u32 << 24) as f32
}

/// One synthetic face `i` of `seed`: its picture, region map and geometry.
fn render_face(
    i: usize,
    size: usize,
    seed: u64,
) -> Result<(image::RgbImage, fsvfm_masking::LabelMap, SyntheticFace), TrainError> {
    let mut rng = rng_for(seed, i as u64, 0xface);
    let mut j = |a: f32, b: f32| a + (b - a) * unit(&mut rng);
    let face = SyntheticFace {
        center: (j(0.44, 0.56), j(0.50, 0.60)),
        radii: (j(0.26, 0.36), j(0.34, 0.44)),
        hairline: j(-0.7, -0.35),
        eye_offset: j(0.32, 0.44),
        mouth_offset: j(0.42, 0.58),
    };
    let skin = [j(0.55, 0.95), j(0.40, 0.75), j(0.30, 0.65)];
    let hair = [j(0.05, 0.4), j(0.03, 0.3), j(0.02, 0.2)];
    let bg = [j(0.0, 1.0), j(0.0, 1.0), j(0.0, 1.0)];
    let light = j(-0.25, 0.25);
    let map = face
        .render(size, size)
        .map_err(|e| TrainError::Data(e.to_string()))?;
    let mut img = image::RgbImage::new(size as u32, size as u32);
    let mut noise = rng_for(seed, i as u64, 0x0015e);
    for (x, y, px) in img.enumerate_pixels_mut() {
        let label = map.get(y as usize, x as usize).unwrap_or(0);
        let base = match label {
            lapa::BACKGROUND => bg,
            lapa::HAIR => hair,
            lapa::LEFT_EYE | lapa::RIGHT_EYE => [0.12, 0.1, 0.1],
            lapa::LEFT_EYEBROW | lapa::RIGHT_EYEBROW => {
                [hair[0] * 0.8, hair[1] * 0.8, hair[2] * 0.8]
            }
            lapa::UPPER_LIP | lapa::LOWER_LIP => [0.75, 0.25, 0.3],
            lapa::INNER_MOUTH => [0.3, 0.05, 0.08],
            lapa::NOSE => [skin[0] * 0.92, skin[1] * 0.88, skin[2] * 0.88],
            _ => skin,
        };
        let shade = 1.0 + light * (x as f32 / size as f32 - 0.5 + y as f32 / size as f32 - 0.5);
        let mut rgb = [0u8; 3];
        for k in 0..3 {
            let v = base[k] * shade + (unit(&mut noise) - 0.5) * 0.06;
            rgb[k] = (v.clamp(0.0, 1.0) * 255.0).round() as u8;
        }
        *px = image::Rgb(rgb);
    }
    Ok((img, map, face))
}

/// Writes `n` synthetic `size × size` faces under `dir` (created if needed); `seed` varies them.
///
/// With `forgeries`, each face instead gets the inner face (eyes to mouth) of another synthetic
/// identity blended in through a soft elliptical mask: a crude face swap whose colour and
/// geometry seams are what a detector can learn (a stand-in until the synthesis issue lands).
pub fn write_synthetic_faces(
    dir: &Path,
    n: usize,
    size: usize,
    seed: u64,
    forgeries: bool,
) -> Result<(), TrainError> {
    let (images, maps) = (dir.join("images"), dir.join("parsing_maps"));
    std::fs::create_dir_all(&images).map_err(io_error(&images))?;
    std::fs::create_dir_all(&maps).map_err(io_error(&maps))?;
    for i in 0..n {
        let (mut img, map, face) = render_face(i, size, seed)?;
        if forgeries {
            let (donor, _, _) = render_face(i, size, seed ^ 0x5eed_f00d)?;
            let (cx, cy) = (
                face.center.0 * size as f32,
                (face.center.1 + 0.08 * face.radii.1) * size as f32,
            );
            let (rx, ry) = (
                0.62 * face.radii.0 * size as f32,
                0.62 * face.radii.1 * size as f32,
            );
            for (x, y, px) in img.enumerate_pixels_mut() {
                let d = ((x as f32 + 0.5 - cx) / rx).powi(2) + ((y as f32 + 0.5 - cy) / ry).powi(2);
                // 1 inside, 0 outside, a soft band in between (the blending boundary).
                let alpha = ((1.2 - d) / 0.4).clamp(0.0, 1.0);
                let q = donor.get_pixel(x, y);
                for k in 0..3 {
                    let v = px.0[k] as f32 * (1.0 - alpha) + q.0[k] as f32 * alpha;
                    px.0[k] = v.round() as u8;
                }
            }
        }
        let name = if forgeries {
            format!("forgery_{i:05}")
        } else {
            format!("synthetic_{i:05}")
        };
        let ip = images.join(format!("{name}.png"));
        img.save(&ip)
            .map_err(|e| TrainError::Data(format!("{}: {e}", ip.display())))?;
        let mp = maps.join(format!("{name}.png"));
        map.save_png(&mp)
            .map_err(|e| TrainError::Data(format!("{}: {e}", mp.display())))?;
    }
    Ok(())
}
