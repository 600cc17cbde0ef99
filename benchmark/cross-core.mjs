// The ceiling for a transport that copies a message into shared memory on one
// core and out into a fresh value on another: two threads, a SharedArrayBuffer
// ring of 4 slots, Atomics for the hand-off, nothing else. One copy in
// (TypedArray.set) and one copy out (slice), like shmq's default API.
//   node benchmark/cross-core.mjs
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads'

const SLOTS = 4
const sizes = [64 * 1024, 1024 * 1024, 16 * 1024 * 1024]

if (isMainThread) {
  console.log('| size | copy in + copy out, two cores |\n|---|---|')
  for (const size of sizes) {
    const count = Math.max(64, Math.floor((4 * 1024 ** 3) / size))
    const data = new SharedArrayBuffer(SLOTS * size)
    const flags = new Int32Array(new SharedArrayBuffer(8 * SLOTS))
    const consumer = new Worker(new URL(import.meta.url), {
      workerData: { role: 'consumer', size, count, data, flags },
    })
    const producer = new Worker(new URL(import.meta.url), {
      workerData: { role: 'producer', size, count, data, flags },
    })
    const [gbps] = await Promise.all([
      new Promise((resolve) => consumer.once('message', resolve)),
      new Promise((resolve) => producer.once('exit', resolve)),
    ])
    console.log(
      `| ${size >= 1024 * 1024 ? `${size / 1024 / 1024} MiB` : `${size / 1024} KiB`} | ${gbps.toFixed(2)} GB/s |`,
    )
  }
} else {
  const { role, size, count, data, flags } = workerData
  const ring = new Uint8Array(data)
  if (role === 'producer') {
    const message = new Uint8Array(size).fill(7)
    for (let i = 0; i < count; i++) {
      const slot = i % SLOTS
      while (Atomics.load(flags, slot) !== 0) Atomics.wait(flags, slot, 1, 1)
      ring.set(message, slot * size)
      Atomics.store(flags, slot, 1)
      Atomics.notify(flags, slot)
    }
  } else {
    let sink = 0
    let start = 0n
    for (let i = 0; i < count; i++) {
      const slot = i % SLOTS
      while (Atomics.load(flags, slot) !== 1) Atomics.wait(flags, slot, 0, 1)
      if (i === 1) start = process.hrtime.bigint()
      const own = ring.slice(slot * size, (slot + 1) * size)
      sink ^= own[size - 1]
      Atomics.store(flags, slot, 0)
      Atomics.notify(flags, slot)
    }
    parentPort.postMessage(((count - 1) * size) / Number(process.hrtime.bigint() - start) + sink * 0)
  }
}
