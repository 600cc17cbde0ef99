//! shmq: a bounded MPMC queue in named shared memory, for Node.js processes.
//!
//! Modules, one concern each: `layout` (the shared-memory format), `segment`
//! (named mappings), `sync` (futex wake-ups), `queue` (the ring and the end
//! table), `payload` (segments for large messages), `codec` (tags),
//! `end` (one queue end), `waiter` (async waits), `process` (liveness),
//! `gc` (listing and removing queues in /dev/shm).
//! This file only binds them to JavaScript.

#![deny(clippy::undocumented_unsafe_blocks)]

mod codec;
mod end;
mod error;
mod gc;
mod layout;
mod payload;
mod process;
mod queue;
mod segment;
mod sync;
mod waiter;

use end::{End, Got, Put};
use error::{Code, ShmqError};
use napi::bindgen_prelude::*;
use napi::JsString;
use napi_derive::napi;
use queue::Role;
use waiter::{Resolver, Waiter, Which};

/// `put` results (numbers, so the hot path allocates nothing).
pub const PUT_DONE: u32 = 0;
pub const PUT_FULL: u32 = 1;
pub const PUT_CLOSED: u32 = 2;
/// `get` results when there is no message.
pub const GET_EMPTY: u32 = 1;
pub const GET_CLOSED: u32 = 2;

fn role(r: u32) -> Result<Role> {
    match r {
        0 => Ok(Role::Sender),
        1 => Ok(Role::Receiver),
        _ => Err(ShmqError::invalid(format!("role {r}")).into()),
    }
}

fn which(w: u32) -> Which {
    if w == 0 {
        Which::Items
    } else {
        Which::Space
    }
}

/// One end of a queue (the TypeScript classes wrap it).
#[napi]
pub struct NativeEnd {
    end: End,
    waiter: Waiter,
    last_tag: u32,
}

impl NativeEnd {
    fn wrap(end: End) -> NativeEnd {
        let waiter = Waiter::new(end.queue.clone());
        NativeEnd {
            end,
            waiter,
            last_tag: 0,
        }
    }
}

/// Creates a queue; returns its sender end and its receiver end.
#[napi]
pub fn create_queue(
    capacity: u32,
    slot_size: u32,
    max_message_size: f64,
) -> Result<Vec<NativeEnd>> {
    if !(max_message_size >= 0.0 && max_message_size <= 2f64.powi(53)) {
        return Err(ShmqError::new(Code::TooLarge, "maxMessageSize out of range".into()).into());
    }
    let (tx, rx) = End::create_pair(capacity, slot_size, max_message_size as u64)?;
    Ok(vec![NativeEnd::wrap(tx), NativeEnd::wrap(rx)])
}

/// Opens the queue named by `handle` as a sender (0) or receiver (1).
#[napi]
pub fn attach_queue(handle: String, role_code: u32) -> Result<NativeEnd> {
    Ok(NativeEnd::wrap(End::attach(&handle, role(role_code)?)?))
}

/// Releases queues whose creator closed its unused ends (called at exit).
#[napi]
pub fn release_lingering() {
    end::release_lingering(true);
}

/// A queue found in /dev/shm.
#[napi(object)]
pub struct QueueInfo {
    pub name: String,
    /// "live", "dead" (every process that used it is gone) or "invalid".
    pub status: String,
    pub capacity: u32,
    /// Messages waiting.
    pub depth: f64,
    pub senders: u32,
    pub receivers: u32,
    pub pids: Vec<u32>,
    /// Bytes of shared memory: the queue segment and its payload segments.
    pub bytes: f64,
}

/// Every shmq queue in /dev/shm.
#[napi]
pub fn list_queues() -> Vec<QueueInfo> {
    gc::scan()
        .into_iter()
        .map(|f| QueueInfo {
            status: match f.status {
                gc::Status::Live => "live",
                gc::Status::Dead => "dead",
                gc::Status::Invalid => "invalid",
            }
            .into(),
            name: f.name,
            capacity: f.capacity,
            depth: f.depth as f64,
            senders: f.senders as u32,
            receivers: f.receivers as u32,
            pids: f.pids,
            bytes: f.bytes as f64,
        })
        .collect()
}

/// Names of the queues no live process uses; removed if `remove`. Invalid
/// segments are included only with `invalidToo`.
#[napi]
pub fn collect_garbage(remove: bool, invalid_too: bool) -> Vec<String> {
    gc::collect(remove, invalid_too)
}

#[napi]
impl NativeEnd {
    #[napi(getter)]
    pub fn handle(&self) -> String {
        self.end.queue.name.clone()
    }

