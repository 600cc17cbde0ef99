//! Payload segments: where messages longer than a slot travel.
//!
//! Each sending end owns a pool of segments and reuses them (fresh shared
//! memory costs a page fault per 4 KiB); a receiving end keeps the segments it
//! has read from mapped, and drops a mapping once its sender retires it.
//! Ownership moves only by compare-and-swap on the segment's state word,
//! `generation << 2 | PAYLOAD_*` (see `layout.rs`).

use crate::error::ShmqError;
use crate::layout::*;
use crate::sys::segment::{self, Segment};
use crate::sys::Mapping;
use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::{AcqRel, Acquire};
use std::sync::Arc;

/// Segments are sized in steps of this many bytes, so that messages of
/// slightly different sizes reuse the same segment.
const SIZE_STEP: u64 = 64 * 1024;

/// Shared memory one sender's segments may take together (or one message's
/// worth, if that is more): past it, a put waits for a segment to come back
/// instead of making another, so a 1 GiB stream costs about 1 GiB.
const POOL_BUDGET: u64 = 1 << 30;

/// The header of a segment, if it is one of queue `queue_id`'s.
fn header(seg: &Segment, queue_id: u64) -> Option<&PayloadHeader> {
    seg.at::<PayloadHeader>(0).filter(|h| {
        h.magic == PAYLOAD_MAGIC && h.version == LAYOUT_VERSION && h.queue_id == queue_id
    })
}

fn state(h: &PayloadHeader) -> &AtomicU64 {
    &h.state
}

const fn word(generation: u64, st: u64) -> u64 {
    generation << 2 | st
}

struct Owned {
    name: u64,
    /// Shared with the views of a reservation, so it outlives them.
    seg: Arc<Segment>,
    capacity: u64,
    /// Handed out by `reserve` (still FREE, but being written by JS).
    reserved: bool,
}

impl Owned {
    fn state(&self) -> &AtomicU64 {
        // SAFETY: offset 0 of a segment this pool created with a full header
        // (Segment::create checked its length), valid for any bit pattern.
        unsafe { &(*self.seg.as_ptr().cast::<PayloadHeader>()).state }
    }
}

/// The payload segments one sending end created.
#[derive(Default)]
pub struct Pool {
    owned: Vec<Owned>,
}

/// A free segment picked for the next message.
pub struct Staged {
    name: u64,
}

impl Pool {
    /// Finds a free segment of at least `len` bytes, creating one if needed;
    /// None if that would take the pool past its budget (wait for one to come
    /// back). `owner` is the sending end (`row << 32 | generation`).
    pub fn stage(
        &mut self,
        queue_id: u64,
        owner: u64,
        len: u64,
    ) -> Result<Option<Staged>, ShmqError> {
        let free = |o: &Owned| !o.reserved && o.state().load(Acquire) & 3 == PAYLOAD_FREE;
        if let Some(index) = self
            .owned
            .iter()
            .enumerate()
            .filter(|(_, o)| o.capacity >= len && free(o))
            .min_by_key(|(_, o)| o.capacity)
            .map(|(_, o)| o.name)
        {
            return Ok(Some(Staged { name: index }));
        }
        // Free segments too small for this message are unlikely to be useful: retire them.
        let (small, keep): (Vec<Owned>, Vec<Owned>) = self
            .owned
            .drain(..)
            .partition(|o| o.capacity < len && free(o));
        self.owned = keep;
        for o in small {
            retire_if_free(queue_id, o.name, o.state());
        }

        let capacity = len.div_ceil(SIZE_STEP).max(1) * SIZE_STEP;
        let held: u64 = self.owned.iter().map(|o| o.capacity).sum();
        if !self.owned.is_empty() && held + capacity > POOL_BUDGET.max(capacity) {
            return Ok(None);
        }
        let name = segment::random_id();
        let seg = Segment::create(
            &segment::payload_name(queue_id, name),
            PAYLOAD_HEADER_SIZE + capacity as usize,
            |seg| {
                // SAFETY: a file nobody else can open yet (it is still under
                // its temporary name), mapped with room for the header.
                unsafe {
                    let h = seg.as_ptr().cast::<PayloadHeader>();
                    (*h).version = LAYOUT_VERSION;
                    (*h).capacity = capacity;
                    (*h).queue_id = queue_id;
                    (*h).owner = owner;
                    (*h).magic = PAYLOAD_MAGIC;
                }
                Ok(())
            },
        )?;
        self.owned.push(Owned {
            name,
            seg: Arc::new(seg),
            capacity,
            reserved: false,
        });
        Ok(Some(Staged { name }))
    }

