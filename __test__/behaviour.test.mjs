// Full / empty / timeout / abort / close rules, bad options and bad values.
import test from 'ava'
import { createSharedMemoryPair, SharedMemoryReceiver, SharedMemorySender, QueueClosedError, ShmqError } from 'shmq'
import { shmNames, sleep, within } from './helpers.mjs'

test('bad options throw TypeError / RangeError naming the option', (t) => {
  t.throws(() => createSharedMemoryPair({ capacity: 0 }), {
    instanceOf: RangeError,
    code: 'ERR_OUT_OF_RANGE',
    message: /capacity/,
  })
  t.throws(() => createSharedMemoryPair({ capacity: 1.5 }), { instanceOf: RangeError, message: /capacity/ })
  t.throws(() => createSharedMemoryPair({ capacity: '4' }), {
    instanceOf: TypeError,
    code: 'ERR_INVALID_ARG_TYPE',
    message: /capacity/,
  })
  t.throws(() => createSharedMemoryPair({ slotSize: -1 }), { instanceOf: RangeError, message: /slotSize/ })
  t.throws(() => createSharedMemoryPair({ maxMessageSize: 2 ** 40 }), {
    instanceOf: RangeError,
    message: /maxMessageSize/,
  })
  t.throws(() => createSharedMemoryPair(null), { instanceOf: TypeError })
  const [tx, rx] = createSharedMemoryPair()
  t.throws(() => tx.putSync('x', { timeout: -1 }), { instanceOf: RangeError, message: /timeout/ })
  t.throws(() => tx.putSync('x', { block: 'no' }), { instanceOf: TypeError, message: /block/ })
  t.is(rx.size, 0, 'nothing enqueued by a rejected call')
  tx.close()
  rx.close()
})

test('defaults: capacity 16, slot size 64 KiB', (t) => {
  const [tx, rx] = createSharedMemoryPair()
  t.is(tx.capacity, 16)
  for (let i = 0; i < 16; i++) tx.putNowait(i)
  t.throws(() => tx.putNowait(16), { code: 'ERR_SHMQ_FULL' })
  t.is(rx.size, 16)
  tx.close()
  rx.close()
})

test('not cloneable and too large values are refused and enqueue nothing', async (t) => {
  const [tx, rx] = createSharedMemoryPair({ maxMessageSize: 100 })
  t.throws(() => tx.putSync(() => 1), { instanceOf: ShmqError, code: 'ERR_SHMQ_NOT_CLONEABLE', message: /function/ })
  await t.throwsAsync(tx.put({ deep: [Symbol('s')] }), { code: 'ERR_SHMQ_NOT_CLONEABLE', message: /symbol/ })
  await t.throwsAsync(tx.put({ w: new WeakMap() }), { code: 'ERR_SHMQ_NOT_CLONEABLE', message: /WeakMap/ })
  t.throws(() => tx.putSync(Buffer.alloc(101)), { instanceOf: ShmqError, code: 'ERR_SHMQ_TOO_LARGE' })
  t.throws(() => tx.putSync('é'.repeat(51)), { code: 'ERR_SHMQ_TOO_LARGE' }, 'counted in encoded bytes')
  tx.putSync(Buffer.alloc(100))
  t.is(rx.size, 1)
  t.is(rx.getSync().length, 100)
  tx.close()
  rx.close()
})

test('full: putNowait, block:false and timeout reject QueueFullError; space lets put through', async (t) => {
  const [tx, rx] = createSharedMemoryPair({ capacity: 2 })
  await tx.put(1)
  await tx.put(2)
  t.throws(() => tx.putNowait(3), { code: 'ERR_SHMQ_FULL', name: 'QueueFullError' })
  await t.throwsAsync(tx.put(3, { block: false }), { code: 'ERR_SHMQ_FULL' })
  const started = Date.now()
  await t.throwsAsync(tx.put(3, { timeout: 100 }), { code: 'ERR_SHMQ_FULL' })
  t.true(Date.now() - started >= 95)
  t.throws(() => tx.putSync(3, { timeout: 50 }), { code: 'ERR_SHMQ_FULL' })
  const pending = tx.put(3)
  setTimeout(() => rx.getNowait(), 30)
  await pending
  t.deepEqual([rx.getNowait(), rx.getNowait()], [2, 3])
  tx.close()
  rx.close()
})

