// Crash recovery, reproduced over real processes (fork, SIGKILL, /dev/shm):
// what must hold after the crash-recovery rewrite. Every wait has a timeout.
import test from 'ava'
import { spawn, spawnSync } from 'node:child_process'
import { readFileSync, rmSync } from 'node:fs'
import { isDeepStrictEqual } from 'node:util'
import { isUtf8 } from 'node:buffer'
import { createSharedMemoryPair } from 'shmq'
import {
  ask,
  fixture,
  killChild,
  nextMessage,
  pattern,
  shmNames,
  sleep,
  startChild,
  track,
  until,
  within,
} from './helpers.mjs'

const TEST_MS = 19_000

/** 'ok' if `promise` resolves, else the error's code (or message). */
const codeOf = (promise) =>
  promise.then(
    () => 'ok',
    (e) => e.code ?? String(e),
  )

/** 'ok' if `fn` returns, else the error's code (or message). */
function syncCode(fn) {
  try {
    fn()
    return 'ok'
  } catch (e) {
    return e.code ?? String(e)
  }
}

/** A short description of what a get returned, for failure messages. */
function describe(got) {
  if (got instanceof Error) return `${got.code ?? ''} ${got.message}`
  if (Buffer.isBuffer(got)) return `Buffer(${got.length}) ${got.subarray(0, 8).toString('hex')}…`
  return JSON.stringify(got)
}

/** Null if `got` is byte-for-byte `expected`, else what was wrong. */
function mismatch(got, expected, what) {
  return Buffer.isBuffer(got) && got.equals(expected) ? null : `${what}: got ${describe(got)}`
}

/**
 * A new queue whose ends are closed when the test ends; whatever a failed
 * test left of it in /dev/shm is removed then (after its children are killed).
 */
function queue(t, options) {
  const [tx, rx] = createSharedMemoryPair(options)
  t.teardown(() => {
    tx.close()
    rx.close()
    for (const name of shmNames(tx.handle)) rmSync(`/dev/shm/${name}`, { force: true })
  })
  return [tx, rx]
}

/** A detached `sh` that SIGKILLs `pid` after `ms`: it needs no event loop of ours. */
function killLater(pid, ms) {
  spawn('sh', ['-c', `sleep ${ms / 1000}; kill -9 ${pid}`], { detached: true, stdio: 'ignore' }).unref()
}

/** The state letter of /proc/<pid>/stat ('S', 'Z', ...), or 'gone'. */
function procState(pid) {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'latin1')
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3)
  } catch {
    return 'gone'
  }
}

/** Runs fixture `name` as pid 1 of a new PID namespace (via unshare), with IPC. */
function startInPidNamespace(t, name, args) {
  const argv = ['--pid', '--fork', '--kill-child', process.execPath, fixture(name), ...args.map(String)]
  return track(t, spawn('unshare', argv, { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] }))
}

const pidNamespaces = spawnSync('unshare', ['--pid', '--fork', 'true']).status === 0
const nsTest = pidNamespaces ? test.serial : test.serial.skip
if (!pidNamespaces) console.log('recovery.test: `unshare --pid --fork true` failed: PID-namespace tests skipped')

// ---- 1. A live end is never judged dead ----

/**
 * A receiver child started by `spawnReceiver(handle)` idles on a full queue
 * of capacity 2: the parent's put must wait (FULL, not CLOSED), the queue
 * must stay in /dev/shm, and the child must still get on request.
 */
async function liveReceiverKeepsQueueOpen(t, spawnReceiver, checkReady = () => {}) {
  const [tx, rx] = queue(t, { capacity: 2, slotSize: 1024 })
  const child = spawnReceiver(tx.handle)
  const ready = await nextMessage(child, 5000, 'receiver child')
  checkReady(ready)
  rx.close()
  await tx.put(1, { timeout: 1000 })
  await tx.put(2, { timeout: 1000 })
  t.is(
    await codeOf(tx.put(3, { timeout: 1500 })),
    'ERR_SHMQ_FULL',
    'a full queue whose receiver lives waits, not closed',
  )
  t.true(shmNames(tx.handle).includes(tx.handle), 'the queue segment is still in /dev/shm while the receiver lives')
  t.deepEqual(await ask(child, { get: 2 }, 6000), { got: [1, 2] }, 'the receiver still gets what was put')
  t.is(await codeOf(tx.put(3, { timeout: 3000 })), 'ok', 'and then the put goes through')
  t.deepEqual(await ask(child, { get: 1 }, 4000), { got: [3] })
  return { tx, child }
}

