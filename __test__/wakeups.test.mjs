// Async waits take one of two paths (src/poll.rs): this thread's event loop
// polls an io_uring of futex waits (Linux 6.7+), or, where the kernel cannot
// (or with SHMQ_WAITER=thread), one waiter thread per process. Both are
// tested here over real processes; the rest of the suite uses the first
// where the kernel has it, so the async-wait tests run again on the thread.
import test from 'ava'
import { execFile } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { release } from 'node:os'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { createSharedMemoryPair } from 'shmq'
import { nextMessage, sleep, startChild } from './helpers.mjs'

/** Whether this kernel gives an event loop futex waits (io_uring, 6.7+, not disabled). */
function kernelHasLoopWaits() {
  const [major, minor] = release().split('.').map(Number)
  let disabled = '0'
  try {
    disabled = readFileSync('/proc/sys/kernel/io_uring_disabled', 'utf8').trim()
  } catch {}
  return (major > 6 || (major === 6 && minor >= 7)) && disabled === '0'
}

for (const mode of ['loop', 'thread']) {
  test.serial(
    `${mode}: sparse messages wake a waiting get, in order; a SIGKILLed last sender closes the queue for it`,
    async (t) => {
      const [tx, rx] = createSharedMemoryPair({ capacity: 4 })
      rx.close()
      const receiver = startChild(t, 'wake-receiver.mjs', [tx.handle, 20], {
        SHMQ_WAITER: mode === 'thread' ? 'thread' : '',
      })
      await nextMessage(receiver, 10_000, 'the receiver attaching')
      const report = nextMessage(receiver, 20_000, 'the receiver seeing the queue closed')
      // Sparse: the receiver is parked in a wait for each one.
      for (let i = 0; i < 20; i++) {
        await sleep(5)
        await tx.put(i)
      }
      // The last sender is a process that dies without closing.
      const sender = startChild(t, 'member.mjs', [tx.handle, 'sender', 'idle'])
      await nextMessage(sender, 10_000, 'the sender attaching')
      tx.close()
      await sleep(100)
      sender.kill('SIGKILL')
      const { got, closed, threads } = await report
      t.log(`${mode}: threads ${threads.join(',')}`)
      t.deepEqual(got, [...Array(20).keys()])
      t.is(closed, 'ERR_SHMQ_CLOSED')
      const waiterThreads = threads.filter((n) => n === 'shmq-waiter').length
      t.is(waiterThreads, mode === 'thread' || !kernelHasLoopWaits() ? 1 : 0)
    },
  )
}

test.serial('thread: the async-wait test files pass with SHMQ_WAITER=thread', async (t) => {
  t.timeout(120_000)
  const ava = fileURLToPath(new URL('../node_modules/ava/entrypoints/cli.mjs', import.meta.url))
  const files = ['waits', 'eventloop', 'processes', 'api'].map((f) => `__test__/${f}.test.mjs`)
  const r = await promisify(execFile)(process.execPath, [ava, ...files], {
    cwd: fileURLToPath(new URL('..', import.meta.url)),
    env: { ...process.env, SHMQ_WAITER: 'thread' },
    timeout: 110_000,
  }).catch((e) => e)
  t.is(r.code ?? 0, 0, `${r.stdout}\n${r.stderr}`)
  t.regex(r.stdout + r.stderr, /\d+ tests passed/)
})

test.serial(
  'the wrapper loaded twice in one thread (a module registry): each copy settles its own pending waits',
  async (t) => {
    for (const mode of ['', 'thread']) {
      const child = startChild(t, 'wake-twice.cjs', [], { SHMQ_WAITER: mode })
      t.deepEqual(await nextMessage(child, 20_000), { got: ['one', 'two'], fast: true }, mode || 'loop')
    }
  },
)
