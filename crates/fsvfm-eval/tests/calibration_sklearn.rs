//! `fsvfm_eval::calibration` against scikit-learn (`tools/reference/export_calibration_fixtures.py`):
//! the temperature equals `1 / LogisticRegression(fit_intercept=False, C=inf).coef_` to 1e-6
//! relative (lbfgs stops at its own tolerance; the Rust bisection is exact to 1e-12), and the
//! thresholds at target FPRs equal those read off sklearn's full ROC curve to 1e-9 (the scores
//! are recomputed from the fitted temperature, so they differ from the fixture's in the last
//! bits).

use fsvfm_eval::{calibrated_probability, fit_temperature, threshold_at_fpr};
use serde_json::Value;

#[test]
fn temperature_and_thresholds_match_sklearn() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/calibration_sklearn.json"
    ))
    .unwrap();
    let v: Value = serde_json::from_str(&text).unwrap();
    let cases = v["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 3);
    for c in cases {
        let labels: Vec<u8> = c["labels"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap() as u8)
            .collect();
        let margins: Vec<f64> = c["margins"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap())
            .collect();
        let want_t = c["temperature"].as_f64().unwrap();
        let fit = fit_temperature(&labels, &margins).unwrap();
        assert!(
            (fit.temperature - want_t).abs() <= 1e-6 * want_t,
            "seed {}: T {} vs sklearn {want_t}",
            c["seed"],
            fit.temperature
        );
        assert!(fit.nll_after <= fit.nll_before);
        // The reference's own probabilities (its T), so the ROC is the same one.
        let p: Vec<f64> = margins
            .iter()
            .map(|&m| calibrated_probability(m, want_t))
            .collect();
        for (a, b) in p.iter().zip(c["probabilities"].as_array().unwrap()) {
            assert!((a - b.as_f64().unwrap()).abs() < 1e-12);
        }
        for point in c["thresholds"].as_array().unwrap() {
            let target = point["target_fpr"].as_f64().unwrap();
            let got = threshold_at_fpr(&labels, &p, target).unwrap();
            assert!(
                (got.threshold - point["threshold"].as_f64().unwrap()).abs() < 1e-9,
                "seed {} target {target}: {got:?} vs {point}",
                c["seed"]
            );
            assert_eq!(got.tpr, point["tpr"].as_f64().unwrap());
            assert_eq!(got.fpr, point["fpr"].as_f64().unwrap());
        }
    }
}
