// Every error shmq throws: a ShmqError, with a stable `code` (the list is
// generated from Rust: lib/constants.ts).

import { ERROR_CODES, type ShmqErrorCode } from './constants'

export type { ShmqErrorCode }

/**
 * The base class of every error shmq throws; `code` says which.
 * `MessageTooLargeError` is a `RangeError` and `NotCloneableError` a
 * `TypeError`, as Node's own errors of those kinds are: `instanceof ShmqError`
 * holds for them too.
 */
export class ShmqError extends Error {
  readonly code: ShmqErrorCode
  constructor(code: ShmqErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options)
    this.name = 'ShmqError'
    this.code = code
  }

  static override [Symbol.hasInstance](value: unknown): boolean {
    // biome-ignore lint/complexity/noThisInStatic: the class `instanceof` asks about (a subclass too).
    const asked: unknown = this
    if (Function.prototype[Symbol.hasInstance].call(asked, value)) return true
    return asked === ShmqError && (value instanceof MessageTooLargeError || value instanceof NotCloneableError)
  }
}

export class QueueFullError extends ShmqError {
  declare readonly code: 'ERR_SHMQ_FULL'
  constructor(message = 'the queue is full: no space became free in time') {
    super('ERR_SHMQ_FULL', message)
    this.name = 'QueueFullError'
  }
}

export class QueueEmptyError extends ShmqError {
  declare readonly code: 'ERR_SHMQ_EMPTY'
  constructor(message = 'the queue is empty: no message arrived in time') {
    super('ERR_SHMQ_EMPTY', message)
    this.name = 'QueueEmptyError'
  }
}

export class QueueClosedError extends ShmqError {
  declare readonly code: 'ERR_SHMQ_CLOSED'
  constructor(message = 'the queue is closed') {
    super('ERR_SHMQ_CLOSED', message)
    this.name = 'QueueClosedError'
  }
}

/** A `RangeError` (and a `ShmqError`, see there). */
export class MessageTooLargeError extends RangeError {
  readonly code = 'ERR_SHMQ_TOO_LARGE' as const
  constructor(message: string) {
    super(message)
    this.name = 'MessageTooLargeError'
  }
}

/** A `TypeError` (and a `ShmqError`, see there). */
export class NotCloneableError extends TypeError {
  readonly code = 'ERR_SHMQ_NOT_CLONEABLE' as const
  constructor(message: string) {
    super(message)
    this.name = 'NotCloneableError'
  }
}

/** A `TypeError` for an argument of the wrong type, with Node's code for it. */
export function invalidType(message: string): TypeError {
  return Object.assign(new TypeError(message), { code: 'ERR_INVALID_ARG_TYPE' as const })
}

/** A `RangeError` for an argument out of range, with Node's code for it. */
export function outOfRange(message: string): RangeError {
  return Object.assign(new RangeError(message), { code: 'ERR_OUT_OF_RANGE' as const })
}

/** The error Node's own APIs reject with when an AbortSignal fires. */
export class AbortError extends Error {
  readonly code = 'ABORT_ERR' as const
  constructor(message = 'The operation was aborted', options?: { cause?: unknown }) {
    super(message, options)
    this.name = 'AbortError'
  }
}

export function abortError(signal: AbortSignal): AbortError {
  return new AbortError(undefined, { cause: signal.reason })
}

const CODES: ReadonlySet<string> = new Set(ERROR_CODES)

/** The class for a native error: its `code` was set natively (`err.code`). */
export function fromNative(e: unknown): unknown {
  const code = e instanceof Error ? (e as { code?: unknown }).code : undefined
  if (typeof code !== 'string' || !CODES.has(code)) return e
  const message = (e as Error).message
  switch (code as ShmqErrorCode) {
    case 'ERR_SHMQ_CLOSED':
      return new QueueClosedError(message)
    case 'ERR_SHMQ_TOO_LARGE':
      return new MessageTooLargeError(message)
    default:
      return new ShmqError(code as ShmqErrorCode, message)
  }
}

/** Calls into the addon, rethrowing its errors as shmq errors. */
export function native<R>(call: () => R): R {
  try {
    return call()
  } catch (e) {
    throw fromNative(e)
  }
}
