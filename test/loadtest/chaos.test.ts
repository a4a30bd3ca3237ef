// A smoke of npm run chaos: the PostgreSQL kill -9 scenario once, so the script keeps
// working and its verdict line stays honest. The assertions on the same faults live in
// test/e2e/outage.test.ts and crash.test.ts; instance-kill waits out a 30 s lease, so it
// runs on demand only.
import { execFile } from 'node:child_process'
import { promisify } from 'node:util'
import t from 'tap'
import { pgClusterSkip } from '../pg-cluster.ts'

t.test('npm run chaos -- pg-kill: kill -9 of PostgreSQL under ingest, and what held', { skip: pgClusterSkip }, async (t) => {
  const { stdout } = await promisify(execFile)(process.execPath, ['--import', 'tsx', 'loadtest/chaos.ts', 'pg-kill'], {
    cwd: new URL('../..', import.meta.url).pathname,
    env: { PATH: process.env.PATH, DATABASE_URL: process.env.DATABASE_URL, CHAOS_PG_KILLS: '1', CHAOS_PG_KILL_EVERY_S: '1' },
    timeout: 300_000 // a hang guard: ~10 s idle
  })
  t.match(stdout, /pg-kill: 1 × kill -9 of PostgreSQL/)
  t.match(stdout, /acknowledged [1-9]\d*, lost 0/, 'something was acknowledged, and none of it lost')
  t.match(stdout, /503 with Retry-After/, 'the outage was answered 503 with Retry-After')
  t.match(stdout, /held: yes/)
})
