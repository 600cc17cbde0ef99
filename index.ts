// shmq: hand large data between Node.js processes through shared memory.
// A thin wrapper over the native queue (src/): option checks, value codec,
// waiting, errors and streams live in lib/.
// The module binding, not the global: Node's global Buffer is a getter, a call
// on every use in a hot loop.
import { Buffer, constants as bufferConstants } from 'node:buffer'
import { performance } from 'node:perf_hooks'
import { markAsUntransferable } from 'node:worker_threads'
import type { Readable, Writable } from 'node:stream'
import { binding, hot } from './lib/binding'
import { decode, decodeCopy, decodeView, serialize, tagOf, type Payload } from './lib/codec'
import {
  abortError,
  fromNative,
  MessageTooLargeError,
  invalidType,
  native,
  outOfRange,
  QueueClosedError,
  QueueEmptyError,
  QueueFullError,
  ShmqError,
} from './lib/errors'
import { readableFor, writableFor } from './lib/streams'
import { EventWatch } from './lib/wait'
import {
  DEFAULT_CAPACITY,
  DEFAULT_SLOT_SIZE,
  GET_CLOSED,
  GET_EMPTY,
  ITEMS,
  MAX_CAPACITY,
  MAX_SLOT_SIZE,
  POOLED_MAX,
  PUT_CLOSED,
  PUT_FULL,
  RECEIVER,
  SENDER,
  SPACE,
  TAG_BUFFER,
  TAG_RADIX,
  TAG_STRING,
  TAG_V8,
} from './lib/constants'
import { Lease, Reservation } from './lib/zerocopy'

export { Lease, Reservation } from './lib/zerocopy'
export { isSupported } from './lib/binding'

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

/** Options of an end, given when it is created or attached. */
export interface EndOptions {
  /**
   * Default `timeout` (ms) of every wait of this end: put, get, reserve,
   * lease, their batch and sync forms, and waitForAllAck. A call's own
   * `timeout` wins. Default: none (wait as long as it takes).
   */
  timeout?: number
}

export interface QueueOptions extends EndOptions {
  /** Messages in flight; an integer >= 1. Default 16. */
  capacity?: number
  /** Bytes a message may have and still travel inline in its queue slot. Default 65536. */
  slotSize?: number
  /** Largest message, in encoded bytes. Default `buffer.constants.MAX_LENGTH`. */
  maxMessageSize?: number
}

export interface WaitOptions {
  /**
   * Milliseconds to wait before giving up (QueueFullError / QueueEmptyError):
   * any number >= 0 (0 = do not wait), Infinity = no limit; measured on a
   * monotonic clock. Default: no limit.
   */
  timeout?: number
  /** `false`: fail at once instead of waiting. Default true. */
  block?: boolean
}

export interface AsyncWaitOptions extends WaitOptions {
  /** Rejects with AbortError when aborted. */
  signal?: AbortSignal
}

export { DEFAULT_CAPACITY, DEFAULT_SLOT_SIZE }
/** No handle is longer: a longer string is not one. */
const MAX_HANDLE_LENGTH = 256

function integerOption(options: object, name: string, fallback: number, min: number, max: number): number {
  const value: unknown = (options as Record<string, unknown>)[name]
  if (value === undefined) return fallback
  if (typeof value !== 'number') throw invalidType(`options.${name} must be a number, got ${typeof value}`)
  if (!Number.isInteger(value) || value < min || value > max) {
    throw outOfRange(`options.${name} must be an integer from ${min} to ${max}, got ${value}`)
  }
  return value
}

/**
 * Checks per-call options; returns the deadline if any, on the monotonic
 * clock (`performance.now()`), so wall-clock steps do not move it.
 * `timeout: Infinity` means no limit.
 */
function waitDeadline(options: WaitOptions | undefined): number | undefined {
  if (options === undefined) return undefined
  if (typeof options !== 'object' || options === null) throw invalidType('options must be an object')
  const { timeout, block } = options
  if (block !== undefined && typeof block !== 'boolean') throw invalidType('options.block must be a boolean')
  if (timeout === undefined) return undefined
  if (typeof timeout !== 'number' || Number.isNaN(timeout) || timeout < 0) {
    throw outOfRange(`options.timeout must be a number of milliseconds >= 0, got ${String(timeout)}`)
  }
  const deadline = performance.now() + timeout
  return Number.isFinite(deadline) ? deadline : undefined
}

