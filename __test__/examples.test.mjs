// The programs in examples/ run as a user would run them (`node examples/<file>`):
// each exits 0, prints its summary line and leaves nothing in /dev/shm.
import test from 'ava'
import { execFile } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { shmNames } from './helpers.mjs'

const root = fileURLToPath(new URL('..', import.meta.url))

/** Runs `node <args>` in the package root; resolves { code, stdout, stderr } whatever the exit code. */
function node(args, timeout = 30_000) {
  return new Promise((resolve) => {
    execFile(process.execPath, args, { cwd: root, timeout }, (error, stdout, stderr) => {
      resolve({ code: error ? (error.code ?? error.signal) : 0, stdout, stderr })
    })
  })
}

const examples = [
  ['cluster-jobs.mjs', [], /^cluster-jobs: 200 jobs, 2 workers, ok\b/m],
  ['frame-pipeline.mjs', [], /^frame-pipeline: 60 frames \(\d+ MiB\), zero-copy, ok$/m],
  ['worker-pool.mjs', [], /^worker-pool: 100 tasks, 2 workers, 148933 primes below 2000000, ok$/m],
]

// Serial, so that one example's queues are never taken for another's leftovers.
for (const [file, args, summary] of examples) {
  test.serial(`node examples/${file} exits 0, prints its summary and leaves /dev/shm clean`, async (t) => {
    const before = new Set(shmNames())
    const started = performance.now()
    const { code, stdout, stderr } = await node([`examples/${file}`, ...args])
    t.log(`${stdout.trim()} (${Math.round(performance.now() - started)} ms)`)
    t.is(code, 0, `exit code ${code}; stderr:\n${stderr}`)
    t.regex(stdout, summary)
    t.deepEqual(
      shmNames().filter((n) => !before.has(n)),
      [],
      'shmq- entries left in /dev/shm',
    )
  })
}
