// Zero-copy reservations and leases (SPEC §6): views of shared memory that
// are detached when their hold ends, recovered when their process dies,
// released when collected.
import test from 'ava'
import { fork, spawnSync } from 'node:child_process'
import { once } from 'node:events'
import { createSharedMemoryPair } from 'shmq'
import { fixture, shmNames } from './helpers.mjs'

function peer(handle, action, arg = '') {
  const child = fork(fixture('zerocopy-peer.mjs'), [handle, action, String(arg)], { stdio: 'inherit' })
  child.exited = once(child, 'exit')
  return child
}

test('a child writes in place, the parent reads in place: values arrive, views detach on commit and release', async (t) => {
  const [tx, rx] = createSharedMemoryPair({ capacity: 2 })
  const child = peer(tx.handle, 'reserve', 5)
  tx.close()
  for (let i = 0; i < 5; i++) {
    const lease = await rx.lease({ timeout: 5000 })
    const bytes = lease.value
    t.true(Buffer.isBuffer(bytes))
    t.is(bytes.length, 800_000)
    const view = new Float64Array(bytes.buffer, bytes.byteOffset, 100_000)
    t.true(
      view.every((x) => x === i),
      `message ${i} intact`,
    )
    lease.release()
    t.is(bytes.length, 0, 'the view is detached after release')
    t.is(view.length, 0)
    lease.release() // idempotent
  }
  await once(child, 'message')
  await child.exited
  rx.close()
  t.deepEqual(shmNames(tx.handle), [])
})

test('typed arrays lease as views of their type; strings and objects as copies; mixing put/get with reserve/lease keeps order', (t) => {
  const [tx, rx] = createSharedMemoryPair({ capacity: 8, slotSize: 256 })
  tx.putSync(new Float32Array([1, 2, 3]))
  tx.putSync('text')
  const r = tx.reserveSync(4)
  r.buffer.write('abcd')
  r.commit()
  tx.putSync({ a: 1 })
  tx.putSync(new BigInt64Array(100).fill(7n)) // 800 bytes: a payload segment
  const f = rx.leaseSync()
  t.true(f.value instanceof Float32Array)
  t.deepEqual([...f.value], [1, 2, 3])
  t.is(rx.getSync(), 'text', 'get between leases')
  const s = rx.leaseSync()
  t.is(s.value.toString(), 'abcd')
  const o = rx.leaseSync()
  t.deepEqual(o.value, { a: 1 })
  const big = rx.leaseSync()
  t.true(big.value instanceof BigInt64Array)
  t.is(big.value[99], 7n)
  for (const l of [f, s, o, big]) l.release()
  t.is(f.value.length, 0)
  t.is(big.value.length, 0)
  const r2 = tx.reserveSync(10)
  r2[Symbol.dispose]() // aborts
  t.is(r2.buffer.length, 0)
  t.throws(() => rx.getNowait(), { code: 'ERR_SHMQ_EMPTY' }, 'an aborted reservation sends nothing')
  tx.close()
  rx.close()
})

test('a held lease holds its slot: the sender waits at capacity, never overwrites it; release frees the slot', async (t) => {
  const [tx, rx] = createSharedMemoryPair({ capacity: 2, slotSize: 64 })
  tx.putSync(Buffer.alloc(1000, 1))
  const lease = rx.leaseSync()
  tx.putSync(Buffer.alloc(1000, 2))
  t.is(rx.getSync()[0], 2)
  // The ring comes round to the leased slot: every further put waits.
  for (let i = 0; i < 5; i++) {
    await t.throwsAsync(tx.put(Buffer.alloc(1000, 3), { timeout: 50 }), { code: 'ERR_SHMQ_FULL' })
  }
  t.true(
    lease.value.every((b) => b === 1),
    'the leased bytes are intact',
  )
  const waiting = tx.put(Buffer.alloc(1000, 4), { timeout: 3000 })
  lease.release()
  await waiting
  tx.putNowait(Buffer.alloc(1000, 5))
  t.deepEqual([rx.getSync()[0], rx.getSync()[0]], [4, 5])
  tx.close()
  rx.close()
})

