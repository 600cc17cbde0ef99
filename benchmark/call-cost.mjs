// What one call costs a 64-byte message in one process, with no other core
// involved: putSync/getSync and putManySync/getManySync (batches of 256), the
// best of many rounds, for each checkout given (built), alternating.
//   node benchmark/call-cost.mjs <tree> [...]   e.g. node benchmark/call-cost.mjs ../shmq-before .
import { createRequire } from 'node:module'
import { resolve } from 'node:path'

const trees = process.argv.slice(2)
if (trees.length === 0) {
  console.error('usage: node benchmark/call-cost.mjs <tree> [...]')
  process.exit(2)
}
const require = createRequire(import.meta.url)
const shmqs = trees.map((tree) => require(resolve(tree)))
const message = Buffer.alloc(64, 1)
const batch = Array(256).fill(message)

/** ns per message of `put` and of `get` (each taking 512 messages): the best of many rounds after a warm-up. */
function best(put, get) {
  const ns = [Infinity, Infinity]
  for (let r = 0; r < 300; r++) {
    const t0 = process.hrtime.bigint()
    put()
    const t1 = process.hrtime.bigint()
    get()
    const t2 = process.hrtime.bigint()
    if (r < 60) continue
    ns[0] = Math.min(ns[0], Number(t1 - t0) / 512)
    ns[1] = Math.min(ns[1], Number(t2 - t1) / 512)
  }
  return ns
}

function measure(shmq) {
  const [tx, rx] = shmq.createSharedMemoryPair({ capacity: 512 })
  const [putSync, getSync] = best(
    () => {
      for (let i = 0; i < 512; i++) tx.putSync(message)
    },
    () => {
      for (let i = 0; i < 512; i++) rx.getSync()
    },
  )
  const [putManySync, getManySync] = best(
    () => {
      tx.putManySync(batch)
      tx.putManySync(batch)
    },
    () => {
      for (let n = 0; n < 512; ) n += rx.getManySync(256).length
    },
  )
  tx.close()
  rx.close()
  return { putSync, getSync, putManySync, getManySync }
}

for (let round = 0; round < 3; round++) {
  for (const [i, tree] of trees.entries()) {
    const r = measure(shmqs[i])
    console.log(
      `${tree}: ${Object.entries(r)
        .map(([k, v]) => `${k} ${v.toFixed(0)}`)
        .join(', ')} ns a message`,
    )
  }
}
