//! The files of `fsvfm eval`: per-set score CSVs, `metrics.json`, `report.md` (the papers' table:
//! frame/video AUC and EER per test set and their average), ROC curves and score histograms.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result};
use fsvfm_eval::{Metrics, ScoreSet, evaluate, roc_curve};
use fsvfm_plot::{Figure, Legend, PALETTE, Panel, Series};

/// The scores of one test set.
pub struct SetScores<'a> {
    /// Report name.
    pub name: &'a str,
    /// Image per score.
    pub images: Vec<&'a Path>,
    /// 1 = fake, 0 = real.
    pub labels: Vec<u8>,
    /// Video id per image, if known.
    pub videos: Vec<Option<String>>,
    /// P(fake).
    pub scores: &'a [f64],
    /// Inputs left out.
    pub skipped: &'a [fsvfm_data::Skipped],
}

fn metrics_of(s: &SetScores) -> Result<Metrics, String> {
    let mut set = ScoreSet::new(s.labels.clone(), s.scores.to_vec()).map_err(|e| e.to_string())?;
    if !s.videos.is_empty() && s.videos.iter().all(Option::is_some) {
        let ids: Vec<&str> = s
            .videos
            .iter()
            .map(|v| v.as_deref().unwrap_or(""))
            .collect();
        set = set.with_videos(&ids).map_err(|e| e.to_string())?;
    }
    evaluate(&set).map_err(|e| e.to_string())
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

fn roc_png(s: &SetScores, m: &Metrics, stem: &Path) -> Result<()> {
    let title = format!("{}: AUC {:.4}, EER {:.4}", s.name, m.auc, m.eer);
    roc_picture(
        &title,
        &[("", s.labels.as_slice(), s.scores, PALETTE[0])],
        stem,
    )
}

/// One curve of [`roc_picture`]: `(legend, labels, scores, colour)`; an empty legend draws none.
pub type Curve<'a> = (&'a str, &'a [u8], &'a [f64], [u8; 3]);

/// ROC curves of several detectors on one chart (false-positive rate of the reals across,
/// true-positive rate of the fakes up), written as `stem.png` and `stem.svg`.
pub fn roc_picture(title: &str, curves: &[Curve], stem: &Path) -> Result<()> {
    let mut panel = Panel::new(
        title,
        "false-positive rate (reals called fake)",
        "true-positive rate",
    );
    panel.x_range = Some((0.0, 1.0));
    panel.y_range = Some((0.0, 1.0));
    panel.diagonal = true;
    panel.legend = Legend::LowerRight;
    for (legend, labels, scores, colour) in curves {
        let roc = roc_curve(labels, scores, false)?;
        let pts = roc
            .fpr()
            .iter()
            .copied()
            .zip(roc.tpr().iter().copied())
            .collect();
        panel.series.push(Series::line(*legend, pts, *colour));
    }
    let mut fig = Figure::single(panel);
    fig.panel_size = (420, 400);
    fig.save_both(stem)
        .with_context(|| format!("writing {}", stem.display()))
}

/// The score histograms of the reals and the fakes (each as a fraction of its class), as
/// `stem.png` and `stem.svg`.
fn hist_png(s: &SetScores, stem: &Path) -> Result<()> {
    const BINS: usize = 20;
    let mut counts = [[0usize; BINS]; 2];
    for (&l, &p) in s.labels.iter().zip(s.scores) {
        let b = ((p * BINS as f64) as usize).min(BINS - 1);
        counts[usize::from(l.min(1))][b] += 1;
    }
    let mut panel = Panel::new(
        format!("{}: scores", s.name),
        "P(fake)",
        "fraction of the class",
    );
    panel.x_range = Some((0.0, 1.0));
    let width = 1.0 / BINS as f64;
    for (class, name, colour) in [(0usize, "real", PALETTE[0]), (1, "fake", PALETTE[3])] {
        let total = counts[class].iter().sum::<usize>().max(1) as f64;
        let pts = (0..BINS)
            .map(|b| ((b as f64 + 0.5) * width, counts[class][b] as f64 / total))
            .collect();
        let n = counts[class].iter().sum::<usize>();
        panel
            .series
            .push(Series::bars(format!("{name} ({n})"), pts, colour, width));
    }
    let mut fig = Figure::single(panel);
    fig.panel_size = (460, 300);
    fig.save_both(stem)
        .with_context(|| format!("writing {}", stem.display()))
}

fn pct(v: Option<f64>) -> String {
    v.map_or("–".into(), |x| format!("{:.2}", 100.0 * x))
}

/// What the checkpoint's verdicts do on a set: counts per verdict and per label, and the TPR
/// and FPR of calling `fake`.
fn verdicts(s: &SetScores, calibration: &fsvfm::Calibration) -> serde_json::Value {
    let mut counts = std::collections::BTreeMap::<(&str, u8), usize>::new();
    for (&p, &l) in s.scores.iter().zip(&s.labels) {
        *counts
            .entry((calibration.verdict(p).as_str(), l))
            .or_default() += 1;
    }
    let n = |v: &str, l: u8| counts.get(&(v, l)).copied().unwrap_or(0);
    let (fakes, reals) = (
        s.labels.iter().filter(|&&l| l == 1).count(),
        s.labels.iter().filter(|&&l| l == 0).count(),
    );
    let rate = |k: usize, of: usize| (of > 0).then(|| k as f64 / of as f64);
    serde_json::json!({
        "threshold": calibration.decision_threshold(),
        "suspect_threshold": calibration.suspect_from(),
        "calibrated": calibration.is_calibrated(),
        "tpr": rate(n("fake", 1), fakes),
        "fpr": rate(n("fake", 0), reals),
        "fake": {"real": n("fake", 0), "fake": n("fake", 1)},
        "suspect": {"real": n("suspect", 0), "fake": n("suspect", 1)},
        "real": {"real": n("real", 0), "fake": n("real", 1)},
    })
}

