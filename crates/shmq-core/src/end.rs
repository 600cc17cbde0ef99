//! One end of a queue as a JS object sees it: its role, whether it takes
//! part, its payload segments, and the put/get operations.

use crate::codec;
use crate::error::{Code, ShmqError};
use crate::layout::{KIND_INLINE, KIND_PAYLOAD};
use crate::payload::{Cache, Pool, Staged};
use crate::queue::{Claimed, Member, Message, Queue, Role};
use crate::sync;
use crate::waiter::{self, Which};
use std::collections::HashMap;
use std::sync::atomic::Ordering::SeqCst;
use std::sync::{Arc, Mutex};
use std::thread::ThreadId;
use std::time::{Duration, Instant};

/// Test hook: with `SHMQ_TEST_STALL=<point>` in its environment, a process
/// stops for good at that point, so the crash tests can SIGKILL it exactly
/// there. Points: `put` (holding a claimed slot, before writing it), `get`
/// (holding a claimed slot, before reading it), `get-returned` (read, payload
/// segment handed back, slot not yet freed). Read once; one load per call.
fn stall_if_testing(point: &str) {
    static STALL: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    if STALL
        .get_or_init(|| std::env::var("SHMQ_TEST_STALL").ok())
        .as_deref()
        == Some(point)
    {
        loop {
            std::thread::park();
        }
    }
}

pub enum Put {
    Done,
    Full,
    Closed,
}

pub enum Got<T> {
    Message(T),
    Empty,
    Closed,
}

impl<T> Got<T> {
    /// Empty or Closed, as a result of another type (never called on a message).
    fn without_message<U>(self) -> Got<U> {
        match self {
            Got::Closed => Got::Closed,
            _ => Got::Empty,
        }
    }
}

/// How many slots ahead a batch prefetches (`Queue::prefetch`).
const PREFETCH_AHEAD: u64 = 8;

/// Prefetches slot `pos` if it lies below `to` (where the other side is
/// done with it); false if it does not.
fn prefetch_if_below(q: &Queue, pos: u64, to: u64) -> bool {
    let below = to.wrapping_sub(pos) as i64 > 0;
    if below {
        q.prefetch(pos);
    }
    below
}

/// Prefetches the slots `from .. from + PREFETCH_AHEAD` that lie below `to`.
fn prefetch_below(q: &Queue, from: u64, to: u64) {
    for i in 0..PREFETCH_AHEAD {
        if !prefetch_if_below(q, from.wrapping_add(i), to) {
            break;
        }
    }
}

/// Keeps a mapping alive while a JS view of it exists.
pub type Keep = Arc<dyn Send + Sync>;

/// Shared memory handed to JS in place: a slot being written (reserve) or
/// read (lease). Its `ptr` stays valid while `keep` lives.
pub struct View {
    pub hold: u32,
    pub ptr: *mut u8,
    pub len: usize,
    pub tag: u32,
    pub keep: Keep,
}

/// A claimed tail slot: the queue, this end's row, the position and the
/// payload segment staged for it, if any.
type ClaimedTail = (Arc<Queue>, Member, u64, Option<Staged>);

enum Staging {
    Inline,
    Segment(Staged),
    Wait,
}

/// A slot this end holds across calls.
enum Hold {
    Reserved {
        pos: u64,
        len: u64,
        staged: Option<Staged>,
    },
    Leased(Claimed),
}

/// What an end was opened on; kept after close.
pub struct Info {
    pub handle: String,
    pub capacity: u32,
    pub slot_size: u32,
    pub max_message_size: u64,
}

pub struct End {
    /// None once closed: closing returns the mapping at once.
    queue: Option<Arc<Queue>>,
    pub info: Info,
    pub role: Role,
    member: Option<Member>,
    /// One of the two ends `create` returned (not attached by handle).
    created_here: bool,
    pool: Pool,
    cache: Cache,
    holds: HashMap<u32, Hold>,
    /// A message claimed whose bytes could not be mapped for a passing
    /// reason (EMFILE, ENOMEM): the next get or lease tries it again.
    pending: Option<Claimed>,
    /// The spin policy's memory, per event (see `event`).
    pace: [Pace; 2],
}

