//! Input validation errors and video-level aggregation.

use fsvfm_eval::{
    EvalError, Position, ScoreSet, accuracy, aggregate_by_video, average_precision,
    balanced_accuracy, compute_metrics, eer, eer_grid, evaluate, hter, roc_auc, roc_curve,
    tpr_at_fpr,
};

#[test]
fn empty_input() {
    let e = roc_auc(&[], &[]).unwrap_err();
    assert!(matches!(e, EvalError::Empty), "{e:?}");
    assert!(e.to_string().contains("no samples"));
    assert!(matches!(
        ScoreSet::new(vec![], vec![]),
        Err(EvalError::Empty)
    ));
}

#[test]
fn length_mismatch() {
    let e = eer(&[0, 1, 1], &[0.1, 0.2]).unwrap_err();
    assert!(
        matches!(
            e,
            EvalError::LengthMismatch {
                expected: 3,
                found: 2,
                ..
            }
        ),
        "{e:?}"
    );
    assert_eq!(e.to_string(), "length mismatch: 3 labels but 2 scores");
    let ids = vec!["a".to_string()];
    let e = aggregate_by_video(&[0, 1], &[0.1, 0.2], &ids).unwrap_err();
    assert_eq!(e.to_string(), "length mismatch: 2 labels but 1 video ids");
}

#[test]
fn labels_must_be_zero_or_one() {
    let e = accuracy(&[0, 2], &[0.1, 0.2], 0.5).unwrap_err();
    assert!(
        matches!(&e, EvalError::InvalidLabel { at: Position::Index(1), value } if value == "2"),
        "{e:?}"
    );
    assert_eq!(
        e.to_string(),
        "sample #1: label `2` is not 0 (real) or 1 (fake)"
    );
}

#[test]
fn nan_and_infinite_scores() {
    for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
        let e = average_precision(&[0, 1, 1], &[0.1, 0.9, bad]).unwrap_err();
        assert!(
            matches!(
                e,
                EvalError::NonFiniteScore {
                    at: Position::Index(2),
                    ..
                }
            ),
            "{bad}: {e:?}"
        );
        assert!(e.to_string().starts_with("sample #2: score `"), "{e}");
    }
}

#[test]
fn single_class_is_rejected_where_undefined() {
    let labels = [1, 1, 1];
    let scores = [0.2, 0.5, 0.9];
    // Every metric that needs both classes says so.
    let errors = [
        roc_auc(&labels, &scores).unwrap_err(),
        eer(&labels, &scores).unwrap_err(),
        average_precision(&labels, &scores).unwrap_err(),
        tpr_at_fpr(&labels, &scores, 0.01).unwrap_err(),
        balanced_accuracy(&labels, &scores, 0.5).unwrap_err(),
        hter(&labels, &scores, 0.5).unwrap_err(),
        eer_grid(&labels, &scores).unwrap_err(),
        roc_curve(&labels, &scores, true).unwrap_err(),
        compute_metrics(&labels, &scores, None).unwrap_err(),
    ];
    for e in errors {
        assert!(
            matches!(e, EvalError::SingleClass { n: 3, class } if class.starts_with("fake")),
            "{e:?}"
        );
        assert!(
            e.to_string()
                .starts_with("all 3 samples are fake (label 1)"),
            "{e}"
        );
    }
    let e = roc_auc(&[0, 0], &[0.1, 0.2]).unwrap_err();
    assert!(
        e.to_string()
            .starts_with("all 2 samples are real (label 0)"),
        "{e}"
    );
    // Accuracy is defined with one class: 2 of 3 fakes reach 0.5.
    assert_eq!(accuracy(&labels, &scores, 0.5).unwrap(), 2.0 / 3.0);
    // A ScoreSet may hold one class (bootstrap resamples can); evaluation then fails.
    let set = ScoreSet::new(labels.to_vec(), scores.to_vec()).unwrap();
    assert!(matches!(evaluate(&set), Err(EvalError::SingleClass { .. })));
}

