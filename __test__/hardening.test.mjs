// Hardening scenarios, reproduced before they are fixed: each test asserts the
// behaviour wanted, over real processes and the real /dev/shm. Every wait has
// a timeout and every child is killed in teardown, so a test finishes within
// 30 s even when it fails.
import test from 'ava'
import { execFile, fork, spawn, spawnSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import {
  chmodSync,
  chownSync,
  copyFileSync,
  existsSync,
  lstatSync,
  rmSync,
  lutimesSync,
  symlinkSync,
  utimesSync,
  writeFileSync,
} from 'node:fs'
import { fileURLToPath } from 'node:url'
import { createSharedMemoryPair, SharedMemoryReceiver } from 'shmq'
import { fixture, shmNames } from './helpers.mjs'

const CLI = fileURLToPath(new URL('../dist/cli.js', import.meta.url))
const NOBODY = 65534
const isRoot = process.getuid?.() === 0
const sleep = (ms) => new Promise((r) => setTimeout(r, ms))

/** Rejects with `what` if `promise` has not settled within `ms`. */
function within(promise, ms, what) {
  let timer
  const late = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: nothing within ${ms} ms`)), ms)
  })
  return Promise.race([promise, late]).finally(() => clearTimeout(timer))
}

/**
 * Forks a fixture with an IPC inbox (`next(ms)`), its stderr captured (for
 * assertion messages) and `exited` ({ code, signal }); SIGKILLed in teardown.
 */
function start(t, name, args = [], options = {}) {
  const child = fork(fixture(name), args.map(String), { stdio: ['ignore', 'pipe', 'pipe', 'ipc'], ...options })
  child.stdout.resume()
  child.stderrText = ''
  child.stderr.on('data', (d) => (child.stderrText = (child.stderrText + d).slice(-4000)))
  const inbox = []
  const waiting = []
  child.on('message', (m) => (waiting.length > 0 ? waiting.shift().resolve(m) : inbox.push(m)))
  const gone = () =>
    new Error(`${name} exited (code ${child.exitCode}, signal ${child.signalCode}) ${child.stderrText.slice(-600)}`)
  child.exited = new Promise((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })))
  child.exited.then(() => {
    for (const w of waiting.splice(0)) w.reject(gone())
  })
  /** The next IPC message, or a rejection on exit or after `ms`. */
  child.next = (ms = 10_000) => {
    if (inbox.length > 0) return Promise.resolve(inbox.shift())
    if (child.exitCode !== null || child.signalCode !== null) return Promise.reject(gone())
    let entry
    const message = new Promise((resolve, reject) => {
      entry = { resolve, reject }
      waiting.push(entry)
    })
    // A wait that times out gives up its place, so it cannot swallow a later message.
    return within(message, ms, `a message from ${name}`).catch((e) => {
      const i = waiting.indexOf(entry)
      if (i >= 0) waiting.splice(i, 1)
      throw e
    })
  }
  t.teardown(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
  })
  return child
}

/** Runs the CLI; resolves { code, stdout, stderr } (10 s timeout). */
function cli(...args) {
  return new Promise((resolve) => {
    execFile(process.execPath, [CLI, ...args], { encoding: 'utf8', timeout: 10_000 }, (error, stdout, stderr) =>
      resolve({ code: error ? (error.code ?? error.signal) : 0, stdout, stderr }),
    )
  })
}

const randomHandle = () => `shmq-${randomBytes(8).toString('hex')}`

/**
 * Collects a scenario's failed expectations so one run shows all of them;
 * `done()` asserts there are none.
 */
function checklist(t) {
  const failed = []
  return {
    check(ok, what) {
      if (!ok) failed.push(what)
    },
    done() {
      t.deepEqual(failed, [], `${failed.length} expectation(s) failed`)
    },
  }
}

// ---- 6 ----------------------------------------------------------------------

test.serial('6: `shmq gc --force` in a tight loop never touches a queue being created or used', async (t) => {
  t.timeout(30_000)
  // Two CLI loops, plus the same collection in a tight in-process loop (a CLI
  // run costs ~100 ms of process start-up, so alone it samples few instants).
  const gcLoop = start(t, 'hardening-gc-loop.mjs', [2, 'inprocess'])
  t.is(await gcLoop.next(5000), 'started')
  const churn = start(t, 'hardening-churn.mjs', [300, 8000])
  const result = await churn.next(20_000)
  gcLoop.send('stop')
  const gc = await gcLoop.next(12_000)
  const ours = new Set(result.handles)
  const removedOurs = gc.removed.filter((name) => ours.has(name))
  t.log(
    `${result.done} queues created, used and closed while \`gc --force\` ran ${gc.runs} times (and ${gc.inProcessRuns} times in-process); ` +
      `gc reported removing ${removedOurs.length} of them (a queue whose last end was closing)`,
  )
  t.deepEqual(result.failures, [], `no create, put, get or close failed (${result.failureCount} failed)`)
  t.deepEqual(gc.failures, [], 'every gc run succeeded')
  t.true(result.done >= 300 && gc.runs >= 5, `${result.done} queues, gc ran ${gc.runs} times`)
})

