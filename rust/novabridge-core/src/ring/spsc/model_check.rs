//! The ring's own code under loom (`make test-loom`): `try_write`/`write` and `try_read`/`read`, the waiting
//! flags, the drain of each event just before the announcement, the reader's sleep on "data written" and the
//! writer's sleep on "space freed" when the ring is full, and the close when the writer's handle goes away.
//! Each side has its own handle, as the two processes do (`attach_in_model` hands the peer the segment and
//! events, then validates and claims like `attach`). The events are `ModelEvent`s, which only a notification
//! ends, so a wake-up the protocol could lose leaves a side asleep for good: loom reports the deadlock. The
//! data area reports every copy to loom, so a record read before it was published, or overwritten before it
//! was consumed, fails as a causality violation. Each model checks that every record arrives once, whole and
//! in order; a third, that a writer's close wakes the reader only after its last record arrived.
//!
//! The state space is bounded by the number of records (three per model: enough for the writer to fill the
//! ring, wrap and wait) and by loom's preemption bound: every interleaving with at most `PREEMPTIONS` forced
//! switches between the two threads is explored (switches where a thread blocks or ends are free). The reader
//! spins once before it announces a sleep instead of `SPIN_CHECKS` times; the spin only ever ends a wait
//! early, and each further turn multiplies the interleavings without reaching a new state.

use loom::thread;

use super::*;

/// Forced thread switches per execution. A lost wake-up needs one (between a re-check and a sleep) or two (a
/// publish and a claim interleaved with an announce and a re-check), and every protocol mistake tried on the
/// ring (a plain store to a waiting flag, a `Relaxed` announce, claim or publish, a drain after the re-check,
/// a missing re-check or notification) is found with three. Five keeps a margin at about a minute of checking
/// on two cores (four takes some ten seconds).
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

/// Writes `count` records of `len` bytes from one thread while this thread reads them, each side through its
/// own handle, both with blocking calls and no time limit; checks what arrives and that nothing more does. The
/// writer's handle stays open until everything arrived: its close would wake a reader whose wake-up was lost.
fn stream(count: usize, len: usize) {
    let writer_side = Ring::create(CAPACITY, "model").unwrap();
    let reader_side = writer_side.attach_in_model().unwrap();
    let writer = thread::spawn(move || {
        for index in 0..count {
            writer_side.write(1, 0, &payload(index, len), None, no_park).unwrap();
        }
        writer_side
    });
    for index in 0..count {
        let (header, bytes) =
            reader_side.read(None, |header, bytes| (header, bytes.to_vec()), no_park).unwrap().expect("no time limit");
        assert_eq!(header.seq, index as u64, "records arrive in order, each once");
        assert_eq!(bytes, payload(index, len), "record {index} arrives whole");
    }
    let writer_side = writer.join().unwrap();
    assert!(reader_side.try_read(|_, _| ()).unwrap().is_none(), "nothing arrives twice");
    let stats = writer_side.stats();
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

/// The writer's handle goes away (closing the ring) after its last record, while the reader may be asleep on
/// the empty ring: the reader receives the record, then learns the peer closed the ring.
#[test]
fn a_closing_writer_wakes_the_reader_after_its_last_record() {
    check(|| {
        let writer_side = Ring::create(CAPACITY, "model").unwrap();
        let reader_side = writer_side.attach_in_model().unwrap();
        let writer = thread::spawn(move || {
            writer_side.write(1, 0, b"last", None, no_park).unwrap();
        });
        let take = |_: RecordHeader, bytes: &[u8]| bytes.to_vec();
        assert_eq!(reader_side.read(None, take, no_park).unwrap().as_deref(), Some(&b"last"[..]));
        let end = reader_side.read(None, take, no_park);
        assert!(matches!(end, Err(RingError::Closed(CloseReason::ClosedByPeer))), "{end:?}");
        writer.join().unwrap();
    });
}
