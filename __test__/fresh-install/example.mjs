// The same program as an ES module, with the async API.
import { fork } from 'node:child_process'
import { createHash } from 'node:crypto'
import { fileURLToPath } from 'node:url'
import { createSharedMemoryPair, SharedMemoryReceiver, SharedMemorySender } from 'shmq'

const digest = (b) => createHash('sha256').update(b).digest('hex')

if (process.argv[2] === 'child') {
  const rx = SharedMemoryReceiver.attach(process.argv[3])
  const tx = SharedMemorySender.attach(process.argv[4])
  const big = await rx.get()
  const value = await rx.get()
  await tx.put({ length: big.length, digest: digest(big), value })
  await tx.waitForAllAck()
  tx.close()
  rx.close()
} else {
  const [tx, childRx] = createSharedMemoryPair({ capacity: 2 })
  const [childTx, rx] = createSharedMemoryPair({ capacity: 2 })
  const child = fork(fileURLToPath(import.meta.url), ['child', childRx.handle, childTx.handle])
  const big = Buffer.alloc(64 * 1024 * 1024, 9)
  await tx.put(big)
  await tx.put({ nested: [new Uint16Array([65535])], text: 'héllo' })
  const reply = await rx.get({ timeout: 30000 })
  const ok =
    reply.length === big.length &&
    reply.digest === digest(big) &&
    reply.value.nested[0][0] === 65535 &&
    reply.value.text === 'héllo'
  console.log(ok ? 'import: ok' : `import: MISMATCH ${JSON.stringify(reply)}`)
  child.on('exit', (code) => process.exit(ok && code === 0 ? 0 : 1))
}
