//! The shared-memory layout of a shmq queue, layout version 2.
//!
//! This is the one place the on-memory format is defined. All integers are
//! little-endian (x86-64 / aarch64 native), all offsets are in bytes from the
//! start of the segment, and every field marked "atomic" is only ever accessed
//! with atomic instructions of the stated width.
//!
//! # Names and files
//! A queue is the file `/dev/shm/shmq-<id>` where `<id>` is 16 lowercase hex
//! digits (64 random bits); the handle is `shmq-<id>`. Its payload segments are
//! `/dev/shm/shmq-<id>-<r>`, `<r>` 16 hex digits of fresh random bits each, so
//! no other local user can predict (and pre-create) them. Every file is a
//! regular file of mode 0600 owned by the user that runs the queue; anything
//! else under such a name (another owner, another mode, a symlink) is never
//! opened, listed as a queue or removed. A queue segment is written in full
//! under a temporary name (`.shmq-tmp-<random>`) and then renamed, so a reader
//! of `shmq-<id>` never sees a half-made header.
//!
//! # Liveness: OFD locks
//! An end is alive exactly while it holds an open-file-description write lock
//! (`F_OFD_SETLK`) on byte `LOCK_ROW + i` of the queue file, `i` its row in
//! the end table. The kernel drops the lock when the process dies, before it
//! becomes a zombie, whatever its pid namespace; a pid is never consulted.
//! The creator of a queue holds byte [`LOCK_CREATOR`] while its process may
//! still hand out its two unused ends. Whoever takes a row's lock owns the
//! row: it alone writes the row's fields, and it reaps the row first if the
//! row still holds a dead end's state. A queue whose whole lock range
//! (`0..LOCK_SPAN`) can be write-locked has no live end and no live creator:
//! whoever gets that range lock unlinks the queue and its payload segments
//! while holding it (so a joiner that got its row afterwards sees the file
//! unlinked, `st_nlink == 0`, and gives up).
//!
//! # Queue segment
//! ```text
//! offset            size                 what
//! 0                 HEADER_SIZE (640)    Header
//! 640               MAX_ENDS * 64        EndEntry[MAX_ENDS]   (the end table)
//! slots_offset      capacity * stride    Slot[capacity]
//! ```
//! `slots_offset = HEADER_SIZE + MAX_ENDS * 64` (= 66176) and
//! `stride = SLOT_HEADER_SIZE + round_up(slot_size, 64)`; the segment is
//! `slots_offset + capacity * stride` bytes (`Header::total_size`).
//!
//! # The ring
//! `head` and `tail` count positions from 0. Position `p` lives in slot
//! `p % capacity`, whose `seq` word is `(p mod 2^51) << 13 | owner << 3 | state`:
//! `owner` is the end-table row of the end holding the slot (WRITING,
//! READING; 0 otherwise) and `state` one of:
//!
//! | state | meaning | who moves it on |
//! |---|---|---|
//! | [`SLOT_EMPTY`] at p | free for the producer of p | a producer: CAS to WRITING(p, me) |
//! | [`SLOT_WRITING`] | producer `owner` is filling it | that producer: CAS to FULL(p); a reaper of `owner`: CAS to VOID(p) |
//! | [`SLOT_FULL`] | message p is ready | a consumer: CAS to READING(p, me) |
//! | [`SLOT_READING`] | consumer `owner` is reading it | that consumer, or a reaper of `owner`: CAS to EMPTY(p + capacity) |
//! | [`SLOT_VOID`] | no message (its producer died) | any consumer: CAS to EMPTY(p + capacity) |
//!
//! Every transition is a compare-and-swap from the exact (position, owner,
//! state) expected, so an end never writes a slot that is no longer its own.
//! After claiming, the claimant helps `tail` (or `head`) from p to p + 1; so
//! does anyone who finds p already claimed. A consumer at head `p` that finds
//! the slot at position `p + capacity` knows p was consumed and helps head on.
//!
//! Invariants (checked by the crash-point tests in `crashpoints.rs`):
//! 1. A slot is WRITING or READING only with a row whose end is alive or not
//!    yet reaped; reaping a row resolves every slot it owns before the row is
//!    freed (WRITING → VOID, READING → EMPTY next lap), so capacity returns.
//! 2. A message is delivered at most once (only one FULL → READING CAS wins)
//!    and never torn (a slot's fields are written only by its WRITING owner).
//! 3. A message is lost only with the consumer that held it READING.
//! 4. A payload segment is handed back only by a CAS from the exact
//!    (generation, IN_USE) that the slot naming it recorded, so a late hand
//!    back can never free a newer message's segment.
//!
//! # Acknowledgements
//! A sender's messages are unacknowledged while a FULL slot names its row
//! and row generation (`sender`, `sender_gen`): read off the ring, so a
//! consumer's death never leaves a count behind.
//!
//! # Wake-ups
//! `items` and `space` are event counters (u32, wrapping) used as futex words
//! (shared): producers bump `items` after publishing, consumers bump `space`
//! after freeing, and joins, leaves and reaps bump both. A waiter increments
//! `waiters`, re-checks, and futex-waits on `seq` while it is unchanged; a
//! bumper calls futex-wake only when `waiters` is non-zero. Waiters also look
//! for dead rows every [`crate::sync::PROBE`], so a dead peer is noticed within
//! that time. A wait may be queued on an io_uring (`IORING_OP_FUTEX_WAIT`)
//! instead of made by a blocked thread: to the other side it is the same
//! futex wait, counted in `waiters` the same way.
//!
//! # Payload segments
//! A message longer than `slot_size` travels in a payload segment owned by the
//! sending end: a 64-byte [`PayloadHeader`] followed by `capacity` data bytes
//! (data starts at offset 64, so it is 64-byte aligned). The slot then has
//! `kind == KIND_PAYLOAD`, names the segment by `payload_name` and records the
//! segment's use generation in `payload_gen`. The segment's `state` word is
//! `generation << 2 | PAYLOAD_*`: the sender fills a FREE segment and moves it
//! to (generation + 1, IN_USE); the consumer (or the reaper of a dead one)
//! moves (g, IN_USE) to (g, FREE). A sender that leaves (or the reaper of a
//! dead one) moves IN_USE segments to ORPHANED, whose consumer unlinks them,
//! and removes FREE ones (RETIRED).

