//! Hostile and careless input through the binary (issue 23): each test is one defect found by
//! trying ~150 bad inputs, and fails on the code before its fix.

mod common;

use common::{SMALL, fixture, fsvfm, micro_setup, stderr};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};

fn p(q: &Path) -> String {
    q.to_str().unwrap().to_string()
}

fn face(seed: u8) -> fsvfm::image::RgbImage {
    fsvfm::image::RgbImage::from_fn(32, 32, |x, y| {
        fsvfm::image::Rgb([x as u8 * 7 + seed, y as u8 * 5, seed.wrapping_mul(3)])
    })
}

/// `predict --crops DIR` with the 32-px fixture classifier; the JSON lines it printed.
fn predict_crops(dir: &Path, model: &str) -> (Output, Vec<serde_json::Value>) {
    let ck = fixture("classifier_avg.safetensors");
    let o = fsvfm(&[
        "predict",
        "--crops",
        &p(dir),
        "--checkpoint",
        &p(&ck),
        "--model",
        model,
        "--mean-std",
        "vggface2",
    ]);
    let lines = String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    (o, lines)
}

#[test]
fn link_cycles_fifos_devices_and_cut_jpegs_in_a_folder_are_each_handled_once() {
    let d = tempfile::tempdir().unwrap();
    let model = d.path().join("model.json");
    std::fs::write(&model, SMALL).unwrap();
    let dir = d.path().join("in");
    std::fs::create_dir(&dir).unwrap();
    face(1).save(dir.join("face.png")).unwrap();
    let mut jpg = Vec::new();
    face(2)
        .write_to(
            &mut std::io::Cursor::new(&mut jpg),
            fsvfm::image::ImageFormat::Jpeg,
        )
        .unwrap();
    std::fs::write(dir.join("cut.jpg"), &jpg[..jpg.len() / 2]).unwrap();
    // Before the fix: the two `-> .` links made the walk loop until its paths grew too long.
    std::os::unix::fs::symlink(".", dir.join("a")).unwrap();
    std::os::unix::fs::symlink(".", dir.join("b")).unwrap();
    std::os::unix::fs::symlink("/dev/zero", dir.join("zero.jpg")).unwrap();
    let fifo = std::ffi::CString::new(p(&dir.join("pipe.jpg"))).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
    // A file name that is not UTF-8 (byte 0xff) is reported with the byte escaped, not as U+FFFD
    // (which would name another file).
    use std::os::unix::ffi::OsStrExt;
    face(3)
        .save_with_format(
            dir.join(std::ffi::OsStr::from_bytes(b"caf\xff.png")),
            fsvfm::image::ImageFormat::Png,
        )
        .unwrap();
    let (o, lines) = predict_crops(&dir, &p(&model));
    let by_file = |name: &str| -> Vec<&serde_json::Value> {
        lines
            .iter()
            .filter(|l| l["file"].as_str().unwrap_or("").ends_with(name))
            .collect()
    };
    assert_eq!(by_file("face.png").len(), 1, "{lines:?}\n{}", stderr(&o));
    assert!(by_file("face.png")[0]["p_fake"].is_f64());
    for (name, why) in [
        ("cut.jpg", "truncated JPEG"),
        ("zero.jpg", "character device"),
        ("pipe.jpg", "a FIFO"),
    ] {
        let l = by_file(name);
        assert_eq!(l.len(), 1, "{name}: {lines:?}");
        let e = l[0]["error"].as_str().unwrap_or("");
        assert!(e.contains(why), "{name}: {e}");
        assert!(l[0]["p_fake"].is_null(), "{name} was scored");
    }
    assert_eq!(by_file("caf\\xff.png").len(), 1, "{lines:?}");
    assert!(!String::from_utf8_lossy(&o.stdout).contains('\u{fffd}'));
    assert_eq!(lines.len(), 5, "{lines:?}");
}

