// Soak consumer on queue argv[2]: takes messages (async get, and getSync one
// time in four) until the queue is closed and drained, checks each one, and
// right after each get appends an 8-byte record to file argv[3]: u32
// producer, u32 seq, or 0xffffffff, 0 for a message that failed its checks.
import { openSync, writeSync } from 'node:fs'
import { crc32 } from 'node:zlib'
import { SharedMemoryReceiver } from 'shmq'

const CORRUPT = 0xffffffff
const [handle, log] = process.argv.slice(2)
const rx = SharedMemoryReceiver.attach(handle)
const fd = openSync(log, 'a')
process.send('ready')
const record = Buffer.alloc(8)
for (let n = 0; ; n++) {
  let m
  try {
    m = n % 4 === 3 ? rx.getSync() : await rx.get()
  } catch (e) {
    if (e.code === 'ERR_SHMQ_CLOSED') break
    throw e
  }
  const ok =
    Buffer.isBuffer(m) &&
    m.length >= 16 &&
    m.readUInt32LE(8) === m.length &&
    crc32(m.subarray(0, m.length - 4)) === m.readUInt32LE(m.length - 4)
  record.writeUInt32LE(ok ? m.readUInt32LE(0) : CORRUPT, 0)
  record.writeUInt32LE(ok ? m.readUInt32LE(4) : 0, 4)
  writeSync(fd, record)
}
rx.close()
