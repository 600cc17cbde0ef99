//! The platform seam: everything the queue needs from the operating system,
//! and nothing else, so the ring and recovery logic (`queue`, `payload`,
//! `end`, `waiter`) never name a system call. A backend provides three
//! modules with these items (Linux: `linux/`); a macOS or Windows backend is
//! a sibling directory with the same names, selected below.
//!
//! - `segment`: named shared memory. `Segment::{create, open, twin, unlink,
//!   is_linked, len, as_ptr, at, bytes_at, fd}`; `list()` (names of this
//!   user's segments), `stat_ours(name) -> Option<Stat>` (size and age of one
//!   of ours), `random_id`, `queue_name`, `payload_name`, `parse_queue_name`,
//!   `copy_releasing` (copy a large message without keeping its shared pages
//!   mapped), `Fd` (an open segment, for locks) and `DIR` (for messages).
//! - `lock`: liveness. `try_lock`, `unlock`, `is_held` on a byte range of a
//!   segment's `Fd`: a lock the system drops when its holder dies, whatever
//!   the reason (Linux: open-file-description locks).
//! - `futex`: waiting on a u32 in shared memory. `wait`, `wake` (`shared`
//!   false for words in process-private memory) and `wait_any` (many words
//!   at once, for the waiter thread).

#[cfg(target_os = "linux")]
mod linux;
#[cfg(target_os = "linux")]
pub use linux::{futex, lock, segment};

#[cfg(not(target_os = "linux"))]
compile_error!("shmq-core has a backend for Linux only (see sys/mod.rs for what one provides)");
