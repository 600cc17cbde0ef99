//! The shared-memory layout of a shmq queue, layout version 1.
//!
//! This is the one place the on-memory format is defined. All integers are
//! little-endian (x86-64 / aarch64 native), all offsets are in bytes from the
//! start of the segment, and every field marked "atomic" is only ever accessed
//! with atomic instructions of the stated width.
//!
//! # Names
//! A queue is a POSIX shared-memory object `/shmq-<id>` where `<id>` is 16
//! lowercase hex digits (64 random bits). The queue's *handle* is the string
//! `shmq-<id>`. Payload segment number `n` (a `u32`) of that queue is
//! `/shmq-<id>-<n as lowercase hex>`; the longest name is 30 characters, under
//! macOS's 31. Every object is created with mode 0600.
//!
//! # Queue segment
//! ```text
//! offset            size                 what
//! 0                 HEADER_SIZE (640)    Header
//! 640               MAX_ENDS * 128       EndEntry[MAX_ENDS]   (the end table)
//! slots_offset      capacity * stride    Slot[capacity]
//! ```
//! `slots_offset = HEADER_SIZE + MAX_ENDS * 128` (= 33408) and
//! `stride = SLOT_HEADER_SIZE + round_up(slot_size, 64)`; the segment is
//! `slots_offset + capacity * stride` bytes (`Header::total_size`).
//!
//! # The ring
//! `head` and `tail` count positions from 0 and never wrap in practice
//! (2^62 messages). Position `p` lives in slot `p % capacity`. A slot's `seq`
//! is `(p << 2) | state` where state is one of [`SLOT_EMPTY`] (free for the
//! producer of `p`), [`SLOT_WRITING`] (a producer claimed `p` and is copying),
//! [`SLOT_FULL`] (message `p` is ready), [`SLOT_READING`] (a consumer claimed it).
//! A producer CASes `seq` EMPTY→WRITING, then moves `tail` from `p` to `p+1`
//! (anyone who sees a claimed slot at `tail` helps move it), writes, and stores
//! FULL. A consumer CASes FULL→READING, moves `head` likewise, reads, and
//! stores `((p + capacity) << 2) | EMPTY`. Before claiming, an end writes the
//! position into its `EndEntry::working`, so a slot stuck in WRITING or
//! READING can be traced to its end's process.
//!
//! # Crashes
//! Who takes part is read off the end table (entries in state SENDER or
//! RECEIVER). Any end may reap an entry whose process (pid + start time) is
//! gone: it first recovers the slot that entry was working on, then frees the
//! entry (pid 0, state FREE) and drops one `holders`. A slot stuck in
//! WRITING at `p` with no live sender advertising `p` becomes a [`KIND_VOID`]
//! message (claimed READING, kind written, published FULL) that consumers
//! skip; one stuck in READING with no live receiver advertising `p` is freed
//! for the next lap (its payload segment, if any, is given back).
//!
//! # Wake-ups
//! `items` and `space` are event counters (u32, wrapping) used as futex words
//! (shared, not private): producers bump `items` after publishing, consumers
//! bump `space` after freeing, and either side bumps both on close. A waiter
//! increments `waiters`, re-checks, and futex-waits on `seq` while it is
//! unchanged; a bumper calls futex-wake only when `waiters` is non-zero.
//!
//! # Payload segments
//! A message longer than `slot_size` travels in a payload segment owned by the
//! sending end: a 64-byte [`PayloadHeader`] followed by `capacity` data bytes
//! (data starts at offset 64, so it is 64-byte aligned). The slot then has
//! `kind == KIND_PAYLOAD` and names the segment by `payload_id`.

use crossbeam_utils::CachePadded;
use std::sync::atomic::{AtomicU32, AtomicU64};

/// `b"SHMQUEUE"` read as a little-endian u64.
pub const MAGIC: u64 = u64::from_le_bytes(*b"SHMQUEUE");
/// `b"SHMQDATA"` read as a little-endian u64.
pub const PAYLOAD_MAGIC: u64 = u64::from_le_bytes(*b"SHMQDATA");
pub const LAYOUT_VERSION: u32 = 1;

/// Entries in the end table: how many ends may take part at once.
pub const MAX_ENDS: u32 = 256;
pub const MAX_CAPACITY: u32 = 1 << 20;
pub const MAX_SLOT_SIZE: u32 = 1 << 26;
pub const SLOT_HEADER_SIZE: usize = 64;
pub const PAYLOAD_HEADER_SIZE: usize = 64;

pub const SLOT_EMPTY: u64 = 0;
pub const SLOT_WRITING: u64 = 1;
pub const SLOT_FULL: u64 = 2;
pub const SLOT_READING: u64 = 3;

/// `Slot::kind`: the message bytes follow the slot header.
pub const KIND_INLINE: u32 = 0;
/// `Slot::kind`: the message bytes are in payload segment `payload_id`.
pub const KIND_PAYLOAD: u32 = 1;
/// `Slot::kind`: no message (its producer died while writing); consumers skip it.
pub const KIND_VOID: u32 = 2;

/// `EndEntry::state` values. An end is CLAIMING only while it joins; its pid
/// is written before it becomes SENDER / RECEIVER, and is 0 when FREE.
pub const END_FREE: u32 = 0;
pub const END_CLAIMING: u32 = 1;
pub const END_SENDER: u32 = 2;
pub const END_RECEIVER: u32 = 3;

