//! The ring's own code under loom (`make test-loom`): `try_write`/`write` and `try_read`/`read`, the waiting
//! flags, the drain of each event just before the announcement, the reader's sleep on "data written" and the
//! writer's sleep on "space freed" when the ring is full, and `close`. The events are `ModelEvent`s, which only
//! a notification ends, so a wake-up the protocol could lose leaves a side asleep for good: loom reports the
//! deadlock. The data area reports every copy to loom, so a record read before it was published, or
//! overwritten before it was consumed, fails as a causality violation. Each model checks that every record
//! arrives once, whole, and in order.
//!
//! The state space is bounded by the number of records (three per model: enough for the writer to fill the
//! ring, wrap and wait) and by loom's preemption bound: every interleaving with at most `PREEMPTIONS` forced
//! switches between the two threads is explored (switches where a thread blocks or ends are free). The reader
//! spins once before it announces a sleep instead of `SPIN_CHECKS` times; the spin only ever ends a wait
//! early, and each further turn multiplies the interleavings without reaching a new state.

use loom::sync::Arc;
use loom::thread;

use super::*;

/// Forced thread switches per execution. A lost wake-up needs one (between a re-check and a sleep) or two (a
/// publish and a claim interleaved with an announce and a re-check), and every protocol mistake tried on the
/// ring (a plain store to a waiting flag, a `Relaxed` announce, claim or publish, a drain after the re-check,
/// a missing re-check or notification) is found with three. Five keeps a margin: some 80,000 executions in
/// all, about 20 seconds.
const PREEMPTIONS: usize = 5;

/// The smallest ring: two records of [`BIG`] bytes fill it, so a third must wait for space.
const CAPACITY: usize = MIN_CAPACITY;
const BIG: usize = 1500;

fn check(model: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = Some(PREEMPTIONS);
    builder.check(model);
}

#[allow(clippy::unnecessary_wraps)] // the shape `Ring::read` and `Ring::write` expect
fn no_park(wait: &(dyn Fn() + Sync)) -> Result<(), RingError> {
    wait();
    Ok(())
}

fn payload(index: usize, len: usize) -> Vec<u8> {
    (0..len).map(|i| (index * 37 + i) as u8).collect()
}

/// Writes `count` records of `len` bytes from one thread while this thread reads them, both with blocking
/// calls and no time limit; checks what arrives and that nothing more does.
fn stream(count: usize, len: usize) {
    let ring = Arc::new(Ring::create(CAPACITY, "model").unwrap());
    let writer = {
        let ring = Arc::clone(&ring);
        thread::spawn(move || {
            for index in 0..count {
                ring.write(1, 0, &payload(index, len), None, no_park).unwrap();
            }
        })
    };
    for index in 0..count {
        let (header, bytes) =
            ring.read(None, |header, bytes| (header, bytes.to_vec()), no_park).unwrap().expect("no time limit");
        assert_eq!(header.seq, index as u64, "records arrive in order, each once");
        assert_eq!(bytes, payload(index, len), "record {index} arrives whole");
    }
    writer.join().unwrap();
    assert!(ring.try_read(|_, _| ()).unwrap().is_none(), "nothing arrives twice");
    let stats = ring.stats();
    assert_eq!((stats.records_written, stats.records_read), (count as u64, count as u64));
}

/// The reader sleeps on an empty ring whenever it finds nothing; every record must wake it.
#[test]
fn a_waiting_reader_always_wakes() {
    check(|| stream(3, 8));
}

/// Two records fill the ring, so the writer sleeps on the third until the reader frees space, while the
/// reader may sleep on the empty ring in between: both sides' waits, in every order.
#[test]
fn a_writer_waiting_for_space_always_wakes() {
    check(|| stream(3, BIG));
}

/// A close wakes a reader asleep on an empty ring, which first receives what was written before it.
#[test]
fn close_wakes_a_waiting_reader_after_the_last_record() {
    check(|| {
        let ring = Arc::new(Ring::create(CAPACITY, "model").unwrap());
        let writer = {
            let ring = Arc::clone(&ring);
            thread::spawn(move || {
                ring.write(1, 0, b"last", None, no_park).unwrap();
                ring.close();
            })
        };
        let take = |_: RecordHeader, bytes: &[u8]| bytes.to_vec();
        assert_eq!(ring.read(None, take, no_park).unwrap().as_deref(), Some(&b"last"[..]));
        // One handle serves both threads here, so the reader may see the shared state before this handle's own
        // flag and call the close its peer's: either reason is right.
        assert!(matches!(ring.read(None, take, no_park), Err(RingError::Closed(_))));
        writer.join().unwrap();
    });
}
