//! Compares every metric with the values scikit-learn / SciPy produce on the same inputs.
//!
//! The fixture `tests/fixtures/metrics_sklearn.json` is written by
//! `export_metrics_fixtures.py` (tools/reference/ in the workspace); see its docstring for
//! exactly how each reference value is computed. Run with `--nocapture` to see the measured
//! maximum differences.

use std::collections::BTreeMap;

use fsvfm_eval::{
    FAS_TARGET_FPR, RocCurve, ScoreSet, accuracy, aggregate_by_video, average_precision,
    balanced_accuracy, eer, eer_grid, evaluate, hter, roc_auc, roc_curve, tpr_at_fpr,
    tpr_at_fpr_interpolated,
};
use serde_json::Value;

/// Exact definitions (counting, sums of a few terms): only floating-point summation order can
/// differ from numpy's pairwise sums.
const TOL_EXACT: f64 = 1e-12;
/// brentq stops within xtol = 2e-12 (+ rtol·|x|, rtol = 8.9e-16) of the root; our closed form is
/// exact up to rounding.
const TOL_EER: f64 = 5e-12;
/// The EER threshold is interpolated at brentq's EER, so it inherits the EER's error times the
/// slope of the threshold curve (score range / Δfpr, at most ~n × 2e-12).
const TOL_EER_THRESHOLD: f64 = 1e-9;

fn fixture() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/metrics_sklearn.json"
    );
    let text = std::fs::read_to_string(path).expect("fixture file");
    serde_json::from_str(&text).expect("fixture JSON")
}

/// A number, or the strings "inf" / "-inf".
fn num(v: &Value) -> f64 {
    match v {
        Value::Number(n) => n.as_f64().expect("f64"),
        Value::String(s) if s == "inf" => f64::INFINITY,
        Value::String(s) if s == "-inf" => f64::NEG_INFINITY,
        other => panic!("not a number: {other}"),
    }
}

fn nums(v: &Value) -> Vec<f64> {
    v.as_array().expect("array").iter().map(num).collect()
}

fn labels(v: &Value) -> Vec<u8> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|x| x.as_u64().expect("label") as u8)
        .collect()
}

/// |a − b|, with equal infinities counting as 0.
fn diff(a: f64, b: f64) -> f64 {
    if a == b { 0.0 } else { (a - b).abs() }
}

/// Records the largest difference seen per metric and fails on any above its tolerance.
#[derive(Default)]
struct Tracker {
    max: BTreeMap<&'static str, (f64, f64, String)>,
    failures: Vec<String>,
}

impl Tracker {
    fn check(&mut self, metric: &'static str, case: &str, ours: f64, reference: f64, tol: f64) {
        let d = diff(ours, reference);
        let entry = self.max.entry(metric).or_insert((0.0, tol, String::new()));
        if d > entry.0 || d.is_nan() {
            *entry = (d, tol, case.to_owned());
        }
        if d.is_nan() || d > tol {
            self.failures.push(format!(
                "{case}: {metric} = {ours:e}, sklearn {reference:e} (diff {d:e} > {tol:e})"
            ));
        }
    }

    fn curve(&mut self, name: &'static str, case: &str, ours: &RocCurve, reference: &Value) {
        let (fpr, tpr, thr) = (
            nums(&reference["fpr"]),
            nums(&reference["tpr"]),
            nums(&reference["thresholds"]),
        );
        if ours.len() != fpr.len() {
            self.failures.push(format!(
                "{case}: {name} has {} points, sklearn {}",
                ours.len(),
                fpr.len()
            ));
            return;
        }
        for i in 0..fpr.len() {
            self.check(name, case, ours.fpr()[i], fpr[i], TOL_EXACT);
            self.check(name, case, ours.tpr()[i], tpr[i], TOL_EXACT);
            self.check(name, case, ours.thresholds()[i], thr[i], 0.0);
        }
    }

    fn finish(self) {
        eprintln!(
            "{:<28} {:>12} {:>10}  worst case",
            "metric", "max |diff|", "tolerance"
        );
        for (metric, (d, tol, case)) in &self.max {
            eprintln!("{metric:<28} {d:>12.3e} {tol:>10.0e}  {case}");
        }
        assert!(self.failures.is_empty(), "{}", self.failures.join("\n"));
    }
}

/// How the EER roots of the fixture sets fall (for the EER threshold comparison).
#[derive(Debug, Default)]
struct RootKinds {
    /// Inside a ROC segment (or exactly 0): threshold compared with tolerance.
    interior: usize,
    /// At a vertex, brentq on the same side as the exact root: threshold compared with tolerance.
    vertex_same_side: usize,
    /// At a vertex, brentq just left of it: the reference threshold belongs to the left segment.
    vertex_other_side: usize,
    /// Sets where the HTER at the EER threshold was compared (boundary not at a score).
    hter_compared: usize,
}

