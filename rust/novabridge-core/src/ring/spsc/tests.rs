use std::os::fd::BorrowedFd;
use std::sync::Arc;
use std::thread;

use crate::sync::AtomicU32;

use super::*;

type Owned = (RecordHeader, Vec<u8>);

#[allow(clippy::unnecessary_wraps)] // the shape `Ring::read` and `Ring::write` expect
fn no_park(wait: &(dyn Fn() + Sync)) -> Result<(), RingError> {
    wait();
    Ok(())
}

fn take(header: RecordHeader, payload: &[u8]) -> Owned {
    (header, payload.to_vec())
}

fn attach_to(ring: &Ring) -> RingResult<Ring> {
    let fds = ring.fds();
    // SAFETY: the descriptors belong to `ring`, which outlives the call.
    let borrow = |fd| unsafe { BorrowedFd::borrow_raw(fd) };
    Ring::attach([borrow(fds.segment), borrow(fds.data_ready), borrow(fds.space_ready)])
}

fn payload(seed: usize, len: usize) -> Vec<u8> {
    (0..len).map(|i| (seed.wrapping_mul(31) ^ i) as u8).collect()
}

#[test]
fn create_rejects_bad_capacity_and_name() {
    for capacity in [0, 1000, 2048, 4095, 6000, MAX_CAPACITY * 2] {
        assert!(matches!(Ring::create(capacity, ""), Err(RingError::InvalidArgument(_))), "{capacity}");
    }
    assert!(matches!(Ring::create(4096, "a\0b"), Err(RingError::InvalidArgument(_))));
    assert!(matches!(Ring::create(4096, &"x".repeat(49)), Err(RingError::InvalidArgument(_))));
    assert_eq!(Ring::create(4096, "uplink").unwrap().info().name, "uplink");
}

#[test]
fn a_record_round_trips_with_its_header() {
    let ring = Ring::create(4096, "t").unwrap();
    let before = monotonic_ns();
    assert_eq!(ring.try_write(7, 0xABCD, b"hello").unwrap(), Some(0));
    assert_eq!(ring.try_write(1, 0, b"").unwrap(), Some(1));
    let (header, bytes) = ring.try_read(take).unwrap().unwrap();
    assert_eq!((header.kind, header.flags, header.seq, bytes.as_slice()), (7, 0xABCD, 0, &b"hello"[..]));
    assert!(header.t_ns >= before && header.t_ns <= monotonic_ns());
    let (header, bytes) = ring.try_read(take).unwrap().unwrap();
    assert_eq!((header.seq, bytes.len()), (1, 0));
    assert!(ring.try_read(take).unwrap().is_none());
    let stats = ring.stats();
    assert_eq!((stats.records_written, stats.records_read, stats.bytes_written, stats.fill_bytes), (2, 2, 5, 0));
}

#[test]
fn records_wrap_around_byte_exact_and_in_order() {
    let ring = Ring::create(4096, "").unwrap();
    let max = ring.info().max_payload;
    let mut written = VecDeque::new();
    let mut seq = 0u64;
    let mut next_read = 0u64;
    for i in 0..5000usize {
        let len = (i * 7919) % (max + 1);
        let bytes = payload(i, len);
        match ring.try_write(3, 0, &bytes).unwrap() {
            Some(s) => {
                assert_eq!(s, seq);
                seq += 1;
                written.push_back(bytes);
            }
            None => {
                // Full: drain a few and retry later; nothing may have been half-written.
                for _ in 0..3 {
                    if let Some((header, got)) = ring.try_read(take).unwrap() {
                        assert_eq!(header.seq, next_read);
                        next_read += 1;
                        assert_eq!(got, written.pop_front().unwrap());
                    }
                }
            }
        }
    }
    while let Some((header, got)) = ring.try_read(take).unwrap() {
        assert_eq!(header.seq, next_read);
        next_read += 1;
        assert_eq!(got, written.pop_front().unwrap());
    }
    assert!(written.is_empty());
    assert_eq!(next_read, seq);
    assert!(ring.stats().bytes_written > 100 * 4096, "the test must wrap many times");
}

