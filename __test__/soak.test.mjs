// The soak run (benchmark/soak.mjs) for 30 s: producers and consumers SIGKILLed
// at random and replaced; nothing torn, duplicated or lost beyond the killed
// consumers, the queue keeps its capacity, nothing is left in /dev/shm.
// The one long test of the suite (about 40 s).
import test from 'ava'
import { spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'

const soak = fileURLToPath(new URL('../benchmark/soak.mjs', import.meta.url))

test('soak: 30 s of kills and replacements keep every invariant (benchmark/soak.mjs exits 0)', async (t) => {
  t.timeout(170_000)
  const child = spawn(process.execPath, [soak, '--seconds', '30'], {
    stdio: ['ignore', 'pipe', 'pipe'],
    timeout: 160_000,
    killSignal: 'SIGKILL',
  })
  t.teardown(() => child.exitCode === null && child.signalCode === null && child.kill('SIGKILL'))
  let stdout = ''
  let stderr = ''
  child.stdout.on('data', (d) => (stdout += d))
  child.stderr.on('data', (d) => (stderr = (stderr + d).slice(-8000)))
  const [code, signal] = await new Promise((resolve) => child.on('exit', (c, s) => resolve([c, s])))
  const line = stdout.split('\n').find((l) => l.startsWith('{'))
  const table = stdout.slice(stdout.indexOf('\nshmq soak')).trim()
  if (table) t.log(table)
  t.is(signal, null, `killed by ${signal} (took longer than 160 s?) ${stderr}`)
  t.truthy(line, `no JSON line in the output: ${stdout.slice(0, 2000)} ${stderr}`)
  const result = JSON.parse(line)
  t.deepEqual(result.failures, [], 'every invariant held')
  t.is(code, 0, stderr)
})
