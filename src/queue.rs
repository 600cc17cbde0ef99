//! The bounded MPMC ring in the queue segment (see `layout.rs` for the format):
//! creating and validating a segment, the end table, and claiming, publishing
//! and freeing slots.

use crate::error::{Code, ShmqError};
use crate::layout::*;
use crate::segment::{self, Segment};
use crate::{payload, process, sync};
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::{AcqRel, Acquire, Relaxed, Release, SeqCst};

/// Bounded retries of the claim loops: a segment whose counters can never
/// agree (corrupt or hostile) gives `ERR_SHMQ_INVALID`, not a hang.
const MAX_CLAIM_SPINS: u32 = 1 << 20;
const NO_POSITION: u64 = u64::MAX;

pub struct Queue {
    seg: Segment,
    pub id: u64,
    pub name: String,
    pub capacity: u32,
    pub slot_size: u32,
    pub max_message_size: u64,
    stride: usize,
}

/// Which side of the queue an end is on.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Role {
    Sender,
    Receiver,
}

/// An end's row in the end table while it takes part.
#[derive(Clone, Copy, Debug)]
pub struct Member {
    pub index: u32,
    pub generation: u32,
}

/// The fields of a slot a producer fills in.
pub struct Message {
    pub tag: u32,
    pub len: u64,
    pub kind: u32,
    pub payload_id: u32,
}

/// What a consumer finds in a slot it claimed. The fields were read from
/// shared memory; `tag` and `len` are checked against the codec.
pub struct Claimed {
    pub pos: u64,
    pub tag: u32,
    pub len: u64,
    pub kind: u32,
    pub payload_id: u32,
    sender: u32,
    sender_gen: u32,
}

impl Queue {
    /// Creates a new queue segment with a fresh random name.
    pub fn create(
        capacity: u32,
        slot_size: u32,
        max_message_size: u64,
    ) -> Result<Queue, ShmqError> {
        let id = segment::random_id();
        let name = segment::queue_name(id);
        let stride = slot_stride(slot_size);
        let total = SLOTS_OFFSET + capacity as usize * stride;
        let seg = Segment::create(&name, total)?;
        let q = Queue {
            seg,
            id,
            name,
            capacity,
            slot_size,
            max_message_size,
            stride,
        };
        // SAFETY: the segment was just created and is not yet visible under a
        // name anyone else knows (the handle has not left this process), so
        // writing the read-only part of the header through a raw pointer races nothing.
        unsafe {
            let h = q.seg.as_ptr().cast::<Header>();
            (*h).version = LAYOUT_VERSION;
            (*h).header_size = HEADER_SIZE as u32;
            (*h).capacity = capacity;
            (*h).slot_size = slot_size;
            (*h).max_ends = MAX_ENDS;
            (*h).slot_stride = stride as u32;
            (*h).max_message_size = max_message_size;
            (*h).total_size = total as u64;
            (*h).slots_offset = SLOTS_OFFSET as u64;
            let me = process::identity();
            (*h).creator_pid = me.pid;
            (*h).creator_start_time = me.start_time;
        }
        let h = q.header();
        // The two ends createSharedMemoryPair returns.
        h.holders.store(2, Relaxed);
        for i in 0..u64::from(capacity) {
            q.seq(i).store(i << 2 | SLOT_EMPTY, Relaxed);
        }
        for i in 0..MAX_ENDS {
            q.entry(i).working.store(NO_POSITION, Relaxed);
        }
        // The magic goes last: a reader that sees it sees a complete header.
        // SAFETY: as above; the atomic fence below orders it after the rest.
        unsafe { (*q.seg.as_ptr().cast::<Header>()).magic = MAGIC };
        std::sync::atomic::fence(SeqCst);
        Ok(q)
    }

