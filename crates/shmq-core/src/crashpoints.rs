//! Exhaustive crash-point tests of the ring and recovery protocol. A victim
//! end runs a script (put, get, join, leave, or a reap) and is stopped
//! after its k-th step, for every k: a step is each `crash_point!()`, placed
//! after every write to shared memory. Its "process" then dies as the kernel
//! sees it (its locks go, nothing is cleaned up), a survivor reaps it, and
//! the invariants of `layout.rs` are checked: nothing duplicated or torn, a
//! message lost only with the consumer that held it, per-sender order kept,
//! capacity fully restored, nothing left unacknowledged, and nothing left in
//! /dev/shm once the survivors close.

use crate::end::{End, Got, Put};
use crate::queue::{Queue, Role};
use std::cell::Cell;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::Arc;

thread_local! {
    /// Steps left before the crash (None: run to the end).
    static BUDGET: Cell<Option<u32>> = const { Cell::new(None) };
    static HITS: Cell<u32> = const { Cell::new(0) };
}

struct Crash;

pub fn hit() {
    HITS.set(HITS.get() + 1);
    match BUDGET.get() {
        Some(1) => {
            BUDGET.set(None);
            // resume_unwind: no panic hook, no noise.
            resume_unwind(Box::new(Crash));
        }
        Some(n) => BUDGET.set(Some(n - 1)),
        None => {}
    }
}

/// Runs `f`, crashing after step `k` (None: never). Returns f's result if it
/// finished, and how many steps it took.
fn run<R>(k: Option<u32>, f: impl FnOnce() -> R) -> (Option<R>, u32) {
    BUDGET.set(k);
    HITS.set(0);
    let r = catch_unwind(AssertUnwindSafe(f));
    BUDGET.set(None);
    let hits = HITS.get();
    match r {
        Ok(r) => (Some(r), hits),
        Err(e) if e.is::<Crash>() => (None, hits),
        Err(e) => resume_unwind(e),
    }
}

/// The end of a victim's process: its locks go; the rest is leaked as is.
fn kill(end: End) {
    end.queue().unwrap().kill();
    std::mem::forget(end);
}

/// Stops the victim: killed where it crashed, closed if it finished.
fn stop(victim: End, crashed: bool) {
    if crashed {
        kill(victim);
    } else {
        drop(victim);
    }
}

fn kill_queue(q: Arc<Queue>) {
    q.kill();
    std::mem::forget(q);
}

/// Message `id`: inline (16 bytes) if even, a payload segment (3000 bytes)
/// if odd, every byte derived from the id so a torn message shows.
fn message(id: u64) -> Vec<u8> {
    let len = if id.is_multiple_of(2) { 16 } else { 3000 };
    let mut m: Vec<u8> = (0..len).map(|i| (id as usize * 31 + i * 7) as u8).collect();
    m[..8].copy_from_slice(&id.to_le_bytes());
    m
}

fn decode(bytes: &[u8]) -> u64 {
    let id = u64::from_le_bytes(bytes[..8].try_into().unwrap());
    assert_eq!(bytes, &message(id)[..], "message {id} is torn");
    id
}

fn put(end: &mut End, id: u64) -> bool {
    matches!(end.put(0, &message(id)).unwrap(), Put::Done)
}

fn get(end: &mut End) -> Option<u64> {
    match end.get(|_, bytes| decode(bytes)).unwrap() {
        Got::Message(id) => Some(id),
        _ => None,
    }
}

const CAPACITY: u32 = 4;

/// The survivors: one sender and one receiver, each its own "process".
struct World {
    tx: End,
    rx: End,
    handle: String,
    /// Messages put and not yet taken, in order.
    expected: Vec<u64>,
    next_id: u64,
}

impl World {
    fn new() -> World {
        let (tx, rx) = End::create_pair(CAPACITY, 64, 1 << 20).unwrap();
        let handle = tx.info.handle.clone();
        let mut w = World {
            tx: End::attach(&handle, Role::Sender).unwrap(),
            rx: End::attach(&handle, Role::Receiver).unwrap(),
            handle,
            expected: Vec::new(),
            next_id: 1,
        };
        drop((tx, rx));
        // One inline and one payload message queued before the victim acts.
        w.put();
        w.put();
        w
    }

    fn put(&mut self) -> bool {
        let id = self.next_id;
        self.next_id += 1;
        let done = put(&mut self.tx, id);
        if done {
            self.expected.push(id);
        }
        done
    }

    /// Reaps the victim, then checks every invariant. `maybe_lost`: a
    /// message the victim may have taken with it; `maybe_sent`: one it may
    /// have published before it died.
    /// `check` after a receiver took `taken` and then stopped: the one
    /// after them, which it may have been reading when it died, may be lost.
    fn check_receiver(mut self, taken: &[u64], what: &str) {
        self.expected.retain(|id| !taken.contains(id));
        let reading: Vec<u64> = self.expected.iter().copied().take(1).collect();
        self.check(&reading, &[], what);
    }