#[test]
fn oversized_records_are_refused_and_full_is_reported() {
    let ring = Ring::create(4096, "").unwrap();
    let max = ring.info().max_payload;
    assert_eq!(max, 2048 - RECORD_HEADER_LEN);
    assert!(matches!(
        ring.try_write(1, 0, &vec![0; max + 1]),
        Err(RingError::RecordTooLarge { len, max: m }) if len == max + 1 && m == max
    ));
    assert!(ring.try_write(1, 0, &vec![0; max]).unwrap().is_some());
    assert!(ring.try_write(1, 0, &vec![0; max]).unwrap().is_some());
    assert!(ring.try_write(1, 0, &[0; 8]).unwrap().is_none());
    let timeout = Some(Duration::from_millis(20));
    let err = ring.write(1, 0, &[0; 8], timeout, no_park).unwrap_err();
    assert!(matches!(err, RingError::Full { needed: 32, free: 0 }), "{err:?}");
    assert_eq!(ring.stats().full_events, 1);
    assert_eq!(ring.stats().records_written, 2);
}

#[test]
fn blocking_read_wakes_on_write_from_another_thread() {
    let ring = Arc::new(Ring::create(1 << 16, "").unwrap());
    let reader = {
        let ring = Arc::clone(&ring);
        thread::spawn(move || {
            (0..200u64)
                .map(|_| ring.read(Some(Duration::from_secs(10)), take, no_park).unwrap().unwrap())
                .collect::<Vec<_>>()
        })
    };
    for i in 0..200usize {
        if i % 20 == 0 {
            thread::sleep(Duration::from_millis(2)); // let the reader fall asleep now and then
        }
        ring.write(2, 0, &payload(i, i), None, no_park).unwrap();
    }
    let got = reader.join().unwrap();
    for (i, (header, bytes)) in got.iter().enumerate() {
        assert_eq!((header.seq, bytes), (i as u64, &payload(i, i)));
    }
    assert!(ring.stats().data_wakeups >= 1, "the reader slept at least once");
}

#[test]
fn blocking_write_waits_for_space() {
    let ring = Arc::new(Ring::create(4096, "").unwrap());
    let big = vec![9u8; 1500];
    ring.try_write(1, 0, &big).unwrap().unwrap();
    ring.try_write(1, 0, &big).unwrap().unwrap();
    let writer = {
        let ring = Arc::clone(&ring);
        let big = big.clone();
        thread::spawn(move || ring.write(1, 0, &big, Some(Duration::from_secs(10)), no_park))
    };
    thread::sleep(Duration::from_millis(50));
    assert!(!writer.is_finished(), "the writer must wait while the ring is full");
    ring.try_read(take).unwrap().unwrap();
    assert_eq!(writer.join().unwrap().unwrap(), 2);
    assert!(ring.stats().space_wakeups >= 1);
}

#[test]
fn a_timed_read_returns_none() {
    let ring = Ring::create(4096, "").unwrap();
    let start = Instant::now();
    assert!(ring.read(Some(Duration::from_millis(30)), take, no_park).unwrap().is_none());
    assert!(start.elapsed() >= Duration::from_millis(30));
}

#[test]
fn park_can_abort_a_wait() {
    #[derive(Debug)]
    enum Abort {
        Interrupted,
        Ring,
    }
    impl From<RingError> for Abort {
        fn from(_: RingError) -> Self {
            Self::Ring
        }
    }
    let ring = Ring::create(4096, "").unwrap();
    let result = ring.read(None, take, |_wait: &(dyn Fn() + Sync)| Err::<(), _>(Abort::Interrupted));
    assert!(matches!(result, Err(Abort::Interrupted)));
}

