//! Zero-copy: shared memory handed to JS in place, as Buffers over a
//! reservation's or a lease's bytes, through raw N-API callbacks (as `hot`).
//!
//! A Buffer owns its hold. Its finalizer, which runs once the Buffer is
//! collected, ends the hold if nothing else did (a reservation or lease
//! collected unreleased), then drops its keep on the mapping, so no view
//! outlives its memory whatever order close, release and GC happen in. A
//! hold ended by a call (commit, abort, release, close) first detaches its
//! Buffer (byteLength 0): a late read sees nothing rather than another
//! message's bytes.
//!
//! Invariants:
//! - `Registered::views` has an entry for a hold exactly while the hold is
//!   open and its Buffer was handed out; each entry's serial is unique in
//!   the thread.
//! - A finalizer ends a hold only if that entry carries its own serial: an
//!   ended hold, a reused hold number, a freed or reused end number all fail
//!   the test, so a finalizer never ends another view's hold.
//! - Whoever removes a Buffer's `Owner` from `OWNERS` disposes of it, once:
//!   its finalizer or `make` (N-API failed) drops it, `detach_all` leaks a
//!   moved one (below).
//! - A hold whose ArrayBuffer someone else detached (`transfer()`, Node 21+:
//!   the memory lives on in an ArrayBuffer we cannot detach) is neither
//!   ended by release or abort nor committed: its finalizer ends it once that
//!   memory is collected. `close()` ends it regardless (see the README) but
//!   never unmaps its memory: its Owner is leaked.
//! - An end whose JS object is collected while views of its holds are
//!   reachable stays registered and open until the last is collected
//!   (`Registered::freed`), so those views keep their memory and slots.

use crate::hot::{call, check, to_u32};
use crate::protocol::{GET_CLOSED, GET_EMPTY};
use crate::{with_end, OrThrow, Registered, Result};
use napi::sys;
use shmq_core::end::{Got, Keep, View};
use shmq_core::ShmqError;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::ffi::c_void;
use std::ptr;

/// An open hold's Buffer: its serial and a weak reference to its ArrayBuffer.
pub(crate) struct Open {
    serial: u64,
    weak: sys::napi_ref,
}

/// What a Buffer's finalizer needs.
struct Owner {
    /// Held, never read: the mapping the Buffer points into.
    _keep: Keep,
    end: u32,
    hold: u32,
    lease: bool,
}

thread_local! {
    static SERIAL: Cell<u64> = const { Cell::new(0) };
    /// The Owners of the Buffers not finalized yet, by serial (a Buffer's
    /// finalizer hint is its serial).
    static OWNERS: RefCell<HashMap<u64, Owner>> = RefCell::new(HashMap::new());
    /// Each env's `held` array: the env, a strong reference, its data.
    static HELD: RefCell<Vec<(sys::napi_env, sys::napi_ref, *mut u32)>> =
        const { RefCell::new(Vec::new()) };
}

/// The Uint32Array where reserve and lease write `[hold, tag]` of the
/// Buffer they return; the wrapper reads it right after the call. One per
/// env (an addon loaded anew has its own), shared by the wrapper copies of
/// that env.
pub(crate) fn held(env: sys::napi_env) -> Result<sys::napi_value> {
    let mut array = ptr::null_mut();
    let known = HELD.with_borrow(|h| h.iter().find(|e| e.0 == env).map(|e| e.1));
    // SAFETY: N-API calls on the current env with out-pointers to locals; the
    // strong reference keeps the ArrayBuffer (and so `data`) alive for the
    // env's life, and only the wrapper, which never detaches it, sees it.
    unsafe {
        if let Some(strong) = known {
            check(sys::napi_get_reference_value(env, strong, &mut array))?;
            return Ok(array);
        }
        let (mut data, mut buffer, mut strong) =
            (ptr::null_mut(), ptr::null_mut(), ptr::null_mut());
        check(sys::napi_create_arraybuffer(env, 8, &mut data, &mut buffer))?;
        check(sys::napi_create_typedarray(
            env,
            sys::TypedarrayType::uint32_array,
            2,
            buffer,
            0,
            &mut array,
        ))?;
        check(sys::napi_create_reference(env, array, 1, &mut strong))?;
        HELD.with_borrow_mut(|h| h.push((env, strong, data.cast())));
    }
    Ok(array)
}

unsafe extern "C" fn finalize(env: sys::napi_env, _data: *mut c_void, hint: *mut c_void) {
    let serial = hint as u64;
    // Never unwinds into Node.
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        // Gone: `make` failed and dropped it. At thread teardown the map may
        // be gone too (its Owners with it).
        let Some(owner) = OWNERS
            .try_with(|o| o.try_borrow_mut().ok().and_then(|mut o| o.remove(&serial)))
            .ok()
            .flatten()
        else {
            return;
        };
        // An end closed or in use (at teardown) has no hold of this
        // Buffer's left to end.
        crate::try_with_end(owner.end, |r| {
            if r.views.get(&owner.hold).is_some_and(|o| o.serial == serial) {
                forget(env, r, owner.hold, false);
                let _ = end_hold(r, owner.hold, owner.lease);
            }
        });
        // Last: the mapping outlives the hold. (At env teardown Node runs
        // this while memory moved by transfer() into another thread may live
        // on; Node has detached our ArrayBuffer by then, so that case cannot
        // be told from an open view's, and only close() keeps it mapped.)
        drop(owner);
    }));
}

