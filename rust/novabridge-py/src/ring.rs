//! `Ring`: the Python face of `novabridge_core::ring::Ring`.

use std::os::fd::{BorrowedFd, RawFd};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use novabridge_core::ring::{Ring as CoreRing, RingInfo};
use novabridge_core::{CloseReason, RingError};
use pyo3::buffer::PyUntypedBuffer;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBytes, PyTuple};

use crate::errors::{WaitError, to_py};
use crate::record::Record;
use crate::stats::RingStats;
use crate::waiter::RingWaiter;

/// A single-producer single-consumer record ring in shared memory, joining two processes.
///
/// Create it with `Ring.create()`, hand `fds()` to the other process, and `Ring.attach()` there. One side
/// writes, the other reads. Methods are safe to call from any thread, but there is one producer and one
/// consumer: concurrent writers (or readers) are serialised, not supported as a pattern.
#[pyclass(frozen, module = "novabridge._novabridge")]
pub struct Ring {
    /// `None` once closed here; operations in flight keep their own `Arc` and finish first.
    handle: Mutex<Option<Arc<CoreRing>>>,
    info: RingInfo,
    /// The counters as they were when this handle closed, so `stats()` still answers afterwards.
    final_stats: PyOnceLock<Py<RingStats>>,
}

fn timeout_arg(timeout: Option<f64>) -> PyResult<Option<Duration>> {
    timeout
        .map(|secs| {
            Duration::try_from_secs_f64(secs).map_err(|_| {
                PyValueError::new_err(format!("timeout must be a finite number of seconds >= 0 or None, got {secs}"))
            })
        })
        .transpose()
}