#[test]
fn the_peer_drains_what_was_written_before_close() {
    let producer = Ring::create(4096, "").unwrap();
    let consumer = attach_to(&producer).unwrap();
    for i in 0..3usize {
        producer.try_write(1, 0, &payload(i, 10)).unwrap().unwrap();
    }
    producer.close();
    assert!(matches!(producer.try_write(1, 0, b"x"), Err(RingError::Closed(CloseReason::ClosedHere))));
    for i in 0..3usize {
        let (_, bytes) = consumer.read(None, take, no_park).unwrap().unwrap();
        assert_eq!(bytes, payload(i, 10));
    }
    assert!(matches!(consumer.read(None, take, no_park), Err(RingError::Closed(CloseReason::ClosedByPeer))));
    assert!(matches!(consumer.try_write(1, 0, b"x"), Err(RingError::Closed(CloseReason::ClosedByPeer))));
}

#[test]
fn close_wakes_a_blocked_reader() {
    let ring = Arc::new(Ring::create(4096, "").unwrap());
    let reader = {
        let ring = Arc::clone(&ring);
        thread::spawn(move || ring.read(None, take, no_park))
    };
    thread::sleep(Duration::from_millis(30));
    ring.close();
    let start = Instant::now();
    assert!(matches!(reader.join().unwrap(), Err(RingError::Closed(CloseReason::ClosedHere))));
    assert!(start.elapsed() < Duration::from_secs(1));
}

#[test]
fn skip_drops_everything_or_one_kind_keeping_order() {
    let ring = Ring::create(1 << 14, "").unwrap();
    for i in 0..10usize {
        ring.try_write(if i % 2 == 0 { 1 } else { 2 }, 0, &payload(i, i)).unwrap().unwrap();
    }
    assert_eq!(ring.skip(Some(1)).unwrap(), 5);
    for i in (1..10usize).step_by(2) {
        let (header, bytes) = ring.try_read(take).unwrap().unwrap();
        assert_eq!((header.kind, header.seq, bytes), (2, i as u64, payload(i, i)));
    }
    for i in 0..4usize {
        ring.try_write(1, 0, &payload(i, 3)).unwrap().unwrap();
    }
    assert_eq!(ring.skip(None).unwrap(), 4);
    assert!(ring.try_read(take).unwrap().is_none());
    assert_eq!(ring.stats().records_skipped, 9);
}

#[test]
fn attach_validates_the_header() {
    let ring = Ring::create(8192, "x").unwrap();
    let peer = attach_to(&ring).unwrap();
    assert_eq!(peer.info(), ring.info());
    drop(peer);

    let ring = Ring::create(8192, "x").unwrap();
    ring.header().id.identity[0].store(0, Ordering::Relaxed);
    assert!(matches!(attach_to(&ring), Err(RingError::Corrupt(msg)) if msg.contains("magic")));

    let ring = Ring::create(8192, "x").unwrap();
    ring.header().id.checksum.fetch_xor(1, Ordering::Relaxed);
    assert!(matches!(attach_to(&ring), Err(RingError::Corrupt(msg)) if msg.contains("checksum")));

    let ring = Ring::create(8192, "x").unwrap();
    ring.header().id.state.store(STATE_INIT, Ordering::Relaxed);
    assert!(matches!(attach_to(&ring), Err(RingError::Corrupt(msg)) if msg.contains("never completed")));

    let ring = Ring::create(8192, "x").unwrap();
    ring.header().id.attacher_pid.store(1, Ordering::Relaxed);
    assert!(matches!(attach_to(&ring), Err(RingError::AlreadyAttached { pid: 1 })));
}

#[test]
fn attach_refuses_descriptors_of_the_wrong_kind() {
    let ring = Ring::create(8192, "x").unwrap();
    let fds = ring.fds();
    let file = std::fs::File::open("/proc/self/stat").unwrap();
    let file_fd = std::os::fd::AsFd::as_fd(&file);
    // SAFETY: the descriptors belong to `ring`, which outlives the call.
    let borrow = |fd| unsafe { BorrowedFd::borrow_raw(fd) };
    let not_a_memfd = Ring::attach([file_fd, borrow(fds.data_ready), borrow(fds.space_ready)]);
    assert!(matches!(not_a_memfd, Err(RingError::Corrupt(msg)) if msg.contains("sealed")));
    let not_an_eventfd = Ring::attach([borrow(fds.segment), file_fd, borrow(fds.space_ready)]);
    assert!(matches!(not_an_eventfd, Err(RingError::Corrupt(msg)) if msg.contains("eventfd")));
}