// ---- 8 ----------------------------------------------------------------------

const canUnshare =
  spawnSync('unshare', ['-m', 'sh', '-c', 'mount -t tmpfs -o size=1m tmpfs /dev/shm'], { stdio: 'ignore' }).status === 0
const withPrivateShm = canUnshare ? test.serial : test.serial.skip

withPrivateShm(
  '8: close() returns the memory at once: 100 queues in a 64 MiB /dev/shm, every end kept referenced',
  async (t) => {
    t.timeout(30_000)
    const child = spawn(
      'unshare',
      [
        '-m',
        'sh',
        '-c',
        `mount -t tmpfs -o size=64m tmpfs /dev/shm && exec "${process.execPath}" "${fixture('hardening-close-memory.mjs')}"`,
      ],
      { stdio: ['ignore', 'pipe', 'pipe'], timeout: 25_000, killSignal: 'SIGKILL' },
    )
    t.teardown(() => child.exitCode === null && child.signalCode === null && child.kill('SIGKILL'))
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (d) => (stdout += d))
    child.stderr.on('data', (d) => (stderr = (stderr + d).slice(-4000)))
    const [code, signal] = await within(
      new Promise((resolve) => child.on('exit', (c, s) => resolve([c, s]))),
      27_000,
      'the 64 MiB /dev/shm run',
    )
    t.is(signal, null, `no signal (SIGBUS?) ${stderr}`)
    t.is(code, 0, stderr)
    const report = JSON.parse(stdout.trim().split('\n').pop())
    const mib = (n) => `${(n / 1048576).toFixed(1)} MiB`
    t.log(
      `${report.cycles}/100 cycles; free /dev/shm ${mib(report.initialFree)} at start, lowest after a close ${mib(report.minFreeAfterClose)} (cycle ${report.minFreeCycle})`,
    )
    const { check, done } = checklist(t)
    check(report.error === null, `cycle ${report.error?.cycle} failed: ${report.error?.code} ${report.error?.message}`)
    check(report.cycles === 100, `only ${report.cycles} of 100 create / put / get / close cycles completed`)
    check(
      report.leftovers.length === 0,
      `after a close, /dev/shm still held parts of the queue: ${JSON.stringify(report.leftovers.slice(0, 3))}`,
    )
    check(
      report.minFreeAfterClose >= report.initialFree - 1024 * 1024,
      `after a close /dev/shm should be (nearly) all free again: ${mib(report.minFreeAfterClose)} of ${mib(report.initialFree)} after cycle ${report.minFreeCycle}`,
    )
    done()
  },
)

// ---- 9 ----------------------------------------------------------------------

// 256 receivers plus the parent's sender: one more end than the end table of
// layout version 1 has rows (MAX_ENDS = 256), so today the parent's put also
// fails to join (ERR_SHMQ_INVALID); the idle figures are measured regardless.
const IDLE_RECEIVERS = 256

test.serial(
  `9: ${IDLE_RECEIVERS} receivers waiting in get() cost no CPU and no thread each; one put each wakes them all`,
  async (t) => {
    t.timeout(30_000)
    const [tx, rx] = createSharedMemoryPair({ capacity: 256, slotSize: 64 })
    t.teardown(() => {
      tx.close()
      rx.close()
    })
    const child = start(t, 'hardening-idle.mjs', [tx.handle, IDLE_RECEIVERS])
    const { idle } = await child.next(15_000)
    t.log(
      `${IDLE_RECEIVERS} pending gets: ${idle.cpuPercent.toFixed(2)} % of one core over 3 s; threads ${idle.baselineThreads} before attaching, ${idle.threads} while waiting`,
    )
    const puts = []
    for (let i = 0; i < IDLE_RECEIVERS; i++)
      puts.push(
        tx.put(i, { timeout: 5000 }).then(
          () => 'ok',
          (e) => e.code,
        ),
      )
    const { woken } = await child.next(15_000)
    const { check, done } = checklist(t)
    check(idle.cpuPercent < 3, `idle CPU ${idle.cpuPercent.toFixed(2)} % of one core (limit 3 %, target < 1 %)`)
    check(
      idle.threads <= idle.baselineThreads + 2,
      `${idle.threads} threads while waiting, ${idle.baselineThreads} before attaching (limit +2)`,
    )
    check(idle.settledBeforeMeasuring === 0, `${idle.settledBeforeMeasuring} gets settled before anything was put`)
    check(woken.errors.length === 0, `gets failed: ${woken.errors.slice(0, 5)}`)
    check(woken.got === IDLE_RECEIVERS, `${woken.got} of ${IDLE_RECEIVERS} pending gets resolved after the puts`)
    const putOutcomes = await within(Promise.all(puts), 5000, 'the puts')
    check(
      putOutcomes.every((o) => o === 'ok'),
      `puts failed: ${putOutcomes.filter((o) => o !== 'ok').slice(0, 5)}`,
    )
    done()
  },
)

