//! Finding queues in /dev/shm (`shmq ls`) and removing those no live process
//! uses (`shmq gc`, and once at the first queue a process creates).

use crate::queue::{unlink_payloads, Queue};
use crate::segment::{self, Segment};
use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Its creator or an end taking part is running.
    Live,
    /// Every process that used it is gone.
    Dead,
    /// Not a readable shmq queue (corrupt, foreign, or being created).
    Invalid,
}

#[derive(Debug)]
pub struct Found {
    pub name: String,
    pub status: Status,
    pub capacity: u32,
    pub depth: u64,
    pub senders: usize,
    pub receivers: usize,
    pub pids: Vec<u32>,
    /// Bytes of the queue segment plus its payload segments.
    pub bytes: u64,
    /// Seconds since the queue segment last changed size or mode.
    age: Duration,
}

/// Every shmq queue in /dev/shm, including payload segments whose queue
/// segment is gone (reported as dead queues).
pub fn scan() -> Vec<Found> {
    // queue id -> (queue segment present, bytes, age)
    let mut groups: BTreeMap<u64, (bool, u64, Duration)> = BTreeMap::new();
    let Ok(dir) = std::fs::read_dir("/dev/shm") else {
        return Vec::new();
    };
    for entry in dir.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
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
        let meta = entry.metadata().ok();
        let size = meta.as_ref().map_or(0, |m| m.len());
        let age = meta
            .and_then(|m| m.modified().ok())
            .and_then(|t| SystemTime::now().duration_since(t).ok())
            .unwrap_or_default();
        let group = groups.entry(id).or_insert((false, 0, Duration::MAX));
        group.1 += size;
        if is_queue {
            group.0 = true;
            group.2 = age;
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
/// Dead queues always; invalid ones only with `invalid_too` and once they are
/// a minute old (a queue being created is briefly invalid).
pub fn collect(remove: bool, invalid_too: bool) -> Vec<String> {
    scan()
        .into_iter()
        .filter(|f| match f.status {
            Status::Dead => true,
            Status::Invalid => invalid_too && f.age > Duration::from_secs(60),
            Status::Live => false,
        })
        .map(|f| {
            if remove {
                Segment::unlink(&f.name);
                if let Some(id) = segment::parse_queue_name(&f.name) {
                    unlink_payloads(id);
                }
            }
            f.name
        })
        .collect()
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
        assert!(!collect(false, true).contains(&q.name));
        Segment::unlink(&q.name);
    }

    #[test]
    fn payload_segments_without_their_queue_are_dead() {
        let id = segment::random_id();
        let name = segment::payload_name(id, 7);
        let _seg = Segment::create(&name, 4096).unwrap();
        let found = scan()
            .into_iter()
            .find(|f| f.name == segment::queue_name(id))
            .unwrap();
        assert_eq!(found.status, Status::Dead);
        assert_eq!(found.bytes, 4096);
        assert!(collect(true, false).contains(&segment::queue_name(id)));
        assert!(Segment::open(&name).is_err(), "removed");
    }
}
