// Message sizes at the edges: empty, one byte, around the slot size, 64 MiB, 1 GiB.
import test from 'ava'
import { createSharedMemoryPair } from 'shmq'
import { pattern, run } from './helpers.mjs'

const slotSize = 4096
const MiB = 1024 * 1024
const sizes = [0, 1, slotSize - 1, slotSize, slotSize + 1, 64 * MiB, 1024 * MiB, 1]

test('sizes 0 B, 1 B, slotSize±1, 64 MiB and 1 GiB cross a process boundary intact', async (t) => {
  const [tx, rx] = createSharedMemoryPair({ capacity: 2, slotSize })
  const child = run('sizes-sender.mjs', [tx.handle, ...sizes])
  tx.close()
  for (const [i, size] of sizes.entries()) {
    const got = await rx.get({ timeout: 60_000 })
    t.true(Buffer.isBuffer(got))
    t.is(got.length, size)
    t.true(got.equals(pattern(size, i)), `content of the ${size}-byte message`)
  }
  await t.throwsAsync(rx.get({ timeout: 10_000 }), { code: 'ERR_SHMQ_CLOSED' })
  t.is((await child).code, 0)
  rx.close()
})

test('received values are their own: kept over many gets (small ones are slices of a pool) none changes', async (t) => {
  const [tx, rx] = createSharedMemoryPair({ capacity: 8 })
  const cycle = [0, 1, 7, 64, 100, 1000, 4095, 4096, 4097, 8000, 13000, 16384]
  const sizes = Array.from({ length: 600 }, (_, i) => cycle[(i * 5) % cycle.length])
  const child = run('sizes-sender.mjs', [tx.handle, ...sizes])
  tx.close()
  const kept = []
  for (let i = 0; i < sizes.length; i++)
    kept.push(i % 2 ? rx.getSync({ timeout: 60_000 }) : await rx.get({ timeout: 60_000 }))
  for (const [i, got] of kept.entries()) {
    t.is(got.length, sizes[i])
    t.true(got.equals(pattern(sizes[i], i)), `message ${i} (${sizes[i]} bytes) unchanged`)
  }
  // As Buffer.allocUnsafe's: a raw message under 4 KiB is a slice of a pool,
  // a larger one owns its memory (it can be transferred).
  for (const got of kept) if (got.length >= 4096) t.is(got.buffer.byteLength, got.length)
  // A pool slice's memory stays put: a transfer copies it (Node 20) or is
  // refused (Node 21 and later), never moves it away from its neighbours.
  const small = kept.find((b) => b.length === 64)
  try {
    t.true(small.equals(structuredClone(small, { transfer: [small.buffer] })))
  } catch (e) {
    t.is(e.name, 'DataCloneError')
  }
  t.true(small.buffer.byteLength > 64, 'the pool is still attached')
  t.true(small.equals(pattern(64, kept.indexOf(small))))
  t.is((await child).code, 0)
  rx.close()
})
