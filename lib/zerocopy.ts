// Zero-copy: a Reservation is a slot being written in place, a Lease a
// message being read in place. Their Buffers are views of shared memory,
// detached (byteLength 0) once the hold ends. The Buffer owns the hold: once
// it is collected unreleased (so the Reservation or Lease and every view of
// it are), the addon's finalizer for it aborts or releases the hold.
import { hot } from './binding'
import { TAG_BUFFER } from './constants'
import { native, outOfRange } from './errors'

abstract class Hold {
  // The end's object (an end is never collected, and closed, under an open
  // hold), its number, the hold's number, and its Buffer (whose finalizer
  // ends the hold once this object and every view of it are collected).
  readonly #at: readonly [owner: object, end: number, hold: number, view: Buffer]
  #done = false

  protected constructor(owner: object, end: number, hold: number, view: Buffer) {
    this.#at = [owner, end, hold, view]
  }

  /** Ends the hold once; false if it had ended already. */
  protected finish(call: (end: number, hold: number) => void): boolean {
    if (this.#done) return false
    this.#done = true
    const [, end, hold] = this.#at
    native(() => call(end, hold))
    return true
  }
}

/** Shared memory reserved for one message: write `buffer`, then `commit()`. */
export class Reservation extends Hold {
  /** Writable, 64-byte aligned, backed by the queue's shared memory. */
  readonly buffer: Buffer

  /** @internal */
  constructor(owner: object, end: number, hold: number, buffer: Buffer) {
    super(owner, end, hold, buffer)
    this.buffer = buffer
  }

  /** Publishes the first `length` bytes written (default: all); it arrives as a Buffer. */
  commit(length: number = this.buffer.length): void {
    if (!Number.isInteger(length) || length < 0 || length > this.buffer.length) {
      throw outOfRange(`length must be an integer from 0 to ${this.buffer.length}, got ${length}`)
    }
    if (!this.finish((end, hold) => hot.commit(end, hold, length, TAG_BUFFER))) {
      throw outOfRange('this reservation was already committed or aborted')
    }
  }

  /** Gives the space back; nothing is sent. Idempotent. */
  abort(): void {
    this.finish(hot.abort)
  }

  [Symbol.dispose](): void {
    this.abort()
  }
}

/** A message read in place: use `value`, then `release()`. */
export class Lease<T = unknown> extends Hold {
  /** The message; raw payloads are views of shared memory (no copy). */
  readonly value: T

  /** @internal */
  constructor(owner: object, end: number, hold: number, view: Buffer, value: T) {
    super(owner, end, hold, view)
    this.value = value
  }

  /** Gives the space back to the sender(s). Idempotent. */
  release(): void {
    this.finish(hot.release)
  }

  [Symbol.dispose](): void {
    this.release()
  }
}