/// How long a wait spins before it sleeps, while spinning pays off.
const SPIN: Duration = Duration::from_micros(50);
/// A wait that ended within this was worth spinning for.
const QUICK: Duration = Duration::from_micros(250);

#[derive(Clone, Copy)]
struct Pace {
    /// The last wait ended within QUICK (a new end starts spinning).
    quick: bool,
    /// When the wait in progress began.
    since: Option<Instant>,
}

impl Default for Pace {
    fn default() -> Self {
        Pace {
            quick: true,
            since: None,
        }
    }
}

/// Queues whose creator closed its unused ends while someone may still
/// attach (see `awaited`): kept (and so kept linked, by the creator lock) so
/// a child's attach cannot lose the race, nor messages already put be lost
/// with it. Released at process exit, or (checked whenever a queue is
/// created or an end closes here) once both sides have joined. Each entry notes the JS thread (main or
/// worker) whose exit releases it.
static LINGERING: Mutex<Vec<(ThreadId, Arc<Queue>)>> = Mutex::new(Vec::new());

fn lingering() -> std::sync::MutexGuard<'static, Vec<(ThreadId, Arc<Queue>)>> {
    LINGERING.lock().unwrap_or_else(|p| p.into_inner())
}

/// Someone may still attach for it: nobody has yet, or one side never
/// joined (a producer child may have put and gone before the consumer came).
fn awaited(q: &Queue) -> bool {
    !q.ever_attached() || !q.both_sides_joined()
}

/// Releases this thread's lingering queues (`all`, at its exit), or any
/// thread's whose queue is finished.
pub fn release_lingering(all: bool) {
    let me = std::thread::current().id();
    let released: Vec<(ThreadId, Arc<Queue>)> = {
        let mut list = lingering();
        let (go, stay) = std::mem::take(&mut *list)
            .into_iter()
            .partition(|(thread, q)| (all && *thread == me) || !awaited(q));
        *list = stay;
        go
    };
    drop(released);
}

impl End {
    fn new(queue: Arc<Queue>, role: Role, created_here: bool) -> End {
        End {
            info: Info {
                handle: queue.name.clone(),
                capacity: queue.capacity,
                slot_size: queue.slot_size,
                max_message_size: queue.max_message_size,
            },
            queue: Some(queue),
            role,
            member: None,
            created_here,
            pool: Pool::default(),
            cache: Cache::default(),
            holds: HashMap::new(),
            pending: None,
            pace: Default::default(),
        }
    }

    /// A new queue and its two ends; neither takes part until it is used.
    pub fn create_pair(
        capacity: u32,
        slot_size: u32,
        max_message_size: u64,
    ) -> Result<(End, End), ShmqError> {
        release_lingering(false);
        // Once per process: remove what crashed processes left behind.
        static COLLECT_ONCE: std::sync::Once = std::sync::Once::new();
        COLLECT_ONCE.call_once(|| {
            crate::gc::collect(true, false);
        });
        let q = Arc::new(Queue::create(capacity, slot_size, max_message_size)?);
        Ok((
            End::new(q.clone(), Role::Sender, true),
            End::new(q, Role::Receiver, true),
        ))
    }

    /// Opens a queue by handle; the end takes part at once.
    pub fn attach(handle: &str, role: Role) -> Result<End, ShmqError> {
        let q = Arc::new(Queue::open(handle)?);
        let m = q.join(role)?;
        q.note_attach();
        let mut end = End::new(q, role, false);
        end.member = Some(m);
        Ok(end)
    }

    /// The queue, unless this end is closed.
    pub fn queue(&self) -> Result<&Arc<Queue>, ShmqError> {
        self.queue.as_ref().ok_or_else(|| {
            ShmqError::new(
                Code::Closed,
                format!("this {} was closed", self.role_name()),
            )
        })
    }

    pub fn is_closed(&self) -> bool {
        self.queue.is_none()
    }

