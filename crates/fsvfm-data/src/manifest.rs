//! The one manifest format of fsvfm: `manifest.jsonl`, one JSON object per face record, written
//! by `fsvfm prepare` (real or labelled crops with region maps and landmarks) and `fsvfm synth`
//! (forgeries and attacks with masks), read by pre-training, evaluation, transfer and the demo.
//!
//! - Every record carries `schema` ([`SCHEMA_VERSION`]; absent in files of the first release,
//!   read as version 1). A record of a newer schema than this build knows is reported, not
//!   guessed at.
//! - `label` is parsed by [`Label::parse`] only, so every reader agrees on what is real:
//!   `real` → real; `fake` → fake; `attack`, `spoof`, `print`, `replay` → attack; the numbers
//!   0 / 1 → real / fake. A record without a label is real (what `prepare` writes without
//!   `--label`).
//! - Unknown fields are ignored (later versions may add some); a broken line is reported with its
//!   line number and left out, never silently read as a real face.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::pretrain_set::Skipped;

/// The manifest schema this build writes.
pub const SCHEMA_VERSION: u32 = 1;

/// The class of a face record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Label {
    /// A bona fide face.
    Real,
    /// A manipulated or synthesised face (deepfake, swap, self-blend, diffusion).
    Fake,
    /// A presentation attack (print, replay, mask).
    Attack,
}

impl Label {
    /// The label a name stands for, case-insensitively, by its start (so class folders such as
    /// `fake_four/` or `spoof_print/` parse too): `real…` → real; `fake…` → fake; `attack…`,
    /// `spoof…`, `print…`, `replay…` → attack; anything else → `None`.
    pub fn parse(name: &str) -> Option<Label> {
        let n = name.trim().to_ascii_lowercase();
        let starts = |ps: &[&str]| ps.iter().any(|p| n.starts_with(p));
        if starts(&["real"]) {
            Some(Label::Real)
        } else if starts(&["fake"]) {
            Some(Label::Fake)
        } else if starts(&["attack", "spoof", "print", "replay"]) {
            Some(Label::Attack)
        } else {
            None
        }
    }

    /// A JSON `label` value: a string as [`Label::parse`], or 0 (real) / 1 (fake).
    pub fn from_json(v: &serde_json::Value) -> Option<Label> {
        match v {
            serde_json::Value::String(s) => Label::parse(s),
            serde_json::Value::Number(n) => match n.as_u64() {
                Some(0) => Some(Label::Real),
                Some(1) => Some(Label::Fake),
                _ => None,
            },
            _ => None,
        }
    }

    /// The binary target of detection and anti-spoofing: 0 = real, 1 = fake or attack.
    pub fn binary(self) -> u8 {
        u8::from(self != Label::Real)
    }

    /// `real`, `fake` or `attack`.
    pub fn as_str(self) -> &'static str {
        match self {
            Label::Real => "real",
            Label::Fake => "fake",
            Label::Attack => "attack",
        }
    }
}

impl std::fmt::Display for Label {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Label {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Label::parse(s).ok_or_else(|| {
            format!("unknown label {s:?}: use real, fake or attack (spoof, print, replay)")
        })
    }
}

/// The fields of a manifest record that readers use (paths relative to the manifest's folder).
/// Writers' records (`fsvfm_faces::prepare::Record`, `fsvfm_synth::run::SynthRecord`) carry
/// more; the rest of a line is ignored.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
pub struct ManifestRecord {
    /// Schema version (1 when absent).
    #[serde(default = "first_schema")]
    pub schema: u32,
    /// The face crop.
    pub path: String,
    /// Real, fake or attack (real when absent).
    #[serde(default, deserialize_with = "label_field")]
    pub label: Option<Label>,
    /// LaPa-style region map (`prepare`).
    #[serde(default)]
    pub region_map: Option<String>,
    /// FaceMesh landmarks `.npy` (`prepare`).
    #[serde(default)]
    pub landmarks: Option<String>,
    /// Manipulation mask, 255 = manipulated (`synth`).
    #[serde(default)]
    pub mask: Option<String>,
    /// The video a frame came from.
    #[serde(default)]
    pub video_id: Option<String>,
    /// The input file of `prepare`, or the real crop a forgery was made from.
    #[serde(default)]
    pub source: Option<String>,
    /// Dataset name.
    #[serde(default)]
    pub dataset: Option<String>,
    /// Split (`train` / `val` / `test`).
    #[serde(default)]
    pub split: Option<String>,
}

fn first_schema() -> u32 {
    1
}

fn label_field<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Label>, D::Error> {
    let v = serde_json::Value::deserialize(d)?;
    if v.is_null() {
        return Ok(None);
    }
    Label::from_json(&v).map(Some).ok_or_else(|| {
        serde::de::Error::custom(format!(
            "unknown label {v}: use real, fake or attack (spoof, print, replay), or 0 / 1"
        ))
    })
}

