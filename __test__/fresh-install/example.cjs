// A user's two-process program, CommonJS: fork a child, send a 64 MiB Buffer
// and a structured value, check what comes back.
const { fork } = require('node:child_process')
const { createHash } = require('node:crypto')
const { createSharedMemoryPair, SharedMemoryReceiver, SharedMemorySender } = require('shmq')

const digest = (b) => createHash('sha256').update(b).digest('hex')

if (process.argv[2] === 'child') {
  const rx = SharedMemoryReceiver.attach(process.argv[3])
  const tx = SharedMemorySender.attach(process.argv[4])
  const big = rx.getSync()
  const value = rx.getSync()
  tx.putSync({ length: big.length, digest: digest(big), value })
  tx.waitForAllAckSync()
  tx.close()
  rx.close()
} else {
  const [tx, childRx] = createSharedMemoryPair({ capacity: 2 })
  const [childTx, rx] = createSharedMemoryPair({ capacity: 2 })
  const child = fork(__filename, ['child', childRx.handle, childTx.handle])
  const big = Buffer.alloc(64 * 1024 * 1024, 7)
  const value = { name: 'shmq', when: new Date(0), map: new Map([[1, [2n, 'three']]]), floats: new Float32Array([1.5]) }
  tx.putSync(big)
  tx.putSync(value)
  const reply = rx.getSync({ timeout: 30000 })
  const ok =
    reply.length === big.length &&
    reply.digest === digest(big) &&
    reply.value.map.get(1)[0] === 2n &&
    reply.value.when.getTime() === 0 &&
    reply.value.floats[0] === 1.5
  console.log(ok ? 'require: ok' : `require: MISMATCH ${JSON.stringify(reply)}`)
  child.on('exit', (code) => process.exit(ok && code === 0 ? 0 : 1))
}
