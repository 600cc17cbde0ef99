// The published shape. `npm pack` of the main package gets the
// optionalDependencies `napi pre-publish` adds at release, and each npm/*
// package is packed too (only this machine's, linux-x64-gnu here, has its
// addon: the others cannot be built here and are packed without it). A fresh project installs them
// through `overrides` (as if from the registry) with no Rust toolchain on
// PATH: on this machine, and as npm would for macOS and Windows (--os/--cpu).
// Then the loader: faked platforms and the override environment variables.
import test from 'ava'
import { execFileSync, spawnSync } from 'node:child_process'
import {
  copyFileSync,
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join, relative } from 'node:path'
import { fileURLToPath } from 'node:url'

const root = fileURLToPath(new URL('..', import.meta.url))
const here = fileURLToPath(new URL('./fresh-install/', import.meta.url))
// This machine's platform (glibc: the release workflow runs this test on glibc only).
const NATIVE = `linux-${process.arch}-gnu`
const addon = join(root, `shmq.${NATIVE}.node`)
const PLATFORMS = ['linux-x64-gnu', 'linux-arm64-gnu', 'linux-x64-musl', 'linux-arm64-musl']
// Only node/npm and the system's basic tools: no cargo, no rustc.
const PATH = [dirname(process.execPath), '/usr/bin', '/bin'].join(':')
const env = {
  ...process.env,
  PATH,
  npm_config_audit: 'false',
  npm_config_fund: 'false',
  npm_config_update_notifier: 'false',
}
delete env.SHMQ_NATIVE_PATH
delete env.NAPI_RS_NATIVE_LIBRARY_PATH
const run = (cmd, args, cwd, extra = {}) =>
  execFileSync(cmd, args, { cwd, env: { ...env, ...extra }, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] })

function pack(dir, into) {
  const [info] = JSON.parse(run('npm', ['pack', '--json', '--ignore-scripts', '--pack-destination', into], dir))
  return { ...info, path: join(into, info.filename) }
}

const work = mkdtempSync(join(tmpdir(), 'shmq-fresh-'))
let packed

test.before(() => {
  const plain = pack(root, work)
  // What the release publishes: the same files plus optionalDependencies.
  const staged = join(work, 'staged')
  mkdirSync(staged)
  run('tar', ['xzf', plain.path, '-C', staged], work)
  const manifestPath = join(staged, 'package', 'package.json')
  const manifest = JSON.parse(readFileSync(manifestPath, 'utf8'))
  manifest.optionalDependencies = Object.fromEntries(PLATFORMS.map((p) => [`shmq-${p}`, manifest.version]))
  writeFileSync(manifestPath, JSON.stringify(manifest, null, 2))
  const registry = join(work, 'registry')
  mkdirSync(registry)
  const main = pack(join(staged, 'package'), registry)
  const platforms = {}
  for (const p of PLATFORMS) {
    const dir = join(work, p)
    cpSync(join(root, 'npm', p), dir, { recursive: true })
    if (p === NATIVE) copyFileSync(addon, join(dir, `shmq.${p}.node`))
    platforms[p] = pack(dir, registry)
  }
  packed = { plain, main, platforms }
})

test.after.always(() => rmSync(work, { recursive: true, force: true }))

/** A new project depending on shmq, its platform packages resolved to the tarballs. */
function project(name) {
  const dir = join(work, name)
  cpSync(here, dir, { recursive: true })
  const tgz = (p) => `file:${p.path}`
  const overrides = Object.fromEntries(PLATFORMS.map((p) => [`shmq-${p}`, tgz(packed.platforms[p])]))
  writeFileSync(
    join(dir, 'package.json'),
    JSON.stringify({ name, private: true, dependencies: { shmq: tgz(packed.main) }, overrides }, null, 2),
  )
  return dir
}

const installed = (dir) =>
  readdirSync(join(dir, 'node_modules'))
    .filter((n) => n.startsWith('shmq'))
    .sort()

