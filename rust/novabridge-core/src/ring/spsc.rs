//! The ring: the Rigtorp/rtrb SPSC algorithm over a shared segment, with variable-length records.
//!
//! `head` and `tail` are monotonic byte counters (never wrapped; offsets are `counter & (capacity - 1)`).
//! Each side keeps a cached copy of the other's counter and reloads it only when the cache says "full" or
//! "empty". The producer copies a record into free space and then publishes `tail` with `Release`; the consumer
//! copies a record out and then publishes `head` with `Release`. A process that dies mid-copy has not published,
//! so its peer never sees a torn record.
//!
//! Every counter and length read from shared memory is validated before it is used to form an address, so a
//! corrupt or hostile peer produces [`RingError::Corrupt`], never an out-of-bounds access.

use std::collections::VecDeque;
#[cfg(not(loom))]
use std::os::fd::BorrowedFd;
use std::os::fd::RawFd;
use std::sync::PoisonError;
use std::time::{Duration, Instant};

use super::layout::{
    DATA_OFFSET, Header, Identity, MAX_CAPACITY, MAX_NAME_LEN, MIN_CAPACITY, STATE_CLOSED, STATE_INIT, STATE_READY,
};
use super::record::{
    ALIGN, RECORD_HEADER_LEN, RecordHeader, WRAP_MARK, decode_header, encode_header, framed_len, max_payload,
};
use super::shm::SharedSegment;
#[cfg(not(loom))]
use super::wake::EventFd;
use super::wake::{Event, Notifier, Peer, PeerCell};
use crate::clock::monotonic_ns;
use crate::eventcount;
use crate::sync::{AtomicBool, AtomicU64, Mutex, MutexGuard, Ordering};
use crate::{CloseReason, RingError, RingResult};

/// Longest single sleep inside a blocking call, so that callers (Python) can check for signals between steps.
/// A signal delivered to the sleeping thread also ends the sleep at once (poll returns EINTR).
pub const WAIT_STEP: Duration = Duration::from_millis(100);

/// Spins on a fresh check before announcing a sleep: a record that arrives within a microsecond or so is
/// picked up without the cost of a wake-up. The model check spins once: the spin only ever returns early,
/// and each further turn would multiply the interleavings loom explores without reaching a new state.
const SPIN_CHECKS: u32 = if cfg!(loom) { 1 } else { 64 };

/// The immutable description of a ring.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RingInfo {
    pub capacity: usize,
    pub max_payload: usize,
    pub name: String,
    pub ring_id: u64,
    pub creator_pid: u32,
    pub created_ns: u64,
}

/// The descriptors a peer needs to attach, in the order [`Ring::attach`] takes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RingFds {
    pub segment: RawFd,
    pub data_ready: RawFd,
    pub space_ready: RawFd,
}

/// Counters shared by both sides (each written only by its owner).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RingStats {
    pub records_written: u64,
    pub bytes_written: u64,
    pub records_read: u64,
    pub bytes_read: u64,
    pub records_skipped: u64,
    /// Bytes the ring holds now (framing and wrap padding included).
    pub fill_bytes: u64,
    pub capacity: u64,
    /// Signals the producer sent to a sleeping consumer.
    pub data_wakeups: u64,
    /// Signals the consumer sent to a producer sleeping on a full ring.
    pub space_wakeups: u64,
    /// Writes that found the ring full.
    pub full_events: u64,
}

struct ProducerState {
    tail: u64,
    cached_head: u64,
    next_seq: u64,
}

struct ConsumerState {
    head: u64,
    cached_tail: u64,
    /// Records a filtered `skip` kept: read before anything still in the ring.
    kept: VecDeque<(RecordHeader, Vec<u8>)>,
}

