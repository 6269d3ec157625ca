//! The one error type of the ring. The Python layer maps each variant to one exception class, in one place.

use std::fmt;
use std::io;

/// Why a ring stopped carrying records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// `close()` was called on this process's handle.
    ClosedHere,
    /// The peer called `close()` (after draining what it wrote, the reader sees this).
    ClosedByPeer,
    /// The peer process exited or was killed.
    PeerDied,
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::ClosedHere => "the ring was closed by this process",
            Self::ClosedByPeer => "the ring was closed by its peer",
            Self::PeerDied => "the peer process exited",
        })
    }
}

#[derive(Debug)]
pub enum RingError {
    /// A constructor argument is out of range (capacity, name, descriptor count).
    InvalidArgument(String),
    /// The record cannot fit in this ring however empty it is.
    RecordTooLarge { len: usize, max: usize },
    /// The ring had no room for the record within the timeout; nothing was written.
    Full { needed: usize, free: usize },
    /// The ring no longer carries records.
    Closed(CloseReason),
    /// The shared header or an index read from shared memory is invalid: a foreign, stale or hostile mapping.
    Corrupt(String),
    /// Another process is already attached as this ring's peer.
    AlreadyAttached { pid: u32 },
    /// A system call failed.
    Os { op: &'static str, source: io::Error },
}

pub type RingResult<T> = Result<T, RingError>;

impl RingError {
    pub(crate) fn os(op: &'static str) -> Self {
        Self::Os { op, source: io::Error::last_os_error() }
    }

    pub(crate) fn corrupt(what: impl Into<String>) -> Self {
        Self::Corrupt(what.into())
    }
}

impl fmt::Display for RingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidArgument(msg) => f.write_str(msg),
            Self::RecordTooLarge { len, max } => {
                write!(f, "record payload of {len} bytes exceeds this ring's maximum of {max} bytes")
            }
            Self::Full { needed, free } => {
                write!(f, "ring full: the record needs {needed} bytes, {free} are free; nothing was written")
            }
            Self::Closed(reason) => write!(f, "{reason}"),
            Self::Corrupt(what) => write!(f, "corrupt ring: {what}"),
            Self::AlreadyAttached { pid } => write!(f, "the ring is already attached by process {pid}"),
            Self::Os { op, source } => write!(f, "{op} failed: {source}"),
        }
    }
}

impl std::error::Error for RingError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Os { source, .. } => Some(source),
            _ => None,
        }
    }
}
