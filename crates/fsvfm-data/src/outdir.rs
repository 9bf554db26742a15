//! Output folders shared with nobody: an advisory lock per folder, bounded temporary names, and
//! the temporaries of killed runs removed at the next run.
//!
//! - [`lock_dir`] takes `flock(LOCK_EX | LOCK_NB)` on `.fsvfm.lock` inside the folder; a second
//!   writer is refused with the holder's pid and command. The kernel drops the lock when its
//!   process dies, so the lock of a killed run is simply taken over.
//! - [`temp_path`] names a temporary `.NAME.TAGPID` beside its target, the name's tail hashed when
//!   it would pass the file-name limit (255 bytes).
//! - Taking the lock removes the temporaries ([`is_temp_name`]) left in the folder and its
//!   sub-folders by processes that no longer run.

use std::io::{Read, Seek, Write};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

use crate::input::show;

/// The lock file's name inside a locked folder.
pub const LOCK_FILE: &str = ".fsvfm.lock";

/// An output folder held by this process until the value is dropped.
#[derive(Debug)]
pub struct DirLock {
    _file: std::fs::File,
    dir: PathBuf,
    removed: Vec<PathBuf>,
}

impl DirLock {
    /// The locked folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The stale temporaries removed when the lock was taken.
    pub fn removed(&self) -> &[PathBuf] {
        &self.removed
    }
}

