//! shmq for Python: shmq-core bound with PyO3. Blocking calls release the
//! GIL while they wait; values are encoded with the tags every binding
//! shares (`shmq_core::codec`), so a Node.js process can be the other end.

use pyo3::exceptions::{PyBrokenPipeError, PyOSError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyByteArray, PyBytes, PyString};
use shmq_core::codec::{ndarray_header_len, TAG_BUFFER, TAG_NDARRAY, TAG_PICKLE, TAG_STRING};
use shmq_core::waiter::Which;
use shmq_core::{sync, Code, End, Got, Put, Role, ShmqError};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

pyo3::create_exception!(
    _shmq,
    ForeignValueError,
    PyTypeError,
    "A message only another runtime can decode (a V8-serialized value); it was consumed."
);
pyo3::create_exception!(
    _shmq,
    ShmqOSError,
    PyOSError,
    "An operating-system failure, a queue that is gone, or shared memory that is not a shmq queue."
);

fn error(py: Python<'_>, e: ShmqError) -> PyErr {
    let message = format!("{} ({})", e.message, e.code.as_str());
    match e.code {
        Code::Closed => PyBrokenPipeError::new_err(message),
        Code::TooLarge | Code::Invalid => PyValueError::new_err(message),
        Code::ForeignValue => ForeignValueError::new_err(message),
        Code::Full => queue_error(py, "Full", message),
        Code::Empty => queue_error(py, "Empty", message),
        _ => ShmqOSError::new_err(message),
    }
}

/// `queue.Full` / `queue.Empty`, as `multiprocessing` and py-sharedmemory raise.
fn queue_error(py: Python<'_>, name: &str, message: String) -> PyErr {
    match py.import("queue").and_then(|m| m.getattr(name)) {
        Ok(class) => PyErr::from_type(class.downcast_into().expect("a class"), message),
        Err(e) => e,
    }
}

fn closed() -> PyErr {
    PyBrokenPipeError::new_err("this end is closed")
}

/// A deadline from `block` and `timeout` (seconds, None = no limit).
fn deadline(block: bool, timeout: Option<f64>) -> PyResult<Option<Instant>> {
    match (block, timeout) {
        (false, _) => Ok(Some(Instant::now())),
        (true, None) => Ok(None),
        (true, Some(t)) if t >= 0.0 => Ok(Duration::try_from_secs_f64(t)
            .ok()
            .and_then(|d| Instant::now().checked_add(d))),
        (true, Some(_)) => Err(PyValueError::new_err(
            "'timeout' must be a non-negative number",
        )),
    }
}

/// In a forked child (`os.register_at_fork`): every inherited end, and every
/// lingering queue, is the parent's. Let go of the copies at once, without
/// touching the queues (see `End::forsake`): the copied descriptors would
/// otherwise keep the parent's locks, so a dead parent would look alive.
/// Each end re-attaches by handle at its first use in the child.
///
/// Safe to lock every end here: an end's Mutex is only ever held by a thread
/// that also holds the GIL (waits run without either), and the thread that
/// forked held the GIL.
#[pyfunction]
fn _after_fork_in_child() {
    let open: Vec<Arc<Inner>> = OPEN
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .filter_map(std::sync::Weak::upgrade)
        .collect();
    for inner in open {
        let mut state = inner.state.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(inherited) = state.end.take() {
            inherited.forsake();
            state.reattach = true;
        }
    }
    shmq_core::end::forsake_lingering();
}

/// Every end this process opened, so the interpreter's exit closes them
/// (the last end out removes the queue) and releases lingering queues.
static OPEN: Mutex<Vec<std::sync::Weak<Inner>>> = Mutex::new(Vec::new());

#[pyfunction]
fn _close_all_at_exit() {
    let open = std::mem::take(&mut *OPEN.lock().unwrap_or_else(|p| p.into_inner()));
    for inner in open.iter().filter_map(std::sync::Weak::upgrade) {
        inner.close();
    }
    shmq_core::end::release_lingering(true);
}

struct State {
    /// None once closed, or forsaken in a forked child (then `reattach`).
    end: Option<End>,
    reattach: bool,
}

