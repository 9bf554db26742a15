//! The generators on a real face: the committed public-domain astronaut photo with MediaPipe's own
//! 468 landmarks for it (`fsvfm-faces/tests/fixtures`, from `tools/face/export_face_fixtures.py`),
//! so these tests need no models. Checks: the outputs differ from the source only where the mask
//! says (SBI, swap), masks cover the regions they claim, warped landmarks land on the target's,
//! and everything is determined by the seed.

use std::path::PathBuf;

use fsvfm_synth::swap::{Region, delaunay, region_mask, warp_map};
use fsvfm_synth::{Draw, Img, attack, sbi, swap};

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fsvfm-faces/tests/fixtures")
}

/// The astronaut at 256×256 and its landmarks in those pixels.
fn astronaut() -> (Img, Vec<(f32, f32)>) {
    let img = image::open(fixtures().join("astronaut.jpg"))
        .unwrap()
        .to_rgb8();
    let img = image::imageops::resize(&img, 256, 256, image::imageops::FilterType::CatmullRom);
    let r: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(fixtures().join("mediapipe_reference.json")).unwrap(),
    )
    .unwrap();
    let marks = r["images"][0]["landmarks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p[0].as_f64().unwrap() as f32 * 256.0,
                p[1].as_f64().unwrap() as f32 * 256.0,
            )
        })
        .collect();
    (Img::from_rgb(&img), marks)
}

/// Where two 8-bit images differ.
fn changed(a: &Img, b: &Img) -> Vec<bool> {
    let (a, b) = (a.to_rgb(), b.to_rgb());
    a.pixels().zip(b.pixels()).map(|(p, q)| p != q).collect()
}

#[test]
fn sbi_changes_only_inside_its_mask_and_covers_the_face() {
    let (img, marks) = astronaut();
    let oval = region_mask(Region::Face, &marks, img.w, img.h);
    for k in 0..6 {
        let mut d = Draw::new(7, 1, 0, k);
        let b = sbi::self_blend(&img, &marks, &mut d);
        let diff = changed(&img, &b.image);
        for (i, &c) in diff.iter().enumerate() {
            assert!(
                !c || b.mask[i] > 0.0,
                "k={k}: pixel {i} changed outside the mask"
            );
        }
        assert!(
            diff.iter().filter(|&&c| c).count() > 2000,
            "k={k}: too few pixels changed"
        );
        // The mask covers the face: the oval's centre region is inside it.
        let core: Vec<usize> = (0..oval.len()).filter(|&i| oval[i] > 0.5).collect();
        let covered = core.iter().filter(|&&i| b.mask[i] > 0.0).count();
        assert!(
            covered as f32 > 0.6 * core.len() as f32,
            "k={k}: mask covers {covered} of {}",
            core.len()
        );
        // And stays near it: nothing far outside the face.
        assert_eq!(b.mask[0], 0.0);
    }
}

#[test]
fn every_generator_is_determined_by_its_seed() {
    let (img, marks) = astronaut();
    let donor = shifted_donor(&img, &marks);
    let run = |seed: u64| {
        let mut d = Draw::new(seed, 1, 3, 0);
        let a = sbi::self_blend(&img, &marks, &mut d).image;
        let b = swap::face_swap(&img, &marks, &donor.0, &donor.1, &mut d).image;
        let c = attack::print_attack(&img, &mut d).image;
        let e = attack::replay_attack(&img, &mut d).image;
        [a, b, c, e].map(|x| x.to_rgb().into_raw())
    };
    assert_eq!(run(11), run(11));
    let (x, y) = (run(11), run(12));
    for i in 0..4 {
        assert_ne!(x[i], y[i], "generator {i} ignores the seed");
    }
}

/// A donor with the same landmark indices: the astronaut scaled by 0.9 about (128, 110), shifted
/// and tinted, so the swap's geometry and colour transfer have work to do.
fn shifted_donor(img: &Img, marks: &[(f32, f32)]) -> (Img, Vec<(f32, f32)>) {
    let (s, cx, cy, tx, ty) = (0.9f32, 128.0f32, 110.0f32, 6.0f32, -4.0f32);
    let fwd = |p: (f32, f32)| (cx + s * (p.0 - cx) + tx, cy + s * (p.1 - cy) + ty);
    let mut out = img.clone();
    for y in 0..img.h {
        for x in 0..img.w {
            // Inverse of fwd.
            let sx = cx + (x as f32 + 0.5 - tx - cx) / s - 0.5;
            let sy = cy + (y as f32 + 0.5 - ty - cy) / s - 0.5;
            let p = img.sample(sx, sy);
            let i = 3 * (y * img.w + x);
            out.data[i..i + 3].copy_from_slice(&[
                (p[0] * 0.8).min(255.0),
                p[1],
                (p[2] * 1.2).min(255.0),
            ]);
        }
    }
    (out, marks.iter().map(|&p| fwd(p)).collect())
}