#[test]
fn hostile_indices_are_reported_not_followed() {
    // A producer index beyond head + capacity.
    let ring = Ring::create(4096, "").unwrap();
    ring.header().producer.tail.store(4096 + 8, Ordering::Release);
    assert!(matches!(ring.try_read(take), Err(RingError::Corrupt(msg)) if msg.contains("producer index")));

    // A misaligned producer index.
    let ring = Ring::create(4096, "").unwrap();
    ring.header().producer.tail.store(3, Ordering::Release);
    assert!(matches!(ring.try_read(take), Err(RingError::Corrupt(_))));

    // A record length beyond what was published.
    let ring = Ring::create(4096, "").unwrap();
    ring.try_write(1, 0, &[1; 16]).unwrap().unwrap();
    // SAFETY: offset 0 of the data area holds the first record's length field.
    unsafe { ring.segment.write_data(0, &1000u32.to_le_bytes()) };
    assert!(matches!(ring.try_read(take), Err(RingError::Corrupt(msg)) if msg.contains("record length")));

    // A record length beyond the ring itself.
    // SAFETY: as above.
    unsafe { ring.segment.write_data(0, &0x7FFF_FFF0u32.to_le_bytes()) };
    assert!(matches!(ring.try_read(take), Err(RingError::Corrupt(_))));

    // A wrap marker where the published data does not reach the end.
    // SAFETY: as above.
    unsafe { ring.segment.write_data(0, &WRAP_MARK.to_le_bytes()) };
    assert!(matches!(ring.try_read(take), Err(RingError::Corrupt(msg)) if msg.contains("wrap")));

    // A consumer index ahead of the producer's tail, seen when the producer needs room.
    let ring = Ring::create(4096, "").unwrap();
    ring.header().consumer.head.store(1 << 40, Ordering::Release);
    let big = vec![0u8; ring.info().max_payload];
    ring.try_write(1, 0, &big).unwrap().unwrap();
    ring.try_write(1, 0, &big).unwrap().unwrap();
    assert!(matches!(ring.try_write(1, 0, b"x"), Err(RingError::Corrupt(msg)) if msg.contains("consumer index")));
}

#[test]
fn prepare_wait_reports_pending_data_and_close() {
    let ring = Ring::create(4096, "").unwrap();
    assert!(ring.prepare_wait(), "empty and open: the consumer should sleep");
    ring.finish_wait();
    ring.try_write(1, 0, b"x").unwrap().unwrap();
    assert!(!ring.prepare_wait(), "data is pending");
    ring.finish_wait();
    ring.try_read(take).unwrap().unwrap();
    ring.close();
    assert!(!ring.prepare_wait(), "closed");
    ring.finish_wait();
    assert_eq!(ring.wait_fds(), vec![ring.fds().data_ready]);
}

#[test]
fn a_second_producer_or_consumer_is_refused() {
    let creator = Ring::create(4096, "").unwrap();
    let peer = attach_to(&creator).unwrap();
    creator.try_write(1, 0, b"from the creator").unwrap().unwrap();
    assert!(matches!(peer.try_write(1, 0, b"x"), Err(RingError::Corrupt(msg)) if msg.contains("one producer")));
    peer.try_read(take).unwrap().unwrap();
    creator.try_write(1, 0, b"again").unwrap().unwrap();
    assert!(matches!(creator.try_read(take), Err(RingError::Corrupt(msg)) if msg.contains("one consumer")));
    assert_eq!(peer.try_read(take).unwrap().unwrap().1, b"again");
}