test('empty: getNowait, block:false and timeout reject QueueEmptyError', async (t) => {
  const [tx, rx] = createSharedMemoryPair()
  t.throws(() => rx.getNowait(), { code: 'ERR_SHMQ_EMPTY', name: 'QueueEmptyError' })
  await t.throwsAsync(rx.get({ block: false }), { code: 'ERR_SHMQ_EMPTY' })
  await t.throwsAsync(rx.get({ timeout: 50 }), { code: 'ERR_SHMQ_EMPTY' })
  t.throws(() => rx.getSync({ timeout: 20 }), { code: 'ERR_SHMQ_EMPTY' })
  tx.close()
  rx.close()
})

test('abort: a signal rejects a waiting get or put with AbortError, and loses nothing', async (t) => {
  const [tx, rx] = createSharedMemoryPair({ capacity: 1 })
  const ac = new AbortController()
  const get = rx.get({ signal: ac.signal })
  setTimeout(() => ac.abort(), 20)
  await t.throwsAsync(get, { name: 'AbortError' })
  await t.throwsAsync(rx.get({ signal: AbortSignal.abort() }), { name: 'AbortError' })
  await tx.put('a')
  const ac2 = new AbortController()
  const put = tx.put('b', { signal: ac2.signal })
  ac2.abort()
  await t.throwsAsync(put, { name: 'AbortError' })
  t.is(rx.getNowait(), 'a')
  t.throws(() => rx.getNowait(), { code: 'ERR_SHMQ_EMPTY' }, 'the aborted put did not enqueue')
  // An abort ends the native wait the end's gets share: the other get waits on.
  const ac3 = new AbortController()
  const aborted = rx.get({ signal: ac3.signal })
  const other = rx.get()
  await sleep(20)
  ac3.abort()
  await t.throwsAsync(aborted, { name: 'AbortError' })
  await sleep(20)
  tx.putSync('c')
  t.is(await within(other, 5000, 'the other get'), 'c')
  tx.close()
  rx.close()
})

test('concurrent gets on one receiver each get one message', async (t) => {
  const [tx, rx] = createSharedMemoryPair({ capacity: 8 })
  const gets = [rx.get(), rx.get(), rx.get({ timeout: 5_000 })]
  await tx.put('x')
  await tx.put('y')
  await tx.put('z')
  t.deepEqual((await Promise.all(gets)).sort(), ['x', 'y', 'z'])
  tx.close()
  rx.close()
})

test('closing the last sender: receivers drain, then QueueClosedError (getNowait too); iteration ends', async (t) => {
  const [tx, rx] = createSharedMemoryPair()
  const waiting = rx.get()
  await tx.put('first')
  t.is(await waiting, 'first')
  await tx.put('a')
  await tx.put('b')
  tx.close()
  tx.close()
  await t.throwsAsync(tx.put('c'), { instanceOf: QueueClosedError })
  const got = []
  for await (const m of rx) got.push(m)
  t.deepEqual(got, ['a', 'b'])
  t.throws(() => rx.getNowait(), { code: 'ERR_SHMQ_CLOSED' }, 'closed wins over empty')
  await t.throwsAsync(rx.get(), { code: 'ERR_SHMQ_CLOSED' })
  const blocked = SharedMemoryReceiver.attach(rx.handle)
  await t.throwsAsync(blocked.get(), { code: 'ERR_SHMQ_CLOSED' })
  blocked.close()
  rx.close()
})

test('a receiver waiting on an empty queue wakes with QueueClosedError when the last sender closes', async (t) => {
  const [tx, rx] = createSharedMemoryPair()
  await tx.put(1)
  await rx.get()
  const waiting = rx.get()
  setTimeout(() => tx.close(), 30)
  await t.throwsAsync(waiting, { code: 'ERR_SHMQ_CLOSED' })
  rx.close()
})

