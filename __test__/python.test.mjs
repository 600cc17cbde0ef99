// Node.js and Python on one queue (python/: the PyO3 binding of the same core).
// Runs when SHMQ_PYTHON names a Python with shmq installed (.ci/run makes one).
import test from 'ava'
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { createSharedMemoryPair, QueueClosedError } from 'shmq'

const python = process.env.SHMQ_PYTHON
const run = python ? test.serial : test.skip
if (!python) console.log('python.test: SHMQ_PYTHON is not set: cross-runtime tests skipped')

/** Runs Python `code` with `args`; resolves { code, stdout, stderr }. */
function py(code, args, { onLine } = {}) {
  const child = spawn(python, ['-c', code, ...args], { cwd: '/', stdio: ['ignore', 'pipe', 'pipe'] })
  let stdout = ''
  let stderr = ''
  child.stdout.on('data', (d) => {
    stdout += d
    for (const line of String(d).split('\n').filter(Boolean)) onLine?.(line, child)
  })
  child.stderr.on('data', (d) => (stderr += d))
  return Object.assign(
    once(child, 'exit').then(([code, signal]) => ({ code, signal, stdout, stderr })),
    { child },
  )
}

run(
  'Node to Python: bytes, str, typed arrays; a V8 value is a ForeignValueError there and the queue goes on',
  async (t) => {
    const [tx, rx] = createSharedMemoryPair({ capacity: 4 })
    const done = py(
      `import sys, shmq
rx = shmq.SharedMemoryReceiver.attach(sys.argv[1])
for _ in range(4):
    v = rx.get(timeout=20)
    print(type(v).__name__, v.tolist() if isinstance(v, memoryview) else v)
try:
    rx.get(timeout=20)
except shmq.ForeignValueError as e:
    print("foreign", isinstance(e, TypeError))
print("after", rx.get(timeout=20))`,
      [tx.handle],
    )
    rx.close()
    for (const v of [
      Buffer.from('raw'),
      'héllo',
      new Float64Array([1.5, -2]),
      new Int32Array([7, 8]),
      { a: 1 },
      'last',
    ])
      await tx.put(v)
    const { code, stdout, stderr } = await done
    t.is(code, 0, stderr)
    t.deepEqual(stdout.trim().split('\n'), [
      "bytes b'raw'",
      'str héllo',
      'memoryview [1.5, -2.0]',
      'memoryview [7, 8]',
      'foreign True',
      'after last',
    ])
    tx.close()
  },
)

run(
  'Python to Node: bytes and str arrive as Buffer and string; a pickle is ERR_SHMQ_FOREIGN_VALUE and the queue goes on',
  async (t) => {
    const [tx, rx] = createSharedMemoryPair({ capacity: 4 })
    const done = py(
      `import sys, shmq
tx = shmq.SharedMemorySender.attach(sys.argv[1])
for v in [b"from python", "ünïcode", {"pickled": 1}, "still working"]:
    tx.put(v, timeout=20)
tx.wait_for_all_ack(timeout=20)`,
      [rx.handle],
    )
    tx.close()
    t.deepEqual(await rx.get({ timeout: 20_000 }), Buffer.from('from python'))
    t.is(await rx.get({ timeout: 20_000 }), 'ünïcode')
    await t.throwsAsync(rx.get({ timeout: 20_000 }), { code: 'ERR_SHMQ_FOREIGN_VALUE', message: /Python pickle/ })
    t.is(await rx.get({ timeout: 20_000 }), 'still working')
    const { code, stderr } = await done
    t.is(code, 0, stderr)
    await t.throwsAsync(rx.get({ timeout: 20_000 }), { instanceOf: QueueClosedError })
    rx.close()
  },
)

run('a SIGKILLed Python consumer is reaped by a Node sender', async (t) => {
  const [tx, rx] = createSharedMemoryPair({ capacity: 2 })
  const done = py(
    `import sys, time, shmq
rx = shmq.SharedMemoryReceiver.attach(sys.argv[1])
rx.get(timeout=20)
print("holding", flush=True)
time.sleep(600)`,
    [tx.handle],
    { onLine: (line, child) => line === 'holding' && child.kill('SIGKILL') },
  )
  rx.close()
  await tx.put('taken')
  const { signal } = await done
  t.is(signal, 'SIGKILL')
  await t.throwsAsync(
    (async () => {
      for (let i = 0; i < 10; i++) await tx.put('nobody', { timeout: 5000 })
    })(),
    { instanceOf: QueueClosedError },
  )
  tx.close()
})
