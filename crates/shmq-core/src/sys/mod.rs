//! The platform seam: everything the queue needs from the operating system,
//! and nothing else, so the ring and recovery logic (`queue`, `payload`,
//! `end`, `waiter`) never name a system call. A backend provides three
//! modules with these items (Linux: `linux/`); a macOS or Windows backend is
//! a sibling directory with the same names, selected below.
//!
//! - `segment`: named shared memory. `Segment::{create, open, twin, unlink,
//!   is_linked, fd}` and `Mapping` (`as_ptr`, `len`, `at`, `bytes_at`); `list()` (names of this
//!   user's segments), `stat_ours(name) -> Option<Stat>` (size and age of one
//!   of ours), the `names` (re-exported), `copy_releasing` (copy a large message without keeping its shared pages
//!   mapped), `Fd` (an open segment, for locks) and `DIR` (for messages).
//! - `lock`: liveness. `try_lock`, `unlock`, `is_held` on a byte range of a
//!   segment's `Fd`: a lock the system drops when its holder dies, whatever
//!   the reason (Linux: open-file-description locks).
//! - `futex`: waiting on a u32 in shared memory. `wait`, `wake` (`shared`
//!   false for words in process-private memory) and `wait_any` (many words
//!   at once, for the waiter thread).
//! - `uring`: futex waits an event loop can poll (`FutexRing`: an io_uring
//!   whose fd is readable once a watched word is woken; Linux 6.7+).
//!
//! `local/` (cargo feature `sys-local`) is a process-local backend: segments
//! are heap blocks in a process-wide table and descriptions are values whose
//! drop releases their locks, so the ring and recovery tests run without
//! /dev/shm too (`cargo test -p shmq-core --features sys-local`).

#[cfg(target_os = "linux")]
mod linux;
#[cfg(feature = "sys-local")]
mod local;
pub mod names;

#[cfg(target_os = "linux")]
pub use linux::{futex, uring};
#[cfg(all(target_os = "linux", not(feature = "sys-local")))]
pub use linux::{lock, segment};
#[cfg(feature = "sys-local")]
pub use local::{lock, segment};

/// A segment's bytes, as every backend maps them: typed access checked
/// against its length.
#[allow(clippy::len_without_is_empty)] // never empty: segments have a header
pub trait Mapping {
    fn as_ptr(&self) -> *mut u8;
    fn len(&self) -> usize;

    /// A `#[repr(C)]` struct at `offset`, checked to lie inside the mapping and
    /// be aligned. Shared memory is always initialized (zero-filled) bytes.
    fn at<T>(&self, offset: usize) -> Option<&T> {
        let end = offset.checked_add(std::mem::size_of::<T>())?;
        if end > self.len() || !offset.is_multiple_of(std::mem::align_of::<T>()) {
            return None;
        }
        // SAFETY: in bounds and aligned (checked above); the types used here are
        // made of integers and atomics, valid for any bit pattern.
        Some(unsafe { &*self.as_ptr().add(offset).cast::<T>() })
    }

    /// Raw pointer to `len` bytes at `offset`, or None if out of bounds.
    fn bytes_at(&self, offset: usize, len: usize) -> Option<*mut u8> {
        let end = offset.checked_add(len)?;
        if end > self.len() {
            return None;
        }
        // SAFETY: offset <= len of the mapping, checked above.
        Some(unsafe { self.as_ptr().add(offset) })
    }
}

#[cfg(not(target_os = "linux"))]
compile_error!("shmq-core has a backend for Linux only (see sys/mod.rs for what one provides)");