    /// Opens an existing queue by handle, checking every size and offset
    /// before anything else reads the segment.
    pub fn open(handle: &str) -> Result<Queue, ShmqError> {
        let id = segment::parse_queue_name(handle).ok_or_else(|| {
            ShmqError::invalid(format!(
                "{handle:?} is not a shmq handle (expected \"shmq-\" and 16 hex digits)"
            ))
        })?;
        let seg = Segment::open(handle)?;
        let bad =
            |what: &str| ShmqError::invalid(format!("{handle} is not a valid shmq queue: {what}"));
        let h = seg
            .at::<Header>(0)
            .ok_or_else(|| bad("too small for a header"))?;
        if h.magic != MAGIC {
            return Err(bad("wrong magic number"));
        }
        if h.version != LAYOUT_VERSION {
            return Err(bad(&format!(
                "layout version {} (this shmq reads version {LAYOUT_VERSION}; use the same shmq version in every process)",
                h.version
            )));
        }
        let (capacity, slot_size) = (h.capacity, h.slot_size);
        if h.header_size as usize != HEADER_SIZE
            || h.max_ends != MAX_ENDS
            || h.slots_offset != SLOTS_OFFSET as u64
        {
            return Err(bad("header geometry"));
        }
        if capacity == 0 || capacity > MAX_CAPACITY || slot_size > MAX_SLOT_SIZE {
            return Err(bad("capacity or slot size out of range"));
        }
        let stride = slot_stride(slot_size);
        let total = SLOTS_OFFSET + capacity as usize * stride;
        if h.slot_stride as usize != stride || h.total_size != total as u64 || seg.len() < total {
            return Err(bad("segment size does not match its header"));
        }
        Ok(Queue {
            id,
            name: handle.to_owned(),
            capacity,
            slot_size,
            max_message_size: h.max_message_size,
            stride,
            seg,
        })
    }

    pub fn header(&self) -> &Header {
        // SAFETY: offset 0 holds a Header; size checked in create/open.
        unsafe { &*self.seg.as_ptr().cast::<Header>() }
    }

    fn entry(&self, index: u32) -> &EndEntry {
        debug_assert!(index < MAX_ENDS);
        let offset = HEADER_SIZE + (index % MAX_ENDS) as usize * ENTRY_SIZE;
        // SAFETY: index < MAX_ENDS, so the entry lies inside the end table,
        // which create/open checked to be inside the mapping.
        unsafe { &*self.seg.as_ptr().add(offset).cast::<EndEntry>() }
    }

    fn slot_offset(&self, pos: u64) -> usize {
        SLOTS_OFFSET + (pos % u64::from(self.capacity)) as usize * self.stride
    }

    /// Raw pointer to the slot header for `pos`: its plain fields belong to
    /// whoever holds the slot (WRITING / READING), so they are never borrowed.
    fn slot_ptr(&self, pos: u64) -> *mut SlotHeader {
        // SAFETY: pos % capacity < capacity, and capacity * stride bytes of
        // slots were checked to lie inside the mapping.
        unsafe {
            self.seg
                .as_ptr()
                .add(self.slot_offset(pos))
                .cast::<SlotHeader>()
        }
    }

    fn seq(&self, pos: u64) -> &AtomicU64 {
        // SAFETY: slot_ptr is in bounds and aligned; seq is an atomic.
        unsafe { &(*self.slot_ptr(pos)).seq }
    }

    /// The inline bytes of the slot at `pos` (`slot_size` of them).
    pub fn slot_data(&self, pos: u64) -> *mut u8 {
        // SAFETY: the slot header is followed by at least slot_size bytes
        // within the stride, inside the mapping (checked in create/open).
        unsafe {
            self.seg
                .as_ptr()
                .add(self.slot_offset(pos) + SLOT_HEADER_SIZE)
        }
    }

    pub fn items(&self) -> &Event {
        &self.header().items
    }

    pub fn space(&self) -> &Event {
        &self.header().space
    }

    /// Messages waiting now.
    pub fn size(&self) -> u64 {
        let h = self.header();
        let head = h.head.load(Acquire);
        let tail = h.tail.load(Acquire);
        tail.saturating_sub(head).min(u64::from(self.capacity))
    }

