// A smoke of npm run bench:peers at tiny sizes: the three systems start, take POSTs, drain
// with the local analyzer and the fake model, and the runner prints its table and writes its
// JSON. No figure is asserted: these machines are shared.
import { execFile } from 'node:child_process'
import { readdirSync, readFileSync } from 'node:fs'
import { promisify } from 'node:util'
import t from 'tap'
import { tempDir } from '../helper.ts'

const { DATABASE_URL, REDIS_URL } = process.env

t.test('npm run bench:peers measures the three systems and writes its JSON', { skip: !DATABASE_URL || !REDIS_URL ? 'needs DATABASE_URL and REDIS_URL' : false }, async (t) => {
  const out = tempDir(t, 'gleaner-peers-out-')
  const { stdout } = await promisify(execFile)(process.execPath, ['--import', 'tsx', 'loadtest/peers/run.ts'], {
    cwd: new URL('../..', import.meta.url).pathname,
    env: { PATH: process.env.PATH, PEERS_N: '200', PEERS_POSTS: '100', PEERS_DATABASE_URL: DATABASE_URL, PEERS_REDIS_URL: REDIS_URL, PEERS_OUT: out },
    timeout: 120_000 // a hang guard: ~20 s idle
  })
  for (const system of ['gleaner', 'bullmq', 'pgboss']) t.match(stdout, new RegExp(`\\| ${system} \\| \\*\\*[\\d.]+\\*\\*`), `${system} has a row`)
  const files = readdirSync(out)
  t.equal(files.length, 1)
  const result = JSON.parse(readFileSync(`${out}/${files[0]}`, 'utf8'))
  for (const system of ['gleaner', 'bullmq', 'pgboss']) {
    const r = result.results[system]
    t.equal(r.local.n, 200, `${system} drained the local backlog`)
    t.equal(r.model.n, 200, `${system} drained the model backlog`)
    t.ok(r.ingest.serverMs > 0, `${system} ingest CPU recorded`)
  }
})
