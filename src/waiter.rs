//! Async waits without the libuv thread pool and without a thread per end:
//! one thread per process waits on every watched event counter at once
//! (`futex_waitv`) and resolves each waiting promise on its JS thread. With
//! nothing to watch it sleeps on a process-local doorbell, costing nothing;
//! while something is watched and nothing happens, it looks for dead peers
//! every `sync::PROBE`. The JS side re-checks the queue on every
//! resolution, so a resolution only ever says "look again".

use crate::layout::Event;
use crate::queue::Queue;
use crate::sync;
use napi::{Env, JsDeferred};
use rustix::thread::futex;
use std::sync::atomic::Ordering::SeqCst;
use std::sync::atomic::{AtomicBool, AtomicU32};
use std::sync::{Arc, Mutex, OnceLock};

pub type Resolver = fn(Env) -> napi::Result<()>;

#[derive(Clone, Copy, PartialEq, Eq)]
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

struct Job {
    queue: Arc<Queue>,
    which: Which,
    seen: u32,
    cancelled: Arc<AtomicBool>,
    deferred: JsDeferred<(), Resolver>,
}

impl Job {
    fn done(&self) -> bool {
        self.cancelled.load(SeqCst) || event(&self.queue, self.which).seq.load(SeqCst) != self.seen
    }
}

/// The process's waiter: new jobs, and the doorbell that tells its thread.
struct Shared {
    incoming: Mutex<Vec<Job>>,
    doorbell: AtomicU32,
    started: Mutex<bool>,
}

fn shared() -> &'static Shared {
    static SHARED: OnceLock<Shared> = OnceLock::new();
    SHARED.get_or_init(|| Shared {
        incoming: Mutex::new(Vec::new()),
        doorbell: AtomicU32::new(0),
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
        queue: Arc<Queue>,
        which: Which,
        seen: u32,
        deferred: JsDeferred<(), Resolver>,
    ) -> std::io::Result<()> {
        let s = shared();
        {
            let mut started = s.started.lock().unwrap_or_else(|p| p.into_inner());
            if !*started {
                std::thread::Builder::new()
                    .name("shmq-waiter".into())
                    .spawn(run)?;
                *started = true;
            }
        }
        s.incoming
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Job {
                queue,
                which,
                seen,
                cancelled: self.cancelled.clone(),
                deferred,
            });
        ring();
        Ok(())
    }

    /// Ends every pending watch soon (they resolve; JS finds nothing to do).
    pub fn cancel(&mut self) {
        self.cancelled.store(true, SeqCst);
        self.cancelled = Arc::new(AtomicBool::new(false));
        ring();
    }
}

impl Drop for Waiter {
    fn drop(&mut self) {
        self.cancel();
    }
}

fn ok(_: Env) -> napi::Result<()> {
    Ok(())
}

fn run() {
    let s = shared();
    let mut active: Vec<Job> = Vec::new();
    loop {
        let bell = s.doorbell.load(SeqCst);
        active.append(&mut s.incoming.lock().unwrap_or_else(|p| p.into_inner()));
        // Resolving drops the job's hold on its queue, so a closed end's
        // memory goes as soon as this thread sees the cancel.
        let (done, waiting): (Vec<Job>, Vec<Job>) = active.drain(..).partition(Job::done);
        active = waiting;
        for job in done {
            job.deferred.resolve(ok);
        }
        if active.is_empty() {
            let _ = futex::wait(&s.doorbell, futex::Flags::PRIVATE, bell, None);
            continue;
        }
        // One futex per distinct (queue, event): the doorbell first.
        let mut words: Vec<(&Event, u32, &Arc<Queue>)> = Vec::new();
        for job in &active {
            let ev = event(&job.queue, job.which);
            let key = (job.queue.id, job.which);
            if !active
                .iter()
                .take_while(|j| !std::ptr::eq(*j, job))
                .any(|j| (j.queue.id, j.which) == key)
            {
                words.push((ev, job.seen, &job.queue));
            }
        }
        let truncated = words.len() > MAX_WAITV - 1;
        words.truncate(MAX_WAITV - 1);
        let mut waits = vec![wait_entry(&s.doorbell, bell, true)];
        waits.extend(
            words
                .iter()
                .map(|(ev, seen, _)| wait_entry(&ev.seq, *seen, false)),
        );
        words.iter().for_each(|(ev, _, _)| {
            ev.waiters.fetch_add(1, SeqCst);
        });
        // Words past the limit are polled.
        let slice = if truncated {
            std::time::Duration::from_millis(5)
        } else {
            sync::PROBE
        };
        let woke = wait_any(&waits, slice);
        words.iter().for_each(|(ev, _, _)| {
            ev.waiters.fetch_sub(1, SeqCst);
        });
        if !woke {
            // Nothing happened for a while: a peer may have died.
            let mut probed: Vec<u64> = Vec::new();
            for (_, _, q) in &words {
                if !probed.contains(&q.id) {
                    probed.push(q.id);
                    q.reap_dead();
                }
            }
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

/// Waits until any word differs from its value or is woken, at most
/// `slice`; false if the time ran out.
fn wait_any(waits: &[futex::Wait], slice: std::time::Duration) -> bool {
    let now = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    let end = std::time::Duration::new(now.tv_sec as u64, now.tv_nsec as u32) + slice;
    let ts = sync::timespec(end);
    match futex::waitv(
        waits,
        futex::WaitvFlags::empty(),
        Some(&ts),
        futex::ClockId::Monotonic,
    ) {
        Err(rustix::io::Errno::TIMEDOUT) => false,
        // Linux before 5.16: poll every few milliseconds instead.
        Err(rustix::io::Errno::NOSYS) => {
            std::thread::sleep(slice.min(std::time::Duration::from_millis(5)));
            true
        }
        _ => true,
    }
}
