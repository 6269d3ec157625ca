//! `RingWaiter`: the consumer's side of a ring while an asyncio loop waits on it (see `novabridge.ring.aread`).

use std::os::fd::RawFd;
use std::sync::Arc;

use novabridge_core::ring::Ring as CoreRing;
use pyo3::prelude::*;

use crate::errors::to_py;
use crate::record::Record;
use crate::ring::record;

/// Holds the ring (and so its descriptors) for as long as an event loop watches them.
#[pyclass(frozen, module = "novabridge._novabridge")]
pub struct RingWaiter {
    ring: Arc<CoreRing>,
}

impl RingWaiter {
    pub fn new(ring: Arc<CoreRing>) -> Self {
        Self { ring }
    }
}

#[pymethods]
impl RingWaiter {
    /// Announces a sleep. Returns the next record if one is already there (the announcement withdrawn), or
    /// None if the caller should wait until one of `fds()` is readable and then call `finish()`. Raises
    /// `RingClosed` when nothing more will come.
    fn prepare(&self, py: Python<'_>) -> PyResult<Option<Record>> {
        loop {
            if let Some(record) = self.ring.read_or_closed(record(py)).map_err(to_py)? {
                return Ok(Some(record));
            }
            if self.ring.prepare_wait() {
                return Ok(None);
            }
            // Something arrived (or the ring closed) between the read and the announcement.
            self.ring.finish_wait();
        }
    }

    /// Ends a wait begun by `prepare()`.
    fn finish(&self) {
        self.ring.finish_wait();
    }

    /// The descriptors to watch: the data eventfd and, once the peer is known, its pidfd.
    fn fds(&self) -> Vec<RawFd> {
        self.ring.wait_fds()
    }
}
