//! Face anti-spoofing fine-tuning (spec §6.3, `cross_domain_FAS/train_vit.py`): the
//! [`FasClassifier`] trained end to end with torch `Adam` (L2 weight decay, one group, constant
//! lr), CE on token 0's logits, the classifier weight normalised in place before every forward;
//! balanced batches (`per_class` real + `per_class` attack images from every source domain);
//! evaluated on the target domain every `eval_every` iterations, keeping the best HTER
//! (the few_shot_fas protocol selects on the target test set; reported as such).

use std::path::PathBuf;
use std::time::Instant;

use burn::module::Module;
use burn::tensor::{Device, Tensor, TensorData};
use fsvfm_data::augment::Draw;
use fsvfm_data::{EvalSample, MeanStd};
use fsvfm_model::FasClassifier;
use fsvfm_model::checkpoint::save_safetensors;
use fsvfm_model::fas::normalize_class_axis;
use fsvfm_model::loss::smoothed_cross_entropy;
use serde::{Deserialize, Serialize};

use crate::TrainError;
use crate::adapt::{FAKE_CLASS, official_class};
use crate::batches::Augmentation;
use crate::optim::{AdamW, GradBuffer};
use crate::params::{map_params, update_in_place};

/// The classifier weight's parameter path.
const CLASSIFIER_WEIGHT: &str = "classifier.classifier_layer.weight";

/// Trains a [`FasClassifier`].
#[derive(Debug)]
pub struct FasTrainer {
    /// The model, on the autodiff device.
    pub model: FasClassifier,
    /// torch `Adam` state (coupled L2).
    pub optim: AdamW,
    device: Device,
}

impl FasTrainer {
    /// Puts `model` on the autodiff version of `device`.
    pub fn new(model: FasClassifier, optim: AdamW, device: &Device) -> Self {
        Self {
            model: model.to_device(&device.clone().autodiff()).valid().train(),
            optim,
            device: device.clone(),
        }
    }

    /// `weight.data = l2_norm(weight, axis=0)`: the in-place normalisation of the official
    /// forward (a value change, not part of the graph).
    fn renormalize(&mut self) {
        update_in_place(&mut self.model, |model| {
            map_params(model, |name, v| {
                if name != CLASSIFIER_WEIGHT {
                    return v;
                }
                let n = v.dims()[0];
                normalize_class_axis(v.reshape([n / 2, 2])).reshape([n])
            })
        });
    }

    /// One Adam step at `lr` on normalised images `dims` with official classes (1 = real);
    /// returns the CE before the step. Non-finite losses or gradients skip the update.
    pub fn step(&mut self, images: &[f32], dims: [usize; 4], classes: &[usize], lr: f64) -> f64 {
        self.renormalize();
        let x = Tensor::<4>::from_data(
            TensorData::new(images.to_vec(), dims),
            &self.device.clone().autodiff(),
        );
        let logits = self.model.classify(self.model.embed(x), true);
        let loss = smoothed_cross_entropy(logits, classes, 0.0);
        let value = loss.clone().inner().into_scalar::<f32>() as f64;
        if value.is_finite() {
            let mut grads = GradBuffer::new();
            grads.add(&self.model, loss.backward());
            if grads.global_norm().is_finite() {
                let optim = &mut self.optim;
                // torch Adam: one group, every parameter L2-decayed.
                update_in_place(&mut self.model, |model| {
                    optim.update_with(model, &grads, lr, |_, _| (1.0, true))
                });
            }
        }
        value
    }

    /// P(attack) of normalised images, without gradients or dropout.
    pub fn p_fake(&self, images: &[f32], dims: [usize; 4]) -> Vec<f64> {
        let model = self.model.valid();
        let x = Tensor::<4>::from_data(TensorData::new(images.to_vec(), dims), &self.device);
        let p: Vec<f32> = burn::tensor::activation::softmax(model.forward(x), 1)
            .into_data()
            .convert::<f32>()
            .try_into_vec::<f32>()
            .unwrap_or_default();
        p.chunks(2).map(|r| r[FAKE_CLASS] as f64).collect()
    }
}

/// Options of [`train_fas`].
#[derive(Debug, Clone)]
pub struct FasOptions {
    /// Training images per source domain.
    pub sources: Vec<(String, Vec<EvalSample>)>,
    /// The target domain's test images.
    pub target: Vec<EvalSample>,
    /// Output folder (`checkpoint-best_hter.safetensors`, `log.jsonl`).
    pub output: PathBuf,
    /// Input side.
    pub img_size: usize,
    /// The encoder's architecture (written to the sidecar `fsvfm.json`).
    pub model: fsvfm_model::VitConfig,
    /// Normalisation.
    pub mean_std: MeanStd,
    /// Iterations (official: 4000).
    pub iterations: usize,
    /// Evaluate every this many iterations (official: 100).
    pub eval_every: usize,
    /// Real and attack images per source per batch (official: 12 + 12).
    pub per_class: usize,
    /// Adam learning rate (constant).
    pub lr: f64,
    /// Training transform (official: [`Augmentation::fas`]).
    pub augment: Augmentation,
    /// Seed of the batches and augmentation.
    pub seed: u64,
    /// Device.
    pub device: Device,
}

