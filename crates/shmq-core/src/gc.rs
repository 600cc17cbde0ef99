//! Finding queues in /dev/shm (`shmq ls`) and removing those no live process
//! uses (`shmq gc`, and once at the first queue a process creates).

use crate::error::Code;
use crate::payload;
use crate::queue::Queue;
use crate::sys::lock;
use crate::sys::segment::{self, Segment};
use crate::sys::Mapping;
use std::collections::BTreeMap;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// An end taking part, or its creator, is alive (holds its lock).
    Live,
    /// Every process that used it is gone.
    Dead,
    /// Not a readable shmq queue (corrupt, or of another layout version).
    Invalid,
}

#[derive(Debug)]
pub struct Found {
    pub name: String,
    pub status: Status,
    pub capacity: u32,
    pub depth: u64,
    /// Messages ever sent (see `Queue::sent`), read once; None without a
    /// readable queue segment.
    pub sent: Option<u64>,
    pub senders: usize,
    pub receivers: usize,
    pub pids: Vec<u32>,
    /// Bytes of the queue segment plus its payload segments.
    pub bytes: u64,
    /// Since the queue segment last changed size or mode.
    age: Duration,
}

/// Every shmq queue of this user in /dev/shm, including payload segments
/// whose queue segment is gone (reported as dead queues). Entries of other
/// users, of another mode, or symlinks are not ours and never listed.
pub fn scan() -> Vec<Found> {
    // queue id -> (queue segment present, bytes, age)
    let mut groups: BTreeMap<u64, (bool, u64, Duration)> = BTreeMap::new();
    for name in segment::list() {
        let Some(rest) = name.strip_prefix("shmq-") else {
            continue;
        };
        let (hex, is_queue) = match rest.split_once('-') {
            Some((hex, _)) => (hex, false),
            None => (rest, true),
        };
        let Some(id) = segment::parse_queue_name(&format!("shmq-{hex}")) else {
            continue;
        };
        let Some(st) = segment::stat_ours(&name) else {
            continue;
        };
        let group = groups.entry(id).or_insert((false, 0, Duration::MAX));
        group.1 += st.size;
        if is_queue {
            group.0 = true;
            group.2 = st.age;
        }
    }
    groups
        .into_iter()
        .map(|(id, (has_queue, bytes, age))| {
            let name = segment::queue_name(id);
            let mut found = Found {
                name: name.clone(),
                status: Status::Dead,
                capacity: 0,
                depth: 0,
                sent: None,
                senders: 0,
                receivers: 0,
                pids: Vec::new(),
                bytes,
                age,
            };
            if has_queue {
                match Queue::open(&name) {
                    Ok(q) => {
                        let (pids, senders, receivers) = q.members();
                        found.status = if q.in_use() {
                            Status::Live
                        } else {
                            Status::Dead
                        };
                        found.capacity = q.capacity;
                        found.depth = q.size();
                        found.sent = Some(q.sent());
                        found.senders = senders;
                        found.receivers = receivers;
                        found.pids = pids;
                    }
                    Err(_) => found.status = Status::Invalid,
                }
            }
            found
        })
        .collect()
}

/// Names of the queues `collect` would remove (and removes them if `remove`).
/// Dead queues always (decided again under their lock range, so a queue that
/// an end joins meanwhile is kept); invalid ones only with `invalid_too` and
/// once they are a minute old. Temporary files of creations that died half
/// way go too once they are a minute old.
pub fn collect(remove: bool, invalid_too: bool) -> Vec<String> {
    let minute = Duration::from_secs(60);
    if remove {
        remove_stale_temporaries(minute);
    }
    scan()
        .into_iter()
        .filter(|f| match f.status {
            Status::Dead => true,
            Status::Invalid => invalid_too && f.age > minute,
            Status::Live => false,
        })
        .filter(|f| !remove || remove_queue(f))
        .map(|f| f.name)
        .collect()
}

fn remove_queue(f: &Found) -> bool {
    let Some(id) = segment::parse_queue_name(&f.name) else {
        return false;
    };
    match Queue::open(&f.name) {
        Ok(q) => q.remove_if_unused(),
        // Payload segments whose queue is gone.
        Err(e) if e.code == Code::NotFound => {
            payload::unlink_all(id);
            true
        }
        // Not readable as a queue of this version: removed only if nothing
        // holds a lock on it, and never if it is another shmq version's.
        Err(_) if other_version(&f.name) => false,
        Err(_) => {
            let Ok(seg) = Segment::open(&f.name) else {
                return false;
            };
            if lock::try_lock(seg.fd(), 0, crate::layout::LOCK_SPAN) != Ok(true) {
                return false;
            }
            Segment::unlink(&f.name);
            payload::unlink_all(id);
            true
        }
    }
}

/// A shmq queue of another layout version (another shmq release may be
/// using it, with other liveness rules).
fn other_version(name: &str) -> bool {
    Segment::open(name).is_ok_and(|seg| {
        seg.at::<crate::layout::Header>(0).is_some_and(|h| {
            let (magic, version) = (h.magic, h.version);
            magic == crate::layout::MAGIC && version != crate::layout::LAYOUT_VERSION
        })
    })
}

fn remove_stale_temporaries(older_than: Duration) {
    for name in segment::list() {
        if name.starts_with(".shmq-tmp-")
            && segment::stat_ours(&name).is_some_and(|st| st.age > older_than)
        {
            Segment::unlink(&name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_queue_of_this_process_is_live_and_kept() {
        let q = Queue::create(2, 64, 1024).unwrap();
        let found = scan().into_iter().find(|f| f.name == q.name).unwrap();
        assert_eq!(found.status, Status::Live);
        assert_eq!(found.capacity, 2);
        assert_eq!(found.sent, Some(0));
        assert!(!collect(true, true).contains(&q.name));
        assert!(Queue::open(&q.name).is_ok(), "kept");
        let name = q.name.clone();
        drop(q);
        assert!(Queue::open(&name).is_err(), "the last one out removes it");
    }

    #[test]
    fn payload_segments_without_their_queue_are_dead() {
        let id = segment::random_id();
        let name = segment::payload_name(id, 7);
        let _seg = Segment::create(&name, 4096, |_| Ok(())).unwrap();
        let found = scan()
            .into_iter()
            .find(|f| f.name == segment::queue_name(id))
            .unwrap();
        assert_eq!(found.status, Status::Dead);
        assert_eq!(found.bytes, 4096);
        assert_eq!(found.sent, None);
        assert!(collect(true, false).contains(&segment::queue_name(id)));
        assert!(Segment::open(&name).is_err(), "removed");
    }
}