    fn check(mut self, maybe_lost: &[u64], maybe_sent: &[u64], what: &str) {
        // A payload put before the reap may reuse a segment the victim had;
        // puts after it would overwrite that message if the reap freed it.
        self.put();
        self.rx.queue().unwrap().reap_dead();
        self.put();
        self.put();
        let mut got = Vec::new();
        while let Some(id) = get(&mut self.rx) {
            assert!(!got.contains(&id), "{what}: message {id} delivered twice");
            got.push(id);
        }
        let mine: Vec<u64> = got
            .iter()
            .copied()
            .filter(|id| self.expected.contains(id))
            .collect();
        let missing: Vec<u64> = self
            .expected
            .iter()
            .copied()
            .filter(|id| !got.contains(id))
            .collect();
        assert!(
            missing.iter().all(|id| maybe_lost.contains(id)) && missing.len() <= 1,
            "{what}: lost {missing:?} (only {maybe_lost:?} may be)"
        );
        assert!(
            mine.windows(2).all(|w| w[0] < w[1]),
            "{what}: order {mine:?}"
        );
        let foreign: Vec<&u64> = got
            .iter()
            .filter(|id| !self.expected.contains(id))
            .collect();
        assert!(
            foreign.iter().all(|id| maybe_sent.contains(id)),
            "{what}: unexpected {foreign:?}"
        );
        assert_eq!(self.tx.unacked(), 0, "{what}: acknowledgements");
        // Full capacity, exactly.
        self.expected.clear();
        for _ in 0..CAPACITY {
            assert!(self.put(), "{what}: capacity not restored");
        }
        assert!(!self.put(), "{what}: more than the capacity");
        for _ in 0..CAPACITY {
            assert!(get(&mut self.rx).is_some(), "{what}: capacity messages");
        }
        assert_eq!(get(&mut self.rx), None);
        let id = crate::sys::segment::parse_queue_name(&self.handle).unwrap();
        drop(self);
        assert!(
            Queue::open(&crate::sys::segment::queue_name(id)).is_err(),
            "{what}: queue left"
        );
        assert_eq!(
            crate::payload::list(id),
            Vec::<u64>::new(),
            "{what}: payload left"
        );
    }
}

/// Runs `case(Some(k))` for every step k the uncrashed `case(None)` takes.
fn every_step(name: &str, case: impl Fn(Option<u32>) -> u32) {
    let steps = case(None);
    assert!(steps > 0, "{name}: no crash points");
    for k in 1..=steps {
        case(Some(k));
    }
    println!("{name}: crashed after each of {steps} steps");
}

#[test]
fn a_sender_dies_at_any_step_of_put() {
    every_step("put", |k| {
        let w = World::new();
        let mut victim = End::attach(&w.handle, Role::Sender).unwrap();
        let (done, steps) = run(k, || {
            // A payload message, then an inline one.
            put(&mut victim, 1001);
            put(&mut victim, 1002);
        });
        stop(victim, done.is_none());
        w.check(&[], &[1001, 1002], &format!("put crash {k:?}"));
        steps
    });
}

#[test]
fn a_sender_dies_at_any_step_of_reserve_and_commit() {
    every_step("reserve", |k| {
        let w = World::new();
        let mut victim = End::attach(&w.handle, Role::Sender).unwrap();
        let (done, steps) = run(k, || {
            for id in [1001u64, 1002] {
                let bytes = message(id);
                let Got::Message(view) = victim.reserve(bytes.len() as u64).unwrap() else {
                    panic!("full")
                };
                assert_eq!(view.ptr as usize % 64, 0, "64-byte aligned");
                // SAFETY: the view holds bytes.len() writable bytes until commit.
                unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), view.ptr, bytes.len()) };
                crash_point!();
                victim.commit(view.hold, bytes.len() as u64, 0).unwrap();
            }
        });
        stop(victim, done.is_none());
        w.check(&[], &[1001, 1002], &format!("reserve crash {k:?}"));
        steps
    });
}

#[test]
fn a_receiver_dies_at_any_step_of_lease_and_release() {
    every_step("lease", |k| {
        let w = World::new();
        let mut victim = End::attach(&w.handle, Role::Receiver).unwrap();
        let taken = std::cell::RefCell::new(Vec::new());
        let (done, steps) = run(k, || {
            for _ in 0..2 {
                let Got::Message(view) = victim.lease().unwrap() else {
                    panic!("empty")
                };
                // SAFETY: the view holds view.len readable bytes until release.
                let id = decode(unsafe { std::slice::from_raw_parts(view.ptr, view.len) });
                crash_point!();
                victim.release(view.hold).unwrap();
                taken.borrow_mut().push(id);
            }
        });
        stop(victim, done.is_none());
        w.check_receiver(&taken.into_inner(), &format!("lease crash {k:?}"));
        steps
    });
}

