//! `put` and `get` as raw N-API callbacks. napi-rs's generated wrappers open
//! a borrow-tracking scope per call (a lock and allocations); at a few
//! hundred nanoseconds per message that was a third of the cost. These two
//! read their arguments and build their results with plain N-API calls.

use crate::{views, OrThrow, Result};
use napi::sys;
use shmq_core::{Code, ShmqError};
use std::cell::RefCell;
use std::ffi::{c_char, CString};
use std::ptr;

type Callback = unsafe extern "C" fn(sys::napi_env, sys::napi_callback_info) -> sys::napi_value;

/// An object of raw functions: `put`, `putString`, `get` (see lib.rs for
/// what they do) and the zero-copy ones of `views`, with `views`'s `held`.
pub fn functions(env: sys::napi_env) -> Result<sys::napi_value> {
    let mut object = ptr::null_mut();
    // SAFETY: N-API calls on the current env with out-pointers to locals.
    unsafe {
        check(sys::napi_create_object(env, &mut object))?;
        for (name, callback) in [
            (c"put", put as Callback),
            (c"putString", put_string as Callback),
            (c"get", get as Callback),
            (c"lastTag", last_tag as Callback),
            (c"event", event as Callback),
            (c"spin", spin as Callback),
            (c"reserve", views::reserve as Callback),
            (c"lease", views::lease as Callback),
            (c"commit", views::commit as Callback),
            (c"abort", views::abort as Callback),
            (c"release", views::release as Callback),
        ] {
            let mut f = ptr::null_mut();
            check(sys::napi_create_function(
                env,
                name.as_ptr(),
                name.count_bytes() as isize,
                Some(callback),
                ptr::null_mut(),
                &mut f,
            ))?;
            check(sys::napi_set_named_property(env, object, name.as_ptr(), f))?;
        }
        check(sys::napi_set_named_property(
            env,
            object,
            c"held".as_ptr(),
            views::held(env)?,
        ))?;
    }
    Ok(object)
}

pub(crate) fn check(status: sys::napi_status) -> Result<()> {
    if status == sys::Status::napi_ok {
        Ok(())
    } else {
        Err(ShmqError::new(
            Code::Os,
            format!("N-API call failed with status {status}"),
        ))
        .js()
    }
}

/// Runs `body` with up to N arguments; errors and panics become JS
/// exceptions (a panic never crosses into Node).
pub(crate) unsafe fn call<const N: usize>(
    env: sys::napi_env,
    info: sys::napi_callback_info,
    body: impl FnOnce([sys::napi_value; N]) -> Result<sys::napi_value>,
) -> sys::napi_value {
    let mut argc = N;
    let mut argv = [ptr::null_mut(); N];
    // SAFETY: argv has room for argc values.
    let status = unsafe {
        sys::napi_get_cb_info(
            env,
            info,
            &mut argc,
            argv.as_mut_ptr(),
            ptr::null_mut(),
            ptr::null_mut(),
        )
    };
    let result = if status != sys::Status::napi_ok {
        Err(ShmqError::invalid("bad arguments")).js()
    } else {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| body(argv)))
            .unwrap_or_else(|_| Err(ShmqError::invalid("internal error (panic) in shmq")).js())
    };
    match result {
        Ok(value) => value,
        Err(e) => {
            let code = CString::new(e.status.as_str()).unwrap_or_default();
            let message = CString::new(e.reason.replace('\0', " ")).unwrap_or_default();
            // SAFETY: NUL-terminated code and message on the current env.
            unsafe { sys::napi_throw_error(env, code.as_ptr(), message.as_ptr()) };
            ptr::null_mut()
        }
    }
}

pub(crate) unsafe fn to_u32(env: sys::napi_env, value: sys::napi_value) -> Result<u32> {
    let mut n = 0u32;
    // SAFETY: out-pointer to a local.
    check(unsafe { sys::napi_get_value_uint32(env, value, &mut n) })?;
    Ok(n)
}

pub(crate) unsafe fn from_u32(env: sys::napi_env, n: u32) -> Result<sys::napi_value> {
    let mut v = ptr::null_mut();
    // SAFETY: out-pointer to a local.
    check(unsafe { sys::napi_create_uint32(env, n, &mut v) })?;
    Ok(v)
}

/// `lastTag(id)`: the tag of the last message `get` returned as a Buffer.
unsafe extern "C" fn last_tag(
    env: sys::napi_env,
    info: sys::napi_callback_info,
) -> sys::napi_value {
    // SAFETY: called by Node with a valid env and callback info.
    unsafe {
        call(env, info, |[id]| {
            let tag = crate::with_end(to_u32(env, id)?, |r| Ok(r.last_tag))?;
            from_u32(env, tag)
        })
    }
}

/// `event(id, which)`: the items (0) or space (1) event counter now (0 once closed).
unsafe extern "C" fn event(env: sys::napi_env, info: sys::napi_callback_info) -> sys::napi_value {
    // SAFETY: called by Node with a valid env and callback info.
    unsafe {
        call(env, info, |[id, which]| {
            let which = crate::which(to_u32(env, which)?);
            let n = crate::with_end(to_u32(env, id)?, |r| Ok(r.end.event(which)))?;
            from_u32(env, n)
        })
    }
}