    // ---- waiting: look at an event counter, try again when it moves ----
    //
    // The spin policy: a wait first spins (SPIN, a few microseconds: the
    // other side is often that close) only while recent waits ended within
    // QUICK; a sparse stream, or an idle queue, goes straight to sleep and
    // costs no spinning. `event` closes the measurement of the last wait.

    /// The event count, or 0 once the end is closed (the next attempt then
    /// reports the close). Read it before trying; wait while it is unchanged.
    pub fn event(&mut self, which: Which) -> u32 {
        let pace = &mut self.pace[which as usize];
        if let Some(since) = pace.since.take() {
            pace.quick = since.elapsed() < QUICK;
        }
        self.seq(which)
    }

    fn seq(&self, which: Which) -> u32 {
        self.queue
            .as_ref()
            .map_or(0, |q| waiter::event(q, which).seq.load(SeqCst))
    }

    /// The first step of every wait for the event to move past `seen`: a spin
    /// if recent waits were short. True if it moved (or the end closed): try
    /// again at once; else sleep (`wait`, or the waiter thread), then call
    /// `event`.
    pub fn spin_first(&mut self, which: Which, seen: u32) -> bool {
        if self.is_closed() {
            return true;
        }
        let pace = &mut self.pace[which as usize];
        let quick = pace.quick;
        pace.since = Some(Instant::now());
        quick && self.spin(which, seen)
    }

    /// Spins up to SPIN while the event still equals `seen`; true if it moved.
    fn spin(&self, which: Which, seen: u32) -> bool {
        let until = Instant::now() + SPIN;
        loop {
            for _ in 0..64 {
                if self.seq(which) != seen {
                    return true;
                }
                std::hint::spin_loop();
            }
            if Instant::now() >= until {
                return false;
            }
        }
    }

    /// Blocks this thread until the event differs from `seen` or the
    /// deadline passes: `spin_first`, then one futex wait of at most
    /// `sync::PROBE`, reaping dead peers if nothing moved. May return early;
    /// the caller re-checks.
    pub fn wait(&mut self, which: Which, seen: u32, deadline: Option<Instant>) {
        if self.spin_first(which, seen) {
            return;
        }
        let Some(q) = &self.queue else { return };
        if let Some(slice) = sync::next_slice(deadline, sync::PROBE) {
            q.wait_slice(waiter::event(q, which), seen, slice);
        }
    }

    /// Takes part now rather than at first use: a created end then keeps its
    /// side open (the other side does not see it closed) until it closes.
    pub fn join(&mut self) -> Result<(), ShmqError> {
        self.take_part().map(drop)
    }

    fn take_part(&mut self) -> Result<(Arc<Queue>, Member), ShmqError> {
        let q = self.queue()?.clone();
        match self.member {
            Some(m) => Ok((q, m)),
            None => {
                let m = q.join(self.role)?;
                self.member = Some(m);
                Ok((q, m))
            }
        }
    }