#[test]
fn swap_warps_landmarks_onto_the_target_and_changes_only_the_region() {
    let (img, marks) = astronaut();
    let (donor, dmarks) = shifted_donor(&img, &marks);
    // Geometry: at each target landmark, the piecewise-affine map points at the donor's landmark.
    let tris = delaunay(&marks);
    assert!(tris.len() > 800, "{} triangles", tris.len());
    let map = warp_map(&tris, &marks, &dmarks, img.w, img.h);
    let mut worst = 0.0f32;
    for (t, dl) in marks.iter().zip(&dmarks) {
        let (x, y) = (t.0.floor() as usize, t.1.floor() as usize);
        if let Some((dx, dy)) = map[y * img.w + x] {
            // The map is sampled at the pixel centre, within 0.71 px of the landmark; the donor is
            // a 0.9x scale, so the donor point lies within 0.64 px of the donor landmark.
            worst = worst.max(((dx - dl.0).powi(2) + (dy - dl.1).powi(2)).sqrt());
        }
    }
    assert!(worst < 0.7, "warped landmark off by {worst} px");
    for k in 0..6 {
        let mut d = Draw::new(5, 2, 0, k);
        let s = swap::face_swap(&img, &marks, &donor, &dmarks, &mut d);
        let region = s.params["region"].as_str().unwrap().to_string();
        let diff = changed(&img, &s.image);
        for (i, &c) in diff.iter().enumerate() {
            assert!(
                !c || s.mask[i] > 0.0,
                "{region}: pixel {i} changed outside the mask"
            );
        }
        assert!(diff.iter().any(|&c| c), "{region}: nothing changed");
        // The mask claims the region: the mouth's centre is in every region's mask.
        let m = marks[13];
        let (x, y) = (m.0 as usize, (m.1 + 2.0) as usize);
        assert!(
            s.mask[y * img.w + x] > 0.0,
            "{region}: mouth not in the mask"
        );
        // Only the whole-face swap reaches the forehead.
        let f = marks[151];
        let forehead = s.mask[f.1 as usize * img.w + f.0 as usize] > 0.0;
        assert_eq!(forehead, region == "face", "{region}");
    }
}

#[test]
fn attacks_cover_the_whole_image_and_change_it() {
    let (img, _) = astronaut();
    for (name, a) in [
        (
            "print",
            attack::print_attack(&img, &mut Draw::new(1, 3, 0, 0)),
        ),
        (
            "replay",
            attack::replay_attack(&img, &mut Draw::new(1, 4, 0, 0)),
        ),
    ] {
        let diff = changed(&img, &a.image);
        let frac = diff.iter().filter(|&&c| c).count() as f32 / diff.len() as f32;
        assert!(frac > 0.9, "{name}: only {frac} of the pixels changed");
        assert_eq!(a.params["kind"], name);
    }
}

/// A prepare manifest lists faces in completion order, which varies between runs; the outputs of
/// a seed must not: the same faces listed in another order give the same bytes.
#[test]
fn outputs_do_not_depend_on_the_manifest_order() {
    let (img, marks) = astronaut();
    let donor = shifted_donor(&img, &marks);
    let d = tempfile::tempdir().unwrap();
    let mut lines = Vec::new();
    for (name, (im, lm)) in [
        ("a", (img.clone(), marks.clone())),
        ("b", donor),
        ("c", (img, marks)),
    ] {
        im.to_rgb()
            .save(d.path().join(format!("{name}.png")))
            .unwrap();
        let flat: Vec<f32> = lm.iter().flat_map(|p| [p.0, p.1]).collect();
        fsvfm_data::npy::write_f32(d.path().join(format!("{name}.npy")), &[468, 2], &flat).unwrap();
        lines.push(format!(
            "{{\"path\": \"{name}.png\", \"landmarks\": \"{name}.npy\", \"source\": \"{name}.jpg\"}}"
        ));
    }
    let forward = d.path().join("forward.jsonl");
    std::fs::write(&forward, lines.join("\n")).unwrap();
    lines.reverse();
    let reverse = d.path().join("reverse.jsonl");
    std::fs::write(&reverse, lines.join("\n")).unwrap();
    for kind in [fsvfm_synth::run::Kind::Sbi, fsvfm_synth::run::Kind::Swap] {
        let (o1, o2) = (d.path().join("o1"), d.path().join("o2"));
        fsvfm_synth::run::synth(&forward, &o1, kind, 2, 4, &|_| {}).unwrap();
        fsvfm_synth::run::synth(&reverse, &o2, kind, 2, 4, &|_| {}).unwrap();
        for name in ["a", "b", "c"] {
            for k in 0..2 {
                let f = format!("images/{name}_{}_{k}.png", kind.name());
                assert_eq!(
                    std::fs::read(o1.join(&f)).unwrap(),
                    std::fs::read(o2.join(&f)).unwrap(),
                    "{f}"
                );
            }
        }
        assert_eq!(
            std::fs::read_to_string(o1.join("manifest.jsonl")).unwrap(),
            std::fs::read_to_string(o2.join("manifest.jsonl")).unwrap()
        );
    }
}