    // ---- who keeps the queue open ----

    /// Adds a holder (an end object that keeps the segment linked). Fails if
    /// the last holder already left, i.e. the queue is being removed.
    pub fn hold(&self) -> Result<(), ShmqError> {
        let holders = &self.header().holders;
        let mut n = holders.load(Acquire);
        loop {
            if n == 0 {
                return Err(ShmqError::new(
                    Code::NotFound,
                    format!("queue {} was closed by all its ends", self.name),
                ));
            }
            match holders.compare_exchange_weak(n, n.wrapping_add(1), AcqRel, Acquire) {
                Ok(_) => return Ok(()),
                Err(now) => n = now,
            }
        }
    }

    /// Drops a holder; the last one unlinks the queue and its payload segments.
    pub fn release(&self) {
        if self.header().holders.fetch_sub(1, AcqRel) == 1 {
            Segment::unlink(&self.name);
            unlink_payloads(self.id);
        }
    }

    pub fn note_attach(&self) {
        self.header().attached.fetch_add(1, Relaxed);
    }

    pub fn ever_attached(&self) -> bool {
        self.header().attached.load(Acquire) > 0
    }

    /// Takes a row in the end table.
    pub fn join(&self, role: Role) -> Result<Member, ShmqError> {
        let me = crate::process::identity();
        let h = self.header();
        for index in 0..MAX_ENDS {
            let e = self.entry(index);
            if e.state
                .compare_exchange(END_FREE, END_CLAIMING, AcqRel, Relaxed)
                .is_err()
            {
                continue;
            }
            h.ends_used.fetch_max(index + 1, AcqRel);
            e.pid.store(me.pid, SeqCst);
            e.start_time.store(me.start_time, SeqCst);
            e.working.store(NO_POSITION, SeqCst);
            let generation = ((e.acked.load(Relaxed) >> 32) as u32).wrapping_add(1);
            e.acked.store(u64::from(generation) << 32, SeqCst);
            let (state, joined) = match role {
                Role::Sender => (END_SENDER, &h.senders_joined),
                Role::Receiver => (END_RECEIVER, &h.receivers_joined),
            };
            joined.store(1, SeqCst);
            e.state.store(state, SeqCst);
            // A sender blocked on "no receiver left" (or the reverse) looks again.
            sync::notify(self.items());
            sync::notify(self.space());
            return Ok(Member { index, generation });
        }
        Err(ShmqError::new(
            Code::Invalid,
            format!(
                "queue {} already has {MAX_ENDS} ends taking part; close some first",
                self.name
            ),
        ))
    }

    /// Gives the row back and wakes everyone, so waiters on the other side
    /// notice if this was the last end of its kind.
    pub fn leave(&self, m: &Member) {
        let e = self.entry(m.index);
        e.pid.store(0, SeqCst);
        e.state.store(END_FREE, SeqCst);
        sync::notify(self.items());
        sync::notify(self.space());
    }

    /// Indexes of the end table in use so far (scans stop at `ends_used`).
    fn entries(&self) -> impl Iterator<Item = &EndEntry> {
        let used = self.header().ends_used.load(Acquire).min(MAX_ENDS);
        (0..used).map(|i| self.entry(i))
    }

    /// Ends in `state` now (dead ones count until they are reaped).
    fn count(&self, state: u32) -> usize {
        self.entries()
            .filter(|e| e.state.load(SeqCst) == state)
            .count()
    }

    /// Every sender that took part has left: receivers drain, then see Closed.
    pub fn senders_gone(&self) -> bool {
        self.header().senders_joined.load(SeqCst) == 1 && self.count(END_SENDER) == 0
    }

    /// Every receiver that took part has left: puts fail fast.
    pub fn receivers_gone(&self) -> bool {
        self.header().receivers_joined.load(SeqCst) == 1 && self.count(END_RECEIVER) == 0
    }

