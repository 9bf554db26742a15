//! Small cases worked out by hand (the derivations are in the comments).
//!
//! Convention: label 1 = fake (positive), 0 = real; score = P(fake).

use fsvfm_eval::{
    ScoreSet, accuracy, average_precision, balanced_accuracy, compute_metrics, confusion_at, eer,
    eer_grid, evaluate, format_table, hter, roc_auc, roc_curve, tpr_at_fpr,
    tpr_at_fpr_interpolated,
};

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-12
}

// Case A (scikit-learn's roc_curve docstring example).
// Ranked: 0.8 fake, 0.4 real, 0.35 fake, 0.1 real.
const A_LABELS: [u8; 4] = [0, 0, 1, 1];
const A_SCORES: [f64; 4] = [0.1, 0.4, 0.35, 0.8];

#[test]
fn case_a_roc_points_and_auc() {
    let roc = roc_curve(&A_LABELS, &A_SCORES, true).unwrap();
    assert_eq!(roc.fpr(), &[0.0, 0.0, 0.5, 0.5, 1.0]);
    assert_eq!(roc.tpr(), &[0.0, 0.5, 0.5, 1.0, 1.0]);
    assert_eq!(roc.thresholds(), &[f64::INFINITY, 0.8, 0.4, 0.35, 0.1]);
    // 4 (fake, real) pairs; only (0.35, 0.4) is mis-ordered: AUC = 3/4.
    assert_eq!(roc_auc(&A_LABELS, &A_SCORES).unwrap(), 0.75);
}

#[test]
fn case_a_average_precision() {
    // Thresholds 0.8, 0.4, 0.35, 0.1: (recall, precision) = (1/2, 1), (1/2, 1/2), (1, 2/3),
    // (1, 1/2). AP = 1/2·1 + 0 + 1/2·2/3 + 0 = 5/6.
    assert!(close(
        average_precision(&A_LABELS, &A_SCORES).unwrap(),
        5.0 / 6.0
    ));
}

#[test]
fn case_a_eer_root_at_a_vertex() {
    // f(x) = 1 − x − tpr(x). On [0, 0.5) tpr = 0.5, so f = 0.5 − x reaches 0 at x = 0.5, the
    // vertex where tpr jumps to 1. EER = 0.5; np.interp of the thresholds at 0.5 = 0.35 (the
    // last point with FPR 0.5).
    let e = eer(&A_LABELS, &A_SCORES).unwrap();
    assert_eq!(e.eer, 0.5);
    assert_eq!(e.threshold, 0.35);
}

#[test]
fn case_a_thresholded_metrics() {
    // At 0.5 only 0.8 is called fake: TP 1, FN 1 (0.35), TN 2, FP 0.
    let c = confusion_at(&A_LABELS, &A_SCORES, 0.5).unwrap();
    assert_eq!((c.tp, c.fp, c.tn, c.fn_), (1, 0, 2, 1));
    assert_eq!(accuracy(&A_LABELS, &A_SCORES, 0.5).unwrap(), 0.75);
    // (TPR + TNR) / 2 = (1/2 + 1) / 2.
    assert_eq!(balanced_accuracy(&A_LABELS, &A_SCORES, 0.5).unwrap(), 0.75);
    // (FPR + FNR) / 2 = (0 + 1/2) / 2.
    assert_eq!(hter(&A_LABELS, &A_SCORES, 0.5).unwrap(), 0.25);
    // At 0.3 both fakes and the 0.4 real are called fake: FPR 1/2, FNR 0.
    assert_eq!(hter(&A_LABELS, &A_SCORES, 0.3).unwrap(), 0.25);
    assert_eq!(accuracy(&A_LABELS, &A_SCORES, 0.3).unwrap(), 0.75);
}

#[test]
fn case_a_grid_eer() {
    // |FNR − FPR| over thresholds t: t ≤ 0.1 → |0 − 1| = 1; (0.1, 0.35] → |0 − 0.5|;
    // (0.35, 0.4] → |0.5 − 0.5| = 0; (0.4, 0.8] → 0.5; above → 1. The last grid point with
    // distance 0 is 0.4 (= 4000/10000); EER = (0.5 + 0.5)/2.
    let g = eer_grid(&A_LABELS, &A_SCORES).unwrap();
    assert_eq!(g.threshold, 0.4);
    assert_eq!((g.fpr, g.fnr, g.eer), (0.5, 0.5, 0.5));
}

