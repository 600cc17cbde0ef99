//! A process-local backend, for tests: named segments are zeroed heap blocks
//! in a process-wide table, an open "description" is a value with an id, and
//! a lock belongs to a description and goes when it is dropped, as the
//! kernel drops a dead process's open-file-description locks. Futexes are
//! Linux's (they work on any memory).

pub mod lock;
pub mod segment;
