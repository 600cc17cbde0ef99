// Every error shmq throws: an Error subclass with a stable `code`.

export type ShmqErrorCode =
  | 'ERR_SHMQ_FULL'
  | 'ERR_SHMQ_EMPTY'
  | 'ERR_SHMQ_CLOSED'
  | 'ERR_SHMQ_TOO_LARGE'
  | 'ERR_SHMQ_NOT_CLONEABLE'
  | 'ERR_SHMQ_NOT_FOUND'
  | 'ERR_SHMQ_INVALID'
  | 'ERR_SHMQ_NO_SPACE'
  | 'ERR_SHMQ_UNSUPPORTED_PLATFORM'
  | 'ERR_SHMQ_OS'

/** Errors about the queue or the machine (not found, invalid, no space, …). */
export class ShmqError extends Error {
  readonly code: ShmqErrorCode
  constructor(code: ShmqErrorCode, message: string) {
    super(message)
    this.name = 'ShmqError'
    this.code = code
  }
}

export class QueueFullError extends Error {
  readonly code = 'ERR_SHMQ_FULL' as const
  constructor(message = 'the queue is full: no space became free in time') {
    super(message)
    this.name = 'QueueFullError'
  }
}

export class QueueEmptyError extends Error {
  readonly code = 'ERR_SHMQ_EMPTY' as const
  constructor(message = 'the queue is empty: no message arrived in time') {
    super(message)
    this.name = 'QueueEmptyError'
  }
}

export class QueueClosedError extends Error {
  readonly code = 'ERR_SHMQ_CLOSED' as const
  constructor(message = 'the queue is closed') {
    super(message)
    this.name = 'QueueClosedError'
  }
}

/** `RangeError` with code `ERR_SHMQ_TOO_LARGE`. */
export class MessageTooLargeError extends RangeError {
  readonly code = 'ERR_SHMQ_TOO_LARGE' as const
  constructor(message: string) {
    super(message)
    this.name = 'MessageTooLargeError'
  }
}

/** `TypeError` with code `ERR_SHMQ_NOT_CLONEABLE`. */
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

const NATIVE = /^(ERR_SHMQ_[A-Z_]+): ([\s\S]*)$/

/** Turns an error from the native addon ("CODE: message") into its class. */
export function fromNative(e: unknown): unknown {
  const m = e instanceof Error ? NATIVE.exec(e.message) : null
  if (!m) return e
  const [, code, message] = m
  switch (code) {
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
