//! `novabridge._novabridge`: thin `PyO3` bindings over `novabridge-core`. One file per exposed class; errors
//! are mapped to the Python hierarchy of `novabridge.exceptions` in one place (`errors.rs`).

mod errors;
mod record;
mod resampler;
mod ring;
mod stats;
mod waiter;

use pyo3::prelude::*;

#[pymodule]
mod _novabridge {
    use pyo3::prelude::*;

    #[pymodule_export]
    use crate::record::Record;
    #[pymodule_export]
    use crate::resampler::Resampler;
    #[pymodule_export]
    use crate::ring::Ring;
    #[pymodule_export]
    use crate::stats::RingStats;
    #[pymodule_export]
    use crate::waiter::RingWaiter;

    /// `CLOCK_MONOTONIC` nanoseconds, the clock of `Record.t_ns` (the same as `time.monotonic_ns()` on Linux).
    #[pyfunction]
    fn monotonic_ns() -> u64 {
        novabridge_core::clock::monotonic_ns()
    }

    #[pymodule_init]
    fn init(m: &Bound<'_, PyModule>) -> PyResult<()> {
        m.add("__version__", env!("CARGO_PKG_VERSION"))?;
        m.add("LAYOUT_VERSION", novabridge_core::ring::LAYOUT_VERSION)?;
        m.add("RECORD_HEADER_LEN", novabridge_core::ring::RECORD_HEADER_LEN)?;
        m.add("MIN_CAPACITY", novabridge_core::ring::MIN_CAPACITY)?;
        m.add("MAX_CAPACITY", novabridge_core::ring::MAX_CAPACITY)?;
        m.add("MAX_NAME_LEN", novabridge_core::ring::MAX_NAME_LEN)?;
        Ok(())
    }
}
