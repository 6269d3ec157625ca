//! The shared-memory layout, version 1. Everything a peer reads from here is untrusted.
//!
//! ```text
//! offset   0  identity line: magic, version, capacity, ids, name, checksum (immutable after READY), state, peer pid
//! offset 128  producer line: tail, the consumer's waiting flag, producer counters
//! offset 256  consumer line: head, the producer's waiting flag, consumer counters
//! offset 384  data: `capacity` bytes of records
//! ```
//!
//! Each index sits on its own 128-byte line with the fields only its owner writes, so the two sides never
//! write the same line on a busy ring. A waiting flag lives on the line of the side that clears it on every
//! record (the notifier), so announcing a sleep is the only time the sleeper touches the peer's line.

use crossbeam_utils::CachePadded;

use crate::sync::{AtomicU32, AtomicU64, Ordering};
use crate::{RingError, RingResult};

pub const MAGIC: [u8; 8] = *b"NBRING\x00\x01";
pub const LAYOUT_VERSION: u32 = 1;
pub const MIN_CAPACITY: usize = 4096;
pub const MAX_CAPACITY: usize = 1 << 30;
pub const MAX_NAME_LEN: usize = 48;

/// Bytes of the identity block covered by the checksum.
const IDENTITY_LEN: usize = 96;

pub(crate) const STATE_INIT: u32 = 0;
pub(crate) const STATE_READY: u32 = 1;
pub(crate) const STATE_CLOSED: u32 = 2;

#[repr(C)]
#[cfg_attr(loom, derive(Default))]
pub(crate) struct IdentityLine {
    /// Little-endian encoding of [`Identity`] in 8-byte words; written once before READY, then only read.
    /// Atomics (not plain bytes) because a hostile peer may write them while we hold a reference.
    pub identity: [AtomicU64; IDENTITY_LEN / 8],
    pub checksum: AtomicU64,
    /// INIT -> READY (stored last, with Release) -> CLOSED.
    pub state: AtomicU32,
    /// The attaching process, 0 until one attaches.
    pub attacher_pid: AtomicU32,
}

#[repr(C)]
#[cfg_attr(loom, derive(Default))]
pub(crate) struct ProducerLine {
    pub tail: AtomicU64,
    pub consumer_waiting: AtomicU32,
    pub _reserved: AtomicU32,
    pub records_written: AtomicU64,
    pub bytes_written: AtomicU64,
    pub data_wakeups: AtomicU64,
    pub full_events: AtomicU64,
}

#[repr(C)]
#[cfg_attr(loom, derive(Default))]
pub(crate) struct ConsumerLine {
    pub head: AtomicU64,
    pub producer_waiting: AtomicU32,
    pub _reserved: AtomicU32,
    pub records_read: AtomicU64,
    pub bytes_read: AtomicU64,
    pub records_skipped: AtomicU64,
    pub space_wakeups: AtomicU64,
}

#[repr(C)]
#[cfg_attr(loom, derive(Default))] // the model check builds a header on the heap
pub(crate) struct Header {
    pub id: CachePadded<IdentityLine>,
    pub producer: CachePadded<ProducerLine>,
    pub consumer: CachePadded<ConsumerLine>,
}

/// Where records start: the header rounded up to a whole number of 128-byte lines.
pub(crate) const DATA_OFFSET: usize = 384;
// loom's atomics carry the model's bookkeeping, so the header only has its shared-memory size in real builds.
#[cfg(not(loom))]
const _: () = assert!(size_of::<Header>() <= DATA_OFFSET);
#[cfg(not(loom))]
const _: () = assert!(align_of::<Header>() <= 128);

/// The immutable description of a ring, as stored in its identity line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Identity {
    pub capacity: u64,
    pub data_offset: u32,
    pub creator_pid: u32,
    pub ring_id: u64,
    pub created_ns: u64,
    pub name: String,
}

impl Identity {
    pub fn encode(&self) -> [u8; IDENTITY_LEN] {
        let mut out = [0u8; IDENTITY_LEN];
        out[0..8].copy_from_slice(&MAGIC);
        out[8..12].copy_from_slice(&LAYOUT_VERSION.to_le_bytes());
        out[12..16].copy_from_slice(&self.data_offset.to_le_bytes());
        out[16..24].copy_from_slice(&self.capacity.to_le_bytes());
        out[24..32].copy_from_slice(&self.ring_id.to_le_bytes());
        out[32..40].copy_from_slice(&self.created_ns.to_le_bytes());
        out[40..44].copy_from_slice(&self.creator_pid.to_le_bytes());
        out[44..48].copy_from_slice(&(self.name.len() as u32).to_le_bytes());
        out[48..48 + self.name.len()].copy_from_slice(self.name.as_bytes());
        out
    }

