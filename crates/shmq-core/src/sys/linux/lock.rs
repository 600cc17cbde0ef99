//! Liveness by the kernel's word: open-file-description byte-range locks
//! (`F_OFD_SETLK`). A lock belongs to one open file description, so it
//! conflicts with locks taken through any other one (in this process too),
//! and the kernel drops it when the last descriptor closes: at `close()`, or
//! when the process dies, before it is a zombie. No pid, no `/proc`.

use rustix::fd::{AsFd, AsRawFd, BorrowedFd};
use rustix::io::Errno;

fn fcntl(
    fd: BorrowedFd<'_>,
    cmd: libc::c_int,
    kind: libc::c_short,
    start: u64,
    len: u64,
) -> Result<libc::flock, Errno> {
    let mut fl = libc::flock {
        l_type: kind,
        l_whence: libc::SEEK_SET as libc::c_short,
        l_start: start as libc::off_t,
        l_len: len as libc::off_t,
        // Must be 0 for the OFD commands.
        l_pid: 0,
    };
    loop {
        // SAFETY: fcntl with a lock command reads and writes the flock struct
        // we pass, which lives on this stack frame for the call.
        let r = unsafe { libc::fcntl(fd.as_raw_fd(), cmd, &mut fl as *mut libc::flock) };
        if r == 0 {
            return Ok(fl);
        }
        match Errno::from_raw_os_error(std::io::Error::last_os_error().raw_os_error().unwrap_or(0))
        {
            Errno::INTR => continue,
            e => return Err(e),
        }
    }
}

/// Takes a write lock on bytes `start..start + len` through `fd` without
/// waiting. `Ok(false)`: another open file description holds part of it.
pub fn try_lock(fd: impl AsFd, start: u64, len: u64) -> Result<bool, Errno> {
    match fcntl(
        fd.as_fd(),
        libc::F_OFD_SETLK,
        libc::F_WRLCK as libc::c_short,
        start,
        len,
    ) {
        Ok(_) => Ok(true),
        Err(Errno::AGAIN | Errno::ACCESS) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Drops this description's lock on `start..start + len`.
pub fn unlock(fd: impl AsFd, start: u64, len: u64) {
    // Unlocking cannot fail on a valid fd and range; nothing to do if it did.
    let _ = fcntl(
        fd.as_fd(),
        libc::F_OFD_SETLK,
        libc::F_UNLCK as libc::c_short,
        start,
        len,
    );
}

/// True if any other open file description holds a lock on part of
/// `start..start + len`. An error (which a valid fd never gives) counts as
/// held: a live end is never judged dead.
pub fn is_held(fd: impl AsFd, start: u64, len: u64) -> bool {
    match fcntl(
        fd.as_fd(),
        libc::F_OFD_GETLK,
        libc::F_WRLCK as libc::c_short,
        start,
        len,
    ) {
        Ok(fl) => fl.l_type != libc::F_UNLCK as libc::c_short,
        Err(_) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::segment::{queue_name, random_id, Segment};
    use rustix::fd::AsFd;

    /// Locks conflict across descriptions of one process, not within one;
    /// closing the description drops them.
    #[test]
    fn locks_belong_to_open_file_descriptions() {
        let name = queue_name(random_id());
        let seg = Segment::create(&name, 64, |_| Ok(())).unwrap();
        let other = seg.twin(&name).unwrap();
        assert!(try_lock(seg.fd(), 3, 1).unwrap());
        assert!(
            try_lock(seg.fd(), 3, 1).unwrap(),
            "same description: no conflict"
        );
        assert!(!try_lock(other.as_fd(), 0, 10).unwrap());
        assert!(is_held(other.as_fd(), 0, 10));
        assert!(!is_held(seg.fd(), 0, 10), "own locks never conflict");
        assert!(
            try_lock(other.as_fd(), 4, 1).unwrap(),
            "other bytes are free"
        );
        unlock(seg.fd(), 3, 1);
        assert!(!is_held(other.as_fd(), 3, 1));
        assert!(try_lock(seg.fd(), 3, 1).unwrap());
        drop(seg);
        assert!(!is_held(other.as_fd(), 0, 4), "closing drops the locks");
        Segment::unlink(&name);
    }
}
