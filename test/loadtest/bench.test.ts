// A smoke of the bench runner: rows 1 and 3 for a second each, so the runner, its process
// handling and its table keep working. No figure is asserted: these machines are shared.
// And its readiness probe: it accepts only the process the bench started.
import { execFile } from 'node:child_process'
import { readdirSync, readFileSync } from 'node:fs'
import { createServer } from 'node:http'
import { promisify } from 'node:util'
import t from 'tap'
import { waitReady } from '../../loadtest/bench/processes.ts'
import { tempDir } from '../helper.ts'

/** An HTTP server answering /health as `instance_id`, like a Gleaner someone else started. */
async function stranger(t: { teardown(fn: () => unknown): void }, instanceId: string): Promise<string> {
  const server = createServer((_req, res) => res.end(JSON.stringify({ instance_id: instanceId })))
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => new Promise((resolve) => server.close(resolve)))
  return `http://127.0.0.1:${(server.address() as { port: number }).port}`
}

const healthProbe = { path: '/health', identify: (b: unknown) => ({ instance_id: (b as { instance_id?: string }).instance_id }) }

t.test('the readiness probe refuses a server that is not the one the bench started', async (t) => {
  const url = await stranger(t, 'someone-else')
  await t.rejects(waitReady(url, healthProbe, { instance_id: 'bench-1-1' }), /answers as .*someone-else.*not as the process the bench started/)
})

t.test('the readiness probe accepts the process it started', async (t) => {
  const url = await stranger(t, 'bench-1-2')
  await waitReady(url, healthProbe, { instance_id: 'bench-1-2' })
  t.pass('ready')
})

t.test('npm run bench runs, prints its table and writes its JSON', async (t) => {
  const out = tempDir(t, 'gleaner-bench-out-')
  const { stdout } = await promisify(execFile)(process.execPath, ['--import', 'tsx', 'loadtest/bench.ts'], {
    cwd: new URL('../..', import.meta.url).pathname,
    env: { PATH: process.env.PATH, BENCH_ROWS: '1,3', BENCH_SECONDS: '1', BENCH_OUT: out },
    timeout: 300_000 // a hang guard: rows 1 and 3 take ~30 s idle, minutes on a loaded machine
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
