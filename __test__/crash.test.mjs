// Processes that die at any instant (SIGKILL) leave the others working.
import test from 'ava'
import { fork } from 'node:child_process'
import { once } from 'node:events'
import { mkdtempSync, readFileSync, existsSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createSharedMemoryPair, SharedMemoryReceiver, SharedMemorySender } from 'shmq'
import { fixture, shmNames } from './helpers.mjs'

function start(name, args, env = {}) {
  const child = fork(fixture(name), args.map(String), {
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    env: { ...process.env, ...env },
  })
  child.exited = once(child, 'exit')
  return child
}

async function kill(child) {
  child.kill('SIGKILL')
  await child.exited
}

test.serial(
  'a receiver waiting on an empty queue gets QueueClosedError within ~1 s of its only sender being killed',
  async (t) => {
    const [tx, rx] = createSharedMemoryPair()
    const sender = start('member.mjs', [tx.handle, 'sender', 'put1'])
    tx.close()
    await once(sender, 'message')
    t.is((await rx.get()).length, 100_000)
    const waiting = rx.get()
    await new Promise((r) => setTimeout(r, 100))
    const killed = Date.now()
    await kill(sender)
    await t.throwsAsync(waiting, { code: 'ERR_SHMQ_CLOSED' })
    const detectMs = Date.now() - killed
    t.log(`dead sender detected after ${detectMs} ms`)
    t.true(detectMs < 1000, `${detectMs} ms`)
    t.throws(() => rx.getSync({ timeout: 2000 }), { code: 'ERR_SHMQ_CLOSED' }, 'the sync API too')
    rx.close()
  },
)

test.serial(
  'a sender blocked on a full queue gets QueueClosedError within ~1 s of its only receiver being killed',
  async (t) => {
    const [tx, rx] = createSharedMemoryPair({ capacity: 2 })
    const receiver = start('member.mjs', [rx.handle, 'receiver', 'idle'])
    rx.close()
    await once(receiver, 'message')
    await tx.put(1)
    await tx.put(2)
    const blocked = tx.put(3)
    const killed = Date.now()
    await kill(receiver)
    await t.throwsAsync(blocked, { code: 'ERR_SHMQ_CLOSED' })
    const detectMs = Date.now() - killed
    t.log(`dead receiver detected after ${detectMs} ms`)
    t.true(detectMs < 1000, `${detectMs} ms`)
    t.throws(() => tx.putSync(4, { timeout: 2000 }), { code: 'ERR_SHMQ_CLOSED' }, 'the sync API too')
    tx.close()
  },
)

const settle = () => new Promise((r) => setTimeout(r, 300))

test.serial(
  'a producer killed while writing a slot: the slot is skipped and the queue keeps its capacity',
  async (t) => {
    const [tx, rx] = createSharedMemoryPair({ capacity: 2, slotSize: 1024 })
    const stalled = start('stall.mjs', [tx.handle, 'put'], { SHMQ_TEST_STALL: 'put' })
    await once(stalled, 'message')
    await settle()
    t.is(rx.size, 1, 'the stalled producer holds a claimed slot')
    await tx.put('after')
    await kill(stalled)
    t.is(await rx.get({ timeout: 3000 }), 'after', "the dead producer's slot is skipped")
    tx.putNowait(1)
    tx.putNowait(2)
    t.throws(() => tx.putNowait(3), { code: 'ERR_SHMQ_FULL' }, 'exactly the full capacity again')
    t.deepEqual([rx.getNowait(), rx.getNowait()], [1, 2])
    tx.close()
    rx.close()
  },
)

test.serial('a consumer killed while reading a slot: the slot and its payload segment are given back', async (t) => {
  const [tx, rx] = createSharedMemoryPair({ capacity: 2, slotSize: 1024 })
  await tx.put(Buffer.alloc(100_000, 1))
  const stalled = start('stall.mjs', [tx.handle, 'get'], { SHMQ_TEST_STALL: 'get' })
  await once(stalled, 'message')
  await settle()
  await tx.put('b')
  t.throws(() => tx.putNowait('c'), { code: 'ERR_SHMQ_FULL' }, 'the stalled consumer holds the first slot')
  await kill(stalled)
  await tx.put('c', { timeout: 3000 })
  t.deepEqual([await rx.get(), await rx.get()], ['b', 'c'], 'the message being read died with its reader')
  await tx.put(Buffer.alloc(100_000, 2))
  t.is((await rx.get()).length, 100_000)
  t.is(shmNames(`${tx.handle}-`).length, 1, 'the payload segment came back to its sender and was reused')
  tx.close()
  rx.close()
})

