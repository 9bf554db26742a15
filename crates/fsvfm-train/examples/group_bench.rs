//! Time of one gradient all-reduce of a multi-process run (`ProcessGroup::all_reduce_sum`, along
//! the chain of ranks) for the trainable parameters of a pre-training model: this program
//! starts `W` copies of itself as the ranks (processes, as in use), which talk over loopback TCP,
//! so the figure is the protocol's cost without a network.
//!
//! `cargo run --release -p fsvfm-train --example group_bench -- vit_base_patch16 2`
//! (`tools/bench/run_allreduce_bench.py` runs it against PyTorch's gloo all-reduce).

use std::time::{Duration, Instant};

use fsvfm_model::{FsfmPretrain, PretrainConfig, cpu_device};
use fsvfm_train::params::named_params;
use fsvfm_train::process_group::{GroupConfig, ProcessGroup};

const REPS: usize = 5;

/// One rank: `REPS` all-reduces of `n` values; prints the median seconds (rank 0).
fn rank(cfg: &GroupConfig, n: usize) {
    let g = ProcessGroup::connect(cfg, "bench").expect("group");
    let mut x = vec![cfg.rank as f32; n];
    let mut times = Vec::new();
    for _ in 0..REPS {
        let t = Instant::now();
        g.all_reduce_sum(10, &mut x).expect("all-reduce");
        times.push(t.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    if cfg.rank == 0 {
        println!("{}", times[REPS / 2]);
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(cfg) = GroupConfig::from_env().expect("environment") {
        let n = args[1].parse().expect("count");
        return rank(&cfg, n);
    }
    let model = args.get(1).map_or("vit_base_patch16", String::as_str);
    let world: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(2);
    let cfg = PretrainConfig::preset(model).expect("preset");
    let online = FsfmPretrain::new(&cfg, &cpu_device().autodiff());
    let n: usize = named_params(&online).iter().map(|p| p.numel()).sum();
    drop(online);
    let port = std::net::TcpListener::bind(("127.0.0.1", 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port");
    let exe = std::env::current_exe().expect("own path");
    let children: Vec<_> = (0..world)
        .map(|r| {
            std::process::Command::new(&exe)
                .arg(n.to_string())
                .env("RANK", r.to_string())
                .env("WORLD_SIZE", world.to_string())
                .env("MASTER_ADDR", "127.0.0.1")
                .env("MASTER_PORT", port.to_string())
                .env(
                    "FSVFM_DIST_TIMEOUT",
                    Duration::from_secs(600).as_secs().to_string(),
                )
                .stdout(std::process::Stdio::piped())
                .spawn()
                .expect("a rank")
        })
        .collect();
    let mut median = 0.0;
    for c in children {
        let o = c.wait_with_output().expect("rank output");
        assert!(o.status.success(), "a rank failed");
        if let Ok(t) = String::from_utf8_lossy(&o.stdout).trim().parse::<f64>() {
            median = t;
        }
    }
    // Each connection of the chain carries the buffer once each way.
    let bytes = 2.0 * 4.0 * n as f64;
    println!(
        "{{\"model\": \"{model}\", \"parameters\": {n}, \"world\": {world}, \"seconds\": {median:.4}, \
         \"link_gb\": {:.3}}}",
        bytes / 1e9
    );
}
