//! The one place where Rust errors become Python exceptions. The classes are defined in Python
//! (`novabridge/exceptions.py`), so users can import and subclass them without the extension.

use novabridge_core::RingError;
use pyo3::PyErr;
use pyo3::exceptions::{PyOSError, PyValueError};

pyo3::import_exception!(novabridge.exceptions, RingFull);
pyo3::import_exception!(novabridge.exceptions, RingClosed);
pyo3::import_exception!(novabridge.exceptions, RingCorrupt);
pyo3::import_exception!(novabridge.exceptions, RingAlreadyAttached);
pyo3::import_exception!(novabridge.exceptions, RecordTooLarge);

/// Converts a core error into the matching Python exception.
#[cold]
pub fn to_py(err: RingError) -> PyErr {
    let message = err.to_string();
    match err {
        RingError::InvalidArgument(_) => PyValueError::new_err(message),
        RingError::RecordTooLarge { .. } => RecordTooLarge::new_err(message),
        RingError::Full { .. } => RingFull::new_err(message),
        RingError::Closed(_) => RingClosed::new_err(message),
        RingError::Corrupt(_) => RingCorrupt::new_err(message),
        RingError::AlreadyAttached { .. } => RingAlreadyAttached::new_err(message),
        RingError::Os { source, .. } => match source.raw_os_error() {
            Some(errno) => PyOSError::new_err((errno, message)),
            None => PyOSError::new_err(message),
        },
    }
}

/// What `Ring::read` and `Ring::write` return when Python interrupts a wait: a ring error or a Python
/// exception (a signal handler's, e.g. `KeyboardInterrupt`).
pub struct WaitError(pub PyErr);

impl From<RingError> for WaitError {
    fn from(err: RingError) -> Self {
        Self(to_py(err))
    }
}

impl From<WaitError> for PyErr {
    fn from(err: WaitError) -> Self {
        err.0
    }
}