test('the tarball holds dist/, README and LICENSE only, and passes publint and attw', (t) => {
  const files = packed.plain.files.map((f) => f.path).sort()
  t.log(
    `packed: ${packed.main.filename} ${packed.main.size} B (${packed.main.unpackedSize} B unpacked, ${packed.main.entryCount} files); ${packed.platforms[NATIVE].filename} ${packed.platforms[NATIVE].size} B`,
  )
  for (const f of [
    'dist/index.js',
    'dist/index.mjs',
    'dist/index.d.ts',
    'dist/index.d.mts',
    'dist/cli.js',
    'dist/lib/binding.js',
    'README.md',
    'LICENSE',
    'package.json',
  ]) {
    t.true(files.includes(f), `${f} is missing from ${files.join(' ')}`)
  }
  const stray = files.filter((f) => !f.startsWith('dist/') && !['README.md', 'LICENSE', 'package.json'].includes(f))
  t.deepEqual(stray, [])
  t.false(
    files.some((f) => f.endsWith('.ts') && !f.endsWith('.d.ts') && !f.endsWith('.d.mts')),
    'no TypeScript source',
  )
  // @internal members are stripped from the declarations.
  const types = readFileSync(join(root, 'dist', 'index.d.ts'), 'utf8')
  t.notRegex(types, /constructor\(id: number\);/)
  t.notRegex(readFileSync(join(root, 'dist', 'lib', 'binding.d.ts'), 'utf8'), /declare const binding|\.\.\/native/)
  // Every file the package names exists in it.
  const manifest = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'))
  const named = [
    manifest.main,
    manifest.types,
    ...Object.values(manifest.bin),
    ...Object.values(manifest.exports['.']).flatMap(Object.values),
  ]
  for (const f of named) t.true(files.includes(f.replace(/^\.\//, '')), `package.json names ${f}, not in the tarball`)
  t.false('os' in manifest || 'cpu' in manifest, 'no os/cpu field: installs anywhere')

  const publint = spawnSync('npx', ['publint', 'run', '--strict', packed.main.path], {
    cwd: root,
    env,
    encoding: 'utf8',
  })
  t.is(publint.status, 0, publint.stdout + publint.stderr)
  const attw = spawnSync('npx', ['attw', '--format', 'ascii', packed.main.path], { cwd: root, env, encoding: 'utf8' })
  t.is(attw.status, 0, attw.stdout + attw.stderr)
  t.regex(attw.stdout, /No problems found/)
})

test(`on ${NATIVE} npm installs shmq-${NATIVE} alone, and require, import, the CLI and TypeScript work without Rust`, (t) => {
  t.is(spawnSync('cargo', ['--version'], { env }).error?.code, 'ENOENT', 'cargo is not on PATH')
  t.is(spawnSync('rustc', ['--version'], { env }).error?.code, 'ENOENT', 'rustc is not on PATH')
  const dir = project('linux')
  writeFileSync(
    join(dir, 'tsconfig.json'),
    JSON.stringify({
      compilerOptions: {
        strict: true,
        target: 'ES2022',
        module: 'nodenext',
        moduleResolution: 'nodenext',
        types: ['node'],
        noEmit: true,
      },
      files: ['consumer.ts', 'consumer.mts'],
    }),
  )
  run('npm', ['install', '--prefer-offline', '--save-dev', 'typescript@5.9', '@types/node@20'], dir)
  t.deepEqual(installed(dir), ['shmq', `shmq-${NATIVE}`])

  t.is(run('node', ['-p', "require('shmq').isSupported()"], dir).trim(), 'true')
  t.is(run('node', ['example.cjs'], dir).trim(), 'require: ok')
  t.is(run('node', ['example.mjs'], dir).trim(), 'import: ok')
  // The ES module entry exports every name the CommonJS one does, and the same objects.
  const same = run(
    'node',
    [
      '--input-type=module',
      '-e',
      `import * as esm from 'shmq'; import { createRequire } from 'node:module'
    const cjs = createRequire(process.cwd() + '/x.js')('shmq')
    const names = Object.keys(cjs).sort()
    console.log(JSON.stringify(names) === JSON.stringify(Object.keys(esm).filter((n) => n !== 'default').sort()) && names.every((n) => esm[n] === cjs[n]) && esm.default === cjs)`,
    ],
    dir,
  )
  t.is(same.trim(), 'true')
  t.regex(run('npx', ['shmq', 'ls'], dir), /NAME|no shmq queues/)
  const tsc = spawnSync('npx', ['tsc', '-p', 'tsconfig.json'], { cwd: dir, env, encoding: 'utf8' })
  t.is(tsc.status, 0, tsc.stdout + tsc.stderr)
})

// What a program sees, as JSON, when it uses shmq on a (faked) platform.
const probe = (platform, arch) => `
  ${platform ? `Object.defineProperty(process, 'platform', { value: ${JSON.stringify(platform)} })` : ''}
  ${arch ? `Object.defineProperty(process, 'arch', { value: ${JSON.stringify(arch)} })` : ''}
  const shmq = require('shmq')
  const attempt = (f) => { try { f(); return 'no error' } catch (e) { return { name: e.name, code: e.code, message: e.message, isShmqError: e instanceof shmq.ShmqError } } }
  console.log(JSON.stringify({
    supported: shmq.isSupported(),
    create: attempt(() => shmq.createSharedMemoryPair()),
    attach: attempt(() => shmq.SharedMemoryReceiver.attach('shmq-nothing-here')),
    addons: Object.keys(require.cache).filter((f) => f.endsWith('.node')),
  }))`
const probeIn = (dir, platform, arch, extra) => JSON.parse(run('node', ['-e', probe(platform, arch)], dir, extra))

for (const [os, cpu] of [
  ['darwin', 'arm64'],
  ['win32', 'x64'],
]) {
  test(`npm install and npm ci of the tarballs succeed for ${os}-${cpu} (--os/--cpu), installing no addon`, (t) => {
    const dir = project(`${os}-${cpu}`)
    const flags = [`--os=${os}`, `--cpu=${cpu}`]
    run('npm', ['install', ...flags], dir)
    t.deepEqual(installed(dir), ['shmq'])
    run('npm', ['ci', ...flags], dir)
    t.deepEqual(installed(dir), ['shmq'])
    // The lockfile still records every platform package, for other machines.
    const lock = JSON.parse(readFileSync(join(dir, 'package-lock.json'), 'utf8'))
    t.deepEqual(
      PLATFORMS.map((p) => lock.packages[`node_modules/shmq-${p}`]?.optional),
      PLATFORMS.map(() => true),
    )

    // As that platform would run it: import works, use throws and says what to do.
    const there = probeIn(dir, os, cpu)
    t.false(there.supported)
    t.deepEqual(there.addons, [])
    for (const error of [there.create, there.attach]) {
      t.like(error, { name: 'ShmqError', code: 'ERR_SHMQ_UNSUPPORTED_PLATFORM', isShmqError: true })
      t.regex(error.message, new RegExp(`no backend for ${os}-${cpu}`))
      t.regex(error.message, /isSupported\(\)/)
    }
    t.is(
      run(
        'node',
        [
          '--input-type=module',
          '-e',
          `Object.defineProperty(process, 'platform', { value: '${os}' })
      const { isSupported, default: shmq } = await import('shmq'); console.log(isSupported(), shmq.isSupported())`,
        ],
        dir,
      ).trim(),
      'false false',
    )

    // Here (Linux) this install has no addon: as with --omit=optional.
    const here = probeIn(dir)
    t.false(here.supported)
    t.like(here.create, { code: 'ERR_SHMQ_UNSUPPORTED_PLATFORM' })
    t.regex(here.create.message, new RegExp(`could not load its native addon for ${NATIVE}.*--omit=optional`, 's'))

    // The same lockfile on this Linux machine: npm ci installs the addon.
    run('npm', ['ci'], dir)
    t.deepEqual(installed(dir), ['shmq', `shmq-${NATIVE}`])
    const linux = probeIn(dir)
    t.true(linux.supported)
    t.is(linux.create, 'no error')
    t.like(linux.attach, { isShmqError: true }) // a real attach, of a queue that is not there
    t.not(linux.attach.code, 'ERR_SHMQ_UNSUPPORTED_PLATFORM')
  })
}

test('in the source checkout, a platform without a backend imports but loads no addon, and use throws', (t) => {
  for (const [platform, arch] of [
    ['darwin', undefined],
    ['win32', 'x64'],
    ['freebsd', 'x64'],
  ]) {
    const got = probeIn(root, platform, arch)
    t.false(got.supported, platform)
    t.deepEqual(got.addons, [], `${platform}: no addon is loaded`)
    t.like(got.create, { code: 'ERR_SHMQ_UNSUPPORTED_PLATFORM', isShmqError: true })
    t.regex(got.create.message, new RegExp(`no backend for ${platform}-${arch ?? process.arch}`))
    t.regex(got.create.message, /macOS and Windows backends are not written yet/)
    t.like(got.attach, { code: 'ERR_SHMQ_UNSUPPORTED_PLATFORM' })
  }
  // Even an override is not loaded there.
  t.deepEqual(probeIn(root, 'darwin', 'arm64', { SHMQ_NATIVE_PATH: addon }).addons, [])
  // And here, the checkout's own build.
  const here = probeIn(root)
  t.true(here.supported)
  t.deepEqual(here.addons, [addon])
})

test('SHMQ_NATIVE_PATH and NAPI_RS_NATIVE_LIBRARY_PATH load the addon from the path they name, and only from it', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'shmq-override-'))
  const copy = join(dir, 'copy-of-shmq.node')
  copyFileSync(addon, copy)
  const roundTrip = `
    const { createSharedMemoryPair, isSupported } = require('shmq')
    const [tx, rx] = createSharedMemoryPair({ capacity: 1 })
    tx.putSync({ hello: 'world' })
    console.log(JSON.stringify({ supported: isSupported(), got: rx.getSync(), addons: Object.keys(require.cache).filter((f) => f.endsWith('.node')) }))`
  const load = (extra) => JSON.parse(run('node', ['-e', roundTrip], root, extra))

  for (const name of ['SHMQ_NATIVE_PATH', 'NAPI_RS_NATIVE_LIBRARY_PATH']) {
    t.deepEqual(load({ [name]: copy }), { supported: true, got: { hello: 'world' }, addons: [copy] }, name)
  }
  // Relative to the working directory.
  t.deepEqual(load({ SHMQ_NATIVE_PATH: relative(root, copy) }).addons, [copy])
  // Ours wins over napi-rs's.
  t.deepEqual(load({ SHMQ_NATIVE_PATH: copy, NAPI_RS_NATIVE_LIBRARY_PATH: join(dir, 'missing.node') }).addons, [copy])

  // A path that does not load: no fallback to the checkout's build; use says which variable.
  for (const name of ['SHMQ_NATIVE_PATH', 'NAPI_RS_NATIVE_LIBRARY_PATH']) {
    const got = probeIn(root, undefined, undefined, { [name]: join(dir, 'missing.node') })
    t.false(got.supported)
    t.deepEqual(got.addons, [])
    t.like(got.create, { code: 'ERR_SHMQ_UNSUPPORTED_PLATFORM' })
    t.regex(got.create.message, new RegExp(`${name} names an addon that did not load`))
    t.true(got.create.message.includes(join(dir, 'missing.node')))
  }
  t.true(existsSync(copy))
  rmSync(dir, { recursive: true, force: true })
})