    #[napi(getter)]
    pub fn capacity(&self) -> u32 {
        self.end.queue.capacity
    }

    #[napi(getter)]
    pub fn slot_size(&self) -> u32 {
        self.end.queue.slot_size
    }

    #[napi(getter)]
    pub fn max_message_size(&self) -> f64 {
        self.end.queue.max_message_size as f64
    }

    #[napi(getter)]
    pub fn size(&self) -> f64 {
        self.end.queue.size() as f64
    }

    #[napi(getter)]
    pub fn closed(&self) -> bool {
        self.end.is_closed()
    }

    /// The tag of the message the last `get` returned.
    #[napi(getter)]
    pub fn last_tag(&self) -> u32 {
        self.last_tag
    }

    /// PUT_DONE, PUT_FULL or PUT_CLOSED (no receiver left).
    #[napi]
    pub fn put(&mut self, tag: u32, data: &[u8]) -> Result<u32> {
        Ok(match self.end.put(tag, data)? {
            Put::Done => PUT_DONE,
            Put::Full => PUT_FULL,
            Put::Closed => PUT_CLOSED,
        })
    }

    #[napi]
    pub fn put_string(&mut self, value: String) -> Result<u32> {
        self.put(codec::TAG_STRING, value.as_bytes())
    }

    /// The next message (a string, or an ArrayBuffer with `lastTag`), or
    /// GET_EMPTY / GET_CLOSED.
    #[napi(ts_return_type = "ArrayBuffer | string | number")]
    pub fn get<'env>(
        &mut self,
        env: &'env Env,
    ) -> Result<Either3<ArrayBuffer<'env>, JsString<'env>, u32>> {
        let got = self.end.get(|tag, bytes| -> Result<_> {
            if tag == codec::TAG_STRING {
                let s = std::str::from_utf8(bytes)
                    .map_err(|_| ShmqError::invalid("a string message is not valid UTF-8"))?;
                Ok((tag, Either::B(env.create_string(s)?)))
            } else {
                Ok((tag, Either::A(ArrayBuffer::copy_from(env, bytes)?)))
            }
        })?;
        Ok(match got {
            Got::Message(value) => {
                let (tag, value) = value?;
                self.last_tag = tag;
                match value {
                    Either::A(buffer) => Either3::A(buffer),
                    Either::B(string) => Either3::B(string),
                }
            }
            Got::Empty => Either3::C(GET_EMPTY),
            Got::Closed => Either3::C(GET_CLOSED),
        })
    }

    /// Current value of the items (0) or space (1) event counter.
    #[napi]
    pub fn event(&self, which_code: u32) -> u32 {
        waiter::event(&self.end.queue, which(which_code))
            .seq
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Blocks this thread until the event differs from `seen` or the timeout
    /// passes (negative = no timeout); may return early. The caller re-checks.
    #[napi]
    pub fn wait_sync(&self, which_code: u32, seen: u32, timeout_ms: f64) {
        let q = &self.end.queue;
        if let Some(slice) = sync::next_slice(sync::deadline(timeout_ms), waiter::SLICE) {
            q.wait_slice(waiter::event(q, which(which_code)), seen, slice);
        }
    }

    /// Resolves once the event differs from `seen`, after `timeout_ms`
    /// (negative = none), or on `cancelWatch()`; waits on a dedicated thread.
    #[napi(ts_return_type = "Promise<void>")]
    pub fn watch<'env>(
        &mut self,
        env: &'env Env,
        which_code: u32,
        seen: u32,
        timeout_ms: f64,
    ) -> Result<Object<'env>> {
        let (deferred, promise) = env.create_deferred::<(), Resolver>()?;
        self.waiter
            .watch(
                which(which_code),
                seen,
                sync::deadline(timeout_ms),
                deferred,
            )
            .map_err(|e| {
                ShmqError::new(Code::Os, format!("could not start a waiter thread: {e}"))
            })?;
        Ok(promise)
    }

    #[napi]
    pub fn cancel_watch(&self) {
        self.waiter.cancel();
    }

    /// Messages this end put that no receiver has taken yet.
    #[napi]
    pub fn unacked(&self) -> u32 {
        self.end.unacked()
    }

    /// True once every receiver that took part has gone.
    #[napi]
    pub fn receivers_gone(&self) -> bool {
        self.end.queue.receivers_gone()
    }

    #[napi]
    pub fn close(&mut self) {
        self.waiter.cancel();
        self.end.close();
    }
}
