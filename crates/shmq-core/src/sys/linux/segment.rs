//! Named shared-memory segments in /dev/shm: create (with the space reserved
//! up front, written in full under a temporary name, then renamed), open
//! (only our own regular 0600 files, never through a symlink), map, unlink.

use crate::error::{Code, ShmqError};
pub use crate::sys::names::{parse_queue_name, payload_name, queue_name, random_id};
use crate::sys::Mapping;
use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use rustix::fs::{FallocateFlags, FileType, Mode, OFlags, RenameFlags, CWD};
use rustix::io::Errno;
use rustix::mm::{MapFlags, ProtFlags};
use std::ffi::c_void;
use std::ptr::NonNull;
use std::time::{Duration, SystemTime};

/// Where the segments live.
pub const DIR: &str = "/dev/shm";

/// A mapped shared-memory file. Unmapped and closed on drop; never unlinked on drop.
pub struct Segment {
    ptr: NonNull<u8>,
    len: usize,
    fd: OwnedFd,
}

// SAFETY: the mapping is plain shared memory; all concurrent access to it goes
// through atomics or through regions owned by one party at a time.
unsafe impl Send for Segment {}
// SAFETY: as above.
unsafe impl Sync for Segment {}

const OWNER_ONLY: Mode = Mode::RUSR.union(Mode::WUSR);

fn path(name: &str) -> String {
    format!("{DIR}/{name}")
}

const OPEN_FLAGS: OFlags = OFlags::RDWR
    .union(OFlags::NOFOLLOW)
    .union(OFlags::CLOEXEC)
    .union(OFlags::NONBLOCK);