    /// Pids of the processes with ends taking part, and the counts of live
    /// senders and receivers.
    pub fn members(&self) -> (Vec<u32>, usize, usize) {
        let mut pids = Vec::new();
        let (mut senders, mut receivers) = (0, 0);
        for e in self.entries() {
            let state = e.state.load(SeqCst);
            let (pid, start) = (e.pid.load(SeqCst), e.start_time.load(SeqCst));
            if (state == END_SENDER || state == END_RECEIVER) && process::is_alive(pid, start) {
                if state == END_SENDER {
                    senders += 1;
                } else {
                    receivers += 1;
                }
                if !pids.contains(&pid) {
                    pids.push(pid);
                }
            }
        }
        (pids, senders, receivers)
    }

    /// True if the creator or any end taking part is still running.
    pub fn in_use(&self) -> bool {
        let h = self.header();
        process::is_alive(h.creator_pid, h.creator_start_time) || !self.members().0.is_empty()
    }

    // ---- crash recovery ----

    /// Waits one slice on `ev`; if nothing happened, looks for dead peers
    /// (so waiters notice a crash within about one slice).
    pub fn wait_slice(&self, ev: &Event, seen: u32, slice: std::time::Duration) {
        sync::wait(ev, seen, slice);
        if ev.seq.load(SeqCst) == seen {
            self.reap_dead();
        }
    }

    /// Reaps ends whose process has died: recovers the slots they held, frees
    /// their rows and drops their holds. Returns how many were reaped.
    pub fn reap_dead(&self) -> u32 {
        let mut reaped = 0;
        for e in self.entries() {
            let state = e.state.load(SeqCst);
            let pid = e.pid.load(SeqCst);
            // pid 0 while CLAIMING: a join in progress (its pid comes next).
            if state == END_FREE || pid == 0 || process::is_alive(pid, e.start_time.load(SeqCst)) {
                continue;
            }
            let working = e.working.load(SeqCst);
            if working != NO_POSITION {
                self.recover_slot(working);
            }
            if e.state
                .compare_exchange(state, END_FREE, AcqRel, Relaxed)
                .is_ok()
            {
                e.pid.store(0, SeqCst);
                reaped += 1;
                self.release();
            }
        }
        if reaped > 0 {
            // A process may hold more than one slot across its ends, or have
            // died after its row was freed: look at every slot in flight.
            let head = self.header().head.load(Acquire);
            for i in 0..u64::from(self.capacity) {
                self.recover_slot(head.wrapping_add(i));
            }
            sync::notify(self.items());
            sync::notify(self.space());
        }
        reaped
    }

    /// True if a live end in `state` is claiming position `pos`.
    fn advertised(&self, pos: u64, state: u32) -> bool {
        self.entries().any(|e| {
            e.state.load(SeqCst) == state
                && e.working.load(SeqCst) == pos
                && process::is_alive(e.pid.load(SeqCst), e.start_time.load(SeqCst))
        })
    }

    /// Unsticks the slot at `pos` if it is WRITING or READING at that
    /// position and no live end is working on it.
    fn recover_slot(&self, pos: u64) {
        let h = self.header();
        let seq = self.seq(pos);
        let cur = seq.load(Acquire);
        if cur >> 2 != pos {
            return;
        }
        match cur & 3 {
            // Take the slot as a reader would, mark it void, publish it.
            SLOT_WRITING
                if !self.advertised(pos, END_SENDER)
                    && seq
                        .compare_exchange(cur, pos << 2 | SLOT_READING, AcqRel, Relaxed)
                        .is_ok() =>
            {
                let fields = self.slot_ptr(pos);
                // SAFETY: the slot is ours (READING) until the store below.
                unsafe {
                    (*fields).kind = KIND_VOID;
                    (*fields).len = 0;
                    (*fields).sender = u32::MAX;
                }
                let _ = h
                    .tail
                    .compare_exchange(pos, pos.wrapping_add(1), AcqRel, Relaxed);
                seq.store(pos << 2 | SLOT_FULL, Release);
                sync::notify(self.items());
            }
            SLOT_READING if !self.advertised(pos, END_RECEIVER) => {
                // SAFETY: the slot's owner is dead; nobody else may touch a
                // READING slot, so its fields are stable.
                let (kind, payload_id) = unsafe {
                    let s = self.slot_ptr(pos);
                    ((*s).kind, (*s).payload_id)
                };
                let _ = h
                    .head
                    .compare_exchange(pos, pos.wrapping_add(1), AcqRel, Relaxed);
                let next_lap = pos.wrapping_add(u64::from(self.capacity)) << 2 | SLOT_EMPTY;
                if seq.compare_exchange(cur, next_lap, AcqRel, Relaxed).is_ok() {
                    if kind == KIND_PAYLOAD {
                        payload::give_back(self.id, payload_id);
                    }
                    sync::notify(self.space());
                }
            }
            _ => {}
        }
    }

