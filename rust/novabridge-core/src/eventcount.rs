//! The wake protocol (an eventcount): a waiter announces it is about to sleep, then re-checks its condition;
//! a notifier publishes its change (a `Release` store), then claims any announced waiter and signals it.
//!
//! Every access to the waiting flag is an `AcqRel` swap, so all of them form one release sequence: whichever
//! of the waiter's announce and the notifier's claim comes second reads what the first wrote. If the claim is
//! second it finds the waiter and signals; if the announce is second it synchronises with the notifier, so the
//! waiter's re-check sees the published change. No wake-up is lost, and the notifier issues a system call only
//! when a waiter really is asleep (a busy ring costs one uncontended atomic swap per record and no syscall).
//! A plain store anywhere (even to withdraw) would break the sequence; the `loom` model below catches that.
//! Run it with `RUSTFLAGS="--cfg loom" cargo test -p novabridge-core --release --lib`.

use crate::sync::{AtomicU32, Ordering};

/// Waiter side, step 1: announce the intent to sleep. The caller must then re-check its condition, and sleep
/// on the event only if it still holds; after waking (or deciding not to sleep) it calls [`withdraw`].
pub fn announce(waiting: &AtomicU32) {
    waiting.swap(1, Ordering::AcqRel);
}

/// Waiter side: no longer going to sleep.
pub fn withdraw(waiting: &AtomicU32) {
    waiting.swap(0, Ordering::AcqRel);
}

/// Notifier side, after publishing its change: whether a waiter announced itself and must be signalled.
/// Claims the waiter, so one sleep costs at most one signal however many changes follow.
#[must_use]
pub fn must_signal(waiting: &AtomicU32) -> bool {
    waiting.swap(0, Ordering::AcqRel) != 0
}

#[cfg(all(test, loom))]
mod loom_tests {
    use super::{announce, must_signal, withdraw};
    use loom::sync::atomic::{AtomicU32, AtomicU64, Ordering};
    use loom::sync::{Arc, Condvar, Mutex};
    use loom::thread;

    /// An eventfd: a counter a sleeper waits on until it is non-zero, then drains.
    #[derive(Default)]
    struct EventFd {
        count: Mutex<u64>,
        cond: Condvar,
    }

    impl EventFd {
        fn signal(&self) {
            *self.count.lock().unwrap() += 1;
            self.cond.notify_one();
        }

        fn wait_and_drain(&self) {
            let mut count = self.count.lock().unwrap();
            while *count == 0 {
                count = self.cond.wait(count).unwrap();
            }
            *count = 0;
        }
    }

    #[derive(Default)]
    struct Shared {
        tail: AtomicU64,
        waiting: AtomicU32,
        event: EventFd,
    }

    /// A consumer that sleeps whenever it sees nothing new must always be woken for the last record; a lost
    /// wake-up shows up as a deadlock, which loom reports.
    #[test]
    fn no_lost_wakeup() {
        const RECORDS: u64 = 2;
        loom::model(|| {
            let shared = Arc::new(Shared::default());
            let producer = {
                let shared = Arc::clone(&shared);
                thread::spawn(move || {
                    for tail in 1..=RECORDS {
                        shared.tail.store(tail, Ordering::Release);
                        if must_signal(&shared.waiting) {
                            shared.event.signal();
                        }
                    }
                })
            };
            let mut seen = 0;
            while seen < RECORDS {
                let tail = shared.tail.load(Ordering::Acquire);
                if tail > seen {
                    seen = tail;
                    continue;
                }
                announce(&shared.waiting);
                if shared.tail.load(Ordering::Acquire) > seen {
                    withdraw(&shared.waiting);
                    continue;
                }
                shared.event.wait_and_drain();
                withdraw(&shared.waiting);
            }
            producer.join().unwrap();
        });
    }
}