/// One evaluation of a FAS run, as logged.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FasEval {
    /// Iterations done.
    pub iteration: usize,
    /// Mean training CE since the last evaluation.
    pub train_loss: f64,
    /// Target metrics (video level when the target has videos).
    pub hter: f64,
    /// AUC.
    pub auc: f64,
    /// TPR at FPR 1 %.
    pub tpr_at_fpr_1pct: f64,
    /// Seconds since the start.
    pub seconds: f64,
}

/// The result of [`train_fas`]: the evaluation with the lowest HTER and all of them.
#[derive(Debug, Clone)]
pub struct FasSummary {
    /// The best-HTER evaluation.
    pub best: FasEval,
    /// Every evaluation.
    pub evals: Vec<FasEval>,
}

/// Target-domain metrics of P(attack) scores (video level when every sample has a video id: the
/// mean of its frames, as the official evaluation).
pub fn fas_metrics(
    samples: &[EvalSample],
    scores: &[f64],
) -> Result<fsvfm_eval::Metrics, TrainError> {
    let labels: Vec<u8> = samples.iter().map(|s| s.label).collect();
    let mut set = fsvfm_eval::ScoreSet::new(labels, scores.to_vec())
        .map_err(|e| TrainError::Data(e.to_string()))?;
    if samples.iter().all(|s| s.video.is_some()) {
        let ids: Vec<&str> = samples
            .iter()
            .map(|s| s.video.as_deref().unwrap_or_default())
            .collect();
        set = set
            .with_videos(&ids)
            .map_err(|e| TrainError::Data(e.to_string()))?;
        if let Some(v) = set.video_level() {
            let vs = fsvfm_eval::ScoreSet::new(v.labels, v.scores)
                .map_err(|e| TrainError::Data(e.to_string()))?;
            return fsvfm_eval::evaluate(&vs).map_err(|e| TrainError::Data(e.to_string()));
        }
    }
    fsvfm_eval::evaluate(&set).map_err(|e| TrainError::Data(e.to_string()))
}

/// One official per-(source, class) loader: position `pos` is image `pos mod n` of the shuffle
/// of pass `pos / n`, so it cycles through its images; the pass's shuffle is drawn once.
struct Cycle {
    pool: Vec<usize>,
    key: u64,
    pass: Option<usize>,
    order: Vec<usize>,
}

impl Cycle {
    fn new(pool: Vec<usize>, seed: u64, source: usize) -> Self {
        let key = seed ^ ((source as u64) << 32) ^ ((pool[0] as u64) << 8);
        Self {
            pool,
            key,
            pass: None,
            order: Vec::new(),
        }
    }

    fn at(&mut self, pos: usize) -> usize {
        let n = self.pool.len();
        let pass = pos / n;
        if self.pass != Some(pass) {
            self.order = crate::data::permutation(n, self.key, pass as u64, u64::MAX);
            self.pass = Some(pass);
        }
        self.pool[self.order[pos % n]]
    }
}