    fn role_name(&self) -> &'static str {
        match self.role {
            Role::Sender => "sender",
            Role::Receiver => "receiver",
        }
    }

    /// Enqueues one message if there is room.
    pub fn put(&mut self, tag: u32, data: &[u8]) -> Result<Put, ShmqError> {
        self.put_with(tag, data, true)
    }

    /// `put`; `wake: false` leaves waking receivers to the caller.
    fn put_with(&mut self, tag: u32, data: &[u8], wake: bool) -> Result<Put, ShmqError> {
        let len = data.len() as u64;
        let (q, m, pos, staged) = match self.claim_for(len, "message")? {
            Got::Message(claimed) => claimed,
            Got::Empty => return Ok(Put::Full),
            Got::Closed => return Ok(Put::Closed),
        };
        stall_if_testing("put");
        crash_point!();
        let (kind, payload_name, payload_gen) = match staged {
            Some(s) => match self.pool.fill(s, data) {
                Ok((name, generation)) => (KIND_PAYLOAD, name, generation),
                Err(e) => {
                    // Never leave a claimed slot behind: it would stall the ring.
                    let _ = q.abandon(&m, pos);
                    return Err(e);
                }
            },
            None => {
                // SAFETY: this end owns the slot (WRITING) and the slot holds
                // slot_size >= len inline bytes.
                unsafe {
                    std::ptr::copy_nonoverlapping(data.as_ptr(), q.slot_data(pos), data.len())
                };
                (KIND_INLINE, 0, 0)
            }
        };
        crash_point!();
        q.publish_with(
            &m,
            pos,
            &Message {
                tag,
                len,
                kind,
                payload_name,
                payload_gen,
            },
            wake,
        )?;
        Ok(Put::Done)
    }

    /// Claims the tail slot (and a payload segment if `len` does not fit
    /// it) for a message of `len` bytes. Empty: full, wait for space (a dead
    /// receiver holding it is reaped first if one is due); Closed: no
    /// receiver is left, so waiting is pointless.
    fn claim_for(&mut self, len: u64, what: &str) -> Result<Got<ClaimedTail>, ShmqError> {
        let (q, m) = self.take_part()?;
        if len > q.max_message_size {
            return Err(ShmqError::new(
                Code::TooLarge,
                format!(
                    "a {what} of {len} bytes exceeds maxMessageSize ({})",
                    q.max_message_size
                ),
            ));
        }
        let full = |q: &Queue| {
            if q.receivers_gone() {
                Got::Closed
            } else {
                Got::Empty
            }
        };
        let staged = match self.stage(&q, &m, len)? {
            Staging::Inline => None,
            Staging::Segment(s) => Some(s),
            Staging::Wait => return Ok(full(&q)),
        };
        let pos = match q.claim_tail(&m)? {
            Some(pos) => Some(pos),
            None if q.reap_if_due() => q.claim_tail(&m)?,
            None => None,
        };
        Ok(match pos {
            Some(pos) => Got::Message((q, m, pos, staged)),
            None => full(&q),
        })
    }

    /// Where a message of `len` bytes goes: inline, a payload segment, or
    /// nowhere yet (the tail slot is still taken, so no segment is made for
    /// nothing; or the sender's segments are at their budget).
    fn stage(&mut self, q: &Queue, m: &Member, len: u64) -> Result<Staging, ShmqError> {
        if len <= u64::from(q.slot_size) {
            return Ok(Staging::Inline);
        }
        if !q.tail_free() {
            return Ok(Staging::Wait);
        }
        Ok(match self.pool.stage(q.id, m.owner(), len)? {
            Some(s) => Staging::Segment(s),
            None => Staging::Wait,
        })
    }

    /// Dequeues one message and hands its bytes to `read` (which copies them
    /// out) while the slot is held.
    pub fn get<T>(&mut self, read: impl FnOnce(u32, &[u8]) -> T) -> Result<Got<T>, ShmqError> {
        let (q, m) = self.take_part()?;
        let c = match self.pending.take() {
            Some(c) => c,
            None => match next(&q, &m)? {
                Got::Message(c) => c,
                other => return Ok(other.without_message()),
            },
        };
        stall_if_testing("get");
        crash_point!();
        let out = match self.read(&q, &c) {
            Err(e) if e.is_transient() => {
                self.pending = Some(c);
                return Err(e);
            }
            bytes => bytes.map(|p| {
                // SAFETY: p points at c.len readable bytes (checked by `read`)
                // that this end owns until the slot is freed below.
                let slice = unsafe { std::slice::from_raw_parts(p, c.len as usize) };
                read(c.tag, slice)
            }),
        };
        if c.kind == KIND_PAYLOAD {
            self.cache.done(q.id, c.payload_name, c.payload_gen);
        } else {
            self.cache.evict_retired(q.id);
        }
        stall_if_testing("get-returned");
        crash_point!();
        q.free(&m, &c)?;
        out.map(Got::Message)
    }

    /// The bytes of a claimed message, after checking what the slot says.
    fn read(&mut self, q: &Queue, c: &Claimed) -> Result<*const u8, ShmqError> {
        if !codec::valid(c.tag, c.len) {
            Err(ShmqError::invalid(format!(
                "slot has tag {} and length {}",
                c.tag, c.len
            )))
        } else if c.kind == KIND_INLINE && c.len <= u64::from(q.slot_size) {
            Ok(q.slot_data(c.pos).cast_const())
        } else if c.kind == KIND_PAYLOAD && c.len <= q.max_message_size {
            self.cache.bytes(q.id, c.payload_name, c.len)
        } else {
            Err(ShmqError::invalid(format!(
                "slot has kind {} and length {}",
                c.kind, c.len
            )))
        }
    }

    /// Numbers are unique in the process, so a stale number (a JS finalizer
    /// running late) never matches another end's hold.
    fn hold(&mut self, hold: Hold) -> u32 {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(1);
        let id = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.holds.insert(id, hold);
        id
    }

    fn take_hold(&mut self, hold: u32, leased: bool) -> Option<Hold> {
        match self.holds.get(&hold) {
            Some(Hold::Leased(_)) if leased => self.holds.remove(&hold),
            Some(Hold::Reserved { .. }) if !leased => self.holds.remove(&hold),
            _ => None,
        }
    }

    /// Claims a slot for a message of `len` bytes written in place (a
    /// payload segment if it does not fit the slot). `Done` carries the view.
    pub fn reserve(&mut self, len: u64) -> Result<Got<View>, ShmqError> {
        let (q, _, pos, staged) = match self.claim_for(len, "reservation")? {
            Got::Message(claimed) => claimed,
            other => return Ok(other.without_message()),
        };
        let (ptr, keep): (*mut u8, Keep) = match &staged {
            Some(s) => {
                let (ptr, seg) = self.pool.reserve(s);
                (ptr, seg)
            }
            None => (q.slot_data(pos), q.mapping()),
        };
        let hold = self.hold(Hold::Reserved { pos, len, staged });
        Ok(Got::Message(View {
            hold,
            ptr,
            len: len as usize,
            tag: 0,
            keep,
        }))
    }

    /// Publishes reservation `hold` with the first `len` bytes written.
    pub fn commit(&mut self, hold: u32, len: u64, tag: u32) -> Result<(), ShmqError> {
        let q = self.queue()?.clone();
        let m = self
            .member
            .ok_or_else(|| ShmqError::invalid("no reservation"))?;
        let Some(Hold::Reserved {
            pos,
            len: room,
            staged,
        }) = self.take_hold(hold, false)
        else {
            return Err(ShmqError::invalid(format!("no reservation number {hold}")));
        };
        let len = len.min(room);
        let (kind, payload_name, payload_gen) = match staged {
            Some(s) if len > u64::from(q.slot_size) => {
                let (name, generation) = self.pool.commit(s)?;
                (KIND_PAYLOAD, name, generation)
            }
            Some(s) => {
                // It fits the slot after all: one small copy.
                let (ptr, _) = self.pool.reserve(&s);
                self.pool.unreserve(&s);
                // SAFETY: the reserved segment holds `room` >= len bytes and
                // the slot `slot_size` >= len; this end owns both.
                unsafe { std::ptr::copy_nonoverlapping(ptr, q.slot_data(pos), len as usize) };
                (KIND_INLINE, 0, 0)
            }
            None => (KIND_INLINE, 0, 0),
        };
        q.publish(
            &m,
            pos,
            &Message {
                tag,
                len,
                kind,
                payload_name,
                payload_gen,
            },
        )
    }

    /// Gives reservation `hold` back unsent.
    pub fn abort(&mut self, hold: u32) -> Result<(), ShmqError> {
        let Some(Hold::Reserved { pos, staged, .. }) = self.take_hold(hold, false) else {
            return Ok(());
        };
        let q = self.queue()?.clone();
        let m = self
            .member
            .ok_or_else(|| ShmqError::invalid("no reservation"))?;
        if let Some(s) = staged {
            self.pool.unreserve(&s);
        }
        q.abandon(&m, pos)
    }

    /// Takes the next message in place: a view of its bytes in shared
    /// memory, held until `release`.
    pub fn lease(&mut self) -> Result<Got<View>, ShmqError> {
        let (q, m) = self.take_part()?;
        let c = match self.pending.take() {
            Some(c) => c,
            None => match next(&q, &m)? {
                Got::Message(c) => c,
                other => return Ok(other.without_message()),
            },
        };
        let ptr = match self.read(&q, &c) {
            Ok(ptr) => ptr,
            Err(e) if e.is_transient() => {
                self.pending = Some(c);
                return Err(e);
            }
            Err(e) => {
                self.give_back(&q, &m, &c)?;
                return Err(e);
            }
        };
        let keep: Keep = match self.cache.mapping(c.payload_name) {
            Some(seg) if c.kind == KIND_PAYLOAD => seg,
            _ => q.mapping(),
        };
        let (len, tag) = (c.len as usize, c.tag);
        let hold = self.hold(Hold::Leased(c));
        Ok(Got::Message(View {
            hold,
            ptr: ptr.cast_mut(),
            len,
            tag,
            keep,
        }))
    }

    /// Ends lease `hold`: the slot (and payload segment) go back. Idempotent.
    pub fn release(&mut self, hold: u32) -> Result<(), ShmqError> {
        let Some(Hold::Leased(c)) = self.take_hold(hold, true) else {
            return Ok(());
        };
        let q = self.queue()?.clone();
        let m = self.member.ok_or_else(|| ShmqError::invalid("no lease"))?;
        self.give_back(&q, &m, &c)
    }

    fn give_back(&mut self, q: &Queue, m: &Member, c: &Claimed) -> Result<(), ShmqError> {
        self.give_back_with(q, m, c, true)
    }

    fn give_back_with(
        &mut self,
        q: &Queue,
        m: &Member,
        c: &Claimed,
        wake: bool,
    ) -> Result<(), ShmqError> {
        if c.kind == KIND_PAYLOAD {
            self.cache.done(q.id, c.payload_name, c.payload_gen);
        }
        q.free_with(m, c, wake)
    }

    /// Puts messages in order until one does not fit: returns how many went
    /// (each whole or not at all), or `Closed` if none did and no receiver
    /// is left.
    pub fn put_many<'a>(
        &mut self,
        messages: impl Iterator<Item = (u32, &'a [u8])>,
    ) -> Result<Got<usize>, ShmqError> {
        // Receivers are woken once, after the batch (and on an error too).
        let mut sent = 0;
        let mut outcome = Ok(Got::Message(0));
        // Prefetch only below the head (plus a lap) seen when the batch
        // began: slots receivers have taken, most already freed.
        let (mut next, free_to) = match self.queue() {
            Ok(q) => {
                let (tail, free_to) = (
                    q.tail_now(),
                    q.head_now().wrapping_add(u64::from(q.capacity)),
                );
                // The first slots now; each later one as one is claimed.
                prefetch_below(q, tail, free_to);
                (tail, free_to)
            }
            Err(_) => (0, 0),
        };
        for (tag, bytes) in messages {
            if let Ok(q) = self.queue() {
                prefetch_if_below(q, next.wrapping_add(PREFETCH_AHEAD), free_to);
            }
            next = next.wrapping_add(1);
            match self.put_with(tag, bytes, false) {
                Ok(Put::Done) => sent += 1,
                Ok(Put::Closed) if sent == 0 => {
                    outcome = Ok(Got::Closed);
                    break;
                }
                Ok(Put::Full | Put::Closed) => break,
                // After some went, report those; the failing message fails
                // again, alone, on the next call.
                Err(_) if sent > 0 => break,
                Err(e) => {
                    outcome = Err(e);
                    break;
                }
            }
        }
        if sent > 0 {
            crate::sync::notify(self.queue()?.items());
        }
        match outcome? {
            Got::Closed => Ok(Got::Closed),
            _ => Ok(Got::Message(sent)),
        }
    }

    /// Takes up to `max` messages that fit `out` back to back, recording
    /// `(tag, length)` pairs in `meta` (tag -1: a corrupt message, skipped,
    /// which ends the batch). Returns how many; 0 when the queue is empty or
    /// its oldest message does not fit (the caller then takes one by `get`).
    pub fn get_many(
        &mut self,
        max: usize,
        out: &mut [u8],
        meta: &mut [f64],
    ) -> Result<usize, ShmqError> {
        let (q, m) = self.take_part()?;
        if self.pending.is_some() {
            return Ok(0); // `get` retries it
        }
        let max = max.min(meta.len() / 2);
        let (mut n, mut at) = (0, 0);
        // Prefetch only below the tail seen when the batch began: slots a
        // sender has claimed (most already published); past it a sender
        // may be about to write, and would have to take the line back.
        let claimed_to = q.tail_now();
        prefetch_below(&q, q.head_now(), claimed_to);
        // An error after some messages were taken ends the batch with them
        // (it comes again with the next call): they are never dropped.
        while n < max {
            let c = match q.claim_head_within(&m, (out.len() - at) as u64) {
                Ok(Some(c)) => c,
                Ok(None) => break,
                Err(_) if n > 0 => break,
                Err(e) => return Err(e),
            };
            prefetch_if_below(&q, c.pos.wrapping_add(PREFETCH_AHEAD), claimed_to);
            let copied = match self.read(&q, &c) {
                Err(e) if e.is_transient() => {
                    self.pending = Some(c);
                    break;
                }
                bytes => bytes.map(|p| {
                    // SAFETY: p points at c.len readable bytes (checked by
                    // `read`), and c.len <= out.len() - at (checked by the claim).
                    unsafe {
                        std::ptr::copy_nonoverlapping(p, out[at..].as_mut_ptr(), c.len as usize)
                    }
                }),
            };
            if let Err(e) = self.give_back_with(&q, &m, &c, false) {
                if n > 0 {
                    break;
                }
                crate::sync::notify(q.space());
                return Err(e);
            }
            meta[2 * n] = if copied.is_ok() {
                f64::from(c.tag)
            } else {
                -1.0
            };
            meta[2 * n + 1] = c.len as f64;
            n += 1;
            if copied.is_err() {
                break;
            }
            at += c.len as usize;
        }
        if n == 0 {
            q.reap_if_due();
        } else {
            crate::sync::notify(q.space());
        }
        Ok(n)
    }

    /// Numbers of the reservations and leases still held.
    pub fn holds(&self) -> Vec<u32> {
        self.holds.keys().copied().collect()
    }

    /// Messages this end put that no receiver has taken yet.
    pub fn unacked(&self) -> u32 {
        match (&self.queue, &self.member) {
            (Some(q), Some(m)) => q.unacked(m),
            _ => 0,
        }
    }

    /// In a child forked with this end in its memory: lets go of the copy's
    /// descriptors and mappings without touching the queue. The parent still
    /// owns the end (its row, locks and segments): closing a copied
    /// descriptor keeps the parent's open-file-description locks, while
    /// `close` would unlock them (a lock belongs to the description, which
    /// fork shares) and leave the parent's row.
    pub fn forsake(mut self) {
        if let Some(q) = self.queue.take() {
            q.forsake();
        }
        self.member = None;
        self.pending = None;
        self.holds.clear();
        // Dropping the copies only unmaps and closes (no hand-back, no unlink).
        self.pool = Pool::default();
        self.cache = Cache::default();
    }

    /// Stops taking part and returns the mapping; the last live end out
    /// removes the queue (`Queue::drop`). Idempotent.
    pub fn close(&mut self) {
        // A message it could not read yet, leases and reservations go first.
        if let (Some(c), Some(m), Ok(q)) = (self.pending.take(), self.member, self.queue().cloned())
        {
            let _ = self.give_back(&q, &m, &c);
        }
        for hold in self.holds() {
            let _ = self.release(hold);
            let _ = self.abort(hold);
        }
        let Some(q) = self.queue.take() else { return };
        // Dead peers' rows go first, so their payload segments go too.
        q.reap_dead();
        self.pool.close(q.id, |name, g| q.names_payload(name, g));
        self.cache = Cache::default();
        match self.member.take() {
            Some(m) => q.leave(&m),
            None if self.created_here && awaited(&q) => {
                lingering().push((std::thread::current().id(), q));
                return;
            }
            None => {}
        }
        drop(q);
        release_lingering(false);
    }
}