/// One end, shared by the Python object's methods. Its Mutex is held only
/// with the GIL held, never across a wait (see `_after_fork_in_child`).
struct Inner {
    state: Mutex<State>,
    handle: String,
    role: Role,
}

impl Inner {
    fn new(end: End, role: Role) -> Arc<Inner> {
        let inner = Arc::new(Inner {
            handle: end.info.handle.clone(),
            role,
            state: Mutex::new(State {
                end: Some(end),
                reattach: false,
            }),
        });
        let mut open = OPEN.lock().unwrap_or_else(|p| p.into_inner());
        open.retain(|w| w.strong_count() > 0);
        open.push(Arc::downgrade(&inner));
        inner
    }

    /// The end (re-attached at first use in a forked child); `closed` once
    /// closed.
    fn lock(&self, py: Python<'_>) -> PyResult<MutexGuard<'_, State>> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if state.reattach {
            state.reattach = false;
            state.end = Some(End::attach(&self.handle, self.role).map_err(|e| error(py, e))?);
        }
        Ok(state)
    }

    /// Runs `attempt` until it gives a value, waiting for `which` between
    /// tries with the GIL and the end's lock released; `timed_out` when the
    /// deadline passes.
    fn retry<T>(
        &self,
        py: Python<'_>,
        which: Which,
        deadline: Option<Instant>,
        timed_out: Code,
        mut attempt: impl FnMut(&mut End) -> Result<Option<T>, ShmqError>,
    ) -> PyResult<T> {
        loop {
            let (seen, queue) = {
                let mut state = self.lock(py)?;
                let end = state.end.as_mut().ok_or_else(closed)?;
                let seen = end.event(which);
                if let Some(value) = attempt(end).map_err(|e| error(py, e))? {
                    return Ok(value);
                }
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    let what = if timed_out == Code::Full {
                        "no space became free in time"
                    } else {
                        "no message arrived in time"
                    };
                    return Err(error(py, ShmqError::new(timed_out, what.into())));
                }
                // The core's spin policy (a short spin while recent waits
                // were short), with the GIL: at most tens of microseconds.
                if end.spin_first(which, seen) {
                    continue;
                }
                (seen, end.queue().ok().cloned())
            };
            let Some(queue) = queue else { continue };
            // Wait with the GIL and the lock released: other threads run,
            // and a fork meanwhile copies no held lock.
            py.allow_threads(|| {
                // One slice at most, so signals (Ctrl-C) are seen.
                if let Some(slice) = sync::next_slice(deadline, Duration::from_millis(100)) {
                    queue.wait_slice(shmq_core::waiter::event(&queue, which), seen, slice);
                }
            });
            py.check_signals()?;
        }
    }

    fn closed(&self) -> bool {
        let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.end.is_none() && !state.reattach
    }

    fn close(&self) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.reattach = false;
        if let Some(mut end) = state.end.take() {
            end.close();
        }
    }
}

/// Element tags 1..=11 (`TYPED_ARRAYS`): NumPy dtype and struct format.
const ELEMENTS: [(&str, &str); 11] = [
    ("<u1", "B"),
    ("<u1", "B"),
    ("<i1", "b"),
    ("<u2", "H"),
    ("<i2", "h"),
    ("<u4", "I"),
    ("<i4", "i"),
    ("<f4", "f"),
    ("<f8", "d"),
    ("<i8", "q"),
    ("<u8", "Q"),
];

/// A NumPy array as an ndarray message (`TAG_NDARRAY`).
struct NdArray<'py> {
    header: Vec<u8>,
    /// Address and length of its C-contiguous elements...
    address: usize,
    len: usize,
    /// ...which this array holds.
    _array: Bound<'py, PyAny>,
}