/// Trains `model` on the sources and keeps the checkpoint with the best target HTER.
pub fn train_fas(
    model: FasClassifier,
    optim: AdamW,
    opts: &FasOptions,
    mut on_eval: impl FnMut(&FasEval),
) -> Result<FasSummary, TrainError> {
    use rayon::prelude::*;
    let _lock = fsvfm_data::outdir::lock_dir(&opts.output, "fsvfm fas")
        .map_err(|e| TrainError::Config(e.to_string()))?;
    let log_path = opts.output.join("log.jsonl");
    let mut log = std::fs::File::create(&log_path).map_err(crate::io_error(&log_path))?;
    let best_name = "checkpoint-best_hter.safetensors";
    let best_path = opts.output.join(best_name);
    let mut sidecar = crate::sidecar::Sidecar::classifier(
        crate::sidecar::ModelKind::Fas,
        best_name,
        &opts.model,
        opts.mean_std,
        crate::sidecar::ProducedBy {
            command: "fas".into(),
            settings: serde_json::json!({
                "iterations": opts.iterations,
                "eval_every": opts.eval_every,
                "per_class": opts.per_class,
                "lr": opts.lr,
                "seed": opts.seed,
                "sources": opts.sources.iter().map(|(n, s)| (n.clone(), s.len())).collect::<Vec<_>>(),
                "target_images": opts.target.len(),
            }),
        },
    );
    sidecar.model.num_classes = 0;
    sidecar.fas_norm = Some(if model.token_axis_norm {
        fsvfm_model::FasNorm::TokenAxis
    } else {
        fsvfm_model::FasNorm::PerSample
    });
    sidecar.write(&opts.output)?;
    // Per source, its real and attack images (the official per-class loaders).
    let mut pools: Vec<[Cycle; 2]> = opts
        .sources
        .iter()
        .enumerate()
        .map(|(d, (name, set))| {
            let real: Vec<usize> = (0..set.len()).filter(|&i| set[i].label == 0).collect();
            let fake: Vec<usize> = (0..set.len()).filter(|&i| set[i].label == 1).collect();
            if real.is_empty() || fake.is_empty() {
                return Err(TrainError::Data(format!(
                    "source {name} needs real and attack images"
                )));
            }
            Ok([
                Cycle::new(real, opts.seed, d),
                Cycle::new(fake, opts.seed, d),
            ])
        })
        .collect::<Result<_, _>>()?;
    let s = opts.img_size;
    let target_px: Vec<Vec<f32>> = opts
        .target
        .par_iter()
        .map(|t| fsvfm_data::load_normalized(&t.image, s, &opts.mean_std).map_err(TrainError::Data))
        .collect::<Result<_, _>>()?;
    let target_px = target_px.concat();
    opts.device.seed(opts.seed);
    let mut trainer = FasTrainer::new(model, optim, &opts.device);
    let (t0, mut sum, mut count) = (Instant::now(), 0.0, 0usize);
    let (mut evals, mut best): (Vec<FasEval>, Option<FasEval>) = (Vec::new(), None);
    for it in 0..opts.iterations {
        // Sample k of class c of source d at iteration `it` is the (it·per_class + k)-th of a
        // per-(source, class, pass) shuffle: every loader cycles through its images.
        let mut picks: Vec<(usize, usize)> = Vec::new();
        for (d, pool) in pools.iter_mut().enumerate() {
            for class_pool in pool {
                for k in 0..opts.per_class {
                    picks.push((d, class_pool.at(it * opts.per_class + k)));
                }
            }
        }
        let px: Vec<Vec<f32>> = picks
            .par_iter()
            .enumerate()
            .map(|(k, &(d, i))| {
                let sample = &opts.sources[d].1[i];
                let img =
                    fsvfm_data::image_io::decode_rgb(&sample.image).map_err(TrainError::Data)?;
                let mut rng =
                    fsvfm_masking::rng_for_sample(opts.seed ^ 0xfa5, 0, it as u64, k as u64);
                Ok(opts.augment.image.apply(
                    &img,
                    s as u32,
                    &opts.mean_std,
                    &mut Draw::new(&mut rng),
                ))
            })
            .collect::<Result<_, TrainError>>()?;
        let classes: Vec<usize> = picks
            .iter()
            .map(|&(d, i)| official_class(opts.sources[d].1[i].label))
            .collect();
        let loss = trainer.step(&px.concat(), [picks.len(), 3, s, s], &classes, opts.lr);
        if loss.is_finite() {
            sum += loss;
            count += 1;
        }
        if (it + 1) % opts.eval_every.max(1) == 0 || it + 1 == opts.iterations {
            let n = opts.target.len();
            let mut scores = Vec::with_capacity(n);
            for start in (0..n).step_by(32) {
                let end = (start + 32).min(n);
                scores.extend(trainer.p_fake(
                    &target_px[start * 3 * s * s..end * 3 * s * s],
                    [end - start, 3, s, s],
                ));
            }
            let m = fas_metrics(&opts.target, &scores)?;
            let e = FasEval {
                iteration: it + 1,
                train_loss: sum / count.max(1) as f64,
                hter: m.hter,
                auc: m.auc,
                tpr_at_fpr_1pct: m.tpr_at_fpr_1pct,
                seconds: t0.elapsed().as_secs_f64(),
            };
            (sum, count) = (0.0, 0);
            if best.as_ref().is_none_or(|b| e.hter <= b.hter) {
                save_safetensors(&trainer.model, &best_path)?;
                best = Some(e.clone());
            }
            crate::transfer::log_line(&mut log, &opts.output, &e)?;
            on_eval(&e);
            evals.push(e);
        }
    }
    let best = best.ok_or_else(|| TrainError::Data("no evaluation ran (iterations = 0)".into()))?;
    Ok(FasSummary { best, evals })
}
