//! Who a process is: pid plus start time, so a reused pid is not mistaken
//! for the process that recorded it.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Identity {
    pub pid: u32,
    /// Clock ticks since boot when the process started; 0 if unknown.
    pub start_time: u64,
}

/// Field 22 (starttime) of /proc/<pid>/stat.
pub fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces and ')': skip past the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

pub fn identity() -> Identity {
    let pid = std::process::id();
    Identity {
        pid,
        start_time: start_time(pid).unwrap_or(0),
    }
}

/// True if the process recorded as (pid, start_time) is still running.
#[cfg_attr(not(test), allow(dead_code))] // crash recovery (issue 3) builds on it
pub fn is_alive(pid: u32, start_time: u64) -> bool {
    match self::start_time(pid) {
        Some(now) => start_time == 0 || now == start_time,
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_alive_and_a_reused_pid_is_not() {
        let me = identity();
        assert!(me.start_time > 0);
        assert!(is_alive(me.pid, me.start_time));
        assert!(!is_alive(me.pid, me.start_time + 1));
        assert!(!is_alive(u32::MAX - 1, 0));
    }
}