/// `spin(id, which, seen)`: the first step of a wait (`End::spin_first`, a
/// short spin while recent waits were short); true if the event moved past `seen`.
unsafe extern "C" fn spin(env: sys::napi_env, info: sys::napi_callback_info) -> sys::napi_value {
    // SAFETY: called by Node with a valid env and callback info.
    unsafe {
        call(env, info, |[id, which, seen]| {
            let which = crate::which(to_u32(env, which)?);
            let seen = to_u32(env, seen)?;
            let moved = crate::with_end(to_u32(env, id)?, |r| Ok(r.end.spin_first(which, seen)))?;
            let mut v = ptr::null_mut();
            check(sys::napi_get_boolean(env, moved, &mut v))?;
            Ok(v)
        })
    }
}

/// `put(id, tag, bytes)`: PUT_DONE / PUT_FULL / PUT_CLOSED.
unsafe extern "C" fn put(env: sys::napi_env, info: sys::napi_callback_info) -> sys::napi_value {
    // SAFETY: called by Node with a valid env and callback info.
    unsafe {
        call(env, info, |[id, tag, data]| {
            let (id, tag) = (to_u32(env, id)?, to_u32(env, tag)?);
            let bytes =
                <crate::Bytes as napi::bindgen_prelude::FromNapiValue>::from_napi_value(env, data)
                    .js()?;
            from_u32(env, crate::put_bytes(id, tag, bytes.as_slice())?)
        })
    }
}

thread_local! {
    /// Reused buffer for the UTF-8 bytes of string messages.
    static UTF8: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// `putString(id, string)`: as `put`, for a string (sent as UTF-8).
unsafe extern "C" fn put_string(
    env: sys::napi_env,
    info: sys::napi_callback_info,
) -> sys::napi_value {
    // SAFETY: called by Node with a valid env and callback info.
    unsafe {
        call(env, info, |[id, value, _]| {
            let id = to_u32(env, id)?;
            let mut len = 0usize;
            check(sys::napi_get_value_string_utf8(
                env,
                value,
                ptr::null_mut(),
                0,
                &mut len,
            ))?;
            UTF8.with_borrow_mut(|buf| {
                buf.resize(len + 1, 0);
                let mut written = 0usize;
                check(sys::napi_get_value_string_utf8(
                    env,
                    value,
                    buf.as_mut_ptr().cast::<c_char>(),
                    buf.len(),
                    &mut written,
                ))?;
                from_u32(
                    env,
                    crate::put_bytes(id, shmq_core::codec::TAG_STRING, &buf[..written])?,
                )
            })
        })
    }
}

/// `get(id, scratch, at)`: see `hot_path` in lib.rs for the results.
unsafe extern "C" fn get(env: sys::napi_env, info: sys::napi_callback_info) -> sys::napi_value {
    // SAFETY: called by Node with a valid env and callback info.
    unsafe {
        call(env, info, |[id, scratch, at]| {
            let id = to_u32(env, id)?;
            let scratch = <crate::Bytes as napi::bindgen_prelude::FromNapiValue>::from_napi_value(
                env, scratch,
            )
            .js()?;
            let at = (to_u32(env, at)? as usize).min(scratch.len);
            let room = (scratch.len - at).min(crate::protocol::POOLED_MAX as usize);
            let mut out = ptr::null_mut();
            let status = crate::get_message(
                id,
                |message| match message {
                    crate::Message::Number(n) => sys::napi_create_double(env, n, &mut out),
                    crate::Message::Small { tag, bytes } => {
                        // Small messages fit by construction (len <= room), and
                        // at <= scratch.len keeps the pointer in bounds.
                        let len = room.min(bytes.len());
                        if len > 0 {
                            ptr::copy_nonoverlapping(
                                bytes.as_ptr(),
                                scratch.ptr.cast_mut().add(at),
                                len,
                            );
                        }
                        sys::napi_create_double(
                            env,
                            bytes.len() as f64 * f64::from(crate::protocol::TAG_RADIX)
                                + f64::from(tag),
                            &mut out,
                        )
                    }
                    crate::Message::Text(text) => sys::napi_create_string_utf8(
                        env,
                        text.as_ptr().cast(),
                        text.len() as isize,
                        &mut out,
                    ),
                    crate::Message::Large(bytes) => {
                        let mut data = ptr::null_mut();
                        let status = sys::napi_create_buffer(env, bytes.len(), &mut data, &mut out);
                        if status == sys::Status::napi_ok {
                            // `bytes` lie in a shared mapping (a payload segment).
                            shmq_core::sys::segment::copy_releasing(
                                bytes.as_ptr(),
                                data.cast::<u8>(),
                                bytes.len(),
                                bytes.as_ptr(),
                            );
                        }
                        status
                    }
                },
                room,
            )?;
            check(status).map_err(|_| {
                napi::Error::new(Code::Os, "could not create the received value".to_owned())
            })?;
            Ok(out)
        })
    }
}