use crossbeam_utils::CachePadded;
use std::sync::atomic::{AtomicU32, AtomicU64};

/// `b"SHMQUEUE"` read as a little-endian u64.
pub const MAGIC: u64 = u64::from_le_bytes(*b"SHMQUEUE");
/// `b"SHMQDATA"` read as a little-endian u64.
pub const PAYLOAD_MAGIC: u64 = u64::from_le_bytes(*b"SHMQDATA");
pub const LAYOUT_VERSION: u32 = 2;

/// Entries in the end table: how many ends may take part at once (the row
/// number must fit the 10 owner bits of a slot's `seq`).
pub const MAX_ENDS: u32 = 1024;
pub const MAX_CAPACITY: u32 = 1 << 20;
pub const MAX_SLOT_SIZE: u32 = 1 << 26;
/// What a binding creates when not told otherwise.
pub const DEFAULT_CAPACITY: u32 = 16;
pub const DEFAULT_SLOT_SIZE: u32 = 64 * 1024;
pub const SLOT_HEADER_SIZE: usize = 64;
pub const PAYLOAD_HEADER_SIZE: usize = 64;

/// Lock byte of end-table row `i` is `LOCK_ROW + i`.
pub const LOCK_ROW: u64 = 0;
/// Lock byte held by the creator while its unused ends may still be handed out.
pub const LOCK_CREATOR: u64 = MAX_ENDS as u64;
/// Bytes `0..LOCK_SPAN` hold every lock of a queue.
pub const LOCK_SPAN: u64 = LOCK_CREATOR + 1;

pub const SLOT_EMPTY: u64 = 0;
pub const SLOT_WRITING: u64 = 1;
pub const SLOT_FULL: u64 = 2;
pub const SLOT_READING: u64 = 3;
pub const SLOT_VOID: u64 = 4;
/// Bits of `seq` below the position: 3 of state, 10 of owner row.
pub const SEQ_POS_SHIFT: u32 = 13;
pub const SEQ_OWNER_SHIFT: u32 = 3;
const OWNER_MASK: u64 = MAX_ENDS as u64 - 1;
/// Positions are compared modulo 2^51 (the bits `seq` keeps).
pub const POS_MASK: u64 = (1 << (64 - SEQ_POS_SHIFT)) - 1;

