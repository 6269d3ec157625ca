//! A single-producer single-consumer record ring in shared memory, joining two processes.
//!
//! One process creates a ring ([`Ring::create`]) and hands its descriptors ([`Ring::fds`]) to another, which
//! attaches ([`Ring::attach`]). One side writes records, the other reads them, in order. The layout is a
//! versioned binary protocol ([`layout`]), so the two sides may run different builds of the same layout version.

mod layout;
mod record;
mod shm;
mod spsc;
mod wake;

pub use layout::{LAYOUT_VERSION, MAGIC, MAX_CAPACITY, MAX_NAME_LEN, MIN_CAPACITY};
pub use record::{RECORD_HEADER_LEN, RecordHeader};
pub use spsc::{Ring, RingFds, RingInfo, RingStats};