/// `value` as an ndarray message; None if it is not a NumPy array, or has a
/// dtype no typed array has (bool, complex, big-endian, records: those are
/// pickled).
fn numpy_parts<'py>(py: Python<'py>, value: &Bound<'py, PyAny>) -> PyResult<Option<NdArray<'py>>> {
    // Only if NumPy is loaded (an ndarray cannot exist otherwise), and only
    // for exactly numpy.ndarray: a subclass (a masked array, a matrix) would
    // lose what makes it one, so it is pickled.
    let Ok(numpy) = py.import("sys")?.getattr("modules")?.get_item("numpy") else {
        return Ok(None);
    };
    let Ok(ndarray) = numpy.getattr("ndarray") else {
        return Ok(None); // None, or a module still being imported
    };
    if !value.get_type().is(&ndarray) {
        return Ok(None);
    }
    let array = numpy.call_method1("ascontiguousarray", (value,))?;
    let dtype: String = array.getattr("dtype")?.getattr("str")?.extract()?;
    let dtype = dtype.replace('|', "<");
    let Some(element) = ELEMENTS
        .iter()
        .skip(2)
        .position(|(d, _)| *d == dtype)
        .map(|i| i + 3)
        .or((dtype == "<u1").then_some(1))
    else {
        return Ok(None);
    };
    let shape: Vec<u64> = array.getattr("shape")?.extract()?;
    let mut header = Vec::with_capacity(ndarray_header_len(shape.len()));
    header.extend_from_slice(&(element as u32).to_le_bytes());
    header.extend_from_slice(&(shape.len() as u32).to_le_bytes());
    for d in &shape {
        header.extend_from_slice(&d.to_le_bytes());
    }
    let interface = array.getattr("__array_interface__")?;
    let address: usize = interface.get_item("data")?.get_item(0)?.extract()?;
    let len: usize = array.getattr("nbytes")?.extract()?;
    Ok(Some(NdArray {
        header,
        address,
        len,
        _array: array,
    }))
}

/// A value as a message: its tag, and a Python object whose bytes are the
/// message (the value itself for `bytes`: no copy before the one into
/// shared memory). str is sent as UTF-8, anything else pickled (protocol 5).
fn encode<'py>(py: Python<'py>, value: &Bound<'py, PyAny>) -> PyResult<(u32, Bound<'py, PyAny>)> {
    if value.is_instance_of::<PyBytes>() {
        return Ok((TAG_BUFFER, value.clone()));
    }
    if let Ok(b) = value.downcast::<PyByteArray>() {
        // A copy: the caller's bytearray may be resized by another thread
        // while this put waits (the GIL is released then).
        // SAFETY: the GIL is held and no Python code runs while it is read.
        return Ok((
            TAG_BUFFER,
            PyBytes::new(py, unsafe { b.as_bytes() }).into_any(),
        ));
    }
    if value.is_instance_of::<PyString>() {
        // str.encode, not the value's own (a subclass may override it): one copy.
        let utf8 = py
            .get_type::<PyString>()
            .call_method1("encode", (value, "utf-8"))?;
        return Ok((TAG_STRING, utf8));
    }
    if value.is_instance_of::<pyo3::types::PyMemoryView>() {
        return Ok((TAG_BUFFER, value.call_method0("tobytes")?));
    }
    Ok((
        TAG_PICKLE,
        py.import("pickle")?.call_method1("dumps", (value, 5))?,
    ))
}

/// The bytes of what `encode` returned.
fn bytes_of<'a>(obj: &'a Bound<'_, PyAny>) -> &'a [u8] {
    match obj.downcast::<PyBytes>() {
        Ok(b) => b.as_bytes(),
        // SAFETY: a bytearray (encode returns bytes or bytearray); the GIL is
        // held and no Python code runs while the slice is used (one copy
        // into shared memory), so nothing resizes it meanwhile.
        Err(_) => obj
            .downcast::<PyByteArray>()
            .map_or(&[], |b| unsafe { b.as_bytes() }),
    }
}

/// What `get` builds while the message's slot is held: the final value for
/// bytes and str (one copy), else its bytes, decoded after the slot is freed
/// (unpickling may run any Python code).
enum Taken {
    Value(PyObject),
    Later(u32, Py<PyBytes>),
}

fn take(py: Python<'_>, tag: u32, bytes: &[u8]) -> PyResult<Taken> {
    Ok(match tag {
        TAG_STRING => Taken::Value(
            PyString::new(py, std::str::from_utf8(bytes)?)
                .into_any()
                .unbind(),
        ),
        TAG_BUFFER | 1 | 2 | 12 | 13 => Taken::Value(new_bytes(py, bytes)?.into_any().unbind()),
        _ => Taken::Later(tag, new_bytes(py, bytes)?.unbind()),
    })
}

