//! Async waits on the JS thread's own event loop (Linux 6.7+): the core's
//! `LoopWatches` queue each watch as a futex wait on an io_uring, libuv polls
//! its fd, and the poll callback settles the watches' tokens by calling the
//! wrapper's settle function directly. A message that ends a wait wakes this
//! thread once: no waiter thread, no thread-safe function.
//!
//! Where the kernel cannot (or with `SHMQ_WAITER=thread`), `init` says no
//! and the binding uses the waiter thread (`shmq_core::waiter::Waiter`).

use napi::sys;
use shmq_core::queue::Queue;
use shmq_core::waiter::{LoopWatches, Which};
use std::cell::RefCell;
use std::collections::HashMap;
use std::ffi::{c_int, c_void};
use std::ptr;
use std::sync::Arc;

// libuv, as the Node.js executable exports it (as it exports N-API).
extern "C" {
    fn uv_handle_size(kind: c_int) -> usize;
    fn uv_poll_init(lp: *mut sys::uv_loop_s, handle: *mut c_void, fd: c_int) -> c_int;
    fn uv_poll_start(
        handle: *mut c_void,
        events: c_int,
        cb: unsafe extern "C" fn(*mut c_void, c_int, c_int),
    ) -> c_int;
    fn uv_poll_stop(handle: *mut c_void) -> c_int;
    fn uv_close(handle: *mut c_void, cb: unsafe extern "C" fn(*mut c_void));
    fn uv_ref(handle: *mut c_void);
    fn uv_unref(handle: *mut c_void);
}
/// `UV_POLL` in `uv_handle_type`; `UV_READABLE` in `uv_poll_event`.
const UV_POLL: c_int = 8;
const UV_READABLE: c_int = 1;

struct Loop {
    watches: LoopWatches,
    env: sys::napi_env,
    /// Each copy of the wrapper on this thread (a module registry may load
    /// it twice), by instance number: its settle function and whether its
    /// watches keep the loop alive. A watch's token is `instance << 32 | token`.
    instances: HashMap<u32, Instance>,
    context: sys::napi_async_context,
    /// A `uv_poll_t` (malloc'd: libuv frees nothing; `free_handle` does).
    handle: *mut c_void,
}

struct Instance {
    /// The wrapper's `(token, failure) => void`.
    settle: sys::napi_ref,
    referenced: bool,
}

thread_local! {
    static LOOP: RefCell<Option<Loop>> = const { RefCell::new(None) };
}

/// Sets up this thread's loop watches for wrapper copy `instance`; false if
/// they cannot work here.
pub fn init(env: sys::napi_env, settle: sys::napi_value, instance: u32) -> bool {
    if std::env::var_os("SHMQ_WAITER").is_some_and(|v| v == "thread") {
        return false;
    }
    if LOOP.with_borrow(Option::is_none) && !start(env) {
        return false;
    }
    let mut settle_ref = ptr::null_mut();
    // SAFETY: on the JS thread of `env`, with a live `settle`.
    if unsafe { sys::napi_create_reference(env, settle, 1, &mut settle_ref) }
        != sys::Status::napi_ok
    {
        return false;
    }
    LOOP.with_borrow_mut(|l| {
        l.as_mut().is_some_and(|l| {
            l.instances.insert(
                instance,
                Instance {
                    settle: settle_ref,
                    referenced: false,
                },
            );
            true
        })
    })
}

/// This thread's ring and poll handle.
fn start(env: sys::napi_env) -> bool {
    let Some(watches) = LoopWatches::new() else {
        return false;
    };
    // SAFETY: called on the JS thread of `env`; every out-pointer is a
    // local; the handle is allocated at libuv's size for a poll handle and
    // given to libuv only once initialised.
    unsafe {
        let mut lp = ptr::null_mut();
        let size = uv_handle_size(UV_POLL);
        if sys::napi_get_uv_event_loop(env, &mut lp) != sys::Status::napi_ok || size == 0 {
            return false;
        }
        let handle = libc::calloc(1, size);
        if handle.is_null() {
            return false;
        }
        if uv_poll_init(lp, handle, watches.fd()) != 0 {
            libc::free(handle);
            return false;
        }
        if uv_poll_start(handle, UV_READABLE, on_readable) != 0 {
            uv_close(handle, free_handle);
            return false;
        }
        // Pending watches hold the loop only while the wrapper says so.
        uv_unref(handle);
        let mut name = ptr::null_mut();
        let mut context = ptr::null_mut();
        let label = c"shmq:wait";
        if sys::napi_create_string_utf8(env, label.as_ptr(), -1, &mut name) != sys::Status::napi_ok
            || sys::napi_async_init(env, ptr::null_mut(), name, &mut context)
                != sys::Status::napi_ok
            || sys::napi_add_env_cleanup_hook(env, Some(cleanup), ptr::null_mut())
                != sys::Status::napi_ok
        {
            uv_close(handle, free_handle);
            return false;
        }
        LOOP.set(Some(Loop {
            watches,
            env,
            instances: HashMap::new(),
            context,
            handle,
        }));
    }
    true
}

