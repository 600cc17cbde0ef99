// Soak producer number argv[3] on queue argv[2]: puts checksummed messages of
// mixed sizes (inline, and payload-segment ones up to ~460 kB) until told to
// stop or killed. After each put returns it records how many messages it has
// put as a u32 at offset 0 of file argv[4], so a SIGKILL loses at most the
// record of the one message whose put had returned.
// Message: u32 producer, u32 seq, u32 length, bytes, u32 crc32 of all before.
import { randomBytes } from 'node:crypto'
import { openSync, writeSync } from 'node:fs'
import { crc32 } from 'node:zlib'
import { SharedMemorySender } from 'shmq'

const [handle, idArg, log] = process.argv.slice(2)
const id = Number(idArg)
const tx = SharedMemorySender.attach(handle)
const fd = openSync(log, 'w')
const count = Buffer.alloc(4)
const noise = randomBytes(512 * 1024)
let stop = false
process.on('message', () => (stop = true))
process.send('ready')

let seed = (id * 2654435761 + 1) >>> 0 || 1
const random = () => {
  seed ^= seed << 13
  seed ^= seed >>> 17
  seed ^= seed << 5
  return (seed >>> 0) / 2 ** 32
}
/** 60 % inline (slotSize is 4096), 30 % small and 10 % large payload segments. */
const size = () => {
  const r = random()
  if (r < 0.6) return 16 + Math.floor(random() * 4000)
  if (r < 0.9) return 4200 + Math.floor(random() * 60_000)
  return 65_536 + Math.floor(random() * 400_000)
}

for (let seq = 0; !stop; seq++) {
  const length = size()
  const m = Buffer.allocUnsafe(length)
  m.writeUInt32LE(id, 0)
  m.writeUInt32LE(seq, 4)
  m.writeUInt32LE(length, 8)
  const from = (seq * 97) % (noise.length - length)
  noise.copy(m, 12, from, from + length - 16)
  m.writeUInt32LE(crc32(m.subarray(0, length - 4)), length - 4)
  let put = false
  while (!put) {
    try {
      if (seq % 5 === 0) tx.putSync(m)
      else await tx.put(m)
      put = true
    } catch (e) {
      // Every consumer may be dead for a moment, until a replacement attaches
      // (but once told to stop, this message is simply not sent).
      if (e.code !== 'ERR_SHMQ_CLOSED') throw e
      if (stop) break
      await new Promise((r) => setTimeout(r, 20))
    }
  }
  if (!put) break
  count.writeUInt32LE(seq + 1, 0)
  writeSync(fd, count, 0, 4, 0)
  // A put that finds room resolves without a turn of the event loop: let the
  // 'stop' message in now and then.
  if (seq % 64 === 63) await new Promise((r) => setImmediate(r))
}
tx.close()
process.disconnect()
