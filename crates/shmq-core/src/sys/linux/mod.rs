//! The Linux backend: /dev/shm files, open-file-description locks, futexes.

pub mod futex;
#[cfg(not(feature = "sys-local"))]
pub mod lock;
#[cfg(not(feature = "sys-local"))]
pub mod segment;
