//! shmq's napi binding: shmq-core (crates/shmq-core, which knows no
//! JavaScript) bound to Node.js. This file binds queue ends; `hot` has raw
//! callbacks for put/get; `views` hands shared memory to JS in place
//! (reserve / lease).
//!
//! Ends live in a per-thread registry and JS refers to them by number: plain
//! functions with number arguments cost a fraction of napi-rs class methods
//! (which take a lock and allocate per call to track borrows). Errors reach
//! JS with their stable code set natively (`err.code`, from `Code`).

#![deny(clippy::undocumented_unsafe_blocks)]

mod hot;
mod poll;
#[allow(dead_code)] // some are for the TypeScript side only
mod protocol;
pub mod views;

use napi::bindgen_prelude::*;
use napi::sys;
use napi::threadsafe_function::ThreadsafeFunctionCallMode;
use napi_derive::napi;
use shmq_core::waiter::{Waiter, Which};
use shmq_core::{codec, end, gc, sync};
use shmq_core::{Code, End, Got, Put, Role, ShmqError};
use std::cell::RefCell;

/// What every binding function returns: a JS error's `code` is the `Code`.
pub(crate) type Result<T> = std::result::Result<T, napi::Error<Code>>;

/// Into a JS error with its stable code.
pub(crate) trait OrThrow<T> {
    fn js(self) -> Result<T>;
}

impl<T> OrThrow<T> for std::result::Result<T, ShmqError> {
    fn js(self) -> Result<T> {
        self.map_err(|e| napi::Error::new(e.code, e.message))
    }
}

/// N-API itself failed (out of memory, or the environment is going away).
impl<T> OrThrow<T> for napi::Result<T> {
    fn js(self) -> Result<T> {
        self.map_err(|e| napi::Error::new(Code::Os, format!("N-API: {}", e.reason)))
    }
}

use protocol::{GET_CLOSED, GET_EMPTY, PUT_CLOSED, PUT_DONE, PUT_FULL};

struct Registered {
    /// First: dropping it settles the waiter before `end` closes.
    waiter: Waiter,
    end: End,
    last_tag: u32,
    /// The Buffers handed out for reservations and leases, by hold number,
    /// so they can be detached when the hold ends (see `views`).
    views: std::collections::HashMap<u32, views::Open>,
    /// Its JS object was collected while some of `views` were reachable: it
    /// stays registered and open until the last of them is collected.
    freed: bool,
}

/// The ends of one JS thread (main or worker), by number.
#[derive(Default)]
struct Registry(Vec<Option<Registered>>);

impl Drop for Registry {
    /// A worker thread that ends (even by `terminate()`, which skips JS exit
    /// hooks) closes its ends, then releases the queues it kept lingering.
    fn drop(&mut self) {
        self.0.clear();
        end::release_lingering(true);
    }
}

thread_local! {
    static ENDS: RefCell<Registry> = RefCell::new(Registry::default());
}

fn register(end: End) -> u32 {
    let r = Registered {
        end,
        waiter: Waiter::default(),
        last_tag: 0,
        views: Default::default(),
        freed: false,
    };
    ENDS.with_borrow_mut(
        |Registry(ends)| match ends.iter().position(Option::is_none) {
            Some(i) => {
                ends[i] = Some(r);
                i as u32
            }
            None => {
                ends.push(Some(r));
                (ends.len() - 1) as u32
            }
        },
    )
}

pub(crate) fn with_end<R>(id: u32, f: impl FnOnce(&mut Registered) -> Result<R>) -> Result<R> {
    ENDS.with_borrow_mut(|Registry(ends)| match ends.get_mut(id as usize) {
        Some(Some(r)) => f(r),
        _ => Err(ShmqError::invalid(format!(
            "no queue end number {id} in this thread"
        )))
        .js(),
    })
}

