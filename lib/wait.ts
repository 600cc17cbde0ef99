// Waiting for a queue event without blocking the event loop. The addon
// watches through this thread's own event loop (an io_uring of futex waits,
// src/poll.rs) or, where it cannot, its waiter thread (never the libuv pool),
// and settles a promise; every pending put/get of one end shares that single
// native wait.
import { binding, hot } from './binding'
import type { ITEMS, SPACE } from './constants'
import { abortError, fromNative, ShmqError, type ShmqErrorCode } from './errors'

/**
 * The longest delay setTimeout takes (2^31 - 1 ms, about 24.8 days; longer
 * ones fire at once with a TimeoutOverflowWarning). A longer wait is cut to
 * this: it ends early, and the caller, which re-checks its deadline after
 * every wait, waits again. The native wait gets the same bounded value.
 */
const MAX_WAIT_MS = 2 ** 31 - 1

/** `timeoutMs` cut to one chunk a timer (and the native wait) can take. */
const chunk = (timeoutMs: number): number => Math.min(timeoutMs, MAX_WAIT_MS)

/** One native watch, shared by every wait of the end for the same `seen`. */
interface Pending {
  seen: number
  settled: boolean
  /** Waits with a timeout or a signal: each leaves the set when it ends, so
   * one that ends early keeps nothing alive while the watch goes on. */
  waits: Set<(failure: ShmqError | undefined) => void>
  /** The other waits' shared promise (made by the first of them), and what settles it. */
  done: Promise<void> | undefined
  end: ((failure: ShmqError | undefined) => void) | undefined
}

/** A native watch in flight: how to settle its promise, and whether it keeps the event loop alive. */
interface Watch {
  settle: (failure: [string, string] | null) => void
  owner: EventWatch
  counted: boolean
}

// Every native watch of this copy of the wrapper settles through one
// function (not one per wait). It keeps the event loop alive while some
// referenced end waits, as a socket does.
const watches = new Map<number, Watch>()
let nextToken = 1
let referenced = 0

/**
 * Counts the watches that keep the loop alive; the native side holds the
 * loop while there is one (a flag on a libuv handle: cheap, so per wait).
 */
function count(watch: Watch, on: boolean): void {
  if (watch.counted === on) return
  watch.counted = on
  referenced += on ? 1 : -1
  if (referenced === (on ? 1 : 0)) binding.watchRef(instance, on)
}

/** This copy of the wrapper's number in the addon (-1 until the first wait). */
let instance = -1

/** Registers the settling function at the first wait (importing never calls the addon). */
function init(): void {
  if (instance !== -1) return
  instance = binding.watchInit((token, failure) => {
    const watch = watches.get(token)
    if (watch === undefined) return
    watches.delete(token)
    count(watch, false)
    watch.settle(failure)
  })
}

export class EventWatch {
  private pending: Pending | undefined
  private users = 0
  /** Whether a wait keeps the event loop alive (`end.ref()` / `end.unref()`). */
  private referenced = true
  /** Timers of pending timed waits (they follow ref/unref too). */
  private readonly timers = new Set<NodeJS.Timeout>()

  constructor(
    private readonly id: number,
    private readonly which: typeof ITEMS | typeof SPACE,
  ) {}

  /** Whether this end's waits keep the event loop alive. */
  setRef(on: boolean): void {
    this.referenced = on
    for (const watch of watches.values()) if (watch.owner === this) count(watch, on)
    for (const timer of this.timers) on ? timer.ref() : timer.unref()
  }

  /** Current event count; read it before looking at the queue. */
  seen(): number {
    return hot.event(this.id, this.which)
  }

  /**
   * Waits (async) for the event to move past `seen`: the core's spin policy
   * first (a short spin while recent waits were short, so a sparse stream
   * costs no spinning), then a native watch. Undefined if the spin saw it.
   */
  next(seen: number, timeoutMs: number | undefined, signal: AbortSignal | undefined): Promise<boolean> | undefined {
    // Not async: a sparse stream pays for every promise.
    if (hot.spin(this.id, this.which, seen)) return undefined
    return this.wait(seen, timeoutMs, signal)
  }

