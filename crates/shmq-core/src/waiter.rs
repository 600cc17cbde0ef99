//! Async waits without the libuv thread pool and without a thread per end.
//! A completion only ever says "look again": the caller re-checks the queue.
//!
//! - `LoopWatches` (Linux 6.7+): an event-loop thread's watches are futex
//!   waits on an io_uring whose fd its loop polls, so a message wakes that
//!   thread once and no other thread runs.
//! - `Waiter`, where the kernel cannot: one thread per process waits on
//!   every watched event counter at once (`futex_waitv`) and calls each
//!   watch's completion (a binding settles a promise on its JS thread from
//!   it). With nothing to watch it sleeps on a process-local doorbell,
//!   costing nothing.
//!
//! Either way, while something is watched and nothing happens, dead peers
//! are looked for every `sync::PROBE`.

use crate::error::{Code, ShmqError};
use crate::layout::Event;
use crate::queue::Queue;
use crate::sync;
use crate::sys::futex;
use crate::sys::uring::FutexRing;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering::SeqCst;
use std::sync::atomic::{AtomicBool, AtomicU32};
use std::sync::{Arc, Mutex, OnceLock, Weak};

/// Called once per watch: Ok when the event moved (or the watch was
/// cancelled, or its queue went), Err if the waiter thread cannot start.
pub type Done = Box<dyn FnOnce(Result<(), ShmqError>) + Send>;

#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub enum Which {
    Items,
    Space,
}

pub fn event(q: &Queue, which: Which) -> &Event {
    match which {
        Which::Items => q.items(),
        Which::Space => q.space(),
    }
}

/// A pending watch. It holds its queue weakly: a closed end's mapping goes
/// at once, on the JS thread, and a watch whose queue is gone resolves.
struct Job {
    queue: Weak<Queue>,
    id: u64,
    which: Which,
    seen: u32,
    cancelled: Arc<AtomicBool>,
    done: Done,
}

impl Job {
    fn done(&self) -> bool {
        self.cancelled.load(SeqCst)
            || self
                .queue
                .upgrade()
                .is_none_or(|q| event(&q, self.which).seq.load(SeqCst) != self.seen)
    }
}

/// The process's waiter: new jobs, and the doorbell that tells its thread.
struct Shared {
    incoming: Mutex<Vec<Job>>,
    doorbell: AtomicU32,
    /// The doorbell value the thread's last round had read before sorting
    /// its jobs: a round that read a ticket has seen every cancel rung with it.
    handled: AtomicU32,
    started: Mutex<bool>,
}

fn shared() -> &'static Shared {
    static SHARED: OnceLock<Shared> = OnceLock::new();
    SHARED.get_or_init(|| Shared {
        incoming: Mutex::new(Vec::new()),
        doorbell: AtomicU32::new(0),
        handled: AtomicU32::new(0),
        started: Mutex::new(false),
    })
}

/// Rings the doorbell; returns the ticket (the doorbell's new value).
fn ring() -> u32 {
    let s = shared();
    let ticket = s.doorbell.fetch_add(1, SeqCst).wrapping_add(1);
    futex::wake(&s.doorbell, 1, false);
    ticket
}

/// One end's watches: cancelling ends every watch it submitted so far.
pub struct Waiter {
    cancelled: Arc<AtomicBool>,
}

impl Default for Waiter {
    fn default() -> Self {
        Waiter {
            cancelled: Arc::new(AtomicBool::new(false)),
        }
    }
}

impl Waiter {
    /// Calls `done` once the event differs from `seen` or `cancel` is called
    /// (timeouts are the caller's). Fails (calls `done` with the error) only
    /// if the waiter thread cannot be started; a later call tries again.
    pub fn watch(&self, queue: &Arc<Queue>, which: Which, seen: u32, done: Done) {
        let s = shared();
        {
            let mut started = s.started.lock().unwrap_or_else(|p| p.into_inner());
            if !*started {
                match std::thread::Builder::new()
                    .name("shmq-waiter".into())
                    .spawn(run)
                {
                    Ok(_) => *started = true,
                    Err(e) => {
                        // Settle the watch (a dropped promise would keep a
                        // JS process alive for ever); a later wait tries again.
                        done(Err(ShmqError::new(
                            Code::Os,
                            format!("could not start the waiter thread: {e}"),
                        )));
                        return;
                    }
                }
            }
        }
        s.incoming
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Job {
                queue: Arc::downgrade(queue),
                id: queue.id,
                which,
                seen,
                cancelled: self.cancelled.clone(),
                done,
            });
        ring();
    }

    /// Ends every pending watch soon (they complete; the caller finds
    /// nothing to do). Returns the doorbell ticket that carries the cancel.
    pub fn cancel(&mut self) -> u32 {
        self.cancelled.store(true, SeqCst);
        self.cancelled = Arc::new(AtomicBool::new(false));
        // No thread, no watches: nothing to ring (and no system call).
        if !*shared().started.lock().unwrap_or_else(|p| p.into_inner()) {
            return 0;
        }
        ring()
    }

    /// `cancel`, then waits (briefly) until the thread has let go of every
    /// queue it was watching, so a closing end drops the last reference to
    /// its queue itself, on its JS thread, before the process may exit.
    pub fn settle(&mut self) {
        let s = shared();
        let ticket = self.cancel();
        if !*s.started.lock().unwrap_or_else(|p| p.into_inner()) {
            return;
        }
        let deadline = std::time::Instant::now() + std::time::Duration::from_millis(100);
        loop {
            let handled = s.handled.load(SeqCst);
            // Wrapping: handled is at or past the ticket.
            if handled.wrapping_sub(ticket) as i32 >= 0 {
                break;
            }
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                break;
            }
            futex::wait(&s.handled, handled, Some(left), false);
        }
    }
}

