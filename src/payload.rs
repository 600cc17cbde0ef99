//! Payload segments: where messages longer than a slot travel.
//!
//! Each sending end owns a pool of segments and reuses them (fresh shared
//! memory costs a page fault per 4 KiB); a receiving end keeps the segments it
//! has read from mapped, and drops a mapping once its sender retires it.

use crate::error::ShmqError;
use crate::layout::*;
use crate::segment::{self, Segment};
use std::collections::HashMap;
use std::sync::atomic::AtomicU32;
use std::sync::atomic::Ordering::{AcqRel, Acquire, Release};

/// Segments are sized in steps of this many bytes, so that messages of
/// slightly different sizes reuse the same segment.
const SIZE_STEP: u64 = 64 * 1024;

fn header(seg: &Segment) -> Option<&PayloadHeader> {
    seg.at::<PayloadHeader>(0)
}

fn state(seg: &Segment) -> &AtomicU32 {
    // Pooled segments were created here with a header: always Some.
    &header(seg).expect("payload segment holds a header").state
}

struct Owned {
    id: u32,
    seg: Segment,
    capacity: u64,
}

/// The payload segments one sending end created.
#[derive(Default)]
pub struct Pool {
    owned: Vec<Owned>,
}

/// A free segment picked for the next message.
pub struct Staged {
    index: usize,
}

impl Pool {
    /// Finds a free segment of at least `len` bytes, creating one if needed.
    pub fn stage(
        &mut self,
        queue_id: u64,
        next_id: &AtomicU32,
        len: u64,
    ) -> Result<Staged, ShmqError> {
        let free = |o: &Owned| state(&o.seg).load(Acquire) == PAYLOAD_FREE;
        if let Some(index) = self
            .owned
            .iter()
            .enumerate()
            .filter(|(_, o)| o.capacity >= len && free(o))
            .min_by_key(|(_, o)| o.capacity)
            .map(|(i, _)| i)
        {
            return Ok(Staged { index });
        }
        // Free segments too small for this message are unlikely to be useful: retire them.
        let (small, keep): (Vec<Owned>, Vec<Owned>) = self
            .owned
            .drain(..)
            .partition(|o| o.capacity < len && free(o));
        self.owned = keep;
        small.into_iter().for_each(|o| retire(queue_id, o));

        let capacity = len.div_ceil(SIZE_STEP).max(1) * SIZE_STEP;
        let id = next_id.fetch_add(1, AcqRel);
        let seg = Segment::create(
            &segment::payload_name(queue_id, id),
            PAYLOAD_HEADER_SIZE + capacity as usize,
        )?;
        // SAFETY: a new segment nobody else has opened yet (its number has not
        // been published in any slot), so plain writes race nothing.
        unsafe {
            let h = seg.as_ptr().cast::<PayloadHeader>();
            (*h).version = LAYOUT_VERSION;
            (*h).capacity = capacity;
            (*h).queue_id = queue_id;
            (*h).magic = PAYLOAD_MAGIC;
        }
        self.owned.push(Owned { id, seg, capacity });
        Ok(Staged {
            index: self.owned.len() - 1,
        })
    }

    /// Copies `data` into the staged segment and marks it in use; returns its number.
    pub fn fill(&mut self, staged: Staged, data: &[u8]) -> u32 {
        let o = &self.owned[staged.index];
        // SAFETY: the segment is FREE, so no receiver reads it, and its data
        // area holds capacity >= data.len() bytes (checked in stage).
        unsafe {
            std::ptr::copy_nonoverlapping(
                data.as_ptr(),
                o.seg.as_ptr().add(PAYLOAD_HEADER_SIZE),
                data.len(),
            )
        };
        state(&o.seg).store(PAYLOAD_IN_USE, Release);
        o.id
    }

    /// The sender is going away: segments still holding a message are handed
    /// to whichever receiver frees them (ORPHANED); the rest are removed now.
    pub fn close(&mut self, queue_id: u64) {
        for o in self.owned.drain(..) {
            let handed_over = state(&o.seg)
                .compare_exchange(PAYLOAD_IN_USE, PAYLOAD_ORPHANED, AcqRel, Acquire)
                .is_ok();
            if !handed_over {
                retire(queue_id, o);
            }
        }
    }
}

fn retire(queue_id: u64, o: Owned) {
    state(&o.seg).store(PAYLOAD_RETIRED, Release);
    Segment::unlink(&segment::payload_name(queue_id, o.id));
}

/// The payload segments one receiving end has mapped.
#[derive(Default)]
pub struct Cache {
    mapped: HashMap<u32, Segment>,
}

impl Cache {
    /// The message bytes of payload segment `id`, checked against its header:
    /// a pointer to `len` readable bytes.
    pub fn bytes(&mut self, queue_id: u64, id: u32, len: u64) -> Result<*const u8, ShmqError> {
        if !self.mapped.contains_key(&id) {
            self.mapped
                .retain(|_, seg| state(seg).load(Acquire) != PAYLOAD_RETIRED);
            let seg = Segment::open(&segment::payload_name(queue_id, id)).map_err(|e| {
                ShmqError::invalid(format!(
                    "a slot names payload segment {id}, which cannot be opened: {e}"
                ))
            })?;
            let ok = header(&seg).is_some_and(|h| {
                h.magic == PAYLOAD_MAGIC && h.version == LAYOUT_VERSION && h.queue_id == queue_id
            });
            if !ok {
                return Err(ShmqError::invalid(format!(
                    "payload segment {id} is not one of this queue's"
                )));
            }
            self.mapped.insert(id, seg);
        }
        let seg = &self.mapped[&id];
        let capacity = header(seg).map_or(0, |h| h.capacity);
        let fits = len <= capacity
            && (PAYLOAD_HEADER_SIZE as u64)
                .checked_add(capacity)
                .is_some_and(|end| end <= seg.len() as u64);
        match seg.bytes_at(PAYLOAD_HEADER_SIZE, len as usize) {
            Some(p) if fits => Ok(p.cast_const()),
            _ => Err(ShmqError::invalid(format!(
                "payload segment {id} is smaller than its {len}-byte message"
            ))),
        }
    }

    /// The message in segment `id` has been read: give it back.
    pub fn done(&mut self, queue_id: u64, id: u32) {
        if let Some(seg) = self.mapped.get(&id) {
            if hand_back(seg, queue_id, id) {
                self.mapped.remove(&id);
            }
        }
    }
}

/// Gives a read segment back to its sender, or removes it if the sender has
/// gone (ORPHANED). Returns true if it was removed.
fn hand_back(seg: &Segment, queue_id: u64, id: u32) -> bool {
    let s = state(seg);
    let orphaned = s
        .compare_exchange(PAYLOAD_IN_USE, PAYLOAD_FREE, AcqRel, Acquire)
        .is_err()
        && s.compare_exchange(PAYLOAD_ORPHANED, PAYLOAD_RETIRED, AcqRel, Acquire)
            .is_ok();
    if orphaned {
        Segment::unlink(&segment::payload_name(queue_id, id));
    }
    orphaned
}

/// `hand_back` for a segment whose reader died (crash recovery).
pub fn give_back(queue_id: u64, id: u32) {
    if let Ok(seg) = Segment::open(&segment::payload_name(queue_id, id)) {
        if header(&seg).is_some_and(|h| h.magic == PAYLOAD_MAGIC && h.queue_id == queue_id) {
            hand_back(&seg, queue_id, id);
        }
    }
}
