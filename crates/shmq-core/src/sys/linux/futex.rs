//! Futex waits and wakes on u32 words (shared between processes, or private).

use rustix::io::Errno;
use rustix::thread::futex;
use std::sync::atomic::AtomicU32;
use std::time::Duration;

fn flags(shared: bool) -> futex::Flags {
    if shared {
        futex::Flags::empty()
    } else {
        futex::Flags::PRIVATE
    }
}

fn timespec(d: Duration) -> futex::Timespec {
    futex::Timespec {
        tv_sec: d.as_secs().min(i64::MAX as u64) as i64,
        tv_nsec: i64::from(d.subsec_nanos()),
    }
}

/// Waits while `word == expected`, at most `timeout` (None: no limit).
/// Returns early on a wake, a signal or a changed value: callers re-check.
pub fn wait(word: &AtomicU32, expected: u32, timeout: Option<Duration>, shared: bool) {
    let ts = timeout.map(timespec);
    let _ = futex::wait(word, flags(shared), expected, ts.as_ref());
}

/// Wakes up to `n` waiters of `word`.
pub fn wake(word: &AtomicU32, n: u32, shared: bool) {
    let _ = futex::wake(word, flags(shared), n);
}

/// Most words one `wait_any` takes (the kernel's limit for futex_waitv).
pub const MAX_WAIT_ANY: usize = 128;

/// Waits until any word differs from its expected value or is woken, at most
/// `slice`. `words`: (word, expected, shared), at most MAX_WAIT_ANY.
pub fn wait_any(words: &[(&AtomicU32, u32, bool)], slice: Duration) {
    let waits: Vec<futex::Wait> = words
        .iter()
        .map(|(word, expected, shared)| {
            let mut w = futex::Wait::new();
            w.val = u64::from(*expected);
            w.uaddr = futex::WaitPtr::new(word.as_ptr().cast());
            w.flags = if *shared {
                futex::WaitFlags::SIZE_U32
            } else {
                futex::WaitFlags::SIZE_U32 | futex::WaitFlags::PRIVATE
            };
            w
        })
        .collect();
    let now = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    let end = Duration::new(now.tv_sec as u64, now.tv_nsec as u32) + slice;
    match futex::waitv(
        &waits,
        futex::WaitvFlags::empty(),
        Some(&timespec(end)),
        futex::ClockId::Monotonic,
    ) {
        // Woken, timed out, a value moved, or a word unmapped meanwhile.
        Ok(_) | Err(Errno::TIMEDOUT | Errno::AGAIN | Errno::INTR | Errno::FAULT) => {}
        // No futex_waitv (Linux < 5.16) or not allowed (seccomp): poll.
        Err(_) => std::thread::sleep(slice.min(Duration::from_millis(5))),
    }
}