impl Drop for Waiter {
    fn drop(&mut self) {
        self.settle();
    }
}

fn run() {
    let s = shared();
    let mut active: Vec<Job> = Vec::new();
    loop {
        // Read before sorting the jobs: every cancel rung up to `bell` is seen.
        let bell = s.doorbell.load(SeqCst);
        active.append(&mut s.incoming.lock().unwrap_or_else(|p| p.into_inner()));
        // Completing drops the job (and a binding's hold on its event loop).
        let (done, waiting): (Vec<Job>, Vec<Job>) = active.drain(..).partition(Job::done);
        active = waiting;
        for job in done {
            (job.done)(Ok(()));
        }
        // The last round's references to queues are gone and cancelled jobs
        // are done: tell `Waiter::settle`, so a queue's last reference drops
        // on its JS thread.
        s.handled.store(bell, SeqCst);
        futex::wake(&s.handled, i32::MAX as u32, false);
        if active.is_empty() {
            futex::wait(&s.doorbell, bell, None, false);
            continue;
        }
        // One futex per distinct (queue, event), the doorbell first.
        let mut keys = HashSet::new();
        let mut watched: Vec<(Arc<Queue>, Which, u32)> = Vec::new();
        let mut waits = vec![(&s.doorbell, bell, false)];
        for job in &active {
            if !keys.insert((job.id, job.which)) {
                continue;
            }
            let Some(q) = job.queue.upgrade() else {
                continue;
            };
            // A peer may have died: look at most every PROBE, however busy.
            if q.reap_if_due() || watched.len() + 1 == futex::MAX_WAIT_ANY {
                continue;
            }
            event(&q, job.which).waiters.fetch_add(1, SeqCst);
            watched.push((q, job.which, job.seen));
        }
        for (q, which, seen) in &watched {
            waits.push((&event(q, *which).seq, *seen, true));
        }
        // Words past the limit are polled.
        let slice = if keys.len() >= futex::MAX_WAIT_ANY {
            std::time::Duration::from_millis(5)
        } else {
            sync::PROBE
        };
        futex::wait_any(&waits, slice);
        drop(waits);
        for (q, which, _) in &watched {
            event(q, *which).waiters.fetch_sub(1, SeqCst);
        }
    }
}

/// One event-loop thread's watches, without a thread: each is a futex wait
/// on an io_uring (`sys::uring`) that the loop polls; call `complete` when
/// `fd` is readable. Single-threaded: one per JS thread.
///
/// Invariants (tests below; every async wait of the Node suite uses them):
/// - a watch increments its event's `waiters` before its wait is queued, so a
///   bump after that calls futex-wake, and decrements it exactly once: when
///   its completion is taken or when it is cancelled, whichever comes first;
/// - the kernel compares the word with `seen` as it queues the wait, so a
///   bump after the caller read `seen` completes it at once (`-EAGAIN`);
/// - while a watch is pending a probe is pending: a watched queue's dead
///   peers are looked for every `sync::PROBE`, and a watch whose event moved
///   meanwhile is cancelled, so it completes;
/// - every watch reports its token exactly once, from `complete`.
pub struct LoopWatches {
    ring: FutexRing,
    jobs: HashMap<u64, LoopJob>,
    next_key: u64,
    probing: bool,
    broken: bool,
}

struct LoopJob {
    owner: u32,
    token: u64,
    which: Which,
    seen: u32,
    /// None once let go of (cancelled): its `waiters` count is given back.
    queue: Option<Arc<Queue>>,
}

