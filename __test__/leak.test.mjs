// Nothing of a queue is left in /dev/shm once every process has closed or exited.
import test from 'ava'
import { createSharedMemoryPair, SharedMemoryReceiver } from 'shmq'
import { run, shmNames } from './helpers.mjs'

for (const how of ['natural exit', 'exit']) {
  test(`a creator that ends by ${how} without closing leaves the queue to its attached receiver, then nothing`, async (t) => {
    let handle
    const creator = run('creator.mjs', [how], {
      onMessage: (m, child) => {
        handle = m.handle
        // Attach while the creator is alive, then let it finish.
        const rx = SharedMemoryReceiver.attach(handle)
        t.true(shmNames(handle).length >= 1)
        rx.get().then(async (small) => {
          t.is(small, 'small')
          child.send('go')
          t.is((await rx.get()).length, 100_000)
          await t.throwsAsync(rx.get(), { code: 'ERR_SHMQ_CLOSED' })
          rx.close()
        })
      },
    })
    t.is((await creator).code, 0)
    await new Promise((r) => setTimeout(r, 200))
    t.deepEqual(shmNames(handle), [], 'queue and payload segments removed')
  })
}

test('a creator that exits with undelivered messages removes them all', async (t) => {
  let handle
  const creator = run('creator.mjs', ['exit'], {
    onMessage: (m, child) => {
      handle = m.handle
      setTimeout(() => child.send('go'), 100)
    },
  })
  t.is((await creator).code, 0)
  t.deepEqual(shmNames(handle), [])
})

test('payload segments are reused, not created per message', async (t) => {
  const [tx, rx] = createSharedMemoryPair({ capacity: 2, slotSize: 64 })
  for (let i = 0; i < 50; i++) {
    await tx.put(Buffer.alloc(10_000 + i))
    await rx.get()
  }
  t.true(shmNames(`${tx.handle}-`).length <= 3, `${shmNames(`${tx.handle}-`).length} payload segments`)
  tx.close()
  rx.close()
  t.deepEqual(shmNames(tx.handle), [])
})