/// `End::forsake` for the queues this process kept lingering, in a child
/// forked with them in its memory (they are the parent's).
pub fn forsake_lingering() {
    for (_, q) in lingering().drain(..) {
        q.forsake();
    }
}

/// Claims the oldest message. Empty means closed only if every sender had
/// gone *before* a second look also found nothing (a sender may publish,
/// then close); a dead peer found on the way is reaped first.
fn next(q: &Queue, m: &Member) -> Result<Got<Claimed>, ShmqError> {
    if let Some(c) = q.claim_head(m)? {
        return Ok(Got::Message(c));
    }
    let reaped = q.reap_if_due();
    let gone = q.senders_gone();
    if reaped || gone {
        if let Some(c) = q.claim_head(m)? {
            return Ok(Got::Message(c));
        }
    }
    Ok(if gone { Got::Closed } else { Got::Empty })
}

impl Drop for End {
    fn drop(&mut self) {
        self.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::segment::{self, Segment};
    use crate::sys::Mapping;

    /// xorshift64*: a small deterministic generator for the fuzz cases.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n.max(1)
        }
    }

    /// Overwrites `count` random bytes (or aligned words with values that
    /// look plausible: small numbers, positions near the counters) of a segment.
    fn corrupt(name: &str, rng: &mut Rng, count: u64) {
        let Ok(seg) = Segment::open(name) else { return };
        for _ in 0..count {
            let len = seg.len() as u64;
            let offset = (rng.below(len) & !7) as usize;
            let value = match rng.below(4) {
                0 => rng.next(),
                1 => rng.below(16),
                2 => rng.below(64) << 2 | rng.below(4),
                _ => u64::MAX - rng.below(4),
            };
            if let Some(p) = seg.bytes_at(offset, 8) {
                // SAFETY: 8 bytes in bounds (checked); deliberately racy test corruption.
                unsafe { p.cast::<u64>().write_unaligned(value) };
            }
        }
    }

    /// Feeds corrupted queue and payload segments to every reader of shared
    /// memory (attach, get, put, reaping): errors are fine, panics and hangs are not.
    #[test]
    fn corrupt_segments_never_panic_or_hang() {
        let mut rng = Rng(0x5eed_1234_abcd_ef01);
        let cases = 400;
        let mut errors = 0;
        for case in 0..cases {
            let capacity = 1 + rng.below(6) as u32;
            let slot_size = rng.below(300) as u32;
            let (mut tx, rx) = End::create_pair(capacity, slot_size, 1 << 20).unwrap();
            let name = tx.info.handle.clone();
            for i in 0..rng.below(u64::from(capacity) + 1) {
                let len = if i % 2 == 0 { 10 } else { 1000 };
                let _ = tx.put(0, &vec![case as u8; len]);
            }
            // Corrupt the queue segment, or (every third case) a payload segment too.
            let count = 1 + rng.below(40);
            corrupt(&name, &mut rng, count);
            let id = segment::parse_queue_name(&name).unwrap();
            if case % 3 == 0 {
                if let Some(&payload) = crate::payload::list(id).first() {
                    let count = 1 + rng.below(8);
                    corrupt(&segment::payload_name(id, payload), &mut rng, count);
                }
            }
            for role in [Role::Receiver, Role::Sender] {
                match End::attach(&name, role) {
                    Ok(mut end) => {
                        for _ in 0..2 * capacity {
                            let r = match role {
                                Role::Receiver => end.get(|_, bytes| bytes.len()).map(|_| ()),
                                Role::Sender => end.put(0, b"probe").map(|_| ()),
                            };
                            errors += usize::from(r.is_err());
                        }
                        let q = end.queue().unwrap();
                        q.reap_dead();
                        let _ = q.members();
                    }
                    Err(_) => errors += 1,
                }
            }
            drop((tx, rx));
            Segment::unlink(&name);
            crate::payload::unlink_all(id);
        }
        println!("{cases} corrupted-segment cases, {errors} clean errors, no panic or hang");
    }
}