/** A message that cannot become a value here: consumed, with the reason. */
function undecodable(e: unknown): ShmqError {
  if (e instanceof ShmqError) return e
  return new ShmqError(
    'ERR_SHMQ_INVALID',
    `a message could not be decoded (corrupt segment?): ${String(e)}; it was dropped`,
  )
}

function checkEndOptions(options: EndOptions | undefined): void {
  if (options === undefined) return
  if (typeof options !== 'object' || options === null) throw invalidType('options must be an object')
  waitDeadline({ timeout: options.timeout })
}

function checkByteLength(n: unknown): void {
  if (typeof n !== 'number') throw invalidType(`byteLength must be a number, got ${typeof n}`)
  if (!Number.isSafeInteger(n) || n < 0) throw outOfRange(`byteLength must be an integer >= 0, got ${n}`)
}

function checkSignal(signal: unknown): AbortSignal | undefined {
  if (signal === undefined) return undefined
  if (!(signal instanceof AbortSignal)) throw invalidType('options.signal must be an AbortSignal')
  return signal
}

/** Milliseconds left before `deadline` (undefined = no limit); may exceed what a timer takes (see lib/wait). */
function remaining(deadline: number | undefined): number | undefined {
  return deadline === undefined ? undefined : Math.max(0, deadline - performance.now())
}

// Ends still open when the process (or worker) exits are closed then, so the
// last one out unlinks the queue; ends collected unclosed are freed.
const openEnds = new Set<WeakRef<QueueEnd>>()
const forget = new FinalizationRegistry<{ id: number; ref: WeakRef<QueueEnd> }>(({ id, ref }) => {
  openEnds.delete(ref)
  binding.endFree(id)
})
process.once('exit', () => {
  for (const ref of openEnds) ref.deref()?.close()
  binding.releaseLingering()
})

/** The addon copies messages that fit the room left (at least SMALL bytes:
 * a new pool comes before less is left) into `pool` at `poolAt`, get's one
 * at a time (up to POOLED_MAX bytes) and getMany's back to back. A Buffer
 * message of up to POOLED_MAX bytes is then a slice of it, as
 * Buffer.allocUnsafe slices its pool (at most POOL bytes kept alive by
 * one); larger ones get memory of their own; another type is decoded from
 * it. One copy and one object a small message. */
const SMALL = POOLED_MAX + 1
const POOL = 4 * SMALL
let pool = Buffer.alloc(0)
let poolMemory = pool.buffer
let poolAt = 0
/** A new pool unless SMALL bytes are left (or a slice's owner detached it). */
function roomInPool(): void {
  if (pool.byteLength - poolAt >= SMALL) return
  pool = Buffer.allocUnsafeSlow(POOL)
  poolMemory = pool.buffer
  poolAt = 0
  // As Node's own pool: a slice's memory cannot be moved to another thread.
  markAsUntransferable(poolMemory)
}
/** The message the addon copied into the pool at `at`: a Buffer message is
 * a slice of the pool; any other a value of its own. */
function fromPool(tag: number, at: number, length: number): unknown {
  if (tag === TAG_BUFFER && length <= POOLED_MAX) return Buffer.from(poolMemory, at, length)
  return copyOut(pool, tag, at, length)
}
/** The message at `at` in `from`, as a value of its own. */
function copyOut(from: Buffer, tag: number, at: number, length: number): unknown {
  if (tag === TAG_BUFFER) {
    const own = Buffer.allocUnsafeSlow(length)
    from.copy(own, 0, at, at + length)
    return own
  }
  if (tag === TAG_STRING) return from.toString('utf8', at, at + length)
  return decodeCopy(tag, from.subarray(at), length)
}
/** tryGet's "nothing yet" (a message may itself be undefined). */
const NOTHING: unique symbol = Symbol('nothing')
/** An iterator's attempt after return(): stop without taking a message. */
const STOPPED: unique symbol = Symbol('stopped')

function checkOptions(options: AsyncWaitOptions | undefined): void {
  if (options === undefined) return
  waitDeadline(options)
  checkSignal(options.signal)
}

