// A smoke of the bench runner: rows 1 and 3 for a second each, so the runner, its process
// handling and its table keep working. No figure is asserted: these machines are shared.
import { execFile } from 'node:child_process'
import { readdirSync, readFileSync } from 'node:fs'
import { promisify } from 'node:util'
import t from 'tap'
import { tempDir } from '../helper.ts'

t.test('npm run bench runs, prints its table and writes its JSON', async (t) => {
  const out = tempDir(t, 'gleaner-bench-out-')
  const { stdout } = await promisify(execFile)(process.execPath, ['--import', 'tsx', 'loadtest/bench.ts'], {
    cwd: new URL('../..', import.meta.url).pathname,
    env: { PATH: process.env.PATH, BENCH_ROWS: '1,3', BENCH_SECONDS: '1', BENCH_OUT: out },
    timeout: 100_000
  })
  t.match(stdout, /\| 1 \| ceiling A: bare Fastify/)
  t.match(stdout, /\| 3 \| single-POST ingest, 50 conn \| [\d,]+ req\/s/)
  t.match(stdout, /% of A/)
  const files = readdirSync(out)
  t.equal(files.length, 1)
  const result = JSON.parse(readFileSync(`${out}/${files[0]}`, 'utf8'))
  t.ok(result.rows.ceilingA.rps > 0 && result.rows.single.c50.rps > 0, 'figures recorded')
  t.equal(result.rows.single.c50.non2xx, 0, 'every ingest request was accepted')
})