#[test]
fn a_second_writer_of_an_output_folder_is_refused_with_the_holder() {
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("out");
    let held = fsvfm_data::outdir::lock_dir(&out, "test holder").unwrap();
    let model = d.path().join("model.json");
    std::fs::write(&model, SMALL).unwrap();
    let set = d.path().join("set");
    std::fs::create_dir_all(set.join("real")).unwrap();
    face(1).save(set.join("real/a.png")).unwrap();
    let o = fsvfm(&[
        "eval",
        "--checkpoint",
        &p(&fixture("classifier_avg.safetensors")),
        "--model",
        &p(&model),
        "--mean-std",
        "vggface2",
        "--data",
        &format!("s={}", p(&set)),
        "--output",
        &p(&out),
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let e = stderr(&o);
    assert!(
        e.contains("in use by another run") && e.contains(&format!("pid {}", std::process::id())),
        "{e}"
    );
    assert!(!out.join("metrics.json").exists());
    drop(held);
}

#[test]
fn eval_set_names_are_checked_before_anything_is_scored() {
    let d = tempfile::tempdir().unwrap();
    let set = d.path().join("set");
    std::fs::create_dir_all(&set).unwrap();
    let ck = p(&fixture("classifier_avg.safetensors"));
    let run = |data: &[&str]| {
        let mut args = vec!["eval", "--checkpoint", &ck, "--mean-std", "vggface2"];
        for x in data {
            args.extend(["--data", x]);
        }
        let out = p(&d.path().join("out"));
        args.extend(["--output", &out]);
        fsvfm(&args)
    };
    let a = format!("a={}", p(&set));
    let o = run(&[&a, &a]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("the name `a` is taken"),
        "{}",
        stderr(&o)
    );
    let o = run(&["../../x="]);
    assert!(stderr(&o).contains("does not exist"), "{}", stderr(&o));
    assert!(!d.path().join("out").exists());
}

#[test]
fn absurd_numbers_are_refused_with_their_range() {
    for (args, range) in [
        (vec!["--threads", "100000", "inspect", "x"], "1..=1024"),
        (
            vec![
                "predict",
                "x",
                "--checkpoint",
                "c",
                "--frames",
                "10000000000",
            ],
            "1..=100000",
        ),
        (
            vec![
                "eval-scores",
                "--scores",
                "s.csv",
                "--bootstrap",
                "1000000000",
            ],
            "1..=1000000",
        ),
        (
            vec!["pretrain", "--data", "d", "--output", "o", "--lr", "nan"],
            "finite number in (0, 10]",
        ),
        (
            vec!["prepare", "--input", "x", "--output", "o", "--every", "0"],
            "1..=1000000",
        ),
    ] {
        let o = fsvfm(&args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        assert!(stderr(&o).contains(range), "{args:?}: {}", stderr(&o));
    }
}

#[test]
fn a_closed_pipe_ends_the_output_quietly() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_fsvfm"))
        .args([
            "inspect",
            &p(&fixture("classifier_avg.safetensors")),
            "--tensors",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The reader goes away before the first line, as `| head -0` would.
    drop(child.stdout.take());
    let o = child.wait_with_output().unwrap();
    let e = stderr(&o);
    assert!(!e.contains("panicked"), "{e}");
    assert_ne!(o.status.code(), Some(101), "{e}");
    assert!(
        o.status.success() || o.status.signal() == Some(libc::SIGPIPE),
        "{:?} {e}",
        o.status
    );
}

/// Finite inputs that overflow float32 arithmetic (3e38 everywhere) give no NaN output file:
/// an error names the input's magnitude, and nothing is written.
#[test]
fn overflowing_finite_inputs_are_refused_instead_of_written_as_nan() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("model.json");
    std::fs::write(&cfg, SMALL).unwrap();
    let x = dir.path().join("x.npy");
    fsvfm_data::npy::write_f32(&x, &[1, 3, 32, 32], &vec![3e38f32; 3 * 32 * 32]).unwrap();
    let y = dir.path().join("y.npy");
    let o = fsvfm(&[
        "forward",
        "--checkpoint",
        &p(&fixture("classifier_avg.pth")),
        "--model",
        &p(&cfg),
        "--input",
        &p(&x),
        "--output",
        &p(&y),
        "--what",
        "logits",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("values up to 3e38"), "{}", stderr(&o));
    assert!(!y.exists());
}

/// A region map with a label outside LaPa's 0..=10 is skipped before training, with its reason
/// in `skipped.jsonl`, instead of ending the run mid-epoch (issue 23, defect 6).
#[test]
fn pretrain_skips_a_bad_region_map_up_front() {
    let dir = tempfile::tempdir().unwrap();
    let (faces, recipe) = micro_setup(
        dir.path(),
        9,
        "base = \"tiny\"\nbatch_size = 4\nepochs = 1\n",
    );
    let mut maps: Vec<_> = std::fs::read_dir(faces.join("parsing_maps"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    maps.sort();
    let bad = &maps[0];
    let (w, h) = fsvfm::image::image_dimensions(bad).unwrap();
    fsvfm::image::GrayImage::from_pixel(w, h, fsvfm::image::Luma([200]))
        .save(bad)
        .unwrap();
    let run = dir.path().join("run");
    let o = fsvfm(&[
        "pretrain",
        "--config",
        &p(&recipe),
        "--data",
        &p(&faces),
        "--output",
        &p(&run),
        "--quiet",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let skipped = std::fs::read_to_string(run.join("skipped.jsonl")).unwrap();
    let name = bad.file_stem().unwrap().to_string_lossy().into_owned();
    assert!(
        skipped.lines().count() == 1 && skipped.contains(&name) && skipped.contains("200"),
        "{skipped}"
    );
    // Eight faces trained on: the skipped one is not in samples.jsonl.
    let samples = std::fs::read_to_string(run.join("samples.jsonl")).unwrap();
    assert_eq!(samples.lines().count(), 8, "{samples}");
    assert!(!samples.contains(&format!("{name}.")), "{samples}");
}
