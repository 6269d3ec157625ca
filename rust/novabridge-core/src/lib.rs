//! Pure-Rust core of novabridge.
//!
//! [`ring`] is a single-producer single-consumer record ring in a sealed memfd mapping, shared between two
//! processes (which may run different Python interpreters), with eventfd wake-ups that cost nothing on a busy
//! ring; [`resample`] is a streaming low-delay resampler between the usual audio rates. Nothing here depends on
//! Python; the `PyO3` crate `novabridge-py` is a thin layer over it.

pub mod eventcount;
mod sync;

#[cfg(not(loom))]
pub mod clock;
#[cfg(not(loom))]
mod error;
#[cfg(not(loom))]
pub mod resample;
#[cfg(not(loom))]
pub mod ring;

#[cfg(not(loom))]
pub use error::{CloseReason, RingError, RingResult};
