// Shared test helpers: real child processes, real /dev/shm.
import { fork } from 'node:child_process'
import { readdirSync } from 'node:fs'
import { fileURLToPath } from 'node:url'

export const fixture = (name) => fileURLToPath(new URL(`./fixtures/${name}`, import.meta.url))

/** Forks a fixture; resolves { code, signal, messages } when it exits. */
export function run(name, args = [], { onMessage, timeout = 120_000 } = {}) {
  const child = fork(fixture(name), args.map(String), { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
  const messages = []
  child.on('message', (m) => {
    messages.push(m)
    onMessage?.(m, child)
  })
  const done = new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL')
      reject(new Error(`${name} did not finish within ${timeout} ms`))
    }, timeout)
    child.on('exit', (code, signal) => {
      clearTimeout(timer)
      resolve({ code, signal, messages })
    })
  })
  return Object.assign(done, { child })
}

/** shmq objects in /dev/shm whose name starts with `prefix`. */
export function shmNames(prefix = 'shmq-') {
  return readdirSync('/dev/shm').filter((n) => n.startsWith(prefix))
}

/** A deterministic byte pattern (prime period, so shifted data is caught). */
export function pattern(length, seed = 0) {
  const period = 65521
  const block = Buffer.allocUnsafe(Math.min(length, period))
  for (let i = 0; i < block.length; i++) block[i] = (i * 31 + seed * 7 + 3) & 255
  if (length <= period) return block
  return Buffer.allocUnsafe(length).fill(block)
}