/// The Buffer of a view (`[hold, tag]` written to `held`), or the number
/// GET_EMPTY / GET_CLOSED. A view that cannot be handed out is given back.
fn to_js(
    env: sys::napi_env,
    r: &mut Registered,
    end: u32,
    got: Got<View>,
    lease: bool,
) -> Result<sys::napi_value> {
    let mut out = ptr::null_mut();
    let view = match got {
        Got::Message(view) => view,
        Got::Empty | Got::Closed => {
            let n = if matches!(got, Got::Empty) {
                GET_EMPTY
            } else {
                GET_CLOSED
            };
            // SAFETY: out-pointer to a local.
            check(unsafe { sys::napi_create_double(env, n, &mut out) })?;
            return Ok(out);
        }
    };
    let (hold, tag) = (view.hold, view.tag);
    let meta = HELD.with_borrow(|h| h.iter().find(|e| e.0 == env).map(|e| e.2));
    let made = meta
        .ok_or_else(|| ShmqError::invalid("hotPath was not called in this env"))
        .js()
        .and_then(|meta| make(env, r, end, view, lease, &mut out).map(|()| meta));
    match made {
        Ok(meta) => {
            // SAFETY: the live 2-element array `held` made for this env.
            unsafe { (*meta, *meta.add(1)) = (hold, tag) };
            Ok(out)
        }
        Err(e) => {
            // Nothing reached JS: give the hold back rather than keep it for
            // ever (a Buffer made but not returned is unreachable).
            forget(env, r, hold, false);
            let _ = end_hold(r, hold, lease);
            Err(e)
        }
    }
}

fn make(
    env: sys::napi_env,
    r: &mut Registered,
    end: u32,
    view: View,
    lease: bool,
    out: &mut sys::napi_value,
) -> Result<()> {
    let serial = SERIAL.get() + 1;
    SERIAL.set(serial);
    let (hold, len) = (view.hold, view.len);
    let owner = Owner {
        _keep: view.keep,
        end,
        hold,
        lease,
    };
    OWNERS.with_borrow_mut(|o| o.insert(serial, owner));
    // SAFETY: `view.ptr` points at `len` bytes of a mapping that the Owner
    // keeps alive until `finalize` (or the failure path below) removes it.
    let status = unsafe {
        sys::napi_create_external_buffer(
            env,
            len,
            view.ptr.cast(),
            Some(finalize),
            serial as *mut c_void,
            out,
        )
    };
    if status != sys::Status::napi_ok {
        // Node may have run the finalizer already (a length past
        // buffer.constants.MAX_LENGTH), may run it later, or never.
        OWNERS.with_borrow_mut(|o| o.remove(&serial));
        return Err(ShmqError::new(
            shmq_core::Code::Os,
            format!(
                "could not make a Buffer of {len} bytes over shared memory (N-API status {status})"
            ),
        ))
        .js();
    }
    let (mut array_buffer, mut weak) = (ptr::null_mut(), ptr::null_mut());
    // SAFETY: N-API calls on the Buffer just made, out-pointers to locals.
    unsafe {
        check(sys::napi_get_typedarray_info(
            env,
            *out,
            ptr::null_mut(),
            ptr::null_mut(),
            ptr::null_mut(),
            &mut array_buffer,
            ptr::null_mut(),
        ))?;
        check(sys::napi_create_reference(env, array_buffer, 0, &mut weak))?;
    }
    r.views.insert(hold, Open { serial, weak });
    Ok(())
}

/// Forgets the Buffer of `hold`, detaching it first if asked and it is
/// still reachable. False (and nothing forgotten) if asked to detach a
/// Buffer someone else detached: its memory may live on in another
/// ArrayBuffer, so the hold must wait for the finalizer.
fn forget(env: sys::napi_env, r: &mut Registered, hold: u32, detach: bool) -> bool {
    let Some(open) = r.views.get(&hold) else {
        return true;
    };
    let weak = open.weak;
    // SAFETY: a reference made in this env by `make`, deleted once below; a
    // collected ArrayBuffer gives null, which is skipped.
    unsafe {
        if detach {
            let mut array_buffer = ptr::null_mut();
            sys::napi_get_reference_value(env, weak, &mut array_buffer);
            if !array_buffer.is_null() {
                let mut moved = false;
                sys::napi_is_detached_arraybuffer(env, array_buffer, &mut moved);
                if moved {
                    return false;
                }
                sys::napi_detach_arraybuffer(env, array_buffer);
            }
        }
        sys::napi_delete_reference(env, weak);
    }
    r.views.remove(&hold);
    true
}

/// Ends a hold without detaching anything: releases a lease, aborts a reservation.
fn end_hold(r: &mut Registered, hold: u32, lease: bool) -> std::result::Result<(), ShmqError> {
    if lease {
        r.end.release(hold)
    } else {
        r.end.abort(hold)
    }
}

