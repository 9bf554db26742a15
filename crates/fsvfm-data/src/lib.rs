//! # fsvfm-data
//!
//! Data formats shared by the commands. For now: NumPy `.npy` arrays, the exchange format of
//! `fsvfm forward` (inputs `[N, 3, H, W]` float32, outputs `[N, D]` / `[N, C]` float32) and of the
//! official parsing maps (`int8 [1, 224, 224]`).

pub mod npy;
