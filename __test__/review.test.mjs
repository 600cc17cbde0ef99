// Regressions found by reviews of the zero-copy and batch APIs.
import test from 'ava'
import { spawnSync } from 'node:child_process'
import { existsSync } from 'node:fs'
import { createSharedMemoryPair, SharedMemoryReceiver } from 'shmq'

const root = JSON.stringify(process.cwd())
const node = (code, args = []) =>
  spawnSync(process.execPath, [...args, '-e', code], { encoding: 'utf8', timeout: 30_000 })

test('a held lease keeps its end alive: a collected end object does not detach the view or free the slot', (t) => {
  const run = node(
    `const { createSharedMemoryPair, SharedMemoryReceiver } = require(${root})
    const [tx, rx] = createSharedMemoryPair({ capacity: 4, slotSize: 64 })
    tx.putSync(Buffer.from('important payload'))
    const take = (h) => SharedMemoryReceiver.attach(h).leaseSync() // the end object is not kept
    const lease = take(tx.handle)
    ;(async () => {
      for (let i = 0; i < 5; i++) { gc(); await new Promise((r) => setImmediate(r)) }
      console.log(lease.value.toString())
      lease.release()
      tx.close(); rx.close()
    })()`,
    ['--expose-gc'],
  )
  t.is(run.status, 0, run.stderr)
  t.is(run.stdout.trim(), 'important payload')
})

test('an undecodable message: lease gives it back with ERR_SHMQ_INVALID, getMany keeps the good ones', (t) => {
  const run = node(`
    const { binding } = require(${root} + '/dist/lib/binding.js')
    const { SharedMemorySender, SharedMemoryReceiver } = require(${root})
    const [txId, rxId] = binding.createQueue(1, 64, 1 << 20)
    const tx = new SharedMemorySender(txId), rx = new SharedMemoryReceiver(rxId)
    const hot = binding.hotPath()
    const out = []
    hot.put(txId, 15, Buffer.from([0xff, 0x0f, 0x99, 0x99])) // v8 bytes no Node can read
    try { rx.leaseSync() } catch (e) { out.push(e.code) }
    tx.putSync('next', { timeout: 1000 }) // capacity 1: the slot came back
    out.push(rx.getSync())
    tx.close(); rx.close()
    console.log(JSON.stringify(out))`)
  t.is(run.status, 0, run.stderr)
  t.deepEqual(JSON.parse(run.stdout.trim()), ['ERR_SHMQ_INVALID', 'next'])

  const batch = node(`
    const { binding } = require(${root} + '/dist/lib/binding.js')
    const { SharedMemorySender, SharedMemoryReceiver } = require(${root})
    const [txId, rxId] = binding.createQueue(8, 64, 1 << 20)
    const tx = new SharedMemorySender(txId), rx = new SharedMemoryReceiver(rxId)
    tx.putSync('a'); tx.putSync({ b: 1 })
    binding.hotPath().put(txId, 15, Buffer.from([0xff, 0x0f, 0x99, 0x99]))
    tx.putSync('c')
    const out = [rx.getManySync(10)]
    try { rx.getManySync(10, { block: false }) } catch (e) { out.push(e.code) }
    tx.close(); rx.close()
    console.log(JSON.stringify(out))`)
  t.is(batch.status, 0, batch.stderr)
  t.deepEqual(
    JSON.parse(batch.stdout.trim()),
    [['a', { b: 1 }, 'c'], 'ERR_SHMQ_INVALID'],
    'the error comes with the next call',
  )
})

test('process.exit() right after leases and closes leaves nothing in /dev/shm', (t) => {
  const run = node(`
    const { createSharedMemoryPair } = require(${root})
    const [tx, rx] = createSharedMemoryPair({ capacity: 2, slotSize: 64 })
    tx.putSync(Buffer.alloc(8)); tx.putSync(Buffer.alloc(1000))
    { const l = rx.leaseSync(); l.release() }
    { const l = rx.leaseSync(); l.release() }
    const r = tx.reserveSync(5000); r.commit(); rx.getSync()
    tx.close(); rx.close()
    console.log(tx.handle)
    process.exit(0)`)
  t.is(run.status, 0, run.stderr)
  t.false(existsSync(`/dev/shm/${run.stdout.trim()}`))
})

test('readable(): leaving a for-await loop takes no message beyond the ones consumed', async (t) => {
  const [tx, rx] = createSharedMemoryPair({ capacity: 8 })
  for (let i = 0; i < 4; i++) tx.putSync(`m${i}`)
  const other = SharedMemoryReceiver.attach(tx.handle)
  for await (const m of rx.readable()) {
    t.is(m, 'm0')
    break
  }
  await new Promise((r) => setTimeout(r, 50))
  const rest = []
  try {
    for (;;) rest.push(other.getNowait())
  } catch {}
  t.deepEqual(rest, ['m1', 'm2', 'm3'])
  tx.close()
  other.close()
})
