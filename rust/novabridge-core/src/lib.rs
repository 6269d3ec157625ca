//! Pure-Rust core of novabridge.
//!
//! [`ring`] is a single-producer single-consumer record ring in a sealed memfd mapping, shared between two
//! processes (which may run different Python interpreters), with eventfd wake-ups that cost nothing on a busy
//! ring; [`resample`] is a streaming low-delay resampler between the usual audio rates. Nothing here depends on
//! Python; the `PyO3` crate `novabridge-py` is a thin layer over it.
//!
//! Built with `--cfg loom`, the ring's atomics, locks and events come from `loom` (see `sync`), and the model
//! check in `ring::spsc` runs the ring's own code under every interleaving loom explores.

// The model check leaves out what only a second process uses (attaching, descriptors), and with it the code
// that validates a peer's header.
#![cfg_attr(loom, allow(dead_code))]

pub mod clock;
mod error;
pub mod eventcount;
pub mod ring;
mod sync;

#[cfg(not(loom))]
pub mod resample;

pub use error::{CloseReason, RingError, RingResult};
