// Every value type survives a round trip through a child process.
import test from 'ava'
import { createSharedMemoryPair } from 'shmq'
import { run } from './helpers.mjs'

const values = () => [
  Buffer.from('a buffer'),
  new Uint8Array([1, 2, 3]),
  new Uint8ClampedArray([0, 255]),
  new Int8Array([-1, 127]),
  new Uint16Array([65535, 1]),
  new Int16Array([-32768]),
  new Uint32Array([4294967295]),
  new Int32Array([-5, 5]),
  new Float32Array([1.5, -0]),
  new Float64Array([Math.PI, Number.NaN]),
  new BigInt64Array([-(2n ** 63n)]),
  new BigUint64Array([2n ** 64n - 1n]),
  new DataView(new Uint8Array([9, 8, 7]).buffer),
  new Uint8Array([5, 6, 7, 8]).buffer,
  new Float64Array(new ArrayBuffer(64), 8, 3).fill(2.25), // views at an offset
  new DataView(new Uint8Array([0, 1, 2, 3, 4, 5, 6, 7]).buffer, 3, 4),
  Buffer.from('hello world').subarray(6),
  '',
  'héllo wörld ✓ 🎉',
  { nested: { array: [1, 'two', null, undefined, true], when: new Date(0), big: 123n } },
  new Map([[1, new Set(['x'])]]),
  [new Float32Array([1, 2]), Buffer.from('in an array')],
  42,
  null,
  undefined,
  /re+gex/gi,
  new Error('an error'),
]

for (const [script, label] of [
  ['echo.mjs', 'import'],
  ['echo.cjs', 'require'],
]) {
  test(`every value type round-trips through a forked child (${label})`, async (t) => {
    const [out, outRx] = createSharedMemoryPair({ capacity: 4, slotSize: 256 })
    const [backTx, back] = createSharedMemoryPair({ capacity: 4 })
    const child = run(script, [outRx.handle, backTx.handle])
    outRx.close()
    backTx.close()
    for (const value of values()) {
      await out.put(value)
      const echoed = await back.get({ timeout: 10_000 })
      if (ArrayBuffer.isView(value) || value instanceof ArrayBuffer) {
        t.is(Object.getPrototypeOf(echoed), Object.getPrototypeOf(value), `type of ${value.constructor.name}`)
        t.is(echoed.byteLength, value.byteLength)
        const bytes = (v) =>
          Buffer.from(ArrayBuffer.isView(v) ? v.buffer.slice(v.byteOffset, v.byteOffset + v.byteLength) : v)
        t.true(bytes(echoed).equals(bytes(value)))
      } else if (value instanceof Error) {
        t.is(echoed.message, value.message)
      } else {
        t.deepEqual(echoed, value)
      }
    }
    out.close()
    await t.throwsAsync(back.get({ timeout: 10_000 }), { code: 'ERR_SHMQ_CLOSED' })
    const { code } = await child
    t.is(code, 0)
    back.close()
  })
}
