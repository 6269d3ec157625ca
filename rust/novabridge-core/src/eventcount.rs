//! The wake protocol (an eventcount): a waiter announces it is about to sleep, then re-checks its condition;
//! a notifier publishes its change (a `Release` store), then claims any announced waiter and signals it.
//!
//! Every access to the waiting flag is an `AcqRel` swap, so all of them form one release sequence: whichever
//! of the waiter's announce and the notifier's claim comes second reads what the first wrote. If the claim is
//! second it finds the waiter and signals; if the announce is second it synchronises with the notifier, so the
//! waiter's re-check sees the published change. No wake-up is lost, and the notifier issues a system call only
//! when a waiter really is asleep (a busy ring costs one uncontended atomic swap per record and no syscall).
//! A plain store anywhere (even to withdraw) would break the sequence. The ring's model check
//! (`ring::spsc`'s `model_check`, run by `make test-loom`) drives these functions through the ring's own reads,
//! writes and waits, and fails if either side's wait can miss its wake-up.

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
