// putMany / getMany: many messages per native call, each whole or not at all,
// order kept per sender, across processes.
import test from 'ava'
import { fork } from 'node:child_process'
import { once } from 'node:events'
import { MessageChannel } from 'node:worker_threads'
import { createSharedMemoryPair } from 'shmq'
import { fixture, shmNames } from './helpers.mjs'

test('two producers putMany, two getMany loops in this process: nothing lost or duplicated, per-sender order kept', async (t) => {
  const [tx, rx] = createSharedMemoryPair({ capacity: 64, slotSize: 256 })
  const count = 20_000
  const children = [0, 1].map((id) => fork(fixture('batch-peer.mjs'), [tx.handle, id, count, 256]))
  // Closed before a producer attached, the queue would be closed for good
  // once the other one finished (a sender took part and none is left).
  await Promise.all(children.map((c) => once(c, 'message')))
  tx.close()
  const seen = [new Set(), new Set()]
  let received = 0
  // Each consumer sees each producer's messages in order (two consumers'
  // batches may be handled in either order: their awaits interleave).
  const consume = async () => {
    const last = [-1, -1]
    for (;;) {
      let batch
      try {
        batch = await rx.getMany(300)
      } catch (e) {
        if (e.code === 'ERR_SHMQ_CLOSED') return
        throw e
      }
      t.true(batch.length >= 1 && batch.length <= 300)
      for (const m of batch) {
        const [id, seq] = String(m).split(':').map(Number)
        if (seq <= last[id]) t.fail(`producer ${id}: ${seq} after ${last[id]}`)
        if (seen[id].has(seq)) t.fail(`producer ${id}: ${seq} twice`)
        t.is(typeof m === 'string', seq % 2 === 1)
        last[id] = seq
        seen[id].add(seq)
        received++
      }
    }
  }
  await Promise.all([consume(), consume(), ...children.map((c) => once(c, 'exit'))])
  t.is(received, 2 * count)
  t.deepEqual(
    seen.map((s) => s.size),
    [count, count],
  )
  rx.close()
  t.deepEqual(shmNames(tx.handle), [])
})

test('putMany: bad values send nothing; a full queue times out with how many were sent; getMany checks max', async (t) => {
  const [tx, rx] = createSharedMemoryPair({ capacity: 4, maxMessageSize: 100 })
  t.throws(() => tx.putManySync([1, () => {}]), { code: 'ERR_SHMQ_NOT_CLONEABLE' })
  t.throws(() => tx.putManySync(['x', Buffer.alloc(101)]), { code: 'ERR_SHMQ_TOO_LARGE' })
  t.throws(() => tx.putManySync('abc'), { code: 'ERR_INVALID_ARG_TYPE' })
  t.throws(() => rx.getNowait(), { code: 'ERR_SHMQ_EMPTY' }, 'nothing was sent')
  const e = await t.throwsAsync(tx.putMany([1, 2, 3, 4, 5, 6], { timeout: 50 }), { code: 'ERR_SHMQ_FULL' })
  t.is(e.sent, 4)
  t.deepEqual(rx.getManySync(10), [1, 2, 3, 4])
  t.throws(() => rx.getManySync(0), { code: 'ERR_OUT_OF_RANGE' })
  t.throws(() => rx.getManySync(2, { block: false }), { code: 'ERR_SHMQ_EMPTY' })
  tx.putManySync([])
  tx.putSync(Buffer.alloc(100, 1))
  t.is(rx.getManySync(5)[0].length, 100)
  tx.close()
  t.throws(() => rx.getManySync(2), { code: 'ERR_SHMQ_CLOSED' })
  rx.close()
})

test('getMany returns a message larger than its batch buffer on its own', (t) => {
  const [tx, rx] = createSharedMemoryPair({ capacity: 4 })
  tx.putManySync(['a', Buffer.alloc(3 << 20, 2), 'b'])
  t.deepEqual(rx.getManySync(10), ['a'])
  const [big] = rx.getManySync(10)
  t.is(big.length, 3 << 20)
  t.deepEqual(rx.getManySync(10), ['b'])
  tx.close()
  rx.close()
})

test("getMany's Buffers are each the message's own: mutating or transferring one leaves the others, and a later batch leaves them too", (t) => {
  const [tx, rx] = createSharedMemoryPair({ capacity: 64, slotSize: 8192 })
  t.teardown(() => {
    tx.close()
    rx.close()
  })
  const sizes = [0, 4, 1500, 3000, 5000, 64]
  tx.putManySync(sizes.map((n, i) => Buffer.alloc(n, i + 1)))
  const got = rx.getManySync(100)
  t.deepEqual(
    got.map((b) => b.length),
    sizes,
  )
  got[2].fill(0xee)
  const { port1 } = new MessageChannel()
  // A Buffer with its own ArrayBuffer can be transferred; one sharing a pool cannot.
  const transferred = new Set()
  for (const [i, b] of got.entries()) {
    if (b.byteLength > 0 && b.byteLength === b.buffer.byteLength) {
      port1.postMessage(b, [b.buffer])
      transferred.add(i)
    }
  }
  port1.close()
  t.true(transferred.has(4), 'the 5000-byte message has memory of its own')
  tx.putManySync([Buffer.alloc(64, 0x77), Buffer.alloc(3000, 0x78)])
  t.is(rx.getManySync(100).length, 2)
  for (const [i, b] of got.entries()) {
    if (transferred.has(i)) continue
    t.is(b.length, sizes[i], `message ${i} kept its bytes`)
    if (i !== 2)
      t.true(
        b.every((x) => x === i + 1),
        `message ${i}`,
      )
  }
  t.true(got[2].every((x) => x === 0xee))
})

test('getMany takes many messages a call whatever their size, in order', (t) => {
  const [tx, rx] = createSharedMemoryPair({ capacity: 128 })
  t.teardown(() => {
    tx.close()
    rx.close()
  })
  for (const size of [64, 5000, 9000, 16384, 20000, 65536]) {
    tx.putManySync(Array.from({ length: 100 }, (_, i) => Buffer.alloc(size, i)))
    let calls = 0
    const got = []
    while (got.length < 100) {
      got.push(...rx.getManySync(100))
      calls++
    }
    t.true(calls <= 10, `${size} B: 100 messages in ${calls} calls`)
    t.true(
      got.every((b, i) => b.length === size && b[0] === i && b[size - 1] === i),
      `${size} B: each whole, in order`,
    )
  }
})
