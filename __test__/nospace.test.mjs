// A full shared-memory filesystem (Docker's 64 MB /dev/shm) gives
// ERR_SHMQ_NO_SPACE at create/put time, never a SIGBUS.
import test from 'ava'
import { spawnSync } from 'node:child_process'
import { fixture } from './helpers.mjs'

const canUnshare =
  spawnSync('unshare', ['-m', 'sh', '-c', 'mount -t tmpfs -o size=1m tmpfs /dev/shm'], { stdio: 'ignore' }).status === 0
const maybe = canUnshare ? test : test.skip
if (!canUnshare) console.log('skipping the /dev/shm size test: `unshare -m` + mount is not permitted here (needs root)')

maybe(
  'a 64 MB /dev/shm: a too-big queue or message is ERR_SHMQ_NO_SPACE naming /dev/shm; the queue keeps working',
  (t) => {
    const run = spawnSync(
      'unshare',
      [
        '-m',
        'sh',
        '-c',
        `mount -t tmpfs -o size=64m tmpfs /dev/shm && exec "${process.execPath}" "${fixture('nospace.mjs')}"`,
      ],
      { encoding: 'utf8', cwd: process.cwd() },
    )
    t.is(run.signal, null, 'no SIGBUS or other signal')
    t.is(run.status, 0, run.stderr)
    const report = JSON.parse(run.stdout.trim().split('\n').pop())
    t.is(report.bigQueue.code, 'ERR_SHMQ_NO_SPACE')
    t.regex(report.bigQueue.message, /\/dev\/shm is 64\.0 MiB/)
    t.is(report.bigMessage.code, 'ERR_SHMQ_NO_SPACE')
    t.regex(report.bigMessage.message, /\/dev\/shm/)
    t.is(report.sizeAfter, 0, 'the failed put enqueued nothing')
    t.is(report.after, 'still works')
  },
)
