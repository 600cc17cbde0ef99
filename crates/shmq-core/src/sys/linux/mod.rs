//! The Linux backend: /dev/shm files, open-file-description locks, futexes.

pub mod futex;
pub mod lock;
pub mod segment;