#[test]
fn matches_sklearn_and_official_code() {
    let doc = fixture();
    let cases = doc["cases"].as_array().expect("cases");
    assert!(cases.len() >= 10, "fixture has {} cases", cases.len());
    let mut t = Tracker::default();
    let mut curves_checked = 0;
    let mut eer_roots = RootKinds::default();
    let mut videos_checked = 0;

    for c in cases {
        let name = c["name"].as_str().expect("name");
        let l = labels(&c["labels"]);
        let s = nums(&c["scores"]);
        assert_eq!(l.len(), c["n"].as_u64().unwrap() as usize, "{name}: n");

        // Threshold-free metrics, each through its own public function.
        t.check(
            "auc",
            name,
            roc_auc(&l, &s).unwrap(),
            num(&c["auc"]),
            TOL_EXACT,
        );
        t.check(
            "ap",
            name,
            average_precision(&l, &s).unwrap(),
            num(&c["ap"]),
            TOL_EXACT,
        );
        let e = eer(&l, &s).unwrap();
        t.check("eer", name, e.eer, num(&c["eer"]), TOL_EER);
        // EER threshold: see `RocCurve::eer`. The ROC used to locate vertices is checked
        // point-for-point against sklearn below.
        let roc = roc_curve(&l, &s, true).unwrap();
        let (fpr, thr) = (roc.fpr(), roc.thresholds());
        let ref_thr = num(&c["eer_threshold"]);
        let same_threshold = match fpr.iter().position(|&x| x == e.eer).filter(|&k| k > 0) {
            None => {
                eer_roots.interior += 1;
                t.check(
                    "eer_threshold",
                    name,
                    e.threshold,
                    ref_thr,
                    TOL_EER_THRESHOLD,
                );
                true
            }
            Some(k) => {
                // Root at the vertex fpr[k]: we take np.interp at the exact root, the threshold
                // of the last point with that FPR.
                let top = fpr.iter().rposition(|&x| x == e.eer).unwrap();
                assert_eq!(e.threshold, thr[top], "{name}: vertex threshold");
                if diff(ref_thr, thr[top]) <= TOL_EER_THRESHOLD {
                    eer_roots.vertex_same_side += 1;
                    true
                } else {
                    // brentq ended left of the vertex: its threshold is interpolated on the
                    // segment ending there, between thr[k] and thr[k - 1].
                    eer_roots.vertex_other_side += 1;
                    assert!(
                        ref_thr >= thr[k] - TOL_EER_THRESHOLD
                            && ref_thr <= thr[k - 1] + TOL_EER_THRESHOLD,
                        "{name}: reference EER threshold {ref_thr} is not on either side of the \
                         vertex (ours {}, left segment [{}, {}])",
                        e.threshold,
                        thr[k],
                        thr[k - 1]
                    );
                    false
                }
            }
        };
        // HTER at that threshold: decisions flip when a threshold is within rounding of a score,
        // where "score >= threshold" is decided by the last few ulps of the root finder. Compare
        // only where the decision boundary is well conditioned.
        let near_a_score = |th: f64| s.iter().any(|&v| diff(v, th) <= TOL_EER_THRESHOLD);
        if same_threshold && !near_a_score(e.threshold) && !near_a_score(ref_thr) {
            eer_roots.hter_compared += 1;
            let h = hter(&l, &s, e.threshold).unwrap();
            let ref_h = num(&c["hter_at_eer_threshold"]);
            t.check("hter_at_eer_threshold", name, h, ref_h, TOL_EXACT);
        }
        t.check(
            "tpr_at_fpr_1pct",
            name,
            tpr_at_fpr(&l, &s, FAS_TARGET_FPR).unwrap(),
            num(&c["tpr_at_fpr_1pct"]),
            TOL_EXACT,
        );
        t.check(
            "tpr_at_fpr_1pct_interp",
            name,
            tpr_at_fpr_interpolated(&l, &s, FAS_TARGET_FPR).unwrap(),
            num(&c["tpr_at_fpr_1pct_interp"]),
            TOL_EXACT,
        );

        // Thresholded metrics.
        t.check(
            "acc_05",
            name,
            accuracy(&l, &s, 0.5).unwrap(),
            num(&c["acc_05"]),
            TOL_EXACT,
        );
        t.check(
            "balanced_acc_05",
            name,
            balanced_accuracy(&l, &s, 0.5).unwrap(),
            num(&c["balanced_acc_05"]),
            TOL_EXACT,
        );
        let g = eer_grid(&l, &s).unwrap();
        t.check("eer_grid", name, g.eer, num(&c["eer_grid"]), TOL_EXACT);
        t.check(
            "eer_grid_threshold",
            name,
            g.threshold,
            num(&c["eer_grid_threshold"]),
            0.0,
        );
        t.check(
            "hter_at_grid_threshold",
            name,
            hter(&l, &s, g.threshold).unwrap(),
            num(&c["hter_at_grid_threshold"]),
            TOL_EXACT,
        );

        // ROC points, both sklearn variants.
        if c.get("roc").is_some() {
            t.curve(
                "roc (drop_intermediate)",
                name,
                &roc_curve(&l, &s, true).unwrap(),
                &c["roc"],
            );
            t.curve(
                "roc (full)",
                name,
                &roc_curve(&l, &s, false).unwrap(),
                &c["roc_full"],
            );
            curves_checked += 1;
        }

        // The one-pass summary must agree with the individual functions' references too.
        let mut set = ScoreSet::new(l.clone(), s.clone()).unwrap();
        if let Some(ids) = c["videos"].as_array() {
            let ids: Vec<String> = ids.iter().map(|v| v.as_str().unwrap().to_owned()).collect();
            set = set.with_videos(&ids).unwrap();
            let v = &c["video"];
            let agg = aggregate_by_video(&l, &s, &ids).unwrap();
            let ref_ids: Vec<&str> = v["ids"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_str().unwrap())
                .collect();
            assert_eq!(agg.ids, ref_ids, "{name}: video order");
            assert_eq!(agg.labels, labels(&v["labels"]), "{name}: video labels");
            for (ours, r) in agg.scores.iter().zip(nums(&v["scores"])) {
                t.check("video mean score", name, *ours, r, 0.0);
            }
            t.check(
                "video eer_grid",
                name,
                eer_grid(&agg.labels, &agg.scores).unwrap().eer,
                num(&v["eer_grid"]),
                TOL_EXACT,
            );
            t.check(
                "video tpr_at_fpr_1pct",
                name,
                tpr_at_fpr(&agg.labels, &agg.scores, FAS_TARGET_FPR).unwrap(),
                num(&v["tpr_at_fpr_1pct"]),
                TOL_EXACT,
            );
            videos_checked += 1;
        }
        let m = evaluate(&set).unwrap();
        t.check("Metrics.auc", name, m.auc, num(&c["auc"]), TOL_EXACT);
        t.check("Metrics.eer", name, m.eer, num(&c["eer"]), TOL_EER);
        t.check("Metrics.ap", name, m.ap, num(&c["ap"]), TOL_EXACT);
        t.check("Metrics.acc", name, m.acc, num(&c["acc_05"]), TOL_EXACT);
        t.check(
            "Metrics.balanced_acc",
            name,
            m.balanced_acc,
            num(&c["balanced_acc_05"]),
            TOL_EXACT,
        );
        t.check(
            "Metrics.hter",
            name,
            m.hter,
            num(&c["hter_at_grid_threshold"]),
            TOL_EXACT,
        );
        t.check(
            "Metrics.tpr_at_fpr_1pct",
            name,
            m.tpr_at_fpr_1pct,
            num(&c["tpr_at_fpr_1pct"]),
            TOL_EXACT,
        );
        assert_eq!(
            m.n_fake,
            c["n_fake"].as_u64().unwrap() as usize,
            "{name}: n_fake"
        );
        match c.get("video").filter(|v| !v.is_null()) {
            Some(v) => {
                t.check(
                    "Metrics.video_auc",
                    name,
                    m.video_auc.unwrap(),
                    num(&v["auc"]),
                    TOL_EXACT,
                );
                t.check(
                    "Metrics.video_eer",
                    name,
                    m.video_eer.unwrap(),
                    num(&v["eer"]),
                    TOL_EER,
                );
            }
            None => assert_eq!((m.video_auc, m.video_eer), (None, None), "{name}"),
        }
    }
    eprintln!("EER roots: {eer_roots:?}");
    // The fixture must exercise every branch of the EER threshold comparison.
    assert!(
        eer_roots.interior > 0 && eer_roots.vertex_same_side > 0 && eer_roots.vertex_other_side > 0
    );
    assert!(eer_roots.hter_compared >= cases.len() / 3, "{eer_roots:?}");
    assert!(
        curves_checked >= 6,
        "only {curves_checked} ROC curves in the fixture"
    );
    assert!(
        videos_checked >= 2,
        "only {videos_checked} video cases in the fixture"
    );
    t.finish();
}

/// The fixture's `diagonal_ties` case exists to pin the TPR@FPR definition: sklearn's default
/// curve drops a collinear point at FPR = 1 %, so the official value (last kept point) is lower
/// than on the full curve or interpolated.
#[test]
fn diagonal_ties_pins_the_tpr_at_fpr_definition() {
    let doc = fixture();
    let c = doc["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "diagonal_ties")
        .expect("diagonal_ties case");
    let (official, interp) = (
        num(&c["tpr_at_fpr_1pct"]),
        num(&c["tpr_at_fpr_1pct_interp"]),
    );
    assert!(
        official < interp,
        "the case no longer separates the definitions"
    );
    let l = labels(&c["labels"]);
    let s = nums(&c["scores"]);
    let full = roc_curve(&l, &s, false).unwrap();
    assert_eq!(tpr_at_fpr(&l, &s, 0.01).unwrap(), official);
    assert_eq!(full.tpr_at_fpr(0.01), interp);
}
