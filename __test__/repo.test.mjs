// The repository keeps its promises: the README names only files that exist,
// npm scripts run files that exist, CI runs .ci/run on every push and PR.
import test from 'ava'
import { existsSync, readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'

const root = fileURLToPath(new URL('..', import.meta.url))
const read = (f) => readFileSync(`${root}${f}`, 'utf8')

test('every repository path the README names exists', (t) => {
  // `code` spans that look like paths in this repository (built output excepted).
  const paths = [...read('README.md').matchAll(/`([^`\s]+)`/g)]
    .map((m) => m[1])
    .filter((p) =>
      /^(\.ci|\.github|__test__|benchmark|crates|examples|lib|npm|scripts|src)\/|^[\w.-]+\.(ts|rs|mjs|json|toml|md)$/.test(
        p,
      ),
    )
    .filter((p) => !p.startsWith('dist/') && !p.includes('<') && !p.includes('*'))
  t.true(paths.length > 20, `found ${paths.length} paths`)
  // Bare names are read relative to the folder the README's sentence names.
  const folders = ['', 'src/', 'crates/shmq-core/src/', 'benchmark/', 'benchmark/results/', 'dist/']
  const missing = paths.filter((p) => !folders.some((f) => existsSync(`${root}${f}${p}`)))
  t.deepEqual(missing, [])
})

test('npm scripts run files that exist', (t) => {
  const { scripts } = JSON.parse(read('package.json'))
  for (const [name, command] of Object.entries(scripts)) {
    for (const [, file] of command.matchAll(/node ([\w./-]+\.m?js)/g))
      t.true(existsSync(`${root}${file}`), `${name}: ${file}`)
  }
})

test('CI runs .ci/run on every push and pull request; .ci/run lints TypeScript and Rust', (t) => {
  const ci = read('.github/workflows/ci.yml')
  t.regex(ci, /^on:\s*\n\s+push:\s*\n\s+pull_request:/m)
  t.regex(ci, /bash \.ci\/run/)
  const run = read('.ci/run')
  for (const check of ['biome ci', 'cargo fmt --all --check', 'cargo clippy', 'npm test'])
    t.true(run.includes(check), check)
})
