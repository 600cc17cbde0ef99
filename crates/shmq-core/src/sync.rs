//! Cross-process wake-ups: futex waits on the event counters of the header.
//! The hot path (an event with no waiter) is one atomic add and one load.

use crate::layout::Event;
use crate::sys::futex;
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
    futex::wake(&ev.seq, i32::MAX as u32, true);
}

/// Waits while `ev.seq == seen`, at most `timeout`. Returns early (spuriously)
/// on signals; callers re-check their condition and wait again.
pub fn wait(ev: &Event, seen: u32, timeout: Duration) {
    ev.waiters.fetch_add(1, SeqCst);
    if ev.seq.load(SeqCst) == seen {
        futex::wait(&ev.seq, seen, Some(timeout), true);
    }
    ev.waiters.fetch_sub(1, SeqCst);
}

/// How often a waiter with nothing to wake it looks for dead peers (whose
/// death the kernel records by dropping their locks but announces to nobody).
pub const PROBE: Duration = Duration::from_millis(200);

/// Milliseconds on the monotonic clock since this process first asked
/// (plus one, so 0 means "never").
pub fn now_ms() -> u64 {
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_millis() as u64 + 1 + PROBE.as_millis() as u64
}

/// A deadline from a timeout in milliseconds, on the monotonic clock;
/// negative, NaN, infinite or too far to represent = none.
pub fn deadline(timeout_ms: f64) -> Option<Instant> {
    if timeout_ms >= 0.0 {
        Duration::try_from_secs_f64(timeout_ms / 1000.0)
            .ok()
            .and_then(|d| Instant::now().checked_add(d))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_timeout_gives_a_deadline_or_none_without_panicking() {
        for ms in [
            0.0,
            1.0,
            1e12,
            2f64.powi(40),
            1e300,
            f64::MAX,
            f64::INFINITY,
        ] {
            let _ = deadline(ms);
        }
        assert!(deadline(f64::NAN).is_none());
        assert!(deadline(-1.0).is_none());
        assert!(deadline(f64::INFINITY).is_none());
        assert!(deadline(5.0).is_some());
    }
}
