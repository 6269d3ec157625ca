//! Record framing: `u32 len, u16 kind, u16 flags, u64 seq, u64 t_ns`, then `len` payload bytes, padded to 8.
//! A record never straddles the end of the data area; the producer writes [`WRAP_MARK`] in the length field
//! and continues at offset 0.

pub const RECORD_HEADER_LEN: usize = 24;
pub(crate) const WRAP_MARK: u32 = u32::MAX;
pub(crate) const ALIGN: usize = 8;

/// The fixed fields of a record, as the consumer sees them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordHeader {
    pub kind: u16,
    pub flags: u16,
    pub seq: u64,
    /// `CLOCK_MONOTONIC` nanoseconds when the producer wrote the record.
    pub t_ns: u64,
}

/// Bytes a record with `payload_len` payload bytes occupies in the ring.
pub(crate) const fn framed_len(payload_len: usize) -> usize {
    (RECORD_HEADER_LEN + payload_len + ALIGN - 1) & !(ALIGN - 1)
}

/// The largest payload a ring of `capacity` bytes always accepts once it is empty: a record is contiguous, and
/// when the free space straddles the end, the part before the wrap is wasted, so up to half may be unusable.
pub(crate) const fn max_payload(capacity: usize) -> usize {
    capacity / 2 - RECORD_HEADER_LEN
}

pub(crate) fn encode_header(len: u32, header: &RecordHeader) -> [u8; RECORD_HEADER_LEN] {
    let mut out = [0u8; RECORD_HEADER_LEN];
    out[0..4].copy_from_slice(&len.to_le_bytes());
    out[4..6].copy_from_slice(&header.kind.to_le_bytes());
    out[6..8].copy_from_slice(&header.flags.to_le_bytes());
    out[8..16].copy_from_slice(&header.seq.to_le_bytes());
    out[16..24].copy_from_slice(&header.t_ns.to_le_bytes());
    out
}

pub(crate) fn decode_header(raw: &[u8; RECORD_HEADER_LEN]) -> (u32, RecordHeader) {
    let len = u32::from_le_bytes(raw[0..4].try_into().expect("4 bytes"));
    let header = RecordHeader {
        kind: u16::from_le_bytes(raw[4..6].try_into().expect("2 bytes")),
        flags: u16::from_le_bytes(raw[6..8].try_into().expect("2 bytes")),
        seq: u64::from_le_bytes(raw[8..16].try_into().expect("8 bytes")),
        t_ns: u64::from_le_bytes(raw[16..24].try_into().expect("8 bytes")),
    };
    (len, header)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn framed_len_pads_to_eight() {
        assert_eq!(framed_len(0), 24);
        assert_eq!(framed_len(1), 32);
        assert_eq!(framed_len(8), 32);
        assert_eq!(framed_len(9), 40);
        assert_eq!(framed_len(640), 664);
    }

    #[test]
    fn header_round_trips() {
        let header = RecordHeader { kind: 2, flags: 0xBEEF, seq: u64::MAX - 1, t_ns: 123_456_789 };
        assert_eq!(decode_header(&encode_header(77, &header)), (77, header));
    }

    #[test]
    fn the_largest_record_fits_an_empty_ring_wherever_its_head_is() {
        let capacity = 4096;
        let framed = framed_len(max_payload(capacity));
        for head in (0..capacity).step_by(ALIGN) {
            let to_end = capacity - head;
            let needed = if framed <= to_end { framed } else { to_end + framed };
            assert!(needed <= capacity, "head {head}: needs {needed}");
        }
    }
}