/// A slot's `seq` word.
pub const fn seq_word(pos: u64, owner: u32, state: u64) -> u64 {
    (pos & POS_MASK) << SEQ_POS_SHIFT | ((owner as u64) & OWNER_MASK) << SEQ_OWNER_SHIFT | state
}
pub const fn seq_pos(seq: u64) -> u64 {
    seq >> SEQ_POS_SHIFT
}
pub const fn seq_owner(seq: u64) -> u32 {
    ((seq >> SEQ_OWNER_SHIFT) & OWNER_MASK) as u32
}
pub const fn seq_state(seq: u64) -> u64 {
    seq & 7
}

/// `SlotHeader::kind`: the message bytes follow the slot header.
pub const KIND_INLINE: u32 = 0;
/// `SlotHeader::kind`: the message bytes are in payload segment `payload_name`.
pub const KIND_PAYLOAD: u32 = 1;

/// `EndEntry::state` values.
pub const END_FREE: u32 = 0;
pub const END_SENDER: u32 = 2;
pub const END_RECEIVER: u32 = 3;

/// Low two bits of `PayloadHeader::state`.
pub const PAYLOAD_FREE: u64 = 0;
/// Holds a message that is in the queue or being read.
pub const PAYLOAD_IN_USE: u64 = 1;
/// In use, and its sender has gone: whoever frees it unlinks it.
pub const PAYLOAD_ORPHANED: u64 = 2;
/// Unlinked by its sender; receivers drop their mapping when they see this.
pub const PAYLOAD_RETIRED: u64 = 3;

/// A futex-backed event counter. 128-byte aligned (`CachePadded`).
#[repr(C)]
pub struct Event {
    /// Atomic u32, the futex word: bumped (wrapping) on every event.
    pub seq: AtomicU32,
    /// Atomic u32: threads currently waiting (or about to) on `seq`.
    pub waiters: AtomicU32,
}

/// Offset 0 of the queue segment. Size 640, alignment 128.
#[repr(C)]
pub struct Header {
    // Written once by the creator before the segment is named, then read-only.
    /// 0: [`MAGIC`].
    pub magic: u64,
    /// 8: [`LAYOUT_VERSION`].
    pub version: u32,
    /// 12: size of this header ([`HEADER_SIZE`]).
    pub header_size: u32,
    /// 16: messages in flight, 1..=[`MAX_CAPACITY`].
    pub capacity: u32,
    /// 20: inline payload bytes per slot.
    pub slot_size: u32,
    /// 24: entries in the end table ([`MAX_ENDS`]).
    pub max_ends: u32,
    /// 28: bytes from one slot to the next.
    pub slot_stride: u32,
    /// 32: largest message in encoded bytes.
    pub max_message_size: u64,
    /// 40: size of the whole segment in bytes.
    pub total_size: u64,
    /// 48: offset of slot 0.
    pub slots_offset: u64,
    /// 56: reserved, 0.
    pub _reserved0: u64,

    // Shared state, all atomic.
    /// 64: successful `attach()` calls ever made (creator's ends excluded).
    pub attached: AtomicU32,
    /// 68: 1 once any sender has taken part.
    pub senders_joined: AtomicU32,
    /// 72: 1 once any receiver has taken part.
    pub receivers_joined: AtomicU32,
    /// 76: entries of the end table ever used (scans stop there).
    pub ends_used: AtomicU32,
    /// 80: reserved, 0.
    pub _reserved1: [u64; 6],

    /// 128: next position to consume (atomic u64).
    pub head: CachePadded<AtomicU64>,
    /// 256: next position to produce (atomic u64).
    pub tail: CachePadded<AtomicU64>,
    /// 384: bumped when a message is published or an end joins, leaves or dies.
    pub items: CachePadded<Event>,
    /// 512: bumped when a slot is freed or an end joins, leaves or dies.
    pub space: CachePadded<Event>,
}
pub const HEADER_SIZE: usize = std::mem::size_of::<Header>();

/// One end taking part. Written only by the holder of the row's lock byte.
#[repr(C)]
pub struct EndEntry {
    /// 0: atomic, one of the `END_*` values.
    pub state: AtomicU32,
    /// 4: atomic, pid of the end's process as it sees itself (shown by
    /// `shmq ls`; never used to judge liveness).
    pub pid: AtomicU32,
    /// 8: atomic, bumped at every join: tells this end's messages from an
    /// earlier end's on the same row.
    pub generation: AtomicU32,
    /// 12: reserved, 0.
    pub _reserved: [u32; 13],
}

