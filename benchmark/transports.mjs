// The transports the benchmark compares. Each has a consumer side (runs in the
// measuring process, forks its peer) and a producer side (runs in the peer).
//   receive(cfg, forkPeer, onMessage): resolves when cfg.count messages arrived
//   send(cfg, message): in the peer, sends cfg.count copies of message
//   ping(cfg, forkPeer, message): resolves with cfg.count round-trip times (ns)
//   echo(cfg): in the peer, sends back everything it gets
import net from 'node:net'
import { performance } from 'node:perf_hooks'
import { once } from 'node:events'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createSharedMemoryPair, SharedMemoryReceiver, SharedMemorySender } from 'shmq'

/** Paced mode (`cfg.rate` messages a second, a burst each millisecond):
 * waits until message `i` is due. Resolves at once when not paced. */
let pacedStart = 0
export function pace(cfg, i) {
  if (!cfg.rate) return undefined
  if (i === 0) pacedStart = performance.now()
  const due = pacedStart + Math.floor(i / Math.max(1, cfg.rate / 1000))
  const wait = due - performance.now()
  return wait > 0 ? new Promise((r) => setTimeout(r, wait)) : undefined
}

/** Capacity for a message size: about 1 MiB in flight (2 to 64 messages); a
 * small ring stays in cache, and large messages reuse their payload segments. */
const capacityFor = (size) => Math.max(2, Math.min(64, Math.floor((1024 * 1024) / size)))

const shmq = (sync) => ({
  async receive(cfg, forkPeer, onMessage) {
    const [tx, rx] = createSharedMemoryPair({ capacity: capacityFor(cfg.size) })
    const peer = forkPeer([tx.handle])
    tx.close()
    if (cfg.rate && !sync) {
      // A paced stream's consumer as an application would write it.
      let i = 0
      for await (const m of rx) {
        onMessage(m)
        if (++i === cfg.count) break
      }
    } else {
      for (let i = 0; i < cfg.count; i++) onMessage(sync ? rx.getSync() : await rx.get())
    }
    rx.close()
    await peer.exited
  },
  async send(cfg, message) {
    const tx = SharedMemorySender.attach(cfg.peerArgs[0])
    for (let i = 0; i < cfg.count; i++) {
      await pace(cfg, i)
      if (sync) tx.putSync(message)
      else await tx.put(message)
    }
    await tx.waitForAllAck()
    tx.close()
  },
  async ping(cfg, forkPeer, message) {
    const [tx, peerRx] = createSharedMemoryPair({ capacity: 4 })
    const [peerTx, rx] = createSharedMemoryPair({ capacity: 4 })
    const peer = forkPeer([peerRx.handle, peerTx.handle])
    const times = new Float64Array(cfg.count)
    for (let i = -cfg.warmup; i < cfg.count; i++) {
      const t0 = process.hrtime.bigint()
      if (sync) {
        tx.putSync(message)
        rx.getSync()
      } else {
        await tx.put(message)
        await rx.get()
      }
      if (i >= 0) times[i] = Number(process.hrtime.bigint() - t0)
    }
    tx.close()
    await peer.exited
    rx.close()
    return times
  },
  async echo(cfg) {
    const rx = SharedMemoryReceiver.attach(cfg.peerArgs[0])
    const tx = SharedMemorySender.attach(cfg.peerArgs[1])
    if (sync) {
      for (;;) {
        let m
        try {
          m = rx.getSync()
        } catch {
          break
        }
        tx.putSync(m)
      }
    } else {
      for await (const m of rx) await tx.put(m)
    }
    tx.close()
    rx.close()
  },
})

/** Zero-copy: the producer writes one byte per 4 KiB page of each
 * reservation in place, the consumer reads one byte per page of each lease. */
const shmqLease = {
  inPlace: true,
  async receive(cfg, forkPeer, onMessage) {
    const [tx, rx] = createSharedMemoryPair({ capacity: capacityFor(cfg.size) })
    const peer = forkPeer([tx.handle])
    tx.close()
    for (let i = 0; i < cfg.count; i++) {
      const lease = await rx.lease()
      onMessage(lease.value)
      lease.release()
    }
    rx.close()
    await peer.exited
  },
  async send(cfg) {
    const tx = SharedMemorySender.attach(cfg.peerArgs[0])
    for (let i = 0; i < cfg.count; i++) {
      const r = await tx.reserve(cfg.size)
      const b = r.buffer
      for (let at = 0; at < b.length; at += 4096) b[at] = 0x5a
      r.commit()
    }
    await tx.waitForAllAck()
    tx.close()
  },
  async ping(cfg, forkPeer, message) {
    const [tx, peerRx] = createSharedMemoryPair({ capacity: 4 })
    const [peerTx, rx] = createSharedMemoryPair({ capacity: 4 })
    const peer = forkPeer([peerRx.handle, peerTx.handle])
    const times = new Float64Array(cfg.count)
    for (let i = -cfg.warmup; i < cfg.count; i++) {
      const t0 = process.hrtime.bigint()
      const r = await tx.reserve(message.length)
      message.copy(r.buffer)
      r.commit()
      ;(await rx.lease()).release()
      if (i >= 0) times[i] = Number(process.hrtime.bigint() - t0)
    }
    tx.close()
    await peer.exited
    rx.close()
    return times
  },
  async echo(cfg) {
    const rx = SharedMemoryReceiver.attach(cfg.peerArgs[0])
    const tx = SharedMemorySender.attach(cfg.peerArgs[1])
    for (;;) {
      let lease
      try {
        lease = await rx.lease()
      } catch {
        break
      }
      const r = await tx.reserve(lease.value.length)
      lease.value.copy(r.buffer)
      r.commit()
      lease.release()
    }
    tx.close()
    rx.close()
  },
}

