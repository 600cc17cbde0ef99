// The `shmq` command line (dist/cli.js) run as a real process over the real /dev/shm:
// usage and exit codes, `ls --json`, `ls --watch` with its rate, and a `gc`
// dry run. Every child has a timeout and is killed in teardown.
import test from 'ava'
import { execFile, spawn } from 'node:child_process'
import { closeSync, openSync, unlinkSync, writeSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { createSharedMemoryPair } from 'shmq'
import { crashedQueue, shmNames, sleep, within } from './helpers.mjs'

const CLI = fileURLToPath(new URL('../dist/cli.js', import.meta.url))

/** Runs the CLI; resolves { code, stdout, stderr } (10 s timeout). */
function cli(...args) {
  return new Promise((resolve) => {
    execFile(process.execPath, [CLI, ...args], { encoding: 'utf8', timeout: 10_000 }, (error, stdout, stderr) =>
      resolve({ code: error ? (error.code ?? error.signal) : 0, stdout, stderr }),
    )
  })
}

for (const args of [
  ['--help'],
  ['-h'],
  ['help'],
  ['help', 'ls'],
  ['ls', '--help'],
  ['gc', '--help'],
  ['ls', '-w', '-h'],
]) {
  test(`\`shmq ${args.join(' ')}\` prints the usage to stdout and exits 0`, async (t) => {
    const { code, stdout, stderr } = await cli(...args)
    t.is(code, 0, stderr)
    t.regex(stdout, /^usage: shmq <command>/)
    t.regex(stdout, /--watch/)
    t.regex(stdout, /--interval <ms>/)
    t.is(stderr, '')
  })
}

for (const [args, error] of [
  [['ls', '--bogus'], /^shmq: Unknown option '--bogus'\n/],
  [['--bogus'], /^shmq: Unknown option '--bogus'\n/],
  [['frobnicate'], /^shmq: unknown command 'frobnicate'\n/],
  [['constructor'], /^shmq: unknown command 'constructor'\n/],
  [['ls', 'stray'], /^shmq: unexpected argument 'stray' after 'ls'\n/],
  [['gc', '--json'], /^shmq: 'gc' takes no option '--json'\n/],
  [['ls', '--interval', '200'], /^shmq: '--interval' needs '--watch'\n/],
  [['ls', '--watch', '--interval', 'soon'], /^shmq: '--interval' takes whole milliseconds/],
  [['ls', '--watch', '--interval', '0'], /^shmq: '--interval' takes whole milliseconds/],
  [['ls', '--watch', '--interval'], /^shmq: Option '--interval <value>' argument missing\n/],
  [[], /^shmq: no command given\n/],
]) {
  test(`\`${['shmq', ...args].join(' ')}\` is a usage error: one line and the usage on stderr, exit 2`, async (t) => {
    const { code, stdout, stderr } = await cli(...args)
    t.is(code, 2, stderr)
    t.is(stdout, '')
    t.regex(stderr, error)
    t.regex(stderr.split('\n').slice(1).join('\n'), /^\nusage: shmq <command>/)
  })
}

test.serial('`shmq ls --json` lists a queue of this process with its depth and the messages ever sent', async (t) => {
  const [tx, rx] = createSharedMemoryPair({ capacity: 8 })
  t.teardown(() => {
    tx.close()
    rx.close()
  })
  for (let i = 0; i < 5; i++) tx.putSync(`message ${i}`)
  rx.getSync()
  const { code, stdout, stderr } = await cli('ls', '--json')
  t.is(code, 0, stderr)
  const listed = JSON.parse(stdout).find((q) => q.name === tx.handle)
  t.like(listed, { status: 'live', capacity: 8, depth: 4, sent: 5, senders: 1, receivers: 1, pids: [process.pid] })
  t.true(listed.bytes > 0)
  const table = await cli('ls')
  t.regex(table.stdout, new RegExp(`^${tx.handle}\\s+live\\s+8\\s+4\\s+1\\s+1\\s+${process.pid}\\s`, 'm'))
  t.notRegex(table.stdout, /RATE/, 'a single listing has no rate')
})

test.serial(
  '`shmq ls --json` reports sent as null when the tail is past Number.MAX_SAFE_INTEGER (a corrupt segment)',
  async (t) => {
    const [tx, rx] = createSharedMemoryPair({ capacity: 8 })
    t.teardown(() => {
      tx.close()
      rx.close()
    })
    // The header's tail is the u64 at offset 256 (crates/shmq-core/src/layout.rs); nothing uses
    // this idle queue while it is changed, and it is put back before closing.
    const fd = openSync(`/dev/shm/${tx.handle}`, 'r+')
    const tail = Buffer.alloc(8)
    t.teardown(() => closeSync(fd))
    const setTail = (n) => {
      tail.writeBigUInt64LE(n)
      writeSync(fd, tail, 0, 8, 256)
    }
    const sentListed = async () =>
      JSON.parse((await cli('ls', '--json')).stdout).find((q) => q.name === tx.handle)?.sent
    setTail(2n ** 53n - 1n)
    t.is(await sentListed(), Number.MAX_SAFE_INTEGER)
    setTail(2n ** 53n)
    t.is(await sentListed(), null)
    setTail(0n)
    t.is(await sentListed(), 0)
  },
)

test.serial(
  '`shmq ls --watch --json --interval 200` prints a line per refresh with a rate, and exits 0 on SIGTERM',
  async (t) => {
    const [tx, rx] = createSharedMemoryPair({ capacity: 8 })
    t.teardown(() => {
      tx.close()
      rx.close()
    })
    const child = spawn(process.execPath, [CLI, 'ls', '--watch', '--json', '--interval', '200'], {
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    t.teardown(() => child.kill('SIGKILL'))
    const exited = new Promise((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })))
    let stdout = ''
    let stderr = ''
    child.stdout.setEncoding('utf8').on('data', (d) => (stdout += d))
    child.stderr.setEncoding('utf8').on('data', (d) => (stderr += d))
    const refreshes = () =>
      stdout
        .split('\n')
        .filter(Boolean)
        .map((line) => JSON.parse(line))
    const ours = () =>
      refreshes()
        .map((r) => r.queues.find((q) => q.name === tx.handle))
        .filter(Boolean)

    // Put (and take) messages for at least a second, until the child has
    // shown our queue at least twice and with a rate above 0 (at most 15 s).
    const started = Date.now()
    let sent = 0
    while (Date.now() - started < 1000 || ours().length < 2 || !ours().some((q) => q.rate > 0)) {
      if (Date.now() - started > 15_000) t.fail(`no rate within 15 s; stdout: ${stdout.slice(-2000)} stderr: ${stderr}`)
      if (Date.now() - started > 15_000 || child.exitCode !== null) break
      for (let i = 0; i < 5; i++) await tx.put(sent++)
      for (let i = 0; i < 5; i++) await rx.get()
      await sleep(20)
    }
    child.kill('SIGTERM')
    t.deepEqual(await within(exited, 5000, 'exit of `shmq ls --watch` after SIGTERM'), { code: 0, signal: null })
    t.is(stderr, '')

    const all = refreshes()
    t.true(all.length >= 2, `${all.length} refreshes`)
    for (const r of all) t.false(Number.isNaN(Date.parse(r.time)), `time ${r.time}`)
    const seen = ours()
    t.true(seen.length >= 2)
    t.is(seen[0].rate, null, 'no rate before a second refresh')
    t.true(
      seen.some((q) => q.rate > 0),
      `rates ${seen.map((q) => q.rate)}`,
    )
    t.true(
      seen.every((q, i) => i === 0 || q.sent >= seen[i - 1].sent),
      'sent only grows',
    )
    t.true(seen.every((q) => q.sent <= sent && q.depth <= 8))
  },
)

test.serial('`shmq gc` without --force removes nothing, and never lists a live queue', async (t) => {
  const [liveTx, liveRx] = createSharedMemoryPair()
  t.teardown(() => {
    liveTx.close()
    liveRx.close()
  })
  const { handle, signal } = await crashedQueue()
  t.is(signal, 'SIGKILL')
  // Removed by hand, not by `gc --force`, so no other dead queue is touched.
  t.teardown(() => {
    for (const name of shmNames(handle)) unlinkSync(`/dev/shm/${name}`)
  })
  const before = shmNames(handle)
  t.true(before.length >= 2, 'the crash left the queue and its payload segment')

  const { code, stdout, stderr } = await cli('gc')
  t.is(code, 0, stderr)
  t.regex(stdout, new RegExp(`^would remove ${handle}$`, 'm'))
  t.regex(stdout, /run `shmq gc --force` to remove them/)
  t.notRegex(stdout, new RegExp(liveTx.handle))
  t.deepEqual(shmNames(handle), before, 'a dry run removes nothing')
  t.is(JSON.parse((await cli('ls', '--json')).stdout).find((q) => q.name === handle)?.status, 'dead')
  liveTx.putSync('still works')
  t.is(liveRx.getSync(), 'still works')
})
