// Review 2 reproductions (async waits: ref/unref, tokens, close, default timeouts).
// Each test states what the README promises; the ones marked FAILS fail at 260b011.
import test from 'ava'
import { spawn } from 'node:child_process'
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { createSharedMemoryPair } from 'shmq'
import { run } from './helpers.mjs'

const root = fileURLToPath(new URL('..', import.meta.url))

/** Runs an ES module snippet in a fresh node (importing 'shmq' from the package); resolves { code, ms, out }. */
function runSnippet(source, { timeout = 20_000, env = {} } = {}) {
  return new Promise((resolve) => {
    const started = performance.now()
    const child = spawn(process.execPath, ['--input-type=module', '-e', source], {
      cwd: root,
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'inherit'],
    })
    let out = ''
    child.stdout.on('data', (d) => (out += d))
    const timer = setTimeout(() => child.kill('SIGKILL'), timeout)
    child.on('exit', (code, signal) => {
      clearTimeout(timer)
      resolve({ code: code ?? signal, ms: Math.round(performance.now() - started), out })
    })
  })
}

// FAILS: the wait's timeout timer was created referenced; unref() later re-counts the native watch
// but leaves the timer referenced, so the process stays alive for the whole timeout (and the get
// then rejects ERR_SHMQ_EMPTY instead of being abandoned at exit).
for (const [name, setup] of [
  [
    'an explicit timeout',
    `const [tx, rx] = createSharedMemoryPair(); rx.get({ timeout: 8000 }).catch((e) => console.log(e.code))`,
  ],
  [
    'the per-end default timeout',
    `const [tx, rx] = createSharedMemoryPair({ timeout: 8000 }); rx.get().catch((e) => console.log(e.code))`,
  ],
]) {
  test(`unref() after a get with ${name} started lets the process exit`, async (t) => {
    const r = await runSnippet(`import { createSharedMemoryPair } from 'shmq'\n${setup}\nrx.unref()`)
    t.is(r.code, 0)
    t.true(r.ms < 3000, `exited after ${r.ms} ms (stdout: ${JSON.stringify(r.out)})`)
  })
}

// FAILS (simulated): tokens are reused after 2^32 - 1 native watches without checking that the
// token is free. A copy of dist whose counter wraps after 8 stands in for the real 2^32 - 1: a get
// whose watch is still pending when its token is handed out again never settles, even when its
// message arrives or its end is closed, and its count keeps the process alive for ever.
test('a pending watch survives token wrap-around (simulated with a wrap after 8)', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'shmq-wrap-'))
  try {
    cpSync(join(root, 'dist'), join(dir, 'dist'), { recursive: true })
    const wait = join(dir, 'dist', 'lib', 'wait.js')
    const src = readFileSync(wait, 'utf8')
    const patched = src.replace('nextToken === 0xffffffff ? 1', 'nextToken === 8 ? 1')
    t.not(patched, src, 'the wrap expression was found')
    writeFileSync(wait, patched)
    const r = await runSnippet(
      `const { createSharedMemoryPair } = await import(${JSON.stringify(join(dir, 'dist', 'index.mjs'))})
const sleep = (ms) => new Promise((r) => setTimeout(r, ms))
const [txA, rxA] = createSharedMemoryPair(), [txB, rxB] = createSharedMemoryPair()
let got = 'nothing'
const a = rxA.get().then((v) => { got = v }, (e) => { got = e.code })
await sleep(20)
for (let i = 0; i < 10; i++) { const g = rxB.get(); await sleep(5); txB.putNowait(i); await g }
txA.putNowait('for A')
const timer = setTimeout(() => {}, 1000); await Promise.race([a, sleep(1000)]); clearTimeout(timer)
console.log('A:', got)
txA.close(); txB.close(); rxB.close(); rxA.close()`,
      { timeout: 8000, env: { SHMQ_NATIVE_PATH: join(root, 'shmq.linux-x64-gnu.node') } },
    )
    t.regex(r.out, /A: for A/, `A's get: ${r.out.trim()}`)
    t.is(r.code, 0, `the process ${r.code === 'SIGKILL' ? 'did not exit (killed after 8 s)' : `exited ${r.code}`}`)
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
})

// FAILS often on a 2-CPU machine (timing-dependent; also at c5e2755, so not introduced by this
// change): Waiter::settle misses the round it waits for when the JS thread reads `rounds` between
// the waiter's `rounds += 1` and its doorbell load; each such close() blocks the JS thread 100 ms.
// With unref() it now also delays a natural exit by ~100 ms per waiting end.
test('closing 20 pairs whose receivers wait does not block the event loop for long', async (t) => {
  let worst = 0
  for (let round = 0; round < 3; round++) {
    const pairs = Array.from({ length: 20 }, () => createSharedMemoryPair({ capacity: 2 }))
    const gets = pairs.map(([, rx]) => rx.get().catch((e) => e.code))
    await new Promise((r) => setTimeout(r, 100))
    const started = performance.now()
    for (const [tx, rx] of pairs) {
      tx.close()
      rx.close()
    }
    worst = Math.max(worst, performance.now() - started)
    t.deepEqual(await Promise.all(gets), Array(20).fill('ERR_SHMQ_CLOSED'))
  }
  t.true(worst < 300, `40 close() calls blocked the event loop for ${Math.round(worst)} ms`)
})

// Behaviour to decide on (not a loss): the per-end default timeout also bounds the iterator's and
// readable()'s internal get, so an idle for-await throws ERR_SHMQ_EMPTY and an idle readable()
// errors and closes its receiver after `timeout` ms.
test('a per-end default timeout does not end an idle for-await loop or readable()', async (t) => {
  const [tx, rx] = createSharedMemoryPair({ timeout: 100 })
  const later = setTimeout(() => tx.putNowait('after 300 ms'), 300)
  let error
  const got = []
  try {
    for await (const m of rx) {
      got.push(m)
      break
    }
  } catch (e) {
    error = e.code
  }
  clearTimeout(later)
  t.is(error, undefined, 'for await threw')
  t.deepEqual(got, ['after 300 ms'])
  const stream = rx.readable()
  stream.on('error', () => {})
  stream.on('data', () => {})
  await new Promise((r) => setTimeout(r, 300))
  t.false(rx.closed, 'readable() closed the receiver after 100 ms idle')
  stream.destroy()
  tx.close()
  rx.close()
})

test('gets that end early (aborted, timed out) leave nothing behind while another get waits on', async (t) => {
  let grown
  const child = run('wait-memory.mjs', [], {
    onMessage: (m) => {
      grown = m
    },
  })
  t.is((await child).code, 0)
  t.true(grown < 10 * 1024 * 1024, `the heap grew by ${(grown / 1024 / 1024).toFixed(1)} MB over 50,300 gets`)
})
