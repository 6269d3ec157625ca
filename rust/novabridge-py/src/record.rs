//! `Record`: one record read from a ring.

use pyo3::prelude::*;
use pyo3::types::PyBytes;

/// One record read from a ring: its kind, flags, sequence number, write time and payload.
#[pyclass(frozen, get_all, module = "novabridge._novabridge")]
pub struct Record {
    /// The record's kind (see `novabridge.RecordKind`; any 16-bit value is allowed).
    pub kind: u16,
    /// 16 bits for the application.
    pub flags: u16,
    /// The producer's sequence number, counting from 0 per ring.
    pub seq: u64,
    /// `CLOCK_MONOTONIC` nanoseconds at write, comparable with `time.monotonic_ns()` in any process.
    pub t_ns: u64,
    /// The payload, copied out of the ring.
    pub payload: Py<PyBytes>,
}

#[pymethods]
impl Record {
    fn __len__(&self, py: Python<'_>) -> usize {
        self.payload.bind(py).as_bytes().len()
    }

    fn __repr__(&self, py: Python<'_>) -> String {
        format!(
            "Record(kind={}, flags={}, seq={}, t_ns={}, payload=<{} bytes>)",
            self.kind,
            self.flags,
            self.seq,
            self.t_ns,
            self.__len__(py)
        )
    }
}
