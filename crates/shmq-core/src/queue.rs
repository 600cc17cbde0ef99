//! The bounded MPMC ring in the queue segment (see `layout.rs` for the format
//! and its invariants): creating and validating a segment, the end table and
//! its liveness locks, crash recovery, and claiming, publishing and freeing
//! slots.

use crate::error::{Code, ShmqError};
use crate::layout::*;
use crate::sys::lock;
use crate::sys::segment::{self, Segment};
use crate::sys::Mapping;
use crate::{payload, sync};
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::{AcqRel, Acquire, Relaxed, SeqCst};
use std::sync::{Arc, Mutex, MutexGuard};

/// Bounded retries of the claim loops: a segment whose counters can never
/// agree (corrupt or hostile) gives `ERR_SHMQ_INVALID`, not a hang.
const MAX_CLAIM_SPINS: u32 = 1 << 20;

pub struct Queue {
    /// The mapping; locks taken through its fd are this object's rows (and
    /// the creator byte). Shared with zero-copy views, which may outlive
    /// this object (its locks and removal go with the object, not the views).
    seg: Arc<Segment>,
    /// A second open file description of the same file: probes and reaps go
    /// through it, so they see this object's own rows as held.
    probe: segment::Fd,
    /// Rows this object holds, and the in-process lock every join, leave and
    /// reap takes (OFD locks do not exclude threads sharing a description).
    rows: Mutex<[u64; MAX_ENDS as usize / 64]>,
    /// Created here or joined: dropping this object may then remove the
    /// queue (an object opened only to inspect it never does).
    took_part: std::sync::atomic::AtomicBool,
    /// When `reap_if_due` last looked (ms on `sync::now_ms`).
    last_probe: AtomicU64,
    pub id: u64,
    pub name: String,
    pub capacity: u32,
    pub slot_size: u32,
    pub max_message_size: u64,
    stride: usize,
    /// `capacity - 1` when capacity is a power of two: the slot index by a
    /// mask, not a division (a 32-bit div is ~26 cycles, paid per slot access).
    index_mask: Option<u64>,
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

impl Member {
    /// How payload segments name their owner.
    pub fn owner(&self) -> u64 {
        u64::from(self.index) << 32 | u64::from(self.generation)
    }
}

/// The fields of a slot a producer fills in.
pub struct Message {
    pub tag: u32,
    pub len: u64,
    pub kind: u32,
    pub payload_name: u64,
    pub payload_gen: u64,
}

/// What a consumer finds in a slot it claimed. The fields were read from
/// shared memory; `tag` and `len` are checked against the codec.
pub struct Claimed {
    pub pos: u64,
    pub tag: u32,
    pub len: u64,
    pub kind: u32,
    pub payload_name: u64,
    pub payload_gen: u64,
}

fn too_many_ends(name: &str) -> ShmqError {
    ShmqError::new(
        Code::Invalid,
        format!("queue {name} already has {MAX_ENDS} ends taking part; close some first"),
    )
}

fn gone(name: &str) -> ShmqError {
    ShmqError::new(
        Code::NotFound,
        format!("queue {name} was closed by all its ends"),
    )
}

fn os(what: &str, e: impl std::fmt::Display) -> ShmqError {
    ShmqError::new(Code::Os, format!("{what} failed: {e}"))
}

impl Queue {
    /// Creates a new queue segment with a fresh random name; this object
    /// holds the creator lock until it is dropped.
    pub fn create(
        capacity: u32,
        slot_size: u32,
        max_message_size: u64,
    ) -> Result<Queue, ShmqError> {
        let id = segment::random_id();
        let name = segment::queue_name(id);
        let stride = slot_stride(slot_size);
        let total = SLOTS_OFFSET + capacity as usize * stride;
        let seg = Segment::create(&name, total, |seg| {
            // SAFETY: the file is still under its temporary name, so nobody
            // else has it mapped; it is `total` bytes, room for the header.
            unsafe {
                let h = seg.as_ptr().cast::<Header>();
                (*h).version = LAYOUT_VERSION;
                (*h).header_size = HEADER_SIZE as u32;
                (*h).capacity = capacity;
                (*h).slot_size = slot_size;
                (*h).max_ends = MAX_ENDS;
                (*h).slot_stride = stride as u32;
                (*h).max_message_size = max_message_size;
                (*h).total_size = total as u64;
                (*h).slots_offset = SLOTS_OFFSET as u64;
                (*h).magic = MAGIC;
            }
            for pos in 0..u64::from(capacity) {
                let offset = SLOTS_OFFSET + pos as usize * stride;
                // SAFETY: slot `pos` lies inside the `total` bytes just sized.
                let seq = unsafe { &*seg.as_ptr().add(offset).cast::<AtomicU64>() };
                seq.store(seq_word(pos, 0, SLOT_EMPTY), Relaxed);
            }
            match lock::try_lock(seg.fd(), LOCK_CREATOR, 1) {
                Ok(true) => Ok(()),
                Ok(false) => Err(ShmqError::new(
                    Code::Os,
                    "a new queue file was locked by someone else".into(),
                )),
                Err(e) => Err(os("locking a new queue", e)),
            }
        })?;
        // Named but not yet usable: if this fails, nobody else can have it yet.
        let probe = seg.twin(&name).inspect_err(|_| Segment::unlink(&name))?;
        let q = Queue::new(seg, probe, id, name, capacity, slot_size, max_message_size);
        q.took_part.store(true, Relaxed);
        Ok(q)
    }