/// As `with_end`, for finalizers: nothing happens when the end is gone, or
/// the registry is in use or torn down (the thread is ending). A freed end
/// whose last view this was closes.
pub(crate) fn try_with_end(id: u32, f: impl FnOnce(&mut Registered)) {
    let _ = ENDS.try_with(|ends| {
        let taken = (|| {
            let mut ends = ends.try_borrow_mut().ok()?;
            let slot = ends.0.get_mut(id as usize)?;
            let r = slot.as_mut()?;
            f(r);
            (r.freed && r.views.is_empty()).then(|| slot.take())?
        })();
        // Dropped (closed) out of the registry's borrow.
        drop(taken);
    });
}

pub(crate) fn which(w: u32) -> Which {
    if w == protocol::ITEMS {
        Which::Items
    } else {
        Which::Space
    }
}

/// The bytes of any TypedArray, DataView or ArrayBuffer, borrowed for one call.
pub struct Bytes {
    ptr: *const u8,
    len: usize,
}
// (hot.rs reads ptr/len directly for the scratch buffer.)

impl Bytes {
    fn as_slice(&self) -> &[u8] {
        if self.len == 0 {
            return &[];
        }
        // SAFETY: ptr/len came from N-API for a live JS buffer that the caller
        // keeps alive for the duration of this native call.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }
}

impl TypeName for Bytes {
    fn type_name() -> &'static str {
        "ArrayBufferView | ArrayBuffer"
    }
    fn value_type() -> ValueType {
        ValueType::Object
    }
}

impl FromNapiValue for Bytes {
    unsafe fn from_napi_value(env: sys::napi_env, value: sys::napi_value) -> napi::Result<Self> {
        let mut data = std::ptr::null_mut();
        let mut len = 0usize;
        let mut is = false;
        // SAFETY: N-API calls on a value napi-rs handed us, with out-pointers
        // to locals (all three branches).
        unsafe {
            sys::napi_is_typedarray(env, value, &mut is);
            if is {
                let (mut kind, mut buffer, mut offset) = (0, std::ptr::null_mut(), 0);
                let status = sys::napi_get_typedarray_info(
                    env,
                    value,
                    &mut kind,
                    &mut len,
                    &mut data,
                    &mut buffer,
                    &mut offset,
                );
                let element = match kind {
                    sys::TypedarrayType::int16_array | sys::TypedarrayType::uint16_array => 2,
                    sys::TypedarrayType::int32_array
                    | sys::TypedarrayType::uint32_array
                    | sys::TypedarrayType::float32_array => 4,
                    sys::TypedarrayType::float64_array
                    | sys::TypedarrayType::bigint64_array
                    | sys::TypedarrayType::biguint64_array => 8,
                    _ => 1,
                };
                len *= element;
                return check(status, data, len);
            }
            sys::napi_is_dataview(env, value, &mut is);
            if is {
                let (mut buffer, mut offset) = (std::ptr::null_mut(), 0);
                let status = sys::napi_get_dataview_info(
                    env,
                    value,
                    &mut len,
                    &mut data,
                    &mut buffer,
                    &mut offset,
                );
                return check(status, data, len);
            }
            sys::napi_is_arraybuffer(env, value, &mut is);
            if is {
                let status = sys::napi_get_arraybuffer_info(env, value, &mut data, &mut len);
                return check(status, data, len);
            }
        }
        Err(Error::new(
            Status::InvalidArg,
            "expected a TypedArray, DataView or ArrayBuffer",
        ))
    }
}

fn check(status: sys::napi_status, data: *mut std::ffi::c_void, len: usize) -> napi::Result<Bytes> {
    if status == sys::Status::napi_ok {
        Ok(Bytes {
            ptr: data.cast_const().cast(),
            len,
        })
    } else {
        Err(Error::new(Status::InvalidArg, "could not read the buffer"))
    }
}

// ---- queues ----

/// Creates a queue; returns the numbers of its sender end and receiver end.
#[napi]
pub fn create_queue(capacity: u32, slot_size: u32, max_message_size: f64) -> Result<Vec<u32>> {
    if !(0.0..=2f64.powi(53)).contains(&max_message_size) {
        return Err(ShmqError::new(
            Code::TooLarge,
            "maxMessageSize out of range".into(),
        ))
        .js();
    }
    let (tx, rx) = End::create_pair(capacity, slot_size, max_message_size as u64).js()?;
    Ok(vec![register(tx), register(rx)])
}

