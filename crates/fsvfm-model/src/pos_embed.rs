//! Fixed 2-D sin-cos position embedding of MAE (spec §1.1, `util/pos_embed.py`).

/// The `[1 + gh·gw, dim]` table (row-major, cls row first when `cls_token`) as the official
/// `get_2d_sincos_pos_embed`: with `ω_k = 10000^(−k/(dim/4))`, k = 0..dim/4, the patch at row r,
/// column c (index `r·gw + c`) gets `[sin(c·ω), cos(c·ω), sin(r·ω), cos(r·ω)]`: the official
/// `meshgrid(grid_w, grid_h)` puts the **column** in the first half. The cls row is all zeros.
/// Computed in f64 (numpy's `np.float`) and rounded to f32 once, as `.float()` does.
///
/// `dim` must be a multiple of 4 (checked by the configs).
pub fn sincos_2d(dim: usize, grid_h: usize, grid_w: usize, cls_token: bool) -> Vec<f32> {
    assert!(
        dim.is_multiple_of(4),
        "sin-cos position embedding needs dim % 4 == 0, got {dim}"
    );
    let quarter = dim / 4;
    let omega: Vec<f64> = (0..quarter)
        .map(|k| 1.0 / 10000f64.powf(k as f64 / quarter as f64))
        .collect();
    let rows = grid_h * grid_w + usize::from(cls_token);
    let mut out = vec![0f32; rows * dim];
    let start = usize::from(cls_token);
    for r in 0..grid_h {
        for c in 0..grid_w {
            let row = &mut out[(start + r * grid_w + c) * dim..][..dim];
            for (k, w) in omega.iter().enumerate() {
                // numpy evaluates pos as float32 (exact for grid indices) times float64 omega.
                let (ac, ar) = (c as f64 * w, r as f64 * w);
                row[k] = ac.sin() as f32;
                row[quarter + k] = ac.cos() as f32;
                row[2 * quarter + k] = ar.sin() as f32;
                row[3 * quarter + k] = ar.cos() as f32;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cls_row_is_zero_and_column_comes_first() {
        let (d, g) = (8, 3);
        let t = sincos_2d(d, g, g, true);
        assert_eq!(t.len(), (g * g + 1) * d);
        assert!(t[..d].iter().all(|&v| v == 0.0));
        // Patch (r=0, c=1) is index 1 (+1 for cls): its column half moves, its row half is sin 0 / cos 0.
        let p = &t[2 * d..3 * d];
        assert!((p[0] - 1f32.sin()).abs() < 1e-7);
        assert!((p[2] - 1f32.cos()).abs() < 1e-7);
        assert_eq!(&p[4..], &[0.0, 0.0, 1.0, 1.0]);
        // Patch (r=1, c=0) is index 3 (+1): the opposite halves.
        let q = &t[4 * d..5 * d];
        assert_eq!(&q[..4], &[0.0, 0.0, 1.0, 1.0]);
        assert!((q[4] - 1f32.sin()).abs() < 1e-7);
    }
}
