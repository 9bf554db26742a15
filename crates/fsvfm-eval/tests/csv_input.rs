//! The score CSV reader behind `fsvfm eval-scores`.

use std::io::Write;

use fsvfm_eval::{EvalError, Position, evaluate_csv, read_scores, read_scores_csv, roc_auc};

fn read(text: &str, video_column: Option<&str>) -> Result<fsvfm_eval::ScoreSet, EvalError> {
    read_scores(text.as_bytes(), video_column)
}

#[test]
fn columns_in_any_order_with_extra_columns_and_spaces() {
    let set = read(
        "path, score ,label,video\nx.png, 0.9, 1, v1\ny.png,0.2,0,v2\nz.png,0.4,1.0,v1\n",
        None,
    )
    .unwrap();
    assert_eq!(set.labels(), &[1, 0, 1]);
    assert_eq!(set.scores(), &[0.9, 0.2, 0.4]);
    // `video` is picked up by default.
    assert_eq!(set.n_videos(), Some(2));
    assert_eq!(set.video_of(2), Some("v1"));
}

#[test]
fn video_column_is_optional_and_renamable() {
    let text = "label,score,clip\n1,0.9,a\n0,0.2,b\n";
    // No `video` column and none requested: frame level only.
    assert!(!read(text, None).unwrap().has_videos());
    assert_eq!(read(text, Some("clip")).unwrap().n_videos(), Some(2));
    let e = read(text, Some("video")).unwrap_err();
    assert!(
        matches!(&e, EvalError::MissingColumn { column, .. } if column == "video"),
        "{e:?}"
    );
    assert_eq!(
        e.to_string(),
        "the CSV has no `video` column (header: label,score,clip)"
    );
}

#[test]
fn missing_label_or_score_column() {
    let e = read("score,video\n0.5,a\n", None).unwrap_err();
    assert!(e.to_string().contains("no `label` column"), "{e}");
    let e = read("label,prob\n1,0.5\n", None).unwrap_err();
    assert!(e.to_string().contains("no `score` column"), "{e}");
}

#[test]
fn duplicate_column_is_ambiguous() {
    let e = read("label,score,score\n1,0.5,0.6\n", None).unwrap_err();
    assert!(
        matches!(&e, EvalError::DuplicateColumn { column } if column == "score"),
        "{e:?}"
    );
}

#[test]
fn bad_label_names_the_line() {
    let e = read("label,score\n1,0.9\n0,0.1\n2,0.5\n", None).unwrap_err();
    assert!(
        matches!(&e, EvalError::InvalidLabel { at: Position::Line(4), value } if value == "2"),
        "{e:?}"
    );
    assert_eq!(
        e.to_string(),
        "line 4: label `2` is not 0 (real) or 1 (fake)"
    );
    for bad in ["fake", "", "0.5", "-1", "nan"] {
        let e = read(&format!("label,score\n{bad},0.9\n"), None).unwrap_err();
        assert!(
            matches!(
                e,
                EvalError::InvalidLabel {
                    at: Position::Line(2),
                    ..
                }
            ),
            "{bad:?}: {e:?}"
        );
    }
}

#[test]
fn bad_score_names_the_line() {
    for bad in ["abc", "", "nan", "inf", "-inf"] {
        let e = read(&format!("label,score\n1,0.9\n0,{bad}\n"), None).unwrap_err();
        assert!(
            matches!(&e, EvalError::NonFiniteScore { at: Position::Line(3), value } if value == bad),
            "{bad:?}: {e:?}"
        );
        assert!(e.to_string().starts_with("line 3: score `"), "{e}");
    }
}

#[test]
fn ragged_row_is_a_csv_error_naming_the_line() {
    let e = read("label,score\n1,0.9\n0\n", None).unwrap_err();
    assert!(matches!(e, EvalError::Csv(_)), "{e:?}");
    assert!(e.to_string().contains("line: 3"), "{e}");
}

#[test]
fn inconsistent_video_labels_name_lines() {
    let e = read("label,score,video\n1,0.9,a\n0,0.1,b\n0,0.8,a\n", None).unwrap_err();
    assert!(
        matches!(
            e,
            EvalError::InconsistentVideoLabel {
                first_at: Position::Line(2),
                at: Position::Line(4),
                ..
            }
        ),
        "{e:?}"
    );
    let e = read("label,score,video\n1,0.9,a\n0,0.1,\n", None).unwrap_err();
    assert!(
        matches!(
            e,
            EvalError::EmptyVideoId {
                at: Position::Line(3)
            }
        ),
        "{e:?}"
    );
}

#[test]
fn header_only_file_is_empty() {
    assert!(matches!(read("label,score\n", None), Err(EvalError::Empty)));
}

#[test]
fn files_on_disk() {
    let mut f = tempfile::NamedTempFile::new().unwrap();
    writeln!(f, "video,label,score").unwrap();
    for (v, l, s) in [
        ("a", 1, 0.9),
        ("a", 1, 0.7),
        ("b", 0, 0.4),
        ("b", 0, 0.6),
        ("c", 1, 0.35),
        ("d", 0, 0.1),
    ] {
        writeln!(f, "{v},{l},{s}").unwrap();
    }
    f.flush().unwrap();

    let set = read_scores_csv(f.path(), None).unwrap();
    assert_eq!(set.len(), 6);
    let m = evaluate_csv(f.path(), None).unwrap();
    // Frame AUC from the same numbers through the slice API.
    let expected = roc_auc(&[1, 1, 0, 0, 1, 0], &[0.9, 0.7, 0.4, 0.6, 0.35, 0.1]).unwrap();
    assert_eq!(m.auc, expected);
    // Videos a 0.8 (fake), b 0.5 (real), c 0.35 (fake), d 0.1 (real): pairs (a>b, a>d, c<b,
    // c>d) → 3/4.
    assert_eq!(m.n_videos, Some(4));
    assert_eq!(m.video_auc, Some(0.75));

    let e = evaluate_csv("/nonexistent/scores.csv", None).unwrap_err();
    assert!(matches!(e, EvalError::Io { .. }), "{e:?}");
    assert!(
        e.to_string()
            .starts_with("cannot read `/nonexistent/scores.csv`"),
        "{e}"
    );
}
