// /metrics as Prometheus sees it: promtool accepts it, and a real Prometheus scraping a
// running Gleaner sees the target up and the gleaner_* series.
import { spawn, spawnSync } from 'node:child_process'
import { writeFileSync } from 'node:fs'
import { createServer } from 'node:net'
import { join } from 'node:path'
import t from 'tap'
import { backendEnv, body, buildTestApp, conversation, listen, tempDir, waitFor } from '../helper.ts'

const has = (cmd: string) => spawnSync('sh', ['-c', `command -v ${cmd}`]).status === 0
// CI installs the prometheus package; a developer machine without it skips, CI never does
const missing = (cmd: string) => (has(cmd) ? false : process.env.CI ? false : `${cmd} not installed (apt-get install prometheus)`)

const freePort = () =>
  new Promise<number>((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port
      s.close(() => resolve(port))
    })
  })

t.test('promtool check metrics accepts /metrics after real traffic', { skip: missing('promtool') }, async (t) => {
  const app = await buildTestApp(t, await backendEnv(t, 'pglite'))
  await app.inject({ method: 'POST', url: '/api/v1/conversations', payload: conversation() })
  await app.inject({ method: 'POST', url: '/api/v1/conversations', payload: { bad: true } })
  await app.inject({ url: '/api/v1/insights' })
  await waitFor(async () => (await app.inject({ url: '/metrics' })).body.includes('gleaner_insights_stored_total{'))
  const text = (await app.inject({ url: '/metrics' })).body
  const res = spawnSync('promtool', ['check', 'metrics'], { input: text, encoding: 'utf8' })
  t.equal(res.status, 0, `promtool: ${res.stdout}${res.stderr}`)
  t.notMatch(text, /route="\/api\/v1\/conversations\/[0-9a-f-]{36}"/, 'route templates, never raw ids')
})

t.test('a real Prometheus scrapes Gleaner: target up, gleaner_queue_depth present', { skip: missing('prometheus') }, async (t) => {
  const app = await buildTestApp(t, await backendEnv(t, 'pglite'))
  const base = await listen(app)
  const dir = tempDir(t, 'gleaner-prom-')
  const promPort = await freePort()
  writeFileSync(
    join(dir, 'prometheus.yml'),
    `global: { scrape_interval: 1s, evaluation_interval: 1s }
scrape_configs:
  - job_name: gleaner
    static_configs: [{ targets: ['${new URL(base).host}'] }]
`
  )
  const prom = spawn(
    'prometheus',
    [
      `--config.file=${join(dir, 'prometheus.yml')}`,
      `--storage.tsdb.path=${join(dir, 'tsdb')}`,
      `--web.listen-address=127.0.0.1:${promPort}`
    ],
    { stdio: 'ignore' }
  )
  t.teardown(() => {
    prom.kill('SIGKILL')
  })
  const api = `http://127.0.0.1:${promPort}/api/v1`
  const targets = await waitFor(
    async () => {
      const r = await body(await fetch(`${api}/targets`))
      const tgt = r.data.activeTargets.find((x: { labels: { job: string } }) => x.labels.job === 'gleaner')
      return tgt?.health === 'up' && tgt
    },
    { intervalMs: 250, what: 'target up' }
  )
  t.equal(targets.health, 'up')
  const q = await waitFor(
    async () => {
      const r = await body(await fetch(`${api}/query?query=gleaner_queue_depth`))
      return r.data.result.length > 0 && r
    },
    { intervalMs: 250, what: 'series' }
  )
  t.equal(q.data.result[0].metric.job, 'gleaner')
})
