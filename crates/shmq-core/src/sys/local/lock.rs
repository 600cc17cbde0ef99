//! Byte-range locks owned by descriptions (see `mod.rs`), with the
//! semantics of Linux's open-file-description locks.

use super::segment::Fd;
use std::convert::Infallible;

fn overlaps((s, l, _): &(u64, u64, u64), start: u64, len: u64) -> bool {
    *s < start.saturating_add(len) && start < s.saturating_add(*l)
}

/// Takes a write lock on `start..start + len` for this description; false if
/// another description holds part of it.
pub fn try_lock(fd: &Fd, start: u64, len: u64) -> Result<bool, Infallible> {
    let mut locks = fd.file.locks.lock().unwrap_or_else(|p| p.into_inner());
    if locks
        .iter()
        .any(|l| l.2 != fd.id && overlaps(l, start, len))
    {
        return Ok(false);
    }
    locks.retain(|l| !(l.2 == fd.id && overlaps(l, start, len)));
    locks.push((start, len, fd.id));
    Ok(true)
}

/// Drops this description's locks on `start..start + len` (whole ranges:
/// the queue only unlocks what it locked, or everything).
pub fn unlock(fd: &Fd, start: u64, len: u64) {
    let mut locks = fd.file.locks.lock().unwrap_or_else(|p| p.into_inner());
    locks.retain(|l| !(l.2 == fd.id && overlaps(l, start, len)));
}

/// True if another description holds a lock on part of `start..start + len`.
pub fn is_held(fd: &Fd, start: u64, len: u64) -> bool {
    let locks = fd.file.locks.lock().unwrap_or_else(|p| p.into_inner());
    locks
        .iter()
        .any(|l| l.2 != fd.id && overlaps(l, start, len))
}
