// The published shape: `npm pack` of the main package and of
// npm/linux-x64-gnu install into a fresh project with no Rust toolchain on
// PATH, and work there with require, import, the CLI and TypeScript.
import test from 'ava'
import { execFileSync, spawnSync } from 'node:child_process'
import { copyFileSync, cpSync, mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

const root = fileURLToPath(new URL('..', import.meta.url))
const here = fileURLToPath(new URL('./fresh-install/', import.meta.url))
// Only node/npm and the system's basic tools: no cargo, no rustc.
const PATH = [dirname(process.execPath), '/usr/bin', '/bin'].join(':')
const env = { ...process.env, PATH, npm_config_audit: 'false', npm_config_fund: 'false', npm_config_update_notifier: 'false' }
const run = (cmd, args, cwd) => execFileSync(cmd, args, { cwd, env, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] })

function pack(dir, into) {
  const [info] = JSON.parse(run('npm', ['pack', '--json', '--ignore-scripts', '--pack-destination', into], dir))
  return info
}

test('the packed main and linux-x64-gnu packages install and run without a Rust toolchain', (t) => {
  t.is(spawnSync('cargo', ['--version'], { env }).error?.code, 'ENOENT', 'cargo is not on PATH')
  t.is(spawnSync('rustc', ['--version'], { env }).error?.code, 'ENOENT', 'rustc is not on PATH')

  const work = mkdtempSync(join(tmpdir(), 'shmq-fresh-'))
  const main = pack(root, work)
  const files = main.files.map((f) => f.path)
  t.true(files.includes('dist/index.js') && files.includes('dist/index.mjs') && files.includes('dist/index.d.ts') && files.includes('dist/cli.js') && files.includes('LICENSE'))
  t.false(files.some((f) => f.endsWith('.rs') || f.endsWith('.node') || f.startsWith('__test__') || f.startsWith('src/')), files.join(' '))

  const platformDir = join(work, 'linux-x64-gnu')
  cpSync(join(root, 'npm', 'linux-x64-gnu'), platformDir, { recursive: true })
  copyFileSync(join(root, 'shmq.linux-x64-gnu.node'), join(platformDir, 'shmq.linux-x64-gnu.node'))
  const platform = pack(platformDir, work)
  t.log(`packed: ${main.filename} ${main.size} B (${main.unpackedSize} B unpacked, ${main.entryCount} files); ${platform.filename} ${platform.size} B (${platform.unpackedSize} B unpacked)`)

  const project = join(work, 'project')
  cpSync(here, project, { recursive: true })
  writeFileSync(join(project, 'package.json'), JSON.stringify({ name: 'consumer', private: true }))
  writeFileSync(
    join(project, 'tsconfig.json'),
    JSON.stringify({ compilerOptions: { strict: true, target: 'ES2022', module: 'nodenext', moduleResolution: 'nodenext', types: ['node'], noEmit: true }, files: ['consumer.ts'] }),
  )
  run('npm', ['install', '--prefer-offline', join(work, main.filename), join(work, platform.filename), 'typescript@5.9', '@types/node@20'], project)

  t.is(run('node', ['example.cjs'], project).trim(), 'require: ok')
  t.is(run('node', ['example.mjs'], project).trim(), 'import: ok')
  t.regex(run('npx', ['shmq', 'ls'], project), /NAME|no shmq queues/)
  const tsc = spawnSync('npx', ['tsc', '-p', 'tsconfig.json'], { cwd: project, env, encoding: 'utf8' })
  t.is(tsc.status, 0, tsc.stdout + tsc.stderr)
})

test('a platform without a backend fails at load with ERR_SHMQ_UNSUPPORTED_PLATFORM, naming it', (t) => {
  const script = `Object.defineProperty(process, 'platform', { value: 'darwin' })
    try { require('shmq'); console.log('loaded') } catch (e) { console.log(JSON.stringify({ code: e.code, message: e.message })) }`
  const out = execFileSync(process.execPath, ['-e', script], { cwd: root, encoding: 'utf8' })
  const { code, message } = JSON.parse(out)
  t.is(code, 'ERR_SHMQ_UNSUPPORTED_PLATFORM')
  t.regex(message, /darwin-x64/)
  t.regex(message, /macOS and Windows backends are not written yet/)
})