/// True if `st` is a file this user made for shmq: a regular file of ours
/// with mode 0600 (a symlink, another owner or another mode is foreign).
fn is_ours(st: &rustix::fs::Stat) -> bool {
    FileType::from_raw_mode(st.st_mode) == FileType::RegularFile
        && st.st_uid == rustix::process::geteuid().as_raw()
        && st.st_mode & 0o7777 == 0o600
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
    /// Creates `name` with exactly `len` bytes reserved (fallocate, so a full
    /// /dev/shm fails here instead of raising SIGBUS later), mode 0600. The
    /// file is made under a temporary name, `init` fills it in, and only then
    /// does it appear under `name` (an atomic rename that never replaces).
    pub fn create(
        name: &str,
        len: usize,
        init: impl FnOnce(&Segment) -> Result<(), ShmqError>,
    ) -> Result<Segment, ShmqError> {
        let tmp = path(&format!(".shmq-tmp-{:016x}", random_id()));
        let fd = rustix::fs::open(
            tmp.as_str(),
            OPEN_FLAGS | OFlags::CREATE | OFlags::EXCL,
            OWNER_ONLY,
        )
        .map_err(|e| os_error("creating", name, e))?;
        let made = (|| {
            // The umask may have narrowed the mode; make 0600 explicit.
            rustix::fs::fchmod(&fd, OWNER_ONLY).map_err(|e| os_error("creating", name, e))?;
            rustix::fs::fallocate(&fd, FallocateFlags::empty(), 0, len as u64).map_err(
                |e| match e {
                    Errno::NOSPC | Errno::NOMEM | Errno::FBIG => no_space(name, len),
                    e => os_error("sizing", name, e),
                },
            )?;
            let seg = Self::map(fd, len)?;
            init(&seg)?;
            rustix::fs::renameat_with(
                CWD,
                tmp.as_str(),
                CWD,
                path(name).as_str(),
                RenameFlags::NOREPLACE,
            )
            .map_err(|e| os_error("naming", name, e))?;
            Ok(seg)
        })();
        if made.is_err() {
            let _ = rustix::fs::unlink(tmp.as_str());
        }
        made
    }

    /// Opens an existing `name` and maps all of it. Refuses anything that is
    /// not our own regular 0600 file (`ERR_SHMQ_INVALID`).
    pub fn open(name: &str) -> Result<Segment, ShmqError> {
        let fd = open_ours(name)?;
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
        Self::map(fd, len)
    }

    /// A second open file description of the same file (OFD locks taken
    /// through it conflict with those taken through this one), opened by
    /// `name` and checked to be the same file.
    pub fn twin(&self, name: &str) -> Result<OwnedFd, ShmqError> {
        let fd = open_ours(name)?;
        let (a, b) = (
            rustix::fs::fstat(&fd).map_err(|e| os_error("inspecting", name, e))?,
            rustix::fs::fstat(&self.fd).map_err(|e| os_error("inspecting", name, e))?,
        );
        if (a.st_dev, a.st_ino) != (b.st_dev, b.st_ino) {
            return Err(ShmqError::new(
                Code::NotFound,
                format!("{name} was replaced while it was being opened"),
            ));
        }
        Ok(fd)
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// False once the file has been unlinked (the last end left).
    pub fn is_linked(&self) -> bool {
        rustix::fs::fstat(&self.fd).is_ok_and(|st| st.st_nlink > 0)
    }

    fn map(fd: OwnedFd, len: usize) -> Result<Segment, ShmqError> {
        // SAFETY: a fresh shared mapping of an fd we own; no Rust object aliases it yet.
        let ptr = unsafe {
            rustix::mm::mmap(
                std::ptr::null_mut(),
                len,
                ProtFlags::READ | ProtFlags::WRITE,
                MapFlags::SHARED,
                &fd,
                0,
            )
        }
        .map_err(|e| ShmqError::new(Code::Os, format!("mmap of {len} bytes failed: {e}")))?;
        let ptr = NonNull::new(ptr.cast::<u8>())
            .ok_or_else(|| ShmqError::new(Code::Os, "mmap returned null".into()))?;
        Ok(Segment { ptr, len, fd })
    }

    /// Removes the name if it is ours (see `is_ours`); existing mappings stay
    /// valid. Missing names are fine. In /dev/shm (sticky) nobody else can
    /// replace our file between the check and the unlink.
    pub fn unlink(name: &str) {
        let p = path(name);
        if rustix::fs::lstat(p.as_str()).is_ok_and(|st| is_ours(&st)) {
            let _ = rustix::fs::unlink(p.as_str());
        }
    }
}

/// Messages from this size up are copied in and out of shared memory in
/// chunks, each dropped from this process's page tables once copied: the data
/// stays in the file, and a process's RSS grows by its own copy only (not by
/// the message again as mapped shared pages).
pub const RELEASE_PAGES_FROM: usize = 64 << 20;
const CHUNK: usize = 8 << 20;

/// Copies `len` bytes from `src` to `dst`; from RELEASE_PAGES_FROM bytes up,
/// chunk by chunk, dropping the pages of whichever side is shared (`shared`
/// is `src` or `dst`) from this process's page tables after each chunk.
///
/// # Safety
/// The caller guarantees `src` and `dst` are valid for `len` bytes,
/// do not overlap, and that `shared` is one of them, inside a MAP_SHARED
/// mapping of a file (where MADV_DONTNEED only unmaps: the data stays).
pub unsafe fn copy_releasing(src: *const u8, dst: *mut u8, len: usize, shared: *const u8) {
    if len < RELEASE_PAGES_FROM {
        // SAFETY: see the function's contract.
        unsafe { std::ptr::copy_nonoverlapping(src, dst, len) };
        return;
    }
    let page = rustix::param::page_size();
    let mut done = 0;
    while done < len {
        let n = CHUNK.min(len - done);
        // SAFETY: done + n <= len, so both ranges are in bounds.
        unsafe { std::ptr::copy_nonoverlapping(src.add(done), dst.add(done), n) };
        // Whole pages inside this chunk of the shared side only.
        let start = (shared as usize + done).next_multiple_of(page);
        let end = (shared as usize + done + n) & !(page - 1);
        if end > start {
            // SAFETY: [start, end) lies inside the shared mapping (see the
            // contract); DONTNEED on a shared file mapping keeps the data.
            let _ = unsafe {
                rustix::mm::madvise(
                    start as *mut c_void,
                    end - start,
                    rustix::mm::Advice::LinuxDontNeed,
                )
            };
        }
        done += n;
    }
}

impl Mapping for Segment {
    fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    fn len(&self) -> usize {
        self.len
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

/// Opens `name` read-write without following a symlink, and checks that it
/// is ours.
fn open_ours(name: &str) -> Result<OwnedFd, ShmqError> {
    let fd =
        rustix::fs::open(path(name).as_str(), OPEN_FLAGS, Mode::empty()).map_err(|e| match e {
            Errno::LOOP => foreign(name),
            e => os_error("opening", name, e),
        })?;
    let st = rustix::fs::fstat(&fd).map_err(|e| os_error("inspecting", name, e))?;
    if is_ours(&st) {
        Ok(fd)
    } else {
        Err(foreign(name))
    }
}

fn foreign(name: &str) -> ShmqError {
    ShmqError::invalid(format!(
        "{DIR}/{name} is not a shmq segment of this user (another owner, another mode than 0600, \
         or not a regular file): refusing to open it"
    ))
}

/// Stat of `name` without following a symlink, if it is ours.
pub fn stat_ours(name: &str) -> Option<Stat> {
    let st = rustix::fs::lstat(path(name).as_str())
        .ok()
        .filter(is_ours)?;
    let modified = std::time::UNIX_EPOCH + Duration::from_secs(st.st_mtime.max(0) as u64);
    Some(Stat {
        size: st.st_size as u64,
        age: SystemTime::now()
            .duration_since(modified)
            .unwrap_or_default(),
    })
}

/// What `stat_ours` tells of a segment.
pub struct Stat {
    pub size: u64,
    /// Since it last changed size or mode.
    pub age: Duration,
}

/// The names in the segment directory (anyone's: check with `stat_ours`).
pub fn list() -> Vec<String> {
    std::fs::read_dir(DIR).map_or_else(
        |_| Vec::new(),
        |dir| {
            dir.flatten()
                .filter_map(|e| e.file_name().into_string().ok())
                .collect()
        },
    )
}

/// An open segment file (for locks), besides the one a `Segment` holds.
pub type Fd = OwnedFd;

/// Test only: what the end of a process does to `seg` and `probe` as the
/// kernel sees it (their locks go); nothing else is cleaned up.
///
/// # Safety
/// Neither is used or dropped afterwards (the caller leaks them).
#[cfg(test)]
pub unsafe fn kill(seg: &Segment, probe: &Fd) {
    use rustix::fd::AsRawFd;
    // SAFETY: see the function's contract; the mapping holds the file too,
    // so the locks go only with both.
    unsafe {
        libc::munmap(seg.as_ptr().cast(), seg.len());
        libc::close(seg.fd().as_raw_fd());
        libc::close(probe.as_raw_fd());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_is_owner_only_and_sized() {
        let name = queue_name(random_id());
        let seg = Segment::create(&name, 12345, |_| Ok(())).unwrap();
        assert_eq!(seg.len(), 12345);
        let meta = std::fs::metadata(format!("/dev/shm/{name}")).unwrap();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        assert_eq!(meta.len(), 12345);
        assert!(
            Segment::create(&name, 10, |_| Ok(())).is_err(),
            "EXCL must refuse a second create"
        );
        let again = Segment::open(&name).unwrap();
        assert_eq!(again.len(), 12345);
        Segment::unlink(&name);
        assert_eq!(Segment::open(&name).err().unwrap().code, Code::NotFound);
    }

    /// Symlinks and files of another mode are never opened or removed.
    #[test]
    fn foreign_entries_are_refused() {
        let name = queue_name(random_id());
        let seg = Segment::create(&name, 4096, |_| Ok(())).unwrap();
        let link = queue_name(random_id());
        std::os::unix::fs::symlink(path(&name), path(&link)).unwrap();
        assert_eq!(Segment::open(&link).err().unwrap().code, Code::Invalid);
        Segment::unlink(&link);
        assert!(
            std::fs::symlink_metadata(path(&link)).is_ok(),
            "not ours: kept"
        );
        std::fs::remove_file(path(&link)).unwrap();
        rustix::fs::fchmod(seg.fd(), Mode::from_raw_mode(0o644)).unwrap();
        assert_eq!(Segment::open(&name).err().unwrap().code, Code::Invalid);
        assert!(stat_ours(&name).is_none());
        std::fs::remove_file(path(&name)).unwrap();
    }

    #[test]
    fn names_round_trip_and_fit_macos() {
        let id = random_id();
        assert_eq!(parse_queue_name(&queue_name(id)), Some(id));
        assert_eq!(payload_name(u64::MAX, u64::MAX).len(), 38);
        assert_eq!(parse_queue_name("shmq-XYZ"), None);
        assert_eq!(parse_queue_name("shmq-00000000000000000"), None);
        assert_eq!(parse_queue_name("../etc/passwd"), None);
    }

    #[test]
    fn at_checks_bounds_and_alignment() {
        let name = queue_name(random_id());
        let seg = Segment::create(&name, 64, |_| Ok(())).unwrap();
        Segment::unlink(&name);
        assert!(seg.at::<u64>(56).is_some());
        assert!(seg.at::<u64>(60).is_none());
        assert!(seg.at::<u64>(4).is_none());
        assert!(seg.at::<u64>(usize::MAX - 2).is_none());
        assert!(seg.bytes_at(64, 0).is_some());
        assert!(seg.bytes_at(64, 1).is_none());
    }
}