#[test]
fn fpr_target_outside_unit_interval() {
    let e = tpr_at_fpr(&[0, 1], &[0.1, 0.9], 1.5).unwrap_err();
    assert!(matches!(e, EvalError::InvalidArgument(_)), "{e:?}");
}

#[test]
fn inconsistent_video_labels() {
    let ids: Vec<String> = ["v1", "v2", "v1"].map(String::from).to_vec();
    let e = aggregate_by_video(&[1, 0, 0], &[0.9, 0.1, 0.2], &ids).unwrap_err();
    match &e {
        EvalError::InconsistentVideoLabel {
            video,
            first_label,
            first_at,
            label,
            at,
        } => {
            assert_eq!(video, "v1");
            assert_eq!((*first_label, *label), (1, 0));
            assert_eq!((*first_at, *at), (Position::Index(0), Position::Index(2)));
        }
        other => panic!("{other:?}"),
    }
    assert!(
        e.to_string()
            .starts_with("video `v1` mixes labels: 1 at sample #0 but 0 at sample #2"),
        "{e}"
    );
    let set = ScoreSet::new(vec![1, 0, 0], vec![0.9, 0.1, 0.2]).unwrap();
    assert!(matches!(
        set.with_videos(&ids),
        Err(EvalError::InconsistentVideoLabel { .. })
    ));
    assert!(matches!(
        compute_metrics(&[1, 0, 0], &[0.9, 0.1, 0.2], Some(&ids)),
        Err(EvalError::InconsistentVideoLabel { .. })
    ));
}

#[test]
fn empty_video_id() {
    let e = aggregate_by_video(&[1, 0], &[0.9, 0.1], &["a", ""]).unwrap_err();
    assert!(
        matches!(
            e,
            EvalError::EmptyVideoId {
                at: Position::Index(1)
            }
        ),
        "{e:?}"
    );
}

#[test]
fn video_scores_are_means_in_first_appearance_order() {
    // Frames interleaved: b, a, b, c, a, b.
    let labels = [0, 1, 0, 1, 1, 0];
    let scores = [0.25, 0.5, 0.5, 0.875, 1.0, 0.0];
    let ids = ["b", "a", "b", "c", "a", "b"];
    let v = aggregate_by_video(&labels, &scores, &ids).unwrap();
    assert_eq!(v.ids, ["b", "a", "c"]);
    assert_eq!(v.labels, [0, 1, 1]);
    assert_eq!(v.frames, [3, 2, 1]);
    // b = (0.25 + 0.5 + 0) / 3 = 0.25; a = (0.5 + 1) / 2 = 0.75; c = 0.875 (exact in binary).
    assert_eq!(v.scores, [0.25, 0.75, 0.875]);

    let set = ScoreSet::new(labels.to_vec(), scores.to_vec())
        .unwrap()
        .with_videos(&ids)
        .unwrap();
    assert_eq!(set.video_level().unwrap(), v);
    assert_eq!(set.n_videos(), Some(3));
    assert_eq!(set.video_of(3), Some("c"));
    // Video-level AUC from the Metrics equals the AUC of the aggregated scores: both fakes
    // (0.75, 0.875) above the real (0.25).
    let m = evaluate(&set).unwrap();
    assert_eq!(m.video_auc, Some(1.0));
    assert_eq!(m.video_auc.unwrap(), roc_auc(&v.labels, &v.scores).unwrap());
}

#[test]
fn video_averaging_can_change_the_ranking() {
    // Frame level: the real frames 0.6 and 0.7 outrank the fake frame 0.55 → frame AUC < 1.
    // Video level: fake video (0.55, 0.95) → 0.75 beats real video (0.6, 0.7) → 0.65 → AUC 1.
    let labels = [1, 1, 0, 0];
    let scores = [0.55, 0.95, 0.6, 0.7];
    let ids: Vec<String> = ["f", "f", "r", "r"].map(String::from).to_vec();
    let m = compute_metrics(&labels, &scores, Some(&ids)).unwrap();
    assert_eq!(m.auc, 0.5);
    assert_eq!(m.video_auc, Some(1.0));
    assert_eq!(m.video_eer, Some(0.0));
}
