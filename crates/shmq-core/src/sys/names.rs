//! Names of segments (the same for every backend): a queue is
//! `shmq-<16 hex>`, its payload segments `shmq-<16 hex>-<16 hex>`.

use rustix::io::Errno;

/// 64 random bits for a queue id or payload name.
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

pub fn payload_name(id: u64, n: u64) -> String {
    format!("shmq-{id:016x}-{n:016x}")
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