test('close() releases outstanding leases and aborts reservations, detaching their views', (t) => {
  const [tx, rx] = createSharedMemoryPair({ capacity: 4 })
  tx.putSync(Buffer.alloc(100_000, 9))
  const lease = rx.leaseSync()
  const r = tx.reserveSync(200_000)
  rx.close()
  t.is(lease.value.length, 0)
  lease.release() // after close: nothing to do, no error
  tx.close()
  t.is(r.buffer.length, 0)
  r.abort()
  t.throws(() => r.commit(), { code: 'ERR_OUT_OF_RANGE' })
  t.deepEqual(shmNames(tx.handle), [])
})

test('errors: too large, bad lengths, commit past the reservation, committing twice', (t) => {
  const [tx, rx] = createSharedMemoryPair({ capacity: 2, maxMessageSize: 1000 })
  t.throws(() => tx.reserveSync(1001), { code: 'ERR_SHMQ_TOO_LARGE' })
  t.throws(() => tx.reserveSync(-1), { code: 'ERR_OUT_OF_RANGE' })
  t.throws(() => tx.reserveSync('1'), { code: 'ERR_INVALID_ARG_TYPE' })
  const r = tx.reserveSync(10)
  t.throws(() => r.commit(11), { code: 'ERR_OUT_OF_RANGE' })
  r.buffer.fill(5)
  r.commit(3)
  t.deepEqual([...rx.getSync()], [5, 5, 5])
  t.throws(() => r.commit(), { code: 'ERR_OUT_OF_RANGE' })
  t.throws(() => rx.leaseSync({ block: false }), { code: 'ERR_SHMQ_EMPTY' })
  tx.close()
  t.throws(() => rx.leaseSync(), { code: 'ERR_SHMQ_CLOSED' })
  rx.close()
})

test('a SIGKILLed lease holder: its message is lost, counts as taken, and the slot comes back', async (t) => {
  const [tx, rx] = createSharedMemoryPair({ capacity: 2 })
  t.throws(() => rx.getNowait(), { code: 'ERR_SHMQ_EMPTY' })
  await tx.put(Buffer.alloc(300_000, 1))
  const child = peer(tx.handle, 'lease-hold')
  await once(child, 'message')
  await tx.put('after')
  child.kill('SIGKILL')
  await child.exited
  t.is(await rx.get({ timeout: 3000 }), 'after')
  await tx.waitForAllAck({ timeout: 3000 })
  // The dead holder's slot comes back once it is reaped (within ~200 ms).
  await tx.put(1, { timeout: 3000 })
  tx.putNowait(2)
  t.throws(() => tx.putNowait(3), { code: 'ERR_SHMQ_FULL' })
  tx.close()
  rx.close()
  t.deepEqual(shmNames(tx.handle), [])
})

test('a SIGKILLed reservation holder: its slot is skipped and comes back', async (t) => {
  const [tx, rx] = createSharedMemoryPair({ capacity: 2, slotSize: 1024 })
  t.throws(() => rx.getNowait(), { code: 'ERR_SHMQ_EMPTY' })
  const child = peer(tx.handle, 'reserve-hold', 500_000)
  await once(child, 'message')
  await tx.put('after')
  child.kill('SIGKILL')
  await child.exited
  t.is(await rx.get({ timeout: 3000 }), 'after')
  tx.putNowait(1)
  tx.putNowait(2)
  t.throws(() => tx.putNowait(3), { code: 'ERR_SHMQ_FULL' })
  tx.close()
  rx.close()
  t.deepEqual(shmNames(tx.handle), [])
})

test('leases and reservations collected unreleased are released by their finalizers', (t) => {
  const code = `
    const { createSharedMemoryPair } = require(${JSON.stringify(process.cwd())})
    const tick = () => new Promise((r) => setTimeout(r, 0))
    const collect = async () => { for (let i = 0; i < 3; i++) { global.gc(); await tick() } }
    ;(async () => {
      const [tx, rx] = createSharedMemoryPair({ capacity: 2 })
      // In functions of their own, so no suspended frame keeps them reachable.
      const reserveAndDrop = () => { tx.reserveSync(100_000) }
      const leaseAndDrop = async (round) => {
        const lease = await rx.lease({ timeout: 2000 })
        if (lease.value[0] !== (round & 255)) throw new Error('wrong message')
      }
      for (let round = 0; round < 20; round++) {
        reserveAndDrop()
        await collect()
        await tx.put(Buffer.alloc(100_000, round & 255), { timeout: 2000 })
        await leaseAndDrop(round)
        await collect()
      }
      await collect()
      await tx.put(1, { timeout: 2000 })
      await tx.put(2, { timeout: 2000 })
      let full = false
      try { tx.putNowait(3) } catch (e) { full = e.code === 'ERR_SHMQ_FULL' }
      console.log(JSON.stringify({ full, size: rx.size }))
    })()`
  const run = spawnSync(process.execPath, ['--expose-gc', '-e', code], { encoding: 'utf8', timeout: 60_000 })
  t.is(run.status, 0, run.stderr)
  t.deepEqual(JSON.parse(run.stdout.trim()), { full: true, size: 2 })
})