/** Zero-copy with work on every 8-byte word: the producer fills a
 * Float64Array view of each reservation, the consumer sums one of each lease. */
const shmqLeaseF64 = {
  inPlace: true,
  async receive(cfg, forkPeer, onMessage) {
    const [tx, rx] = createSharedMemoryPair({ capacity: capacityFor(cfg.size) })
    const peer = forkPeer([tx.handle])
    tx.close()
    let total = 0
    for (let i = 0; i < cfg.count; i++) {
      const lease = await rx.lease()
      const v = lease.value
      const f = new Float64Array(v.buffer, v.byteOffset, v.length / 8)
      for (let j = 0; j < f.length; j++) total += f[j]
      onMessage(v)
      lease.release()
    }
    if (Number.isNaN(total)) throw new Error('bad sum')
    rx.close()
    await peer.exited
  },
  async send(cfg) {
    const tx = SharedMemorySender.attach(cfg.peerArgs[0])
    for (let i = 0; i < cfg.count; i++) {
      const r = await tx.reserve(cfg.size)
      new Float64Array(r.buffer.buffer, r.buffer.byteOffset, cfg.size / 8).fill(i)
      r.commit()
    }
    await tx.waitForAllAck()
    tx.close()
  },
}

/** putMany / getMany: batches of up to 256 messages (and at most 1 MiB) per native call. */
const batchFor = (size) => Math.max(1, Math.min(256, Math.floor((1024 * 1024) / size)))
const shmqBatch = {
  async receive(cfg, forkPeer, onMessage) {
    const [tx, rx] = createSharedMemoryPair({ capacity: Math.max(capacityFor(cfg.size), 2 * batchFor(cfg.size)) })
    const peer = forkPeer([tx.handle])
    tx.close()
    for (let n = 0; n < cfg.count; ) {
      for (const m of await rx.getMany(256)) {
        onMessage(m)
        n++
      }
    }
    rx.close()
    await peer.exited
  },
  async send(cfg, message) {
    const tx = SharedMemorySender.attach(cfg.peerArgs[0])
    const full = Array(batchFor(cfg.size)).fill(message)
    for (let sent = 0; sent < cfg.count; sent += full.length) {
      await tx.putMany(cfg.count - sent >= full.length ? full : full.slice(0, cfg.count - sent))
    }
    await tx.waitForAllAck()
    tx.close()
  },
  ping: shmq(false).ping,
  echo: shmq(false).echo,
}

/** Node's IPC channel; `json` sends base64 text (JSON cannot carry bytes). */
const ipc = (serialization) => {
  const encode = serialization === 'json' ? (m) => m.toString('base64') : (m) => m
  const decode = serialization === 'json' ? (m) => Buffer.from(m, 'base64') : (m) => m
  return {
    serialization,
    async receive(cfg, forkPeer, onMessage) {
      const peer = forkPeer([])
      let n = 0
      await new Promise((resolve) =>
        peer.on('message', (m) => {
          onMessage(decode(m))
          if (++n === cfg.count) resolve()
        }),
      )
      peer.send('done')
      await peer.exited
    },
    async send(cfg, message) {
      const payload = encode(message)
      // Keep a bounded number of sends in flight (Node buffers the rest in memory).
      let inFlight = 0
      let wake
      for (let i = 0; i < cfg.count; i++) {
        await pace(cfg, i)
        while (inFlight >= 16) await new Promise((r) => (wake = r))
        inFlight++
        process.send(payload, () => {
          inFlight--
          wake?.()
        })
      }
      await once(process, 'message')
      process.disconnect()
    },
    async ping(cfg, forkPeer, message) {
      const peer = forkPeer([])
      const payload = encode(message)
      const times = new Float64Array(cfg.count)
      for (let i = -cfg.warmup; i < cfg.count; i++) {
        const t0 = process.hrtime.bigint()
        peer.send(payload)
        decode((await once(peer, 'message'))[0])
        if (i >= 0) times[i] = Number(process.hrtime.bigint() - t0)
      }
      peer.disconnect()
      await peer.exited
      return times
    },
    async echo() {
      process.on('message', (m) => process.send(decode(m) && m))
      await once(process, 'disconnect')
    },
  }
}

