//! The shmq core alone, for `bench.mjs`: `End::put_many` / `End::get_many`
//! across two processes with no JavaScript, as the `shmq batch` row uses
//! them (capacity 512, default slot size, batches of 256). What the ring
//! itself costs a message, against which the binding's figure is read.
//!   shmq-core-batch <size in bytes> <messages>   prints {"size":…,"seconds":…,"messages":…}
//!   (runs itself as `shmq-core-batch send <handle> <size> <messages>` for the sender)

use shmq_core::layout::DEFAULT_SLOT_SIZE;
use shmq_core::waiter::Which;
use shmq_core::{End, Got, Role};

const BATCH: usize = 256;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let number = |i: usize, default: usize| {
        args.get(i)
            .map_or(default, |a| a.parse().expect("a number"))
    };
    if args.first().map(String::as_str) == Some("send") {
        return send(&args[1], number(2, 64), number(3, 1_000_000));
    }
    let (size, count) = (number(0, 64), number(1, 1_000_000));
    let (tx, mut rx) =
        End::create_pair(2 * BATCH as u32, DEFAULT_SLOT_SIZE, 1 << 30).expect("a queue");
    rx.join().expect("joined");
    let handle = tx.queue().expect("open").name.clone();
    let mut child = std::process::Command::new(std::env::current_exe().expect("this program"))
        .args(["send", &handle, &size.to_string(), &count.to_string()])
        .spawn()
        .expect("the sender");
    drop(tx);
    let mut out = vec![0u8; BATCH * size.max(1)];
    let mut meta = vec![0f64; 2 * BATCH];
    let (mut got, mut sink, mut started) = (0, 0u8, None);
    while got < count {
        let seen = rx.event(Which::Items);
        let n = rx.get_many(BATCH, &mut out, &mut meta).expect("get_many");
        if n == 0 {
            if let Some(status) = child.try_wait().expect("the sender's state") {
                panic!("the sender ended ({status}) after {got} of {count} messages");
            }
            rx.wait(Which::Items, seen, None);
            continue;
        }
        // Timed from the first batch's arrival: the messages after it count.
        started.get_or_insert((std::time::Instant::now(), got + n));
        sink ^= out[0];
        got += n;
    }
    let (seconds, timed) = started.map_or((0.0, 0), |(s, first)| {
        (s.elapsed().as_secs_f64(), got - first)
    });
    child.wait().expect("the sender's exit");
    println!(r#"{{"size":{size},"seconds":{seconds},"messages":{timed},"sink":{sink}}}"#);
}

fn send(handle: &str, size: usize, count: usize) {
    let mut tx = End::attach(handle, Role::Sender).expect("attached");
    let message = vec![0x5au8; size];
    let mut sent = 0;
    while sent < count {
        let seen = tx.event(Which::Space);
        let k = BATCH.min(count - sent);
        match tx
            .put_many(std::iter::repeat_n((0, message.as_slice()), k))
            .expect("put_many")
        {
            Got::Message(0) => tx.wait(Which::Space, seen, None),
            Got::Message(n) => sent += n,
            _ => panic!("the receiver left"),
        }
    }
    tx.close();
}