    /// Messages from `m` that a receiver has consumed (wrapping u32).
    pub fn consumed_from(&self, m: &Member) -> u32 {
        let v = self.entry(m.index).acked.load(Acquire);
        if (v >> 32) as u32 == m.generation {
            v as u32
        } else {
            0
        }
    }

    // ---- producing ----

    /// Claims the next position for writing, or None if the queue is full.
    pub fn claim_tail(&self, m: &Member) -> Result<Option<u64>, ShmqError> {
        let h = self.header();
        let cap = u64::from(self.capacity);
        let me = self.entry(m.index);
        for _ in 0..MAX_CLAIM_SPINS {
            let t = h.tail.load(Acquire);
            let seq = self.seq(t).load(Acquire);
            let (spos, state) = (seq >> 2, seq & 3);
            if spos == t && state == SLOT_EMPTY {
                me.working.store(t, Relaxed); // published by the CAS below (release)
                if self
                    .seq(t)
                    .compare_exchange(seq, t << 2 | SLOT_WRITING, AcqRel, Relaxed)
                    .is_ok()
                {
                    let _ = h
                        .tail
                        .compare_exchange(t, t.wrapping_add(1), AcqRel, Relaxed);
                    return Ok(Some(t));
                }
            } else if spos == t {
                // Someone claimed t but has not moved the tail yet: help.
                let _ = h
                    .tail
                    .compare_exchange(t, t.wrapping_add(1), AcqRel, Relaxed);
            } else if spos.wrapping_add(cap) == t && h.tail.load(Acquire) == t {
                // The slot still holds the message from the previous lap.
                me.working.store(NO_POSITION, Relaxed);
                return Ok(None);
            }
            std::hint::spin_loop();
        }
        Err(self.inconsistent())
    }

    /// Fills in and publishes the slot claimed at `pos`.
    pub fn publish(&self, m: &Member, pos: u64, msg: &Message) {
        let fields = self.slot_ptr(pos);
        // SAFETY: this end owns the slot (state WRITING at pos) until the
        // release store below, so nobody else reads or writes these fields.
        unsafe {
            (*fields).len = msg.len;
            (*fields).tag = msg.tag;
            (*fields).kind = msg.kind;
            (*fields).sender = m.index;
            (*fields).sender_gen = m.generation;
            (*fields).payload_id = msg.payload_id;
        }
        self.seq(pos).store(pos << 2 | SLOT_FULL, Release);
        self.entry(m.index).working.store(NO_POSITION, Relaxed);
        sync::notify(self.items());
    }

    // ---- consuming ----