test('closing the last receiver: puts reject QueueClosedError instead of waiting; a later attach reopens', async (t) => {
  const [tx, rx] = createSharedMemoryPair({ capacity: 1 })
  await tx.put(1)
  t.is(rx.getNowait(), 1)
  await tx.put(2)
  const blocked = tx.put(3)
  setTimeout(() => rx.close(), 30)
  await t.throwsAsync(blocked, { code: 'ERR_SHMQ_CLOSED' })
  t.throws(() => tx.putSync(4), { code: 'ERR_SHMQ_CLOSED' })
  const rx2 = SharedMemoryReceiver.attach(tx.handle)
  t.is(rx2.getNowait(), 2, 'the queued message is still there')
  await tx.put(5)
  t.is(await rx2.get(), 5)
  tx.close()
  rx2.close()
})

test('a parent may close its own copy before the child attaches', async (t) => {
  const [tx, rx] = createSharedMemoryPair()
  rx.close()
  tx.close()
  t.true(shmNames(rx.handle).length > 0, 'kept: nobody has attached yet')
  const lateTx = SharedMemorySender.attach(rx.handle)
  const lateRx = SharedMemoryReceiver.attach(rx.handle)
  lateTx.putSync('still works')
  t.is(lateRx.getSync(), 'still works')
  lateTx.close()
  t.throws(() => lateRx.getNowait(), { code: 'ERR_SHMQ_CLOSED' })
  lateRx.close()
  t.deepEqual(shmNames(rx.handle), [], 'a finished queue is removed once its last end closes')
})

test('waitForAllAck resolves once every message was taken', async (t) => {
  const [tx, rx] = createSharedMemoryPair({ capacity: 4 })
  await tx.waitForAllAck({ timeout: 10 })
  await tx.put('a')
  await tx.put(Buffer.alloc(200_000))
  await t.throwsAsync(tx.waitForAllAck({ timeout: 20 }), { code: 'ERR_SHMQ_FULL' })
  let acked = false
  const ack = tx.waitForAllAck().then(() => (acked = true))
  rx.getNowait()
  await new Promise((r) => setTimeout(r, 20))
  t.false(acked)
  rx.getNowait()
  await ack
  tx.waitForAllAckSync()
  t.true(acked)
  tx.close()
  rx.close()
})

test('attach: a bad handle is ERR_SHMQ_INVALID, a gone queue ERR_SHMQ_NOT_FOUND; either class attaches', (t) => {
  t.throws(() => SharedMemorySender.attach('nope'), { code: 'ERR_SHMQ_INVALID' })
  t.throws(
    () => SharedMemorySender.attach('x'.repeat(300)),
    { instanceOf: ShmqError, code: 'ERR_SHMQ_INVALID' },
    'a string is the right type, whatever its length',
  )
  t.throws(() => SharedMemoryReceiver.attach(42), { instanceOf: TypeError })
  t.throws(() => SharedMemoryReceiver.attach('shmq-0000000000000000'), { code: 'ERR_SHMQ_NOT_FOUND' })
  const [tx, rx] = createSharedMemoryPair()
  const tx2 = SharedMemorySender.attach(rx.handle)
  const rx2 = SharedMemoryReceiver.attach(JSON.parse(JSON.stringify(tx)))
  tx2.putSync('via attached ends')
  t.is(rx2.getSync(), 'via attached ends')
  for (const end of [tx, rx, tx2, rx2]) end.close()
  t.deepEqual(shmNames(tx.handle), [], 'the last end to close unlinks the queue')
  t.throws(() => SharedMemoryReceiver.attach(tx.handle), { code: 'ERR_SHMQ_NOT_FOUND' })
})

test('handles are short JSON-safe strings and ends are disposable', async (t) => {
  const [tx, rx] = createSharedMemoryPair()
  t.regex(tx.handle, /^shmq-[0-9a-f]{16}$/)
  t.is(rx.handle, tx.handle)
  t.is(JSON.stringify({ tx }), `{"tx":"${tx.handle}"}`)
  tx[Symbol.dispose]()
  t.throws(() => tx.putSync(1), { code: 'ERR_SHMQ_CLOSED' }, 'a disposed end no longer takes part')
  await rx[Symbol.asyncDispose]()
  t.throws(() => rx.getNowait(), { code: 'ERR_SHMQ_CLOSED' })
})