/** Length-prefixed frames over a Unix socket, written as well as we can:
 * small frames coalesced into 64 KiB writes, large payloads written without a copy. */
const unixSocket = {
  async receive(cfg, forkPeer, onMessage) {
    const path = join(tmpdir(), `shmq-bench-${process.pid}.sock`)
    const server = net.createServer()
    server.listen(path)
    await once(server, 'listening')
    const peer = forkPeer([path])
    const [socket] = await once(server, 'connection')
    let n = 0
    await new Promise((resolve) =>
      readFrames(socket, (m) => {
        onMessage(m)
        if (++n === cfg.count) resolve()
      }),
    )
    socket.end()
    server.close()
    await peer.exited
  },
  async send(cfg, message) {
    const socket = net.connect(cfg.peerArgs[0])
    await once(socket, 'connect')
    const header = Buffer.alloc(4)
    header.writeUInt32LE(message.length)
    if (message.length + 4 <= 16 * 1024) {
      const frame = Buffer.concat([header, message])
      const perBatch = Math.max(1, Math.floor((64 * 1024) / frame.length))
      const batch = Buffer.concat(Array(perBatch).fill(frame))
      for (let sent = 0; sent < cfg.count; sent += perBatch) {
        const k = Math.min(perBatch, cfg.count - sent)
        if (!socket.write(k === perBatch ? batch : batch.subarray(0, k * frame.length))) await once(socket, 'drain')
      }
    } else {
      for (let i = 0; i < cfg.count; i++) {
        socket.cork()
        socket.write(header)
        const ok = socket.write(message)
        socket.uncork()
        if (!ok) await once(socket, 'drain')
      }
    }
    await once(socket, 'end')
    socket.destroy()
  },
  async ping(cfg, forkPeer, message) {
    const path = join(tmpdir(), `shmq-bench-${process.pid}.sock`)
    const server = net.createServer().listen(path)
    await once(server, 'listening')
    const peer = forkPeer([path])
    const [socket] = await once(server, 'connection')
    socket.setNoDelay(true)
    const frame = Buffer.concat([Buffer.alloc(4), message])
    frame.writeUInt32LE(message.length)
    let reply
    readFrames(socket, () => reply())
    const times = new Float64Array(cfg.count)
    for (let i = -cfg.warmup; i < cfg.count; i++) {
      const t0 = process.hrtime.bigint()
      const got = new Promise((r) => (reply = r))
      socket.write(frame)
      await got
      if (i >= 0) times[i] = Number(process.hrtime.bigint() - t0)
    }
    socket.end()
    server.close()
    await peer.exited
    return times
  },
  async echo(cfg) {
    const socket = net.connect(cfg.peerArgs[0])
    socket.setNoDelay(true)
    readFrames(socket, (m) => {
      const header = Buffer.alloc(4)
      header.writeUInt32LE(m.length)
      socket.write(Buffer.concat([header, m]))
    })
    await once(socket, 'end')
    socket.end()
  },
}

/** Calls onFrame with each length-prefixed frame's payload as its own Buffer. */
function readFrames(socket, onFrame) {
  let pending = []
  let pendingBytes = 0
  let need = -1
  socket.on('data', (chunk) => {
    let off = 0
    while (off < chunk.length) {
      if (need < 0) {
        // Header (rarely split across chunks; handle it anyway).
        if (pendingBytes + chunk.length - off < 4) {
          pending.push(chunk.subarray(off))
          pendingBytes += chunk.length - off
          return
        }
        if (pendingBytes > 0) {
          const joined = Buffer.concat([...pending, chunk.subarray(off)])
          pending = []
          pendingBytes = 0
          chunk = joined
          off = 0
        }
        need = chunk.readUInt32LE(off)
        off += 4
      }
      const available = chunk.length - off
      if (pendingBytes === 0 && available >= need) {
        onFrame(chunk.subarray(off, off + need))
        off += need
        need = -1
      } else if (pendingBytes + available >= need) {
        const take = need - pendingBytes
        pending.push(chunk.subarray(off, off + take))
        onFrame(Buffer.concat(pending, need))
        off += take
        pending = []
        pendingBytes = 0
        need = -1
      } else {
        pending.push(chunk.subarray(off))
        pendingBytes += available
        return
      }
    }
  })
}

/** Measured in their own section of bench.mjs, not in the one-way table. */
export const extraTransports = { 'shmq lease f64': shmqLeaseF64 }

export const transports = {
  'shmq async': shmq(false),
  'shmq sync': shmq(true),
  'shmq lease': shmqLease,
  'shmq batch': shmqBatch,
  'ipc advanced': ipc('advanced'),
  'ipc json': ipc('json'),
  'unix socket': unixSocket,
}