impl ManifestRecord {
    /// The record's label; a record without one is real.
    pub fn label(&self) -> Label {
        self.label.unwrap_or(Label::Real)
    }
}

/// One non-blank line of a manifest: its 1-based number and its record, or why it is none.
#[derive(Debug, Clone, PartialEq)]
pub struct ManifestLine {
    /// Line number (1-based).
    pub line: usize,
    /// The record, or why the line is not one (not JSON, no `path`, an unknown label, a newer
    /// schema).
    pub record: Result<ManifestRecord, String>,
}

impl ManifestLine {
    /// A [`Skipped`] entry for this line of `manifest` (`path` = `FILE:LINE`).
    pub fn skipped(&self, manifest: &Path, reason: impl Into<String>) -> Skipped {
        Skipped {
            path: format!("{}:{}", manifest.display(), self.line),
            reason: reason.into(),
        }
    }
}

/// Reads `manifest.jsonl` line by line (blank lines ignored), in file order. Only an unreadable
/// file is an error; a bad line is a [`ManifestLine`] whose `record` says what is wrong.
pub fn read_manifest(path: &Path) -> Result<Vec<ManifestLine>, String> {
    let text = crate::input::read_text(path)?;
    Ok(text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, line)| ManifestLine {
            line: i + 1,
            record: match serde_json::from_str::<ManifestRecord>(line) {
                Ok(r) if r.schema > SCHEMA_VERSION => Err(format!(
                    "manifest schema {} is newer than this fsvfm reads ({SCHEMA_VERSION})",
                    r.schema
                )),
                Ok(r) => Ok(r),
                Err(e) if serde_json::from_str::<serde_json::Value>(line).is_err() => {
                    Err(format!("not JSON: {e}"))
                }
                Err(e) => Err(format!("not a manifest record: {e}")),
            },
        })
        .collect())
}

/// What [`read_records`] returns: each record with its line, and a [`Skipped`] per line that is
/// none.
pub type Records = (Vec<(ManifestLine, ManifestRecord)>, Vec<Skipped>);

/// The records of a manifest, and a [`Skipped`] for every line that is none, in file order.
pub fn read_records(path: &Path) -> Result<Records, String> {
    let mut records = Vec::new();
    let mut skipped = Vec::new();
    for l in read_manifest(path)? {
        match l.record.clone() {
            Ok(r) => records.push((l, r)),
            Err(why) => skipped.push(l.skipped(path, why)),
        }
    }
    Ok((records, skipped))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_parser_for_every_spelling() {
        for (s, want) in [
            ("real", Some(Label::Real)),
            ("Real_youtube", Some(Label::Real)),
            ("fake", Some(Label::Fake)),
            ("fake_four", Some(Label::Fake)),
            ("attack", Some(Label::Attack)),
            ("spoof", Some(Label::Attack)),
            ("print", Some(Label::Attack)),
            ("replay", Some(Label::Attack)),
            ("SPOOF_print", Some(Label::Attack)),
            ("other", None),
            ("", None),
        ] {
            assert_eq!(Label::parse(s), want, "{s}");
        }
        assert_eq!(Label::from_json(&serde_json::json!(0)), Some(Label::Real));
        assert_eq!(Label::from_json(&serde_json::json!(1)), Some(Label::Fake));
        assert_eq!(Label::from_json(&serde_json::json!(2)), None);
        assert_eq!(Label::Attack.binary(), 1);
        assert_eq!(Label::Real.binary(), 0);
        assert_eq!(serde_json::to_string(&Label::Attack).unwrap(), "\"attack\"");
    }

    #[test]
    fn broken_lines_are_reported_with_their_number_and_unknown_fields_ignored() {
        let d = tempfile::tempdir().unwrap();
        let m = d.path().join("manifest.jsonl");
        std::fs::write(
            &m,
            concat!(
                "{\"path\":\"a.png\",\"label\":\"spoof\",\"future_field\":[1,2]}\n",
                "\n",
                "not json\n",
                "{\"path\":\"b.png\",\"label\":\"banana\"}\n",
                "{\"path\":\"c.png\",\"schema\":99}\n",
                "{\"label\":\"real\"}\n",
                "{\"path\":\"d.png\"}\n",
            ),
        )
        .unwrap();
        let (recs, skipped) = read_records(&m).unwrap();
        assert_eq!(recs.len(), 2);
        assert_eq!((recs[0].0.line, recs[0].1.label()), (1, Label::Attack));
        assert_eq!((recs[1].0.line, recs[1].1.label()), (7, Label::Real));
        let lines: Vec<&str> = skipped
            .iter()
            .map(|s| s.path.rsplit(':').next().unwrap())
            .collect();
        assert_eq!(lines, ["3", "4", "5", "6"]);
        assert!(skipped[0].reason.contains("not JSON"), "{skipped:?}");
        assert!(skipped[1].reason.contains("unknown label"), "{skipped:?}");
        assert!(skipped[2].reason.contains("newer"), "{skipped:?}");
    }
}