#[test]
fn case_a_tpr_at_fpr() {
    // Points with FPR ≤ 1 %: (0, 0) and (0, 0.5).
    assert_eq!(tpr_at_fpr(&A_LABELS, &A_SCORES, 0.01).unwrap(), 0.5);
    // Interpolated between (0, 0.5) and (0.5, 0.5).
    assert_eq!(
        tpr_at_fpr_interpolated(&A_LABELS, &A_SCORES, 0.01).unwrap(),
        0.5
    );
    // At FPR 0.5 the official rule takes the last point with FPR ≤ 0.5: (0.5, 1).
    assert_eq!(tpr_at_fpr(&A_LABELS, &A_SCORES, 0.5).unwrap(), 1.0);
    // Interpolated at 0.25: still on the flat segment.
    assert_eq!(
        tpr_at_fpr_interpolated(&A_LABELS, &A_SCORES, 0.25).unwrap(),
        0.5
    );
}

// Case B: a tie between a fake and a real at 0.5.
// Ranked: 0.9 fake; {0.5 fake, 0.5 real}; 0.2 real.
const B_LABELS: [u8; 4] = [0, 1, 0, 1];
const B_SCORES: [f64; 4] = [0.5, 0.5, 0.2, 0.9];

#[test]
fn case_b_ties_collapse_into_one_diagonal_step() {
    let roc = roc_curve(&B_LABELS, &B_SCORES, false).unwrap();
    assert_eq!(roc.fpr(), &[0.0, 0.0, 0.5, 1.0]);
    assert_eq!(roc.tpr(), &[0.0, 0.5, 1.0, 1.0]);
    assert_eq!(roc.thresholds(), &[f64::INFINITY, 0.9, 0.5, 0.2]);
    // Pairs: (0.9 > 0.5), (0.9 > 0.2), (0.5 = 0.5) counts 1/2, (0.5 > 0.2): 3.5 / 4.
    assert_eq!(roc_auc(&B_LABELS, &B_SCORES).unwrap(), 0.875);
    // (1/2, 1) then the tie step (1, 2/3), then (1, 1/2): AP = 1/2 + 1/2·2/3 = 5/6.
    assert!(close(
        average_precision(&B_LABELS, &B_SCORES).unwrap(),
        5.0 / 6.0
    ));
}

#[test]
fn case_b_eer_inside_a_segment() {
    // On the segment (0, 0.5) → (0.5, 1): tpr = 0.5 + x, f = 0.5 − 2x → EER = 0.25. Thresholds
    // along it go from 0.9 to 0.5: at x = 0.25 the interpolation gives 0.7.
    let e = eer(&B_LABELS, &B_SCORES).unwrap();
    assert_eq!(e.eer, 0.25);
    assert!(close(e.threshold, 0.7));
    // The grid search: |FNR − FPR| is 0.5 on (0.2, 0.5] and on (0.5, 0.9], 1 elsewhere; the
    // last minimiser is 0.9 with FPR 0, FNR 1/2.
    let g = eer_grid(&B_LABELS, &B_SCORES).unwrap();
    assert_eq!((g.threshold, g.fpr, g.fnr, g.eer), (0.9, 0.0, 0.5, 0.25));
}

#[test]
fn tie_rule_score_equal_to_threshold_is_fake() {
    // The fake at exactly 0.5 is called fake (score >= threshold), so all four are right. With
    // the `> 0.5` rule of DeepfakeBench it would be missed (accuracy 3/4).
    let labels = [1, 0, 1, 0];
    let scores = [0.5, 0.1, 0.8, 0.3];
    assert_eq!(accuracy(&labels, &scores, 0.5).unwrap(), 1.0);
    assert_eq!(hter(&labels, &scores, 0.5).unwrap(), 0.0);
    // A real at exactly the threshold is a false alarm.
    assert_eq!(accuracy(&[0, 1], &[0.5, 0.9], 0.5).unwrap(), 0.5);
}

#[test]
fn drop_intermediate_removes_collinear_points_only() {
    // Three distinct scores, each shared by one fake and one real: the points (1/3, 1/3) and
    // (2/3, 2/3) lie on the diagonal between (0, 0) and (1, 1). sklearn always keeps the first
    // and last of its own points (before (0, 0) is prepended), so only (2/3, 2/3) goes.
    let labels = [1, 0, 1, 0, 1, 0];
    let scores = [0.9, 0.9, 0.5, 0.5, 0.1, 0.1];
    let full = roc_curve(&labels, &scores, false).unwrap();
    assert_eq!(full.len(), 4);
    let dropped = roc_curve(&labels, &scores, true).unwrap();
    assert_eq!(dropped.thresholds(), &[f64::INFINITY, 0.9, 0.1]);
    assert_eq!(dropped.auc(), 0.5);
    assert_eq!(full.auc(), 0.5);
}

