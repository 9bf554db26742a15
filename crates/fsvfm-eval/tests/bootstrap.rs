//! Bootstrap confidence intervals: determinism, coverage of the estimate, skipping, the
//! percentile rule and the cluster (video) resampling.

use std::cell::Cell;
use std::collections::HashMap;

use fsvfm_eval::{
    BootstrapConfig, EvalError, MetricKind, ResampleUnit, ScoreSet, bootstrap_ci,
    bootstrap_metrics, evaluate, format_intervals, roc_auc,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// A typical detector: 400 frames in 40 videos of 10, fake scores shifted up.
fn typical_set() -> ScoreSet {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let (mut labels, mut scores, mut ids) = (vec![], vec![], vec![]);
    for v in 0..40 {
        let label = (v % 2) as u8;
        let offset: f64 = rng.random_range(-0.15..0.15);
        for _ in 0..10 {
            let noise: f64 = rng.random_range(-0.3..0.3);
            labels.push(label);
            scores.push((0.4 + 0.2 * label as f64 + offset + noise).clamp(0.0, 1.0));
            ids.push(format!("v{v}"));
        }
    }
    ScoreSet::new(labels, scores)
        .unwrap()
        .with_videos(&ids)
        .unwrap()
}

fn auc(set: &ScoreSet) -> Result<f64, EvalError> {
    roc_auc(set.labels(), set.scores())
}

#[test]
fn same_seed_same_interval_other_seed_other_interval() {
    let set = typical_set();
    let cfg = BootstrapConfig {
        n_resamples: 200,
        seed: 42,
        ..Default::default()
    };
    let a = bootstrap_ci(&set, &cfg, auc).unwrap();
    let b = bootstrap_ci(&set, &cfg, auc).unwrap();
    assert_eq!(a, b);
    let c = bootstrap_ci(&set, &BootstrapConfig { seed: 43, ..cfg }, auc).unwrap();
    assert_ne!((a.lower, a.upper), (c.lower, c.upper));
    assert_eq!(a.estimate, c.estimate);
}

#[test]
fn interval_contains_the_estimate_and_is_ordered() {
    let set = typical_set();
    for unit in [ResampleUnit::Frames, ResampleUnit::Videos] {
        let cfg = BootstrapConfig {
            n_resamples: 300,
            unit,
            ..Default::default()
        };
        let ci = bootstrap_ci(&set, &cfg, auc).unwrap();
        assert_eq!(ci.estimate, auc(&set).unwrap());
        assert!(
            ci.lower < ci.estimate && ci.estimate < ci.upper,
            "{unit:?}: {ci:?}"
        );
        assert!(
            ci.upper - ci.lower < 0.3,
            "{unit:?}: implausibly wide {ci:?}"
        );
        assert_eq!((ci.n_used, ci.n_skipped), (300, 0));
    }
}

#[test]
fn video_resampling_is_wider_than_frame_resampling_for_correlated_frames() {
    // Frames of a video share an offset, so frames are not independent: resampling whole
    // videos must give a wider interval than pretending 400 independent frames.
    let set = typical_set();
    let frames = bootstrap_ci(
        &set,
        &BootstrapConfig {
            n_resamples: 400,
            ..Default::default()
        },
        auc,
    )
    .unwrap();
    let videos = bootstrap_ci(
        &set,
        &BootstrapConfig {
            n_resamples: 400,
            unit: ResampleUnit::Videos,
            ..Default::default()
        },
        auc,
    )
    .unwrap();
    assert!(
        videos.upper - videos.lower > frames.upper - frames.lower,
        "videos {videos:?} frames {frames:?}"
    );
}

#[test]
fn single_class_resamples_are_skipped_and_counted() {
    // One fake among 9 reals: a resample misses it with probability (9/10)^10 ≈ 0.35.
    let mut labels = vec![0u8; 9];
    labels.push(1);
    let scores: Vec<f64> = (0..10).map(|i| i as f64 / 10.0).collect();
    let set = ScoreSet::new(labels, scores).unwrap();
    let cfg = BootstrapConfig {
        n_resamples: 500,
        ..Default::default()
    };
    let ci = bootstrap_ci(&set, &cfg, auc).unwrap();
    assert_eq!(ci.n_used + ci.n_skipped, 500);
    assert!(
        (100..250).contains(&ci.n_skipped),
        "skipped {} of 500, expected about 175",
        ci.n_skipped
    );
    // The fake has the top score, so every usable resample has AUC 1.
    assert_eq!((ci.lower, ci.upper), (1.0, 1.0));
}

#[test]
fn all_resamples_skipped_is_an_error() {
    let set = typical_set();
    let calls = Cell::new(0);
    // Succeeds on the full set (first call), then reports a single class on every resample.
    let metric = |_: &ScoreSet| {
        calls.set(calls.get() + 1);
        if calls.get() == 1 {
            Ok(0.5)
        } else {
            Err(EvalError::SingleClass {
                n: 1,
                class: "fake (label 1)",
            })
        }
    };
    let cfg = BootstrapConfig {
        n_resamples: 20,
        ..Default::default()
    };
    let e = bootstrap_ci(&set, &cfg, metric).unwrap_err();
    assert!(
        matches!(e, EvalError::NoValidResamples { skipped: 20 }),
        "{e:?}"
    );
}

#[test]
fn percentile_interval_uses_numpy_linear_quantiles() {
    // The metric returns 0 on the full set, then 1, 2, ..., 1000 on the resamples. numpy:
    // quantile(1..=1000, 0.025) = 1 + 0.025·999 = 25.975; quantile(.., 0.975) = 975.025.
    let set = typical_set();
    let calls = Cell::new(0.0);
    let metric = |_: &ScoreSet| {
        let v = calls.get();
        calls.set(v + 1.0);
        Ok(v)
    };
    let ci = bootstrap_ci(&set, &BootstrapConfig::default(), metric).unwrap();
    assert_eq!(ci.estimate, 0.0);
    assert!((ci.lower - 25.975).abs() < 1e-9, "{ci:?}");
    assert!((ci.upper - 975.025).abs() < 1e-9, "{ci:?}");
}

#[test]
fn video_resamples_draw_whole_videos() {
    let set = typical_set();
    let frames_per_video: HashMap<String, usize> = (0..set.len())
        .map(|i| set.video_of(i).unwrap().to_owned())
        .fold(HashMap::new(), |mut m, v| {
            *m.entry(v).or_default() += 1;
            m
        });
    let cfg = BootstrapConfig {
        n_resamples: 50,
        unit: ResampleUnit::Videos,
        ..Default::default()
    };
    let checked = Cell::new(0);
    let metric = |r: &ScoreSet| {
        let v = r.video_level().expect("video ids kept");
        // As many drawn videos as there are videos, each with all its frames.
        assert_eq!(v.ids.len(), 40);
        for (id, &n) in v.ids.iter().zip(&v.frames) {
            assert_eq!(n, frames_per_video[id], "video {id}");
        }
        checked.set(checked.get() + 1);
        Ok(0.0)
    };
    bootstrap_ci(&set, &cfg, metric).unwrap();
    assert_eq!(checked.get(), 51); // the full set + 50 resamples
}

#[test]
fn video_unit_needs_video_ids() {
    let set = ScoreSet::new(vec![0, 1], vec![0.2, 0.8]).unwrap();
    let cfg = BootstrapConfig {
        unit: ResampleUnit::Videos,
        ..Default::default()
    };
    assert!(matches!(
        bootstrap_ci(&set, &cfg, auc),
        Err(EvalError::NoVideoIds)
    ));
}

#[test]
fn invalid_configuration() {
    let set = typical_set();
    for cfg in [
        BootstrapConfig {
            n_resamples: 0,
            ..Default::default()
        },
        BootstrapConfig {
            confidence: 1.0,
            ..Default::default()
        },
        BootstrapConfig {
            confidence: 0.0,
            ..Default::default()
        },
    ] {
        assert!(
            matches!(
                bootstrap_ci(&set, &cfg, auc),
                Err(EvalError::InvalidArgument(_))
            ),
            "{cfg:?}"
        );
    }
}

#[test]
fn all_metrics_at_once() {
    let set = typical_set();
    let cfg = BootstrapConfig {
        n_resamples: 100,
        seed: 3,
        unit: ResampleUnit::Videos,
        ..Default::default()
    };
    let report = bootstrap_metrics(&set, &cfg).unwrap();
    let full = evaluate(&set).unwrap();
    let kinds: Vec<MetricKind> = report.intervals.iter().map(|(k, _)| *k).collect();
    assert_eq!(kinds, MetricKind::ALL.to_vec()); // video ids present → all nine
    for (kind, ci) in &report.intervals {
        assert_eq!(Some(ci.estimate), full.get(*kind), "{kind}");
        assert!(ci.lower <= ci.upper, "{kind}: {ci:?}");
    }
    // The AUC interval is the one bootstrap_ci gives on the same resamples (same seed).
    let auc_ci = bootstrap_ci(&set, &cfg, auc).unwrap();
    assert_eq!(report.intervals[0].1, auc_ci);
    assert_eq!(bootstrap_metrics(&set, &cfg).unwrap(), report);

    let table = format_intervals(&report);
    assert!(
        table.starts_with("95% bootstrap CI: 100 resamples of videos, seed 3"),
        "{table}"
    );
    assert!(table.contains("video EER"), "{table}");
}

/// The paired bootstrap of a difference: its estimate is the plain difference, identical
/// detectors give exactly 0, a clearly better detector gets an interval above 0, and pairing makes
/// the interval of the difference of two correlated detectors much narrower than their separate
/// intervals added (what an unpaired comparison would have to use).
#[test]
fn paired_bootstrap_of_an_auc_difference() {
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let n = 300;
    let labels: Vec<u8> = (0..n).map(|i| (i % 2) as u8).collect();
    let base: Vec<f64> = labels
        .iter()
        .map(|&l| 0.5 * l as f64 + rng.random_range(0.0..1.0))
        .collect();
    // The same detector with a little extra noise: strongly correlated with `base`.
    let noisy: Vec<f64> = base
        .iter()
        .map(|s| s + rng.random_range(-0.1..0.1))
        .collect();
    let chance: Vec<f64> = (0..n).map(|_| rng.random_range(0.0..1.0)).collect();
    let cfg = BootstrapConfig {
        n_resamples: 500,
        seed: 1,
        ..Default::default()
    };
    let diff = |l: &[u8], s: &[Vec<f64>]| Ok(roc_auc(l, &s[0])? - roc_auc(l, &s[1])?);

    let same = fsvfm_eval::bootstrap_paired(&labels, &[&base, &base], &cfg, diff).unwrap();
    assert_eq!((same.estimate, same.lower, same.upper), (0.0, 0.0, 0.0));

    let better = fsvfm_eval::bootstrap_paired(&labels, &[&base, &chance], &cfg, diff).unwrap();
    let expected = roc_auc(&labels, &base).unwrap() - roc_auc(&labels, &chance).unwrap();
    assert_eq!(better.estimate, expected);
    assert!(better.lower > 0.1, "{better:?}");
    assert_eq!(better.n_used + better.n_skipped, 500);

    let close = fsvfm_eval::bootstrap_paired(&labels, &[&base, &noisy], &cfg, diff).unwrap();
    let width = |c: &fsvfm_eval::ConfidenceInterval| c.upper - c.lower;
    let single = |s: &[f64]| {
        let set = ScoreSet::new(labels.clone(), s.to_vec()).unwrap();
        bootstrap_ci(&set, &cfg, auc).unwrap()
    };
    let unpaired = width(&single(&base)) + width(&single(&noisy));
    assert!(
        width(&close) < 0.25 * unpaired,
        "paired {} vs unpaired {unpaired}",
        width(&close)
    );
    // Same seed, same draws.
    let again = fsvfm_eval::bootstrap_paired(&labels, &[&base, &noisy], &cfg, diff).unwrap();
    assert_eq!(close, again);
    // Bad input is refused.
    assert!(fsvfm_eval::bootstrap_paired(&labels, &[&base[..10]], &cfg, diff).is_err());
    let videos = BootstrapConfig {
        unit: ResampleUnit::Videos,
        ..cfg
    };
    assert!(fsvfm_eval::bootstrap_paired(&labels, &[&base], &videos, diff).is_err());
}
