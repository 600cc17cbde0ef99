#!/usr/bin/env node
// Soak test: node benchmark/soak.mjs [--seconds N] (default 600)
//
// 4 producer and 4 consumer processes on one queue (capacity 8, slotSize
// 4096) exchange checksummed messages of mixed sizes (inline and payload
// segments; soak-producer.mjs / soak-consumer.mjs). At random intervals a
// random producer or consumer is SIGKILLed and a replacement started. At the
// end the producers are stopped, the consumers drain and exit, and the logs
// are checked:
//   delivered   messages received intact, once
//   lost        put but never received: at most one per consumer kill (the
//               message a killed consumer was reading or had not logged yet)
//   duplicated  received twice: 0
//   corrupt     failed its checksum / length check, or a torn log record: 0
//   phantom     received but never put (nor the one message a killed
//               producer had put but not logged yet): 0
// then the queue itself: putNowait succeeds exactly `capacity` times and the
// next is ERR_SHMQ_FULL, then it drains; and once everything has closed,
// nothing of the queue is left in /dev/shm. Prints one JSON line and a short
// table; exits 1 if any invariant fails (the logs are then kept).
import { execFileSync, fork } from 'node:child_process'
import { closeSync, mkdtempSync, openSync, readdirSync, readFileSync, readSync, rmSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { createSharedMemoryPair, SharedMemoryReceiver, SharedMemorySender } from 'shmq'

const { values } = parseArgs({ options: { seconds: { type: 'string', default: '600' } } })
const seconds = Number(values.seconds)
if (!(seconds > 0)) {
  console.error('usage: node benchmark/soak.mjs [--seconds N]   (N > 0, default 600)')
  process.exit(2)
}

const CAPACITY = 8
const SLOT_SIZE = 4096
const PRODUCERS = 4
const CONSUMERS = 4
const EXIT_TIMEOUT_MS = 30_000
/** Past this many children failing on their own, the run ends early. */
const MAX_CHILD_FAILURES = 20
const CORRUPT = 0xffffffff
const sleep = (ms) => new Promise((r) => setTimeout(r, ms))
const script = (name) => fileURLToPath(new URL(`./${name}`, import.meta.url))

const dir = mkdtempSync(join(tmpdir(), 'shmq-soak-'))
const shmBefore = new Set(readdirSync('/dev/shm'))
const [tx, rx] = createSharedMemoryPair({ capacity: CAPACITY, slotSize: SLOT_SIZE })
const handle = tx.handle

const roles = {
  producer: { script: script('soak-producer.mjs'), live: new Map(), started: 0, kills: 0, killed: new Set() },
  consumer: { script: script('soak-consumer.mjs'), live: new Map(), started: 0, kills: 0, killed: new Set() },
}
/** Children that exited on their own with an error, or early, or hung at the end. */
const childFailures = []
let stopping = false

const log = (role, id) => join(dir, `${role[0]}${id}`)

function spawnChild(name) {
  const role = roles[name]
  const id = role.started++
  const args = name === 'producer' ? [handle, id, log(name, id)] : [handle, log(name, id)]
  const child = fork(role.script, args.map(String), { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
  child.on('error', () => {}) // a send to a child that has just exited; its exit tells the rest
  child.killedByUs = false
  child.ready = new Promise((resolve) => child.once('message', resolve))
  child.exited = new Promise((resolve) => {
    child.on('exit', (code, signal) => {
      role.live.delete(id)
      if (!child.killedByUs && (code !== 0 || !stopping)) {
        childFailures.push({ role: name, id, code, signal, when: stopping ? 'end' : 'during the run' })
        // Keep the soak going (the run has failed already), unless children keep failing.
        if (!stopping && childFailures.length <= MAX_CHILD_FAILURES) spawnChild(name)
      }
      resolve({ code, signal })
    })
  })
  role.live.set(id, child)
  return child
}

process.on('exit', () => {
  for (const role of Object.values(roles)) for (const child of role.live.values()) child.kill('SIGKILL')
})
for (const signal of ['SIGINT', 'SIGTERM']) process.on(signal, () => process.exit(130))

/** What a hang looks like: the queue as `shmq ls` sees it, and where each live child sleeps. */
function snapshot() {
  const wchan = (pid) => {
    try {
      return readFileSync(`/proc/${pid}/wchan`, 'utf8')
    } catch {
      return '?'
    }
  }
  let queue
  try {
    const cli = fileURLToPath(new URL('../dist/cli.js', import.meta.url))
    queue = JSON.parse(execFileSync(process.execPath, [cli, 'ls', '--json'], { encoding: 'utf8' })).find(
      (q) => q.name === handle,
    )
  } catch (e) {
    queue = String(e)
  }
  const children = {}
  for (const [name, role] of Object.entries(roles))
    children[name] = [...role.live].map(([id, c]) => `${id}:${c.pid}:${wchan(c.pid)}`)
  return { queue, size: rx.size, children }
}

/** `promise`'s value, or 'timeout' after `ms` (the timer is cleared either way). */
async function settled(promise, ms) {
  let timer
  const late = new Promise((resolve) => {
    timer = setTimeout(() => resolve('timeout'), ms)
  })
  try {
    return await Promise.race([promise, late])
  } finally {
    clearTimeout(timer)
  }
}

async function waitExit(name, child, id) {
  if ((await settled(child.exited, EXIT_TIMEOUT_MS)) === 'timeout') {
    childFailures.push({ role: name, id, hung: `did not exit within ${EXIT_TIMEOUT_MS} ms of the end`, ...snapshot() })
    child.killedByUs = true
    child.kill('SIGKILL')
    await child.exited
  }
}

// ---- the run ----------------------------------------------------------------

const started = performance.now()
for (let i = 0; i < PRODUCERS; i++) spawnChild('producer')
for (let i = 0; i < CONSUMERS; i++) spawnChild('consumer')
const until = started + seconds * 1000
let nextProgress = started + 30_000
while (performance.now() < until && childFailures.length <= MAX_CHILD_FAILURES) {
  await sleep(Math.min(until - performance.now(), 100 + Math.random() * 900))
  if (performance.now() >= until) break
  const name = Math.random() < 0.5 ? 'producer' : 'consumer'
  const role = roles[name]
  const ids = [...role.live.keys()]
  if (ids.length === 0) continue
  const id = ids[Math.floor(Math.random() * ids.length)]
  const victim = role.live.get(id)
  victim.killedByUs = true
  victim.kill('SIGKILL')
  await victim.exited
  role.kills++
  role.killed.add(id)
  spawnChild(name)
  if (performance.now() >= nextProgress) {
    nextProgress += 30_000
    const s = Math.round((performance.now() - started) / 1000)
    console.error(
      `soak: ${s}/${seconds} s, ${roles.producer.kills} producers and ${roles.consumer.kills} consumers killed`,
    )
  }
}

// Stop the producers; the consumers drain the queue and see it close. Every
// producer must have attached first: a replacement attaching after the others
// have closed would reopen a queue its consumers had already seen close.
stopping = true
const runSeconds = (performance.now() - started) / 1000
await Promise.all(
  [...roles.producer.live.values(), ...roles.consumer.live.values()].map((child) =>
    settled(Promise.race([child.ready, child.exited]), EXIT_TIMEOUT_MS),
  ),
)
await Promise.all(
  [...roles.producer.live].map(([id, child]) => {
    child.send('stop')
    return waitExit('producer', child, id)
  }),
)
await Promise.all([...roles.consumer.live].map(([id, child]) => waitExit('consumer', child, id)))

// ---- the logs -----------------------------------------------------------------

/** Messages producer `id` put and logged (its seq 0 … n-1). */
function sentBy(id) {
  const fd = openSync(log('producer', id), 'r')
  const b = Buffer.alloc(4)
  const n = readSync(fd, b, 0, 4, 0)
  closeSync(fd)
  return n === 4 ? b.readUInt32LE(0) : 0
}
const producers = Array.from({ length: roles.producer.started }, (_, id) => {
  let sent = 0
  try {
    sent = sentBy(id)
  } catch {} // killed before it created its log
  return { sent, killed: roles.producer.killed.has(id), seen: new Uint8Array(sent + 1) }
})
const totals = { delivered: 0, lost: 0, duplicated: 0, corrupt: 0, phantom: 0, unlogged: 0, tornRecords: 0 }
const chunk = Buffer.alloc(1 << 20)
for (let id = 0; id < roles.consumer.started; id++) {
  let fd
  try {
    fd = openSync(log('consumer', id), 'r')
  } catch {
    continue // killed before it created its log
  }
  const size = statSync(log('consumer', id)).size
  if (size % 8 !== 0) totals.tornRecords++
  for (let at = 0; at + 8 <= size; ) {
    const n = readSync(fd, chunk, 0, Math.min(chunk.length, size - (size % 8) - at), at)
    for (let i = 0; i + 8 <= n; i += 8) {
      const p = chunk.readUInt32LE(i)
      const seq = chunk.readUInt32LE(i + 4)
      const from = producers[p]
      if (p === CORRUPT) totals.corrupt++
      else if (from === undefined || seq > from.sent || (seq === from.sent && !from.killed)) totals.phantom++
      else if (from.seen[seq] === 1) totals.duplicated++
      else {
        from.seen[seq] = 1
        totals.delivered++
        if (seq === from.sent) totals.unlogged++
      }
    }
    at += n
  }
  closeSync(fd)
}
for (const p of producers) for (let seq = 0; seq < p.sent; seq++) if (p.seen[seq] === 0) totals.lost++
const sent = producers.reduce((n, p) => n + p.sent, 0)

// ---- the queue afterwards -----------------------------------------------------

const capacityCheck = { leftBehind: rx.size, accepted: 0, next: null, drained: [], after: null }
{
  const checkTx = SharedMemorySender.attach(handle)
  const checkRx = SharedMemoryReceiver.attach(handle)
  // One wait on the empty queue first: a wait that passes a slice with nothing
  // to do reaps dead ends and frees any slot a killed consumer still held.
  capacityCheck.firstGet = await checkRx.get({ timeout: 300 }).then(
    () => 'a message',
    (e) => e.code,
  )
  for (let i = 0; i < CAPACITY; i++) {
    try {
      checkTx.putNowait(i)
      capacityCheck.accepted++
    } catch (e) {
      capacityCheck.next = e.code
      break
    }
  }
  if (capacityCheck.next === null) {
    try {
      checkTx.putNowait('one too many')
      capacityCheck.next = 'accepted'
    } catch (e) {
      capacityCheck.next = e.code
    }
  }
  for (let i = 0; i < CAPACITY + 1; i++) {
    try {
      const value = checkRx.getNowait()
      capacityCheck.drained.push(typeof value === 'number' ? value : `a ${typeof value}`)
    } catch (e) {
      capacityCheck.after = e.code
      break
    }
  }
  checkTx.close()
  checkRx.close()
}
capacityCheck.ok =
  capacityCheck.leftBehind === 0 &&
  capacityCheck.firstGet === 'ERR_SHMQ_EMPTY' &&
  capacityCheck.accepted === CAPACITY &&
  capacityCheck.next === 'ERR_SHMQ_FULL' &&
  capacityCheck.drained.join() === Array.from({ length: CAPACITY }, (_, i) => i).join() &&
  capacityCheck.after === 'ERR_SHMQ_EMPTY'

tx.close()
rx.close()
await sleep(100)
const shmAfter = readdirSync('/dev/shm')
const leftovers = shmAfter.filter((n) => n.startsWith(handle))
// Reported, not judged: other processes may be using shmq at the same time.
const otherNewShmq = shmAfter.filter((n) => n.startsWith('shmq-') && !n.startsWith(handle) && !shmBefore.has(n))

// ---- the verdict --------------------------------------------------------------

const failures = []
const expect = (ok, what) => ok || failures.push(what)
expect(totals.lost <= roles.consumer.kills, `lost ${totals.lost} > consumer kills ${roles.consumer.kills}`)
expect(totals.duplicated === 0, `duplicated ${totals.duplicated}`)
expect(totals.corrupt === 0, `corrupt ${totals.corrupt}`)
expect(totals.phantom === 0, `phantom ${totals.phantom}`)
expect(totals.tornRecords === 0, `torn log records in ${totals.tornRecords} consumer logs`)
expect(childFailures.length === 0, `children failed: ${JSON.stringify(childFailures.slice(0, 5))}`)
expect(capacityCheck.ok, `capacity check: ${JSON.stringify(capacityCheck)}`)
expect(leftovers.length === 0, `left in /dev/shm: ${leftovers.join(' ')}`)
expect(totals.delivered >= seconds * 10, `only ${totals.delivered} messages delivered in ${seconds} s`)

const result = {
  ok: failures.length === 0,
  seconds: Math.round(runSeconds),
  capacity: CAPACITY,
  producers: PRODUCERS,
  consumers: CONSUMERS,
  sent,
  ...totals,
  messagesPerSecond: Math.round(totals.delivered / runSeconds),
  producerKills: roles.producer.kills,
  consumerKills: roles.consumer.kills,
  childFailures,
  capacityCheck,
  leftovers,
  otherNewShmq: { count: otherNewShmq.length, some: otherNewShmq.slice(0, 3) },
  failures,
  logs: failures.length === 0 ? null : dir,
}
console.log(JSON.stringify(result))
const verdict = (ok) => (ok ? 'ok' : 'FAIL')
const rows = [
  ['delivered', totals.delivered, `${result.messagesPerSecond} msg/s`, verdict(totals.delivered >= seconds * 10)],
  ['lost', totals.lost, `<= ${roles.consumer.kills} consumer kills`, verdict(totals.lost <= roles.consumer.kills)],
  ['duplicated', totals.duplicated, '0', verdict(totals.duplicated === 0)],
  ['corrupt', totals.corrupt + totals.tornRecords, '0', verdict(totals.corrupt + totals.tornRecords === 0)],
  ['phantom', totals.phantom, '0', verdict(totals.phantom === 0)],
  ['producer kills', roles.producer.kills, `${totals.unlogged} delivered unlogged`, ''],
  ['consumer kills', roles.consumer.kills, '', ''],
  ['child failures', childFailures.length, '0', verdict(childFailures.length === 0)],
  [
    'capacity check',
    `${capacityCheck.accepted}/${CAPACITY}`,
    `then ${capacityCheck.next}, drained ${capacityCheck.drained.length}`,
    verdict(capacityCheck.ok),
  ],
  [
    '/dev/shm leftovers',
    leftovers.length,
    `0 (other new shmq-*: ${otherNewShmq.length})`,
    verdict(leftovers.length === 0),
  ],
]
console.log(
  `\nshmq soak: ${result.seconds} s, ${PRODUCERS} producers + ${CONSUMERS} consumers, capacity ${CAPACITY}, queue ${handle}`,
)
for (const [what, value, note, ok] of rows)
  console.log(`  ${what.padEnd(20)}${String(value).padStart(10)}  ${note.padEnd(30)}${ok}`)
if (failures.length === 0) rmSync(dir, { recursive: true, force: true })
else console.log(`\nFAILED: ${failures.join('; ')}\nlogs kept in ${dir}`)
process.exitCode = failures.length === 0 ? 0 : 1