    /// Decodes and validates an identity block read from a peer's mapping of `mapped_len` bytes.
    pub fn decode(raw: &[u8; IDENTITY_LEN], checksum: u64, mapped_len: usize) -> RingResult<Self> {
        let u32_at = |at: usize| u32::from_le_bytes(raw[at..at + 4].try_into().expect("4 bytes"));
        let u64_at = |at: usize| u64::from_le_bytes(raw[at..at + 8].try_into().expect("8 bytes"));
        if raw[0..8] != MAGIC {
            return Err(RingError::corrupt("bad magic: not a novabridge ring"));
        }
        let version = u32_at(8);
        if version != LAYOUT_VERSION {
            return Err(RingError::corrupt(format!(
                "layout version {version}, this build reads version {LAYOUT_VERSION}"
            )));
        }
        if fnv1a(raw) != checksum {
            return Err(RingError::corrupt("header checksum mismatch"));
        }
        let data_offset = u32_at(12);
        if data_offset as usize != DATA_OFFSET {
            return Err(RingError::corrupt(format!("data offset {data_offset}, expected {DATA_OFFSET}")));
        }
        let capacity = u64_at(16);
        if !capacity.is_power_of_two() || capacity < MIN_CAPACITY as u64 || capacity > MAX_CAPACITY as u64 {
            return Err(RingError::corrupt(format!("capacity {capacity} is not a power of two in range")));
        }
        if DATA_OFFSET + capacity as usize != mapped_len {
            return Err(RingError::corrupt(format!(
                "capacity {capacity} does not match the shared segment of {mapped_len} bytes"
            )));
        }
        let name_len = u32_at(44) as usize;
        if name_len > MAX_NAME_LEN {
            return Err(RingError::corrupt(format!("name length {name_len}")));
        }
        let name = std::str::from_utf8(&raw[48..48 + name_len])
            .map_err(|_| RingError::corrupt("name is not UTF-8"))?
            .to_owned();
        Ok(Self { capacity, data_offset, creator_pid: u32_at(40), ring_id: u64_at(24), created_ns: u64_at(32), name })
    }

    pub fn store(&self, line: &IdentityLine) {
        let raw = self.encode();
        for (word, chunk) in line.identity.iter().zip(raw.chunks_exact(8)) {
            word.store(u64::from_le_bytes(chunk.try_into().expect("8 bytes")), Ordering::Relaxed);
        }
        line.checksum.store(fnv1a(&raw), Ordering::Relaxed);
    }

    pub fn load(line: &IdentityLine, mapped_len: usize) -> RingResult<Self> {
        let mut raw = [0u8; IDENTITY_LEN];
        for (word, chunk) in line.identity.iter().zip(raw.chunks_exact_mut(8)) {
            chunk.copy_from_slice(&word.load(Ordering::Relaxed).to_le_bytes());
        }
        Self::decode(&raw, line.checksum.load(Ordering::Relaxed), mapped_len)
    }
}

/// FNV-1a 64: enough to reject stale or foreign headers; the ring defends against hostile ones by validation.
pub(crate) fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &b| (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    fn identity() -> Identity {
        Identity {
            capacity: 8192,
            data_offset: DATA_OFFSET as u32,
            creator_pid: 42,
            ring_id: 7,
            created_ns: 99,
            name: "uplink".into(),
        }
    }

    #[test]
    fn identity_round_trips() {
        let id = identity();
        let raw = id.encode();
        assert_eq!(Identity::decode(&raw, fnv1a(&raw), DATA_OFFSET + 8192).unwrap(), id);
    }

    #[test]
    fn header_lines_do_not_share_cache_lines() {
        assert_eq!(std::mem::offset_of!(Header, producer) % 128, 0);
        assert_eq!(std::mem::offset_of!(Header, consumer) % 128, 0);
        assert_ne!(std::mem::offset_of!(Header, producer), std::mem::offset_of!(Header, consumer));
    }

    #[test]
    fn decode_rejects_each_kind_of_damage() {
        let id = identity();
        let good = id.encode();
        let len = DATA_OFFSET + 8192;
        let expect = |raw: [u8; IDENTITY_LEN], sum: u64, mapped: usize, needle: &str| match Identity::decode(
            &raw, sum, mapped,
        ) {
            Err(RingError::Corrupt(msg)) => assert!(msg.contains(needle), "{msg:?} lacks {needle:?}"),
            other => panic!("expected Corrupt({needle}), got {other:?}"),
        };
        let mut raw = good;
        raw[0] = b'X';
        expect(raw, fnv1a(&raw), len, "magic");
        let mut raw = good;
        raw[8] = 2;
        expect(raw, fnv1a(&raw), len, "version");
        expect(good, fnv1a(&good) ^ 1, len, "checksum");
        expect(good, fnv1a(&good), len + 4096, "does not match");
        let mut raw = good;
        raw[16..24].copy_from_slice(&12_288u64.to_le_bytes());
        expect(raw, fnv1a(&raw), DATA_OFFSET + 12_288, "power of two");
        let mut raw = good;
        raw[44..48].copy_from_slice(&200u32.to_le_bytes());
        expect(raw, fnv1a(&raw), len, "name length");
    }
}