abstract class QueueEnd {
  /** The queue's name: pass it to another process and `attach` it there. */
  readonly handle: string
  /** Messages the queue holds at most. */
  readonly capacity: number
  /** Bytes a message may have and still travel inline in its slot. */
  readonly slotSize: number
  /** Largest message, in encoded bytes. */
  readonly maxMessageSize: number
  // Private fields are skipped by structured clone, so an end put in
  // `workerData` or sent with 'advanced' serialization arrives as
  // `{ handle, capacity }`, which `attach` accepts.
  readonly #id: number
  readonly #watch: EventWatch
  readonly #ref: WeakRef<QueueEnd>
  readonly #timeout: number | undefined
  #closed = false

  protected constructor(id: number, which: typeof ITEMS | typeof SPACE, options: EndOptions | undefined) {
    this.#timeout = options?.timeout
    this.#id = id
    const info = binding.endInfo(id)
    this.handle = info.handle
    this.capacity = info.capacity
    this.slotSize = info.slotSize
    this.maxMessageSize = info.maxMessageSize
    this.#watch = new EventWatch(id, which)
    this.#ref = new WeakRef(this)
    openEnds.add(this.#ref)
    forget.register(this, { id, ref: this.#ref }, this)
  }

  protected get id(): number {
    return this.#id
  }

  protected get watch(): EventWatch {
    return this.#watch
  }

  /** Messages waiting in the queue now. */
  get size(): number {
    return binding.endSize(this.id)
  }

  /** The handle, so `JSON.stringify`, `child.send` and `workerData` carry it. */
  toJSON(): string {
    return this.handle
  }

  /** The handle, so template strings and argv carry it too. */
  toString(): string {
    return this.handle
  }

  /** True once `close()` was called (or the process is exiting). */
  get closed(): boolean {
    return this.#closed
  }

  /** Waits of this end keep the process alive (the default, as a socket's do). */
  ref(): this {
    this.#watch.setRef(true)
    return this
  }

  /** Waits of this end no longer keep the process alive: it may exit while they are pending. */
  unref(): this {
    this.#watch.setRef(false)
    return this
  }

  /** A call's options with this end's default timeout filled in. */
  private withDefaults<O extends WaitOptions>(options: O | undefined): O | undefined {
    if (this.#timeout === undefined || options?.timeout !== undefined) return options
    return { ...options, timeout: this.#timeout } as O
  }

  /** Stops this end taking part; idempotent. */
  close(): void {
    if (this.#closed) return
    this.#closed = true
    binding.endClose(this.#id)
    openEnds.delete(this.#ref)
  }

  [Symbol.dispose](): void {
    this.close()
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.close()
  }

  /**
   * Runs `attempt` until it returns something other than NOTHING, spinning
   * briefly and then waiting for the event between tries.
   */
  protected async retry<R>(
    attempt: () => R | typeof NOTHING,
    options: AsyncWaitOptions | undefined,
    onTimeout: () => Error,
  ): Promise<R> {
    options = this.withDefaults(options)
    const deadline = waitDeadline(options)
    const signal = checkSignal(options?.signal)
    for (;;) {
      if (signal?.aborted) throw abortError(signal)
      const seen = this.watch.seen()
      const result = attempt()
      if (result !== NOTHING) return result
      const left = remaining(deadline)
      if (options?.block === false || left === 0) throw onTimeout()
      const waiting = this.watch.next(seen, left, signal)
      if (waiting !== undefined) await waiting
    }
  }

  /** Blocking twin of `retry`. */
  protected retrySync<R>(
    attempt: () => R | typeof NOTHING,
    options: WaitOptions | undefined,
    onTimeout: () => Error,
  ): R {
    options = this.withDefaults(options)
    const deadline = waitDeadline(options)
    for (;;) {
      const seen = this.watch.seen()
      const result = attempt()
      if (result !== NOTHING) return result
      const left = remaining(deadline)
      if (options?.block === false || left === 0) throw onTimeout()
      this.watch.waitSync(seen, left)
    }
  }
}

/** A putMany in progress: its encoded messages and how many went. */
interface Batch {
  tags: Uint32Array
  lengths: Float64Array
  data: Buffer
  sent: number
}

/** `error` with how many messages of the batch were sent. */
function batchError<E extends Error>(error: E, batch: Batch): E & { sent: number } {
  return Object.assign(error, { sent: batch.sent })
}

/** getMany's native results: (tag, length) pairs; the bytes back to back in
 * the pool, or for larger messages in `manyOut`. */
const MAX_BATCH = 4096
const manyMeta = new Float64Array(2 * MAX_BATCH)
const manyOut = Buffer.allocUnsafeSlow(1 << 20)

/** Decodes the `n` messages a native batch put in `from` from `at` on, into
 * `values` (slices of the pool where `from` is the pool; else copies). */
function decodeBatch(
  n: number,
  from: Buffer,
  at: number,
  values: unknown[],
): { end: number; bad: ShmqError | undefined } {
  let bad: ShmqError | undefined
  for (let i = 0; i < n; i++) {
    const tag = manyMeta[2 * i]
    const length = manyMeta[2 * i + 1]
    try {
      if (tag < 0) throw new Error('its slot was corrupt')
      // Counted only once decoded: a message that fails leaves no hole.
      values.push(from === pool ? fromPool(tag, at, length) : copyOut(from, tag, at, length))
    } catch (e) {
      bad ??= undecodable(e)
    }
    if (tag >= 0) at += length
  }
  return { end: at, bad }
}

function checkMax(max: unknown): void {
  if (typeof max !== 'number') throw invalidType(`max must be a number, got ${typeof max}`)
  if (!Number.isInteger(max) || max < 1) throw outOfRange(`max must be an integer >= 1, got ${max}`)
}

const full = (): Error => new QueueFullError()
const unacked = (): Error => new QueueFullError('messages are still unacknowledged')
const empty = (): Error => new QueueEmptyError()

export class SharedMemorySender<T = unknown> extends QueueEnd {
  /** Opens the queue named by `handle` (from either end) as a sender, in any process or thread. */
  static attach<T = unknown>(handle: Handle, options?: EndOptions): SharedMemorySender<T> {
    checkEndOptions(options)
    return new SharedMemorySender<T>(attachNative(handle, SENDER), options)
  }

  /** @internal Use createSharedMemoryPair or SharedMemorySender.attach. */
  constructor(id: number, options?: EndOptions) {
    super(id, SPACE, options)
  }

  /** Enqueues `value`; waits for space without blocking the event loop. */
  async put(value: T, options?: AsyncWaitOptions): Promise<void> {
    checkOptions(options)
    const tag = tagOf(value)
    const payload = tag === TAG_V8 ? serialize(value) : (value as Payload)
    if (options?.signal?.aborted !== true && this.tryPut(tag, payload)) return
    await this.retry(() => this.tryPut(tag, payload) || NOTHING, options, full)
  }

  /** Enqueues `value`, blocking this thread while the queue is full. */
  putSync(value: T, options?: WaitOptions): void {
    checkOptions(options)
    const tag = tagOf(value)
    const payload = tag === TAG_V8 ? serialize(value) : (value as Payload)
    if (this.tryPut(tag, payload)) return
    this.retrySync(() => this.tryPut(tag, payload) || NOTHING, options, full)
  }

  /** `putSync(value, { block: false })`. */
  putNowait(value: T): void {
    this.putSync(value, { block: false })
  }

  /**
   * Enqueues every value, in order, in as few native calls as space allows
   * (for small messages); each message goes whole or not at all. On timeout
   * or close the error's `sent` says how many went.
   */
  async putMany(values: readonly T[], options?: AsyncWaitOptions): Promise<void> {
    checkOptions(options)
    const batch = this.encodeBatch(values)
    await this.retry(
      () => this.tryPutMany(batch),
      options,
      () => batchError(new QueueFullError(), batch),
    )
  }

  /** `putMany`, blocking this thread while the queue is full. */
  putManySync(values: readonly T[], options?: WaitOptions): void {
    checkOptions(options)
    const batch = this.encodeBatch(values)
    this.retrySync(
      () => this.tryPutMany(batch),
      options,
      () => batchError(new QueueFullError(), batch),
    )
  }

  private encodeBatch(values: readonly T[]): Batch {
    if (!Array.isArray(values)) throw invalidType(`values must be an array, got ${typeof values}`)
    const count = values.length
    const tags = new Uint32Array(count)
    const lengths = new Float64Array(count)
    const payloads: Payload[] = new Array(count)
    let total = 0
    for (let i = 0; i < count; i++) {
      const tag = tagOf(values[i])
      const payload = tag === TAG_V8 ? serialize(values[i]) : (values[i] as Payload)
      const length = typeof payload === 'string' ? Buffer.byteLength(payload) : payload.byteLength
      if (length > this.maxMessageSize) {
        throw new MessageTooLargeError(
          `message ${i} of ${length} bytes exceeds maxMessageSize (${this.maxMessageSize}); nothing was sent`,
        )
      }
      tags[i] = tag
      lengths[i] = length
      payloads[i] = payload
      total += length
    }
    const data = Buffer.allocUnsafe(total)
    let at = 0
    for (let i = 0; i < count; i++) {
      const payload = payloads[i]
      if (typeof payload === 'string') data.write(payload, at)
      else if (payload instanceof Uint8Array) data.set(payload, at)
      else if (ArrayBuffer.isView(payload))
        data.set(new Uint8Array(payload.buffer, payload.byteOffset, payload.byteLength), at)
      else data.set(new Uint8Array(payload), at)
      at += lengths[i]
    }
    return { tags, lengths, data, sent: 0 }
  }

  private tryPutMany(batch: Batch): true | typeof NOTHING {
    if (batch.sent === batch.tags.length) return true
    let n: number
    try {
      n = native(() => binding.endPutMany(this.id, batch.tags, batch.lengths, batch.data, batch.sent))
    } catch (e) {
      throw e instanceof Error ? batchError(e, batch) : e
    }
    if (n === GET_CLOSED) throw batchError(new QueueClosedError('no receiver is left on this queue'), batch)
    batch.sent += n
    return batch.sent === batch.tags.length ? true : NOTHING
  }

  /**
   * Reserves `byteLength` bytes of shared memory for one message (waiting for
   * space as `put` does): write `reservation.buffer` in place, then `commit()`.
   */
  async reserve(byteLength: number, options?: AsyncWaitOptions): Promise<Reservation> {
    checkOptions(options)
    checkByteLength(byteLength)
    return this.retry(() => this.tryReserve(byteLength), options, full)
  }

  /** `reserve`, blocking this thread while the queue is full. */
  reserveSync(byteLength: number, options?: WaitOptions): Reservation {
    checkOptions(options)
    checkByteLength(byteLength)
    return this.retrySync(() => this.tryReserve(byteLength), options, full)
  }

  private tryReserve(byteLength: number): Reservation | typeof NOTHING {
    const got = native(() => hot.reserve(this.id, byteLength))
    if (typeof got !== 'number') return new Reservation(this, this.id, hot.held[0], got)
    if (got === GET_CLOSED) throw new QueueClosedError('no receiver is left on this queue')
    return NOTHING
  }

  /** Resolves once a receiver has taken every message this sender put. */
  async waitForAllAck(options?: AsyncWaitOptions): Promise<void> {
    await this.retry(() => this.allAcked(), options, unacked)
  }

  waitForAllAckSync(options?: WaitOptions): void {
    this.retrySync(() => this.allAcked(), options, unacked)
  }

  /** An object-mode stream whose backpressure is the queue's; ending it closes the sender. */
  writable(): Writable {
    return writableFor(this as SharedMemorySender<unknown>)
  }

  /** True if enqueued, false if the queue is full. */
  private tryPut(tag: number, payload: Payload): boolean {
    let status: number
    try {
      status =
        tag === TAG_STRING
          ? hot.putString(this.id, payload as string)
          : hot.put(this.id, tag, payload as ArrayBufferView)
    } catch (e) {
      throw fromNative(e)
    }
    if (status === PUT_CLOSED) throw new QueueClosedError('no receiver is left on this queue')
    return status !== PUT_FULL
  }

  private allAcked(): true | typeof NOTHING {
    if (binding.endUnacked(this.id) === 0) return true
    if (binding.endReceiversGone(this.id))
      throw new QueueClosedError('no receiver is left to take the remaining messages')
    return NOTHING
  }
}

export class SharedMemoryReceiver<T = unknown> extends QueueEnd implements AsyncIterable<T> {
  /** Opens the queue named by `handle` (from either end) as a receiver, in any process or thread. */
  static attach<T = unknown>(handle: Handle, options?: EndOptions): SharedMemoryReceiver<T> {
    checkEndOptions(options)
    return new SharedMemoryReceiver<T>(attachNative(handle, RECEIVER), options)
  }

  /** @internal Use createSharedMemoryPair or SharedMemoryReceiver.attach. */
  constructor(id: number, options?: EndOptions) {
    super(id, ITEMS, options)
  }

  /** The next message; waits without blocking the event loop. */
  get(options?: AsyncWaitOptions): Promise<T> {
    // Not async: returning retry's promise from an async function costs a
    // sparse stream two more promise jobs a message.
    try {
      checkOptions(options)
      if (options?.signal?.aborted !== true) {
        const value = this.tryGet()
        if (value !== NOTHING) return Promise.resolve(value)
      }
    } catch (e) {
      return Promise.reject(e)
    }
    return this.retry(() => this.tryGet(), options, empty)
  }

  /** The next message, blocking this thread while the queue is empty. */
  getSync(options?: WaitOptions): T {
    checkOptions(options)
    const value = this.tryGet()
    return value !== NOTHING ? value : this.retrySync(() => this.tryGet(), options, empty)
  }

  /** `getSync({ block: false })`. */
  getNowait(): T {
    return this.getSync({ block: false })
  }

  /**
   * Up to `max` messages in one native call (at least one: it waits as
   * `get` does, with the same errors).
   */
  async getMany(max: number, options?: AsyncWaitOptions): Promise<T[]> {
    checkOptions(options)
    checkMax(max)
    return this.retry(() => this.tryGetMany(max), options, empty)
  }

  /** `getMany`, blocking this thread while the queue is empty. */
  getManySync(max: number, options?: WaitOptions): T[] {
    checkOptions(options)
    checkMax(max)
    return this.retrySync(() => this.tryGetMany(max), options, empty)
  }

  private tryGetMany(max: number): T[] | typeof NOTHING {
    this.throwDecodeError()
    const values: T[] = []
    const take = (out: Buffer) =>
      native(() => binding.endGetMany(this.id, Math.min(max - values.length, MAX_BATCH), out, manyMeta))
    let bad: ShmqError | undefined
    // Messages land in the pool as get()'s do, a native call per pool's
    // worth; a Buffer message is a slice of it.
    while (values.length < max && bad === undefined) {
      roomInPool()
      const n = take(pool.subarray(poolAt))
      const decoded = decodeBatch(n, pool, poolAt, values)
      bad = decoded.bad
      poolAt = (decoded.end + 7) & ~7
      // Room for any small message left: the queue ran dry (or a larger one is next).
      if (n === 0 || pool.byteLength - poolAt >= SMALL) break
    }
    if (values.length === 0 && bad === undefined) {
      // Empty, closed, or the oldest message is larger than the pool's room:
      // larger messages go through the batch buffer, each into memory of its own.
      const n = take(manyOut)
      if (n === 0) {
        // Empty, closed, or larger than the batch buffer.
        const one = this.tryGet()
        return one === NOTHING ? NOTHING : [one]
      }
      bad = decodeBatch(n, manyOut, 0, values).bad
    }
    if (values.length === 0 && bad) throw bad
    // The good messages are returned; the error comes with the next call.
    this.#decodeError = bad
    return values
  }

  /**
   * The next message in place (waiting as `get` does): raw payloads in
   * `lease.value` are views of shared memory; `release()` gives it back.
   */
  async lease(options?: AsyncWaitOptions): Promise<Lease<T>> {
    checkOptions(options)
    return this.retry(() => this.tryLease(), options, empty)
  }

  /** `lease`, blocking this thread while the queue is empty. */
  leaseSync(options?: WaitOptions): Lease<T> {
    checkOptions(options)
    return this.retrySync(() => this.tryLease(), options, empty)
  }

  private tryLease(): Lease<T> | typeof NOTHING {
    const got = native(() => hot.lease(this.id))
    if (typeof got !== 'number') {
      const hold = hot.held[0]
      const tag = hot.held[1]
      let value: T
      try {
        value = decodeView(tag, got) as T
      } catch (e) {
        // Not decodable (corrupt, or a v8 format this Node cannot read): the
        // message is dropped with an error, and its slot goes back.
        native(() => hot.release(this.id, hold))
        throw undecodable(e)
      }
      return new Lease<T>(this, this.id, hold, got, value)
    }
    if (got === GET_CLOSED) throw new QueueClosedError('every sender has closed and the queue is drained')
    return NOTHING
  }

  /**
   * Yields messages until every sender has closed and the queue is drained.
   * Leaving a `for await` loop early (break, return, throw), or calling the
   * iterator's `return()`, cancels a pending `get()` without taking a message.
   */
  [Symbol.asyncIterator](): AsyncIterableIterator<T> {
    // return() ends a pending get by ending the end's native wait: the get
    // looks again, sees `done` and takes nothing (no signal: a signal costs
    // a listener a wait).
    let done = false
    const finish = (): IteratorReturnResult<undefined> => {
      if (!done) {
        done = true
        this.watch.cancel()
      }
      return { done: true, value: undefined }
    }
    // Iteration waits as long as it takes, whatever the end's default timeout.
    const forever = { timeout: Number.POSITIVE_INFINITY }
    const attempt = () => (done ? STOPPED : this.tryGet())
    const iterator: AsyncIterableIterator<T> = {
      next: () => {
        if (done) return Promise.resolve({ done: true, value: undefined })
        return this.retry(attempt, forever, empty).then(
          (value): IteratorResult<T, undefined> => (value === STOPPED ? finish() : { done: false, value }),
          (e: unknown) => {
            // The queue closed and drained: the end.
            if (e instanceof QueueClosedError) return finish()
            finish()
            throw e
          },
        )
      },
      return: () => Promise.resolve(finish()),
      [Symbol.asyncIterator]: () => iterator,
    }
    return iterator
  }

  /** An object-mode stream of the messages. */
  readable(): Readable {
    return readableFor(this)
  }

  /** A batch's undecodable message, reported by the call after the batch. */
  #decodeError: ShmqError | undefined

  private throwDecodeError(): void {
    const e = this.#decodeError
    if (e) {
      this.#decodeError = undefined
      throw e
    }
  }

  private tryGet(): T | typeof NOTHING {
    if (this.#decodeError) this.throwDecodeError()
    let got: Buffer | string | number
    roomInPool()
    try {
      got = hot.get(this.id, pool, poolAt)
    } catch (e) {
      throw fromNative(e)
    }
    if (typeof got === 'string') return got as T
    if (got === GET_EMPTY) return NOTHING
    if (got === GET_CLOSED) throw new QueueClosedError('every sender has closed and the queue is drained')
    try {
      if (typeof got === 'number') {
        const tag = got % TAG_RADIX
        const length = (got - tag) / TAG_RADIX
        const value = fromPool(tag, poolAt, length)
        poolAt = (poolAt + length + 7) & ~7
        return value as T
      }
      return decode(hot.lastTag(this.id), got) as T
    } catch (e) {
      throw undecodable(e)
    }
  }
}

/** A handle, or an end as structured clone delivers it (`{ handle, capacity }`). */
export type Handle = string | { readonly handle: string }

function attachNative(from: Handle, role: number): number {
  const handle = typeof from === 'object' && from !== null ? from.handle : from
  if (typeof handle !== 'string') throw invalidType(`handle must be a string, got ${typeof handle}`)
  if (handle.length > MAX_HANDLE_LENGTH)
    throw new ShmqError(
      'ERR_SHMQ_INVALID',
      `${handle.slice(0, 40)}... (${handle.length} characters) is not a shmq handle`,
    )
  return native(() => binding.attachQueue(handle, role))
}

/** Creates a queue in shared memory and returns its two ends. */
export function createSharedMemoryPair<T = unknown>(
  options: QueueOptions = {},
): [SharedMemorySender<T>, SharedMemoryReceiver<T>] {
  if (typeof options !== 'object' || options === null) throw invalidType('options must be an object')
  const capacity = integerOption(options, 'capacity', DEFAULT_CAPACITY, 1, MAX_CAPACITY)
  const slotSize = integerOption(options, 'slotSize', DEFAULT_SLOT_SIZE, 0, MAX_SLOT_SIZE)
  const maxLength = bufferConstants.MAX_LENGTH
  const maxMessageSize = integerOption(options, 'maxMessageSize', maxLength, 0, maxLength)
  checkEndOptions(options)
  const [tx, rx] = native(() => binding.createQueue(capacity, slotSize, maxMessageSize))
  return [new SharedMemorySender<T>(tx, options), new SharedMemoryReceiver<T>(rx, options)]
}
