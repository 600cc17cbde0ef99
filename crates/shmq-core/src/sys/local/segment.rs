//! Segments as heap blocks in a process-wide table (see `mod.rs`).

use crate::error::{Code, ShmqError};
pub use crate::sys::names::{parse_queue_name, payload_name, queue_name, random_id};
use crate::sys::Mapping;
use std::alloc::Layout;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

/// Where messages say segments live.
pub const DIR: &str = "(process-local)";

/// A named block: its memory, whether a name still leads to it, its locks.
pub(super) struct File {
    ptr: *mut u8,
    len: usize,
    linked: AtomicBool,
    created: Instant,
    /// (start, len, owner description).
    pub(super) locks: Mutex<Vec<(u64, u64, u64)>>,
}

// SAFETY: the block is plain memory; all concurrent access to it goes
// through atomics or through regions owned by one party at a time, as for
// shared memory.
unsafe impl Send for File {}
// SAFETY: as above.
unsafe impl Sync for File {}

const ALIGN: usize = 4096;

impl Drop for File {
    fn drop(&mut self) {
        // SAFETY: allocated in `create` with this layout, freed once.
        unsafe {
            std::alloc::dealloc(self.ptr, Layout::from_size_align_unchecked(self.len, ALIGN))
        };
    }
}

fn files() -> MutexGuard<'static, HashMap<String, Arc<File>>> {
    static FILES: OnceLock<Mutex<HashMap<String, Arc<File>>>> = OnceLock::new();
    FILES
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner())
}

/// An open description of a file: locks taken through it are its own.
pub struct Fd {
    pub(super) file: Arc<File>,
    pub(super) id: u64,
}

impl Fd {
    fn open(file: Arc<File>) -> Fd {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        Fd {
            file,
            id: NEXT.fetch_add(1, SeqCst),
        }
    }
}

impl Drop for Fd {
    /// Closing releases the description's locks.
    fn drop(&mut self) {
        let mut locks = self.file.locks.lock().unwrap_or_else(|p| p.into_inner());
        locks.retain(|&(_, _, owner)| owner != self.id);
    }
}

pub struct Segment {
    fd: Fd,
}

fn not_found(name: &str) -> ShmqError {
    ShmqError::new(
        Code::NotFound,
        format!("shared memory {name} does not exist: the queue was closed by all its ends"),
    )
}

impl Segment {
    /// Creates `name` with `len` zeroed bytes; `init` runs before the name
    /// leads to it.
    pub fn create(
        name: &str,
        len: usize,
        init: impl FnOnce(&Segment) -> Result<(), ShmqError>,
    ) -> Result<Segment, ShmqError> {
        let layout = Layout::from_size_align(len.max(1), ALIGN).map_err(|_| {
            ShmqError::new(Code::NoSpace, format!("{name}: {len} bytes is too large"))
        })?;
        // SAFETY: a non-zero size.
        let ptr = unsafe { std::alloc::alloc_zeroed(layout) };
        if ptr.is_null() {
            return Err(ShmqError::new(
                Code::NoSpace,
                format!("no memory for {name}"),
            ));
        }
        let file = Arc::new(File {
            ptr,
            len: layout.size(),
            linked: AtomicBool::new(false),
            created: Instant::now(),
            locks: Mutex::new(Vec::new()),
        });
        let seg = Segment { fd: Fd::open(file) };
        init(&seg)?;
        let mut files = files();
        if files.contains_key(name) {
            return Err(ShmqError::new(
                Code::Os,
                format!("naming {name} failed: it exists"),
            ));
        }
        seg.fd.file.linked.store(true, SeqCst);
        files.insert(name.to_owned(), seg.fd.file.clone());
        Ok(seg)
    }

    pub fn open(name: &str) -> Result<Segment, ShmqError> {
        let file = files().get(name).cloned().ok_or_else(|| not_found(name))?;
        Ok(Segment { fd: Fd::open(file) })
    }

    /// A second description of the same file, opened by `name`.
    pub fn twin(&self, name: &str) -> Result<Fd, ShmqError> {
        let file = files().get(name).cloned().ok_or_else(|| not_found(name))?;
        if !Arc::ptr_eq(&file, &self.fd.file) {
            return Err(ShmqError::new(
                Code::NotFound,
                format!("{name} was replaced while it was being opened"),
            ));
        }
        Ok(Fd::open(file))
    }

    pub fn fd(&self) -> &Fd {
        &self.fd
    }

    pub fn is_linked(&self) -> bool {
        self.fd.file.linked.load(SeqCst)
    }

    pub fn unlink(name: &str) {
        if let Some(file) = files().remove(name) {
            file.linked.store(false, SeqCst);
        }
    }
}

impl Mapping for Segment {
    fn as_ptr(&self) -> *mut u8 {
        self.fd.file.ptr
    }

    fn len(&self) -> usize {
        self.fd.file.len
    }
}

/// What `stat_ours` tells of a segment.
pub struct Stat {
    pub size: u64,
    pub age: Duration,
}

pub fn stat_ours(name: &str) -> Option<Stat> {
    files().get(name).map(|f| Stat {
        size: f.len as u64,
        age: f.created.elapsed(),
    })
}

pub fn list() -> Vec<String> {
    files().keys().cloned().collect()
}

/// Copies `len` bytes (no pages to release: the memory is the process's).
///
/// # Safety
/// `src` and `dst` are valid for `len` bytes and do not overlap.
pub unsafe fn copy_releasing(src: *const u8, dst: *mut u8, len: usize, _shared: *const u8) {
    // SAFETY: see the function's contract.
    unsafe { std::ptr::copy_nonoverlapping(src, dst, len) };
}

/// Test only: what the end of a process does to `seg` and `probe` (their
/// locks go); the memory stays, as the file's would.
///
/// # Safety
/// Neither is used or dropped afterwards (the caller leaks them).
#[cfg(test)]
pub unsafe fn kill(seg: &Segment, probe: &Fd) {
    let mut locks = seg.fd.file.locks.lock().unwrap_or_else(|p| p.into_inner());
    locks.retain(|&(_, _, owner)| owner != seg.fd.id && owner != probe.id);
}