    /// Claims the oldest published message, or None if there is none yet.
    pub fn claim_head(&self, m: &Member) -> Result<Option<Claimed>, ShmqError> {
        let h = self.header();
        let me = self.entry(m.index);
        for _ in 0..MAX_CLAIM_SPINS {
            let p = h.head.load(Acquire);
            let seq = self.seq(p).load(Acquire);
            let (spos, state) = (seq >> 2, seq & 3);
            if spos == p && state == SLOT_FULL {
                me.working.store(p, Relaxed); // published by the CAS below (release)
                if self
                    .seq(p)
                    .compare_exchange(seq, p << 2 | SLOT_READING, AcqRel, Relaxed)
                    .is_ok()
                {
                    let _ = h
                        .head
                        .compare_exchange(p, p.wrapping_add(1), AcqRel, Relaxed);
                    // SAFETY: this end owns the slot (READING) until `free`; the
                    // acquire CAS made the producer's writes visible.
                    let (len, tag, kind, sender, sender_gen, payload_id) = unsafe {
                        let s = self.slot_ptr(p);
                        (
                            (*s).len,
                            (*s).tag,
                            (*s).kind,
                            (*s).sender,
                            (*s).sender_gen,
                            (*s).payload_id,
                        )
                    };
                    return Ok(Some(Claimed {
                        pos: p,
                        tag,
                        len,
                        kind,
                        payload_id,
                        sender,
                        sender_gen,
                    }));
                }
            } else if spos == p && state == SLOT_READING {
                let _ = h
                    .head
                    .compare_exchange(p, p.wrapping_add(1), AcqRel, Relaxed);
            } else if h.head.load(Acquire) == p
                && (spos < p || (spos == p && state != SLOT_READING))
            {
                // Nothing published at the head yet (or a producer is still writing).
                me.working.store(NO_POSITION, Relaxed);
                return Ok(None);
            }
            std::hint::spin_loop();
        }
        Err(self.inconsistent())
    }

    /// Gives the claimed slot back to producers and credits its sender.
    pub fn free(&self, m: &Member, c: &Claimed) {
        if c.sender < MAX_ENDS {
            let acked = &self.entry(c.sender).acked;
            let mut v = acked.load(Relaxed);
            while (v >> 32) as u32 == c.sender_gen {
                let next = (v & !0xffff_ffff) | u64::from((v as u32).wrapping_add(1));
                match acked.compare_exchange_weak(v, next, AcqRel, Relaxed) {
                    Ok(_) => break,
                    Err(now) => v = now,
                }
            }
        }
        let next_lap = c.pos.wrapping_add(u64::from(self.capacity));
        self.seq(c.pos).store(next_lap << 2 | SLOT_EMPTY, Release);
        self.entry(m.index).working.store(NO_POSITION, Relaxed);
        sync::notify(self.space());
    }

    fn inconsistent(&self) -> ShmqError {
        ShmqError::invalid(format!(
            "queue {} has inconsistent counters: the segment is corrupt",
            self.name
        ))
    }
}