// 1a: a receiver whose /proc/<pid>/stat is not valid UTF-8 (title cut inside 'é') is alive.
test.serial('1a: a live receiver with a multi-byte process title is not judged dead', async (t) => {
  t.timeout(TEST_MS)
  await liveReceiverKeepsQueueOpen(
    t,
    (handle) => startChild(t, 'receiver-idle.mjs', [handle, 'title']),
    ({ pid }) => t.false(isUtf8(readFileSync(`/proc/${pid}/stat`)), 'precondition: /proc/<pid>/stat is invalid UTF-8'),
  )
})

// 1b: a receiver running in another PID namespace (it is pid 1 there) is alive.
nsTest('1b: a live receiver in another PID namespace is not judged dead', async (t) => {
  t.timeout(TEST_MS)
  await liveReceiverKeepsQueueOpen(
    t,
    (handle) => startInPidNamespace(t, 'receiver-idle.mjs', [handle]),
    ({ pid }) => t.is(pid, 1, 'precondition: the receiver is pid 1 of its own namespace'),
  )
})

// 1b (extra, beyond the brief): that receiver, once SIGKILLed, is judged dead like any other.
nsTest('1b extra: a receiver in another PID namespace is judged dead once killed', async (t) => {
  t.timeout(TEST_MS)
  const { tx, child } = await liveReceiverKeepsQueueOpen(t, (handle) =>
    startInPidNamespace(t, 'receiver-idle.mjs', [handle]),
  )
  await tx.put(4, { timeout: 1000 })
  await tx.put(5, { timeout: 1000 })
  await killChild(child) // unshare; --kill-child takes the namespaced node with it
  t.is(await codeOf(tx.put(6, { timeout: 3000 })), 'ERR_SHMQ_CLOSED', 'its only receiver is dead')
  tx.close()
  t.deepEqual(shmNames(tx.handle), [], 'nothing is left in /dev/shm once the parent closes')
})

// ---- 2. Zombies count as dead ----

// 2a: a getSync blocking the event loop sees its only sender's SIGKILL although the child stays an unreaped zombie.
test.serial('2a: a killed sender that is still a zombie counts as dead (blocked getSync)', async (t) => {
  t.timeout(TEST_MS)
  const [tx, rx] = queue(t)
  const sender = startChild(t, 'member.mjs', [tx.handle, 'sender', 'put1'])
  t.is(await nextMessage(sender, 5000, 'sender child'), 'ready')
  tx.close()
  t.is((await rx.get({ timeout: 3000 })).length, 100_000)
  killLater(sender.pid, 300)
  const started = Date.now()
  const code = syncCode(() => rx.getSync({ timeout: 4000 }))
  const blockedMs = Date.now() - started
  const state = procState(sender.pid)
  t.log(`getSync: ${code} after ${blockedMs} ms; the child's state then: ${state}`)
  t.is(state, 'Z', 'precondition: the killed child was a zombie while getSync blocked')
  t.is(code, 'ERR_SHMQ_CLOSED')
  t.true(blockedMs < 1500, `blocked ${blockedMs} ms`)
})

// 2b: a putSync blocking the event loop on a full queue sees its only receiver's SIGKILL (child left a zombie).
test.serial('2b: a killed receiver that is still a zombie counts as dead (blocked putSync)', async (t) => {
  t.timeout(TEST_MS)
  const [tx, rx] = queue(t, { capacity: 2 })
  const receiver = startChild(t, 'member.mjs', [tx.handle, 'receiver', 'idle'])
  t.is(await nextMessage(receiver, 5000, 'receiver child'), 'ready')
  rx.close()
  await tx.put(1, { timeout: 1000 })
  await tx.put(2, { timeout: 1000 })
  killLater(receiver.pid, 300)
  const started = Date.now()
  const code = syncCode(() => tx.putSync(3, { timeout: 4000 }))
  const blockedMs = Date.now() - started
  const state = procState(receiver.pid)
  t.log(`putSync: ${code} after ${blockedMs} ms; the child's state then: ${state}`)
  t.is(state, 'Z', 'precondition: the killed child was a zombie while putSync blocked')
  t.is(code, 'ERR_SHMQ_CLOSED')
  t.true(blockedMs < 1500, `blocked ${blockedMs} ms`)
})

