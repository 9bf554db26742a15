//! Fig. 3-style rendering (feature `render`).
#![cfg(feature = "render")]

use fsvfm_masking::render::{
    LABEL_PALETTE, RenderStyle, colorize_labels, load_face, render_mask, render_strategies,
    save_png,
};
use fsvfm_masking::{
    MaskError, MaskKey, MaskParams, PatchGrid, PatchRegions, Region, Strategy, SyntheticFace,
    mask_batch,
};
use image::{Rgb, RgbImage};

#[test]
fn label_map_colours_come_from_the_palette() {
    let map = SyntheticFace::default().render(64, 48).unwrap();
    let img = colorize_labels(&map);
    assert_eq!(img.dimensions(), (48, 64));
    for (r, c) in [(0, 0), (32, 24), (10, 24), (63, 47)] {
        let l = map.get(r, c).unwrap() as usize;
        assert_eq!(img.get_pixel(c as u32, r as u32).0, LABEL_PALETTE[l]);
    }
}

#[test]
fn masked_patches_are_darkened_and_the_region_tinted() {
    // 8×8 grey face, 2×2 grid: patch 0 covered, 2 masked, 1 and 3 visible.
    let face = RgbImage::from_pixel(8, 8, Rgb([100, 100, 100]));
    let grid = PatchGrid::new(2, 2).unwrap();
    let out = render_mask(
        &face,
        grid,
        &[1, 0, 1, 0],
        &[1, 0, 0, 0],
        &RenderStyle::default(),
    )
    .unwrap();
    // Masked: 100 · 0.2 = 20. Covered: 20 · 0.45 + (0, 210, 255) · 0.55 = (9, 124.5, 149.25).
    assert_eq!(out.get_pixel(1, 1).0, [9, 125, 149]);
    assert_eq!(out.get_pixel(6, 1).0, [100, 100, 100]);
    assert_eq!(out.get_pixel(1, 6).0, [20, 20, 20]);
    assert_eq!(out.get_pixel(7, 7).0, [100, 100, 100]);

    // Grid lines on the top/left edge of every cell when asked for.
    let style = RenderStyle {
        grid_color: Some([255, 0, 0]),
        ..RenderStyle::default()
    };
    let out = render_mask(&face, grid, &[0; 4], &[0; 4], &style).unwrap();
    assert_eq!(out.get_pixel(4, 2).0, [255, 0, 0]);
    assert_eq!(out.get_pixel(5, 5).0, [100, 100, 100]);
}

#[test]
fn render_mask_checks_its_inputs() {
    let face = RgbImage::new(8, 8);
    let grid = PatchGrid::new(2, 2).unwrap();
    assert!(matches!(
        render_mask(&face, grid, &[0; 3], &[0; 4], &RenderStyle::default()),
        Err(MaskError::PatchCount {
            expected: 4,
            got: 3
        })
    ));
    let small = render_mask(
        &RgbImage::new(1, 8),
        grid,
        &[0; 4],
        &[0; 4],
        &RenderStyle::default(),
    )
    .unwrap_err();
    assert!(matches!(small, MaskError::GridTooFine { .. }));
    // The error names the picture (`mask --image`), not the label map.
    assert!(
        small.to_string().contains("the face image is 8x1"),
        "{small}"
    );
    // A face of another size than the label map is fine (cells are mapped per image).
    assert!(
        render_mask(
            &RgbImage::new(9, 5),
            grid,
            &[1; 4],
            &[0; 4],
            &RenderStyle::default()
        )
        .is_ok()
    );
}

#[test]
fn all_strategies_side_by_side() {
    let map = SyntheticFace::default().render(224, 224).unwrap();
    let regions = PatchRegions::from_label_map(&map, PatchGrid::DEFAULT).unwrap();
    let face = colorize_labels(&map);
    let key = MaskKey::from_seed(7);
    let style = RenderStyle::default();
    let sheet = render_strategies(&face, &regions, 0.75, key, Some(Region::Nose), &style).unwrap();
    // Five 224-px panels with fsvfm_plot::sheet's 6-px gaps under a 14-px title strip (22 px).
    let top = 22 + 6;
    assert_eq!(sheet.dimensions(), (5 * 224 + 6 * 6, top + 224 + 6));
    for (i, strategy) in Strategy::ALL.into_iter().enumerate() {
        let x0 = 6 + i as u32 * 230;
        // Every panel is the rendering of that strategy's mask with the shared key.
        let params = MaskParams {
            strategy,
            ratio: 0.75,
            region: strategy.covers_region().then_some(Region::Nose),
        };
        let b = mask_batch(std::slice::from_ref(&regions), &params, key).unwrap();
        let panel =
            render_mask(&face, PatchGrid::DEFAULT, b.mask(), b.region_mask(), &style).unwrap();
        for (x, y) in [(0, 0), (100, 100), (223, 223), (50, 170)] {
            assert_eq!(
                sheet.get_pixel(x0 + x, top + y),
                panel.get_pixel(x, y),
                "{strategy} at {x},{y}"
            );
        }
        // Its label is drawn dark somewhere in the strip above it.
        let black = (x0..x0 + 224).any(|x| (0..top).any(|y| sheet.get_pixel(x, y).0[0] < 80));
        assert!(black, "{strategy} has no label");
    }
}

#[test]
fn png_round_trip_through_files() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("face.png");
    let map = SyntheticFace::default().render(32, 32).unwrap();
    let img = colorize_labels(&map);
    save_png(&img, &path).unwrap();
    assert_eq!(load_face(&path).unwrap(), img);
    assert!(matches!(
        load_face(dir.path().join("none.png")),
        Err(MaskError::Io { .. })
    ));
}