/// True if wrapper copy `instance`'s watches go through this thread's loop
/// (a copy registered while the ring could not start uses the waiter thread).
pub fn usable(instance: u32) -> bool {
    LOOP.with_borrow(|l| {
        l.as_ref()
            .is_some_and(|l| !l.watches.broken() && l.instances.contains_key(&instance))
    })
}

/// Watches through the loop; false if the kernel refused (watch elsewhere).
pub fn watch(owner: u32, queue: &Arc<Queue>, which: Which, seen: u32, token: u64) -> bool {
    LOOP.with_borrow_mut(|l| {
        l.as_mut()
            .is_some_and(|l| l.watches.watch(owner, queue, which, seen, token))
    })
}

/// Ends `owner`'s watches (they settle soon) and lets go of their queues.
pub fn cancel(owner: u32) {
    LOOP.with_borrow_mut(|l| {
        if let Some(l) = l {
            l.watches.cancel(owner);
        }
    });
}

/// Once the ring is broken: the tokens of every watch it still had, for the
/// caller to settle another way.
pub fn orphans() -> Vec<u64> {
    LOOP.with_borrow_mut(|l| {
        l.as_mut()
            .map(|l| l.watches.take_if_broken())
            .unwrap_or_default()
    })
}

/// Whether wrapper copy `instance`'s pending watches keep the loop alive
/// (the handle is referenced while any copy's are).
pub fn set_ref(instance: u32, on: bool) {
    LOOP.with_borrow_mut(|l| {
        let Some(l) = l else { return };
        if let Some(i) = l.instances.get_mut(&instance) {
            i.referenced = on;
        }
        let any = l.instances.values().any(|i| i.referenced);
        // SAFETY: a live poll handle of this thread's loop.
        unsafe {
            if any {
                uv_ref(l.handle)
            } else {
                uv_unref(l.handle)
            }
        }
    });
}

/// The ring's fd is readable: settle every completed watch's token.
unsafe extern "C" fn on_readable(_handle: *mut c_void, _status: c_int, _events: c_int) {
    // Take the tokens first: settling runs JS, which may watch again.
    let Some((calls, env, context)) = LOOP.with_borrow_mut(|l| {
        l.as_mut().map(|l| {
            let calls: Vec<(sys::napi_ref, u32)> = l
                .watches
                .complete()
                .into_iter()
                .filter_map(|key| {
                    let instance = l.instances.get(&((key >> 32) as u32))?;
                    Some((instance.settle, key as u32))
                })
                .collect();
            if l.watches.broken() && l.watches.pending() == 0 {
                // Nothing more will come, and an fd stuck readable would call
                // this on every turn of the loop.
                // SAFETY: the live poll handle of this thread's loop.
                unsafe { uv_poll_stop(l.handle) };
            }
            (calls, l.env, l.context)
        })
    }) else {
        return;
    };
    for (settle, token) in calls {
        // SAFETY: on the loop's JS thread, outside any JS call (a libuv
        // callback), with the env and references made for it in `init`.
        unsafe { call_settle(env, settle, context, token) };
    }
}

/// `settle(token, null)` in its own handle scope, as a callback from the
/// event loop (microtasks run after it).
unsafe fn call_settle(
    env: sys::napi_env,
    settle: sys::napi_ref,
    context: sys::napi_async_context,
    token: u32,
) {
    let mut scope = ptr::null_mut();
    // SAFETY: the caller's contract; every out-pointer is a local.
    unsafe {
        if sys::napi_open_handle_scope(env, &mut scope) != sys::Status::napi_ok {
            return;
        }
        let (mut func, mut recv, mut t, mut null, mut result) = (
            ptr::null_mut(),
            ptr::null_mut(),
            ptr::null_mut(),
            ptr::null_mut(),
            ptr::null_mut(),
        );
        if sys::napi_get_reference_value(env, settle, &mut func) == sys::Status::napi_ok
            && sys::napi_get_global(env, &mut recv) == sys::Status::napi_ok
            && sys::napi_create_uint32(env, token, &mut t) == sys::Status::napi_ok
            && sys::napi_get_null(env, &mut null) == sys::Status::napi_ok
        {
            let args = [t, null];
            let status =
                sys::napi_make_callback(env, context, recv, func, 2, args.as_ptr(), &mut result);
            if status == sys::Status::napi_pending_exception {
                // As a thread-safe function's call would: uncaught.
                let mut error = ptr::null_mut();
                sys::napi_get_and_clear_last_exception(env, &mut error);
                sys::napi_fatal_exception(env, error);
            }
        }
        sys::napi_close_handle_scope(env, scope);
    }
}

/// The environment is going away (a worker ends, or the process): give the
/// watches' counts back and close the handle.
unsafe extern "C" fn cleanup(_arg: *mut c_void) {
    if let Some(l) = LOOP.take() {
        // SAFETY: the live poll handle of this thread's loop, closed once.
        unsafe { uv_close(l.handle, free_handle) };
    }
}

unsafe extern "C" fn free_handle(handle: *mut c_void) {
    // SAFETY: allocated by calloc in `init`; libuv is done with it.
    unsafe { libc::free(handle) };
}
