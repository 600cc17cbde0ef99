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
    print(type(v).__name__, v.tolist() if hasattr(v, "tolist") else v, getattr(v, "dtype", ""))
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
      "bytes b'raw' ",
      'str héllo ',
      'ndarray [1.5, -2.0] float64',
      'ndarray [7, 8] int32',
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

run('a NumPy array of any shape reaches Node as the typed array of its C-order elements', async (t) => {
  const [tx, rx] = createSharedMemoryPair({ capacity: 4 })
  const done = py(
    `import sys, numpy as np, shmq
tx = shmq.SharedMemorySender.attach(sys.argv[1])
tx.put(np.arange(6, dtype=np.float32).reshape(2, 3))
tx.put(np.arange(4, dtype=np.uint16)[::-1])
tx.put(np.full((1024, 1024), 3, dtype=np.int64))
tx.wait_for_all_ack(timeout=20)`,
    [rx.handle],
  )
  tx.close()
  const a = await rx.get({ timeout: 20_000 })
  t.true(a instanceof Float32Array)
  t.deepEqual([...a], [0, 1, 2, 3, 4, 5])
  const b = await rx.get({ timeout: 20_000 })
  t.true(b instanceof Uint16Array)
  t.deepEqual([...b], [3, 2, 1, 0])
  const lease = await rx.lease({ timeout: 20_000 })
  t.true(lease.value instanceof BigInt64Array)
  t.is(lease.value.length, 1 << 20)
  t.is(lease.value[12345], 3n)
  lease.release()
  const { code, stderr } = await done
  t.is(code, 0, stderr)
  rx.close()
})

run(
  'MPMC across runtimes: a Python and a Node producer, a Python and a Node consumer; each message once, in order per producer',
  async (t) => {
    const [tx, rx] = createSharedMemoryPair({ capacity: 8 })
    const N = 2000
    const producer = py(
      `import sys, shmq
tx = shmq.SharedMemorySender.attach(sys.argv[1])
for i in range(${N}):
    tx.put(f"py {i}", timeout=30)
tx.close()`,
      [tx.handle],
    )
    const consumer = py(
      `import sys, shmq
rx = shmq.SharedMemoryReceiver.attach(sys.argv[1])
try:
    while True:
        print(rx.get(timeout=30))
except BrokenPipeError:
    pass`,
      [rx.handle],
    )
    const got = []
    const nodeConsumer = (async () => {
      for await (const m of rx) got.push(m)
    })()
    for (let i = 0; i < N; i++) await tx.put(`js ${i}`)
    tx.close()
    t.is((await producer).code, 0)
    await nodeConsumer
    const { code, stdout, stderr } = await consumer
    t.is(code, 0, stderr)
    const all = [...got, ...stdout.trim().split('\n').filter(Boolean)]
    t.is(all.length, 2 * N)
    t.is(new Set(all).size, 2 * N)
    for (const part of [got, stdout.trim().split('\n')]) {
      for (const who of ['py', 'js']) {
        const seq = part.filter((m) => m.startsWith(who)).map((m) => Number(m.split(' ')[1]))
        t.deepEqual(
          seq,
          [...seq].sort((a, b) => a - b),
          `${who} messages in order`,
        )
      }
    }
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

run('a SIGKILLed Node consumer is reaped by a Python sender', async (t) => {
  const [tx, rx] = createSharedMemoryPair({ capacity: 2 })
  const holder = spawn(
    process.execPath,
    [
      '--input-type=module',
      '-e',
      `import { SharedMemoryReceiver } from 'shmq'
const rx = SharedMemoryReceiver.attach(process.argv[1])
await rx.get()
console.log('holding')
setInterval(() => {}, 1000)`,
      rx.handle,
    ],
    { cwd: new URL('..', import.meta.url).pathname, stdio: ['ignore', 'pipe', 'inherit'] },
  )
  rx.close()
  const sender = py(
    `import sys, shmq
tx = shmq.SharedMemorySender.attach(sys.argv[1])
tx.put("taken", timeout=20)
print("sent", flush=True)
try:
    for _ in range(10):
        tx.put("nobody", timeout=5)
    print("no error")
except BrokenPipeError:
    print("reaped")`,
    [tx.handle],
  )
  tx.close()
  holder.stdout.on('data', (d) => String(d).includes('holding') && holder.kill('SIGKILL'))
  await once(holder, 'exit')
  const { code, stdout, stderr } = await sender
  t.is(code, 0, stderr)
  t.deepEqual(stdout.trim().split('\n'), ['sent', 'reaped'])
})

run('every typed array kind both ways, and a 256 MiB NumPy array to Node', async (t) => {
  const kinds = [
    Int8Array,
    Uint16Array,
    Int16Array,
    Uint32Array,
    Int32Array,
    Float32Array,
    Float64Array,
    BigInt64Array,
    BigUint64Array,
  ]
  const [tx, rx] = createSharedMemoryPair({ capacity: 4 })
  const [backTx, backRx] = createSharedMemoryPair({ capacity: 4 })
  const echo = py(
    `import sys, shmq
rx = shmq.SharedMemoryReceiver.attach(sys.argv[1])
tx = shmq.SharedMemorySender.attach(sys.argv[2])
for _ in range(${kinds.length}):
    a = rx.get(timeout=20)
    tx.put(a, timeout=20)
import numpy as np
tx.put(np.full((256, 1 << 18), 1.25, dtype=np.float32), timeout=60)
tx.wait_for_all_ack(timeout=60)`,
    [tx.handle, backTx.handle],
  )
  rx.close()
  backTx.close()
  for (const Kind of kinds) {
    const sent = Kind.name.startsWith('Big') ? Kind.from([1n, 2n, 3n]) : Kind.from([1, 2, 3])
    await tx.put(sent)
    const back = await backRx.get({ timeout: 20_000 })
    t.is(back.constructor, Kind, Kind.name)
    t.deepEqual([...back], [...sent], Kind.name)
  }
  const lease = await backRx.lease({ timeout: 60_000 })
  t.true(lease.value instanceof Float32Array)
  t.is(lease.value.length, 64 << 20)
  t.is(lease.value[0], 1.25)
  t.is(lease.value[(64 << 20) - 1], 1.25)
  lease.release()
  const { code, stderr } = await echo
  t.is(code, 0, stderr)
  tx.close()
  backRx.close()
})
