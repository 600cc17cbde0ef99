// A `worker_threads` pool fed from one task queue, results on another.
//
//   node examples/worker-pool.mjs
//
// The main thread splits "count the primes below 2,000,000" into 100 tasks,
// puts them on a task queue in one batch (putMany: they are small), and
// starts 2 worker threads (this same file) that get the queues' handles in
// workerData. Each worker takes tasks until the queue is closed and drained,
// and puts a result per task. The main thread collects the results in batches
// (getMany), checks them, waits for the workers to exit and exits 0 (1 on
// failure).
import { isMainThread, Worker, workerData } from 'node:worker_threads'
import { createSharedMemoryPair, SharedMemoryReceiver, SharedMemorySender } from 'shmq'

const WORKERS = 2
const LIMIT = 2_000_000
const TASKS = 100
const PRIMES_BELOW_LIMIT = 148_933

function countPrimes(from, to) {
  let count = 0
  for (let n = Math.max(from, 2); n < to; n++) {
    let prime = true
    for (let d = 2; d * d <= n; d++) {
      if (n % d === 0) {
        prime = false
        break
      }
    }
    if (prime) count++
  }
  return count
}

if (isMainThread) {
  const [tasks, tasksEnd] = createSharedMemoryPair({ capacity: TASKS })
  const [resultsEnd, results] = createSharedMemoryPair({ capacity: TASKS })
  const workers = Array.from(
    { length: WORKERS },
    // An end in workerData arrives as { handle, capacity }, which attach() takes.
    () => new Worker(new URL(import.meta.url), { workerData: { tasks, results } }),
  )
  // Every wait below gives up if a worker fails, or after 8 s.
  const failed = new AbortController()
  const signal = AbortSignal.any([failed.signal, AbortSignal.timeout(8000)])
  const exited = workers.map((w) => {
    w.on('error', (e) => failed.abort(e)) // the worker threw
    return new Promise((resolve) => w.on('exit', resolve))
  })

  async function collect() {
    const done = new Set()
    let primes = 0
    while (done.size < TASKS) {
      // 1 to TASKS results per call: whatever is there, once at least one is.
      for (const { id, count } of await results.getMany(TASKS, { signal })) {
        if (done.has(id)) throw new Error(`task ${id} came back twice`)
        done.add(id)
        primes += count
      }
    }
    return primes
  }

  try {
    const step = LIMIT / TASKS
    const list = Array.from({ length: TASKS }, (_, id) => ({ id, from: id * step, to: (id + 1) * step }))
    await tasks.putMany(list, { signal }) // small messages: one native call for the lot
    tasks.close() // the workers' loops end once every task is taken
    const primes = await collect()
    if (primes !== PRIMES_BELOW_LIMIT) throw new Error(`counted ${primes} primes, expected ${PRIMES_BELOW_LIMIT}`)
    const codes = await Promise.all(exited) // join the workers
    if (codes.some((code) => code !== 0)) throw new Error(`worker exit codes: ${codes}`)
    // Closed last: while the main thread holds an end of each queue, a worker
    // that starts late can still attach (and then finds the task queue closed).
    tasksEnd.close()
    resultsEnd.close()
    results.close() // the last end of a queue to close removes it from /dev/shm
    console.log(`worker-pool: ${TASKS} tasks, ${WORKERS} workers, ${primes} primes below ${LIMIT}, ok`)
  } catch (e) {
    console.error(`worker-pool: FAILED: ${e.cause?.message ?? e.message}`)
    failed.abort(e) // ends every wait still pending
    for (const w of workers) w.terminate()
    process.exitCode = 1
  }
} else {
  // A worker: attach by handle (the result sender first, so the main thread
  // never sees every result sender gone while this worker holds a task).
  const results = SharedMemorySender.attach(workerData.results)
  const tasks = SharedMemoryReceiver.attach(workerData.tasks)
  for await (const { id, from, to } of tasks) {
    await results.put({ id, count: countPrimes(from, to) })
  }
  tasks.close()
  results.close()
  // The thread's event loop is empty now: it exits with code 0.
}