  /** Blocks this thread for at most one wait slice (`timeoutMs`: any value >= 0, or undefined = no limit). */
  waitSync(seen: number, timeoutMs: number | undefined): void {
    binding.endWaitSync(this.id, this.which, seen, timeoutMs === undefined ? -1 : chunk(timeoutMs))
  }

  /**
   * Resolves true once the event count may have moved past `seen`, false when
   * `timeoutMs` (or at most MAX_WAIT_MS) passes first; rejects with
   * AbortError if `signal` fires.
   */
  wait(seen: number, timeoutMs: number | undefined, signal: AbortSignal | undefined): Promise<boolean> {
    let pending = this.pending
    if (pending === undefined || pending.seen !== seen || pending.settled)
      pending = this.pending = this.watchNative(seen)
    // (Settled at once: the end is closed; the caller looks again and sees it.)
    if (pending.settled) return Promise.resolve(true)
    this.users++
    // Nothing else can end this wait: one reaction, no timer or listener (a
    // sparse stream pays for every promise and closure).
    if (timeoutMs === undefined && signal === undefined) {
      const entry = pending
      entry.done ??= new Promise<void>((resolve, reject) => {
        entry.end = (failure) => (failure ? reject(failure) : resolve())
      })
      return entry.done.then(this.left, this.leftFailed)
    }
    const { waits } = pending
    return new Promise<boolean>((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined
      const finish = (then: () => void): void => {
        if (!waits.delete(onSettle)) return // ended already
        if (timer !== undefined) {
          clearTimeout(timer)
          this.timers.delete(timer)
        }
        signal?.removeEventListener('abort', onAbort)
        this.leave()
        then()
      }
      const onSettle = (failure: ShmqError | undefined): void =>
        finish(() => (failure ? reject(failure) : resolve(true)))
      const onAbort = (): void => finish(() => reject(abortError(signal as AbortSignal)))
      waits.add(onSettle)
      if (timeoutMs !== undefined) {
        timer = setTimeout(() => finish(() => resolve(false)), chunk(timeoutMs))
        if (!this.referenced) timer.unref()
        this.timers.add(timer)
      }
      signal?.addEventListener('abort', onAbort, { once: true })
    })
  }

  /** Ends the native wait early: every wait of this end returns, and its caller looks again. */
  cancel(): void {
    try {
      if (this.pending !== undefined) binding.endCancelWatch(this.id)
    } catch {
      // The end was closed: its waits have ended.
    }
  }

  /** A wait is over: if it was the last one, end the native wait so it does not keep the process alive. */
  private leave(): void {
    if (--this.users === 0 && this.pending !== undefined) binding.endCancelWatch(this.id)
  }
  private readonly left = (): boolean => {
    this.leave()
    return true
  }
  private readonly leftFailed = (e: unknown): never => {
    this.leave()
    throw fromNative(e)
  }

  /** One native watch: its waits end once the event moves past `seen` or the watch is cancelled. */
  private watchNative(seen: number): Pending {
    // A token still pending (after 2^32 waits) is never handed out again.
    let token: number
    do {
      token = nextToken
      nextToken = nextToken === 0xffffffff ? 1 : nextToken + 1
    } while (watches.has(token))
    init()
    const entry: Pending = { seen, settled: false, waits: new Set(), done: undefined, end: undefined }
    const settle = (native: [string, string] | null): void => {
      entry.settled = true
      if (this.pending === entry) this.pending = undefined
      // The waiter thread could not start: [code, message].
      const failure = native ? new ShmqError(native[0] as ShmqErrorCode, native[1]) : undefined
      entry.end?.(failure)
      for (const wait of [...entry.waits]) wait(failure)
    }
    if (binding.endWatch(this.id, this.which, seen, token, instance)) {
      const watch: Watch = { settle, owner: this, counted: false }
      watches.set(token, watch)
      count(watch, this.referenced)
    } else {
      settle(null)
    }
    return entry
  }
}
