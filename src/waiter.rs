//! Async waits without the libuv thread pool and without a thread per end:
//! one thread per process waits on every watched event counter at once
//! (`futex_waitv`) and resolves each waiting promise on its JS thread. With
//! nothing to watch it sleeps on a process-local doorbell, costing nothing;
//! while something is watched and nothing happens, it looks for dead peers
//! every `sync::PROBE`. The JS side re-checks the queue on every
//! resolution, so a resolution only ever says "look again".

use crate::error::{Code, ShmqError};
use crate::layout::Event;
use crate::queue::Queue;
use crate::sync;
use napi::{Env, JsDeferred};
use rustix::io::Errno;
use rustix::thread::futex;
use std::collections::HashSet;
use std::sync::atomic::Ordering::SeqCst;
use std::sync::atomic::{AtomicBool, AtomicU32};
use std::sync::{Arc, Mutex, OnceLock, Weak};

pub type Resolver = fn(Env) -> napi::Result<()>;

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
    deferred: JsDeferred<(), Resolver>,
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
    /// Bumped at the start of every round of the thread.
    rounds: AtomicU32,
    started: Mutex<bool>,
}

fn shared() -> &'static Shared {
    static SHARED: OnceLock<Shared> = OnceLock::new();
    SHARED.get_or_init(|| Shared {
        incoming: Mutex::new(Vec::new()),
        doorbell: AtomicU32::new(0),
        rounds: AtomicU32::new(0),
        started: Mutex::new(false),
    })
}

fn ring() {
    let s = shared();
    s.doorbell.fetch_add(1, SeqCst);
    let _ = futex::wake(&s.doorbell, futex::Flags::PRIVATE, 1);
}

/// Most futexes one `futex_waitv` takes.
const MAX_WAITV: usize = 128;

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
    /// Resolves `deferred` once the event differs from `seen` or `cancel` is
    /// called (timeouts are the JS side's). Fails only if the waiter thread
    /// cannot be started; a later call tries again.
    pub fn watch(
        &self,
        queue: &Arc<Queue>,
        which: Which,
        seen: u32,
        deferred: JsDeferred<(), Resolver>,
    ) {
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
                        // Settle the promise (a dropped one would keep the
                        // process alive for ever); a later wait tries again.
                        let e = ShmqError::new(
                            Code::Os,
                            format!("could not start the waiter thread: {e}"),
                        );
                        deferred.reject(e.into());
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
                deferred,
            });
        ring();
    }

    /// Ends every pending watch soon (they resolve; JS finds nothing to do).
    pub fn cancel(&mut self) {
        self.cancelled.store(true, SeqCst);
        self.cancelled = Arc::new(AtomicBool::new(false));
        ring();
    }

    /// `cancel`, then waits (briefly) until the thread has let go of every
    /// queue it was watching, so a closing end drops the last reference to
    /// its queue itself, on its JS thread, before the process may exit.
    pub fn settle(&mut self) {
        let s = shared();
        let start = s.rounds.load(SeqCst);
        self.cancel();
        if !*s.started.lock().unwrap_or_else(|p| p.into_inner()) {
            return;
        }
        let deadline = std::time::Instant::now() + std::time::Duration::from_millis(100);
        while s.rounds.load(SeqCst) == start {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                break;
            }
            let _ = futex::wait(
                &s.rounds,
                futex::Flags::PRIVATE,
                start,
                Some(&sync::timespec(left)),
            );
        }
    }
}

impl Drop for Waiter {
    fn drop(&mut self) {
        self.settle();
    }
}

fn ok(_: Env) -> napi::Result<()> {
    Ok(())
}

fn run() {
    let s = shared();
    let mut active: Vec<Job> = Vec::new();
    loop {
        // Every reference the last round held to a queue is gone: tell
        // `Waiter::settle`, so the queue's last reference drops on its JS thread.
        s.rounds.fetch_add(1, SeqCst);
        let _ = futex::wake(&s.rounds, futex::Flags::PRIVATE, i32::MAX as u32);
        let bell = s.doorbell.load(SeqCst);
        active.append(&mut s.incoming.lock().unwrap_or_else(|p| p.into_inner()));
        // Resolving drops the job, and so its promise's hold on the event loop.
        let (done, waiting): (Vec<Job>, Vec<Job>) = active.drain(..).partition(Job::done);
        active = waiting;
        for job in done {
            job.deferred.resolve(ok);
        }
        if active.is_empty() {
            let _ = futex::wait(&s.doorbell, futex::Flags::PRIVATE, bell, None);
            continue;
        }
        // One futex per distinct (queue, event), the doorbell first.
        let mut keys = HashSet::new();
        let mut watched: Vec<(Arc<Queue>, Which)> = Vec::new();
        let mut waits = vec![wait_entry(&s.doorbell, bell, true)];
        for job in &active {
            if !keys.insert((job.id, job.which)) {
                continue;
            }
            let Some(q) = job.queue.upgrade() else {
                continue;
            };
            // A peer may have died: look at most every PROBE, however busy.
            if q.reap_if_due() || waits.len() == MAX_WAITV {
                continue;
            }
            let ev = event(&q, job.which);
            ev.waiters.fetch_add(1, SeqCst);
            waits.push(wait_entry(&ev.seq, job.seen, false));
            watched.push((q, job.which));
        }
        // Words past the limit are polled.
        let slice = if keys.len() >= MAX_WAITV {
            std::time::Duration::from_millis(5)
        } else {
            sync::PROBE
        };
        wait_any(&waits, slice);
        for (q, which) in &watched {
            event(q, *which).waiters.fetch_sub(1, SeqCst);
        }
    }
}

fn wait_entry(word: &AtomicU32, val: u32, private: bool) -> futex::Wait {
    let mut w = futex::Wait::new();
    w.val = u64::from(val);
    w.uaddr = futex::WaitPtr::new(word.as_ptr().cast());
    w.flags = if private {
        futex::WaitFlags::SIZE_U32 | futex::WaitFlags::PRIVATE
    } else {
        futex::WaitFlags::SIZE_U32
    };
    w
}

/// Waits until any word differs from its value or is woken, at most `slice`.
fn wait_any(waits: &[futex::Wait], slice: std::time::Duration) {
    let now = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    let end = std::time::Duration::new(now.tv_sec as u64, now.tv_nsec as u32) + slice;
    let ts = sync::timespec(end);
    match futex::waitv(
        waits,
        futex::WaitvFlags::empty(),
        Some(&ts),
        futex::ClockId::Monotonic,
    ) {
        // Woken, timed out, a value moved, or a queue unmapped meanwhile.
        Ok(_) | Err(Errno::TIMEDOUT | Errno::AGAIN | Errno::INTR | Errno::FAULT) => {}
        // No futex_waitv (Linux < 5.16) or not allowed (seccomp): poll.
        Err(_) => std::thread::sleep(slice.min(std::time::Duration::from_millis(5))),
    }
}
