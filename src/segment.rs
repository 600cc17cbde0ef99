//! Named POSIX shared-memory segments: create (with the space reserved up
//! front), open, map, unlink.

use crate::error::{Code, ShmqError};
use rustix::fd::OwnedFd;
use rustix::fs::{FallocateFlags, Mode};
use rustix::io::Errno;
use rustix::mm::{MapFlags, ProtFlags};
use rustix::shm;
use std::ffi::c_void;
use std::ptr::NonNull;

/// A mapped shared-memory object. Unmapped on drop; never unlinked on drop.
pub struct Segment {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is plain shared memory; all concurrent access to it goes
// through atomics or through regions owned by one party at a time.
unsafe impl Send for Segment {}
// SAFETY: as above.
unsafe impl Sync for Segment {}

const OWNER_ONLY: Mode = Mode::RUSR.union(Mode::WUSR);

fn shm_path(name: &str) -> String {
    format!("/{name}")
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

fn no_space(name: &str, len: usize) -> ShmqError {
    let (total, free) = rustix::fs::statvfs("/dev/shm")
        .map(|s| (s.f_blocks * s.f_frsize, s.f_bavail * s.f_frsize))
        .unwrap_or((0, 0));
    ShmqError::new(
        Code::NoSpace,
        format!(
            "not enough shared memory for {name} ({}): /dev/shm is {} with {} free. \
             Enlarge it (docker run --shm-size=1g, or mount -o remount,size=... /dev/shm), \
             use a smaller capacity or slotSize, or send smaller messages",
            mib(len as u64),
            mib(total),
            mib(free)
        ),
    )
}

fn os_error(what: &str, name: &str, e: Errno) -> ShmqError {
    match e {
        Errno::NOSPC | Errno::NOMEM => no_space(name, 0),
        Errno::NOENT => ShmqError::new(
            Code::NotFound,
            format!("shared memory {name} does not exist: the queue was closed by all its ends"),
        ),
        _ => ShmqError::new(Code::Os, format!("{what} {name} failed: {e}")),
    }
}

impl Segment {
    /// Creates `/name` with exactly `len` bytes reserved (fallocate, so a full
    /// /dev/shm fails here instead of raising SIGBUS later), mode 0600.
    pub fn create(name: &str, len: usize) -> Result<Segment, ShmqError> {
        let path = shm_path(name);
        let fd = shm::open(
            path.as_str(),
            shm::OFlags::CREATE | shm::OFlags::EXCL | shm::OFlags::RDWR,
            OWNER_ONLY,
        )
        .map_err(|e| os_error("creating", name, e))?;
        let sized = (|| {
            // The umask may have narrowed the mode; it can never have widened it,
            // but make 0600 explicit regardless.
            rustix::fs::fchmod(&fd, OWNER_ONLY)?;
            rustix::fs::fallocate(&fd, FallocateFlags::empty(), 0, len as u64)
        })();
        if let Err(e) = sized {
            let _ = shm::unlink(path.as_str());
            return Err(match e {
                Errno::NOSPC | Errno::NOMEM | Errno::FBIG => no_space(name, len),
                e => os_error("sizing", name, e),
            });
        }
        Self::map(&fd, len).inspect_err(|_| {
            let _ = shm::unlink(path.as_str());
        })
    }

    /// Opens an existing `/name` and maps all of it.
    pub fn open(name: &str) -> Result<Segment, ShmqError> {
        let fd = shm::open(shm_path(name).as_str(), shm::OFlags::RDWR, Mode::empty())
            .map_err(|e| os_error("opening", name, e))?;
        let size = rustix::fs::fstat(&fd)
            .map_err(|e| os_error("inspecting", name, e))?
            .st_size;
        let len = usize::try_from(size).unwrap_or(0);
        if len == 0 {
            return Err(ShmqError::new(
                Code::Invalid,
                format!("{name} is empty: not a shmq segment"),
            ));
        }
        Self::map(&fd, len)
    }

    fn map(fd: &OwnedFd, len: usize) -> Result<Segment, ShmqError> {
        // SAFETY: a fresh shared mapping of an fd we own; no Rust object aliases it yet.
        let ptr = unsafe {
            rustix::mm::mmap(
                std::ptr::null_mut(),
                len,
                ProtFlags::READ | ProtFlags::WRITE,
                MapFlags::SHARED,
                fd,
                0,
            )
        }
        .map_err(|e| ShmqError::new(Code::Os, format!("mmap of {len} bytes failed: {e}")))?;
        let ptr = NonNull::new(ptr.cast::<u8>())
            .ok_or_else(|| ShmqError::new(Code::Os, "mmap returned null".into()))?;
        Ok(Segment { ptr, len })
    }

    /// Removes the name; existing mappings stay valid. Missing names are fine.
    pub fn unlink(name: &str) {
        let _ = shm::unlink(shm_path(name).as_str());
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    /// A `#[repr(C)]` struct at `offset`, checked to lie inside the mapping and
    /// be aligned. Shared memory is always initialized (zero-filled) bytes.
    pub fn at<T>(&self, offset: usize) -> Option<&T> {
        let end = offset.checked_add(std::mem::size_of::<T>())?;
        if end > self.len || !offset.is_multiple_of(std::mem::align_of::<T>()) {
            return None;
        }
        // SAFETY: in bounds and aligned (checked above); the types used here are
        // made of integers and atomics, valid for any bit pattern.
        Some(unsafe { &*self.ptr.as_ptr().add(offset).cast::<T>() })
    }

    /// Raw pointer to `len` bytes at `offset`, or None if out of bounds.
    pub fn bytes_at(&self, offset: usize, len: usize) -> Option<*mut u8> {
        let end = offset.checked_add(len)?;
        if end > self.len {
            return None;
        }
        // SAFETY: offset <= len of the mapping, checked above.
        Some(unsafe { self.ptr.as_ptr().add(offset) })
    }
}

impl Drop for Segment {
    fn drop(&mut self) {
        // SAFETY: ptr/len describe a mapping made by `map` and not unmapped since.
        unsafe {
            let _ = rustix::mm::munmap(self.ptr.as_ptr().cast::<c_void>(), self.len);
        }
    }
}

/// 64 random bits for a queue id.
pub fn random_id() -> u64 {
    let mut buf = [0u8; 8];
    let mut filled = 0;
    while filled < buf.len() {
        match rustix::rand::getrandom(&mut buf[filled..], rustix::rand::GetRandomFlags::empty()) {
            Ok(n) => filled += n,
            Err(Errno::INTR) => {}
            // getrandom cannot fail on Linux >= 3.17 once the pool is seeded;
            // mix time and pid so a name is still unlikely to collide.
            Err(_) => {
                let t = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_nanos() as u64)
                    .unwrap_or(0);
                return t ^ (u64::from(std::process::id()) << 32);
            }
        }
    }
    u64::from_le_bytes(buf)
}

pub fn queue_name(id: u64) -> String {
    format!("shmq-{id:016x}")
}

pub fn payload_name(id: u64, n: u32) -> String {
    format!("shmq-{id:016x}-{n:x}")
}

/// Parses a handle `shmq-<16 hex>` into the queue id.
pub fn parse_queue_name(handle: &str) -> Option<u64> {
    let hex = handle.strip_prefix("shmq-")?;
    if hex.len() != 16
        || !hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return None;
    }
    u64::from_str_radix(hex, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_is_owner_only_and_sized() {
        let name = queue_name(random_id());
        let seg = Segment::create(&name, 12345).unwrap();
        assert_eq!(seg.len(), 12345);
        let meta = std::fs::metadata(format!("/dev/shm/{name}")).unwrap();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        assert_eq!(meta.len(), 12345);
        assert!(
            Segment::create(&name, 10).is_err(),
            "EXCL must refuse a second create"
        );
        let again = Segment::open(&name).unwrap();
        assert_eq!(again.len(), 12345);
        Segment::unlink(&name);
        assert_eq!(Segment::open(&name).err().unwrap().code, Code::NotFound);
    }

    #[test]
    fn names_round_trip_and_fit_macos() {
        let id = random_id();
        assert_eq!(parse_queue_name(&queue_name(id)), Some(id));
        assert!(payload_name(u64::MAX, u32::MAX).len() <= 30);
        assert_eq!(parse_queue_name("shmq-XYZ"), None);
        assert_eq!(parse_queue_name("shmq-00000000000000000"), None);
        assert_eq!(parse_queue_name("../etc/passwd"), None);
    }

    #[test]
    fn at_checks_bounds_and_alignment() {
        let name = queue_name(random_id());
        let seg = Segment::create(&name, 64).unwrap();
        Segment::unlink(&name);
        assert!(seg.at::<u64>(56).is_some());
        assert!(seg.at::<u64>(60).is_none());
        assert!(seg.at::<u64>(4).is_none());
        assert!(seg.at::<u64>(usize::MAX - 2).is_none());
        assert!(seg.bytes_at(64, 0).is_some());
        assert!(seg.bytes_at(64, 1).is_none());
    }
}
