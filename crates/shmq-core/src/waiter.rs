//! Async waits without the libuv thread pool and without a thread per end:
//! one thread per process waits on every watched event counter at once
//! (`futex_waitv`) and calls each watch's completion (a binding resolves a
//! promise on its JS thread from it). With
//! nothing to watch it sleeps on a process-local doorbell, costing nothing;
//! while something is watched and nothing happens, it looks for dead peers
//! every `sync::PROBE`. The JS side re-checks the queue on every
//! resolution, so a resolution only ever says "look again".

use crate::error::{Code, ShmqError};
use crate::layout::Event;
use crate::queue::Queue;
use crate::sync;
use crate::sys::futex;
use std::collections::HashSet;
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
