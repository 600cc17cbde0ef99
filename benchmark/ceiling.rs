//! The native ceiling of a two-copy transport, for `bench.mjs`: two
//! processes, a 4-slot ring in shared memory, memcpy in, and memcpy out into
//! a buffer malloc'd per message and freed after use; both sides spin.
//!   shmq-ceiling <size in bytes> <messages>   prints {"size":…,"seconds":…,"messages":…}

use std::sync::atomic::{AtomicU64, Ordering::Acquire, Ordering::Release};

const SLOTS: usize = 4;

fn main() {
    let mut args = std::env::args()
        .skip(1)
        .map(|a| a.parse::<usize>().expect("a number"));
    let (size, count) = (args.next().unwrap_or(1 << 20), args.next().unwrap_or(1000));
    // Header: head and tail counters, one cache line each; then the slots.
    let len = 256 + SLOTS * size;
    // SAFETY: an anonymous shared mapping, inherited by the child of fork.
    let base = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    }
    .cast::<u8>();
    assert!(base as isize != -1, "mmap failed");
    // SAFETY: the first 256 bytes hold two aligned u64 counters (zeroed).
    let (head, tail) = unsafe {
        (
            &*base.cast::<AtomicU64>(),
            &*base.add(128).cast::<AtomicU64>(),
        )
    };
    // SAFETY: slot i lies inside the mapping.
    let slot = |i: usize| unsafe { base.add(256 + (i % SLOTS) * size) };

    // SAFETY: single-threaded here; the child only touches the mapping.
    if unsafe { libc::fork() } == 0 {
        let source = vec![0x5au8; size];
        for i in 0..count {
            while tail.load(Acquire) - head.load(Acquire) >= SLOTS as u64 {
                std::hint::spin_loop();
            }
            // SAFETY: the slot is free (the consumer has moved past it).
            unsafe { std::ptr::copy_nonoverlapping(source.as_ptr(), slot(i), size) };
            tail.store(i as u64 + 1, Release);
        }
        std::process::exit(0);
    }
    let mut sink = 0u8;
    let mut started = None;
    for i in 0..count {
        while tail.load(Acquire) <= i as u64 {
            std::hint::spin_loop();
        }
        if i == 0 {
            started = Some(std::time::Instant::now());
        }
        let mut out: Vec<u8> = Vec::with_capacity(size);
        // SAFETY: the slot holds a published message of `size` bytes, and
        // `out` has room for them.
        unsafe {
            std::ptr::copy_nonoverlapping(slot(i), out.as_mut_ptr(), size);
            out.set_len(size);
        }
        sink ^= out[size / 2];
        head.store(i as u64 + 1, Release);
        drop(out);
    }
    let seconds = started.map_or(0.0, |s| s.elapsed().as_secs_f64());
    // SAFETY: waits for the child started above.
    unsafe { libc::wait(std::ptr::null_mut()) };
    println!(
        r#"{{"size":{size},"seconds":{seconds},"messages":{},"sink":{sink}}}"#,
        count - 1
    );
}
