//! Async waits without the libuv thread pool: each end that waits gets one
//! dedicated thread that futex-waits on the queue's event counter and then
//! resolves a promise on the JS thread. The JS side re-checks the queue on
//! every resolution, so the thread only ever says "look again".

use crate::queue::Queue;
use crate::sync;
use napi::{Env, JsDeferred};
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::SeqCst;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

/// Longest single futex wait: waiters look at cancellation and at dead
/// peers this often.
pub const SLICE: Duration = Duration::from_millis(100);

pub type Resolver = fn(Env) -> napi::Result<()>;

#[derive(Clone, Copy)]
pub enum Which {
    Items,
    Space,
}

struct Job {
    which: Which,
    seen: u32,
    epoch: u64,
    deferred: JsDeferred<(), Resolver>,
}

pub struct Waiter {
    queue: Arc<Queue>,
    jobs: Option<mpsc::Sender<Job>>,
    /// Bumped to cancel every job submitted before.
    epoch: Arc<AtomicU64>,
}

pub fn event(q: &Queue, which: Which) -> &crate::layout::Event {
    match which {
        Which::Items => q.items(),
        Which::Space => q.space(),
    }
}

impl Waiter {
    pub fn new(queue: Arc<Queue>) -> Waiter {
        Waiter {
            queue,
            jobs: None,
            epoch: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Resolves `deferred` once the event differs from `seen` or `cancel` is
    /// called (timeouts are the JS side's).
    pub fn watch(
        &mut self,
        which: Which,
        seen: u32,
        deferred: JsDeferred<(), Resolver>,
    ) -> std::io::Result<()> {
        let job = Job {
            which,
            seen,
            epoch: self.epoch.load(SeqCst),
            deferred,
        };
        let tx = match &self.jobs {
            Some(tx) => tx,
            None => {
                let (tx, rx) = mpsc::channel::<Job>();
                let queue = self.queue.clone();
                let epoch = self.epoch.clone();
                std::thread::Builder::new()
                    .name("shmq-waiter".into())
                    .spawn(move || run(&queue, &epoch, rx))?;
                self.jobs.insert(tx)
            }
        };
        if let Err(mpsc::SendError(job)) = tx.send(job) {
            job.deferred.resolve(ok);
        }
        Ok(())
    }

    /// Ends every pending watch soon (they resolve; JS finds nothing to do).
    pub fn cancel(&self) {
        self.epoch.fetch_add(1, SeqCst);
        sync::wake_all(self.queue.items());
        sync::wake_all(self.queue.space());
    }
}

impl Drop for Waiter {
    fn drop(&mut self) {
        self.cancel();
        // Dropping the sender ends the thread after its current job.
        self.jobs = None;
    }
}

fn ok(_: Env) -> napi::Result<()> {
    Ok(())
}

fn run(queue: &Queue, epoch: &AtomicU64, jobs: mpsc::Receiver<Job>) {
    for job in jobs {
        let ev = event(queue, job.which);
        while epoch.load(SeqCst) == job.epoch && ev.seq.load(SeqCst) == job.seen {
            queue.wait_slice(ev, job.seen, SLICE);
        }
        job.deferred.resolve(ok);
    }
}
