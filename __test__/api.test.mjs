// The API as a Node user expects it: one error base class with native codes,
// cancellable iteration, ref/unref, closed, per-end default timeouts.
import test from 'ava'
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { createRequire } from 'node:module'
import { fileURLToPath } from 'node:url'
import * as shmq from 'shmq'
import { sleep } from './helpers.mjs'

const { createSharedMemoryPair, SharedMemoryReceiver, SharedMemorySender, ShmqError } = shmq
const { QueueFullError, QueueEmptyError, QueueClosedError, MessageTooLargeError, NotCloneableError } = shmq
const root = fileURLToPath(new URL('..', import.meta.url))

test('every shmq error class derives from ShmqError', (t) => {
  for (const name of [
    'QueueFullError',
    'QueueEmptyError',
    'QueueClosedError',
    'MessageTooLargeError',
    'NotCloneableError',
  ]) {
    const e = new { QueueFullError, QueueEmptyError, QueueClosedError, MessageTooLargeError, NotCloneableError }[name](
      'x',
    )
    t.true(e instanceof ShmqError, name)
    t.regex(e.code, /^ERR_SHMQ_/, name)
  }
  // Node's kinds kept: too large is a RangeError, not cloneable a TypeError.
  t.true(new MessageTooLargeError('x') instanceof RangeError)
  t.true(new NotCloneableError('x') instanceof TypeError)
  t.false(new RangeError('x') instanceof ShmqError)
  t.false(new QueueFullError() instanceof QueueEmptyError)
  const [tx, rx] = createSharedMemoryPair({ capacity: 1, maxMessageSize: 8 })
  for (const [what, fn] of [
    [
      'full',
      () => {
        tx.putSync(1)
        tx.putNowait(2)
      },
    ],
    ['too large', () => tx.putSync(Buffer.alloc(9))],
    ['not cloneable', () => tx.putSync(() => 1)],
    ['not found', () => SharedMemorySender.attach('shmq-0000000000000000')],
    ['invalid', () => SharedMemoryReceiver.attach('shmq-nope')],
  ]) {
    t.throws(fn, { instanceOf: ShmqError }, what)
  }
  rx.getSync()
  t.throws(() => rx.getNowait(), { instanceOf: ShmqError, code: 'ERR_SHMQ_EMPTY' })
  tx.close()
  t.throws(() => rx.getNowait(), { instanceOf: ShmqError, code: 'ERR_SHMQ_CLOSED' })
  rx.close()
})

test('native errors carry their code from Rust, not in their message', (t) => {
  const addon = createRequire(import.meta.url)(`${root}shmq.linux-x64-gnu.node`)
  const e = t.throws(() => addon.attachQueue('shmq-0000000000000000', 0))
  t.is(e.code, 'ERR_SHMQ_NOT_FOUND')
  t.notRegex(e.message, /ERR_SHMQ/)
  t.is(t.throws(() => addon.endSize(123456)).code, 'ERR_SHMQ_INVALID')
})

test('leaving a for-await loop early takes no message beyond those consumed', async (t) => {
  const [tx, rx] = createSharedMemoryPair()
  for (const v of ['a', 'b', 'c']) tx.putSync(v)
  for await (const v of rx) {
    t.is(v, 'a')
    break
  }
  await t.throwsAsync(
    async () => {
      for await (const v of rx) {
        t.is(v, 'b')
        throw new Error('stop')
      }
    },
    { message: 'stop' },
  )
  t.is(rx.getSync(), 'c')
  tx.close()
  rx.close()
})

test("an iterator's return() cancels its pending get without taking a message", async (t) => {
  const [tx, rx] = createSharedMemoryPair()
  const it = rx[Symbol.asyncIterator]()
  const pending = it.next()
  await sleep(30)
  t.deepEqual(await it.return(), { done: true, value: undefined })
  t.deepEqual(await pending, { done: true, value: undefined })
  tx.putSync('kept')
  t.is(rx.getSync({ timeout: 1000 }), 'kept')
  t.deepEqual(await it.next(), { done: true, value: undefined })
  tx.close()
  rx.close()
})