/// Detaches every Buffer of an end that closes, and forgets them all.
pub(crate) fn detach_all(env: sys::napi_env, r: &mut Registered) {
    let holds: Vec<u32> = r.views.keys().copied().collect();
    for hold in holds {
        if !forget(env, r, hold, true) {
            // Moved elsewhere (transfer()): the end closes and ends the hold
            // regardless, but the memory stays mapped for the process's life.
            if let Some(open) = r.views.get(&hold) {
                let serial = open.serial;
                let _ = OWNERS.try_with(|o| {
                    o.try_borrow_mut()
                        .ok()
                        .and_then(|mut o| o.remove(&serial))
                        .map(std::mem::forget)
                });
            }
            forget(env, r, hold, false);
        }
    }
}

unsafe fn to_length(env: sys::napi_env, value: sys::napi_value) -> Result<u64> {
    let mut len = f64::NAN;
    // SAFETY: out-pointer to a local (a non-number leaves it NaN).
    unsafe { sys::napi_get_value_double(env, value, &mut len) };
    if (0.0..=2f64.powi(53)).contains(&len) && len.fract() == 0.0 {
        Ok(len as u64)
    } else {
        Err(ShmqError::invalid(format!("{len} is not a byte length"))).js()
    }
}

unsafe fn undefined(env: sys::napi_env) -> Result<sys::napi_value> {
    let mut v = ptr::null_mut();
    // SAFETY: out-pointer to a local.
    check(unsafe { sys::napi_get_undefined(env, &mut v) })?;
    Ok(v)
}

/// `reserve(id, len)`: a writable Buffer of `len` bytes in a slot (`held[0]`
/// its hold), or GET_EMPTY when the queue is full, GET_CLOSED when no
/// receiver is left.
pub(crate) unsafe extern "C" fn reserve(
    env: sys::napi_env,
    info: sys::napi_callback_info,
) -> sys::napi_value {
    // SAFETY: called by Node with a valid env and callback info.
    unsafe {
        call(env, info, |[id, len]| {
            let (id, len) = (to_u32(env, id)?, to_length(env, len)?);
            with_end(id, |r| {
                let got = r.end.reserve(len).js()?;
                to_js(env, r, id, got, false)
            })
        })
    }
}

/// `commit(id, hold, len, tag)`: publishes reservation `hold` (its first
/// `len` bytes) with codec `tag`.
pub(crate) unsafe extern "C" fn commit(
    env: sys::napi_env,
    info: sys::napi_callback_info,
) -> sys::napi_value {
    // SAFETY: called by Node with a valid env and callback info.
    unsafe {
        call(env, info, |[id, hold, len, tag]| {
            let (id, hold, len, tag) = (
                to_u32(env, id)?,
                to_u32(env, hold)?,
                to_length(env, len)?,
                to_u32(env, tag)?,
            );
            with_end(id, |r| {
                if !forget(env, r, hold, true) {
                    return Err(ShmqError::invalid(
                        "this reservation's memory was moved to another ArrayBuffer (transfer()), so it \
                         cannot be committed; it is aborted once that ArrayBuffer is collected",
                    ))
                    .js();
                }
                r.end.commit(hold, len, tag).js()
            })?;
            undefined(env)
        })
    }
}

/// `abort(id, hold)` and `release(id, hold)`: end reservation or lease
/// `hold` (idempotent), unless its memory was moved (see `forget`).
unsafe fn finish(
    env: sys::napi_env,
    info: sys::napi_callback_info,
    lease: bool,
) -> sys::napi_value {
    // SAFETY: called by Node with a valid env and callback info.
    unsafe {
        call(env, info, |[id, hold]| {
            let (id, hold) = (to_u32(env, id)?, to_u32(env, hold)?);
            with_end(id, |r| {
                if forget(env, r, hold, true) {
                    end_hold(r, hold, lease).js()?;
                }
                Ok(())
            })?;
            undefined(env)
        })
    }
}

/// `abort(id, hold)`: gives reservation `hold` back unsent.
pub(crate) unsafe extern "C" fn abort(
    env: sys::napi_env,
    info: sys::napi_callback_info,
) -> sys::napi_value {
    // SAFETY: as `finish`.
    unsafe { finish(env, info, false) }
}

/// `release(id, hold)`: gives lease `hold` back to the sender(s).
pub(crate) unsafe extern "C" fn release(
    env: sys::napi_env,
    info: sys::napi_callback_info,
) -> sys::napi_value {
    // SAFETY: as `finish`.
    unsafe { finish(env, info, true) }
}

/// `lease(id)`: the next message in place as a Buffer (`[hold, tag]` in
/// `held`), or GET_EMPTY / GET_CLOSED.
pub(crate) unsafe extern "C" fn lease(
    env: sys::napi_env,
    info: sys::napi_callback_info,
) -> sys::napi_value {
    // SAFETY: called by Node with a valid env and callback info.
    unsafe {
        call(env, info, |[id]| {
            let id = to_u32(env, id)?;
            with_end(id, |r| {
                let got = r.end.lease().js()?;
                to_js(env, r, id, got, true)
            })
        })
    }
}