// ---- 3. The ring never stalls after a producer dies mid-write ----

/** `stalledCount` producers die holding claimed slots; the ring then runs 20 mixed laps and keeps its capacity. */
async function ringSurvivesProducersDyingMidWrite(t, stalledCount) {
  const [tx, rx] = queue(t, { capacity: 2, slotSize: 1024 })
  const stalled = Array.from({ length: stalledCount }, () =>
    startChild(t, 'stall.mjs', [tx.handle, 'put'], { SHMQ_TEST_STALL: 'put' }),
  )
  await Promise.all(stalled.map((c) => nextMessage(c, 5000, 'stalled producer')))
  await until(() => rx.size === stalledCount, 5000, `${stalledCount} stalled producer(s) to claim a slot`)
  // With every slot claimed this put can only finish once the dead are
  // reaped and a receiver has skipped what they left.
  const after = codeOf(tx.put('after', { timeout: 5000 }))
  for (const c of stalled) await killChild(c)
  const first = rx.get({ timeout: 3000 }).catch((e) => e)
  t.is(await after, 'ok', 'the parent put one message')
  t.is(await first, 'after', "the dead producers' slots are skipped")
  const problems = []
  for (let lap = 0; lap < 20 && problems.length === 0; lap++) {
    const small = pattern(100, lap)
    const large = pattern(100_000, lap + 100)
    const put = await codeOf(tx.put(small, { timeout: 3000 }).then(() => tx.put(large, { timeout: 3000 })))
    if (put !== 'ok') problems.push(`lap ${lap} put: ${put}`)
    else {
      for (const [what, expected] of [
        ['small', small],
        ['large', large],
      ]) {
        const problem = mismatch(await rx.get({ timeout: 3000 }).catch((e) => e), expected, `lap ${lap} ${what}`)
        if (problem) problems.push(problem)
      }
    }
  }
  t.deepEqual(problems, [], '20 laps of small and large messages, each exact')
  const codes = [1, 2, 3].map((i) => syncCode(() => tx.putNowait(i)))
  t.deepEqual(codes, ['ok', 'ok', 'ERR_SHMQ_FULL'], 'exactly the full capacity again')
}

// 3a: one producer SIGKILLed while holding a claimed slot leaves the ring fully working.
test.serial('3a: the ring never stalls after a producer dies mid-write', async (t) => {
  t.timeout(TEST_MS)
  await ringSurvivesProducersDyingMidWrite(t, 1)
})

// 3b: two producers SIGKILLed while holding both slots leave the ring fully working.
test.serial('3b: the ring never stalls after two producers die mid-write at once', async (t) => {
  t.timeout(TEST_MS)
  await ringSurvivesProducersDyingMidWrite(t, 2)
})

// ---- 4. No silent corruption ----

