//! Futex waits an event loop can poll: an io_uring (Linux 6.7+,
//! `IORING_OP_FUTEX_WAIT`) whose file descriptor becomes readable when a
//! watched word is woken or changes, so a thread that already waits on its
//! event loop needs no second thread to wait on futexes. The waits are
//! ordinary shared futex waits: `futex::wake` wakes them.

use io_uring::{cqueue, opcode, squeue, types, IoUring, Probe};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::AtomicU32;
use std::time::Duration;

/// `FUTEX2_SIZE_U32`; without `FUTEX2_PRIVATE`, so waits match wakes from
/// other processes.
const FUTEX2_SHARED_U32: u32 = 0x02;
/// `FUTEX_BITSET_MATCH_ANY`: woken by plain `FUTEX_WAKE`.
const MATCH_ANY: u64 = 0xffff_ffff;
/// Requests in flight are bounded by the caller's watches; completions past
/// this many wait in the kernel's overflow list (never dropped).
const ENTRIES: u32 = 64;
const CQ_ENTRIES: u32 = 1024;

/// A request's key and result (0 or a negative errno).
pub type Completion = (u64, i32);

pub struct FutexRing {
    ring: IoUring,
    /// A pending timeout's time: the kernel reads it when the request is submitted.
    timeout: types::Timespec,
    failed: bool,
}

impl FutexRing {
    /// None where io_uring or its futex wait is unavailable (an older
    /// kernel, `kernel.io_uring_disabled`, a seccomp filter).
    pub fn new() -> Option<FutexRing> {
        let ring = IoUring::builder()
            .setup_cqsize(CQ_ENTRIES)
            .build(ENTRIES)
            .ok()?;
        let mut probe = Probe::new();
        ring.submitter().register_probe(&mut probe).ok()?;
        [
            opcode::FutexWait::CODE,
            opcode::AsyncCancel::CODE,
            opcode::Timeout::CODE,
        ]
        .iter()
        .all(|&op| probe.is_supported(op))
        .then_some(FutexRing {
            ring,
            timeout: types::Timespec::new(),
            failed: false,
        })
    }

    /// Readable while completions wait to be taken.
    pub fn fd(&self) -> RawFd {
        self.ring.as_raw_fd()
    }

    /// Completes `key` once `word` is woken, or at once if it is no longer
    /// `expected` (`-EAGAIN`), as `futex_wait` compares and sleeps.
    pub fn wait(&mut self, word: &AtomicU32, expected: u32, key: u64) -> bool {
        let sqe = opcode::FutexWait::new(
            word.as_ptr().cast_const(),
            u64::from(expected),
            MATCH_ANY,
            FUTEX2_SHARED_U32,
        )
        .build()
        .user_data(key);
        self.push(&sqe)
    }

    /// Completes `key` after `after` (`-ETIME`).
    pub fn sleep(&mut self, after: Duration, key: u64) -> bool {
        self.timeout = types::Timespec::from(after);
        let sqe = opcode::Timeout::new(&self.timeout).build().user_data(key);
        self.push(&sqe)
    }

    /// Completes the request `target` soon (`-ECANCELED`, unless it had
    /// already completed); the cancel's own completion has key `key`.
    pub fn cancel(&mut self, target: u64, key: u64) -> bool {
        // A successful cancel posts nothing of its own (half the completions).
        self.push(
            &opcode::AsyncCancel::new(target)
                .build()
                .flags(squeue::Flags::SKIP_SUCCESS)
                .user_data(key),
        )
    }

    /// Pushes and submits (one system call; a wait must be queued before the
    /// caller goes back to its loop). False if the kernel refused (then
    /// `failed`).
    fn push(&mut self, sqe: &squeue::Entry) -> bool {
        loop {
            // SAFETY: every pointer in our entries (a futex word in a mapping
            // its caller keeps until the request completes or is cancelled,
            // `self.timeout`) stays valid until submitted below; the kernel
            // copies the timespec at submission.
            if unsafe { self.ring.submission().push(sqe) }.is_ok() {
                break;
            }
            // Full: hand the queued entries to the kernel, then retry.
            if !self.submit() {
                self.failed = true;
                return false;
            }
        }
        if !self.submit() {
            self.failed = true;
        }
        !self.failed
    }

    fn submit(&mut self) -> bool {
        loop {
            match self.ring.submit() {
                Ok(_) => return true,
                Err(e) if e.raw_os_error() == Some(libc::EINTR) => continue,
                // Anything else, EBUSY included (nothing was submitted, and
                // nothing may make the fd readable): the caller falls back.
                Err(_) => return false,
            }
        }
    }

    /// Takes every completion that has arrived.
    pub fn completions(&mut self) -> Vec<Completion> {
        let mut taken = Vec::new();
        // Bounded: the fd stays readable, so whatever is left comes next turn.
        for _ in 0..64 {
            taken.extend(
                self.ring
                    .completion()
                    .map(|c: cqueue::Entry| (c.user_data(), c.result())),
            );
            // Completions past CQ_ENTRIES wait in the kernel's overflow list,
            // which only an enter with GETEVENTS moves into the ring (the fd
            // stays readable meanwhile); `submit` adds GETEVENTS while the
            // overflow flag is set, and hands over entries an overflow held
            // back.
            let sq = self.ring.submission();
            let (overflow, queued) = (sq.cq_overflow(), !sq.is_empty());
            drop(sq);
            if (overflow || queued) && !self.submit() {
                self.failed = true;
            }
            if !overflow || self.failed {
                break;
            }
        }
        taken
    }

    /// True once the kernel refused a submission: use no more.
    pub fn failed(&self) -> bool {
        self.failed
    }
}
