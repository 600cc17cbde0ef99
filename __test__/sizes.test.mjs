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
