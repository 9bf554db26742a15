//! P(fake) for the faces of images and videos, from Rust.
//!
//! ```bash
//! bash tools/face/setup.sh   # once: the face models
//! cargo run --release -p fsvfm --example score_image -- RUN/checkpoint-min_val_loss.safetensors photo.jpg clip.mp4
//! # an official checkpoint: say what the file cannot
//! FSVFM_MODEL=vit_base_patch16 FSVFM_MEAN_STD=vggface2 cargo run --release -p fsvfm --example score_image -- official.pth photo.jpg
//! ```

use fsvfm::{Detector, DetectorOptions};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: score_image CHECKPOINT IMAGE_OR_VIDEO...";
    let checkpoint = args.next().ok_or(usage)?;
    let inputs: Vec<String> = args.collect();
    if inputs.is_empty() {
        return Err(usage.into());
    }
    let options = DetectorOptions {
        model: std::env::var("FSVFM_MODEL")
            .ok()
            .map(|m| fsvfm::model_config(&m))
            .transpose()?,
        mean_std: std::env::var("FSVFM_MEAN_STD")
            .ok()
            .map(|m| fsvfm::mean_std_named(&m))
            .transpose()?,
        ..Default::default()
    };
    let detector = Detector::load_with(&checkpoint, &options)?;
    eprintln!("{}", detector.description());
    for input in &inputs {
        match detector.predict_file(input) {
            Ok(faces) if faces.is_empty() => println!("{input}: no face detected"),
            Ok(faces) => {
                for f in faces {
                    let frame = f.frame.map_or(String::new(), |i| format!(" frame {i}"));
                    println!("{input}{frame}: box {:?} P(fake) = {:.4}", f.bbox, f.p_fake);
                }
            }
            // One unreadable input does not stop the others.
            Err(e @ fsvfm::Error::Input { .. }) => println!("{e}"),
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}