test('a view kept after the Lease is dropped stays valid and keeps its slot until it is collected too', (t) => {
  const code = `
    const { createSharedMemoryPair } = require(${JSON.stringify(process.cwd())})
    const tick = () => new Promise((r) => setTimeout(r, 0))
    const collect = async () => { for (let i = 0; i < 3; i++) { global.gc(); await tick() } }
    const fullNow = (tx, v) => { try { tx.putNowait(v); return false } catch (e) { if (e.code !== 'ERR_SHMQ_FULL') throw e; return true } }
    ;(async () => {
      const [tx, rx] = createSharedMemoryPair({ capacity: 2 })
      tx.putSync(Buffer.alloc(100_000, 7))
      // The Lease object is dropped at once; only its value is kept.
      let view = (() => rx.leaseSync().value)()
      await collect()
      const kept = { length: view.length, first: view[0], last: view[99_999] }
      tx.putNowait(1)
      const fullWhileKept = fullNow(tx, 2)
      view = null
      await collect()
      // Collected unreleased: the slot goes back and the ring comes round to it.
      let fullAfter = true
      for (let i = 0; i < 50 && fullAfter; i++) { fullAfter = fullNow(tx, 2); if (fullAfter) await collect() }
      console.log(JSON.stringify({ kept, fullWhileKept, fullAfter, next: [rx.getSync(), rx.getSync()] }))
    })()`
  const run = spawnSync(process.execPath, ['--expose-gc', '-e', code], { encoding: 'utf8', timeout: 60_000 })
  t.is(run.status, 0, run.stderr)
  t.deepEqual(JSON.parse(run.stdout.trim()), {
    kept: { length: 100_000, first: 7, last: 7 },
    fullWhileKept: true,
    fullAfter: false,
    next: [1, 2],
  })
})

test('a view outlives its collected end: it keeps its bytes, and its slot until it is collected too; then the end closes', (t) => {
  const code = `
    const { createSharedMemoryPair, SharedMemorySender } = require(${JSON.stringify(process.cwd())})
    const tick = () => new Promise((r) => setTimeout(r, 5))
    const collect = async () => { for (let i = 0; i < 4; i++) { global.gc(); await tick() } }
    ;(async () => {
      const collected = []
      const fr = new FinalizationRegistry((name) => collected.push(name))
      let handle
      // Both ends and the Lease are dropped; only the view is kept.
      let view = (() => {
        const [tx, rx] = createSharedMemoryPair({ capacity: 2 })
        handle = tx.handle
        fr.register(tx, 'tx')
        fr.register(rx, 'rx')
        tx.putSync(Buffer.alloc(100_000, 7))
        return rx.leaseSync().value
      })()
      // A sender of our own keeps the queue attached, to see the receiver go.
      const tx2 = SharedMemorySender.attach(handle)
      await collect()
      const kept = { length: view.length, first: view[0], last: view[99_999], collected: collected.sort() }
      tx2.putNowait(1)
      let fullWhileKept = false
      try { tx2.putNowait(2) } catch (e) { fullWhileKept = e.code === 'ERR_SHMQ_FULL' }
      view = null
      let closed = false
      for (let i = 0; i < 50 && !closed; i++) {
        await collect()
        try { tx2.putNowait(3) } catch (e) { closed = e.code === 'ERR_SHMQ_CLOSED' }
      }
      tx2.close()
      console.log(JSON.stringify({ kept, fullWhileKept, closed }))
    })()`
  const run = spawnSync(process.execPath, ['--expose-gc', '-e', code], { encoding: 'utf8', timeout: 60_000 })
  t.is(run.status, 0, run.stderr)
  t.deepEqual(JSON.parse(run.stdout.trim()), {
    kept: { length: 100_000, first: 7, last: 7, collected: ['rx', 'tx'] },
    fullWhileKept: true,
    closed: true,
  })
})

