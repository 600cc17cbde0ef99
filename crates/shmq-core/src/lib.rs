//! shmq-core: a bounded MPMC queue in named shared memory, with crash
//! recovery. It knows nothing of JavaScript: the napi binding (the `shmq`
//! crate at the repository root) and any other language's binding use it as
//! it is.
//!
//! Modules, one concern each:
//! - `layout`: the shared-memory format, its protocol and invariants;
//! - `sys`: everything Linux-specific (named segments, locks, futexes);
//! - `queue`: the ring, the end table and crash recovery;
//! - `payload`: segments for large messages;
//! - `end`: one queue end (put, get, reserve, lease, batches, waiting);
//! - `waiter`: async waits, one thread per process;
//! - `codec`: value tags; `error`: stable error codes;
//! - `gc`: listing and removing queues;
//! - `crashpoints` (tests only) stops an end after each step.

#![deny(clippy::undocumented_unsafe_blocks)]

/// A point where the crash-point tests may stop an end ("kill" it): after
/// each write to shared memory of put, get, join, leave and recovery.
#[cfg(test)]
macro_rules! crash_point {
    () => {
        crate::crashpoints::hit()
    };
}
#[cfg(not(test))]
macro_rules! crash_point {
    () => {};
}

pub mod codec;
#[cfg(test)]
mod crashpoints;
pub mod end;
pub mod error;
pub mod gc;
pub mod layout;
pub mod payload;
pub mod queue;
#[cfg(test)]
mod review_tests;
pub mod sync;
pub mod sys;
pub mod waiter;

pub use end::{End, Got, Put};
pub use error::{Code, ShmqError};
pub use queue::Role;
