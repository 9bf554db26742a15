//! [`Detector`]: P(fake) for the faces of images and videos, from one checkpoint.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use burn::tensor::activation::softmax;
use burn::tensor::{Device, Tensor, TensorData};
use fsvfm_data::MeanStd;
use fsvfm_faces::assets::Assets;
use fsvfm_faces::pipeline::{FacePipeline, PipelineOptions};
use fsvfm_faces::video::{FrameSelection, frame_count, frame_indices, is_video_file, read_frames};
use fsvfm_model::VitConfig;
use fsvfm_train::sidecar::{Calibration, ModelKind, Verdict};
use image::RgbImage;

use crate::checkpoint::{Described, Network, describe, open_model};
use crate::{Error, Result};

/// How a [`Detector`] is loaded and how it finds faces. `Default` suits our own checkpoints
/// (the sidecar says the rest); official `.pth` files need `model` and `mean_std`.
#[derive(Debug, Clone)]
pub struct DetectorOptions {
    /// The encoder's architecture (overrides the sidecar's); see [`crate::model_config`].
    pub model: Option<VitConfig>,
    /// Input normalisation (overrides the sidecar's); see [`crate::mean_std_named`].
    pub mean_std: Option<MeanStd>,
    /// Index of the fake class in the head (overrides the sidecar's; official FSFM heads: 0).
    pub fake_index: Option<usize>,
    /// Score every face of an image or frame (default: the largest only, as FSFM keeps one).
    pub all_faces: bool,
    /// The inputs are face crops already: no detection, each image resized to the model's input
    /// (as `fsvfm eval` reads its test sets). Images only.
    pub crops: bool,
    /// Frames taken from a video, uniformly (`np.linspace(0, n − 1, frames)`).
    pub frames: usize,
    /// Faces per forward pass.
    pub batch_size: usize,
    /// Folder of the converted face models (default: `$FSVFM_HOME/models`).
    pub face_models: Option<PathBuf>,
    /// Compute device (default: the CPU).
    pub device: Option<Device>,
}

impl Default for DetectorOptions {
    fn default() -> Self {
        DetectorOptions {
            model: None,
            mean_std: None,
            fake_index: None,
            all_faces: false,
            crops: false,
            frames: 32,
            batch_size: 16,
            face_models: None,
            device: None,
        }
    }
}

/// One scored face.
#[derive(Debug, Clone)]
pub struct Face {
    /// The video frame it was found in (`None` for images).
    pub frame: Option<usize>,
    /// Which face of its image or frame, 0 = the largest.
    pub face_index: usize,
    /// Detector box `[x0, y0, x1, y1]` in source pixels (`None` when the input was a crop).
    pub bbox: Option<[f32; 4]>,
    /// P(fake) from the head's softmax.
    pub p_fake: f32,
    /// The face crop the model saw, `input_size × input_size`.
    pub crop: RgbImage,
}

/// The face crops of one image or video frame, before scoring.
#[derive(Debug, Clone)]
pub struct FrameCrops {
    /// The frame index (`None` for images).
    pub frame: Option<usize>,
    /// Its faces, largest first: detector box (`None` for crops) and the crop.
    pub crops: Vec<(Option<[f32; 4]>, RgbImage)>,
}

/// A labelled set read for scoring ([`Detector::load_eval_set`]).
#[derive(Debug, Clone)]
pub struct EvalInputs {
    /// The samples that could be read, in the set's order.
    pub samples: Vec<fsvfm_data::EvalSample>,
    /// The samples left out, with why.
    pub skipped: Vec<fsvfm_data::Skipped>,
    /// Their normalised pixels, `[samples, 3, S, S]` row-major.
    pub pixels: Vec<f32>,
}

/// A face-forgery (or spoofing) detector: a classifier checkpoint with its normalisation and
/// the face pipeline of `fsvfm prepare` (BlazeFace, the FSFM 1.3× box, bicubic to the input).
///
/// Scores equal `fsvfm predict`'s for the same files: the command is built on this type.
pub struct Detector {
    network: Network,
    described: Described,
    mean_std: MeanStd,
    classes: usize,
    fake_index: usize,
    options: DetectorOptions,
    device: Device,
    loaded: String,
    pipeline: OnceLock<FacePipeline>,
}