pub struct Ring {
    segment: SharedSegment,
    info: RingInfo,
    mask: u64,
    data_ready: Event,
    space_ready: Event,
    is_creator: bool,
    peer: PeerCell,
    closed_here: AtomicBool,
    producer: Mutex<ProducerState>,
    consumer: Mutex<ConsumerState>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // The state is a few integers that are consistent at every await-free point; a panic elsewhere cannot
    // leave them half-updated, so poisoning carries no information.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn random_u64() -> u64 {
    let mut value = 0u64;
    // SAFETY: writes at most 8 bytes into a valid u64. On failure the id falls back to the clock, which only
    // needs to make stale segments unlikely to match, not to be secret.
    let got = unsafe { libc::getrandom((&raw mut value).cast(), 8, 0) };
    if got == 8 { value } else { monotonic_ns() ^ u64::from(std::process::id()) << 32 }
}

impl Ring {
    /// Creates a ring of `capacity` bytes (a power of two from 4 KiB to 1 GiB) in a new sealed memfd.
    pub fn create(capacity: usize, name: &str) -> RingResult<Self> {
        if !capacity.is_power_of_two() || !(MIN_CAPACITY..=MAX_CAPACITY).contains(&capacity) {
            return Err(RingError::InvalidArgument(format!(
                "capacity must be a power of two from {MIN_CAPACITY} to {MAX_CAPACITY} bytes, got {capacity}"
            )));
        }
        if name.len() > MAX_NAME_LEN || name.contains('\0') {
            return Err(RingError::InvalidArgument(format!(
                "ring name must be at most {MAX_NAME_LEN} bytes of UTF-8 without NUL, got {name:?}"
            )));
        }
        let segment = SharedSegment::create(name, DATA_OFFSET + capacity)?;
        let identity = Identity {
            capacity: capacity as u64,
            data_offset: DATA_OFFSET as u32,
            creator_pid: std::process::id(),
            ring_id: random_u64(),
            created_ns: monotonic_ns(),
            name: name.to_owned(),
        };
        let ring = Self::assemble(segment, &identity, Event::new()?, Event::new()?, true, PeerCell::default())?;
        let line = &ring.header().id;
        identity.store(line);
        line.state.store(STATE_READY, Ordering::Release);
        Ok(ring)
    }

