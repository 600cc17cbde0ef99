// Zero-copy: a Reservation is a slot being written in place, a Lease a
// message being read in place. Their Buffers are views of shared memory,
// detached (byteLength 0) once the hold ends; one collected unreleased is
// released (or aborted) by its finalizer.
import { binding } from './binding'
import { TAG_BUFFER } from './constants'
import { native, outOfRange } from './errors'

/** A hold the addon handed out: its number, codec tag and view. */
export interface Held {
  hold: number
  tag: number
  buffer: Buffer
}

/** The addon writes `[hold, tag]` here next to the Buffer it returns. */
export const heldMeta = new Uint32Array(2)

/** The addon's result for a hold: a Buffer (see `heldMeta`), or a status number. */
export function held(got: Buffer | number): Held | number {
  return typeof got === 'number' ? got : { hold: heldMeta[0], tag: heldMeta[1], buffer: got }
}

// A finalizer that finds its end closed or gone has nothing left to do.
// `owner` (the end's JS object) is held strongly while the hold is
// registered, so an end is never collected (and closed) under an open hold.
const unreleased = new FinalizationRegistry<{ owner: object; end: number; hold: number; lease: boolean }>(
  ({ end, hold, lease }) => {
    try {
      if (lease) binding.endRelease(end, hold)
      else binding.endAbort(end, hold)
    } catch {}
  },
)

abstract class Hold {
  readonly #end: number
  readonly #hold: number
  #done = false

  protected constructor(owner: object, end: number, held: Held, lease: boolean) {
    this.#end = end
    this.#hold = held.hold
    unreleased.register(this, { owner, end, hold: held.hold, lease }, this)
  }

  /** Ends the hold once; false if it had ended already. */
  protected finish(call: (end: number, hold: number) => void): boolean {
    if (this.#done) return false
    this.#done = true
    unreleased.unregister(this)
    native(() => call(this.#end, this.#hold))
    return true
  }
}

/** Shared memory reserved for one message: write `buffer`, then `commit()`. */
export class Reservation extends Hold {
  /** Writable, 64-byte aligned, backed by the queue's shared memory. */
  readonly buffer: Buffer

  /** @internal */
  constructor(owner: object, end: number, held: Held) {
    super(owner, end, held, false)
    this.buffer = held.buffer
  }

  /** Publishes the first `length` bytes written (default: all); it arrives as a Buffer. */
  commit(length: number = this.buffer.length): void {
    if (!Number.isInteger(length) || length < 0 || length > this.buffer.length) {
      throw outOfRange(`length must be an integer from 0 to ${this.buffer.length}, got ${length}`)
    }
    if (!this.finish((end, hold) => binding.endCommit(end, hold, length, TAG_BUFFER))) {
      throw outOfRange('this reservation was already committed or aborted')
    }
  }

  /** Gives the space back; nothing is sent. Idempotent. */
  abort(): void {
    this.finish((end, hold) => binding.endAbort(end, hold))
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
  constructor(owner: object, end: number, held: Held, value: T) {
    super(owner, end, held, true)
    this.value = value
  }

  /** Gives the space back to the sender(s). Idempotent. */
  release(): void {
    this.finish((end, hold) => binding.endRelease(end, hold))
  }

  [Symbol.dispose](): void {
    this.release()
  }
}
