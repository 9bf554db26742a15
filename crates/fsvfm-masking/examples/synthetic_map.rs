//! Writes the synthetic face-like LaPa label map used in the docs and tests:
//! `cargo run --release -p fsvfm-masking --example synthetic_map -- OUT.png`
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "synthetic_parsing.png".into());
    fsvfm_masking::SyntheticFace::default()
        .render(224, 224)?
        .save_png(&out)?;
    eprintln!("wrote {out}");
    Ok(())
}