test('destroying readable() while it waits closes the receiver and takes no message', async (t) => {
  const [tx, rx] = createSharedMemoryPair()
  const other = SharedMemoryReceiver.attach(rx.handle)
  const stream = rx.readable()
  stream.on('data', () => t.fail('no message was put yet'))
  await sleep(30)
  stream.destroy()
  await once(stream, 'close')
  t.true(rx.closed)
  tx.putSync('for the other receiver')
  t.is(other.getSync({ timeout: 1000 }), 'for the other receiver')
  for (const end of [tx, other]) end.close()
})

test('closed tells whether an end is closed', (t) => {
  const [tx, rx] = createSharedMemoryPair()
  t.false(tx.closed)
  tx.close()
  t.true(tx.closed)
  t.false(rx.closed)
  rx.close()
})

/** Runs `code` (an ES module importing shmq) in a child; resolves its exit code, or 'running' after `ms`. */
async function exitWithin(code, ms) {
  const child = spawn(process.execPath, ['--input-type=module', '-e', code], {
    cwd: root,
    stdio: ['ignore', 'inherit', 'inherit'],
  })
  const exited = once(child, 'exit').then(([c]) => c)
  const result = await Promise.race([exited, sleep(ms).then(() => 'running')])
  if (result === 'running') {
    child.kill('SIGKILL')
    await exited
  }
  return result
}

test('a waiting end keeps the process alive; unref() lets it exit; ref() again keeps it', async (t) => {
  const setup =
    "import { createSharedMemoryPair } from 'shmq'; const [tx, rx] = createSharedMemoryPair({ capacity: 1 }); tx.putSync(1);"
  t.is(await exitWithin(`${setup} rx.getSync(); rx.get()`, 1500), 'running', 'a pending get keeps it alive')
  t.is(await exitWithin(`${setup} rx.getSync(); rx.unref(); rx.get()`, 5000), 0, 'unref: exits with a get pending')
  t.is(await exitWithin(`${setup} rx.getSync(); rx.unref(); rx.get(); rx.ref()`, 1500), 'running', 'ref again')
  t.is(
    await exitWithin(`${setup} tx.unref(); tx.put(2, { timeout: 60000 })`, 5000),
    0,
    'unref: exits with a put and its timer pending',
  )
})

test('a default timeout per end (createSharedMemoryPair, attach); a call may override it', async (t) => {
  const [tx, rx] = createSharedMemoryPair({ capacity: 1, timeout: 50 })
  await t.throwsAsync(rx.get(), { code: 'ERR_SHMQ_EMPTY' })
  t.throws(() => rx.getSync(), { code: 'ERR_SHMQ_EMPTY' })
  const late = rx.get({ timeout: 400 })
  await sleep(150)
  tx.putSync('late')
  t.is(await late, 'late')
  tx.putSync(1)
  await t.throwsAsync(tx.put(2), { code: 'ERR_SHMQ_FULL' })
  const attached = SharedMemoryReceiver.attach(tx.handle, { timeout: 20 })
  t.is(attached.getSync(), 1)
  t.throws(() => attached.getSync(), { code: 'ERR_SHMQ_EMPTY' })
  t.throws(() => SharedMemoryReceiver.attach(tx.handle, { timeout: -1 }), { code: 'ERR_OUT_OF_RANGE' })
  t.throws(() => createSharedMemoryPair({ timeout: 'soon' }), { code: 'ERR_OUT_OF_RANGE' })
  for (const end of [tx, rx, attached]) end.close()
})

test('slotSize and maxMessageSize are readable on every end', (t) => {
  const [tx, rx] = createSharedMemoryPair({ slotSize: 128, maxMessageSize: 1000 })
  const attached = SharedMemorySender.attach(rx)
  for (const end of [tx, rx, attached]) {
    t.is(end.slotSize, 128)
    t.is(end.maxMessageSize, 1000)
  }
  for (const end of [tx, rx, attached]) end.close()
})