// 4: a receiver killed after handing A's payload segment back, before freeing A's slot, must not corrupt B or C.
test.serial(
  '4: a receiver dying between handing back a payload segment and freeing its slot corrupts nothing',
  async (t) => {
    t.timeout(TEST_MS)
    const [tx, rx] = queue(t, { capacity: 2, slotSize: 1024 })
    t.is(
      syncCode(() => rx.getNowait()),
      'ERR_SHMQ_EMPTY',
      "the parent's receiver takes part from here on",
    )
    await tx.put(pattern(100_000, 1), { timeout: 1000 })
    const stalled = startChild(t, 'stall.mjs', [tx.handle, 'get'], { SHMQ_TEST_STALL: 'get-returned' })
    await nextMessage(stalled, 5000, 'stalled receiver')
    await until(() => rx.size === 0, 5000, 'the stalled receiver to take A')
    await sleep(300) // A is 100 kB: it has been copied out and handed back well before this
    await tx.put(pattern(100_000, 2), { timeout: 3000 })
    // A's slot is still held, so C waits until the dead receiver is reaped.
    const putC = codeOf(tx.put(pattern(100_000, 3), { timeout: 5000 }))
    await killChild(stalled)
    await sleep(1500)
    t.is(await putC, 'ok', 'C was put')
    const problems = [
      mismatch(await rx.get({ timeout: 3000 }).catch((e) => e), pattern(100_000, 2), 'B'),
      mismatch(await rx.get({ timeout: 3000 }).catch((e) => e), pattern(100_000, 3), 'C'),
    ]
    for (let lap = 0; lap < 10 && !problems.some(Boolean); lap++) {
      const m = pattern(100_000, 10 + lap)
      const put = await codeOf(tx.put(m, { timeout: 3000 }))
      problems.push(
        put === 'ok'
          ? mismatch(await rx.get({ timeout: 3000 }).catch((e) => e), m, `lap ${lap}`)
          : `lap ${lap} put: ${put}`,
      )
    }
    t.deepEqual(problems.filter(Boolean), [], 'B, C and 10 more 100 kB messages, byte-exact')
  },
)

// ---- 5. Two reapers and a joining end ----

// 5: while ends attach and are SIGKILLed at random and others attach/close (reap) in tight loops, a live receiver is never lost.
test.serial('5: concurrent reapers and joiners never lose a live receiver nor leave anything behind', async (t) => {
  t.timeout(TEST_MS)
  const runMs = 5000
  const [tx, rx] = queue(t, { capacity: 2, slotSize: 1024 })
  const live = startChild(t, 'receiver-idle.mjs', [tx.handle])
  await nextMessage(live, 5000, 'live receiver')
  rx.close()
  let seq = 0
  /** One round: fill the queue, check it waits (not closed), let the live receiver take both. */
  const round = async () => {
    if (!shmNames(tx.handle).includes(tx.handle)) return 'the queue segment left /dev/shm while in use'
    const sent = []
    for (let i = 0; i < 2; i++) {
      const put = await codeOf(tx.put(seq, { timeout: 1000 }))
      if (put !== 'ok') return `put ${seq}: ${put}`
      sent.push(seq++)
    }
    const full = await codeOf(tx.put(-1, { timeout: 300 }))
    if (full !== 'ERR_SHMQ_FULL') return `put on a full queue: ${full} (expected ERR_SHMQ_FULL)`
    const { got } = await ask(live, { get: 2 }, 6000)
    return isDeepStrictEqual(got, sent)
      ? null
      : `the live receiver got ${JSON.stringify(got)}, expected ${JSON.stringify(sent)}`
  }

  const stopAt = Date.now() + runMs
  const churners = Array.from({ length: 3 }, () => startChild(t, 'churn.mjs', [tx.handle, runMs]))
  const reports = Promise.all(churners.map((c) => nextMessage(c, runMs + 5000, 'churner')))
  let victims = 0
  // Victims die in pairs, each holding 20 ends (senders and receivers), so
  // reapers race over many dead rows at once while joiners take freed ones;
  // most are killed once attached, some at an earlier, random moment.
  const killAtRandom = async () => {
    while (Date.now() < stopAt) {
      const batch = [0, 1].map(() => startChild(t, 'crowd.mjs', [tx.handle, 20]))
      const attached = Promise.all(batch.map((v) => nextMessage(v, 3000, 'victim').catch(() => {})))
      await Promise.race([attached, sleep(Math.random() < 0.3 ? Math.random() * 150 : 3000)])
      await Promise.all(batch.map(killChild))
      victims += batch.length
    }
  }
  const problems = []
  let rounds = 0
  const sendAndCheck = async () => {
    while (Date.now() < stopAt && problems.length === 0) {
      const problem = await round()
      if (problem) problems.push(`during round ${rounds}: ${problem}`)
      rounds++
    }
  }
  await Promise.all([killAtRandom(), killAtRandom(), sendAndCheck()])
  const churned = await reports
  await within(Promise.all(churners.map((c) => c.exited)), 5000, 'churners to exit')
  t.log(`${rounds} rounds, ${victims} processes of 20 ends killed, churners: ${JSON.stringify(churned)}`)
  if (problems.length === 0) {
    const problem = await round()
    if (problem) problems.push(`after the churn: ${problem}`)
  }
  t.deepEqual(problems, [], 'the live receiver never looked closed and got every message')
  t.deepEqual(
    churned.map((r) => r.errors),
    churned.map(() => ({})),
    'attach and close never failed in the churners',
  )
  t.deepEqual(await ask(live, { close: true }, 5000), { closed: true })
  await within(live.exited, 5000, 'live receiver to exit')
  tx.close()
  t.deepEqual(shmNames(tx.handle), [], 'nothing of the queue is left in /dev/shm')
})

