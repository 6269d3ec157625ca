//! The ring's timestamps: `CLOCK_MONOTONIC`, which is system-wide, so a time written by one process can be
//! compared with `time.monotonic_ns()` read in another.

/// Nanoseconds on `CLOCK_MONOTONIC` (the clock Python's `time.monotonic_ns()` reads on Linux).
#[must_use]
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_MONOTONIC always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &raw mut ts) };
    // CLOCK_MONOTONIC never goes negative.
    ts.tv_sec.unsigned_abs() * 1_000_000_000 + ts.tv_nsec.unsigned_abs()
}
