//! Where a pre-training iteration spends its time: forward (online + target + losses), backward,
//! gradient collection, clip + AdamW, EMA. Random weights and images.
//!
//! `cargo run --release -p fsvfm-train --example step_profile -- vit_small_patch16 8`

use std::time::Instant;

use fsvfm_model::{FsfmPretrain, PretrainConfig, TargetNetwork, cpu_device};
use fsvfm_train::{AdamW, AdamWSettings, HostBatch, PretrainTrainer};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let model = args.get(1).map_or("vit_small_patch16", String::as_str);
    let n: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(8);
    let cfg = PretrainConfig::preset(model).expect("preset");
    let device = cpu_device();
    let online = FsfmPretrain::new(&cfg, &device.clone().autodiff());
    let target = TargetNetwork::from_online(&online);
    let mut t = PretrainTrainer::new(
        online,
        target,
        AdamW::new(AdamWSettings::default()),
        &device,
        16,
        true,
    );
    let (s, l) = (cfg.encoder.img_size, cfg.encoder.num_patches());
    let mut mask = vec![1u8; n * l];
    for i in 0..n {
        for k in 0..l / 4 {
            mask[i * l + (k * 4 + i) % l] = 0;
        }
    }
    let batch = HostBatch {
        images: (0..n * 3 * s * s)
            .map(|i| (i % 251) as f32 / 125.0 - 1.0)
            .collect(),
        dims: [n, 3, s, s],
        region: mask.clone(),
        mask,
    };
    {
        use burn::tensor::{Tensor, TensorData};
        let ad = device.clone().autodiff();
        let x = || TensorData::new(batch.images.clone(), batch.dims);
        let m = fsvfm_model::PatchMask::new(n, l, batch.mask.clone()).unwrap();
        for _ in 0..2 {
            let a = Instant::now();
            let z = t.target.forward(Tensor::from_data(x(), &device)).unwrap();
            let _ = z.into_data();
            let b = Instant::now();
            let latent = t
                .online
                .forward_encoder(Tensor::from_data(x(), &ad), &m)
                .unwrap();
            let _ = latent.clone().into_data();
            let c = Instant::now();
            let pred = t.online.forward_decoder(latent.clone(), &m);
            let _ = pred.into_data();
            let d = Instant::now();
            let p = t.online.forward_representation(latent, &m);
            let _ = p.into_data();
            let e = Instant::now();
            println!(
                "target {:?} encoder {:?} pixel decoder {:?} rep branch {:?}",
                b - a,
                c - b,
                d - c,
                e - d
            );
        }
    }
    for it in 0..3 {
        let t0 = Instant::now();
        let losses = t.losses(&batch).unwrap();
        let _ = losses.total.clone().into_data();
        let t1 = Instant::now();
        let grads = losses.total.backward();
        let t2 = Instant::now();
        t.grads.add(&t.online, grads);
        let t3 = Instant::now();
        t.update(1e-4, Some(1.0));
        let _ = t.online.norm.gamma.val().into_data();
        let t4 = Instant::now();
        t.ema(0.996);
        let _ = t.target.norm.gamma.val().into_data();
        let t5 = Instant::now();
        let ms = |a: Instant, b: Instant| (b - a).as_secs_f64() * 1e3;
        println!(
            "iter {it}: forward {:.0} ms, backward {:.0} ms, grads {:.0} ms, clip+adamw {:.0} ms, ema {:.0} ms, total {:.0} ms",
            ms(t0, t1),
            ms(t1, t2),
            ms(t2, t3),
            ms(t3, t4),
            ms(t4, t5),
            ms(t0, t5)
        );
    }
}
