//! The shared segment: a memfd sealed against resizing, mapped shared. A memfd has no name in /dev/shm to
//! leak, is freed with its last descriptor or mapping (even after SIGKILL), and once sealed no process can
//! truncate it, so the mapping can never SIGBUS.
//!
//! Under `--cfg loom` the segment is a header and a data area on the heap instead (loom's atomics cannot live
//! in a mapping), and every copy into or out of the data area is reported to loom, word by word, so the model
//! check also fails if a record's bytes could be read before they were written or overwritten before read.

#[cfg(not(loom))]
use std::ffi::CString;
#[cfg(not(loom))]
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
#[cfg(not(loom))]
use std::ptr::NonNull;

use super::layout::{DATA_OFFSET, Header};
#[cfg(not(loom))]
use crate::RingError;
use crate::RingResult;

#[cfg(not(loom))]
const REQUIRED_SEALS: libc::c_int = libc::F_SEAL_SHRINK | libc::F_SEAL_GROW;

#[cfg(not(loom))]
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

#[cfg(not(loom))]
impl SharedSegment {
    /// A new zero-filled segment of `len` bytes, sealed against shrinking, growing and further sealing.
    pub fn create(name: &str, len: usize) -> RingResult<Self> {
        let c_name = CString::new(format!("novabridge:{name}"))
            .map_err(|_| RingError::InvalidArgument("ring name must not contain NUL".into()))?;
        // The system call, not glibc's wrapper: the wrapper came with glibc 2.27, and the wheel is built for 2.17
        // (manylinux2014), where the kernel call (Linux 3.17) is all there is.
        // SAFETY: `c_name` is a valid C string; the flags are valid for memfd_create.
        let raw = unsafe {
            libc::syscall(libc::SYS_memfd_create, c_name.as_ptr(), libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING)
        };
        if raw < 0 {
            return Err(RingError::os("memfd_create"));
        }
        // SAFETY: `raw` is a fresh descriptor that nothing else owns (a descriptor fits in an int).
        let fd = unsafe { OwnedFd::from_raw_fd(raw as RawFd) };
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
        // Populated: every page is resident in this process from the start. Mapped lazily, each page joined the
        // RSS of the host and of the worker the first time the positions reached it, minutes of growth (2 MiB per
        // ring at the bridge's size) that a long run cannot tell from a leak; the ring will touch them all anyway.
        // SAFETY: mapping a descriptor we own with a length it is sealed at.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_POPULATE,
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

    /// The first byte of the data area.
    fn data_ptr(&self) -> *mut u8 {
        // SAFETY: every segment is at least DATA_OFFSET bytes long (checked in `attach`, by construction in
        // `create`), so the result points into the mapping or one past its end.
        unsafe { self.ptr.as_ptr().add(DATA_OFFSET) }
    }

    // Real memory needs no record of who touched it.
    #[inline(always)]
    #[allow(clippy::unused_self)]
    fn mark_written(&self, _offset: usize, _len: usize) {}

    #[inline(always)]
    #[allow(clippy::unused_self)]
    fn mark_read(&self, _offset: usize, _len: usize) {}

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

#[cfg(not(loom))]
impl Drop for SharedSegment {
    fn drop(&mut self) {
        // SAFETY: the mapping was created by `map` with this pointer and length and is unmapped only here.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

/// The data area's accessors. Offsets count from the start of the data area.
impl SharedSegment {
    /// Copies `bytes` into the data area at `offset`.
    ///
    /// # Safety
    /// `offset..offset + bytes.len()` lies inside the data area and is free space only the caller's side writes.
    #[inline]
    pub unsafe fn write_data(&self, offset: usize, bytes: &[u8]) {
        self.mark_written(offset, bytes.len());
        // SAFETY: the range is inside the data area (the caller's contract) and `bytes` cannot overlap it.
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), self.data_ptr().add(offset), bytes.len()) };
    }

    /// Copies `out.len()` bytes from the data area at `offset` into `out`.
    ///
    /// # Safety
    /// `offset..offset + out.len()` lies inside the data area.
    #[inline]
    pub unsafe fn read_data(&self, offset: usize, out: &mut [u8]) {
        self.mark_read(offset, out.len());
        // SAFETY: the range is inside the data area (the caller's contract) and `out` cannot overlap it.
        unsafe { std::ptr::copy_nonoverlapping(self.data_ptr().add(offset), out.as_mut_ptr(), out.len()) };
    }

    /// The `len` bytes of the data area at `offset`, borrowed.
    ///
    /// # Safety
    /// `offset..offset + len` lies inside the data area, and the peer does not write it while the slice lives.
    #[inline]
    pub unsafe fn data_slice(&self, offset: usize, len: usize) -> &[u8] {
        self.mark_read(offset, len);
        // SAFETY: the caller's contract.
        unsafe { std::slice::from_raw_parts(self.data_ptr().add(offset), len) }
    }
}

/// The model check's segment: the same header and data area, on the heap, shared by the ring's two handles.
#[cfg(loom)]
pub(crate) struct SharedSegment(std::sync::Arc<HeapSegment>);

#[cfg(loom)]
struct HeapSegment {
    header: Header,
    data: Box<[std::cell::UnsafeCell<u8>]>,
    /// One per 8-byte word of the data area (records and wrap marks start on word boundaries), for loom to
    /// check that each access to the word is ordered after the last conflicting one.
    words: Box<[loom::cell::UnsafeCell<()>]>,
}

// SAFETY: as for the real segment: the header is atomics, and the ring gives each byte range of the data area
// to one side at a time (which the model check verifies through `words`).
#[cfg(loom)]
unsafe impl Send for HeapSegment {}
// SAFETY: as above.
#[cfg(loom)]
unsafe impl Sync for HeapSegment {}

#[cfg(loom)]
impl SharedSegment {
    /// A zeroed segment of `len` bytes (header included), as the memfd of real builds starts.
    #[allow(clippy::unnecessary_wraps)] // the signature of the real `create`
    pub fn create(_name: &str, len: usize) -> RingResult<Self> {
        let capacity = len - DATA_OFFSET;
        Ok(Self(std::sync::Arc::new(HeapSegment {
            header: Header::default(),
            data: (0..capacity).map(|_| std::cell::UnsafeCell::new(0)).collect(),
            words: (0..capacity.div_ceil(8)).map(|_| loom::cell::UnsafeCell::new(())).collect(),
        })))
    }

    /// The same segment for the peer's handle, as a second process maps the memfd it was given.
    pub fn share(&self) -> Self {
        Self(std::sync::Arc::clone(&self.0))
    }

    pub fn header(&self) -> &Header {
        &self.0.header
    }

    pub fn len(&self) -> usize {
        DATA_OFFSET + self.0.data.len()
    }

    fn data_ptr(&self) -> *mut u8 {
        std::cell::UnsafeCell::raw_get(self.0.data.as_ptr())
    }

    fn words(&self, offset: usize, len: usize) -> &[loom::cell::UnsafeCell<()>] {
        &self.0.words[offset / 8..(offset + len).div_ceil(8)]
    }

    fn mark_written(&self, offset: usize, len: usize) {
        for word in self.words(offset, len) {
            word.with_mut(|_| ());
        }
    }

    fn mark_read(&self, offset: usize, len: usize) {
        for word in self.words(offset, len) {
            word.with(|_| ());
        }
    }
}