/// A bytes object copied from shared memory (large ones without keeping the
/// shared pages mapped, see `copy_releasing`).
fn new_bytes<'py>(py: Python<'py>, bytes: &[u8]) -> PyResult<Bound<'py, PyBytes>> {
    // Uninitialized, then one copy (PyBytes::new_with zero-fills first: a
    // second pass over fresh memory, measured at a third of a 16 MiB get).
    // SAFETY: a NULL source asks CPython for an uninitialized bytes object of
    // that length (we fill all of it before anyone sees it).
    let raw =
        unsafe { pyo3::ffi::PyBytes_FromStringAndSize(std::ptr::null(), bytes.len() as isize) };
    // SAFETY: a new reference, or NULL with an exception set (taken as the error).
    let object = unsafe { Bound::from_owned_ptr_or_err(py, raw)? };
    // SAFETY: `object` is a bytes object of bytes.len() bytes nobody else
    // sees yet; `bytes` lies in a shared mapping (a slot or a payload
    // segment) this end holds.
    unsafe {
        let out = pyo3::ffi::PyBytes_AsString(raw).cast::<u8>();
        shmq_core::sys::segment::copy_releasing(bytes.as_ptr(), out, bytes.len(), bytes.as_ptr());
    }
    Ok(object.downcast_into::<PyBytes>()?)
}

/// A value from a message's tag and bytes (those `take` leaves for later).
fn decode(py: Python<'_>, tag: u32, bytes: &Bound<'_, PyBytes>) -> PyResult<PyObject> {
    // NumPy only for arrays (importing it is slow, and may be under way in
    // another thread).
    let numpy = || py.import("numpy").ok();
    match tag {
        TAG_PICKLE => Ok(py.import("pickle")?.call_method1("loads", (bytes,))?.unbind()),
        // A typed array: the 1-D NumPy array of its dtype (a memoryview of
        // its format without NumPy).
        3..=11 => array(py, numpy(), tag, bytes, 0, None),
        TAG_NDARRAY => {
            let b = bytes.as_bytes();
            let word = |at: usize| b.get(at..at + 4).map(|w| u32::from_le_bytes(w.try_into().unwrap_or_default()));
            let (Some(element), Some(ndim)) = (word(0), word(4)) else {
                return Err(PyValueError::new_err("an ndarray message is shorter than its header"));
            };
            let start = ndarray_header_len(ndim as usize);
            let shape: Option<Vec<u64>> = (0..ndim as usize)
                .map(|d| b.get(8 + 8 * d..16 + 8 * d).map(|w| u64::from_le_bytes(w.try_into().unwrap_or_default())))
                .collect();
            match shape {
                Some(shape) if (1..=11).contains(&element) && start <= b.len() => {
                    array(py, numpy(), element, bytes, start, Some(shape))
                }
                _ => Err(PyValueError::new_err("an ndarray message has a bad header")),
            }
        }
        _ => Err(ForeignValueError::new_err(
            "the message is a value serialized by V8 (a Node.js object), which only Node.js can decode; it was consumed",
        )),
    }
}

/// The elements of `bytes[start..]` (element tag `element`) as a NumPy
/// array of `shape` (1-D if None), or a memoryview of that format and shape.
fn array(
    py: Python<'_>,
    numpy: Option<Bound<'_, PyModule>>,
    element: u32,
    bytes: &Bound<'_, PyBytes>,
    start: usize,
    shape: Option<Vec<u64>>,
) -> PyResult<PyObject> {
    let (dtype, format) = ELEMENTS[element as usize - 1];
    let Some(np) = numpy else {
        // One cast from the bytes to the format and shape (memoryview does
        // not cast between two non-byte formats); zero-size N-d stays 1-D.
        let view = py
            .import("builtins")?
            .getattr("memoryview")?
            .call1((bytes,))?;
        let view = view.get_item(pyo3::types::PySlice::new(py, start as isize, isize::MAX, 1))?;
        return Ok(match shape {
            Some(shape) if shape.len() > 1 && !shape.contains(&0) => {
                view.call_method1("cast", (format, shape))?
            }
            _ => view.call_method1("cast", (format,))?,
        }
        .unbind());
    };
    let kwargs = pyo3::types::PyDict::new(py);
    kwargs.set_item("dtype", dtype)?;
    kwargs.set_item("offset", start)?;
    let flat = np.call_method("frombuffer", (bytes,), Some(&kwargs))?;
    Ok(match shape {
        Some(shape) => flat.call_method1("reshape", (shape,))?,
        None => flat,
    }
    .unbind())
}