/// Writes every file of the report into `out`.
pub fn write_eval_report(
    out: &Path,
    checkpoint: &Path,
    calibration: &fsvfm::Calibration,
    sets: &[SetScores],
) -> Result<()> {
    let mut json = serde_json::Map::new();
    let mut failed = Vec::new();
    let mut md = format!(
        "# Evaluation of `{}`\n\nScores are P(fake); label 1 = fake. Metrics in %, EER as a rate ×100; video = mean of frame scores per video.\n\n\
         | test set | frame AUC | frame EER | video AUC | video EER | AP | ACC@0.5 | images | videos | left out |\n\
         |---|---|---|---|---|---|---|---|---|---|\n",
        checkpoint.display()
    );
    let (mut aucs, mut eers, mut vaucs, mut veers) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for s in sets {
        // The video column only when every image has one (eval-scores reads the file back).
        let with_videos = !s.videos.is_empty() && s.videos.iter().all(Option::is_some);
        let mut csv = String::from(if with_videos {
            "image,label,video,score\n"
        } else {
            "image,label,score\n"
        });
        for i in 0..s.labels.len() {
            let video = match (&s.videos[i], with_videos) {
                (Some(v), true) => format!("{},", csv_field(v)),
                _ => String::new(),
            };
            let image = csv_field(&s.images[i].display().to_string());
            let _ = writeln!(csv, "{image},{},{video}{}", s.labels[i], s.scores[i]);
        }
        let p = out.join(format!("scores-{}.csv", s.name));
        write_text(&p, csv).with_context(|| format!("writing {}", p.display()))?;
        if !s.skipped.is_empty() {
            let lines: String = s
                .skipped
                .iter()
                .map(|k| serde_json::to_string(k).unwrap_or_default() + "\n")
                .collect();
            let p = out.join(format!("skipped-{}.jsonl", s.name));
            write_text(&p, lines).with_context(|| format!("writing {}", p.display()))?;
        }
        match metrics_of(s) {
            Ok(m) => {
                roc_png(s, &m, &out.join(format!("roc-{}", s.name)))?;
                hist_png(s, &out.join(format!("hist-{}", s.name)))?;
                aucs.push(m.auc);
                eers.push(m.eer);
                vaucs.extend(m.video_auc);
                veers.extend(m.video_eer);
                let _ = writeln!(
                    md,
                    "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                    s.name,
                    pct(Some(m.auc)),
                    pct(Some(m.eer)),
                    pct(m.video_auc),
                    pct(m.video_eer),
                    pct(Some(m.ap)),
                    pct(Some(m.acc)),
                    m.n_samples,
                    m.n_videos.map_or("–".into(), |v| v.to_string()),
                    s.skipped.len()
                );
                let mut v = serde_json::to_value(&m)?;
                v["left_out"] = s.skipped.len().into();
                v["verdicts"] = verdicts(s, calibration);
                json.insert(s.name.to_string(), v);
            }
            Err(e) => {
                failed.push(format!("{}: {e}", s.name));
                let _ = writeln!(
                    md,
                    "| {} | {e} | | | | | | {} | | {} |",
                    s.name,
                    s.labels.len(),
                    s.skipped.len()
                );
                json.insert(
                    s.name.to_string(),
                    serde_json::json!({"error": e, "left_out": s.skipped.len()}),
                );
            }
        }
    }
    let avg = |v: &[f64]| (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64);
    if sets.len() > 1 {
        let _ = writeln!(
            md,
            "| **average** | {} | {} | {} | {} | | | | | |",
            pct(avg(&aucs)),
            pct(avg(&eers)),
            pct(avg(&vaucs)),
            pct(avg(&veers))
        );
    }
    let _ = writeln!(
        md,
        "\nVerdicts (metrics.json `verdicts`): fake at P(fake) ≥ {:.4}, suspect from {:.4} ({}).",
        calibration.decision_threshold(),
        calibration.suspect_from(),
        if calibration.is_calibrated() {
            "calibrated by `fsvfm calibrate`"
        } else {
            "uncalibrated: 0.5"
        }
    );
    let p = out.join("metrics.json");
    let doc = serde_json::json!({"checkpoint": checkpoint.display().to_string(), "sets": json});
    write_text(&p, serde_json::to_string_pretty(&doc)?)
        .with_context(|| format!("writing {}", p.display()))?;
    let p = out.join("report.md");
    write_text(&p, &md).with_context(|| format!("writing {}", p.display()))?;
    println!("{md}");
    // The report is written either way (it shows why); the exit status says a set gave no metrics
    // (empty, or one class only), as `eval-scores` does.
    anyhow::ensure!(
        failed.is_empty(),
        "{} of {} sets have no metrics ({}); the report in {} says why",
        failed.len(),
        sets.len(),
        failed.join("; "),
        out.display()
    );
    Ok(())
}

/// The report's text files, written atomically like its pictures.
fn write_text(path: &Path, text: impl AsRef<[u8]>) -> std::io::Result<()> {
    fsvfm::data::atomic::write_atomic(path, text.as_ref(), false)
}
