// Shared test helpers: real child processes, real /dev/shm.
import { fork } from 'node:child_process'
import { once } from 'node:events'
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

/**
 * A queue whose creator (fixtures/creator-idle.mjs, a large message put) was
 * SIGKILLed: resolves { handle, signal } once the creator is gone.
 */
export async function crashedQueue() {
  let handle
  const { signal } = await run('creator-idle.mjs', [], {
    onMessage: (m, child) => {
      handle = m.handle
      child.kill('SIGKILL')
    },
  })
  return { handle, signal }
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

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms))

/** Rejects with an Error naming `what` if `promise` has not settled within `ms`. */
export async function within(promise, ms, what) {
  let timer
  const late = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: nothing within ${ms} ms`)), ms)
  })
  try {
    return await Promise.race([promise, late])
  } finally {
    clearTimeout(timer)
  }
}

/** Polls `predicate` every 20 ms; throws if it is still false after `ms`. */
export async function until(predicate, ms, what) {
  const deadline = Date.now() + ms
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`)
    await sleep(20)
  }
}

/**
 * Forks a fixture with extra `env`; SIGKILLs it when test `t` ends.
 * `child.exited` resolves once it has exited.
 */
export function startChild(t, name, args = [], env = {}) {
  const child = fork(fixture(name), args.map(String), {
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    env: { ...process.env, ...env },
  })
  return track(t, child)
}

/** Gives `child` an `exited` promise and SIGKILLs it when test `t` ends. */
export function track(t, child) {
  child.exited = once(child, 'exit')
  t.teardown(() => child.kill('SIGKILL'))
  return child
}

/** SIGKILLs `child` and waits (at most 5 s) for it to be gone. */
export async function killChild(child) {
  child.kill('SIGKILL')
  await within(child.exited, 5000, `exit of killed pid ${child.pid}`)
}

/** The next IPC message from `child`, within `ms`. */
export function nextMessage(child, ms, what = `pid ${child.pid}`) {
  return within(
    once(child, 'message').then(([m]) => m),
    ms,
    `message from ${what}`,
  )
}

/** Sends `request` to `child` and resolves its next message (within `ms`). */
export function ask(child, request, ms) {
  const reply = nextMessage(child, ms)
  child.send(request)
  return reply
}