/// `PayloadHeader::state` values.
pub const PAYLOAD_FREE: u32 = 0;
/// Holds a message that is in the queue or being read.
pub const PAYLOAD_IN_USE: u32 = 1;
/// In use, and its sender has gone: whoever frees it unlinks it.
pub const PAYLOAD_ORPHANED: u32 = 2;
/// Unlinked by its sender; receivers drop their mapping when they see this.
pub const PAYLOAD_RETIRED: u32 = 3;

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
    /// 56: pid of the creating process.
    pub creator_pid: u32,
    /// 60: reserved, 0.
    pub _reserved0: u32,

    // Shared state, all atomic.
    /// 64: end objects (in any process) that keep the segment linked.
    pub holders: AtomicU32,
    /// 68: successful `attach()` calls ever made (creator's ends excluded).
    pub attached: AtomicU32,
    /// 72: 1 once any sender has taken part.
    pub senders_joined: AtomicU32,
    /// 76: 1 once any receiver has taken part.
    pub receivers_joined: AtomicU32,
    /// 80: entries of the end table ever used (scans stop there).
    pub ends_used: AtomicU32,
    /// 84: reserved, 0.
    pub _reserved2: u32,
    /// 88: next payload segment number.
    pub next_payload_id: AtomicU32,
    /// 92: reserved, 0.
    pub _reserved1: u32,
    /// 96: start time of the creating process (see `EndEntry::start_time`).
    pub creator_start_time: u64,

    /// 128: next position to consume (atomic u64).
    pub head: CachePadded<AtomicU64>,
    /// 256: next position to produce (atomic u64).
    pub tail: CachePadded<AtomicU64>,
    /// 384: bumped when a message is published or the queue closes.
    pub items: CachePadded<Event>,
    /// 512: bumped when a slot is freed or the queue closes.
    pub space: CachePadded<Event>,
}
pub const HEADER_SIZE: usize = std::mem::size_of::<Header>();

/// One end taking part (a sender or receiver object in some process).
/// 128 bytes: what the end itself writes on every message (`working`) and
/// what receivers write for it (`acked`) are on different cache lines.
#[repr(C)]
pub struct EndEntry {
    /// 0: atomic, one of the `END_*` values.
    pub state: AtomicU32,
    /// 4: atomic, pid of the end's process.
    pub pid: AtomicU32,
    /// 8: atomic, that process's start time (clock ticks since boot, field 22
    /// of `/proc/<pid>/stat`), so a reused pid is not taken for the end's.
    pub start_time: AtomicU64,
    /// 16: atomic, the ring position this end is claiming, or `u64::MAX`.
    pub working: AtomicU64,
    /// 24: reserved, 0.
    pub _reserved0: [u64; 5],
    /// 64: atomic, `(generation << 32) | consumed`: a receiver that consumes a
    /// message from this end increments `consumed` if the generation matches
    /// the one recorded in the slot. The generation changes on every claim.
    pub acked: AtomicU64,
    /// 72: reserved, 0.
    pub _reserved1: [u64; 7],
}

/// The fixed part of a slot; `slot_size` inline bytes follow. 64 bytes.
#[repr(C)]
pub struct SlotHeader {
    /// 0: atomic, `(position << 2) | SLOT_*`.
    pub seq: AtomicU64,
    /// 8: message length in bytes.
    pub len: u64,
    /// 16: codec tag (see `codec.rs`).
    pub tag: u32,
    /// 20: [`KIND_INLINE`] or [`KIND_PAYLOAD`].
    pub kind: u32,
    /// 24: index of the sending end in the end table.
    pub sender: u32,
    /// 28: that end's generation when it sent.
    pub sender_gen: u32,
    /// 32: payload segment number when `kind == KIND_PAYLOAD`.
    pub payload_id: u32,
    /// 36: reserved, 0.
    pub _reserved: [u32; 7],
}

/// Offset 0 of a payload segment. 64 bytes; data follows at offset 64.
#[repr(C)]
pub struct PayloadHeader {
    /// 0: [`PAYLOAD_MAGIC`].
    pub magic: u64,
    /// 8: [`LAYOUT_VERSION`].
    pub version: u32,
    /// 12: atomic, one of the `PAYLOAD_*` values.
    pub state: AtomicU32,
    /// 16: data bytes after the header.
    pub capacity: u64,
    /// 24: the random id of the queue it belongs to.
    pub queue_id: u64,
    /// 32: reserved, 0.
    pub _reserved: [u64; 4],
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
        assert_eq!(offset_of!(Header, holders), 64);
        assert_eq!(offset_of!(Header, next_payload_id), 88);
        assert_eq!(offset_of!(Header, creator_start_time), 96);
        assert_eq!(offset_of!(Header, head), 128);
        assert_eq!(offset_of!(Header, tail), 256);
        assert_eq!(offset_of!(Header, items), 384);
        assert_eq!(offset_of!(Header, space), 512);
        assert_eq!(size_of::<EndEntry>(), 128);
        assert_eq!(offset_of!(EndEntry, working), 16);
        assert_eq!(offset_of!(EndEntry, acked), 64);
        assert_eq!(size_of::<SlotHeader>(), SLOT_HEADER_SIZE);
        assert_eq!(offset_of!(SlotHeader, payload_id), 32);
        assert_eq!(size_of::<PayloadHeader>(), PAYLOAD_HEADER_SIZE);
        assert_eq!(offset_of!(PayloadHeader, queue_id), 24);
        assert_eq!(SLOTS_OFFSET, 33408);
        assert_eq!(slot_stride(1), 128);
        assert_eq!(slot_stride(64), 128);
    }
}