/// The fixed part of a slot; `slot_size` inline bytes follow. 64 bytes.
/// Every field but `seq` belongs to whoever holds the slot WRITING or READING.
#[repr(C)]
pub struct SlotHeader {
    /// 0: atomic, see [`seq_word`].
    pub seq: AtomicU64,
    /// 8: atomic, message length in bytes.
    pub len: AtomicU64,
    /// 16: atomic, codec tag (see `codec.rs`).
    pub tag: AtomicU32,
    /// 20: atomic, [`KIND_INLINE`] or [`KIND_PAYLOAD`].
    pub kind: AtomicU32,
    /// 24: atomic, row of the sending end.
    pub sender: AtomicU32,
    /// 28: atomic, that row's generation when it sent.
    pub sender_gen: AtomicU32,
    /// 32: atomic, payload segment name (random) when `kind == KIND_PAYLOAD`.
    pub payload_name: AtomicU64,
    /// 40: atomic, the payload segment's generation for this message.
    pub payload_gen: AtomicU64,
    /// 48: reserved, 0.
    pub _reserved: [u64; 2],
}

/// Offset 0 of a payload segment. 64 bytes; data follows at offset 64.
#[repr(C)]
pub struct PayloadHeader {
    /// 0: [`PAYLOAD_MAGIC`].
    pub magic: u64,
    /// 8: [`LAYOUT_VERSION`].
    pub version: u32,
    /// 12: reserved, 0.
    pub _reserved0: u32,
    /// 16: atomic, `generation << 2 | PAYLOAD_*`.
    pub state: AtomicU64,
    /// 24: data bytes after the header.
    pub capacity: u64,
    /// 32: the random id of the queue it belongs to.
    pub queue_id: u64,
    /// 40: the sending end: `row << 32 | row generation`.
    pub owner: u64,
    /// 48: reserved, 0.
    pub _reserved1: [u64; 2],
}

pub const ENTRY_SIZE: usize = std::mem::size_of::<EndEntry>();
pub const SLOTS_OFFSET: usize = HEADER_SIZE + MAX_ENDS as usize * ENTRY_SIZE;

pub fn slot_stride(slot_size: u32) -> usize {
    SLOT_HEADER_SIZE + (slot_size as usize).div_ceil(64) * 64
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::{offset_of, size_of};

    /// The offsets written in the doc comments are the ones the compiler uses.
    #[test]
    fn offsets_match_the_documentation() {
        assert_eq!(HEADER_SIZE, 640);
        assert_eq!(offset_of!(Header, attached), 64);
        assert_eq!(offset_of!(Header, ends_used), 76);
        assert_eq!(offset_of!(Header, head), 128);
        assert_eq!(offset_of!(Header, tail), 256);
        assert_eq!(offset_of!(Header, items), 384);
        assert_eq!(offset_of!(Header, space), 512);
        assert_eq!(size_of::<EndEntry>(), 64);
        assert_eq!(offset_of!(EndEntry, generation), 8);
        assert_eq!(size_of::<SlotHeader>(), SLOT_HEADER_SIZE);
        assert_eq!(offset_of!(SlotHeader, payload_name), 32);
        assert_eq!(offset_of!(SlotHeader, payload_gen), 40);
        assert_eq!(size_of::<PayloadHeader>(), PAYLOAD_HEADER_SIZE);
        assert_eq!(offset_of!(PayloadHeader, state), 16);
        assert_eq!(offset_of!(PayloadHeader, owner), 40);
        assert_eq!(SLOTS_OFFSET, 66176);
        assert_eq!(slot_stride(1), 128);
        assert_eq!(slot_stride(64), 128);
    }

    #[test]
    fn seq_words_round_trip() {
        let s = seq_word(POS_MASK, MAX_ENDS - 1, SLOT_VOID);
        assert_eq!(
            (seq_pos(s), seq_owner(s), seq_state(s)),
            (POS_MASK, MAX_ENDS - 1, SLOT_VOID)
        );
        assert_eq!(
            seq_pos(seq_word(POS_MASK + 1, 0, 0)),
            0,
            "positions wrap at 2^51"
        );
    }
}
