//! Zero-copy: shared memory handed to JS in place, as Buffers over a
//! reservation's or a lease's bytes. Each Buffer keeps the mapping it points
//! into alive (its finalizer drops the hold on it), so no view ever outlives
//! its memory, whatever order close, release and GC happen in; and each is
//! detached (byteLength 0) when its hold ends, so a late read sees nothing
//! rather than another message's bytes.

use crate::protocol::{GET_CLOSED, GET_EMPTY};
use crate::{with_end, Bytes, OrThrow, Registered, Result};
use napi::bindgen_prelude::*;
use napi::sys;
use napi_derive::napi;
use shmq_core::end::{Got, Keep, View};
use shmq_core::ShmqError;
use std::ffi::c_void;
use std::ptr;

fn check(status: sys::napi_status, what: &str) -> Result<()> {
    if status == sys::Status::napi_ok {
        Ok(())
    } else {
        Err(ShmqError::new(
            shmq_core::Code::Os,
            format!("{what} failed (N-API status {status})"),
        ))
        .js()
    }
}

unsafe extern "C" fn drop_keep(_env: sys::napi_env, _data: *mut c_void, hint: *mut c_void) {
    // SAFETY: `hint` is the Box<Keep> leaked in `to_js`, finalized once.
    drop(unsafe { Box::from_raw(hint.cast::<Keep>()) });
}

/// The Buffer of a view, with `[hold, tag]` written to `meta` (a
/// Uint32Array of 2), or the number GET_EMPTY / GET_CLOSED.
fn to_js<'env>(
    env: &'env Env,
    r: &mut Registered,
    got: Got<View>,
    meta: &mut [u32],
) -> Result<Unknown<'env>> {
    let raw = env.raw();
    let view = match got {
        Got::Message(view) => view,
        Got::Empty => return env.create_double(GET_EMPTY).map(|v| v.to_unknown()).js(),
        Got::Closed => return env.create_double(GET_CLOSED).map(|v| v.to_unknown()).js(),
    };
    let keep = Box::into_raw(Box::new(view.keep));
    let mut buffer = ptr::null_mut();
    // SAFETY: `view.ptr` points at `view.len` bytes of a mapping that `keep`
    // holds alive; the finalizer takes `keep` back exactly once.
    let status = unsafe {
        sys::napi_create_external_buffer(
            raw,
            view.len,
            view.ptr.cast(),
            Some(drop_keep),
            keep.cast(),
            &mut buffer,
        )
    };
    if status != sys::Status::napi_ok {
        // SAFETY: not handed to N-API: still ours to free.
        drop(unsafe { Box::from_raw(keep) });
        check(status, "creating a view of shared memory")?;
    }
    let mut array_buffer = ptr::null_mut();
    let mut weak = ptr::null_mut();
    // SAFETY: N-API calls on values just created in this env, out-pointers to locals.
    unsafe {
        check(
            sys::napi_get_typedarray_info(
                raw,
                buffer,
                ptr::null_mut(),
                ptr::null_mut(),
                ptr::null_mut(),
                &mut array_buffer,
                ptr::null_mut(),
            ),
            "reading a view",
        )?;
        check(
            sys::napi_create_reference(raw, array_buffer, 0, &mut weak),
            "referencing a view",
        )?;
    }
    r.views.insert(view.hold, weak);
    if let [hold, tag, ..] = meta {
        (*hold, *tag) = (view.hold, view.tag);
    }
    // SAFETY: a valid Buffer value of this env.
    Ok(unsafe { Unknown::from_raw_unchecked(raw, buffer) })
}

/// Detaches the view of `hold` (if it is still reachable) and forgets it.
fn detach(env: sys::napi_env, r: &mut Registered, hold: u32) {
    let Some(weak) = r.views.remove(&hold) else {
        return;
    };
    let mut array_buffer = ptr::null_mut();
    // SAFETY: a reference created in this env by `to_js`, deleted once here;
    // a collected buffer gives null, which is skipped.
    unsafe {
        sys::napi_get_reference_value(env, weak, &mut array_buffer);
        if !array_buffer.is_null() {
            sys::napi_detach_arraybuffer(env, array_buffer);
        }
        sys::napi_delete_reference(env, weak);
    }
}

/// Detaches every view of an end (it closes or is freed).
pub(crate) fn detach_all(env: sys::napi_env, r: &mut Registered) {
    let holds: Vec<u32> = r.views.keys().copied().collect();
    for hold in holds {
        detach(env, r, hold);
    }
}

fn hold_of(got: &Got<View>) -> Option<u32> {
    match got {
        Got::Message(view) => Some(view.hold),
        _ => None,
    }
}

fn length(len: f64) -> Result<u64> {
    if (0.0..=2f64.powi(53)).contains(&len) && len.fract() == 0.0 {
        Ok(len as u64)
    } else {
        Err(ShmqError::invalid(format!("{len} is not a byte length"))).js()
    }
}

/// Claims a slot for `len` bytes written in place: its Buffer (hold number
/// in `meta[0]`), or GET_EMPTY when the queue is full, GET_CLOSED when no
/// receiver is left.
#[napi(ts_return_type = "number | Buffer")]
pub fn end_reserve(env: &Env, id: u32, len: f64, mut meta: Bytes) -> Result<Unknown<'_>> {
    let len = length(len)?;
    with_end(id, |r| {
        let got = r.end.reserve(len).js()?;
        let hold = hold_of(&got);
        // SAFETY: the wrapper passes a Uint32Array it does not touch meanwhile.
        let out = to_js(env, r, got, unsafe { meta.elements::<u32>() });
        if let (Err(_), Some(hold)) = (&out, hold) {
            // No view was made: give the slot back rather than hold it for ever.
            let _ = r.end.abort(hold);
        }
        out
    })
}

/// Publishes reservation `hold` (its first `len` bytes) with codec `tag`.
#[napi]
pub fn end_commit(env: &Env, id: u32, hold: u32, len: f64, tag: u32) -> Result<()> {
    let len = length(len)?;
    with_end(id, |r| {
        detach(env.raw(), r, hold);
        r.end.commit(hold, len, tag).js()
    })
}

/// Gives reservation `hold` back unsent. Idempotent.
#[napi]
pub fn end_abort(env: &Env, id: u32, hold: u32) -> Result<()> {
    with_end(id, |r| {
        detach(env.raw(), r, hold);
        r.end.abort(hold).js()
    })
}

/// The next message in place: its Buffer (`[hold, tag]` in `meta`), or
/// GET_EMPTY / GET_CLOSED.
#[napi(ts_return_type = "number | Buffer")]
pub fn end_lease(env: &Env, id: u32, mut meta: Bytes) -> Result<Unknown<'_>> {
    with_end(id, |r| {
        let got = r.end.lease().js()?;
        let hold = hold_of(&got);
        // SAFETY: the wrapper passes a Uint32Array it does not touch meanwhile.
        let out = to_js(env, r, got, unsafe { meta.elements::<u32>() });
        if let (Err(_), Some(hold)) = (&out, hold) {
            let _ = r.end.release(hold);
        }
        out
    })
}

/// Ends lease `hold`. Idempotent.
#[napi]
pub fn end_release(env: &Env, id: u32, hold: u32) -> Result<()> {
    with_end(id, |r| {
        detach(env.raw(), r, hold);
        r.end.release(hold).js()
    })
}
