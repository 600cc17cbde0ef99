// Values <-> (tag, bytes). Raw binary travels as is, strings as UTF-8, the
// rest as v8.serialize output. Tags come from Rust (lib/constants.ts).
import { Buffer } from 'node:buffer'
import * as v8 from 'node:v8'
import {
  TAG_ARRAYBUFFER,
  TAG_BUFFER,
  TAG_DATAVIEW,
  TAG_NDARRAY,
  TAG_PICKLE,
  TAG_STRING,
  TAG_V8,
  TYPED_ARRAY_NAMES,
} from './constants'
import { NotCloneableError, ShmqError } from './errors'

type TypedArrayConstructor =
  | typeof Uint8Array
  | typeof Uint8ClampedArray
  | typeof Int8Array
  | typeof Uint16Array
  | typeof Int16Array
  | typeof Uint32Array
  | typeof Int32Array
  | typeof Float32Array
  | typeof Float64Array
  | typeof BigInt64Array
  | typeof BigUint64Array

/** Tag 0 is Buffer; tags 1..11 are these, in the order Rust defines. */
const TYPED_ARRAYS: readonly TypedArrayConstructor[] = TYPED_ARRAY_NAMES.map((name) => globalThis[name])
const TYPED_TAG = new Map<string, number>(TYPED_ARRAY_NAMES.map((name, i) => [name, i + 1]))

/** A value as the addon takes it: raw bytes with their tag, a string, or v8 bytes. */
export type Payload = ArrayBufferView | ArrayBuffer | string

/** The tag of `value`; TAG_V8 means it must go through `serialize`. */
export function tagOf(value: unknown): number {
  if (typeof value === 'string') return TAG_STRING
  if (ArrayBuffer.isView(value)) {
    if (Buffer.isBuffer(value)) return TAG_BUFFER
    if (value instanceof DataView) return TAG_DATAVIEW
    return TYPED_TAG.get((value as Uint8Array)[Symbol.toStringTag]) ?? TAG_V8
  }
  return value instanceof ArrayBuffer ? TAG_ARRAYBUFFER : TAG_V8
}

export function serialize(value: unknown): Buffer {
  try {
    return v8.serialize(value)
  } catch (e) {
    const culprit = findUncloneable(value, new Set()) ?? (e instanceof Error ? e.message : String(e))
    throw new NotCloneableError(
      `cannot send ${culprit}: only structured-cloneable values (no functions, symbols, WeakMaps, Promises, …) can be sent`,
    )
  }
}
/** Names the first value v8.serialize refuses, for the error message. */
function findUncloneable(value: unknown, seen: Set<object>): string | undefined {
  if (typeof value === 'function') return `a function (${value.name || 'anonymous'})`
  if (typeof value === 'symbol') return `a symbol (${value.toString()})`
  if (typeof value !== 'object' || value === null || seen.has(value)) return undefined
  seen.add(value)
  const tag = Object.prototype.toString.call(value).slice(8, -1)
  if (['WeakMap', 'WeakSet', 'WeakRef', 'Promise', 'SharedArrayBuffer'].includes(tag)) return `a ${tag}`
  const children: unknown[] =
    value instanceof Map
      ? [...value.keys(), ...value.values()]
      : value instanceof Set
        ? [...value]
        : Object.values(value)
  for (const child of children) {
    const found = findUncloneable(child, seen)
    if (found) return found
  }
  return undefined
}

/** A message the addon returned as a Buffer that owns its whole ArrayBuffer. */
/** A message only another runtime can decode: an error that names its kind. */
function foreign(tag: number): ShmqError {
  const kind = tag === TAG_PICKLE ? 'a Python pickle' : `a value of unknown tag ${tag}`
  return new ShmqError(
    'ERR_SHMQ_FOREIGN_VALUE',
    `the message is ${kind}, which only its own runtime can decode; it was consumed`,
  )
}

/** An N-dimensional array (from Python's NumPy): the typed array of its C-order elements. */
function ndarray(buffer: ArrayBuffer, byteOffset: number, byteLength: number): unknown {
  const head = new DataView(buffer, byteOffset, byteLength)
  const element = byteLength >= 8 ? head.getUint32(0, true) : 0
  const start = 8 + 8 * (byteLength >= 8 ? head.getUint32(4, true) : 0)
  const Type = TYPED_ARRAYS[element - 1]
  if (Type === undefined || start > byteLength || (byteLength - start) % Type.BYTES_PER_ELEMENT !== 0) {
    throw new Error(`an ndarray message has a bad header (element tag ${element}, ${byteLength} bytes)`)
  }
  return new Type(buffer, byteOffset + start, (byteLength - start) / Type.BYTES_PER_ELEMENT)
}

export function decode(tag: number, data: Buffer): unknown {
  if (tag === TAG_BUFFER) return data
  if (tag === TAG_NDARRAY) return ndarray(data.buffer as ArrayBuffer, data.byteOffset, data.byteLength)
  if (tag >= TAG_PICKLE) throw foreign(tag)
  if (tag === TAG_V8) return v8.deserialize(data)
  return decodeOwn(tag, data.buffer as ArrayBuffer)
}

function decodeOwn(tag: number, data: ArrayBuffer): unknown {
  if (tag <= TYPED_ARRAYS.length) return new TYPED_ARRAYS[tag - 1](data)
  if (tag === TAG_DATAVIEW) return new DataView(data)
  return data
}

/** A message (not a raw Buffer one) the addon copied into `scratch[0, length)`: copy it into a value of its own. */
export function decodeCopy(tag: number, scratch: Buffer, length: number): unknown {
  if (tag >= TAG_PICKLE && tag !== TAG_NDARRAY) throw foreign(tag)
  const bytes = scratch.subarray(0, length)
  if (tag === TAG_NDARRAY) return ndarray(new Uint8Array(bytes).buffer, 0, length)
  // v8.deserialize may return views into its input: give it a copy.
  if (tag === TAG_V8) return v8.deserialize(Buffer.from(bytes))
  const own = new ArrayBuffer(length)
  new Uint8Array(own).set(bytes)
  return decodeOwn(tag, own)
}

/** A message seen in place (a lease): raw types as views of `view`'s memory. */
export function decodeView(tag: number, view: Buffer): unknown {
  if (tag === TAG_NDARRAY) return ndarray(view.buffer as ArrayBuffer, view.byteOffset, view.byteLength)
  if (tag >= TAG_PICKLE) throw foreign(tag)
  if (tag === TAG_BUFFER) return view
  // Copies: a string, or a value v8.deserialize might keep views into.
  if (tag === TAG_STRING) return view.toString('utf8')
  if (tag === TAG_V8) return v8.deserialize(Buffer.from(view))
  const { byteOffset, byteLength } = view
  const buffer = view.buffer as ArrayBuffer
  if (tag <= TYPED_ARRAYS.length) {
    const Type = TYPED_ARRAYS[tag - 1]
    return new Type(buffer, byteOffset, byteLength / Type.BYTES_PER_ELEMENT)
  }
  if (tag === TAG_DATAVIEW) return new DataView(buffer, byteOffset, byteLength)
  return buffer
}
