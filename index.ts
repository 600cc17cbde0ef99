// shmq: hand large data between Node.js processes through shared memory.
// A thin wrapper over the native queue (src/): option checks, value codec,
// waiting, errors and streams live in lib/.
import { constants as bufferConstants } from 'node:buffer'
import type { Readable, Writable } from 'node:stream'
import { binding, type NativeEnd } from './lib/binding'
import { decode, encode } from './lib/codec'
import { native, QueueClosedError, QueueEmptyError, QueueFullError, ShmqError, abortError } from './lib/errors'
import { readableFor, writableFor } from './lib/streams'
import { EventWatch, ITEMS, SPACE } from './lib/wait'

export {
  AbortError,
  MessageTooLargeError,
  NotCloneableError,
  QueueClosedError,
  QueueEmptyError,
  QueueFullError,
  ShmqError,
  type ShmqErrorCode,
} from './lib/errors'

export interface QueueOptions {
  /** Messages in flight; an integer >= 1. Default 16. */
  capacity?: number
  /** Bytes a message may have and still travel inline in its queue slot. Default 65536. */
  slotSize?: number
  /** Largest message, in encoded bytes. Default `buffer.constants.MAX_LENGTH`. */
  maxMessageSize?: number
}

export interface WaitOptions {
  /** Milliseconds to wait before giving up (QueueFullError / QueueEmptyError). Default: no limit. */
  timeout?: number
  /** `false`: fail at once instead of waiting. Default true. */
  block?: boolean
}

export interface AsyncWaitOptions extends WaitOptions {
  /** Rejects with AbortError when aborted. */
  signal?: AbortSignal
}

export const DEFAULT_CAPACITY = 16
export const DEFAULT_SLOT_SIZE = 64 * 1024
const MAX_CAPACITY = 1 << 20
const MAX_SLOT_SIZE = 1 << 26
const MAX_HANDLE_LENGTH = 256

const PUT_FULL = 1
const PUT_CLOSED = 2
const GET_CLOSED = 2
const SENDER = 0
const RECEIVER = 1

function integerOption(options: object, name: string, fallback: number, min: number, max: number): number {
  const value: unknown = (options as Record<string, unknown>)[name]
  if (value === undefined) return fallback
  if (typeof value !== 'number') throw new TypeError(`options.${name} must be a number, got ${typeof value}`)
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new RangeError(`options.${name} must be an integer from ${min} to ${max}, got ${value}`)
  }
  return value
}

/** Checks per-call options; returns the deadline (ms since epoch) if any. */
function waitDeadline(options: WaitOptions | undefined): number | undefined {
  if (options === undefined) return undefined
  if (typeof options !== 'object' || options === null) throw new TypeError('options must be an object')
  const { timeout, block } = options
  if (block !== undefined && typeof block !== 'boolean') throw new TypeError('options.block must be a boolean')
  if (timeout === undefined) return undefined
  if (typeof timeout !== 'number' || Number.isNaN(timeout) || timeout < 0) {
    throw new RangeError(`options.timeout must be a number of milliseconds >= 0, got ${String(timeout)}`)
  }
  return Date.now() + timeout
}

function checkSignal(signal: unknown): AbortSignal | undefined {
  if (signal === undefined) return undefined
  if (!(signal instanceof AbortSignal)) throw new TypeError('options.signal must be an AbortSignal')
  return signal
}

/** Milliseconds left before `deadline` (undefined = no limit). */
function remaining(deadline: number | undefined): number | undefined {
  return deadline === undefined ? undefined : Math.max(0, deadline - Date.now())
}

// Ends still open when the process (or worker) exits are closed then, so the
// last one out unlinks the queue.
const openEnds = new Set<WeakRef<QueueEnd>>()
const forget = new FinalizationRegistry<WeakRef<QueueEnd>>((ref) => openEnds.delete(ref))
process.once('exit', () => {
  for (const ref of openEnds) ref.deref()?.close()
  binding.releaseLingering()
})

