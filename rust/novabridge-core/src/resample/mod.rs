//! Streaming, fixed-ratio polyphase FIR resampling between the usual audio rates (`novabridge.Resampler` in
//! Python; benchmarked against rubato in `benches/resample.rs`).
//!
//! The ratio `out/in` is reduced to `up/down`. One Kaiser-windowed sinc low-pass at `up * in_rate` is split into
//! `up` phases of `taps` coefficients each; every output sample is one dot product of a phase with the last
//! `taps` input samples. The state is those samples and the current phase, so the output does not depend on how
//! the input is split into calls, and every call returns exactly the samples its input implies.

// Tap counts and indices are far below 2^52 (exact in f64), and the lengths rounded from positive products
// are positive; flagging each such cast in filter arithmetic would hide nothing.
#![allow(clippy::cast_precision_loss, clippy::cast_sign_loss)]

mod design;
mod kaiser;
mod polyphase;

pub use design::{Quality, SUPPORTED_RATES, UnsupportedRate};
pub use polyphase::Resampler;
