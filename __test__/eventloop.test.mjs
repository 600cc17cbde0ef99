// Waiting never blocks the event loop and never holds libuv thread-pool threads.
import test from 'ava'
import { readFile } from 'node:fs/promises'
import { pbkdf2 } from 'node:crypto'
import { promisify } from 'node:util'
import { createSharedMemoryPair } from 'shmq'

test('six waiting receivers leave timers, fs and the thread pool free', async (t) => {
  const queues = Array.from({ length: 6 }, () => createSharedMemoryPair({ capacity: 1 }))
  const waits = queues.map(([, rx]) => rx.get())
  const waitingPuts = queues.map(([tx]) => tx.put('fill').then(() => tx.put('blocked')))

  let ticks = 0
  const interval = setInterval(() => ticks++, 10)
  const started = Date.now()
  // 16 file reads and 8 pbkdf2 jobs: more than the 4 pool threads, so they
  // would stall if any waiting put/get held a pool thread.
  const poolWork = await Promise.all([
    ...Array.from({ length: 16 }, () => readFile(new URL(import.meta.url))),
    ...Array.from({ length: 8 }, () => promisify(pbkdf2)('pw', 'salt', 1000, 32, 'sha256')),
  ])
  const poolMs = Date.now() - started
  await new Promise((r) => setTimeout(r, 300))
  clearInterval(interval)

  t.is(poolWork.length, 24)
  t.true(poolMs < 2000, `thread-pool work took ${poolMs} ms`)
  t.true(ticks >= 15, `only ${ticks} timer ticks in ~300 ms`)

  t.deepEqual(await Promise.all(waits), Array(6).fill('fill'))
  await Promise.all(waitingPuts)
  for (const [tx, rx] of queues) {
    t.is(rx.getNowait(), 'blocked')
    tx.close()
    rx.close()
  }
})

test('a message that is already there is delivered without waiting', async (t) => {
  const [tx, rx] = createSharedMemoryPair()
  tx.putSync('ready')
  let otherRan = false
  setImmediate(() => (otherRan = true))
  t.is(await rx.get(), 'ready')
  t.false(otherRan, 'resolved before the event loop turned')
  tx.close()
  rx.close()
})
