//! The shared segment: a memfd sealed against resizing, mapped shared. A memfd has no name in /dev/shm to
//! leak, is freed with its last descriptor or mapping (even after SIGKILL), and once sealed no process can
//! truncate it, so the mapping can never SIGBUS.

use std::ffi::CString;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::ptr::NonNull;

use super::layout::Header;
use crate::{RingError, RingResult};

const REQUIRED_SEALS: libc::c_int = libc::F_SEAL_SHRINK | libc::F_SEAL_GROW;

pub(crate) struct SharedSegment {
    ptr: NonNull<u8>,
    len: usize,
    fd: OwnedFd,
}

// SAFETY: the mapping is plain shared memory; all access to it goes through atomics or through the ring's
// ownership protocol (each byte range is owned by exactly one side at a time).
unsafe impl Send for SharedSegment {}
// SAFETY: as above.
unsafe impl Sync for SharedSegment {}

impl SharedSegment {
    /// A new zero-filled segment of `len` bytes, sealed against shrinking, growing and further sealing.
    pub fn create(name: &str, len: usize) -> RingResult<Self> {
        let c_name = CString::new(format!("novabridge:{name}"))
            .map_err(|_| RingError::InvalidArgument("ring name must not contain NUL".into()))?;
        // SAFETY: `c_name` is a valid C string; the flags are valid for memfd_create.
        let raw = unsafe { libc::memfd_create(c_name.as_ptr(), libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING) };
        if raw < 0 {
            return Err(RingError::os("memfd_create"));
        }
        // SAFETY: `raw` is a fresh descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // SAFETY: plain syscalls on a descriptor we own.
        let len_off = libc::off_t::try_from(len).map_err(|_| RingError::InvalidArgument("segment too large".into()))?;
        // SAFETY: as above.
        if unsafe { libc::ftruncate(fd.as_raw_fd(), len_off) } != 0 {
            return Err(RingError::os("ftruncate"));
        }
        // SAFETY: as above.
        if unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_ADD_SEALS, REQUIRED_SEALS | libc::F_SEAL_SEAL) } != 0 {
            return Err(RingError::os("fcntl(F_ADD_SEALS)"));
        }
        Self::map(fd, len)
    }

    /// Maps a segment received from a peer, after checking that it is a sealed memfd of a plausible size.
    pub fn attach(fd: BorrowedFd<'_>, min_len: usize) -> RingResult<Self> {
        let fd = fd.try_clone_to_owned().map_err(|source| RingError::Os { op: "dup", source })?;
        // SAFETY: plain fcntl on a descriptor we own.
        let seals = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GET_SEALS) };
        if seals < 0 || seals & REQUIRED_SEALS != REQUIRED_SEALS {
            return Err(RingError::corrupt("the shared segment is not a memfd sealed against resizing"));
        }
        // SAFETY: `st` is a valid out-pointer for fstat.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        if unsafe { libc::fstat(fd.as_raw_fd(), &raw mut st) } != 0 {
            return Err(RingError::os("fstat"));
        }
        let len = usize::try_from(st.st_size).unwrap_or(0);
        if len < min_len {
            return Err(RingError::corrupt(format!("shared segment of {len} bytes is too small for a ring")));
        }
        Self::map(fd, len)
    }

    fn map(fd: OwnedFd, len: usize) -> RingResult<Self> {
        // SAFETY: mapping a descriptor we own with a length it is sealed at.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(RingError::os("mmap"));
        }
        let ptr = NonNull::new(ptr.cast::<u8>()).ok_or_else(|| RingError::os("mmap"))?;
        Ok(Self { ptr, len, fd })
    }

    /// The ring header at the start of the segment.
    #[allow(clippy::cast_ptr_alignment)] // mmap returns page-aligned memory, more than Header's 128 bytes.
    pub fn header(&self) -> &Header {
        // SAFETY: every segment is at least DATA_OFFSET >= size_of::<Header>() bytes (checked in `attach`,
        // by construction in `create`) and page-aligned; it lives as long as `self`; and Header consists only
        // of atomics, so shared references to it are sound whatever the peer process does to the bytes.
        unsafe { &*self.ptr.as_ptr().cast::<Header>() }
    }

    pub fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

impl Drop for SharedSegment {
    fn drop(&mut self) {
        // SAFETY: the mapping was created by `map` with this pointer and length and is unmapped only here.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}
