//! Sleeping and waking across processes: eventfds for "data written" and "space freed", a pidfd to notice the
//! peer's death at once, and `poll` over them in bounded steps.
//!
//! The ring uses its events only through [`Notifier`]. Real builds use [`EventFd`]; under `--cfg loom` the
//! event is a loom mutex and condition variable with the same meaning, whose `wait` never times out, so that
//! a wake-up the ring's protocol could lose shows up in the model check as a deadlock.

#[cfg(not(loom))]
use std::os::fd::BorrowedFd;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::OnceLock;
use std::time::Duration;

#[cfg(not(loom))]
use crate::RingError;
use crate::RingResult;

/// A level-triggered event between two sides of a ring: pending from a `notify` until a `drain`.
pub(crate) trait Notifier {
    /// Makes the event pending, waking a side asleep in [`Notifier::wait`].
    fn notify(&self);
    /// Clears the event, so that the next `wait` sleeps until a later `notify`.
    fn drain(&self);
    /// Sleeps until the event is pending (leaving it pending), `peer` (a pidfd) is readable, or `timeout`
    /// passes. May return early, e.g. for a signal; callers re-check their condition after every return.
    fn wait(&self, peer: Option<RawFd>, timeout: Duration);
}

/// The event of real builds: [`EventFd`]; of the model check: [`ModelEvent`].
#[cfg(not(loom))]
pub(crate) type Event = EventFd;
#[cfg(loom)]
pub(crate) type Event = ModelEvent;

/// A non-blocking eventfd. Writes add to a counter; one read drains it, however many writes it absorbed.
#[cfg(not(loom))]
pub(crate) struct EventFd(OwnedFd);

#[cfg(not(loom))]
impl EventFd {
    pub fn new() -> RingResult<Self> {
        // SAFETY: plain syscall.
        let raw = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if raw < 0 {
            return Err(RingError::os("eventfd"));
        }
        // SAFETY: a fresh descriptor nothing else owns.
        Ok(Self(unsafe { OwnedFd::from_raw_fd(raw) }))
    }

    /// Adopts a copy of a peer's eventfd, checking that it is one (a stray descriptor would poll wrongly).
    pub fn attach(fd: BorrowedFd<'_>) -> RingResult<Self> {
        let owned = fd.try_clone_to_owned().map_err(|source| RingError::Os { op: "dup", source })?;
        let link = std::fs::read_link(format!("/proc/self/fd/{}", owned.as_raw_fd()))
            .map_err(|source| RingError::Os { op: "readlink(/proc/self/fd)", source })?;
        if link.to_str() != Some("anon_inode:[eventfd]") {
            return Err(RingError::corrupt(format!("descriptor {} is not an eventfd", fd.as_raw_fd())));
        }
        // The peer created it non-blocking, but the flag belongs to the open file description we now share.
        // SAFETY: plain fcntl on a descriptor we own.
        unsafe {
            let flags = libc::fcntl(owned.as_raw_fd(), libc::F_GETFL);
            libc::fcntl(owned.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK);
        }
        Ok(Self(owned))
    }

    pub fn raw_fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }
}

#[cfg(not(loom))]
impl Notifier for EventFd {
    fn notify(&self) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a valid u64. It can only fail if the counter would overflow (it cannot:
        // every sleeper drains it) so the result carries no information.
        unsafe { libc::write(self.0.as_raw_fd(), (&raw const one).cast(), 8) };
    }

    fn drain(&self) {
        let mut count: u64 = 0;
        // SAFETY: reads 8 bytes into a valid u64; EAGAIN (nothing to drain) is the expected failure.
        unsafe { libc::read(self.0.as_raw_fd(), (&raw mut count).cast(), 8) };
    }

    fn wait(&self, peer: Option<RawFd>, timeout: Duration) {
        poll_ready(&[self.raw_fd(), peer.unwrap_or(-1)], timeout);
    }
}

/// The model check's event: a pending flag under a loom mutex, and a condition variable to sleep on, shared by
/// the ring's two handles as the two processes share an eventfd.
#[cfg(loom)]
#[derive(Default)]
pub(crate) struct ModelEvent(std::sync::Arc<ModelEventState>);

#[cfg(loom)]
#[derive(Default)]
struct ModelEventState {
    pending: loom::sync::Mutex<bool>,
    notified: loom::sync::Condvar,
}

