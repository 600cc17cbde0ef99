// A corrupt or hostile segment gives ERR_SHMQ_INVALID in a fresh process:
// never a crash, a hang or an out-of-bounds read.
import test from 'ava'
import { openSync, writeSync, closeSync } from 'node:fs'
import { createSharedMemoryPair } from 'shmq'
import { run } from './helpers.mjs'

// Offsets from src/layout.rs.
const SLOTS = 66176
const header = { magic: 0, version: 8, capacity: 16, slotSize: 20, slotStride: 28, totalSize: 40, slotsOffset: 48 }
const slot = { seq: 0, len: 8, tag: 16, kind: 20, payloadName: 32 }

function poke(name, offset, bytes) {
  const fd = openSync(`/dev/shm/${name}`, 'r+')
  writeSync(fd, Buffer.from(bytes), 0, bytes.length, offset)
  closeSync(fd)
}
const u32 = (v) => {
  const b = Buffer.alloc(4)
  b.writeUInt32LE(v)
  return b
}
const u64 = (v) => {
  const b = Buffer.alloc(8)
  b.writeBigUInt64LE(BigInt(v))
  return b
}

async function probe(handle, count = 1) {
  const { code, signal, messages } = await run('probe.mjs', [handle, count])
  return { code, signal, outcomes: messages[0] }
}

for (const [field, bytes] of [
  ['magic', u64(0x1234)],
  ['version', u32(99)],
  ['capacity', u32(0xffffffff)],
  ['slotSize', u32(0x7fffffff)],
  ['slotStride', u32(64)],
  ['totalSize', u64(2n ** 60n)],
  ['slotsOffset', u64(12)],
]) {
  test(`a corrupt header field (${field}) is ERR_SHMQ_INVALID at attach`, async (t) => {
    const [tx, rx] = createSharedMemoryPair({ capacity: 4 })
    tx.putSync('hello')
    poke(tx.handle, header[field], bytes)
    const { code, signal, outcomes } = await probe(tx.handle)
    t.is(signal, null)
    t.is(code, 0)
    t.deepEqual(outcomes, ['attach:ERR_SHMQ_INVALID'])
    tx.close()
    rx.close()
  })
}

for (const [field, bytes, small] of [
  ['len beyond the slot', [slot.len, u64(2n ** 40n)], true],
  ['unknown tag', [slot.tag, u32(77)], true],
  ['ragged typed-array length', [slot.tag, u32(9)], true],
  ['unknown kind', [slot.kind, u32(7)], true],
  ['payload segment that does not exist', [slot.payloadName, u64(0xdead)], false],
  ['len beyond the payload segment', [slot.len, u64(10_000_000)], false],
]) {
  test(`a corrupt slot (${field}) is ERR_SHMQ_INVALID for that message; the queue goes on`, async (t) => {
    const [tx, rx] = createSharedMemoryPair({ capacity: 4, slotSize: 1024 })
    tx.putSync(small ? Buffer.alloc(13, 1) : Buffer.alloc(100_000, 1))
    tx.putSync('next')
    poke(tx.handle, SLOTS + bytes[0], bytes[1])
    const { code, signal, outcomes } = await probe(tx.handle, 3)
    t.is(signal, null)
    t.is(code, 0)
    t.deepEqual(outcomes, ['ERR_SHMQ_INVALID', 'next', 'ERR_SHMQ_EMPTY'])
    tx.close()
    rx.close()
  })
}

test('a corrupt v8 message is ERR_SHMQ_INVALID, not a crash', async (t) => {
  const [tx, rx] = createSharedMemoryPair({ capacity: 4, slotSize: 1024 })
  tx.putSync({ a: [1, 2, 3], b: 'x'.repeat(50) })
  poke(tx.handle, SLOTS + 64 + 2, Buffer.alloc(20, 0xff))
  const { signal, outcomes } = await probe(tx.handle)
  t.is(signal, null)
  t.deepEqual(outcomes, ['ERR_SHMQ_INVALID'])
  tx.close()
  rx.close()
})

test('garbage ring counters give ERR_SHMQ_INVALID instead of a hang', async (t) => {
  const [tx, rx] = createSharedMemoryPair({ capacity: 4 })
  tx.putSync('x')
  // Slot 1 claims to be far ahead of the head: no claim can ever succeed.
  const stride = 64 + 65536
  poke(tx.handle, SLOTS + stride + slot.seq, u64((12345n << 13n) | 2n))
  poke(tx.handle, 128, u64(1)) // head
  const { signal, outcomes } = await probe(tx.handle)
  t.is(signal, null)
  t.deepEqual(outcomes, ['ERR_SHMQ_INVALID'])
  tx.close()
  rx.close()
})