test('the addon loaded anew in the same thread (require.cache cleared, .node too): each copy reads its own lease tags and holds', (t) => {
  const code = `
    const path = ${JSON.stringify(process.cwd())}
    const A = require(path)
    const [tx, rx] = A.createSharedMemoryPair({ capacity: 4 })
    tx.putSync(Buffer.from('first'))
    tx.putSync({ an: 'object' })
    const l1 = rx.leaseSync()
    for (const k of Object.keys(require.cache)) delete require.cache[k]
    const B = require(path)
    if (A === B) throw new Error('not loaded anew')
    const [txB, rxB] = B.createSharedMemoryPair({ capacity: 4 })
    txB.putSync('b')
    const lB = rxB.leaseSync()
    const l2 = rx.leaseSync()
    const out = { second: l2.value, b: lB.value }
    l2.release()
    out.firstAfter = l1.value.toString()
    l1.release()
    lB.release()
    for (let i = 0; i < 4; i++) tx.putNowait(i)
    out.size = rx.size
    console.log(JSON.stringify(out))
  `
  const run = spawnSync(process.execPath, ['-e', code], { encoding: 'utf8', timeout: 60_000 })
  t.is(run.status, 0, run.stderr)
  t.deepEqual(JSON.parse(run.stdout.trim()), { second: { an: 'object' }, b: 'b', firstAfter: 'first', size: 4 })
})

test('workers that end with leases open (terminated, or exiting with only a view left) leave no mapping behind', (t) => {
  const code = `
    const { Worker } = require('node:worker_threads')
    const { readFileSync } = require('node:fs')
    const shmqMaps = () => readFileSync('/proc/self/maps', 'utf8').split('\\n').filter((l) => l.includes('shmq-')).length
    const one = (how) => new Promise((done) => {
      const w = new Worker(\`
        const { parentPort } = require('node:worker_threads')
        const { createSharedMemoryPair } = require(${JSON.stringify(process.cwd())})
        const f = () => {
          const [tx, rx] = createSharedMemoryPair({ capacity: 2 })
          tx.putSync(Buffer.alloc(1 << 20, 7))
          return rx.leaseSync()
        }
        if ('\${how}' === 'terminate') { globalThis.kept = f(); parentPort.postMessage('ready'); setInterval(() => {}, 1000) }
        // Only the view is kept: the ends are collected (freed, kept open by the view).
        else { globalThis.kept = f().value; globalThis.gc(); setTimeout(() => {}, 20) }
      \`, { eval: true })
      w.once('message', () => w.terminate())
      w.on('exit', done)
    })
    ;(async () => {
      for (let i = 0; i < 10; i++) { await one('terminate'); await one('view') }
      console.log(shmqMaps())
    })()`
  const run = spawnSync(process.execPath, ['--expose-gc', '-e', code], { encoding: 'utf8', timeout: 60_000 })
  t.is(run.status, 0, run.stderr)
  t.is(run.stdout.trim(), '0')
})

// Node 21+ only (ArrayBuffer.prototype.transfer); CI's Node 20 skips it.
const withTransfer = typeof ArrayBuffer.prototype.transfer === 'function' ? test : test.skip
withTransfer("a view's memory moved by transfer() to another thread stays mapped after its worker exits", (t) => {
  const code = `
    const { Worker } = require('node:worker_threads')
    const w = new Worker(\`
      const { parentPort } = require('node:worker_threads')
      const { createSharedMemoryPair } = require(${JSON.stringify(process.cwd())})
      const [tx, rx] = createSharedMemoryPair({ capacity: 2 })
      tx.putSync(Buffer.alloc(1 << 20, 7))
      const lease = rx.leaseSync()
      const moved = lease.value.buffer.transfer()
      parentPort.postMessage(moved, [moved])
    \`, { eval: true })
    let moved
    w.on('message', (m) => { moved = m })
    w.on('exit', () => setTimeout(() => {
      const u = new Uint8Array(moved)
      let sum = 0
      for (let i = 0; i < u.length; i += 4096) sum += u[i]
      console.log(sum)
    }, 100))
  `
  const run = spawnSync(process.execPath, ['-e', code], { encoding: 'utf8', timeout: 60_000 })
  t.is(run.status, 0, `${run.stderr} (signal ${run.signal})`)
  t.is(run.stdout.trim(), String(256 * 7))
})
