//! The Linux backend: /dev/shm files, open-file-description locks, futexes
//! (and an io_uring to poll futex waits from an event loop).

pub mod futex;
#[cfg(not(feature = "sys-local"))]
pub mod lock;
#[cfg(not(feature = "sys-local"))]
pub mod segment;
pub mod uring;
