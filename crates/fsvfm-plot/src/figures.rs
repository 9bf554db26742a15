//! The papers' figures, built from data as [`Figure`]s.

use crate::{Figure, PALETTE, Panel, Series};

/// One encoder's attention statistics for [`attention_statistics`]: per block, per head.
pub struct AttentionEntry<'a> {
    /// Legend name.
    pub name: &'a str,
    /// Mean attention distance in pixels, `[blocks][heads]`.
    pub distance: &'a [Vec<f64>],
    /// Head-diversity KL in nats, `[blocks][heads]`.
    pub kl: &'a [Vec<f64>],
}

/// FS-VFM Fig. 4: two panels (mean attention distance, head-diversity KL) against the block
/// (1-based); a small dot per head and a large one for the block mean, one colour per encoder
/// (shifted a little along x so that overlaid encoders stay apart), named in the legend.
pub fn attention_statistics(title: &str, entries: &[AttentionEntry]) -> Figure {
    let n = entries.len().max(1) as f64;
    let mut panels = [
        Panel::new("Mean attention distance", "block", "distance (pixels)"),
        Panel::new("Attention-head diversity", "block", "KL divergence (nats)"),
    ];
    for (e, entry) in entries.iter().enumerate() {
        let colour = PALETTE[e % PALETTE.len()];
        // Encoders side by side inside ±0.2 of the block's x.
        let shift = if entries.len() > 1 {
            -0.2 + 0.4 * e as f64 / (n - 1.0)
        } else {
            0.0
        };
        for (panel, values) in panels.iter_mut().zip([entry.distance, entry.kl]) {
            let mut heads = Vec::new();
            let mut means = Vec::new();
            for (b, block) in values.iter().enumerate() {
                let x = (b + 1) as f64 + shift;
                heads.extend(block.iter().map(|&v| (x, v)));
                if !block.is_empty() {
                    means.push((x, block.iter().sum::<f64>() / block.len() as f64));
                }
            }
            panel.series.push(Series {
                alpha: 0.55,
                ..Series::dots("", heads, colour, 2)
            });
            panel
                .series
                .push(Series::dots(entry.name, means, colour, 5));
        }
    }
    for p in &mut panels {
        p.x_integer = true;
    }
    Figure {
        title: Some(title.to_string()),
        panels: panels.into(),
        columns: 2,
        panel_size: (460, 360),
    }
}