abstract class QueueEnd {
  /** The queue's name: pass it to another process and `attach` it there. */
  readonly handle: string
  protected readonly end: NativeEnd
  protected readonly watch: EventWatch
  private readonly which: typeof ITEMS | typeof SPACE
  private readonly ref: WeakRef<QueueEnd>

  protected constructor(end: NativeEnd, which: typeof ITEMS | typeof SPACE) {
    this.end = end
    this.which = which
    this.handle = end.handle
    this.watch = new EventWatch(end, which)
    this.ref = new WeakRef(this)
    openEnds.add(this.ref)
    forget.register(this, this.ref, this)
  }

  /** Messages waiting in the queue now. */
  get size(): number {
    return this.end.size
  }

  /** Messages the queue holds at most. */
  get capacity(): number {
    return this.end.capacity
  }

  /** The handle, so `JSON.stringify`, `child.send` and `workerData` carry it. */
  toJSON(): string {
    return this.handle
  }

  /** The handle, so template strings and argv carry it too. */
  toString(): string {
    return this.handle
  }

  /** Stops this end taking part; idempotent. */
  close(): void {
    if (this.end.closed) return
    this.end.close()
    openEnds.delete(this.ref)
    forget.unregister(this)
  }

  [Symbol.dispose](): void {
    this.close()
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.close()
  }

  /**
   * Runs `attempt` until it returns a value, waiting for the event between
   * tries. `attempt` returns undefined to mean "not now".
   */
  protected async retry<R>(
    attempt: () => R | undefined,
    options: AsyncWaitOptions | undefined,
    onTimeout: () => Error,
  ): Promise<R> {
    const deadline = waitDeadline(options)
    const signal = checkSignal(options?.signal)
    for (;;) {
      if (signal?.aborted) throw abortError(signal)
      const seen = this.watch.seen()
      const result = attempt()
      if (result !== undefined) return result
      const left = remaining(deadline)
      if (options?.block === false || left === 0) throw onTimeout()
      await this.watch.wait(seen, left, signal)
    }
  }

  /** Blocking twin of `retry`. */
  protected retrySync<R>(attempt: () => R | undefined, options: WaitOptions | undefined, onTimeout: () => Error): R {
    const deadline = waitDeadline(options)
    for (;;) {
      const seen = this.watch.seen()
      const result = attempt()
      if (result !== undefined) return result
      const left = remaining(deadline)
      if (options?.block === false || left === 0) throw onTimeout()
      this.end.waitSync(this.which, seen, left ?? -1)
    }
  }
}

export class SharedMemorySender<T = unknown> extends QueueEnd {
  /** Opens the queue named by `handle` (from either end) as a sender, in any process or thread. */
  static attach<T = unknown>(handle: string): SharedMemorySender<T> {
    return new SharedMemorySender<T>(attachNative(handle, SENDER))
  }

  /** @internal Use createSharedMemoryPair or SharedMemorySender.attach. */
  constructor(end: NativeEnd) {
    super(end, SPACE)
  }

  /** Enqueues `value`; waits for space without blocking the event loop. */
  async put(value: T, options?: AsyncWaitOptions): Promise<void> {
    const message = encode(value)
    await this.retry(() => this.tryPut(message), options, () => new QueueFullError())
  }

  /** Enqueues `value`, blocking this thread while the queue is full. */
  putSync(value: T, options?: WaitOptions): void {
    const message = encode(value)
    this.retrySync(() => this.tryPut(message), options, () => new QueueFullError())
  }

  /** `putSync(value, { block: false })`. */
  putNowait(value: T): void {
    this.putSync(value, { block: false })
  }

  /** Resolves once a receiver has taken every message this sender put. */
  async waitForAllAck(options?: AsyncWaitOptions): Promise<void> {
    await this.retry(() => this.allAcked(), options, () => new QueueFullError('messages are still unacknowledged'))
  }

  waitForAllAckSync(options?: WaitOptions): void {
    this.retrySync(() => this.allAcked(), options, () => new QueueFullError('messages are still unacknowledged'))
  }

  /** An object-mode stream whose backpressure is the queue's; ending it closes the sender. */
  writable(): Writable {
    return writableFor(this as SharedMemorySender<unknown>)
  }