// ---- 10 ---------------------------------------------------------------------

/** Runs hardening-timeouts.mjs in `mode`; `act` is called ~300 ms after it says it is waiting. */
async function longWait(t, mode, { capacity = 4, before, act }) {
  const [tx, rx] = createSharedMemoryPair({ capacity, slotSize: 1024 })
  let child
  try {
    await before?.(tx, rx)
    child = start(t, 'hardening-timeouts.mjs', [tx.handle, mode])
    let report
    for (;;) {
      const m = await child.next(10_000)
      if (m !== 'waiting') {
        report = m
        break
      }
      await sleep(300)
      await act(tx, rx).catch(() => {}) // the child's report says what went wrong
    }
    const { code, signal } = await within(child.exited, 5000, `${mode} child exit`)
    return { ...report, code, signal, stderr: child.stderrText }
  } catch (e) {
    const exit = child ? await within(child.exited, 5000, `${mode} child exit`).catch(() => ({})) : {}
    return { error: { message: e.message.split('\n')[0].slice(0, 120) }, ...exit, stderr: child?.stderrText }
  } finally {
    tx.close()
    rx.close()
  }
}

test.serial(
  '10: timeouts from 0 to Infinity: huge ones wait without abort or TimeoutOverflowWarning; 0 is block:false; negative/NaN are RangeErrors',
  async (t) => {
    t.timeout(30_000)
    const { check, done } = checklist(t)
    const putHello = (tx) => tx.put('hello', { timeout: 2000 })
    for (const mode of ['sync-1e300', 'sync-max', 'sync-inf']) {
      const r = await longWait(t, mode, { act: putHello })
      const panic = r.stderr?.split('\n').find((l) => /panicked|fatal/.test(l)) ?? ''
      check(!r.signal, `${mode}: the child died by ${r.signal} ${panic}`)
      check(
        r.value === 'hello' && r.ms >= 200,
        `${mode}: getSync should return the message put ~300 ms later, got ${JSON.stringify(r.value ?? r.error)}`,
      )
    }
    const asyncGet = await longWait(t, 'async-get', { act: putHello })
    check(
      asyncGet.value === 'hello',
      `get({ timeout: 2 ** 40 }) should resolve with the message put ~300 ms later, got ${JSON.stringify(asyncGet.value ?? asyncGet.error)}`,
    )
    check(
      (asyncGet.warnings ?? []).length === 0,
      `get({ timeout: 2 ** 40 }): ${asyncGet.warnings?.length} warnings (${[...new Set(asyncGet.warnings)]})`,
    )
    let fillTaken
    const asyncPut = await longWait(t, 'async-put', {
      capacity: 1,
      before: (tx) => tx.put('fill'),
      act: async (_tx, rx) => {
        fillTaken = await rx.get({ timeout: 2000 })
      },
    })
    check(fillTaken === 'fill', `the parent's get took ${JSON.stringify(fillTaken)}`)
    check(
      asyncPut.value === 'put resolved' && asyncPut.ms >= 200,
      `put({ timeout: 2 ** 40 }) on a full queue should resolve once a get makes room, got ${JSON.stringify(asyncPut.value ?? asyncPut.error)}`,
    )
    check(
      (asyncPut.warnings ?? []).length === 0,
      `put({ timeout: 2 ** 40 }): ${asyncPut.warnings?.length} warnings (${[...new Set(asyncPut.warnings)]})`,
    )
    const jump = await longWait(t, 'clock-jump', { act: putHello })
    check(
      JSON.stringify(jump.value) === '["hello","hello"]',
      `with Date.now() jumping ahead an hour per reading, get / getSync({ timeout: 5000 }) should still wait for the message (monotonic deadline), got ${JSON.stringify(jump.value ?? jump.error)}`,
    )

    // timeout: 0 is block: false; negative and NaN are ERR_OUT_OF_RANGE.
    const [tx, rx] = createSharedMemoryPair({ capacity: 1, slotSize: 1024 })
    t.teardown(() => {
      tx.close()
      rx.close()
    })
    const outcome = async (fn) => {
      const t0 = performance.now()
      try {
        const value = await fn()
        return { value, ms: performance.now() - t0 }
      } catch (e) {
        return { code: e.code, range: e instanceof RangeError, ms: performance.now() - t0 }
      }
    }
    const expectCode = async (what, fn, code) => {
      const o = await outcome(fn)
      check(o.code === code && o.ms < 50, `${what}: expected ${code} at once, got ${JSON.stringify(o)}`)
    }
    await expectCode('getSync({ timeout: 0 }) on an empty queue', () => rx.getSync({ timeout: 0 }), 'ERR_SHMQ_EMPTY')
    await expectCode('get({ timeout: 0 }) on an empty queue', () => rx.get({ timeout: 0 }), 'ERR_SHMQ_EMPTY')
    tx.putSync('one', { timeout: 0 })
    await expectCode(
      'putSync({ timeout: 0 }) on a full queue',
      () => tx.putSync('two', { timeout: 0 }),
      'ERR_SHMQ_FULL',
    )
    await expectCode('put({ timeout: 0 }) on a full queue', () => tx.put('two', { timeout: 0 }), 'ERR_SHMQ_FULL')
    check(
      (await outcome(() => rx.getSync({ timeout: 0 }))).value === 'one',
      'getSync({ timeout: 0 }) returns a message that is there',
    )
    for (const bad of [-1, -Infinity, NaN]) {
      for (const [what, fn] of [
        ['getSync', () => rx.getSync({ timeout: bad })],
        ['putSync', () => tx.putSync('x', { timeout: bad })],
        ['get', () => rx.get({ timeout: bad })],
        ['put', () => tx.put('x', { timeout: bad })],
      ]) {
        const o = await outcome(fn)
        check(
          o.range && o.code === 'ERR_OUT_OF_RANGE',
          `${what}({ timeout: ${bad} }) should be a RangeError ERR_OUT_OF_RANGE, got ${JSON.stringify(o)}`,
        )
      }
    }
    check(rx.size === 0, `the rejected calls enqueued ${rx.size} messages`)
    done()
  },
)

