// A job queue for `node:cluster`, with the results coming back on a second queue.
//
//   node examples/cluster-jobs.mjs [workers]      (default: 2 workers)
//
// The primary creates two queues, `jobs` (primary -> workers) and `results`
// (workers -> primary), and passes their handles to the workers in the
// environment. Each job is a 16 KiB Buffer; a worker hashes it (SHA-256) and
// puts the digest back. Each job goes to exactly one worker, whichever is free.
// The primary checks every digest, prints one line and exits 0 (1 on failure).
import cluster from 'node:cluster'
import { createHash, randomBytes } from 'node:crypto'
import { once } from 'node:events'
import { createSharedMemoryPair, SharedMemoryReceiver, SharedMemorySender } from 'shmq'

const WORKERS = Number(process.argv[2] ?? 2)
const JOBS = 200
const JOB_BYTES = 16 * 1024

const sha256 = (data) => createHash('sha256').update(data).digest('hex')

if (cluster.isPrimary) {
  if (!(Number.isInteger(WORKERS) && WORKERS > 0)) throw new Error('usage: node examples/cluster-jobs.mjs [workers]')
  // Each pair is one queue; the handle of either end names it.
  const [jobs, jobsEnd] = createSharedMemoryPair({ capacity: 32 })
  const [resultsEnd, results] = createSharedMemoryPair({ capacity: 32 })
  const workers = Array.from({ length: WORKERS }, () =>
    cluster.fork({ SHMQ_JOBS: jobs.handle, SHMQ_RESULTS: results.handle }),
  )
  // Every wait below gives up if a worker dies, or after 8 s.
  const failed = new AbortController()
  const signal = AbortSignal.any([failed.signal, AbortSignal.timeout(8000)])
  const exited = workers.map((w) => new Promise((resolve) => w.on('exit', resolve)))
  cluster.on('exit', (w, code, sig) => {
    if (code !== 0) failed.abort(new Error(`worker ${w.id} exited with ${sig ?? `code ${code}`}`))
  })

  const expected = new Map() // job id -> digest
  const perWorker = new Map() // worker id -> jobs done

  async function produce() {
    for (let id = 0; id < JOBS; id++) {
      const data = randomBytes(JOB_BYTES)
      expected.set(id, sha256(data))
      await jobs.put({ id, data }, { signal }) // waits while the queue is full
    }
    jobs.close() // no more jobs: each worker's loop ends once the queue is drained
  }

  async function collect() {
    for (let n = 0; n < JOBS; n++) {
      const { id, digest, worker } = await results.get({ signal })
      if (digest !== expected.get(id)) throw new Error(`job ${id}: wrong digest from worker ${worker}`)
      expected.delete(id) // so a job done twice fails the check above
      perWorker.set(worker, (perWorker.get(worker) ?? 0) + 1)
    }
  }

  try {
    // Wait until every worker has attached, so that they all get a share.
    await Promise.all(workers.map((w) => once(w, 'message', { signal })))
    // Both sides of each queue have joined now: drop the ends the primary
    // does not use. (Closing them before is safe for one worker, but a worker
    // attaching after the others had used and closed the queue would not find it.)
    jobsEnd.close()
    resultsEnd.close()
    // Produce and collect at once: both queues are bounded, so putting every
    // job before reading any result could deadlock.
    await Promise.all([produce(), collect()])
    await Promise.all(exited)
    results.close() // the last end of a queue to close removes it from /dev/shm
    console.log(
      `cluster-jobs: ${JOBS} jobs, ${WORKERS} workers, ok (jobs per worker: ${[...perWorker.values()].join('/')})`,
    )
  } catch (e) {
    console.error(`cluster-jobs: FAILED: ${e.cause?.message ?? e.message}`)
    failed.abort(e) // ends every wait still pending
    for (const w of workers) w.kill()
    process.exitCode = 1
  }
} else {
  // A worker: attach to both queues by handle. The result sender first, so
  // that no job is taken while the primary could see no result sender at all.
  const results = SharedMemorySender.attach(process.env.SHMQ_RESULTS)
  const jobs = SharedMemoryReceiver.attach(process.env.SHMQ_JOBS)
  process.send('ready')
  for await (const { id, data } of jobs) {
    await results.put({ id, digest: sha256(data), worker: cluster.worker.id })
  }
  // The jobs queue is closed and drained.
  jobs.close()
  results.close()
  process.disconnect() // nothing else keeps the worker alive: it exits with code 0
}