impl LoopJob {
    fn let_go(&mut self) {
        if let Some(q) = self.queue.take() {
            event(&q, self.which).waiters.fetch_sub(1, SeqCst);
        }
    }
}

/// Keys of requests that are not watches.
const PROBE_KEY: u64 = u64::MAX;
const CANCEL_KEY: u64 = u64::MAX - 1;

impl LoopWatches {
    /// None where the kernel has no io_uring futex wait.
    pub fn new() -> Option<LoopWatches> {
        Some(LoopWatches {
            ring: FutexRing::new()?,
            jobs: HashMap::new(),
            next_key: 0,
            probing: false,
            broken: false,
        })
    }

    /// Readable while completions wait for `complete`.
    pub fn fd(&self) -> std::os::fd::RawFd {
        self.ring.fd()
    }

    /// True after the kernel refused a wait or a submission: watch through
    /// `Waiter` instead (every pending watch still reports).
    pub fn broken(&self) -> bool {
        self.broken || self.ring.failed()
    }

    /// Reports `token` (from `complete`) once the event differs from `seen`
    /// or `cancel(owner)` is called. False (nothing watched) if the kernel
    /// refused it.
    pub fn watch(
        &mut self,
        owner: u32,
        queue: &Arc<Queue>,
        which: Which,
        seen: u32,
        token: u64,
    ) -> bool {
        if self.broken() {
            return false;
        }
        let key = self.next_key;
        self.next_key += 1;
        let mut job = LoopJob {
            owner,
            token,
            which,
            seen,
            queue: Some(queue.clone()),
        };
        let ev = event(queue, which);
        ev.waiters.fetch_add(1, SeqCst);
        if !self.ring.wait(&ev.seq, seen, key) {
            job.let_go();
            return false;
        }
        self.jobs.insert(key, job);
        if !self.probing {
            self.probing = self.ring.sleep(sync::PROBE, PROBE_KEY);
        }
        true
    }

    /// Ends `owner`'s watches soon (each reports its token) and lets go of
    /// their queues now.
    pub fn cancel(&mut self, owner: u32) {
        let keys: Vec<u64> = self
            .jobs
            .iter()
            .filter(|(_, j)| j.owner == owner && j.queue.is_some())
            .map(|(k, _)| *k)
            .collect();
        for key in keys {
            self.cancel_job(key);
        }
    }

    fn cancel_job(&mut self, key: u64) {
        if let Some(job) = self.jobs.get_mut(&key) {
            job.let_go();
            self.ring.cancel(key, CANCEL_KEY);
        }
    }

    /// Takes the completions that have arrived: the tokens to report.
    pub fn complete(&mut self) -> Vec<u64> {
        let mut tokens = Vec::new();
        let completions = self.ring.completions();
        if self.ring.failed() {
            // Nothing more may come: every watch reports now (its caller
            // looks again and watches through `Waiter`).
            return self.take_if_broken();
        }
        for (key, result) in completions {
            match key {
                CANCEL_KEY => {}
                PROBE_KEY => {
                    self.probing = false;
                    self.probe();
                }
                _ => {
                    let Some(mut job) = self.jobs.remove(&key) else {
                        continue;
                    };
                    job.let_go();
                    tokens.push(job.token);
                    // Woken, moved, cancelled, interrupted, or a cancelled
                    // wait whose word was unmapped before it was submitted.
                    let expected = [0, libc::EAGAIN, libc::ECANCELED, libc::EINTR, libc::EFAULT];
                    if !expected.contains(&-result) {
                        self.broken = true;
                    }
                }
            }
        }
        tokens
    }

    /// Looks for dead peers of the watched queues (once per queue, however
    /// many of its ends watch) and cancels the watches whose event moved
    /// meanwhile.
    fn probe(&mut self) {
        let mut probed = HashSet::new();
        let moved: Vec<u64> = self
            .jobs
            .iter()
            .filter(|(_, j)| {
                j.queue.as_ref().is_some_and(|q| {
                    if probed.insert(q.id) {
                        q.reap_if_due();
                    }
                    event(q, j.which).seq.load(SeqCst) != j.seen
                })
            })
            .map(|(k, _)| *k)
            .collect();
        for key in moved {
            self.cancel_job(key);
        }
        if !self.jobs.is_empty() {
            self.probing = self.ring.sleep(sync::PROBE, PROBE_KEY);
        }
    }

    /// Once `broken`: every pending watch, let go of, for its caller to
    /// report (no completion may come for it). Empty otherwise.
    pub fn take_if_broken(&mut self) -> Vec<u64> {
        if !self.broken() {
            return Vec::new();
        }
        self.jobs
            .drain()
            .map(|(_, mut job)| {
                job.let_go();
                job.token
            })
            .collect()
    }