test.serial(
  'killing the creator leaves the queue working for the others, and nothing behind once they close',
  async (t) => {
    const creator = start('creator-idle.mjs', [])
    const [{ handle }] = await once(creator, 'message')
    const tx = SharedMemorySender.attach(handle)
    const rx = SharedMemoryReceiver.attach(handle)
    await kill(creator)
    t.is((await rx.get()).length, 200_000, "the creator's message is still delivered")
    for (let i = 0; i < 20; i++) {
      await tx.put(Buffer.alloc(5000 * i, i))
      t.is((await rx.get()).length, 5000 * i)
    }
    tx.close()
    rx.close()
    t.deepEqual(shmNames(handle), [])
  },
)

test.serial(
  'kill rounds: random producers and consumers are SIGKILLed and replaced; nothing torn, duplicated or lost beyond the killed',
  async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'shmq-chaos-'))
    const [tx, rx] = createSharedMemoryPair({ capacity: 8, slotSize: 2048 })
    const producers = []
    const consumers = []
    let producerIds = 0
    let consumerIds = 0
    let producerKills = 0
    let consumerKills = 0
    const spawnProducer = () => {
      const id = producerIds++
      const child = start('chaos-producer.mjs', [tx.handle, id, join(dir, `p${id}`), 0])
      producers.push({ id, child, ready: once(child, 'message') })
    }
    const spawnConsumer = () => {
      const id = consumerIds++
      consumers.push({ id, child: start('chaos-consumer.mjs', [rx.handle, join(dir, `c${id}`)]) })
    }
    for (let i = 0; i < 2; i++) {
      spawnProducer()
      spawnConsumer()
    }
    const rounds = 24
    for (let round = 0; round < rounds; round++) {
      await new Promise((r) => setTimeout(r, 40 + Math.random() * 200))
      const killProducer = round % 2 === 0
      const pool = killProducer ? producers : consumers
      const [victim] = pool.splice(Math.floor(Math.random() * pool.length), 1)
      await kill(victim.child)
      if (killProducer) {
        producerKills++
        spawnProducer()
      } else {
        consumerKills++
        spawnConsumer()
      }
    }
    // Stop the producers (once attached, so none can attach after the
    // consumers saw every sender gone); the consumers drain and see the queue close.
    await Promise.all(producers.map((p) => p.ready))
    for (const p of producers) p.child.send('stop')
    const deadline = (child) =>
      Promise.race([child.exited, new Promise((_, reject) => setTimeout(() => reject(new Error('hang')), 20_000))])
    await Promise.all(producers.map((p) => deadline(p.child)))
    await Promise.all(consumers.map((c) => deadline(c.child)))

    const lines = (file) => (existsSync(file) ? readFileSync(file, 'utf8').split('\n').filter(Boolean) : [])
    const sent = new Set()
    for (let id = 0; id < producerIds; id++) for (const seq of lines(join(dir, `p${id}`))) sent.add(`${id} ${seq}`)
    const received = new Map()
    let bad = 0
    for (let id = 0; id < consumerIds; id++) {
      for (const line of lines(join(dir, `c${id}`))) {
        if (line === 'BAD') bad++
        else received.set(line, (received.get(line) ?? 0) + 1)
      }
    }
    t.is(bad, 0, 'no torn message')
    t.deepEqual(
      [...received.values()].filter((n) => n > 1),
      [],
      'no duplicate',
    )
    const missing = [...sent].filter((m) => !received.has(m))
    const unlogged = [...received.keys()].filter((m) => !sent.has(m))
    t.log(
      `${rounds} kill rounds (${producerKills} producers, ${consumerKills} consumers killed); ${sent.size} sent, ${received.size} received, ${missing.length} lost with killed consumers`,
    )
    // A killed consumer may take the one message it was reading with it; a
    // killed producer may have delivered the message it had not logged yet.
    t.true(missing.length <= consumerKills, `${missing.length} missing`)
    t.true(unlogged.length <= producerKills, `${unlogged.length} unlogged`)
    t.true(sent.size > 1000, 'enough traffic to mean something')
    t.is(rx.size, 0)
    tx.close()
    rx.close()
    t.deepEqual(shmNames(tx.handle), [], 'nothing left in /dev/shm')
  },
)