/// The two ends share everything but their put and get methods.
macro_rules! end_class {
    ($(#[$doc:meta])* $name:ident, $role:expr, { $($methods:tt)* }) => {
        $(#[$doc])*
        #[pyclass(module = "shmq._shmq")]
        struct $name {
            inner: Arc<Inner>,
        }

        impl $name {
            fn new(end: End) -> Self {
                $name { inner: Inner::new(end, $role) }
            }
        }

        #[pymethods]
        impl $name {
            /// Opens the queue named by `handle` (from either end, in any
            /// process or runtime) as this kind of end.
            #[staticmethod]
            fn attach(py: Python<'_>, handle: &str) -> PyResult<Self> {
                Ok(Self::new(End::attach(handle, $role).map_err(|e| error(py, e))?))
            }

            /// The queue's name: pass it to another process and attach it there.
            #[getter]
            fn handle(&self) -> &str {
                &self.inner.handle
            }

            #[getter]
            fn closed(&self) -> bool {
                self.inner.closed()
            }

            fn close(&self) {
                self.inner.close();
            }

            fn __enter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
                slf
            }

            fn __exit__(&self, _t: PyObject, _v: PyObject, _tb: PyObject) {
                self.close();
            }

            /// Pickles to its handle: `multiprocessing` children attach the queue.
            fn __reduce__(slf: &Bound<'_, Self>) -> PyResult<(PyObject, (String,))> {
                let attach = slf.getattr("attach")?.unbind();
                Ok((attach, (slf.borrow().inner.handle.clone(),)))
            }

            fn __repr__(&self) -> String {
                format!("{}({:?})", stringify!($name), self.inner.handle)
            }

            $($methods)*
        }

        impl Drop for $name {
            fn drop(&mut self) {
                self.inner.close();
            }
        }
    };
}

fn no_receiver() -> ShmqError {
    ShmqError::new(Code::Closed, "no receiver is left on this queue".into())
}

end_class!(
    /// The sending end of a queue.
    SharedMemorySender,
    Role::Sender,
    {
    /// Enqueues `obj`; waits for space (GIL released) unless `block` is
    /// false; raises `queue.Full` after `timeout` seconds.
    #[pyo3(signature = (obj, block = true, timeout = None))]
    fn put(
        &self,
        py: Python<'_>,
        obj: &Bound<'_, PyAny>,
        block: bool,
        timeout: Option<f64>,
    ) -> PyResult<()> {
        let deadline = deadline(block, timeout)?;
        // bytes and str (the common case) skip the NumPy lookup.
        let raw = obj.is_instance_of::<PyBytes>() || obj.is_instance_of::<PyString>();
        if let Some(nd) = if raw { None } else { numpy_parts(py, obj)? } {
            let (header, address, len) = (&nd.header, nd.address, nd.len);
            let total = (header.len() + len) as u64;
            return self
                .inner
                .retry(py, Which::Space, deadline, Code::Full, |end| {
                    let view = match end.reserve(total)? {
                        Got::Message(view) => view,
                        Got::Empty => return Ok(None),
                        Got::Closed => return Err(no_receiver()),
                    };
                    // SAFETY: the reservation holds `total` writable bytes; the
                    // elements are `len` bytes at `address`, C-contiguous, in the
                    // array `nd` keeps alive, and no Python code runs meanwhile.
                    unsafe {
                        std::ptr::copy_nonoverlapping(header.as_ptr(), view.ptr, header.len());
                        shmq_core::sys::segment::copy_releasing(
                            address as *const u8,
                            view.ptr.add(header.len()),
                            len,
                            view.ptr,
                        );
                    }
                    end.commit(view.hold, total, TAG_NDARRAY).map(Some)
                });
        }
        let (tag, message) = encode(py, obj)?;
        let bytes = bytes_of(&message);
        self.inner
            .retry(py, Which::Space, deadline, Code::Full, |end| {
                match end.put(tag, bytes)? {
                    Put::Done => Ok(Some(())),
                    Put::Full => Ok(None),
                    Put::Closed => Err(no_receiver()),
                }
            })
    }

    fn put_nowait(&self, py: Python<'_>, obj: &Bound<'_, PyAny>) -> PyResult<()> {
        self.put(py, obj, false, None)
    }

    /// Waits until a receiver has taken every message this sender put;
    /// False if `timeout` seconds pass first.
    #[pyo3(signature = (timeout = None))]
    fn wait_for_all_ack(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<bool> {
        let deadline = deadline(true, timeout)?;
        // A receiver taking a message bumps the space event.
        match self
            .inner
            .retry(py, Which::Space, deadline, Code::Full, |end| {
                Ok((end.unacked() == 0).then_some(()))
            }) {
            Ok(()) => Ok(true),
            Err(e) if e.get_type(py).name()? == "Full" => Ok(false),
            Err(e) => Err(e),
        }
    }
    }
);

end_class!(
    /// The receiving end of a queue.
    SharedMemoryReceiver,
    Role::Receiver,
    {
    /// The next message; waits (GIL released) unless `block` is false;
    /// raises `queue.Empty` after `timeout` seconds, `BrokenPipeError` once
    /// every sender has closed and the queue is drained.
    #[pyo3(signature = (block = true, timeout = None))]
    fn get(&self, py: Python<'_>, block: bool, timeout: Option<f64>) -> PyResult<PyObject> {
        let deadline = deadline(block, timeout)?;
        let taken =
            self.inner
                .retry(py, Which::Items, deadline, Code::Empty, |end| {
                    match end.get(|tag, bytes| take(py, tag, bytes))? {
                        Got::Message(m) => Ok(Some(m)),
                        Got::Empty => Ok(None),
                        Got::Closed => Err(ShmqError::new(
                            Code::Closed,
                            "every sender has closed and the queue is drained".into(),
                        )),
                    }
                })??;
        match taken {
            Taken::Value(value) => Ok(value),
            Taken::Later(tag, bytes) => decode(py, tag, bytes.bind(py)),
        }
    }

    fn get_nowait(&self, py: Python<'_>) -> PyResult<PyObject> {
        self.get(py, false, None)
    }
    }
);

/// Creates a queue in shared memory; returns its (sender, receiver).
#[pyfunction]
#[pyo3(signature = (capacity = shmq_core::layout::DEFAULT_CAPACITY, slot_size = shmq_core::layout::DEFAULT_SLOT_SIZE, max_message_size = 1u64 << 32))]
fn create_shared_memory_pair(
    py: Python<'_>,
    capacity: u32,
    slot_size: u32,
    max_message_size: u64,
) -> PyResult<(SharedMemorySender, SharedMemoryReceiver)> {
    let (mut tx, mut rx) =
        End::create_pair(capacity, slot_size, max_message_size).map_err(|e| error(py, e))?;
    // As in py-sharedmemory (and multiprocessing), both ends are real from
    // the start: a side stays open while the creator's end of it is open,
    // however late the other processes attach.
    tx.join()
        .and_then(|()| rx.join())
        .map_err(|e| error(py, e))?;
    Ok((SharedMemorySender::new(tx), SharedMemoryReceiver::new(rx)))
}

#[pymodule]
fn _shmq(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(create_shared_memory_pair, m)?)?;
    m.add_function(wrap_pyfunction!(_after_fork_in_child, m)?)?;
    m.add_function(wrap_pyfunction!(_close_all_at_exit, m)?)?;
    m.add_class::<SharedMemorySender>()?;
    m.add_class::<SharedMemoryReceiver>()?;
    m.add("ForeignValueError", m.py().get_type::<ForeignValueError>())?;
    m.add("ShmqOSError", m.py().get_type::<ShmqOSError>())?;
    Ok(())
}
