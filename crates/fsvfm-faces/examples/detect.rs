//! Prints the detections of one image: `cargo run --release -p fsvfm-faces --example detect -- IMG`.
fn main() {
    let path = std::env::args().nth(1).expect("usage: detect IMAGE");
    let assets = fsvfm_faces::assets::Assets::locate().unwrap();
    let p = fsvfm_faces::pipeline::FacePipeline::load(&assets, Default::default()).unwrap();
    let img = image::open(&path).unwrap().to_rgb8();
    let (range, dets) = p.detect(&img).unwrap();
    println!("{range:?} {}x{}", img.width(), img.height());
    for d in dets {
        println!("{d:?}");
    }
}