pub(crate) fn record(py: Python<'_>) -> impl FnMut(novabridge_core::ring::RecordHeader, &[u8]) -> Record + '_ {
    move |header, payload| Record {
        kind: header.kind,
        flags: header.flags,
        seq: header.seq,
        t_ns: header.t_ns,
        payload: PyBytes::new(py, payload).unbind(),
    }
}

/// Runs one bounded sleep with the GIL released, then lets Python handle pending signals (Ctrl-C).
fn park(py: Python<'_>) -> impl FnMut(&(dyn Fn() + Sync)) -> Result<(), WaitError> + '_ {
    move |wait| {
        py.detach(wait);
        py.check_signals().map_err(WaitError)
    }
}

impl Ring {
    fn new(ring: CoreRing) -> Self {
        Self { info: ring.info().clone(), handle: Mutex::new(Some(Arc::new(ring))), final_stats: PyOnceLock::new() }
    }

    fn ring(&self) -> PyResult<Arc<CoreRing>> {
        let handle = self.handle.lock().unwrap_or_else(PoisonError::into_inner);
        handle.clone().ok_or_else(|| to_py(RingError::Closed(CloseReason::ClosedHere)))
    }
}

#[pymethods]
impl Ring {
    /// Creates a ring of `capacity` bytes (a power of two, 4 KiB to 1 GiB) in a new sealed memfd.
    #[staticmethod]
    #[pyo3(signature = (capacity, *, name = ""))]
    fn create(capacity: usize, name: &str) -> PyResult<Self> {
        CoreRing::create(capacity, name).map(Self::new).map_err(to_py)
    }

    /// Attaches to a ring created by another process, from the descriptors of its `fds()`.
    #[staticmethod]
    #[pyo3(signature = (*fds))]
    fn attach(fds: &Bound<'_, PyTuple>) -> PyResult<Self> {
        let fds: Vec<RawFd> = fds.extract()?;
        let [segment, data_ready, space_ready] = fds[..] else {
            return Err(PyValueError::new_err(format!(
                "attach takes the 3 descriptors of Ring.fds(), got {}",
                fds.len()
            )));
        };
        if fds.iter().any(|&fd| fd < 0) {
            return Err(PyValueError::new_err(format!("descriptors must be >= 0, got {fds:?}")));
        }
        // SAFETY: the descriptors are only duplicated during the call; a closed one makes the dup fail (EBADF).
        let borrow = |fd| unsafe { BorrowedFd::borrow_raw(fd) };
        CoreRing::attach([borrow(segment), borrow(data_ready), borrow(space_ready)]).map(Self::new).map_err(to_py)
    }

    /// The descriptors a peer needs, in the order `Ring.attach()` takes them. Pass them with
    /// `subprocess.Popen(..., pass_fds=ring.fds())`.
    fn fds(&self) -> PyResult<(RawFd, RawFd, RawFd)> {
        let fds = self.ring()?.fds();
        Ok((fds.segment, fds.data_ready, fds.space_ready))
    }

    /// Writes one record and returns its sequence number. Waits up to `timeout` seconds for room (0: not at
    /// all, None: without limit), then raises `RingFull`; nothing is ever half-written.
    #[pyo3(
        signature = (kind, payload, *, flags = 0, timeout = Some(0.0)),
        text_signature = "($self, kind, payload, *, flags=0, timeout=0.0)"
    )]
    fn write(
        &self,
        py: Python<'_>,
        kind: u16,
        payload: &Bound<'_, PyAny>,
        flags: u16,
        timeout: Option<f64>,
    ) -> PyResult<u64> {
        let timeout = timeout_arg(timeout)?;
        let ring = self.ring()?;
        if let Ok(bytes) = payload.cast::<PyBytes>() {
            return Ok(ring.write(kind, flags, bytes.as_bytes(), timeout, park(py))?);
        }
        let buffer = PyUntypedBuffer::get(payload)?;
        if !buffer.is_c_contiguous() {
            return Err(PyValueError::new_err("payload must be a C-contiguous buffer"));
        }
        // SAFETY: the exporter keeps `len_bytes` contiguous bytes at `buf_ptr` alive while `buffer` is held.
        let bytes = unsafe { std::slice::from_raw_parts(buffer.buf_ptr().cast::<u8>(), buffer.len_bytes()) };
        Ok(ring.write(kind, flags, bytes, timeout, park(py))?)
    }

    /// Reads the next record, waiting up to `timeout` seconds (None: without limit) with the GIL released;
    /// returns None on timeout. Raises `RingClosed` once the ring is closed and drained, or the peer died.
    #[pyo3(signature = (timeout = None))]
    fn read(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<Option<Record>> {
        let timeout = timeout_arg(timeout)?;
        Ok(self.ring()?.read(timeout, record(py), park(py))?)
    }

    /// Reads the next record if one is queued, else returns None at once.
    fn read_nowait(&self, py: Python<'_>) -> PyResult<Option<Record>> {
        self.ring()?.read_or_closed(record(py)).map_err(to_py)
    }

    /// Awaits the next record without blocking the event loop (the loop watches the ring's eventfd).
    fn aread<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        static AREAD: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
        let py = slf.py();
        AREAD.import(py, "novabridge.ring", "aread")?.call1((slf,))
    }

    /// Drops the queued records (only those of `kind`, if given, keeping the others in order) and returns
    /// how many it dropped.
    #[pyo3(signature = (kind = None))]
    fn skip(&self, kind: Option<u16>) -> PyResult<usize> {
        self.ring()?.skip(kind).map_err(to_py)
    }

    /// Closes the ring for both sides and releases this handle's memory and descriptors once no call is in
    /// flight. The peer reads what was written, then gets `RingClosed`; blocked calls on either side wake.
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        let taken = self.handle.lock().unwrap_or_else(PoisonError::into_inner).take();
        if let Some(ring) = taken {
            let stats = Py::new(py, RingStats::from(ring.stats()))?;
            let _ = self.final_stats.set(py, stats);
            ring.close();
        }
        Ok(())
    }

    /// Counters for both directions of use: records and bytes written and read, fill, wake-ups, full events.
    fn stats(&self, py: Python<'_>) -> PyResult<Py<RingStats>> {
        match self.ring() {
            Ok(ring) => Py::new(py, RingStats::from(ring.stats())),
            Err(err) => self.final_stats.get(py).map(|s| s.clone_ref(py)).ok_or(err),
        }
    }

    #[getter]
    fn capacity(&self) -> usize {
        self.info.capacity
    }

    /// The largest payload this ring accepts.
    #[getter]
    fn max_payload(&self) -> usize {
        self.info.max_payload
    }

    #[getter]
    fn name(&self) -> &str {
        &self.info.name
    }

    /// A random id shared by both sides' handles of the same ring.
    #[getter]
    fn ring_id(&self) -> u64 {
        self.info.ring_id
    }

    #[getter]
    fn creator_pid(&self) -> u32 {
        self.info.creator_pid
    }

    /// The other process: the attacher seen from the creator (0 until one attaches), else the creator.
    #[getter]
    fn peer_pid(&self) -> PyResult<u32> {
        Ok(self.ring()?.peer_pid())
    }

    /// Whether this handle was closed (the peer's close shows as `RingClosed` from read and write).
    #[getter]
    fn closed(&self) -> bool {
        self.handle.lock().unwrap_or_else(PoisonError::into_inner).is_none()
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __exit__(
        &self,
        py: Python<'_>,
        _exc_type: &Bound<'_, PyAny>,
        _exc: &Bound<'_, PyAny>,
        _tb: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        self.close(py)
    }

    fn __repr__(&self) -> String {
        format!(
            "Ring(name={:?}, capacity={}, ring_id={:#018x}, creator_pid={}{})",
            self.info.name,
            self.info.capacity,
            self.info.ring_id,
            self.info.creator_pid,
            if self.closed() { ", closed" } else { "" }
        )
    }

    /// Event-loop support for `aread`: a waiter that keeps this ring's descriptors open while an event loop
    /// watches them, even if the handle is closed meanwhile (the close then wakes the loop).
    fn _waiter(&self) -> PyResult<RingWaiter> {
        Ok(RingWaiter::new(self.ring()?))
    }
}