#[cfg(loom)]
impl ModelEvent {
    #[allow(clippy::unnecessary_wraps)] // the signature of `EventFd::new`
    pub fn new() -> RingResult<Self> {
        Ok(Self::default())
    }

    /// The same event for the peer's handle.
    pub fn share(&self) -> Self {
        Self(std::sync::Arc::clone(&self.0))
    }
}

#[cfg(loom)]
impl Notifier for ModelEvent {
    fn notify(&self) {
        *self.0.pending.lock().unwrap() = true;
        self.0.notified.notify_all();
    }

    fn drain(&self) {
        *self.0.pending.lock().unwrap() = false;
    }

    /// Only a `notify` ends this wait: the model has no clock and no peer process, and a wait that only its
    /// time limit could end is the lost wake-up the model check looks for.
    fn wait(&self, peer: Option<RawFd>, _timeout: Duration) {
        assert!(peer.is_none(), "the model has no peer process");
        let mut pending = self.0.pending.lock().unwrap();
        while !*pending {
            pending = self.0.notified.wait(pending).unwrap();
        }
    }
}

/// The peer process, watched through a pidfd opened the first time it is needed.
pub(crate) enum Peer {
    /// The peer is this process (a ring used between threads): its death cannot be observed by itself.
    Myself,
    /// A live process, readable (POLLIN) once it has exited.
    Process(OwnedFd),
    /// The process was already gone when we first looked.
    Gone,
}

impl Peer {
    pub fn watch(pid: u32) -> Self {
        if pid == std::process::id() {
            return Self::Myself;
        }
        let Ok(pid) = libc::pid_t::try_from(pid) else { return Self::Gone };
        // SAFETY: plain syscall; a failure leaves no state.
        let raw = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
        if raw < 0 {
            // ESRCH: the process no longer exists. Anything else (e.g. a kernel without pidfds) falls back to
            // treating the peer as unobservable rather than dead.
            return if std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH) {
                Self::Gone
            } else {
                Self::Myself
            };
        }
        // SAFETY: a fresh descriptor nothing else owns.
        Self::Process(unsafe { OwnedFd::from_raw_fd(raw as RawFd) })
    }

    pub fn raw_fd(&self) -> Option<RawFd> {
        match self {
            Self::Process(fd) => Some(fd.as_raw_fd()),
            _ => None,
        }
    }

    pub fn is_dead(&self) -> bool {
        match self {
            Self::Myself => false,
            Self::Gone => true,
            Self::Process(fd) => poll_ready(&[fd.as_raw_fd()], Duration::ZERO),
        }
    }
}

/// A lazily resolved peer: the creator learns its peer's pid only once the peer attaches. Once resolved it
/// never changes, so descriptors handed to `poll` stay valid for the ring's lifetime.
#[derive(Default)]
pub(crate) struct PeerCell(OnceLock<Peer>);

impl PeerCell {
    pub fn resolved(pid: u32) -> Self {
        let cell = Self::default();
        let _ = cell.0.set(Peer::watch(pid));
        cell
    }

    /// The peer, once its pid is known (`pid == 0` means nobody has attached yet).
    pub fn get(&self, pid: u32) -> Option<&Peer> {
        if pid == 0 { self.0.get() } else { Some(self.0.get_or_init(|| Peer::watch(pid))) }
    }
}

/// Waits until one of `fds` is readable or `timeout` passes; returns whether one was readable. Interrupted
/// waits (a signal for Python to handle) return early as "not ready" so the caller can check signals.
pub(crate) fn poll_ready(fds: &[RawFd], timeout: Duration) -> bool {
    let mut pollfds: Vec<libc::pollfd> =
        fds.iter().map(|&fd| libc::pollfd { fd, events: libc::POLLIN, revents: 0 }).collect();
    let millis = libc::c_int::try_from(timeout.as_millis()).unwrap_or(libc::c_int::MAX);
    // Round a sub-millisecond timeout up, so a short wait does not degrade into a busy loop.
    let millis = if millis == 0 && !timeout.is_zero() { 1 } else { millis };
    // SAFETY: `pollfds` is a valid array of `len` pollfd structs.
    let ready = unsafe { libc::poll(pollfds.as_mut_ptr(), pollfds.len() as libc::nfds_t, millis) };
    ready > 0
}
