//! Time of one gradient all-reduce of a multi-process run (`ProcessGroup::all_reduce_sum`, the
//! star through rank 0), for the trainable parameters of a pre-training model. The ranks are
//! threads of this process talking over loopback TCP, so the figure is the protocol's cost
//! without a network; over a real link, add `2 · (W − 1) · 4 · N` bytes at rank 0's bandwidth.
//!
//! `cargo run --release -p fsvfm-train --example group_bench -- vit_base_patch16 2`

use std::time::{Duration, Instant};

use fsvfm_model::{FsfmPretrain, PretrainConfig, cpu_device};
use fsvfm_train::params::named_params;
use fsvfm_train::process_group::{GroupConfig, ProcessGroup};

fn main() {
    let args: Vec<String> = std::env::args().collect();
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
    let reps = 5;
    let ranks: Vec<_> = (0..world)
        .map(|rank| {
            std::thread::spawn(move || {
                let cfg = GroupConfig {
                    rank,
                    world,
                    master_addr: "127.0.0.1".into(),
                    master_port: port,
                    timeout: Duration::from_secs(600),
                };
                let g = ProcessGroup::connect(&cfg, "bench").expect("group");
                let mut x = vec![rank as f32; n];
                let mut times = Vec::new();
                for _ in 0..reps {
                    let t = Instant::now();
                    g.all_reduce_sum(10, &mut x).expect("all-reduce");
                    times.push(t.elapsed().as_secs_f64());
                }
                times.sort_by(f64::total_cmp);
                times[reps / 2]
            })
        })
        .collect();
    let median = ranks
        .into_iter()
        .map(|h| h.join().expect("rank"))
        .fold(0.0, f64::max);
    let bytes = 2.0 * (world - 1) as f64 * 4.0 * n as f64;
    println!(
        "{model}: {n} parameters, {world} ranks: all-reduce {median:.3} s (median of {reps}), \
         rank 0 moves {:.2} GB ({:.2} GB/s)",
        bytes / 1e9,
        bytes / 1e9 / median
    );
}