/// Opens the queue named by `handle` as a sender (0) or receiver (1).
#[napi]
pub fn attach_queue(handle: String, role: u32) -> Result<u32> {
    let role = if role == protocol::SENDER {
        Role::Sender
    } else {
        Role::Receiver
    };
    Ok(register(End::attach(&handle, role).js()?))
}

/// What a queue end is attached to.
#[napi(object)]
pub struct EndInfo {
    pub handle: String,
    pub capacity: u32,
    pub slot_size: u32,
    pub max_message_size: f64,
}

#[napi]
pub fn end_info(id: u32) -> Result<EndInfo> {
    with_end(id, |r| {
        let i = &r.end.info;
        Ok(EndInfo {
            handle: i.handle.clone(),
            capacity: i.capacity,
            slot_size: i.slot_size,
            max_message_size: i.max_message_size as f64,
        })
    })
}

/// Messages waiting now.
#[napi]
pub fn end_size(id: u32) -> Result<f64> {
    with_end(id, |r| Ok(r.end.queue().map_or(0, |q| q.size()) as f64))
}

// ---- the hot path (called through hot.rs) ----

/// `{ put(id, tag, bytes), putString(id, string), get(id, scratch, at) }`:
/// put returns PUT_DONE, PUT_FULL or PUT_CLOSED (no receiver left). get
/// returns the next message: a string message as a string; a binary one of at
/// most `scratch.length - at` (and POOLED_MAX) bytes copied into `scratch` at `at`, as
/// `length * TAG_RADIX + tag`;
/// a larger one as a Buffer that owns its whole ArrayBuffer (tag from
/// `endLastTag`); GET_EMPTY / GET_CLOSED when there is none. That Buffer is
/// allocated uninitialized by Node (`napi_create_buffer`) and filled here
/// (`copy_releasing`: from 64 MiB up without keeping the shared pages
/// mapped); V8 frees it as soon as it is garbage, so large messages land in
/// memory malloc has already faulted in (external or pooled buffers, freed
/// only by finalizers, were measured slower).
#[napi(
    ts_return_type = "{ put(id: number, tag: number, bytes: ArrayBufferView | ArrayBuffer): number; putString(id: number, value: string): number; get(id: number, scratch: Uint8Array, at: number): Buffer | string | number; lastTag(id: number): number; event(id: number, which: number): number; spin(id: number, which: number, seen: number): boolean; reserve(id: number, len: number): Buffer | number; lease(id: number): Buffer | number; commit(id: number, hold: number, len: number, tag: number): void; abort(id: number, hold: number): void; release(id: number, hold: number): void; held: Uint32Array }"
)]
pub fn hot_path(env: &Env) -> Result<Unknown<'_>> {
    let value = hot::functions(env.raw())?;
    // SAFETY: a valid object just created in this env.
    unsafe { Unknown::from_napi_value(env.raw(), value) }.js()
}

pub(crate) fn put_bytes(id: u32, tag: u32, bytes: &[u8]) -> Result<u32> {
    with_end(id, |r| {
        Ok(match r.end.put(tag, bytes).js()? {
            Put::Done => PUT_DONE,
            Put::Full => PUT_FULL,
            Put::Closed => PUT_CLOSED,
        })
    })
}