    /// Attaches to a ring a peer created, from copies of the descriptors of [`Ring::fds`] (the caller's
    /// descriptors stay open and remain the caller's to close). Validates the header before anything else.
    #[cfg(not(loom))]
    pub fn attach(fds: [BorrowedFd<'_>; 3]) -> RingResult<Self> {
        let [segment_fd, data_fd, space_fd] = fds;
        let segment = SharedSegment::attach(segment_fd, DATA_OFFSET + MIN_CAPACITY)?;
        Self::join(segment, || Ok((EventFd::attach(data_fd)?, EventFd::attach(space_fd)?)))
    }

    /// The model check's [`Ring::attach`]: the peer's handle on the same segment and events, as a second
    /// process gets them, through the same validation and claim.
    #[cfg(loom)]
    pub(crate) fn attach_in_model(&self) -> RingResult<Self> {
        Self::join(self.segment.share(), || Ok((self.data_ready.share(), self.space_ready.share())))
    }

    /// The peer's side of attaching once it has the segment: checks the header, takes the events, claims the ring.
    fn join(segment: SharedSegment, events: impl FnOnce() -> RingResult<(Event, Event)>) -> RingResult<Self> {
        let header = segment.header();
        match header.id.state.load(Ordering::Acquire) {
            STATE_READY => {}
            STATE_CLOSED => return Err(RingError::Closed(CloseReason::ClosedByPeer)),
            STATE_INIT => return Err(RingError::corrupt("the ring's header was never completed")),
            state => return Err(RingError::corrupt(format!("unknown state {state}"))),
        }
        let identity = Identity::load(&header.id, segment.len())?;
        let (data_ready, space_ready) = events()?;
        let peer = PeerCell::resolved(identity.creator_pid);
        let ring = Self::assemble(segment, &identity, data_ready, space_ready, false, peer)?;
        // Claim the ring last, so that an attach refused for any other reason leaves it free for a good one.
        let me = std::process::id();
        if let Err(pid) = ring.header().id.attacher_pid.compare_exchange(0, me, Ordering::AcqRel, Ordering::Acquire)
            && pid != me
        {
            // Dropping `ring` would close the ring for its rightful peer.
            ring.closed_here.store(true, Ordering::Release);
            return Err(RingError::AlreadyAttached { pid });
        }
        Ok(ring)
    }

    fn assemble(
        segment: SharedSegment,
        identity: &Identity,
        data_ready: Event,
        space_ready: Event,
        is_creator: bool,
        peer: PeerCell,
    ) -> RingResult<Self> {
        let capacity = identity.capacity as usize;
        let header = segment.header();
        let tail = header.producer.tail.load(Ordering::Acquire);
        let head = header.consumer.head.load(Ordering::Acquire);
        // Both sides start from these counters; after this they only ever compare them with validated values.
        // The bound keeps every later sum far from overflow (2^62 bytes is a century at 1 GB/s).
        if head > tail || tail - head > identity.capacity || head % ALIGN as u64 != 0 || tail >= 1 << 62 {
            return Err(RingError::corrupt(format!("indices head {head} and tail {tail} are inconsistent")));
        }
        let next_seq = header.producer.records_written.load(Ordering::Relaxed);
        Ok(Self {
            info: RingInfo {
                capacity,
                max_payload: max_payload(capacity),
                name: identity.name.clone(),
                ring_id: identity.ring_id,
                creator_pid: identity.creator_pid,
                created_ns: identity.created_ns,
            },
            segment,
            mask: identity.capacity - 1,
            data_ready,
            space_ready,
            is_creator,
            peer,
            closed_here: AtomicBool::new(false),
            producer: Mutex::new(ProducerState { tail, cached_head: head, next_seq }),
            consumer: Mutex::new(ConsumerState { head, cached_tail: head, kept: VecDeque::new() }),
        })
    }

    fn header(&self) -> &Header {
        self.segment.header()
    }

    #[must_use]
    pub fn info(&self) -> &RingInfo {
        &self.info
    }

    #[must_use]
    #[cfg(not(loom))]
    pub fn fds(&self) -> RingFds {
        RingFds {
            segment: self.segment.raw_fd(),
            data_ready: self.data_ready.raw_fd(),
            space_ready: self.space_ready.raw_fd(),
        }
    }

    /// The peer's pid: the attacher (0 until one attaches) on the creator's side, the creator on the other.
    #[must_use]
    pub fn peer_pid(&self) -> u32 {
        if self.is_creator { self.header().id.attacher_pid.load(Ordering::Acquire) } else { self.info.creator_pid }
    }

    fn peer(&self) -> Option<&Peer> {
        self.peer.get(self.peer_pid())
    }

    /// Why the ring no longer carries records, if it does not. Checks the peer's liveness (one `poll`), so
    /// callers ask only when the ring is empty or full.
    #[must_use]
    pub fn close_reason(&self) -> Option<CloseReason> {
        self.close_flag().or_else(|| self.peer().is_some_and(Peer::is_dead).then_some(CloseReason::PeerDied))
    }

    /// Whether either side closed the ring: two loads, no system call. The peer's death is noticed by the
    /// sleeps instead, which watch its pidfd.
    fn close_flag(&self) -> Option<CloseReason> {
        if self.closed_here.load(Ordering::Acquire) {
            Some(CloseReason::ClosedHere)
        } else if self.header().id.state.load(Ordering::Acquire) == STATE_CLOSED {
            Some(CloseReason::ClosedByPeer)
        } else {
            None
        }
    }

    /// Closes the ring for both sides: the peer drains what was written, then sees it closed. Wakes every
    /// sleeper on either side. Idempotent.
    pub fn close(&self) {
        self.closed_here.store(true, Ordering::Release);
        self.header().id.state.store(STATE_CLOSED, Ordering::Release);
        self.data_ready.notify();
        self.space_ready.notify();
    }

    #[must_use]
    pub fn stats(&self) -> RingStats {
        let h = self.header();
        let tail = h.producer.tail.load(Ordering::Acquire);
        let head = h.consumer.head.load(Ordering::Acquire);
        RingStats {
            records_written: h.producer.records_written.load(Ordering::Relaxed),
            bytes_written: h.producer.bytes_written.load(Ordering::Relaxed),
            records_read: h.consumer.records_read.load(Ordering::Relaxed),
            bytes_read: h.consumer.bytes_read.load(Ordering::Relaxed),
            records_skipped: h.consumer.records_skipped.load(Ordering::Relaxed),
            fill_bytes: tail.saturating_sub(head).min(self.info.capacity as u64),
            capacity: self.info.capacity as u64,
            data_wakeups: h.producer.data_wakeups.load(Ordering::Relaxed),
            space_wakeups: h.consumer.space_wakeups.load(Ordering::Relaxed),
            full_events: h.producer.full_events.load(Ordering::Relaxed),
        }
    }

    // ---------------------------------------------------------------------------------------------------
    // Producer

    /// Writes one record if it fits now. `Ok(None)` means the ring is full (nothing was written).
    pub fn try_write(&self, kind: u16, flags: u16, payload: &[u8]) -> RingResult<Option<u64>> {
        if payload.len() > self.info.max_payload {
            return Err(RingError::RecordTooLarge { len: payload.len(), max: self.info.max_payload });
        }
        if self.closed_here.load(Ordering::Acquire) {
            return Err(RingError::Closed(CloseReason::ClosedHere));
        }
        let h = self.header();
        if h.id.state.load(Ordering::Acquire) == STATE_CLOSED {
            return Err(RingError::Closed(CloseReason::ClosedByPeer));
        }
        let mut st = lock(&self.producer);
        if h.producer.tail.load(Ordering::Relaxed) != st.tail {
            return Err(RingError::corrupt(
                "the tail moved under this producer: another handle writes to this ring, and a ring has one producer",
            ));
        }
        let framed = framed_len(payload.len());
        let needed = self.space_needed(st.tail, framed);
        if !self.has_space(&mut st, needed)? {
            return Ok(None);
        }
        let capacity = self.info.capacity;
        let mut pos = st.tail;
        let offset = (pos & self.mask) as usize;
        if framed > capacity - offset {
            // SAFETY: offset is 8-aligned and below capacity, so 4 bytes fit; the range is free (checked above).
            unsafe { self.segment.write_data(offset, &WRAP_MARK.to_le_bytes()) };
            pos += (capacity - offset) as u64;
        }
        let at = (pos & self.mask) as usize;
        let header = RecordHeader { kind, flags, seq: st.next_seq, t_ns: monotonic_ns() };
        let encoded = encode_header(payload.len() as u32, &header);
        // SAFETY: [at, at + framed) lies inside the data area (framed <= capacity - at by construction) and is
        // free space that only the producer writes until `tail` is published below.
        unsafe {
            self.segment.write_data(at, &encoded);
            self.segment.write_data(at + RECORD_HEADER_LEN, payload);
        }
        st.next_seq += 1;
        st.tail = pos + framed as u64;
        h.producer.tail.store(st.tail, Ordering::Release);
        bump(&h.producer.records_written, 1);
        bump(&h.producer.bytes_written, payload.len() as u64);
        drop(st);
        if eventcount::must_signal(&h.producer.consumer_waiting) {
            self.data_ready.notify();
            bump(&h.producer.data_wakeups, 1);
        }
        Ok(Some(header.seq))
    }

    /// Bytes a record of `framed` bytes consumes at `tail`, including the wasted end when it must wrap.
    fn space_needed(&self, tail: u64, framed: usize) -> usize {
        let to_end = self.info.capacity - (tail & self.mask) as usize;
        if framed <= to_end { framed } else { to_end + framed }
    }

    /// Whether `needed` bytes are free, reloading the consumer's index only when the cached one says no.
    fn has_space(&self, st: &mut ProducerState, needed: usize) -> RingResult<bool> {
        let capacity = self.info.capacity as u64;
        if capacity - (st.tail - st.cached_head) >= needed as u64 {
            return Ok(true);
        }
        let head = self.header().consumer.head.load(Ordering::Acquire);
        if head > st.tail || st.tail - head > capacity || head % ALIGN as u64 != 0 {
            return Err(RingError::corrupt(format!(
                "consumer index {head} is outside [tail - capacity, tail] for tail {}",
                st.tail
            )));
        }
        st.cached_head = head;
        Ok(capacity - (st.tail - head) >= needed as u64)
    }

    /// Writes one record, waiting up to `timeout` (`None`: without limit) for room. Between sleeps of at most
    /// [`WAIT_STEP`], `park` runs the sleep it is given (e.g. with the GIL released) and may abort the write.
    pub fn write<E: From<RingError>>(
        &self,
        kind: u16,
        flags: u16,
        payload: &[u8],
        timeout: Option<Duration>,
        mut park: impl FnMut(&(dyn Fn() + Sync)) -> Result<(), E>,
    ) -> Result<u64, E> {
        if let Some(seq) = self.try_write(kind, flags, payload)? {
            return Ok(seq);
        }
        bump(&self.header().producer.full_events, 1);
        let framed = framed_len(payload.len());
        let deadline = timeout.map(|t| Instant::now() + t);
        loop {
            if let Some(reason) = self.close_reason() {
                return Err(RingError::Closed(reason).into());
            }
            let Some(step) = step_until(deadline) else {
                let st = lock(&self.producer);
                let free = self.info.capacity - (st.tail - st.cached_head) as usize;
                return Err(RingError::Full { needed: self.space_needed(st.tail, framed), free }.into());
            };
            park(&|| self.wait_for_space(framed, step))?;
            if let Some(seq) = self.try_write(kind, flags, payload)? {
                return Ok(seq);
            }
        }
    }

    fn wait_for_space(&self, framed: usize, timeout: Duration) {
        let h = self.header();
        let has_room = || {
            let st = lock(&self.producer);
            let head = h.consumer.head.load(Ordering::Acquire);
            st.tail.saturating_sub(head) as usize + self.space_needed(st.tail, framed) <= self.info.capacity
        };
        self.space_ready.drain();
        eventcount::announce(&h.consumer.producer_waiting);
        if !has_room() && self.close_flag().is_none() {
            self.sleep_on(&self.space_ready, timeout);
        }
        eventcount::withdraw(&h.consumer.producer_waiting);
    }

    fn sleep_on(&self, event: &Event, timeout: Duration) {
        event.wait(self.peer().and_then(Peer::raw_fd), timeout);
    }

    // ---------------------------------------------------------------------------------------------------
    // Consumer

    /// Reads the next record if there is one, handing its header and payload to `take`.
    pub fn try_read<T>(&self, take: impl FnOnce(RecordHeader, &[u8]) -> T) -> RingResult<Option<T>> {
        let mut st = lock(&self.consumer);
        let delivered = |payload: &[u8]| {
            let line = &self.header().consumer;
            bump(&line.records_read, 1);
            bump(&line.bytes_read, payload.len() as u64);
        };
        if let Some((header, payload)) = st.kept.pop_front() {
            delivered(&payload);
            return Ok(Some(take(header, &payload)));
        }
        self.read_locked(&mut st, |header, payload| {
            delivered(payload);
            take(header, payload)
        })
    }

    fn read_locked<T>(
        &self,
        st: &mut ConsumerState,
        take: impl FnOnce(RecordHeader, &[u8]) -> T,
    ) -> RingResult<Option<T>> {
        let capacity = self.info.capacity;
        let h = self.header();
        if h.consumer.head.load(Ordering::Relaxed) != st.head {
            return Err(RingError::corrupt(
                "the head moved under this consumer: another handle reads this ring, and a ring has one consumer",
            ));
        }
        loop {
            if st.head == st.cached_tail {
                let tail = h.producer.tail.load(Ordering::Acquire);
                if tail < st.head || tail - st.head > capacity as u64 || tail % ALIGN as u64 != 0 {
                    return Err(RingError::corrupt(format!(
                        "producer index {tail} is outside [head, head + capacity] for head {}",
                        st.head
                    )));
                }
                st.cached_tail = tail;
                if tail == st.head {
                    return Ok(None);
                }
            }
            let offset = (st.head & self.mask) as usize;
            let to_end = capacity - offset;
            let available = (st.cached_tail - st.head) as usize;
            let mut len_field = [0u8; 4];
            // SAFETY: offset is 8-aligned and below capacity, so 4 bytes lie inside the data area; the producer
            // published at least 8 bytes here (available is a positive multiple of 8).
            unsafe { self.segment.read_data(offset, &mut len_field) };
            if u32::from_le_bytes(len_field) == WRAP_MARK {
                if to_end > available {
                    return Err(RingError::corrupt("wrap marker beyond the published tail"));
                }
                st.head += to_end as u64;
                continue;
            }
            let mut raw = [0u8; RECORD_HEADER_LEN];
            if to_end < RECORD_HEADER_LEN || available < RECORD_HEADER_LEN {
                return Err(RingError::corrupt(format!("truncated record header at offset {offset}")));
            }
            // SAFETY: checked just above that the header lies inside both the data area and the published range.
            unsafe { self.segment.read_data(offset, &mut raw) };
            let (len, header) = decode_header(&raw);
            let len = len as usize;
            let framed = framed_len(len);
            if len > self.info.max_payload || framed > to_end || framed > available {
                return Err(RingError::corrupt(format!(
                    "record length {len} at offset {offset} exceeds the published data ({available} bytes)"
                )));
            }
            // SAFETY: [offset + header, offset + framed) is inside the data area and the published range,
            // which the producer does not write until `head` moves past it (a hostile peer could, which would
            // garble the payload bytes but not the bounds, all of which were checked above).
            let payload = unsafe { self.segment.data_slice(offset + RECORD_HEADER_LEN, len) };
            let out = take(header, payload);
            st.head += framed as u64;
            h.consumer.head.store(st.head, Ordering::Release);
            if eventcount::must_signal(&h.consumer.producer_waiting) {
                self.space_ready.notify();
                bump(&h.consumer.space_wakeups, 1);
            }
            return Ok(Some(out));
        }
    }

    /// Reads the next record, or says why there will be none: after the peer closes or dies, what it wrote
    /// is still delivered, and only then is the ring reported closed.
    pub fn read_or_closed<T>(&self, take: impl FnMut(RecordHeader, &[u8]) -> T) -> RingResult<Option<T>> {
        self.read_or(take, Self::close_reason)
    }

    /// Reads the next record; if there is none, asks `closed` whether the ring is closed, and if so reads once
    /// more before reporting it: records written before the close were published before it, so they are
    /// visible now and are delivered first.
    fn read_or<T>(
        &self,
        mut take: impl FnMut(RecordHeader, &[u8]) -> T,
        closed: impl Fn(&Self) -> Option<CloseReason>,
    ) -> RingResult<Option<T>> {
        if let Some(out) = self.try_read(&mut take)? {
            return Ok(Some(out));
        }
        match closed(self) {
            None => Ok(None),
            Some(reason) => self.try_read(take)?.map_or(Err(RingError::Closed(reason)), |out| Ok(Some(out))),
        }
    }

    /// Reads the next record, waiting up to `timeout` (`None`: without limit). `Ok(None)` on timeout. See
    /// [`Ring::write`] for `park`.
    pub fn read<T, E: From<RingError>>(
        &self,
        timeout: Option<Duration>,
        mut take: impl FnMut(RecordHeader, &[u8]) -> T,
        mut park: impl FnMut(&(dyn Fn() + Sync)) -> Result<(), E>,
    ) -> Result<Option<T>, E> {
        // Before the first sleep only the close flags are checked; a dead peer's pidfd ends that sleep at once,
        // and every check after a sleep includes the peer's liveness.
        if let Some(out) = self.read_or(&mut take, Self::close_flag)? {
            return Ok(Some(out));
        }
        let deadline = timeout.map(|t| Instant::now() + t);
        loop {
            let Some(step) = step_until(deadline) else { return Ok(None) };
            park(&|| self.wait_for_data(step))?;
            if let Some(out) = self.read_or(&mut take, Self::close_reason)? {
                return Ok(Some(out));
            }
        }
    }

    fn has_data(&self) -> bool {
        let h = self.header();
        h.producer.tail.load(Ordering::Acquire) != h.consumer.head.load(Ordering::Relaxed)
    }

    fn wait_for_data(&self, timeout: Duration) {
        for _ in 0..SPIN_CHECKS {
            if self.has_data() {
                return;
            }
            // Not loom's spin hint, even in the model check: loom takes it as a yield after which the thread
            // sees only newer values, which would hide a stale re-check from the model.
            std::hint::spin_loop();
        }
        if self.prepare_wait() {
            self.sleep_on(&self.data_ready, timeout);
        }
        self.finish_wait();
    }

    /// For event loops: announces that the consumer is about to sleep on [`Ring::wait_fds`] and returns
    /// whether it should (nothing arrived and the ring is open). Always pair with [`Ring::finish_wait`].
    ///
    /// The eventfd is drained here, before the announcement, rather than after waking: a signal that lands
    /// between the drain and the sleep still wakes the sleep, and a woken consumer goes straight to the
    /// record without a system call in between.
    #[must_use]
    pub fn prepare_wait(&self) -> bool {
        self.data_ready.drain();
        eventcount::announce(&self.header().producer.consumer_waiting);
        !self.has_data() && self.close_flag().is_none()
    }

    /// Ends a wait begun with [`Ring::prepare_wait`]: withdraws the announcement.
    pub fn finish_wait(&self) {
        eventcount::withdraw(&self.header().producer.consumer_waiting);
    }

    /// The descriptors that become readable when the consumer should wake: the data eventfd and, once the
    /// peer is known, its pidfd.
    #[must_use]
    #[cfg(not(loom))]
    pub fn wait_fds(&self) -> Vec<RawFd> {
        let mut fds = vec![self.data_ready.raw_fd()];
        fds.extend(self.peer().and_then(Peer::raw_fd));
        fds
    }

    /// Drops every queued record, or with `kind` only those of that kind (the others stay queued, in order).
    /// Returns how many were dropped.
    pub fn skip(&self, kind: Option<u16>) -> RingResult<usize> {
        let mut st = lock(&self.consumer);
        let before = st.kept.len();
        let mut kept = std::mem::take(&mut st.kept);
        kept.retain(|(header, _)| kind.is_some_and(|k| header.kind != k));
        let mut dropped = before - kept.len();
        while let Some(keep) = self.read_locked(&mut st, |header, payload| {
            kind.is_some_and(|k| header.kind != k).then(|| (header, payload.to_vec()))
        })? {
            match keep {
                Some(record) => kept.push_back(record),
                None => dropped += 1,
            }
        }
        st.kept = kept;
        bump(&self.header().consumer.records_skipped, dropped as u64);
        Ok(dropped)
    }
}

impl Drop for Ring {
    fn drop(&mut self) {
        // A handle that goes away without `close()` must not leave its peer waiting forever.
        if !self.closed_here.load(Ordering::Acquire) {
            self.close();
        }
    }
}

/// Counters are written by one side only, so a load and a store suffice (no locked read-modify-write).
fn bump(counter: &AtomicU64, by: u64) {
    counter.store(counter.load(Ordering::Relaxed).wrapping_add(by), Ordering::Relaxed);
}

/// The next sleep: up to [`WAIT_STEP`], or what remains before `deadline`; `None` once the deadline passed.
fn step_until(deadline: Option<Instant>) -> Option<Duration> {
    match deadline {
        None => Some(WAIT_STEP),
        Some(deadline) => {
            let left = deadline.saturating_duration_since(Instant::now());
            (!left.is_zero()).then(|| left.min(WAIT_STEP))
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests;

#[cfg(all(test, loom))]
mod model_check;