  private tryPut(message: ReturnType<typeof encode>): true | undefined {
    const status = native(() =>
      typeof message === 'string' ? this.end.putString(message) : this.end.put(message.tag, message.bytes),
    )
    if (status === PUT_FULL) return undefined
    if (status === PUT_CLOSED) throw new QueueClosedError('no receiver is left on this queue')
    return true
  }

  private allAcked(): true | undefined {
    if (this.end.unacked() === 0) return true
    if (this.end.receiversGone()) throw new QueueClosedError('no receiver is left to take the remaining messages')
    return undefined
  }
}

export class SharedMemoryReceiver<T = unknown> extends QueueEnd implements AsyncIterable<T> {
  /** Opens the queue named by `handle` (from either end) as a receiver, in any process or thread. */
  static attach<T = unknown>(handle: string): SharedMemoryReceiver<T> {
    return new SharedMemoryReceiver<T>(attachNative(handle, RECEIVER))
  }

  /** @internal Use createSharedMemoryPair or SharedMemoryReceiver.attach. */
  constructor(end: NativeEnd) {
    super(end, ITEMS)
  }

  /** The next message; waits without blocking the event loop. */
  async get(options?: AsyncWaitOptions): Promise<T> {
    return (await this.retry(() => this.tryGet(), options, () => new QueueEmptyError())).value
  }

  /** The next message, blocking this thread while the queue is empty. */
  getSync(options?: WaitOptions): T {
    return this.retrySync(() => this.tryGet(), options, () => new QueueEmptyError()).value
  }

  /** `getSync({ block: false })`. */
  getNowait(): T {
    return this.getSync({ block: false })
  }

  /** Yields messages until every sender has closed and the queue is drained. */
  async *[Symbol.asyncIterator](): AsyncIterator<T> {
    for (;;) {
      let value: T
      try {
        value = await this.get()
      } catch (e) {
        if (e instanceof QueueClosedError) return
        throw e
      }
      yield value
    }
  }

  /** An object-mode stream of the messages. */
  readable(): Readable {
    return readableFor(this)
  }

  /** The message boxed (a message may itself be undefined), or undefined if none. */
  private tryGet(): { value: T } | undefined {
    const got = native(() => this.end.get())
    if (typeof got === 'string') return { value: got as T }
    if (typeof got === 'number') {
      if (got === GET_CLOSED) throw new QueueClosedError('every sender has closed and the queue is drained')
      return undefined
    }
    try {
      return { value: decode(this.end.lastTag, got) as T }
    } catch (e) {
      throw new ShmqError('ERR_SHMQ_INVALID', `a message could not be decoded (corrupt segment?): ${String(e)}`)
    }
  }
}

function attachNative(handle: string, role: number): NativeEnd {
  if (typeof handle !== 'string') throw new TypeError(`handle must be a string, got ${typeof handle}`)
  if (handle.length > MAX_HANDLE_LENGTH) throw new TypeError(`handle is longer than ${MAX_HANDLE_LENGTH} characters`)
  return native(() => binding.attachQueue(handle, role))
}

/** Creates a queue in shared memory and returns its two ends. */
export function createSharedMemoryPair<T = unknown>(
  options: QueueOptions = {},
): [SharedMemorySender<T>, SharedMemoryReceiver<T>] {
  if (typeof options !== 'object' || options === null) throw new TypeError('options must be an object')
  const capacity = integerOption(options, 'capacity', DEFAULT_CAPACITY, 1, MAX_CAPACITY)
  const slotSize = integerOption(options, 'slotSize', DEFAULT_SLOT_SIZE, 0, MAX_SLOT_SIZE)
  const maxLength = bufferConstants.MAX_LENGTH
  const maxMessageSize = integerOption(options, 'maxMessageSize', maxLength, 0, maxLength)
  const [tx, rx] = native(() => binding.createQueue(capacity, slotSize, maxMessageSize))
  return [new SharedMemorySender<T>(tx), new SharedMemoryReceiver<T>(rx)]
}