    fn get(&mut self, name: u64) -> &mut Owned {
        // Staged names come from this pool and stay in it while staged.
        let i = self.owned.iter().position(|o| o.name == name).unwrap_or(0);
        &mut self.owned[i]
    }

    /// Hands the staged segment's data area out for writing in place: a
    /// pointer to its first byte (64-byte aligned) and the mapping to keep
    /// alive while a view of it exists.
    pub fn reserve(&mut self, staged: &Staged) -> (*mut u8, Arc<Segment>) {
        let o = self.get(staged.name);
        o.reserved = true;
        // SAFETY: the data area starts PAYLOAD_HEADER_SIZE bytes in (checked in stage).
        (
            unsafe { o.seg.as_ptr().add(PAYLOAD_HEADER_SIZE) },
            o.seg.clone(),
        )
    }

    /// A reservation ends: the segment may be staged again.
    pub fn unreserve(&mut self, staged: &Staged) {
        self.get(staged.name).reserved = false;
    }

    /// Marks a reserved segment, already written, in use; returns its name
    /// and the generation the slot must record.
    pub fn commit(&mut self, staged: Staged) -> Result<(u64, u64), ShmqError> {
        self.unreserve(&staged);
        self.mark_in_use(staged)
    }

    fn mark_in_use(&mut self, staged: Staged) -> Result<(u64, u64), ShmqError> {
        let o = self.get(staged.name);
        let now = o.state().load(Acquire);
        if now & 3 != PAYLOAD_FREE {
            return Err(ShmqError::invalid(
                "a staged payload segment is no longer free",
            ));
        }
        let generation = (now >> 2).wrapping_add(1) & (u64::MAX >> 2);
        o.state()
            .compare_exchange(now, word(generation, PAYLOAD_IN_USE), AcqRel, Acquire)
            .map_err(|_| ShmqError::invalid("a staged payload segment was taken"))?;
        Ok((o.name, generation))
    }

    /// Copies `data` into the staged segment and marks it in use; returns its
    /// name and the generation the slot must record.
    pub fn fill(&mut self, staged: Staged, data: &[u8]) -> Result<(u64, u64), ShmqError> {
        let o = self.get(staged.name);
        if o.state().load(Acquire) & 3 != PAYLOAD_FREE {
            return Err(ShmqError::invalid(
                "a staged payload segment is no longer free",
            ));
        }
        // SAFETY: the segment is FREE, so no slot names it and no receiver
        // reads it, and its data area holds capacity >= data.len() bytes
        // (checked in stage).
        unsafe {
            let dst = o.seg.as_ptr().add(PAYLOAD_HEADER_SIZE);
            segment::copy_releasing(data.as_ptr(), dst, data.len(), dst)
        };
        self.mark_in_use(staged)
    }

    /// The sender is going away: segments still holding a queued message are
    /// handed to whichever receiver frees them (ORPHANED); the rest are removed.
    pub fn close(&mut self, queue_id: u64, named: impl Fn(u64, u64) -> bool) {
        for o in self.owned.drain(..) {
            abandon(queue_id, o.name, o.state(), &named);
        }
    }
}

/// Hands a segment whose sender has gone to its reader (ORPHANED) if a slot
/// still names its current message (`named(name, generation)`), else
/// removes it.
fn abandon(queue_id: u64, name: u64, state: &AtomicU64, named: &impl Fn(u64, u64) -> bool) {
    let mut now = state.load(Acquire);
    loop {
        let (generation, st) = (now >> 2, now & 3);
        let next = match st {
            PAYLOAD_IN_USE if named(name, generation) => word(generation, PAYLOAD_ORPHANED),
            PAYLOAD_FREE | PAYLOAD_IN_USE => word(generation, PAYLOAD_RETIRED),
            _ => return,
        };
        match state.compare_exchange(now, next, AcqRel, Acquire) {
            Ok(_) => {
                if next & 3 == PAYLOAD_RETIRED {
                    Segment::unlink(&segment::payload_name(queue_id, name));
                }
                return;
            }
            Err(seen) => now = seen,
        }
    }
}

/// Removes a segment of ours that holds no message.
fn retire_if_free(queue_id: u64, name: u64, state: &AtomicU64) {
    let now = state.load(Acquire);
    if now & 3 == PAYLOAD_FREE
        && state
            .compare_exchange(now, word(now >> 2, PAYLOAD_RETIRED), AcqRel, Acquire)
            .is_ok()
    {
        Segment::unlink(&segment::payload_name(queue_id, name));
    }
}

/// Removes or orphans the payload segments of a dead sender (`owner` as in
/// `Pool::stage`), found by listing the queue's segments.
pub fn abandon_dead(queue_id: u64, owner: u64, named: impl Fn(u64, u64) -> bool) {
    for name in list(queue_id) {
        let Ok(seg) = Segment::open(&segment::payload_name(queue_id, name)) else {
            continue;
        };
        if let Some(h) = header(&seg, queue_id).filter(|h| h.owner == owner) {
            abandon(queue_id, name, state(h), &named);
        }
    }
}