// ---- 7. Payload segments and acknowledgements of the dead ----

// 7a: once a dead sender is reaped its payload segments are removed, while the queue (and rx) still live.
test.serial("7a: a dead sender's payload segments are removed once it is reaped", async (t) => {
  t.timeout(TEST_MS)
  const [tx, rx] = queue(t, { capacity: 8, slotSize: 1024 })
  const sizes = [200_000, 240_000, 280_000, 320_000, 360_000]
  const sender = startChild(t, 'put-idle.mjs', [tx.handle, ...sizes])
  t.is(await nextMessage(sender, 5000, 'sender child'), 'ready')
  tx.close()
  const problems = []
  for (const [i, size] of sizes.entries()) {
    problems.push(mismatch(await rx.get({ timeout: 3000 }).catch((e) => e), pattern(size, i), `message ${i}`))
  }
  t.deepEqual(problems.filter(Boolean), [], 'all 5 messages exact')
  const segments = shmNames(`${tx.handle}-`)
  t.log(`payload segments before the kill: ${segments.length}`)
  t.true(segments.length >= 2, 'precondition: the sender made several payload segments')
  await killChild(sender)
  t.is(await codeOf(rx.get({ timeout: 1500 })), 'ERR_SHMQ_CLOSED', 'the only sender died')
  t.deepEqual(shmNames(`${tx.handle}-`), [], 'its payload segments are gone')
  t.true(shmNames(tx.handle).includes(tx.handle), 'while the queue itself lives on (rx is open)')
})

/** A consumer stopped at `stallPoint` dies holding the only message: waitForAllAck must resolve. */
async function ackSettlesAfterConsumerDies(t, stallPoint) {
  const [tx, rx] = queue(t, { capacity: 2, slotSize: 1024 })
  t.is(
    syncCode(() => rx.getNowait()),
    'ERR_SHMQ_EMPTY',
    "the parent's receiver takes part (the queue never runs out of receivers)",
  )
  await tx.put(pattern(100_000, 1), { timeout: 1000 })
  const stalled = startChild(t, 'stall.mjs', [tx.handle, 'get'], { SHMQ_TEST_STALL: stallPoint })
  await nextMessage(stalled, 5000, 'stalled receiver')
  await until(() => rx.size === 0, 5000, 'the stalled receiver to take the message')
  await sleep(300)
  await killChild(stalled)
  const started = Date.now()
  const code = await codeOf(tx.waitForAllAck({ timeout: 3000 }))
  t.log(`waitForAllAck: ${code} after ${Date.now() - started} ms`)
  t.is(code, 'ok', 'the message lost with its reader counts as taken')
}

// 7b: waitForAllAck resolves after the consumer holding the message is killed mid-read.
test.serial('7b: waitForAllAck settles after a consumer dies holding a message (stalled at get)', async (t) => {
  t.timeout(TEST_MS)
  await ackSettlesAfterConsumerDies(t, 'get')
})

// 7b': the same when the consumer dies after handing the payload back but before freeing the slot.
test.serial(
  '7b: waitForAllAck settles after a consumer dies holding a message (stalled at get-returned)',
  async (t) => {
    t.timeout(TEST_MS)
    await ackSettlesAfterConsumerDies(t, 'get-returned')
  },
)