/// Removes every payload segment of queue `id` still named in /dev/shm.
pub fn unlink_payloads(id: u64) {
    let prefix = format!("{}-", segment::queue_name(id));
    if let Ok(dir) = std::fs::read_dir("/dev/shm") {
        for entry in dir.flatten() {
            if let Some(name) = entry.file_name().to_str() {
                if name.starts_with(&prefix) {
                    Segment::unlink(name);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Cleanup(String);
    impl Drop for Cleanup {
        fn drop(&mut self) {
            Segment::unlink(&self.0);
        }
    }

    fn push(q: &Queue, m: &Member, tag: u32) -> bool {
        match q.claim_tail(m).unwrap() {
            Some(pos) => {
                q.publish(
                    m,
                    pos,
                    &Message {
                        tag,
                        len: 0,
                        kind: KIND_INLINE,
                        payload_id: 0,
                    },
                );
                true
            }
            None => false,
        }
    }

    fn pop(q: &Queue, m: &Member) -> Option<u32> {
        let c = q.claim_head(m).unwrap()?;
        q.free(m, &c);
        Some(c.tag)
    }

    #[test]
    fn fifo_full_and_empty() {
        let q = Queue::create(3, 64, 1 << 20).unwrap();
        let _c = Cleanup(q.name.clone());
        let tx = q.join(Role::Sender).unwrap();
        let rx = q.join(Role::Receiver).unwrap();
        assert_eq!(pop(&q, &rx), None);
        for tag in 0..3 {
            assert!(push(&q, &tx, tag));
        }
        assert!(!push(&q, &tx, 9), "capacity 3 holds 3");
        assert_eq!(q.size(), 3);
        for round in 0..10u32 {
            assert_eq!(pop(&q, &rx), Some(round));
            assert!(push(&q, &tx, round + 3));
        }
        assert_eq!(q.consumed_from(&tx), 10);
    }

    #[test]
    fn close_rules() {
        let q = Queue::create(2, 64, 1 << 20).unwrap();
        let _c = Cleanup(q.name.clone());
        assert!(
            !q.senders_gone() && !q.receivers_gone(),
            "nobody took part yet"
        );
        let tx = q.join(Role::Sender).unwrap();
        let rx = q.join(Role::Receiver).unwrap();
        q.leave(&tx);
        assert!(q.senders_gone());
        let tx2 = q.join(Role::Sender).unwrap();
        assert!(!q.senders_gone(), "a later attach reopens it");
        q.leave(&rx);
        assert!(q.receivers_gone());
        q.leave(&tx2);
    }

    #[test]
    fn open_validates_the_header() {
        let q = Queue::create(4, 100, 1 << 20).unwrap();
        let _c = Cleanup(q.name.clone());
        let q2 = Queue::open(&q.name).unwrap();
        assert_eq!((q2.capacity, q2.slot_size), (4, 100));
        // SAFETY: test-only corruption of a segment this test owns.
        unsafe { (*q.seg.as_ptr().cast::<Header>()).capacity = 1 << 30 };
        assert_eq!(Queue::open(&q.name).err().unwrap().code, Code::Invalid);
        // SAFETY: as above.
        unsafe { (*q.seg.as_ptr().cast::<Header>()).magic = 0 };
        assert_eq!(Queue::open(&q.name).err().unwrap().code, Code::Invalid);
        assert_eq!(Queue::open("nonsense").err().unwrap().code, Code::Invalid);
    }

    #[test]
    fn hold_after_last_release_fails() {
        let q = Queue::create(1, 64, 64).unwrap();
        let _c = Cleanup(q.name.clone());
        q.release();
        q.release();
        assert_eq!(q.hold().err().unwrap().code, Code::NotFound);
        assert!(Queue::open(&q.name).is_err(), "the last release unlinks");
    }

    #[test]
    fn mpmc_threads_lose_and_duplicate_nothing() {
        use std::sync::Arc;
        let q = Arc::new(Queue::create(8, 64, 1 << 20).unwrap());
        let _c = Cleanup(q.name.clone());
        const PER: u32 = 20_000;
        let producers: Vec<_> = (0..3u32)
            .map(|p| {
                let q = q.clone();
                std::thread::spawn(move || {
                    let m = q.join(Role::Sender).unwrap();
                    for i in 0..PER {
                        while !push(&q, &m, p * PER + i) {
                            std::thread::yield_now();
                        }
                    }
                })
            })
            .collect();
        let consumers: Vec<_> = (0..2)
            .map(|_| {
                let q = q.clone();
                std::thread::spawn(move || {
                    let m = q.join(Role::Receiver).unwrap();
                    let mut got = Vec::new();
                    let mut last = [None::<u32>; 3];
                    while got.len() < (3 * PER / 2) as usize {
                        match pop(&q, &m) {
                            Some(v) => {
                                let p = (v / PER) as usize;
                                assert!(last[p].is_none_or(|l| l < v), "per-sender FIFO");
                                last[p] = Some(v);
                                got.push(v);
                            }
                            None => std::thread::yield_now(),
                        }
                    }
                    got
                })
            })
            .collect();
        for p in producers {
            p.join().unwrap();
        }
        let mut all: Vec<u32> = consumers
            .into_iter()
            .flat_map(|c| c.join().unwrap())
            .collect();
        all.sort_unstable();
        assert_eq!(all, (0..3 * PER).collect::<Vec<_>>());
    }
}