/// Names (the random part) of queue `queue_id`'s payload segments in /dev/shm.
pub fn list(queue_id: u64) -> Vec<u64> {
    let prefix = format!("{}-", segment::queue_name(queue_id));
    segment::list()
        .iter()
        .filter_map(|name| {
            let hex = name.strip_prefix(&prefix)?;
            (hex.len() == 16)
                .then(|| u64::from_str_radix(hex, 16).ok())
                .flatten()
        })
        .collect()
}

/// Removes every payload segment of queue `queue_id` (the queue is gone).
pub fn unlink_all(queue_id: u64) {
    for name in list(queue_id) {
        Segment::unlink(&segment::payload_name(queue_id, name));
    }
}

/// The payload segments one receiving end has mapped (shared with the views
/// of leases, so a mapping outlives them).
#[derive(Default)]
pub struct Cache {
    mapped: HashMap<u64, Arc<Segment>>,
}

impl Cache {
    /// The message bytes of payload segment `name`, checked against its
    /// header: a pointer to `len` readable bytes.
    pub fn bytes(&mut self, queue_id: u64, name: u64, len: u64) -> Result<*const u8, ShmqError> {
        if !self.mapped.contains_key(&name) {
            self.evict_retired(queue_id);
            let seg = Segment::open(&segment::payload_name(queue_id, name)).map_err(|e| {
                let message = format!(
                    "payload segment {name:016x} cannot be opened: {}",
                    e.message
                );
                if e.is_transient() {
                    ShmqError::new(e.code, message)
                } else {
                    ShmqError::invalid(message)
                }
            })?;
            if header(&seg, queue_id).is_none() {
                return Err(ShmqError::invalid(format!(
                    "payload segment {name:016x} is not one of this queue's"
                )));
            }
            self.mapped.insert(name, Arc::new(seg));
        }
        let seg = &self.mapped[&name];
        let capacity = header(seg, queue_id).map_or(0, |h| h.capacity);
        let fits = len <= capacity
            && (PAYLOAD_HEADER_SIZE as u64)
                .checked_add(capacity)
                .is_some_and(|end| end <= seg.len() as u64);
        match seg.bytes_at(PAYLOAD_HEADER_SIZE, len as usize) {
            Some(p) if fits => Ok(p.cast_const()),
            _ => Err(ShmqError::invalid(format!(
                "payload segment {name:016x} is smaller than its {len}-byte message"
            ))),
        }
    }

    /// Drops the mappings of segments their sender has retired.
    pub fn evict_retired(&mut self, queue_id: u64) {
        if !self.mapped.is_empty() {
            self.mapped.retain(|_, seg| {
                header(seg, queue_id).is_some_and(|h| h.state.load(Acquire) & 3 != PAYLOAD_RETIRED)
            });
        }
    }

    /// The mapping of segment `name` (after `bytes` found it).
    pub fn mapping(&self, name: u64) -> Option<Arc<Segment>> {
        self.mapped.get(&name).cloned()
    }

    /// The message of generation `generation` in segment `name` has been
    /// read: give the segment back.
    pub fn done(&mut self, queue_id: u64, name: u64, generation: u64) {
        if let Some(h) = self.mapped.get(&name).and_then(|seg| header(seg, queue_id)) {
            if hand_back(h, queue_id, name, generation) {
                self.mapped.remove(&name);
            }
        }
    }
}

/// Gives a read segment back to its sender, or removes it if the sender has
/// gone (ORPHANED); only from the exact generation the slot recorded.
/// Returns true if it was removed.
fn hand_back(h: &PayloadHeader, queue_id: u64, name: u64, generation: u64) -> bool {
    let s = state(h);
    let done = |from, to| {
        s.compare_exchange(
            word(generation, from),
            word(generation, to),
            AcqRel,
            Acquire,
        )
        .is_ok()
    };
    if done(PAYLOAD_IN_USE, PAYLOAD_FREE) {
        return false;
    }
    let orphaned = done(PAYLOAD_ORPHANED, PAYLOAD_RETIRED);
    if orphaned {
        Segment::unlink(&segment::payload_name(queue_id, name));
    }
    orphaned
}

/// `hand_back` for a segment whose reader died (crash recovery).
pub fn give_back(queue_id: u64, name: u64, generation: u64) {
    if let Ok(seg) = Segment::open(&segment::payload_name(queue_id, name)) {
        if let Some(h) = header(&seg, queue_id) {
            hand_back(h, queue_id, name, generation);
        }
    }
}