#[test]
fn a_receiver_dies_at_any_step_of_get() {
    every_step("get", |k| {
        let w = World::new();
        let mut victim = End::attach(&w.handle, Role::Receiver).unwrap();
        let taken = std::cell::RefCell::new(Vec::new());
        let (done, steps) = run(k, || {
            // The inline message, then the payload one.
            for _ in 0..2 {
                let id = get(&mut victim).unwrap();
                taken.borrow_mut().push(id);
            }
        });
        stop(victim, done.is_none());
        w.check_receiver(&taken.into_inner(), &format!("get crash {k:?}"));
        steps
    });
}

#[test]
fn an_end_dies_at_any_step_of_join_or_leave() {
    for role in [Role::Sender, Role::Receiver] {
        every_step("join", |k| {
            let w = World::new();
            let q = Arc::new(Queue::open(&w.handle).unwrap());
            let (_, steps) = run(k, || q.join(role).unwrap());
            kill_queue(q);
            w.check(&[], &[], &format!("join crash {k:?}"));
            steps
        });
        every_step("leave", |k| {
            let w = World::new();
            let q = Arc::new(Queue::open(&w.handle).unwrap());
            let m = q.join(role).unwrap();
            let (_, steps) = run(k, || q.leave(&m));
            kill_queue(q);
            w.check(&[], &[], &format!("leave crash {k:?}"));
            steps
        });
    }
}

/// A reaper dies at any step of its recovery of a dead producer and of a
/// dead consumer; the next reaper finishes the job.
#[test]
fn a_reaper_dies_at_any_step_of_recovery() {
    for role in [Role::Sender, Role::Receiver] {
        every_step("reap", |k| {
            let mut w = World::new();
            let mut dead = End::attach(&w.handle, role).unwrap();
            let mut reading = Vec::new();
            // The dead end stops holding a slot: after its claim (step 1).
            let (_, _) = run(Some(1), || match role {
                Role::Sender => {
                    put(&mut dead, 1001);
                }
                Role::Receiver => {
                    get(&mut dead);
                }
            });
            if role == Role::Receiver {
                reading.push(w.expected.remove(0));
            }
            kill(dead);
            let reaper = Arc::new(Queue::open(&w.handle).unwrap());
            let (_, steps) = run(k, || reaper.reap_dead());
            kill_queue(reaper);
            w.check(&reading, &[], &format!("reap crash {k:?}"));
            steps
        });
    }
}

/// Many threads put and get while ends die at random steps and are
/// replaced: every message that was put completely arrives once, intact.
#[test]
fn random_crashes_under_load_lose_nothing_but_held_messages() {
    let w = World::new();
    let handle = w.handle.clone();
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let mut w = w;
    let mut lost_with_victims = 0;
    for round in 0..300u64 {
        let role = if next() % 2 == 0 {
            Role::Sender
        } else {
            Role::Receiver
        };
        let mut victim = End::attach(&handle, role).unwrap();
        let k = 1 + (next() % 12) as u32;
        let id = 10_000 + round;
        let (done, _) = run(Some(k), || match role {
            Role::Sender => put(&mut victim, id).then_some(id),
            Role::Receiver => get(&mut victim),
        });
        match (role, done) {
            (Role::Receiver, Some(Some(taken))) => w.expected.retain(|&e| e != taken),
            (Role::Receiver, None) => lost_with_victims += 1,
            (Role::Sender, Some(Some(sent))) => w.expected.push(sent),
            _ => {}
        }
        stop(victim, done.is_none());
        w.rx.queue().unwrap().reap_dead();
        // Keep the ring moving.
        if next() % 2 == 0 {
            w.put();
        } else if let Some(id) = get(&mut w.rx) {
            w.expected.retain(|&e| e != id);
        }
    }
    let before = w.expected.len();
    let mut delivered = 0;
    while let Some(id) = get(&mut w.rx) {
        assert!(w.expected.contains(&id) || id >= 10_000, "unexpected {id}");
        w.expected.retain(|&e| e != id);
        delivered += 1;
    }
    assert!(
        w.expected.len() <= lost_with_victims,
        "{} of {before} lost, {lost_with_victims} victims were reading",
        w.expected.len()
    );
    println!(
        "300 random crashes: {delivered} drained, {} lost with victims",
        w.expected.len()
    );
    w.expected.clear();
    w.check(&[], &[], "random crashes");
}