/// What `get` hands to the function that builds the JS value.
pub(crate) enum Message<'a> {
    /// GET_EMPTY or GET_CLOSED.
    Number(f64),
    /// Fits the scratch buffer.
    Small {
        tag: u32,
        bytes: &'a [u8],
    },
    Text(&'a str),
    Large(&'a [u8]),
}

/// Takes the next message and calls `make` with it while its slot is held.
pub(crate) fn get_message(
    id: u32,
    mut make: impl FnMut(Message) -> sys::napi_status,
    scratch_len: usize,
) -> Result<sys::napi_status> {
    with_end(id, |r| {
        let mut last_tag = r.last_tag;
        let got =
            r.end
                .get(|tag, bytes| -> std::result::Result<_, ShmqError> {
                    last_tag = tag;
                    Ok(make(if tag == codec::TAG_STRING {
                        Message::Text(std::str::from_utf8(bytes).map_err(|_| {
                            ShmqError::invalid("a string message is not valid UTF-8")
                        })?)
                    } else if bytes.len() <= scratch_len {
                        Message::Small { tag, bytes }
                    } else {
                        Message::Large(bytes)
                    }))
                })
                .js()?;
        r.last_tag = last_tag;
        match got {
            Got::Message(status) => status.js(),
            Got::Empty => Ok(make(Message::Number(GET_EMPTY))),
            Got::Closed => Ok(make(Message::Number(GET_CLOSED))),
        }
    })
}

impl Bytes {
    /// The bytes as `len / size_of::<T>()` elements of a typed array.
    /// SAFETY: the caller passes the typed array of element type T (JS
    /// aligns its data to the element size) and keeps it alive for the call.
    pub(crate) unsafe fn elements<T>(&mut self) -> &mut [T] {
        if self.len == 0 {
            return &mut [];
        }
        // SAFETY: see above; the JS side lends the memory for this call only.
        unsafe {
            std::slice::from_raw_parts_mut(
                self.ptr.cast_mut().cast::<T>(),
                self.len / std::mem::size_of::<T>(),
            )
        }
    }
}

/// Puts messages `from..` of a batch: `tags` (Uint32Array) and `lengths`
/// (Float64Array) describe them, `data` holds their bytes back to back.
/// Returns how many were put (each whole or not at all, in order), or
/// GET_CLOSED if none was and no receiver is left.
#[napi]
pub fn end_put_many(
    id: u32,
    mut tags: Bytes,
    mut lengths: Bytes,
    data: Bytes,
    from: u32,
) -> Result<f64> {
    // SAFETY: the JS wrapper passes a Uint32Array and a Float64Array.
    let (tags, lengths) = unsafe { (tags.elements::<u32>(), lengths.elements::<f64>()) };
    let data = data.as_slice();
    let mut at = 0usize;
    let mut messages = Vec::with_capacity(tags.len());
    for (&tag, &len) in tags.iter().zip(lengths.iter()) {
        let len = len as usize;
        let bytes = data
            .get(at..at.saturating_add(len))
            .ok_or_else(|| ShmqError::invalid("a batch is shorter than its lengths say"))
            .js()?;
        messages.push((tag, bytes));
        at += len;
    }
    let from = (from as usize).min(messages.len());
    with_end(id, |r| {
        Ok(match r.end.put_many(messages.drain(from..)).js()? {
            Got::Message(n) => n as f64,
            Got::Empty | Got::Closed => GET_CLOSED,
        })
    })
}

/// Takes up to `max` messages into `out` (a Buffer) back to back, with
/// `(tag, length)` pairs in `meta` (a Float64Array; tag -1: a corrupt
/// message). Returns how many; 0 if none fits (take one by `get`).
#[napi]
pub fn end_get_many(id: u32, max: u32, mut out: Bytes, mut meta: Bytes) -> Result<u32> {
    // SAFETY: the JS wrapper passes a Buffer and a Float64Array it does not
    // touch during this call.
    let (out, meta) = unsafe { (out.elements::<u8>(), meta.elements::<f64>()) };
    with_end(id, |r| {
        Ok(r.end.get_many(max as usize, out, meta).js()? as u32)
    })
}

// ---- waiting ----

/// Blocks this thread until the event differs from `seen` or the timeout
/// passes (negative = no timeout), for at most one wait slice (`End::wait`).
#[napi]
pub fn end_wait_sync(id: u32, which_code: u32, seen: u32, timeout_ms: f64) -> Result<()> {
    with_end(id, |r| {
        let deadline = sync::deadline(timeout_ms);
        r.end.wait(which(which_code), seen, deadline);
        Ok(())
    })
}

/// What a finished watch tells JS: its token, and `[code, message]` if the
/// waiter thread could not start (null otherwise).
type WatchDone = FnArgs<(u32, Option<Vec<String>>)>;
/// The JS function that settles watches, called on its JS thread. Weak (it
/// keeps the event loop alive only while `watchRef(true)`).
type WatchTsfn = napi::threadsafe_function::ThreadsafeFunction<
    WatchDone,
    Unknown<'static>,
    WatchDone,
    Status,
    false,
    true,
>;

thread_local! {
    /// One per copy of the wrapper on this JS thread (a module registry may
    /// load it twice), by instance number: every watch of its ends reports
    /// through it, so a wait costs no thread-safe function of its own.
    static WATCHES: RefCell<Vec<std::sync::Arc<std::sync::Mutex<WatchTsfn>>>> =
        const { RefCell::new(Vec::new()) };
}

/// Registers a copy of the wrapper's function (`(token, failure) => void`)
/// that settles its watches; returns the copy's instance number. Watches go
/// through this thread's event loop (`poll`) where the kernel allows, else
/// (or if that fails later) through the waiter thread and a thread-safe
/// function.
#[napi(ts_args_type = "settle: (token: number, failure: [string, string] | null) => void")]
pub fn watch_init(env: &Env, settle: Function<'_, WatchDone, Unknown<'static>>) -> Result<u32> {
    let tsfn = settle
        .build_threadsafe_function::<WatchDone>()
        .callee_handled::<false>()
        .weak::<true>()
        .build()
        .js()?;
    let instance = WATCHES.with_borrow_mut(|w| {
        w.push(std::sync::Arc::new(std::sync::Mutex::new(tsfn)));
        w.len() as u32 - 1
    });
    poll::init(env.raw(), settle.raw(), instance);
    Ok(instance)
}

/// Whether wrapper copy `instance`'s pending watches keep this thread's
/// event loop alive (the wrapper says yes while a referenced end waits).
#[napi]
#[allow(deprecated)] // ref/unref of one shared function, not reference counting
pub fn watch_ref(env: &Env, instance: u32, on: bool) -> Result<()> {
    poll::set_ref(instance, on);
    let Some(tsfn) = WATCHES.with_borrow(|w| w.get(instance as usize).cloned()) else {
        return Ok(());
    };
    let mut tsfn = tsfn.lock().unwrap_or_else(|p| p.into_inner());
    if on {
        tsfn.refer(env).js()
    } else {
        tsfn.unref(env).js()
    }
}

/// Settles `token` of wrapper copy `instance` through its thread-safe
/// function (from any thread).
fn settle_through_tsfn(
    tsfn: &std::sync::Mutex<WatchTsfn>,
    token: u32,
    result: std::result::Result<(), ShmqError>,
) {
    let failure = result
        .err()
        .map(|e| vec![e.code.as_str().to_owned(), e.message]);
    let tsfn = tsfn.lock().unwrap_or_else(|p| p.into_inner());
    // Closing: the thread's environment is going away; nobody waits.
    let _ = tsfn.call(
        FnArgs::from((token, failure)),
        ThreadsafeFunctionCallMode::NonBlocking,
    );
}

/// Watches the loop can no longer settle (its ring failed): settled now,
/// spuriously; their callers look again and watch through the waiter thread.
fn settle_orphans() {
    for key in poll::orphans() {
        let (instance, token) = ((key >> 32) as usize, key as u32);
        if let Some(tsfn) = WATCHES.with_borrow(|w| w.get(instance).cloned()) {
            settle_through_tsfn(&tsfn, token, Ok(()));
        }
    }
}

/// Watches the event until it differs from `seen` or `endCancelWatch`; then
/// this thread's loop (or the waiter thread; never the libuv pool) settles
/// `token` through wrapper copy `instance`'s function. False if there is
/// nothing to wait for (the end is closed): settle at once.
#[napi]
pub fn end_watch(id: u32, which_code: u32, seen: u32, token: u32, instance: u32) -> Result<bool> {
    if poll::usable(instance) {
        let key = u64::from(instance) << 32 | u64::from(token);
        let watched = with_end(id, |r| {
            Ok(r.end
                .queue()
                .ok()
                .map(|q| poll::watch(id, q, which(which_code), seen, key)))
        })?;
        match watched {
            None => return Ok(false),
            Some(true) => return Ok(true),
            Some(false) => settle_orphans(),
        }
    }
    let Some(tsfn) = WATCHES.with_borrow(|w| w.get(instance as usize).cloned()) else {
        return Err(ShmqError::invalid(
            "watchInit was not called on this thread",
        ))
        .js();
    };
    with_end(id, |r| {
        let Ok(q) = r.end.queue() else {
            return Ok(false);
        };
        let done = move |result| settle_through_tsfn(&tsfn, token, result);
        r.waiter.watch(q, which(which_code), seen, Box::new(done));
        Ok(true)
    })
}

#[napi]
pub fn end_cancel_watch(id: u32) -> Result<()> {
    poll::cancel(id);
    settle_orphans();
    with_end(id, |r| {
        r.waiter.cancel();
        Ok(())
    })
}

// ---- acknowledgements and closing ----

/// Messages this end put that no receiver has taken yet.
#[napi]
pub fn end_unacked(id: u32) -> Result<u32> {
    with_end(id, |r| Ok(r.end.unacked()))
}

/// True once every receiver that took part has gone.
#[napi]
pub fn end_receivers_gone(id: u32) -> Result<bool> {
    with_end(id, |r| Ok(r.end.queue().is_ok_and(|q| q.receivers_gone())))
}

/// Stops the end taking part (idempotent); its number stays valid.
#[napi]
pub fn end_close(env: &Env, id: u32) -> Result<()> {
    with_end(id, |r| {
        poll::cancel(id);
        settle_orphans();
        r.waiter.settle();
        views::detach_all(env.raw(), r);
        r.end.close();
        Ok(())
    })
}

/// Closes the end and forgets its number (its JS object was collected),
/// or, while views of its holds are reachable, once the last of them is
/// collected (so they keep their memory and slots).
#[napi]
pub fn end_free(id: u32) {
    let taken = ENDS.with_borrow_mut(|Registry(ends)| match ends.get_mut(id as usize) {
        Some(Some(r)) if !r.views.is_empty() => {
            r.freed = true;
            r.waiter.settle();
            None
        }
        Some(slot) => slot.take(),
        None => None,
    });
    poll::cancel(id);
    settle_orphans();
    if let Some(mut r) = taken {
        r.waiter.settle();
    }
}

/// Releases queues whose creator closed its unused ends (called at exit).
/// Ends kept open only by views (`Registered::freed`) stay so: later exit
/// listeners may still read those views; the registry's drop closes them
/// after every listener ran.
#[napi]
pub fn release_lingering() {
    end::release_lingering(true);
}

// ---- inspection ----

/// A queue found in /dev/shm.
#[napi(object, use_nullable = true)]
pub struct QueueInfo {
    pub name: String,
    /// "live", "dead" (every process that used it is gone) or "invalid".
    pub status: String,
    pub capacity: u32,
    /// Messages waiting.
    pub depth: f64,
    /// Messages ever sent (the ring's tail, counting every claimed position):
    /// only grows, so two listings give a rate. Null for an invalid queue,
    /// payload segments without their queue, or a tail past
    /// `Number.MAX_SAFE_INTEGER` (a corrupt segment).
    pub sent: Option<f64>,
    pub senders: u32,
    pub receivers: u32,
    pub pids: Vec<u32>,
    /// Bytes of shared memory: the queue segment and its payload segments.
    pub bytes: f64,
}

/// `Number.MAX_SAFE_INTEGER`: larger integers are not exact as f64.
const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;

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
            // Exact as a JS number, or not reported.
            sent: f.sent.filter(|&n| n <= MAX_SAFE_INTEGER).map(|n| n as f64),
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
