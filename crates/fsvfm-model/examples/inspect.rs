//! Prints what a weight file holds: `cargo run --release -p fsvfm-model --example inspect -- FILE...`
fn main() {
    for path in std::env::args().skip(1) {
        match fsvfm_model::WeightFile::open(&path) {
            Ok(wf) => println!(
                "{path}: {:?} {:?}, {} tensors",
                wf.format(),
                wf.kind(),
                wf.shapes().len()
            ),
            Err(e) => println!("{path}: error: {e}"),
        }
    }
}