/// Takes the notifications an eventfd holds (its counter, reset by the read): how many `write`s the ring made
/// on it since it was last drained.
fn take_notifications(fd: RawFd) -> u64 {
    let mut count: u64 = 0;
    // SAFETY: reads 8 bytes into a valid u64 from a non-blocking eventfd; EAGAIN means a count of zero.
    let got = unsafe { libc::read(fd, (&raw mut count).cast(), 8) };
    if got == 8 { count } else { 0 }
}

/// Runs one sleep of the ring's waiting side (`wait_for_data` or `wait_for_space`) on a thread of its own, and
/// returns once that thread is asleep in the kernel with `flag`, its side's waiting flag, raised: past its
/// re-check, so that only a notification (or the 10 s limit of its sleep) can end the sleep. The handle
/// yields how long the sleep lasted.
fn asleep(flag: &AtomicU32, sleep: impl FnOnce(Duration) + Send + 'static) -> thread::JoinHandle<Duration> {
    let (tid_sender, tid) = std::sync::mpsc::channel();
    let sleeper = thread::spawn(move || {
        // SAFETY: plain syscall.
        tid_sender.send(unsafe { libc::gettid() }).unwrap();
        let start = Instant::now();
        sleep(Duration::from_secs(10));
        start.elapsed()
    });
    let stat = format!("/proc/self/task/{}/stat", tid.recv().unwrap());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        // The state follows the thread's name, which is in parentheses and may itself hold spaces.
        let state = std::fs::read_to_string(&stat).unwrap().rsplit_once(") ").unwrap().1.chars().next();
        if flag.load(Ordering::Acquire) == 1 && state == Some('S') {
            return sleeper;
        }
        assert!(Instant::now() < deadline, "the waiting side never fell asleep");
        thread::yield_now();
    }
}

#[test]
fn a_busy_ring_makes_no_wake_up_system_call() {
    const RECORDS: usize = 20_000;
    let writer_side = Arc::new(Ring::create(1 << 14, "busy").unwrap());
    let reader_side = attach_to(&writer_side).unwrap();
    let writer = {
        let ring = Arc::clone(&writer_side);
        thread::spawn(move || {
            for i in 0..RECORDS {
                let bytes = payload(i, i % 300);
                // Busy: retry at once when full, never sleeping.
                while ring.try_write(1, 0, &bytes).unwrap().is_none() {
                    std::hint::spin_loop();
                }
            }
        })
    };
    for i in 0..RECORDS {
        let (header, bytes) = loop {
            if let Some(record) = reader_side.try_read(take).unwrap() {
                break record;
            }
            std::hint::spin_loop();
        };
        assert_eq!((header.seq, bytes), (i as u64, payload(i, i % 300)));
    }
    writer.join().unwrap();
    let stats = writer_side.stats();
    assert_eq!(stats.records_read, RECORDS as u64);
    assert!(stats.full_events == 0 && stats.data_wakeups == 0 && stats.space_wakeups == 0, "{stats:?}");
    let fds = writer_side.fds();
    assert_eq!(take_notifications(fds.data_ready), 0, "no write(2) on the data eventfd");
    assert_eq!(take_notifications(fds.space_ready), 0, "no write(2) on the space eventfd");
}

#[test]
fn a_sleeping_reader_costs_one_wake_up_however_many_records_follow() {
    let writer_side = Ring::create(1 << 14, "").unwrap();
    let reader_side = Arc::new(attach_to(&writer_side).unwrap());
    let sleeper = {
        let ring = Arc::clone(&reader_side);
        asleep(&writer_side.header().producer.consumer_waiting, move |limit| ring.wait_for_data(limit))
    };
    for i in 0..5 {
        writer_side.try_write(1, 0, &payload(i, 40)).unwrap().unwrap();
    }
    assert!(sleeper.join().unwrap() < Duration::from_secs(5), "the notification, not the time limit, woke it");
    assert_eq!(writer_side.stats().data_wakeups, 1);
    let fds = writer_side.fds();
    assert_eq!(take_notifications(fds.data_ready), 1, "one write(2) for one sleep");
    // Awake, the reader takes what is queued and what follows without a notification.
    for i in 0..10usize {
        if i >= 5 {
            writer_side.try_write(1, 0, &payload(i, 40)).unwrap().unwrap();
        }
        let (header, bytes) = reader_side.try_read(take).unwrap().unwrap();
        assert_eq!((header.seq, bytes), (i as u64, payload(i, 40)));
    }
    assert_eq!(writer_side.stats().data_wakeups, 1);
    assert_eq!(take_notifications(fds.data_ready), 0);
    assert_eq!(take_notifications(fds.space_ready), 0);
}

