// Nothing of a queue is left in /dev/shm once every process has closed or exited.
import test from 'ava'
import { execFileSync } from 'node:child_process'
import { once } from 'node:events'
import { Worker } from 'node:worker_threads'
import { fileURLToPath } from 'node:url'
import { createSharedMemoryPair, SharedMemoryReceiver } from 'shmq'
import { crashedQueue, fixture, run, shmNames } from './helpers.mjs'

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

const cli = (...args) =>
  execFileSync(process.execPath, [fileURLToPath(new URL('../dist/cli.js', import.meta.url)), ...args], {
    encoding: 'utf8',
  })

test.serial(
  'after a crash: `shmq ls` shows the queue dead, `gc` lists it, `gc --force` removes it and never a live one',
  async (t) => {
    const [liveTx, liveRx] = createSharedMemoryPair()
    liveTx.putSync(Buffer.alloc(200_000))
    const { handle, signal } = await crashedQueue()
    t.is(signal, 'SIGKILL')
    t.true(shmNames(handle).length >= 2, 'the crash left the queue and its payload segment')
    const listed = JSON.parse(cli('ls', '--json'))
    t.is(listed.find((q) => q.name === handle)?.status, 'dead')
    const live = listed.find((q) => q.name === liveTx.handle)
    t.like(live, { status: 'live', capacity: 16, depth: 1, senders: 1, receivers: 0, pids: [process.pid] })
    t.true(live.bytes > 1_000_000)
    t.regex(cli('ls'), new RegExp(`${handle}\\s+dead`))
    t.regex(cli('gc'), new RegExp(`would remove ${handle}`))
    t.true(shmNames(handle).length >= 2, 'a dry run removes nothing')
    const removed = cli('gc', '--force')
    t.regex(removed, new RegExp(`removed ${handle}`))
    t.notRegex(removed, new RegExp(liveTx.handle))
    t.deepEqual(shmNames(handle), [])
    t.is(liveRx.getSync().length, 200_000, 'the live queue still works')
    liveTx.close()
    liveRx.close()
  },
)

test.serial('after a crash, the next shmq start removes the dead queue', async (t) => {
  const { handle } = await crashedQueue()
  t.true(shmNames(handle).length >= 1)
  const { code } = await run('creator.mjs', ['exit'], { onMessage: (_, child) => child.send('go') })
  t.is(code, 0)
  t.deepEqual(shmNames(handle), [], 'removed by the first queue the new process created')
})

test.serial('a worker that is terminate()d releases the queues it kept for late attachers', async (t) => {
  const worker = new Worker(fixture('worker-creator.mjs'))
  const [handle] = await once(worker, 'message')
  await new Promise((r) => setTimeout(r, 50))
  t.true(shmNames(handle).length > 0, 'kept while nobody has attached')
  await worker.terminate()
  await new Promise((r) => setTimeout(r, 100))
  t.deepEqual(shmNames(handle), [], 'released when the worker thread ended')
})
