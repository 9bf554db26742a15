//! Presentation attacks for anti-spoofing experiments: a face photographed off a print or a
//! screen. Each effect is parameterised, drawn from the seeded [`Draw`] and recorded.
//!
//! - **Print**: colour-gamut compression (lower contrast and saturation, lifted blacks, a warm or
//!   cool paper tint), halftone (an ordered-dither dot screen at a random angle and pitch, per
//!   channel), paper texture (low-frequency grain), and a slight recapture blur.
//! - **Replay**: display gamma, moiré (interference of the screen's pixel grid with the camera's
//!   sampling, a pair of gratings at a small angle), refresh banding (horizontal bands of
//!   brightness), a specular reflection (a bright soft blob), and a dark bezel at the border.
//!
//! The whole image is the attack, so the mask is all ones.

use serde_json::json;

use crate::ops::{blur_img, gaussian_blur, hsv_to_rgb, rgb_to_hsv};
use crate::{Draw, Img};

/// An attack image and its parameters.
pub struct Attack {
    /// The attack image.
    pub image: Img,
    /// The drawn parameters.
    pub params: serde_json::Value,
}

/// Smooth noise in `[-1, 1]`: white noise blurred with `sigma`, rescaled.
fn smooth_noise(w: usize, h: usize, sigma: f32, d: &mut Draw) -> Vec<f32> {
    let white: Vec<f32> = (0..w * h).map(|_| d.normal()).collect();
    let n = gaussian_blur(&white, w, h, 1, sigma);
    let m = n.iter().fold(0.0f32, |a, v| a.max(v.abs())).max(1e-6);
    n.into_iter().map(|v| v / m).collect()
}

/// A print attack of `img`.
pub fn print_attack(img: &Img, d: &mut Draw) -> Attack {
    let (w, h) = (img.w, img.h);
    let contrast = d.uniform(0.7, 0.9);
    let black = d.uniform(10.0, 35.0);
    let sat = d.uniform(0.6, 0.9);
    let tint = [
        d.uniform(-8.0, 8.0),
        d.uniform(-5.0, 5.0),
        d.uniform(-10.0, 6.0),
    ];
    let pitch = d.uniform(2.5, 4.5);
    let angle = d.uniform(0.0, std::f32::consts::FRAC_PI_2);
    let halftone = d.uniform(0.25, 0.6);
    let grain = d.uniform(3.0, 10.0);
    let blur = d.uniform(0.4, 1.0);
    let texture = smooth_noise(w, h, 2.0, d);
    let (s, c) = angle.sin_cos();
    let mut out = img.clone();
    for y in 0..h {
        for x in 0..w {
            let i = y * w + x;
            let p = img.px(x, y);
            let [hh, ss, vv] = rgb_to_hsv(p);
            let q = hsv_to_rgb([hh, ss * sat, vv]);
            // Rotated dot screen: a threshold pattern in [0, 1) per pixel.
            let (u, v) = (
                (c * x as f32 + s * y as f32) / pitch,
                (-s * x as f32 + c * y as f32) / pitch,
            );
            let dot = 0.25
                * ((std::f32::consts::TAU * u).cos() + (std::f32::consts::TAU * v).cos())
                + 0.5;
            for k in 0..3 {
                let val = black + contrast * q[k] * (255.0 - black) / 255.0 + tint[k];
                // Halftone: push towards ink/no-ink where the value crosses the screen.
                let ink = if val / 255.0 > dot { 255.0 } else { 0.0 };
                let mixed = (1.0 - halftone) * val + halftone * ink;
                out.data[3 * i + k] = (mixed + grain * texture[i]).clamp(0.0, 255.0);
            }
        }
    }
    // The halftone dots merge under the recapture optics.
    let out = blur_img(&out, blur + 0.35 * pitch);
    Attack {
        image: out,
        params: json!({
            "kind": "print", "contrast": contrast, "black_level": black, "saturation": sat,
            "tint": tint, "halftone_pitch": pitch, "halftone_angle": angle, "halftone_strength": halftone,
            "grain": grain, "blur": blur,
        }),
    }
}

/// A replay (screen) attack of `img`.
pub fn replay_attack(img: &Img, d: &mut Draw) -> Attack {
    let (w, h) = (img.w, img.h);
    let gamma = d.uniform(0.75, 1.35);
    let moire_period = d.uniform(3.0, 7.0);
    let moire_angle = d.uniform(-0.3, 0.3);
    let moire_amp = d.uniform(6.0, 18.0);
    let band_period = d.uniform(12.0, 40.0);
    let band_amp = d.uniform(0.03, 0.10);
    let band_phase = d.uniform(0.0, std::f32::consts::TAU);
    let glare = (
        d.uniform(0.1, 0.9) * w as f32,
        d.uniform(0.1, 0.6) * h as f32,
    );
    let glare_r = d.uniform(0.15, 0.4) * w as f32;
    let glare_amp = d.uniform(25.0, 70.0);
    let bezel = (d.uniform(0.0, 0.06) * w as f32) as usize;
    let blue = d.uniform(0.0, 12.0);
    let (s, c) = moire_angle.sin_cos();
    let mut out = img.clone();
    for y in 0..h {
        for x in 0..w {
            let i = y * w + x;
            let (xf, yf) = (x as f32, y as f32);
            // Beating of two gratings: the screen's (period P) and the camera's (rotated, 1.07 P).
            let g1 = (std::f32::consts::TAU * xf / moire_period).cos();
            let g2 = (std::f32::consts::TAU * (c * xf + s * yf) / (1.07 * moire_period)).cos();
            let moire = moire_amp * g1 * g2;
            let band =
                1.0 + band_amp * (std::f32::consts::TAU * yf / band_period + band_phase).sin();
            let r2 = (xf - glare.0).powi(2) + (yf - glare.1).powi(2);
            let spec = glare_amp * (-r2 / (2.0 * glare_r * glare_r)).exp();
            let in_bezel = x < bezel || y < bezel || x + bezel >= w || y + bezel >= h;
            for k in 0..3 {
                let v = 255.0 * (img.data[3 * i + k] / 255.0).powf(gamma);
                let screen_tint = if k == 2 { blue } else { 0.0 };
                let val = if in_bezel {
                    18.0 + 4.0 * k as f32
                } else {
                    v * band + moire + spec + screen_tint
                };
                out.data[3 * i + k] = val.clamp(0.0, 255.0);
            }
        }
    }
    Attack {
        image: blur_img(&out, 0.5),
        params: json!({
            "kind": "replay", "gamma": gamma, "moire_period": moire_period, "moire_angle": moire_angle,
            "moire_amplitude": moire_amp, "band_period": band_period, "band_amplitude": band_amp,
            "glare_center": [glare.0, glare.1], "glare_radius": glare_r, "glare_amplitude": glare_amp,
            "bezel_px": bezel, "blue_tint": blue,
        }),
    }
}
