// src/server.ts with METRICS_PORT, as operators run it: the API on PORT, /metrics on
// METRICS_PORT only.
import t from 'tap'
import { backendEnv, tempDir } from '../helper.ts'
import { freePort, startServer } from './server-process.ts'

t.test('the server listens for /metrics on METRICS_PORT, and not on PORT', async (t) => {
  const metricsPort = await freePort()
  const server = await startServer(t, {
    ...(await backendEnv(t, 'pglite', { dataDir: tempDir(t) })),
    WORKER_ENABLED: 'false',
    METRICS_PORT: String(metricsPort)
  })
  const main = await fetch(`${server.base}/metrics`)
  await main.arrayBuffer()
  t.equal(main.status, 404, 'not on the public port')
  const scrape = await fetch(`http://127.0.0.1:${metricsPort}/metrics`)
  t.equal(scrape.status, 200)
  t.match(await scrape.text(), /^gleaner_http_requests_total\{method="GET",route="\/health\/ready",status="200"\} [1-9]/m, 'the server’s own figures (its readiness probes)')
})
