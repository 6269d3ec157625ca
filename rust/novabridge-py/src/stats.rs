//! `RingStats`: a snapshot of a ring's counters.

use novabridge_core::ring::RingStats as CoreStats;
use pyo3::prelude::*;

/// A snapshot of a ring's counters; both sides see the same numbers.
#[pyclass(frozen, get_all, module = "novabridge._novabridge")]
pub struct RingStats {
    pub records_written: u64,
    pub bytes_written: u64,
    pub records_read: u64,
    pub bytes_read: u64,
    pub records_skipped: u64,
    pub fill_bytes: u64,
    pub capacity: u64,
    pub data_wakeups: u64,
    pub space_wakeups: u64,
    pub full_events: u64,
}

impl From<CoreStats> for RingStats {
    fn from(s: CoreStats) -> Self {
        Self {
            records_written: s.records_written,
            bytes_written: s.bytes_written,
            records_read: s.records_read,
            bytes_read: s.bytes_read,
            records_skipped: s.records_skipped,
            fill_bytes: s.fill_bytes,
            capacity: s.capacity,
            data_wakeups: s.data_wakeups,
            space_wakeups: s.space_wakeups,
            full_events: s.full_events,
        }
    }
}

#[pymethods]
impl RingStats {
    /// The fill level as a fraction of capacity.
    #[getter]
    #[allow(clippy::cast_precision_loss)] // both are at most 1 GiB, exact in f64
    fn fill_ratio(&self) -> f64 {
        self.fill_bytes as f64 / self.capacity as f64
    }

    fn __repr__(&self) -> String {
        format!(
            "RingStats(records_written={}, records_read={}, records_skipped={}, fill_bytes={}/{}, \
             data_wakeups={}, space_wakeups={}, full_events={})",
            self.records_written,
            self.records_read,
            self.records_skipped,
            self.fill_bytes,
            self.capacity,
            self.data_wakeups,
            self.space_wakeups,
            self.full_events
        )
    }
}