#[test]
fn perfect_and_inverted_rankings() {
    let labels = [0, 0, 1, 1];
    let perfect = [0.1, 0.2, 0.7, 0.9];
    assert_eq!(roc_auc(&labels, &perfect).unwrap(), 1.0);
    assert_eq!(average_precision(&labels, &perfect).unwrap(), 1.0);
    // f(0) = 1 − 0 − 1 = 0: EER 0 at the lowest fake score.
    let e = eer(&labels, &perfect).unwrap();
    assert_eq!((e.eer, e.threshold), (0.0, 0.7));
    // Every grid point in (0.2, 0.7] separates perfectly; the last one is 0.7.
    let g = eer_grid(&labels, &perfect).unwrap();
    assert_eq!((g.eer, g.threshold), (0.0, 0.7));
    assert_eq!(tpr_at_fpr(&labels, &perfect, 0.01).unwrap(), 1.0);

    let inverted = [0.7, 0.9, 0.1, 0.2];
    assert_eq!(roc_auc(&labels, &inverted).unwrap(), 0.0);
    // Curve (0,0) → (1/2,0) → (1,0) → (1,1): f = 1 − x reaches 0 at x = 1.
    assert_eq!(eer(&labels, &inverted).unwrap().eer, 1.0);
    // Precision 1/3 at recall 1/2, 2/4 at recall 1: AP = 1/6 + 1/4.
    assert!(close(
        average_precision(&labels, &inverted).unwrap(),
        1.0 / 6.0 + 0.25
    ));
    assert_eq!(tpr_at_fpr(&labels, &inverted, 0.01).unwrap(), 0.0);
}

#[test]
fn all_scores_tied() {
    // One diagonal step from (0, 0) to (1, 1): AUC 1/2, EER 1/2 inside the first segment, whose
    // start has threshold +inf, so the interpolated threshold is +inf (as numpy gives).
    let labels = [0, 1, 0, 1];
    let scores = [0.3; 4];
    assert_eq!(roc_auc(&labels, &scores).unwrap(), 0.5);
    let e = eer(&labels, &scores).unwrap();
    assert_eq!(e.eer, 0.5);
    assert_eq!(e.threshold, f64::INFINITY);
    // AP = precision of the single step = 1/2.
    assert_eq!(average_precision(&labels, &scores).unwrap(), 0.5);
}

#[test]
fn metrics_struct_collects_the_same_values() {
    let m = compute_metrics(&A_LABELS, &A_SCORES, None).unwrap();
    assert_eq!((m.n_samples, m.n_fake, m.n_real), (4, 2, 2));
    assert_eq!(m.auc, 0.75);
    assert_eq!(m.eer, 0.5);
    assert!(close(m.ap, 5.0 / 6.0));
    assert_eq!((m.acc, m.balanced_acc), (0.75, 0.75));
    // HTER at the grid EER threshold 0.4: FPR 1/2, FNR 1/2.
    assert_eq!((m.hter, m.hter_threshold), (0.5, 0.4));
    assert_eq!(m.tpr_at_fpr_1pct, 0.5);
    assert_eq!((m.n_videos, m.video_auc, m.video_eer), (None, None, None));

    let json: serde_json::Value = serde_json::from_str(&m.to_json_pretty()).unwrap();
    for key in [
        "auc",
        "eer",
        "ap",
        "acc",
        "balanced_acc",
        "hter",
        "tpr_at_fpr_1pct",
        "video_auc",
        "video_eer",
    ] {
        assert!(json.get(key).is_some(), "JSON lacks {key}");
    }
    assert_eq!(json["auc"], 0.75);
    assert!(json["video_auc"].is_null());

    let table = format_table(&m);
    assert!(table.contains("4 samples (2 fake, 2 real)"), "{table}");
    assert!(table.contains("AUC") && table.contains("75.00"), "{table}");
    assert!(!table.contains("video"), "{table}");
}

#[test]
fn video_metrics_in_the_struct() {
    // Videos: a = {0.25, 0.75} fake → 0.5; b = {0.125, 0.375, 0.5} real → 1/3; c = {0.625}
    // fake. Video AUC: both fakes above the real → 1; EER 0.
    let labels = [1, 1, 0, 0, 0, 1];
    let scores = [0.25, 0.75, 0.125, 0.375, 0.5, 0.625];
    let ids: Vec<String> = ["a", "a", "b", "b", "b", "c"].map(String::from).to_vec();
    let set = ScoreSet::new(labels.to_vec(), scores.to_vec())
        .unwrap()
        .with_videos(&ids)
        .unwrap();
    let m = evaluate(&set).unwrap();
    assert_eq!(m.n_videos, Some(3));
    assert_eq!(m.video_auc, Some(1.0));
    assert_eq!(m.video_eer, Some(0.0));
    // Frame level is imperfect: the fake 0.25 is below the reals 0.375 and 0.5.
    assert!(m.auc < 1.0);
    assert!(format_table(&m).contains("video AUC"));
}