// ---- 11 ---------------------------------------------------------------------

/** The bytes of a real queue whose processes are all gone (a dead queue). */
async function deadQueueImage(t) {
  const creator = start(t, 'creator-idle.mjs')
  const { handle } = await creator.next(10_000)
  const image = `/dev/shm/hardening-image-${randomBytes(6).toString('hex')}`
  t.teardown(() => rmSync(image, { force: true }))
  copyFileSync(`/dev/shm/${handle}`, image)
  creator.kill('SIGKILL')
  await within(creator.exited, 5000, 'the creator exiting')
  for (const name of shmNames(handle)) rmSync(`/dev/shm/${name}`, { force: true })
  return image
}

/** Creates /dev/shm/<name> via `make(path)`, backdated an hour; removed in teardown. */
function plant(t, make) {
  const name = randomHandle()
  const path = `/dev/shm/${name}`
  t.teardown(() => {
    rmSync(path, { force: true })
    for (const n of shmNames(`${name}-`)) rmSync(`/dev/shm/${n}`, { force: true })
  })
  make(path)
  // Not just created: an hour old, so no grace period for queues being made applies.
  const hourAgo = new Date(Date.now() - 3600_000)
  if (lstatSync(path).isSymbolicLink()) lutimesSync(path, hourAgo, hourAgo)
  else utimesSync(path, hourAgo, hourAgo)
  return name
}

/** Attach must refuse `name`; closes the end if it did not. */
function attachOutcome(name) {
  try {
    SharedMemoryReceiver.attach(name).close()
    return 'attached'
  } catch (e) {
    return e.code
  }
}

async function listed(name) {
  const { code, stdout, stderr } = await cli('ls', '--json')
  if (code !== 0) throw new Error(`shmq ls failed: ${stderr}`)
  return JSON.parse(stdout).find((q) => q.name === name)
}

/**
 * The three checks of 11 (a) and (b), each on its own entry made by `make`
 * (an attach that succeeds today changes what ls and gc see): not listed as
 * a queue of ours, not collected, not attached.
 */
