// Several producer and consumer processes: nothing lost, duplicated or torn,
// and each producer's messages reach each consumer in order.
import test from 'ava'
import { createSharedMemoryPair } from 'shmq'
import { run } from './helpers.mjs'

async function mpmc(t, { producers, consumers, perProducer, maxSize, capacity, slotSize }) {
  const [tx, rx] = createSharedMemoryPair({ capacity, slotSize })
  const consumerRuns = Array.from({ length: consumers }, () => run('consumer.mjs', [rx.handle]))
  const producerRuns = Array.from({ length: producers }, (_, id) =>
    run('producer.mjs', [tx.handle, id, perProducer, maxSize]),
  )
  tx.close()
  rx.close()
  for (const p of await Promise.all(producerRuns)) t.is(p.code, 0)
  const results = await Promise.all(consumerRuns)
  const seen = new Set()
  for (const { code, messages } of results) {
    t.is(code, 0)
    const { got, bad } = messages[0]
    t.is(bad, 0, 'no torn message')
    const last = new Map()
    for (const [p, seq] of got) {
      t.true((last.get(p) ?? -1) < seq, `producer ${p} in order`)
      last.set(p, seq)
      const key = `${p}:${seq}`
      t.false(seen.has(key), `duplicate ${key}`)
      seen.add(key)
    }
  }
  t.is(seen.size, producers * perProducer, 'every message arrived')
}

test('3 producers, 2 consumers, inline messages, capacity 4', mpmc, {
  producers: 3,
  consumers: 2,
  perProducer: 3000,
  maxSize: 200,
  capacity: 4,
  slotSize: 256,
})

test('2 producers, 3 consumers, inline and payload-segment messages, capacity 1', mpmc, {
  producers: 2,
  consumers: 3,
  perProducer: 400,
  maxSize: 300_000,
  capacity: 1,
  slotSize: 4096,
})

test('4 producers, 2 consumers, mixed sizes, capacity 64', mpmc, {
  producers: 4,
  consumers: 2,
  perProducer: 800,
  maxSize: 100_000,
  capacity: 64,
  slotSize: 1024,
})