#[test]
fn a_writer_sleeping_on_a_full_ring_costs_one_wake_up() {
    let writer_side = Arc::new(Ring::create(4096, "").unwrap());
    let reader_side = attach_to(&writer_side).unwrap();
    // 1000 payload bytes frame to 1024: four records fill the ring exactly, and one read makes room for one.
    let record = vec![3u8; 1000];
    for _ in 0..4 {
        writer_side.try_write(1, 0, &record).unwrap().unwrap();
    }
    assert!(writer_side.try_write(1, 0, &record).unwrap().is_none(), "full");
    let sleeper = {
        let ring = Arc::clone(&writer_side);
        asleep(&writer_side.header().consumer.producer_waiting, move |limit| {
            ring.wait_for_space(framed_len(1000), limit);
        })
    };
    for _ in 0..3 {
        reader_side.try_read(take).unwrap().unwrap();
    }
    assert!(sleeper.join().unwrap() < Duration::from_secs(5), "the notification, not the time limit, woke it");
    let stats = writer_side.stats();
    assert_eq!((stats.space_wakeups, stats.data_wakeups), (1, 0));
    let fds = writer_side.fds();
    assert_eq!(take_notifications(fds.space_ready), 1, "one write(2) for one sleep");
    assert_eq!(take_notifications(fds.data_ready), 0);
}

/// The resident bytes (`Rss` in /proc/self/smaps) of each mapping of the memfd named `name`, in mapping order.
fn resident_bytes_of_mappings(name: &str) -> Vec<usize> {
    let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
    let path = format!("/memfd:novabridge:{name} (deleted)");
    let mut found = Vec::new();
    let mut in_mapping = false;
    for line in smaps.lines() {
        if let Some(kb) = line.strip_prefix("Rss:") {
            if in_mapping {
                found.push(kb.trim().trim_end_matches(" kB").parse::<usize>().unwrap() * 1024);
            }
        } else if !line.split_whitespace().next().is_some_and(|word| word.ends_with(':')) {
            // Not a "Field: value" line: a mapping's first, "start-end perms offset dev inode path".
            in_mapping = line.ends_with(&path);
        }
    }
    found
}

#[test]
fn a_rings_memory_is_resident_from_the_start_in_both_processes() {
    // A page of the ring counts in a process's RSS from the first time that process touches it: a lazily mapped
    // ring grows the RSS of the host and of the worker for minutes as the positions advance, which a leak check
    // cannot tell from a leak. Mapped populated, it costs its whole size up front and never grows.
    let capacity = 256 * 1024;
    let name = "resident-from-the-start";
    let writer = Ring::create(capacity, name).unwrap();
    let reader = attach_to(&writer).unwrap();
    let whole = (DATA_OFFSET + capacity).next_multiple_of(4096);
    assert_eq!(resident_bytes_of_mappings(name), vec![whole, whole], "resident once created and attached");
    let record = vec![7u8; 1000];
    let mut laps_bytes = 0;
    while laps_bytes < 3 * capacity {
        assert!(writer.try_write(1, 0, &record).unwrap().is_some());
        assert_eq!(reader.try_read(take).unwrap().unwrap().1, record);
        laps_bytes += framed_len(record.len());
    }
    assert_eq!(resident_bytes_of_mappings(name), vec![whole, whole], "no growth after three laps");
}