async function foreignChecks(t, check, what, make) {
  const forLs = plant(t, make)
  const entry = await listed(forLs)
  check(!['live', 'dead'].includes(entry?.status), `${what}: \`shmq ls\` lists it as a ${entry?.status} queue of ours`)
  const forGc = plant(t, make)
  const gc = await cli('gc', '--force')
  check(gc.code === 0, `${what}: gc --force failed: ${gc.stderr}`)
  check(!gc.stdout.includes(`removed ${forGc}`), `${what}: \`shmq gc --force\` says it removed it`)
  check(
    lstatSync(`/dev/shm/${forGc}`, { throwIfNoEntry: false }) !== undefined,
    `${what}: \`shmq gc --force\` removed it from /dev/shm`,
  )
  const attached = attachOutcome(plant(t, make))
  check(
    ['ERR_SHMQ_INVALID', 'ERR_SHMQ_NOT_FOUND'].includes(attached),
    `${what}: attach must refuse it, got ${attached}`,
  )
}

const asRoot = isRoot ? test.serial : test.serial.skip

asRoot(
  '11: foreign /dev/shm entries are never mapped, listed as ours or removed; payload names cannot be squatted',
  async (t) => {
    t.timeout(30_000)
    const { check, done } = checklist(t)
    const image = await deadQueueImage(t)

    // (a) a copy of a real queue segment, owned by another user.
    await foreignChecks(t, check, '(a) a copy owned by 65534', (path) => {
      copyFileSync(image, path)
      chownSync(path, NOBODY, NOBODY)
    })

    // (b) a symlink to a real queue segment (the attach check goes last: an
    // attach through the link, if it works, changes the target).
    await foreignChecks(t, check, '(b) a symlink', (path) => symlinkSync(image, path))
    check(existsSync(image), '(b) the symlink target was removed')

    // (c) a copy of our own, but readable by others (0644).
    const loose = plant(t, (path) => {
      copyFileSync(image, path)
      chmodSync(path, 0o644)
    })
    const looseOutcome = attachOutcome(loose)
    check(
      ['ERR_SHMQ_INVALID', 'ERR_SHMQ_NOT_FOUND'].includes(looseOutcome),
      `(c) a 0644 copy: attach must refuse it, got ${looseOutcome}`,
    )

    // (d) payload segment names are not predictable ...
    {
      const [tx, rx] = createSharedMemoryPair({ capacity: 4, slotSize: 1024 })
      t.teardown(() => {
        tx.close()
        rx.close()
      })
      await tx.put(Buffer.alloc(100_000, 1), { timeout: 2000 })
      const payloads = shmNames(`${tx.handle}-`)
      t.log(`(d) payload segment after a 100 kB put: ${payloads.join(', ') || '(none named after the handle)'}`)
      check(
        !payloads.includes(`${tx.handle}-0`) && !payloads.includes(`${tx.handle}-1`),
        `(d) the payload segment has a predictable name: ${payloads}`,
      )
      check((await rx.get({ timeout: 2000 })).length === 100_000, '(d) the 100 kB message came back')
    }
    // ... so squatting on every short name does not make puts fail.
    {
      const [tx, rx] = createSharedMemoryPair({ capacity: 4, slotSize: 1024 })
      const squatted = Array.from({ length: 256 }, (_, n) => `/dev/shm/${tx.handle}-${n.toString(16)}`)
      t.teardown(() => {
        tx.close()
        rx.close()
        for (const path of squatted) rmSync(path, { force: true })
      })
      for (const path of squatted) {
        writeFileSync(path, '', { mode: 0o600 })
        chownSync(path, NOBODY, NOBODY)
      }
      const outcomes = []
      for (let round = 0; round < 3; round++) {
        // Three in flight at once (three segments), then taken.
        for (let i = 0; i < 3; i++) {
          outcomes.push(
            await tx.put(Buffer.alloc(100_000, round * 3 + i), { timeout: 2000 }).then(
              () => 'ok',
              (e) => `put ${e.code}`,
            ),
          )
        }
        for (let i = 0; i < 3; i++) {
          outcomes.push(
            await rx.get({ timeout: 2000 }).then(
              (m) => (m[0] === round * 3 + i ? 'ok' : 'wrong message'),
              (e) => `get ${e.code}`,
            ),
          )
        }
      }
      const bad = outcomes.filter((o) => o !== 'ok')
      check(
        bad.length === 0,
        `(d) with \${handle}-0 … -ff taken by another user, ${bad.length} of 18 puts/gets of 100 kB failed: ${[...new Set(bad)]}`,
      )
      tx.close()
      rx.close()
      const touched = squatted.filter((path) => lstatSync(path, { throwIfNoEntry: false })?.uid !== NOBODY)
      check(
        touched.length === 0,
        `(d) ${touched.length} of the 256 squatted files were removed or replaced once the queue closed`,
      )
    }
    done()
  },
)