impl std::fmt::Debug for Detector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Detector")
            .field("loaded", &self.loaded)
            .field("described", &self.described)
            .field("fake_index", &self.fake_index)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl Detector {
    /// Loads a detector we trained (fine-tuned, FS-Adapter or FAS) from its weight file; the
    /// `fsvfm.json` beside it (or the previous release's files) says the rest.
    pub fn load(path: impl AsRef<Path>) -> Result<Detector> {
        Self::load_with(path, &DetectorOptions::default())
    }

    /// Loads with `options`: needed for official `.pth` files (architecture, mean/std, fake
    /// index), and to change how faces are found.
    pub fn load_with(path: impl AsRef<Path>, options: &DetectorOptions) -> Result<Detector> {
        let path = path.as_ref();
        if options.batch_size == 0 || options.frames == 0 {
            return Err(Error::Invalid(
                "batch size and frames per video must be at least 1".into(),
            ));
        }
        let wf = open_model(path)?;
        let described = describe(&wf, options.model.as_ref(), options.mean_std)?;
        let device = options
            .device
            .clone()
            .unwrap_or_else(fsvfm_model::cpu_device);
        let (network, loaded) =
            Network::load(&wf, described.model.clone(), described.fas_norm, &device)?;
        let classes = network.classes();
        let fake_index = options
            .fake_index
            .or(described.fake_index())
            .unwrap_or(fsvfm_train::adapt::FAKE_CLASS);
        if classes < 2 || fake_index >= classes {
            return Err(Error::Checkpoint {
                path: path.to_path_buf(),
                reason: format!(
                    "{classes} output classes: scoring needs a classifier head with class {fake_index} = fake (a pre-training checkpoint must be fine-tuned first)"
                ),
            });
        }
        // After the head check: a pre-training checkpoint is refused for what it is.
        let mean_std = described.require_mean_std(path)?;
        Ok(Detector {
            network,
            described,
            mean_std,
            classes,
            fake_index,
            options: options.clone(),
            device,
            loaded,
            pipeline: OnceLock::new(),
        })
    }

    /// What was loaded and where its metadata came from, for a log line.
    pub fn description(&self) -> String {
        format!(
            "{}; normalisation and architecture from {}",
            self.loaded,
            self.described.source_text()
        )
    }

    /// The resolved metadata (architecture, mean/std, calibration, sidecar).
    pub fn described(&self) -> &Described {
        &self.described
    }

    /// The calibration of the sidecar (empty until calibrated).
    pub fn calibration(&self) -> &Calibration {
        self.described.calibration()
    }

    /// Input side in pixels.
    pub fn input_size(&self) -> usize {
        self.described.model.img_size
    }

    /// The normalisation inputs get.
    pub fn mean_std(&self) -> MeanStd {
        self.mean_std
    }

    /// Index of the fake class in the head.
    pub fn fake_index(&self) -> usize {
        self.fake_index
    }

    /// Number of classes of the head.
    pub fn classes(&self) -> usize {
        self.classes
    }

    /// Class names in head order: the sidecar's, else `fake` at the fake index and, for two
    /// classes, `real` for the other (`class i` for more).
    pub fn class_names(&self) -> Vec<String> {
        self.described
            .sidecar
            .as_ref()
            .map(|s| s.classes.clone())
            .filter(|c| c.len() == self.classes)
            .unwrap_or_else(|| {
                (0..self.classes)
                    .map(|i| match i == self.fake_index {
                        true => "fake".to_string(),
                        false if self.classes == 2 => "real".to_string(),
                        false => format!("class {i}"),
                    })
                    .collect()
            })
    }

    /// What kind of classifier the weights are (fine-tuned ViT, FS-Adapter, FAS).
    pub fn kind(&self) -> ModelKind {
        match &self.network {
            Network::Vit(_) => ModelKind::Finetune,
            Network::Adapter(_) => ModelKind::Adapter,
            Network::Fas(_) => ModelKind::Fas,
        }
    }

    /// The options it was loaded with.
    pub fn options(&self) -> &DetectorOptions {
        &self.options
    }

    /// The face pipeline, loaded on first use (face models from `options.face_models`).
    fn pipeline(&self) -> Result<&FacePipeline> {
        if let Some(p) = self.pipeline.get() {
            return Ok(p);
        }
        let assets = Assets::in_dir_or_home(self.options.face_models.as_deref())?;
        let p = FacePipeline::load(
            &assets,
            PipelineOptions {
                all_faces: self.options.all_faces,
                size: self.input_size() as u32,
                ..PipelineOptions::default()
            },
        )?;
        Ok(self.pipeline.get_or_init(|| p))
    }

    /// Loads the face models now (else on the first image), so a missing model is reported
    /// before any input is read. Does nothing with `options.crops`.
    pub fn ensure_face_models(&self) -> Result<()> {
        if !self.options.crops {
            self.pipeline()?;
        }
        Ok(())
    }

    /// The faces of one decoded image, largest first (one unless `all_faces`), or with `crops`
    /// the image itself resized to the input.
    pub fn crops_of(&self, img: &RgbImage) -> Result<Vec<(Option<[f32; 4]>, RgbImage)>> {
        self.faces_in(img, self.options.all_faces, self.options.crops)
    }

    /// [`Detector::crops_of`] with the options' `all_faces` and `crops` given per call.
    pub fn faces_in(
        &self,
        img: &RgbImage,
        all_faces: bool,
        crops: bool,
    ) -> Result<Vec<(Option<[f32; 4]>, RgbImage)>> {
        if crops {
            let size = self.input_size() as u32;
            return Ok(vec![(
                None,
                fsvfm_data::image_io::to_input_size(img.clone(), size),
            )]);
        }
        Ok(self
            .pipeline()?
            .crops_of(img, all_faces)?
            .into_iter()
            .map(|(det, _, crop)| {
                let b = det.bbox;
                (Some([b.x0, b.y0, b.x1, b.y1]), crop)
            })
            .collect())
    }

    /// Decodes `path` (an image, or `frames` frames of a video) and finds its faces, frame by
    /// frame; a frame without a face has no crops. An unreadable input is [`Error::Input`].
    pub fn crops_in_file(&self, path: &Path) -> Result<Vec<FrameCrops>> {
        let images: Vec<(Option<usize>, RgbImage)> = if is_video_file(path) {
            if self.options.crops {
                return Err(Error::Input {
                    path: path.to_path_buf(),
                    reason: "a video given as a face crop: crops mode takes images only".into(),
                });
            }
            let frames = frame_count(path).and_then(|n| {
                read_frames(
                    path,
                    &frame_indices(n, FrameSelection::Uniform(self.options.frames)),
                )
            });
            match frames {
                Ok(f) => f.into_iter().map(|(i, img)| (Some(i), img)).collect(),
                Err(fsvfm_faces::FaceError::Input(reason)) => {
                    return Err(Error::Input {
                        path: path.to_path_buf(),
                        reason,
                    });
                }
                Err(e) => return Err(e.into()),
            }
        } else {
            match fsvfm_data::input::read_image(path) {
                Ok(img) => vec![(None, img)],
                Err(e) => {
                    return Err(Error::Input {
                        path: path.to_path_buf(),
                        reason: format!("unreadable image: {}", e.reason()),
                    });
                }
            }
        };
        images
            .into_iter()
            .map(|(frame, img)| {
                Ok(FrameCrops {
                    frame,
                    crops: self.crops_of(&img)?,
                })
            })
            .collect()
    }

    /// P(fake) for every face of an image or video file, frames in order, faces largest first
    /// (only the largest per image or frame unless `all_faces`). No face: an empty list.
    pub fn predict_file(&self, path: impl AsRef<Path>) -> Result<Vec<Face>> {
        let frames = self.crops_in_file(path.as_ref())?;
        self.score_frames(frames)
    }

    /// P(fake) for the faces of a decoded image.
    pub fn predict_image(&self, img: &RgbImage) -> Result<Vec<Face>> {
        let crops = self.crops_of(img)?;
        self.score_frames(vec![FrameCrops { frame: None, crops }])
    }

    /// Scores the crops of [`Detector::crops_in_file`] in batches.
    pub fn score_frames(&self, frames: Vec<FrameCrops>) -> Result<Vec<Face>> {
        let crops: Vec<&RgbImage> = frames
            .iter()
            .flat_map(|f| f.crops.iter().map(|(_, c)| c))
            .collect();
        let scores = self.score_refs(&crops)?;
        let mut k = 0;
        let mut faces = Vec::with_capacity(scores.len());
        for f in frames {
            for (i, (bbox, crop)) in f.crops.into_iter().enumerate() {
                faces.push(Face {
                    frame: f.frame,
                    face_index: i,
                    bbox,
                    p_fake: scores[k],
                    crop,
                });
                k += 1;
            }
        }
        Ok(faces)
    }

    /// P(fake) of face crops (resized to the input when they are not `input_size` square), in
    /// forward passes of at most `batch_size`.
    pub fn score_crops(&self, crops: &[RgbImage]) -> Result<Vec<f32>> {
        self.score_refs(&crops.iter().collect::<Vec<_>>())
    }

    fn score_refs(&self, crops: &[&RgbImage]) -> Result<Vec<f32>> {
        let mut scores = Vec::with_capacity(crops.len());
        for chunk in crops.chunks(self.options.batch_size) {
            scores.extend(self.p_fake(self.input(chunk))?);
        }
        Ok(scores)
    }

    /// P(fake) of normalised images `x = [N, 3, S, S]` (row-major, as
    /// [`Detector::normalise`] makes them), in forward passes of at most `batch_size`.
    pub fn score_normalised(&self, x: &[f32]) -> Result<Vec<f32>> {
        self.in_batches(x, |t| self.p_fake(t))
    }

    /// Raw head logits `[n, classes]` (row-major) of normalised images `x = [N, 3, S, S]`, in
    /// forward passes of at most `batch_size`: what [`Detector::score_normalised`] turns into
    /// P(fake), before the calibration's temperature.
    pub fn logits_normalised(&self, x: &[f32]) -> Result<Vec<f32>> {
        self.in_batches(x, |t| self.read(self.network.logits(t), "logits"))
    }

    /// `f` over `x = [N, 3, S, S]` in batches of at most `batch_size`, outputs concatenated.
    fn in_batches(&self, x: &[f32], f: impl Fn(Tensor<4>) -> Result<Vec<f32>>) -> Result<Vec<f32>> {
        let s = self.input_size();
        let per = 3 * s * s;
        if !x.len().is_multiple_of(per) {
            return Err(Error::Invalid(format!(
                "scoring needs [N, 3, {s}, {s}] values, got {} (not a multiple of {per})",
                x.len()
            )));
        }
        let mut out = Vec::new();
        for chunk in x.chunks(self.options.batch_size * per) {
            let n = chunk.len() / per;
            let t =
                Tensor::<4>::from_data(TensorData::new(chunk.to_vec(), [n, 3, s, s]), &self.device);
            out.extend(f(t)?);
        }
        Ok(out)
    }

    /// The fake class's log-odds against the others, `logit_fake − logsumexp(other logits)`,
    /// per row of `logits` (`[n, classes]`, as [`Detector::logits_normalised`] gives them):
    /// what `fsvfm calibrate` fits its temperature on. P(fake) = σ(margin / T).
    pub fn margins(&self, logits: &[f32]) -> Vec<f64> {
        logits
            .chunks(self.classes)
            .map(|row| {
                let others: Vec<f64> = row
                    .iter()
                    .enumerate()
                    .filter(|&(j, _)| j != self.fake_index)
                    .map(|(_, &l)| f64::from(l))
                    .collect();
                let m = others.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                let lse = m + others.iter().map(|l| (l - m).exp()).sum::<f64>().ln();
                f64::from(row[self.fake_index]) - lse
            })
            .collect()
    }

    /// The verdict of the checkpoint's calibration (threshold 0.5 when uncalibrated) for a
    /// P(fake) this detector gave.
    pub fn verdict(&self, p_fake: f32) -> Verdict {
        self.calibration().verdict(f64::from(p_fake))
    }

    fn read(&self, t: Tensor<2>, what: &str) -> Result<Vec<f32>> {
        t.into_data()
            .try_to_vec::<f32>()
            .map_err(|e| Error::Invalid(format!("reading {what}: {e:?}")))
    }

    /// P(fake): softmax over the logits divided by the calibration's temperature (none when
    /// uncalibrated, so uncalibrated scores are the head's plain softmax, bit for bit).
    fn p_fake(&self, x: Tensor<4>) -> Result<Vec<f32>> {
        let mut logits = self.network.logits(x);
        let t = self.calibration().temperature_or_one();
        if t != 1.0 {
            logits = logits.div_scalar(t as f32);
        }
        let p = self.read(softmax(logits, 1), "scores")?;
        Ok(p.chunks(self.classes)
            .map(|row| row[self.fake_index])
            .collect())
    }

    /// Reads a labelled set as `fsvfm eval` does (ImageFolder tree, JSONL manifest, DeepfakeBench
    /// JSON or FAS split files; see [`fsvfm_data::read_eval_set`]) and normalises its images for
    /// this detector: the images are face crops, resized to the input. Unreadable images are
    /// left out and listed.
    pub fn load_eval_set(
        &self,
        path: &Path,
        split: &str,
        root: Option<&Path>,
    ) -> Result<EvalInputs> {
        use rayon::prelude::*;
        let (all, mut skipped) =
            fsvfm_data::read_eval_set(path, split, root).map_err(|reason| Error::Input {
                path: path.to_path_buf(),
                reason,
            })?;
        let size = self.input_size();
        let decoded: Vec<std::result::Result<Vec<f32>, String>> = all
            .par_iter()
            .map(|s| fsvfm_data::load_normalized(&s.image, size, &self.mean_std))
            .collect();
        let mut out = EvalInputs {
            samples: Vec::new(),
            skipped: Vec::new(),
            pixels: Vec::new(),
        };
        for (s, d) in all.into_iter().zip(decoded) {
            match d {
                Ok(x) => {
                    out.pixels.extend(x);
                    out.samples.push(s);
                }
                Err(reason) => skipped.push(fsvfm_data::Skipped {
                    path: s.image.display().to_string(),
                    reason,
                }),
            }
        }
        out.skipped = skipped;
        Ok(out)
    }

    /// Normalised pixels `[n, 3, S, S]` of crops, resized to `S` where needed.
    pub fn normalise(&self, crop: &RgbImage) -> Vec<f32> {
        let size = self.input_size() as u32;
        let mut x = if crop.dimensions() == (size, size) {
            fsvfm_data::image_io::rgb_to_chw(crop)
        } else {
            fsvfm_data::image_io::rgb_to_chw(&fsvfm_data::image_io::to_input_size(
                crop.clone(),
                size,
            ))
        };
        self.mean_std.apply(&mut x);
        x
    }

    fn input(&self, crops: &[&RgbImage]) -> Tensor<4> {
        let s = self.input_size();
        let mut pixels = Vec::with_capacity(crops.len() * 3 * s * s);
        for c in crops {
            pixels.extend(self.normalise(c));
        }
        Tensor::<4>::from_data(
            TensorData::new(pixels, [crops.len(), 3, s, s]),
            &self.device,
        )
    }

    /// The last block's class-token attention over the patches (heads averaged) of each crop,
    /// `L = (S / patch)²` values in raster order.
    pub fn attention(&self, crops: &[RgbImage]) -> Result<Vec<Vec<f32>>> {
        if crops.is_empty() {
            return Ok(Vec::new());
        }
        let mut out = Vec::with_capacity(crops.len());
        for chunk in crops.chunks(self.options.batch_size) {
            let refs: Vec<&RgbImage> = chunk.iter().collect();
            out.extend(self.network.attention_maps(self.input(&refs))?);
        }
        Ok(out)
    }

    /// A heat map of a crop: its attention ([`Detector::attention`]) upsampled and blended over
    /// it.
    pub fn heatmap(&self, crop: &RgbImage) -> Result<RgbImage> {
        let size = self.input_size() as u32;
        let crop = fsvfm_data::image_io::to_input_size(crop.clone(), size);
        let map = self.attention(std::slice::from_ref(&crop))?;
        Ok(crate::heatmap::overlay(&crop, &map[0]))
    }
}