/// Why an output folder could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another live process holds the folder.
    #[error(
        "{}: in use by another run ({holder}); wait for it to finish or write somewhere else",
        show(dir)
    )]
    Busy {
        /// The folder.
        dir: PathBuf,
        /// `pid N (command)` as the holder wrote it.
        holder: String,
    },
    /// The folder or its lock file could not be created.
    #[error("{}: {source}", show(dir))]
    Io {
        /// The folder.
        dir: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

impl From<LockError> for String {
    fn from(e: LockError) -> String {
        e.to_string()
    }
}

/// Creates `dir` if needed and takes its lock for `command` (written into the lock file for the
/// message a second writer gets), then removes the stale temporaries under it (two levels deep).
pub fn lock_dir(dir: &Path, command: &str) -> Result<DirLock, LockError> {
    let io = |source| LockError::Io {
        dir: dir.to_path_buf(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(io)?;
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(dir.join(LOCK_FILE))
        .map_err(io)?;
    // SAFETY: `file` owns a valid descriptor for the duration of the call.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc != 0 {
        let err = std::io::Error::last_os_error();
        if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
            let mut holder = String::new();
            // The holder's line is short; a lock file someone filled is not read whole.
            let _ = (&mut file).take(4096).read_to_string(&mut holder);
            let holder = holder.trim();
            return Err(LockError::Busy {
                dir: dir.to_path_buf(),
                holder: if holder.is_empty() {
                    "a process that has not written its pid yet".into()
                } else {
                    holder.to_string()
                },
            });
        }
        return Err(io(err));
    }
    let me = format!("pid {} ({command})\n", std::process::id());
    file.set_len(0).map_err(io)?;
    file.rewind().map_err(io)?;
    file.write_all(me.as_bytes()).map_err(io)?;
    let mut removed = Vec::new();
    remove_stale(dir, 2, &mut removed);
    Ok(DirLock {
        _file: file,
        dir: dir.to_path_buf(),
        removed,
    })
}

/// The longest file name (bytes) a temporary may have; Linux file systems stop at 255.
const NAME_MAX: usize = 255;

/// A temporary path beside `target`: `.NAME.TAGPID` (`tag` is `tmp` or `old`), with the name cut
/// and its tail replaced by a hash when the whole would pass 255 bytes. [`is_temp_name`]
/// recognises every name this gives.
pub fn temp_path(target: &Path, tag: &str) -> PathBuf {
    let name = target.file_name().map(|n| n.as_bytes()).unwrap_or(b"out");
    let suffix = format!(".{tag}{}", std::process::id());
    let mut out = Vec::with_capacity(NAME_MAX);
    out.push(b'.');
    out.extend(bounded_name(name, NAME_MAX - 1 - suffix.len()));
    out.extend_from_slice(suffix.as_bytes());
    target.with_file_name(std::ffi::OsString::from_vec(out))
}

/// 64-bit FNV-1a of `bytes`: a stable hash (the same on every build and platform) for names.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// `name` when it has at most `max` bytes (`max` ≥ 17), else its first `max − 17` bytes, `~` and
/// 16 hex digits of a hash of the whole name (FNV-1a, stable across builds): exactly `max` bytes,
/// and two long names that differ anywhere stay apart. An ASCII name stays ASCII.
pub fn bounded_name(name: &[u8], max: usize) -> Vec<u8> {
    if name.len() <= max {
        return name.to_vec();
    }
    let hash = fnv1a(name);
    let mut out = name[..max - 17].to_vec();
    out.extend_from_slice(format!("~{hash:016x}").as_bytes());
    out
}

/// `name` as a safe part of a file name: ASCII letters, digits, `-`, `_` and `.` kept, anything
/// else (a `/`, a space, a non-ASCII letter) becomes `_`, and a leading `.` becomes `_`, so the
/// result never names another folder (`..`), a hidden file or one of our temporaries. `None` when
/// nothing is left.
pub fn safe_file_part(name: &str) -> Option<String> {
    let mut out: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    if out.starts_with('.') {
        out.replace_range(0..1, "_");
    }
    (!out.is_empty()).then_some(out)
}

/// The pid in a temporary's name (`.NAME.tmpPID` / `.NAME.oldPID`), or `None` when the name is
/// not one of ours.
pub fn is_temp_name(name: &[u8]) -> Option<u32> {
    if name.first() != Some(&b'.') {
        return None;
    }
    let digits = name.iter().rev().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 || digits > 10 {
        return None;
    }
    let head = &name[..name.len() - digits];
    if !(head.ends_with(b".tmp") || head.ends_with(b".old")) || head.len() < 6 {
        return None;
    }
    std::str::from_utf8(&name[name.len() - digits..])
        .ok()?
        .parse()
        .ok()
}

/// Whether a process with this pid runs (signal 0 reaches it, or exists but is not ours).
pub fn pid_alive(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    if pid <= 0 {
        return false;
    }
    // SAFETY: signal 0 only checks that the process exists.
    let rc = unsafe { libc::kill(pid, 0) };
    rc == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

fn remove_stale(dir: &Path, depth: usize, removed: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        let Ok(ft) = e.file_type() else { continue };
        let name = e.file_name();
        match is_temp_name(name.as_bytes()) {
            Some(pid) if pid != std::process::id() && !pid_alive(pid) => {
                let gone = if ft.is_dir() {
                    std::fs::remove_dir_all(&p)
                } else {
                    std::fs::remove_file(&p)
                };
                if gone.is_ok() {
                    removed.push(p);
                }
            }
            Some(_) => {}
            None if ft.is_dir() && depth > 1 => remove_stale(&p, depth - 1, removed),
            None => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_writer_is_refused_with_the_holder_and_the_lock_is_released_on_drop() {
        let d = tempfile::tempdir().unwrap();
        let out = d.path().join("run");
        let first = lock_dir(&out, "fsvfm pretrain").unwrap();
        // flock locks belong to the open file, so a second open in this process contends too.
        let e = lock_dir(&out, "fsvfm pretrain").unwrap_err();
        let text = e.to_string();
        assert!(
            text.contains(&format!("pid {} (fsvfm pretrain)", std::process::id())),
            "{text}"
        );
        // A lock file filled with junk is read no further than a holder's line could be.
        std::fs::write(out.join(LOCK_FILE), "x".repeat(1 << 20)).unwrap();
        match lock_dir(&out, "fsvfm pretrain").unwrap_err() {
            LockError::Busy { holder, .. } => assert_eq!(holder.len(), 4096),
            e => panic!("{e}"),
        }
        drop(first);
        let again = lock_dir(&out, "fsvfm prepare").unwrap();
        assert_eq!(again.dir(), out);
    }

    #[test]
    fn a_dead_writers_lock_and_temporaries_are_taken_over() {
        let d = tempfile::tempdir().unwrap();
        let out = d.path().join("run");
        std::fs::create_dir_all(out.join("checkpoint-3")).unwrap();
        // A pid that cannot run (above pid_max), the lock file of a killed run.
        std::fs::write(out.join(LOCK_FILE), "pid 4194399 (fsvfm pretrain)\n").unwrap();
        let stale = [
            ".ck.pth.tmp4194399",
            ".checkpoint-min_loss.old4194398",
            "checkpoint-3/.model.safetensors.tmp4194397",
        ];
        for s in stale {
            std::fs::write(out.join(s), b"half").unwrap();
        }
        std::fs::create_dir(out.join(".checkpoint-4.tmp4194396")).unwrap();
        let live = format!(".x.png.tmp{}", std::process::id());
        let keep = [live.as_str(), "ck.pth", ".hidden", "notes.tmp12"];
        for k in keep {
            std::fs::write(out.join(k), b"keep").unwrap();
        }
        let lock = lock_dir(&out, "fsvfm pretrain").unwrap();
        assert_eq!(lock.removed().len(), 4, "{:?}", lock.removed());
        for s in stale {
            assert!(!out.join(s).exists(), "{s}");
        }
        for k in keep {
            assert!(out.join(k).exists(), "{k}");
        }
        let text = std::fs::read_to_string(out.join(LOCK_FILE)).unwrap();
        assert_eq!(
            text,
            format!("pid {} (fsvfm pretrain)\n", std::process::id())
        );
    }

    #[test]
    fn temporary_names_stay_under_the_limit_and_are_recognised() {
        let d = tempfile::tempdir().unwrap();
        let long = "n".repeat(250) + ".png";
        let t = temp_path(&d.path().join(&long), "tmp");
        let name = t.file_name().unwrap().as_bytes();
        assert!(name.len() <= 255, "{}", name.len());
        assert_eq!(is_temp_name(name), Some(std::process::id()));
        std::fs::write(&t, b"x").unwrap();
        // Two long names that differ only in their tails get different temporaries.
        let other = temp_path(&d.path().join("n".repeat(250) + ".jpg"), "tmp");
        assert_ne!(t, other);
        let short = temp_path(&d.path().join("a.png"), "old");
        assert_eq!(
            short.file_name().unwrap().to_str().unwrap(),
            format!(".a.png.old{}", std::process::id())
        );
        assert_eq!(is_temp_name(b".tmp12"), None);
        assert_eq!(
            safe_file_part("a/../../escaped").as_deref(),
            Some("a_.._.._escaped")
        );
        assert_eq!(safe_file_part("../x").as_deref(), Some("_._x"));
        assert_eq!(safe_file_part("FF++ c23").as_deref(), Some("FF___c23"));
        assert_eq!(safe_file_part(""), None);
        assert_eq!(is_temp_name(b"a.tmp12"), None);
        assert_eq!(is_temp_name(b".a.tmpx"), None);
    }
}