    fn new(
        seg: Segment,
        probe: segment::Fd,
        id: u64,
        name: String,
        capacity: u32,
        slot_size: u32,
        max_message_size: u64,
    ) -> Queue {
        Queue {
            seg: Arc::new(seg),
            probe,
            rows: Mutex::new([0; MAX_ENDS as usize / 64]),
            took_part: std::sync::atomic::AtomicBool::new(false),
            last_probe: AtomicU64::new(0),
            id,
            name,
            capacity,
            slot_size,
            max_message_size,
            stride: slot_stride(slot_size),
            index_mask: capacity.is_power_of_two().then(|| u64::from(capacity) - 1),
        }
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
        // Each field is read once into a local, then checked.
        let (magic, version) = (h.magic, h.version);
        if magic != MAGIC {
            return Err(bad("wrong magic number"));
        }
        if version != LAYOUT_VERSION {
            return Err(bad(&format!(
                "layout version {version} (this shmq reads version {LAYOUT_VERSION}; use the same shmq version in every process)"
            )));
        }
        let (capacity, slot_size, max_message_size) = (h.capacity, h.slot_size, h.max_message_size);
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
        let probe = seg.twin(handle)?;
        Ok(Queue::new(
            seg,
            probe,
            id,
            handle.to_owned(),
            capacity,
            slot_size,
            max_message_size,
        ))
    }

    pub fn header(&self) -> &Header {
        // SAFETY: offset 0 holds a Header; size checked in create/open.
        unsafe { &*self.seg.as_ptr().cast::<Header>() }
    }

    fn entry(&self, index: u32) -> &EndEntry {
        let offset = HEADER_SIZE + (index % MAX_ENDS) as usize * ENTRY_SIZE;
        // SAFETY: index % MAX_ENDS < MAX_ENDS, so the entry lies inside the
        // end table, which create/open checked to be inside the mapping.
        unsafe { &*self.seg.as_ptr().add(offset).cast::<EndEntry>() }
    }

    fn slot_offset(&self, pos: u64) -> usize {
        let index = match self.index_mask {
            Some(mask) => pos & mask,
            None => pos % u64::from(self.capacity),
        };
        SLOTS_OFFSET + index as usize * self.stride
    }

    fn slot(&self, pos: u64) -> &SlotHeader {
        // SAFETY: pos % capacity < capacity, and capacity * stride bytes of
        // slots were checked to lie inside the mapping; every field is atomic.
        unsafe {
            &*self
                .seg
                .as_ptr()
                .add(self.slot_offset(pos))
                .cast::<SlotHeader>()
        }
    }

    fn seq(&self, pos: u64) -> &AtomicU64 {
        &self.slot(pos).seq
    }

