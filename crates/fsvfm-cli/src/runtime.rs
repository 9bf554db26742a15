//! Process-level settings applied at start-up, so users need not export environment variables.

use anyhow::{Context, Result};

/// Stops glibc from `mmap`-ing (and page-faulting in, then unmapping) every large tensor buffer:
/// raises the mmap threshold and trim threshold, pads heap growth, and uses one arena. Measured in
/// `../shared/spec/cpu-perf.md` §4: ~85k page faults per ViT-S forward → 28x fewer, +47 % throughput
/// at 2 threads. Same effect as the `MALLOC_*` tunables, which still win if the user sets them.
pub fn configure_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let user_set = |k: &str| std::env::var_os(k).is_some();
        // SAFETY: mallopt only changes allocator parameters; called before any other thread exists.
        unsafe {
            if !user_set("MALLOC_MMAP_THRESHOLD_") {
                // The largest value glibc accepts (HEAP_MAX / 2 on 64-bit is 32 MiB).
                libc::mallopt(libc::M_MMAP_THRESHOLD, 32 * 1024 * 1024);
            }
            if !user_set("MALLOC_TRIM_THRESHOLD_") {
                libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
            }
            if !user_set("MALLOC_TOP_PAD_") {
                libc::mallopt(libc::M_TOP_PAD, 256 * 1024 * 1024);
            }
            if !user_set("MALLOC_ARENA_MAX") {
                libc::mallopt(libc::M_ARENA_MAX, 1);
            }
        }
    }
}

/// Sizes rayon's global pool (used by burn's flex backend and its GEMMs) when `--threads` is given.
pub fn configure_threads(threads: Option<usize>) -> Result<()> {
    if let Some(n) = threads {
        anyhow::ensure!(n > 0, "--threads must be at least 1");
        rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build_global()
            .context("configuring the thread pool")?;
    }
    Ok(())
}

/// Peak resident set size of this process in bytes (`VmHWM`), where the OS reports it.
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

static DEVICES: std::sync::OnceLock<Vec<burn::tensor::Device>> = std::sync::OnceLock::new();

/// Selects the compute device(s) for this run (`--device`): one name, or a comma-separated list
/// (one data-parallel worker each) where `several_ok` (pre-training).
pub fn configure_device(names: &str, several_ok: bool) -> Result<()> {
    let devices = fsvfm_model::devices_by_names(names)?;
    anyhow::ensure!(
        devices.len() == 1 || several_ok,
        "--device {names}: several devices (data parallelism) are for `fsvfm pretrain`; this command runs on one"
    );
    DEVICES
        .set(devices)
        .map_err(|_| anyhow::anyhow!("the device is already set"))
}

/// `--device` with `cuda:local` replaced by `cuda:$LOCAL_RANK` (a launcher such as
/// `torchrun --no-python` starts one process per GPU and tells each its GPU in `LOCAL_RANK`;
/// it runs no shell that could expand the variable in the arguments).
pub fn resolve_local_rank(names: &str, get: impl Fn(&str) -> Option<String>) -> Result<String> {
    if !names.split(',').any(|n| n.trim() == "cuda:local") {
        return Ok(names.to_string());
    }
    let local = get("LOCAL_RANK").ok_or_else(|| {
        anyhow::anyhow!("--device {names}: cuda:local needs LOCAL_RANK (set by torchrun)")
    })?;
    let index: usize = local
        .trim()
        .parse()
        .map_err(|_| anyhow::anyhow!("LOCAL_RANK={local:?} is not a GPU index"))?;
    Ok(names
        .split(',')
        .map(|n| match n.trim() {
            "cuda:local" => format!("cuda:{index}"),
            other => other.to_string(),
        })
        .collect::<Vec<_>>()
        .join(","))
}

/// The device chosen with `--device` (the first of a list; the CPU by default).
pub fn device() -> burn::tensor::Device {
    devices().swap_remove(0)
}

/// Every device of `--device` (data-parallel workers; `[cpu]` by default).
pub fn devices() -> Vec<burn::tensor::Device> {
    DEVICES
        .get()
        .filter(|d| !d.is_empty())
        .cloned()
        .unwrap_or_else(|| vec![fsvfm_model::cpu_device()])
}

/// Selects the precision of the CPU inference kernels (`--precision fp32|bf16`); bf16 on a CPU
/// without AVX-512 BF16 warns and stays fp32.
pub fn configure_precision(name: &str) -> Result<()> {
    use fsvfm_model::cpu_kernels::{Precision, set_precision};
    let want = match name {
        "fp32" => Precision::Fp32,
        "bf16" => Precision::Bf16,
        other => anyhow::bail!("--precision must be fp32 or bf16, not {other:?}"),
    };
    if set_precision(want) != want {
        eprintln!(
            "warning: this CPU has neither AMX nor AVX-512 BF16: --precision bf16 runs in fp32"
        );
    } else if want == Precision::Bf16 {
        eprintln!("bf16 on {}", fsvfm_model::cpu_kernels::gemm_name());
    }
    Ok(())
}

/// Restores the default action of `SIGPIPE` (end the process, silently), which Rust's runtime
/// turns off: `fsvfm inspect … | head -1` then stops where the reader stopped instead of
/// panicking in `println!` (exit 101). Not for `serve`, which must outlive a client that hangs
/// up.
pub fn quiet_broken_pipe() {
    // SAFETY: setting a signal's disposition to SIG_DFL at start-up, before any thread runs.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

#[cfg(test)]
mod tests {
    use super::resolve_local_rank;

    #[test]
    fn cuda_local_is_the_launchers_local_rank() {
        let env = |k: &str| (k == "LOCAL_RANK").then(|| "3".to_string());
        assert_eq!(resolve_local_rank("cuda:local", env).unwrap(), "cuda:3");
        assert_eq!(resolve_local_rank("cpu,cuda:1", env).unwrap(), "cpu,cuda:1");
        let e = resolve_local_rank("cuda:local", |_| None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("LOCAL_RANK"), "{e}");
        let bad = |_: &str| Some("x".to_string());
        assert!(resolve_local_rank("cuda:local", bad).is_err());
    }
}
