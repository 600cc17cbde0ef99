//! Numbers the binding and its TypeScript wrapper exchange (results of the
//! hot calls, roles, events). Included by build.rs too, which writes them
//! with the core's tags, limits and error codes into `lib/constants.ts`.

/// `put` results (numbers, so the hot path allocates nothing).
pub const PUT_DONE: u32 = 0;
pub const PUT_FULL: u32 = 1;
pub const PUT_CLOSED: u32 = 2;
/// `get` results when there is no message.
pub const GET_EMPTY: f64 = -1.0;
pub const GET_CLOSED: f64 = -2.0;
/// Roles for `attachQueue`.
pub const SENDER: u32 = 0;
pub const RECEIVER: u32 = 1;
/// A small message comes back from the hot `get` as `length * TAG_RADIX + tag`.
pub const TAG_RADIX: u32 = 32;
/// Messages of at most this many bytes come back in the wrapper's pool (a
/// raw one as a slice of it, as `Buffer.allocUnsafe` pools under 4 KiB);
/// larger ones as a Buffer with memory of its own.
pub const POOLED_MAX: u32 = 4095;
/// Event counters: messages arrived, space freed.
pub const ITEMS: u32 = 0;
pub const SPACE: u32 = 1;
