// The other ways Node runs code in parallel: cluster workers, worker threads, streams across fork.
import test from 'ava'
import { randomBytes } from 'node:crypto'
import { once } from 'node:events'
import { pipeline } from 'node:stream/promises'
import { Readable } from 'node:stream'
import { Worker } from 'node:worker_threads'
import { fork } from 'node:child_process'
import { crc32 } from 'node:zlib'
import { createSharedMemoryPair } from 'shmq'
import { fixture, run } from './helpers.mjs'

test('cluster: a primary feeds three workers; every message is taken exactly once', async (t) => {
  const { code, messages } = await run('cluster-primary.mjs')
  t.is(code, 0)
  const { reports, expected } = messages[0]
  t.is(reports.length, 3)
  t.is(
    reports.reduce((s, r) => s + r.count, 0),
    300,
  )
  t.is(
    reports.reduce((s, r) => s + r.sum, 0),
    expected,
  )
})

test('worker_threads: a worker attaches from workerData (an end itself, or its handle)', async (t) => {
  const [tx, workerRx] = createSharedMemoryPair({ capacity: 4 })
  const [workerTx, rx] = createSharedMemoryPair({ capacity: 4 })
  // workerData is structured-cloned: the end arrives as { handle, capacity }.
  const worker = new Worker(fixture('thread-echo.mjs'), { workerData: { rx: workerRx, tx: `${workerTx}` } })
  const exited = once(worker, 'exit')
  workerRx.close()
  workerTx.close()
  const big = randomBytes(3 * 1024 * 1024)
  await tx.put(big)
  await tx.put({ hello: 'thread' })
  t.true((await rx.get()).equals(big))
  t.deepEqual(await rx.get(), { hello: 'thread' })
  tx.close()
  await t.throwsAsync(rx.get(), { code: 'ERR_SHMQ_CLOSED' })
  t.deepEqual(await exited, [0])
  rx.close()
})

test('streams: pipeline into sender.writable() reaches a child reading receiver.readable()', async (t) => {
  const [tx, rx] = createSharedMemoryPair({ capacity: 2, slotSize: 1024 })
  const sink = run('stream-sink.mjs', [rx.handle])
  rx.close()
  const chunks = Array.from({ length: 200 }, (_, i) => randomBytes(1 + ((i * 7919) % 50_000)))
  await pipeline(Readable.from(chunks), tx.writable())
  const { code, messages } = await sink
  t.is(code, 0)
  t.deepEqual(messages[0], {
    bytes: chunks.reduce((s, c) => s + c.length, 0),
    crc: chunks.reduce((crc, c) => crc32(c, crc), 0),
    chunks: chunks.length,
  })
})

for (const serialization of ['json', 'advanced']) {
  test(`child.send({ rx: receiver }) carries the queue with '${serialization}' serialization`, async (t) => {
    const [tx, rx] = createSharedMemoryPair()
    const child = fork(fixture('send-attach.mjs'), { serialization, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
    const reply = once(child, 'message')
    const exited = once(child, 'exit')
    child.send({ rx })
    rx.close()
    await tx.put({ via: serialization })
    t.deepEqual((await reply)[0], { via: serialization })
    tx.close()
    t.deepEqual(await exited, [0, null])
  })
}

test('destroying a writable closes its sender, so a waiting receiver sees the queue closed', async (t) => {
  const [tx, rx] = createSharedMemoryPair()
  const w = tx.writable()
  await new Promise((resolve) => w.write('one', resolve))
  const closed = new Promise((resolve) => w.on('close', resolve))
  w.on('error', (e) => t.is(e.message, 'upstream failed'))
  w.destroy(new Error('upstream failed'))
  await closed
  t.is(await rx.get(), 'one')
  await t.throwsAsync(rx.get({ timeout: 2000 }), { code: 'ERR_SHMQ_CLOSED' })
  rx.close()
})
