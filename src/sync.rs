//! Cross-process wake-ups: futex waits on the event counters of the header.
//! The hot path (an event with no waiter) is one atomic add and one load.

use crate::layout::Event;
use rustix::thread::futex;
use std::sync::atomic::Ordering::SeqCst;
use std::time::{Duration, Instant};

/// Bumps the event and wakes every waiter, if there is one.
pub fn notify(ev: &Event) {
    ev.seq.fetch_add(1, SeqCst);
    if ev.waiters.load(SeqCst) > 0 {
        wake_all(ev);
    }
}

/// Wakes every waiter without bumping (spurious for them; used to cancel).
pub fn wake_all(ev: &Event) {
    let _ = futex::wake(&ev.seq, futex::Flags::empty(), i32::MAX as u32);
}

/// Waits while `ev.seq == seen`, at most `timeout`. Returns early (spuriously)
/// on signals; callers re-check their condition and wait again.
pub fn wait(ev: &Event, seen: u32, timeout: Duration) {
    ev.waiters.fetch_add(1, SeqCst);
    if ev.seq.load(SeqCst) == seen {
        let ts = futex::Timespec {
            tv_sec: timeout.as_secs().min(i64::MAX as u64) as i64,
            tv_nsec: i64::from(timeout.subsec_nanos()),
        };
        // Errors are EAGAIN (value changed), ETIMEDOUT and EINTR: all mean "look again".
        let _ = futex::wait(&ev.seq, futex::Flags::empty(), seen, Some(&ts));
    }
    ev.waiters.fetch_sub(1, SeqCst);
}

/// A deadline from a timeout in milliseconds; negative or non-finite = none.
pub fn deadline(timeout_ms: f64) -> Option<Instant> {
    if timeout_ms.is_finite() && timeout_ms >= 0.0 {
        Some(Instant::now() + Duration::from_secs_f64(timeout_ms / 1000.0))
    } else {
        None
    }
}

/// Time left before `deadline`, capped at `slice` (so waits wake up to look
/// at peers' liveness and at cancellation), or None once it has passed.
pub fn next_slice(deadline: Option<Instant>, slice: Duration) -> Option<Duration> {
    match deadline {
        None => Some(slice),
        Some(d) => {
            let left = d.saturating_duration_since(Instant::now());
            (!left.is_zero()).then(|| left.min(slice))
        }
    }
}