    /// Pending watches.
    pub fn pending(&self) -> usize {
        self.jobs.len()
    }
}

impl Drop for LoopWatches {
    /// The thread is going: give back every `waiters` count (closing the
    /// ring cancels its requests).
    fn drop(&mut self) {
        for job in self.jobs.values_mut() {
            job.let_go();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::End;
    use std::time::{Duration, Instant};

    /// Waits until the ring's fd is readable, then takes its tokens.
    fn next_tokens(w: &mut LoopWatches, within: Duration) -> Vec<u64> {
        let deadline = Instant::now() + within;
        loop {
            let tokens = w.complete();
            if !tokens.is_empty() || Instant::now() >= deadline {
                return tokens;
            }
            let mut pfd = libc::pollfd {
                fd: w.fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd.
            unsafe { libc::poll(&mut pfd, 1, 10) };
        }
    }

    fn waiters(q: &Queue) -> u32 {
        q.items().waiters.load(SeqCst)
    }

    #[test]
    fn loop_watches_report_each_token_once_and_give_back_waiters() {
        let Some(mut w) = LoopWatches::new() else {
            eprintln!("no io_uring futex wait here: skipped");
            return;
        };
        let (mut tx, rx) = End::create_pair(4, 64, 1 << 20).unwrap();
        let q = rx.queue().unwrap().clone();
        let seen = q.items().seq.load(SeqCst);

        // A put from another thread wakes the watch.
        assert!(w.watch(1, &q, Which::Items, seen, 7));
        assert_eq!(waiters(&q), 1);
        assert!(next_tokens(&mut w, Duration::from_millis(50)).is_empty());
        let putter = std::thread::spawn(move || {
            tx.put(0, b"x").unwrap();
            tx
        });
        assert_eq!(next_tokens(&mut w, Duration::from_secs(5)), vec![7]);
        assert_eq!(waiters(&q), 0);
        let _tx = putter.join().unwrap();

        // A stale `seen` completes at once.
        assert!(w.watch(1, &q, Which::Items, seen, 8));
        assert_eq!(next_tokens(&mut w, Duration::from_secs(5)), vec![8]);

        // Cancel gives the count back at once and reports later.
        let seen = q.items().seq.load(SeqCst);
        assert!(w.watch(2, &q, Which::Items, seen, 9));
        assert!(w.watch(3, &q, Which::Items, seen, 10));
        w.cancel(2);
        assert_eq!(waiters(&q), 1);
        assert_eq!(next_tokens(&mut w, Duration::from_secs(5)), vec![9]);
        // The probe does not end a watch whose event has not moved.
        assert!(next_tokens(&mut w, 2 * sync::PROBE).is_empty());
        assert_eq!(w.pending(), 1);
        drop(w);
        assert_eq!(waiters(&q), 0);
    }

    #[test]
    fn loop_watches_cancelled_past_the_completion_queue_all_report() {
        let Some(mut w) = LoopWatches::new() else {
            return;
        };
        let (_tx, rx) = End::create_pair(4, 64, 1 << 20).unwrap();
        let q = rx.queue().unwrap().clone();
        let seen = q.items().seq.load(SeqCst);
        // 600 cancels: 1200 completions (each wait's and each cancel's), past CQ_ENTRIES.
        for token in 0..600 {
            assert!(w.watch(token as u32, &q, Which::Items, seen, token));
        }
        for owner in 0..600 {
            w.cancel(owner);
        }
        let mut got = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(5);
        while got.len() < 600 && Instant::now() < deadline {
            got.extend(next_tokens(&mut w, Duration::from_millis(100)));
        }
        assert_eq!(got.len(), 600);
        assert_eq!(w.pending(), 0);
    }

    #[test]
    fn loop_watches_past_the_ring_size_all_complete() {
        let Some(mut w) = LoopWatches::new() else {
            return;
        };
        let (mut tx, rx) = End::create_pair(4, 64, 1 << 20).unwrap();
        let q = rx.queue().unwrap().clone();
        let seen = q.items().seq.load(SeqCst);
        for token in 0..300 {
            assert!(w.watch(token as u32 % 5, &q, Which::Items, seen, token));
        }
        assert_eq!(waiters(&q), 300);
        tx.put(0, b"x").unwrap();
        let mut got = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(5);
        while got.len() < 300 && Instant::now() < deadline {
            got.extend(next_tokens(&mut w, Duration::from_millis(100)));
        }
        got.sort_unstable();
        assert_eq!(got, (0..300).collect::<Vec<_>>());
        assert_eq!(waiters(&q), 0);
        assert_eq!(w.pending(), 0);
    }
}