    /// The mapping, for views that must keep it alive.
    pub fn mapping(&self) -> Arc<Segment> {
        self.seg.clone()
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

    /// Where the head and the tail are now (a hint: they move meanwhile).
    pub fn head_now(&self) -> u64 {
        self.header().head.load(Relaxed)
    }

    /// See `head_now`.
    pub fn tail_now(&self) -> u64 {
        self.header().tail.load(Relaxed)
    }

    /// Asks the CPU to fetch slot `pos` (its header and first data line)
    /// into this core's cache ready for writing, so a batch finds the lines
    /// of the slots ahead already here instead of missing on each in turn.
    /// A hint: no effect on what any end sees.
    pub fn prefetch(&self, pos: u64) {
        let at = self.slot(pos) as *const SlotHeader as *const u8;
        prefetch_write(at);
        prefetch_write(at.wrapping_add(SLOT_HEADER_SIZE));
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

    /// Messages ever sent: the tail. It counts every position claimed, a
    /// message abandoned or whose sender died before publishing it too, and
    /// only grows (but a corrupt segment can hold any value).
    pub fn sent(&self) -> u64 {
        self.header().tail.load(Acquire)
    }

    fn rows(&self) -> MutexGuard<'_, [u64; MAX_ENDS as usize / 64]> {
        // A panic elsewhere never leaves the bitmap half-written.
        self.rows.lock().unwrap_or_else(|p| p.into_inner())
    }

    // ---- who takes part ----

    pub fn note_attach(&self) {
        self.header().attached.fetch_add(1, Relaxed);
    }

    pub fn ever_attached(&self) -> bool {
        self.header().attached.load(Acquire) > 0
    }

    /// A sender and a receiver have each taken part at some time.
    pub fn both_sides_joined(&self) -> bool {
        let h = self.header();
        h.senders_joined.load(SeqCst) == 1 && h.receivers_joined.load(SeqCst) == 1
    }

    /// Takes a row in the end table: its lock first, then (reaping whatever
    /// a dead end left in it) its fields.
    pub fn join(&self, role: Role) -> Result<Member, ShmqError> {
        let mut rows = self.rows();
        for attempt in 0..100 {
            for index in 0..MAX_ENDS {
                if rows[index as usize / 64] >> (index % 64) & 1 == 1 {
                    continue;
                }
                match lock::try_lock(self.seg.fd(), LOCK_ROW + u64::from(index), 1) {
                    Ok(true) => {}
                    Ok(false) => continue,
                    Err(e) => return Err(os("locking a row of the end table", e)),
                }
                crash_point!();
                if !self.seg.is_linked() {
                    lock::unlock(self.seg.fd(), LOCK_ROW + u64::from(index), 1);
                    return Err(gone(&self.name));
                }
                let e = self.entry(index);
                if e.state.load(SeqCst) != END_FREE {
                    self.recover_row(index);
                }
                let generation = e.generation.load(SeqCst).wrapping_add(1);
                e.generation.store(generation, SeqCst);
                e.pid.store(std::process::id(), SeqCst);
                let h = self.header();
                h.ends_used.fetch_max(index + 1, SeqCst);
                let (state, joined) = match role {
                    Role::Sender => (END_SENDER, &h.senders_joined),
                    Role::Receiver => (END_RECEIVER, &h.receivers_joined),
                };
                // The row before the flag: whoever sees the flag sees the row.
                e.state.store(state, SeqCst);
                crash_point!();
                joined.store(1, SeqCst);
                rows[index as usize / 64] |= 1 << (index % 64);
                self.took_part.store(true, Relaxed);
                // A sender blocked on "no receiver left" (or the reverse) looks again.
                sync::notify(self.items());
                sync::notify(self.space());
                return Ok(Member { index, generation });
            }
            // Every row refused. A closer or `gc` holds the whole range for
            // an instant while it decides; wait that out, unless the rows
            // are really all in use.
            if !self.seg.is_linked() {
                return Err(gone(&self.name));
            }
            if self.header().ends_used.load(SeqCst) >= MAX_ENDS && attempt > 2 {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        Err(too_many_ends(&self.name))
    }

    /// Gives the row back and wakes everyone, so waiters on the other side
    /// notice if this was the last end of its kind.
    pub fn leave(&self, m: &Member) {
        let mut rows = self.rows();
        let mine = &mut rows[m.index as usize / 64];
        if *mine >> (m.index % 64) & 1 == 0 {
            return;
        }
        self.entry(m.index).state.store(END_FREE, SeqCst);
        crash_point!();
        lock::unlock(self.seg.fd(), LOCK_ROW + u64::from(m.index), 1);
        *mine &= !(1 << (m.index % 64));
        sync::notify(self.items());
        sync::notify(self.space());
    }

    /// Rows in use so far (scans stop at `ends_used`).
    fn used(&self) -> u32 {
        self.header().ends_used.load(SeqCst).min(MAX_ENDS)
    }

    /// Ends in `state` now (dead ones count until they are reaped).
    fn count(&self, state: u32) -> usize {
        (0..self.used())
            .filter(|&i| self.entry(i).state.load(SeqCst) == state)
            .count()
    }

    /// Every sender that took part has left (or none ever did and the
    /// creator, who could still hand one out, is gone): receivers drain, then
    /// see Closed.
    pub fn senders_gone(&self) -> bool {
        self.count(END_SENDER) == 0
            && (self.header().senders_joined.load(SeqCst) == 1 || !self.creator_alive())
    }

    /// Every receiver that took part has left (or none ever did and the
    /// creator is gone): puts fail fast.
    pub fn receivers_gone(&self) -> bool {
        self.count(END_RECEIVER) == 0
            && (self.header().receivers_joined.load(SeqCst) == 1 || !self.creator_alive())
    }

    fn creator_alive(&self) -> bool {
        lock::is_held(&self.probe, LOCK_CREATOR, 1)
    }

    /// A side nobody ever joined, with the creator gone: its waiters must
    /// look again (they will find the queue closed).
    fn orphaned(&self) -> bool {
        let h = self.header();
        (h.senders_joined.load(SeqCst) == 0 || h.receivers_joined.load(SeqCst) == 0)
            && !self.creator_alive()
    }

    /// True if the row's end is alive (its lock is held; this object's own
    /// rows count, as they are held through another description).
    fn alive(&self, index: u32) -> bool {
        lock::is_held(&self.probe, LOCK_ROW + u64::from(index), 1)
    }

    /// Pids (as each end sees itself) of the live ends, and the counts of
    /// live senders and receivers.
    pub fn members(&self) -> (Vec<u32>, usize, usize) {
        let mut pids = Vec::new();
        let (mut senders, mut receivers) = (0, 0);
        for i in 0..self.used() {
            let e = self.entry(i);
            let state = e.state.load(SeqCst);
            if (state == END_SENDER || state == END_RECEIVER) && self.alive(i) {
                if state == END_SENDER {
                    senders += 1;
                } else {
                    receivers += 1;
                }
                let pid = e.pid.load(SeqCst);
                if !pids.contains(&pid) {
                    pids.push(pid);
                }
            }
        }
        (pids, senders, receivers)
    }

    /// True if any end or the creator is alive.
    pub fn in_use(&self) -> bool {
        lock::is_held(&self.probe, 0, LOCK_SPAN)
    }

    /// Unlinks the queue and its payload segments if no end and no creator is
    /// alive, deciding and unlinking under a lock on the whole range, so no
    /// end can join in between. Returns true if it did.
    pub fn remove_if_unused(&self) -> bool {
        let _rows = self.rows();
        if lock::try_lock(&self.probe, 0, LOCK_SPAN) != Ok(true) {
            return false;
        }
        crash_point!();
        Segment::unlink(&self.name);
        payload::unlink_all(self.id);
        lock::unlock(&self.probe, 0, LOCK_SPAN);
        true
    }

    // ---- crash recovery ----

    /// Waits one slice on `ev`; if nothing happened, looks for dead peers.
    pub fn wait_slice(&self, ev: &Event, seen: u32, slice: std::time::Duration) {
        sync::wait(ev, seen, slice);
        if ev.seq.load(SeqCst) == seen {
            self.reap_dead();
        }
    }

    /// `reap_dead`, at most once per `sync::PROBE`: for ends that find the
    /// queue full or empty without waiting (a dead peer may hold the slot they
    /// need, and nobody else may be waiting to notice). True if it reaped.
    pub fn reap_if_due(&self) -> bool {
        let now = sync::now_ms();
        let last = self.last_probe.load(Relaxed);
        if now.saturating_sub(last) < sync::PROBE.as_millis() as u64
            || self
                .last_probe
                .compare_exchange(last, now, Relaxed, Relaxed)
                .is_err()
        {
            return false;
        }
        self.reap_dead() > 0
    }

    /// Reaps the rows whose end has died: takes each such row's lock (which
    /// only succeeds once its holder is gone), resolves the slots and payload
    /// segments it held, and frees it. Returns how many were reaped.
    pub fn reap_dead(&self) -> u32 {
        let rows = self.rows();
        let mut reaped = 0;
        for index in 0..self.used() {
            if rows[index as usize / 64] >> (index % 64) & 1 == 1
                || self.entry(index).state.load(SeqCst) == END_FREE
            {
                continue;
            }
            let byte = LOCK_ROW + u64::from(index);
            if lock::try_lock(&self.probe, byte, 1) != Ok(true) {
                continue;
            }
            // The row is ours now; it may have been left cleanly meanwhile.
            if self.entry(index).state.load(SeqCst) != END_FREE {
                self.recover_row(index);
                self.entry(index).state.store(END_FREE, SeqCst);
                reaped += 1;
            }
            lock::unlock(&self.probe, byte, 1);
        }
        drop(rows);
        reaped += self.reap_stuck_ends();
        if reaped > 0 || self.orphaned() {
            sync::notify(self.items());
            sync::notify(self.space());
        }
        reaped
    }

    /// Resolves the slots at the head and the tail if a row that is free
    /// (and unlocked) holds them: only a corrupt segment, or an end that
    /// failed between claiming and publishing, leaves that, and it would stall
    /// the ring for good.
    fn reap_stuck_ends(&self) -> u32 {
        let h = self.header();
        let mut reaped = 0;
        for pos in [h.head.load(SeqCst), h.tail.load(SeqCst)] {
            let s = self.seq(pos).load(SeqCst);
            let owner = seq_owner(s);
            if !matches!(seq_state(s), SLOT_WRITING | SLOT_READING)
                || self.entry(owner).state.load(SeqCst) != END_FREE
            {
                continue;
            }
            let _rows = self.rows();
            let byte = LOCK_ROW + u64::from(owner);
            if lock::try_lock(&self.probe, byte, 1) == Ok(true) {
                if self.entry(owner).state.load(SeqCst) == END_FREE {
                    self.recover_row(owner);
                    reaped += 1;
                }
                lock::unlock(&self.probe, byte, 1);
            }
        }
        reaped
    }

    /// Resolves everything a dead end on row `index` held. The caller holds
    /// the row's lock. Every step is a CAS from the exact state the dead end
    /// left, so a reaper that dies half-way leaves work the next one redoes.
    fn recover_row(&self, index: u32) {
        let e = self.entry(index);
        let (state, generation) = (e.state.load(SeqCst), e.generation.load(SeqCst));
        let cap = u64::from(self.capacity);
        for i in 0..cap {
            let seq = self.seq(i);
            let s = seq.load(SeqCst);
            if seq_owner(s) != index {
                continue;
            }
            let pos = seq_pos(s);
            match seq_state(s) {
                SLOT_WRITING
                    if seq
                        .compare_exchange(s, seq_word(pos, 0, SLOT_VOID), AcqRel, Acquire)
                        .is_ok() =>
                {
                    sync::notify(self.items());
                }
                SLOT_READING => {
                    let slot = self.slot(i);
                    if slot.kind.load(Acquire) == KIND_PAYLOAD {
                        payload::give_back(
                            self.id,
                            slot.payload_name.load(Acquire),
                            slot.payload_gen.load(Acquire),
                        );
                    }
                    crash_point!();
                    if seq
                        .compare_exchange(s, seq_word(pos + cap, 0, SLOT_EMPTY), AcqRel, Acquire)
                        .is_ok()
                    {
                        sync::notify(self.space());
                    }
                }
                _ => {}
            }
            crash_point!();
        }
        if state == END_SENDER {
            let owner = Member { index, generation }.owner();
            payload::abandon_dead(self.id, owner, |name, g| self.names_payload(name, g));
        }
    }

    /// True if a published or claimed message names generation `generation`
    /// of payload segment `name`.
    pub fn names_payload(&self, name: u64, generation: u64) -> bool {
        (0..u64::from(self.capacity)).any(|i| {
            let slot = self.slot(i);
            loop {
                let s = slot.seq.load(SeqCst);
                let holds = matches!(seq_state(s), SLOT_FULL | SLOT_READING)
                    && slot.kind.load(Acquire) == KIND_PAYLOAD
                    && slot.payload_name.load(Acquire) == name
                    && slot.payload_gen.load(Acquire) == generation;
                if slot.seq.load(SeqCst) == s {
                    return holds;
                }
            }
        })
    }

    /// Messages from `m` still waiting in the ring (published, not claimed).
    pub fn unacked(&self, m: &Member) -> u32 {
        (0..u64::from(self.capacity))
            .filter(|&i| {
                let slot = self.slot(i);
                loop {
                    let s = slot.seq.load(SeqCst);
                    let mine = seq_state(s) == SLOT_FULL
                        && slot.sender.load(Acquire) == m.index
                        && slot.sender_gen.load(Acquire) == m.generation;
                    if slot.seq.load(SeqCst) == s {
                        return mine;
                    }
                }
            })
            .count() as u32
    }

    // ---- producing ----

    /// Claims the next position for writing, or None if the queue is full.
    pub fn claim_tail(&self, m: &Member) -> Result<Option<u64>, ShmqError> {
        let tail = &*self.header().tail;
        let cap = u64::from(self.capacity);
        for _ in 0..MAX_CLAIM_SPINS {
            let t = tail.load(SeqCst);
            let s = self.seq(t).load(Acquire);
            let (sp, tp) = (seq_pos(s), t & POS_MASK);
            if sp == tp && seq_state(s) == SLOT_EMPTY {
                if self
                    .seq(t)
                    .compare_exchange(s, seq_word(t, m.index, SLOT_WRITING), AcqRel, Acquire)
                    .is_ok()
                {
                    crash_point!();
                    let _ = tail.compare_exchange(t, t.wrapping_add(1), AcqRel, Relaxed);
                    return Ok(Some(t));
                }
            } else if sp == tp || sp == (tp + cap) & POS_MASK {
                // t is claimed (or even consumed) but the tail was not moved yet: help.
                let _ = tail.compare_exchange(t, t.wrapping_add(1), AcqRel, Relaxed);
            } else if (sp + cap) & POS_MASK == tp && tail.load(SeqCst) == t {
                // The slot still holds the message from the previous lap.
                return Ok(None);
            }
            std::hint::spin_loop();
        }
        Err(self.inconsistent())
    }

    /// True if the slot at the tail is free for the next position (a claim
    /// would probably succeed); a hint, read without claiming.
    pub fn tail_free(&self) -> bool {
        let t = self.header().tail.load(SeqCst);
        let s = self.seq(t).load(Acquire);
        seq_pos(s).wrapping_add(u64::from(self.capacity)) & POS_MASK != t & POS_MASK
    }

    /// Fills in and publishes the slot claimed at `pos`.
    pub fn publish(&self, m: &Member, pos: u64, msg: &Message) -> Result<(), ShmqError> {
        self.publish_with(m, pos, msg, true)
    }

    /// `publish`; `wake: false` leaves the wake-up to the caller (a batch
    /// wakes once).
    pub fn publish_with(
        &self,
        m: &Member,
        pos: u64,
        msg: &Message,
        wake: bool,
    ) -> Result<(), ShmqError> {
        let slot = self.slot(pos);
        slot.len.store(msg.len, Relaxed);
        slot.tag.store(msg.tag, Relaxed);
        slot.kind.store(msg.kind, Relaxed);
        slot.sender.store(m.index, Relaxed);
        slot.sender_gen.store(m.generation, Relaxed);
        slot.payload_name.store(msg.payload_name, Relaxed);
        slot.payload_gen.store(msg.payload_gen, Relaxed);
        crash_point!();
        slot.seq
            .compare_exchange(
                seq_word(pos, m.index, SLOT_WRITING),
                seq_word(pos, 0, SLOT_FULL),
                AcqRel,
                Acquire,
            )
            .map_err(|_| self.taken())?;
        if wake {
            sync::notify(self.items());
        }
        Ok(())
    }

    /// Gives up the slot claimed at `pos` without a message: consumers skip it.
    pub fn abandon(&self, m: &Member, pos: u64) -> Result<(), ShmqError> {
        self.seq(pos)
            .compare_exchange(
                seq_word(pos, m.index, SLOT_WRITING),
                seq_word(pos, 0, SLOT_VOID),
                AcqRel,
                Acquire,
            )
            .map_err(|_| self.taken())?;
        sync::notify(self.items());
        Ok(())
    }

    // ---- consuming ----

    /// Claims the oldest published message, or None if there is none yet.
    /// Void slots (their producer died) are freed on the way.
    pub fn claim_head(&self, m: &Member) -> Result<Option<Claimed>, ShmqError> {
        self.claim_head_within(m, u64::MAX)
    }

    /// `claim_head`, but only a message of at most `max_len` bytes (None if
    /// the oldest is longer). The length is read before the claim: the CAS
    /// that claims succeeds only if the slot did not change meanwhile.
    pub fn claim_head_within(
        &self,
        m: &Member,
        max_len: u64,
    ) -> Result<Option<Claimed>, ShmqError> {
        let head = &*self.header().head;
        let cap = u64::from(self.capacity);
        for _ in 0..MAX_CLAIM_SPINS {
            let p = head.load(SeqCst);
            let s = self.seq(p).load(Acquire);
            let (sp, pp) = (seq_pos(s), p & POS_MASK);
            if sp == pp {
                let cas = |new| {
                    self.seq(p)
                        .compare_exchange(s, new, AcqRel, Acquire)
                        .is_ok()
                };
                match seq_state(s) {
                    SLOT_FULL if self.slot(p).len.load(Acquire) > max_len => return Ok(None),
                    SLOT_FULL if cas(seq_word(p, m.index, SLOT_READING)) => {
                        crash_point!();
                        let _ = head.compare_exchange(p, p.wrapping_add(1), AcqRel, Relaxed);
                        let slot = self.slot(p);
                        return Ok(Some(Claimed {
                            pos: p,
                            tag: slot.tag.load(Relaxed),
                            len: slot.len.load(Relaxed),
                            kind: slot.kind.load(Relaxed),
                            payload_name: slot.payload_name.load(Relaxed),
                            payload_gen: slot.payload_gen.load(Relaxed),
                        }));
                    }
                    SLOT_VOID if cas(seq_word(p + cap, 0, SLOT_EMPTY)) => {
                        crash_point!();
                        sync::notify(self.space());
                    }
                    // Another consumer won the slot: look again.
                    SLOT_FULL | SLOT_VOID => {}
                    st if st > SLOT_VOID => return Err(self.inconsistent()),
                    SLOT_READING => {
                        let _ = head.compare_exchange(p, p.wrapping_add(1), AcqRel, Relaxed);
                    }
                    // EMPTY or WRITING: nothing published at the head yet.
                    _ if head.load(SeqCst) == p => return Ok(None),
                    _ => {}
                }
            } else if sp == (pp + cap) & POS_MASK {
                // p was consumed and freed but the head was not moved yet: help.
                let _ = head.compare_exchange(p, p.wrapping_add(1), AcqRel, Relaxed);
            } else if (sp + cap) & POS_MASK == pp && head.load(SeqCst) == p {
                // The previous lap is still being read: nothing at p yet.
                return Ok(None);
            }
            std::hint::spin_loop();
        }
        Err(self.inconsistent())
    }

    /// Gives the claimed slot back to producers.
    pub fn free(&self, m: &Member, c: &Claimed) -> Result<(), ShmqError> {
        self.free_with(m, c, true)
    }

    /// `free`; `wake: false` leaves the wake-up to the caller.
    pub fn free_with(&self, m: &Member, c: &Claimed, wake: bool) -> Result<(), ShmqError> {
        let cap = u64::from(self.capacity);
        self.seq(c.pos)
            .compare_exchange(
                seq_word(c.pos, m.index, SLOT_READING),
                seq_word(c.pos + cap, 0, SLOT_EMPTY),
                AcqRel,
                Acquire,
            )
            .map_err(|_| self.taken())?;
        if wake {
            sync::notify(self.space());
        }
        Ok(())
    }

    fn inconsistent(&self) -> ShmqError {
        ShmqError::invalid(format!(
            "queue {} has inconsistent counters: the segment is corrupt",
            self.name
        ))
    }

    fn taken(&self) -> ShmqError {
        ShmqError::invalid(format!(
            "a slot this end held in queue {} was taken from it (corrupt segment?)",
            self.name
        ))
    }

    /// Test only: the end of a process, as the kernel sees it: every lock of
    /// this object goes, nothing else is cleaned up (the object is leaked).
    #[cfg(test)]
    pub fn kill(&self) {
        // SAFETY: the object is never used or dropped after this (the caller
        // leaks it), so the mapping and descriptors go exactly once.
        unsafe { segment::kill(&self.seg, &self.probe) };
    }
}

impl Queue {
    /// This object is a fork child's copy of its parent's: dropping it only
    /// unmaps and closes (see `End::forsake`).
    pub fn forsake(&self) {
        self.took_part.store(false, Relaxed);
    }
}

impl Drop for Queue {
    /// Drops this object's locks, and removes the queue if nobody is left.
    fn drop(&mut self) {
        if self.took_part.load(Relaxed) {
            lock::unlock(self.seg.fd(), 0, LOCK_SPAN);
            self.remove_if_unused();
        }
    }
}

/// `prefetchw` where the CPU has it (CPUID 0x8000_0001 ECX bit 8, read
/// once), else nothing.
#[cfg(target_arch = "x86_64")]
fn prefetch_write(p: *const u8) {
    static HAS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    // (CPUID exists on every x86-64 CPU; leaf 0x8000_0000 says whether
    // leaf 0x8000_0001 does.)
    let has = *HAS.get_or_init(|| {
        std::arch::x86_64::__cpuid(0x8000_0000).eax >= 0x8000_0001
            && std::arch::x86_64::__cpuid(0x8000_0001).ecx & (1 << 8) != 0
    });
    if has {
        // SAFETY: a prefetch never faults and changes no memory; the CPU has
        // the instruction (checked above).
        unsafe {
            std::arch::asm!("prefetchw [{}]", in(reg) p, options(nostack, readonly, preserves_flags))
        }
    }
}

#[cfg(not(target_arch = "x86_64"))]
fn prefetch_write(_: *const u8) {}

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
                        payload_name: 0,
                        payload_gen: 0,
                    },
                )
                .unwrap();
                true
            }
            None => false,
        }
    }

    fn pop(q: &Queue, m: &Member) -> Option<u32> {
        let c = q.claim_head(m).unwrap()?;
        q.free(m, &c).unwrap();
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
        assert_eq!(q.unacked(&tx), 3);
        for round in 0..10u32 {
            assert_eq!(pop(&q, &rx), Some(round));
            assert!(push(&q, &tx, round + 3));
        }
        assert_eq!(q.unacked(&tx), 3);
        for _ in 0..3 {
            assert!(pop(&q, &rx).is_some());
        }
        assert_eq!(q.unacked(&tx), 0);
    }

    #[test]
    fn sent_counts_every_message_and_only_grows() {
        let q = Queue::create(2, 64, 1 << 20).unwrap();
        let _c = Cleanup(q.name.clone());
        let tx = q.join(Role::Sender).unwrap();
        let rx = q.join(Role::Receiver).unwrap();
        assert_eq!(q.sent(), 0);
        for tag in 0..5 {
            assert!(push(&q, &tx, tag));
            assert_eq!(pop(&q, &rx), Some(tag));
        }
        assert_eq!(
            (q.sent(), q.size()),
            (5, 0),
            "consumed messages still count"
        );
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

    /// The queue goes with its last live end (or creator), not before; an
    /// end that comes after it went is told so.
    #[test]
    fn the_last_one_out_removes_the_queue() {
        let q = Queue::create(1, 64, 64).unwrap();
        let name = q.name.clone();
        let _c = Cleanup(name.clone());
        let other = Queue::open(&name).unwrap();
        let m = other.join(Role::Receiver).unwrap();
        drop(q);
        assert!(Queue::open(&name).is_ok(), "a live end keeps it");
        let late = Queue::open(&name).unwrap();
        other.leave(&m);
        drop(other);
        assert!(Queue::open(&name).is_err(), "the last one out unlinks");
        assert_eq!(late.join(Role::Sender).err().unwrap().code, Code::NotFound);
    }

    /// A live end in this process is never reaped; a dead one is, at once.
    #[test]
    fn only_dead_rows_are_reaped() {
        let q = Queue::create(2, 64, 64).unwrap();
        let _c = Cleanup(q.name.clone());
        let _rx = q.join(Role::Receiver).unwrap();
        let other = Queue::open(&q.name).unwrap();
        let _tx = other.join(Role::Sender).unwrap();
        assert_eq!(q.reap_dead(), 0);
        assert_eq!(other.reap_dead(), 0);
        assert!(!q.senders_gone() && !q.receivers_gone());
        other.kill();
        std::mem::forget(other);
        assert_eq!(q.reap_dead(), 1);
        assert!(q.senders_gone());
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
