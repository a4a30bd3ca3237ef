// With OTEL_EXPORTER_OTLP_ENDPOINT set, the real server exports spans for HTTP requests,
// PostgreSQL queries and model calls to an OTLP/HTTP collector (a loopback receiver here).
import { once } from 'node:events'
import { createServer } from 'node:http'
import t from 'tap'
import { startFakeModelServer } from '../loadtest/fake-model-server.ts'
import { startServer as startServerProcess } from './e2e/server-process.ts'
import { backendEnv, conversation, waitFor } from './helper.ts'

t.test('spans for HTTP, database and model calls reach the collector', { skip: process.env.DATABASE_URL ? false : 'needs DATABASE_URL (pg spans)' }, async (t) => {
  const spans: { name: string; kind: number }[] = []
  const collector = createServer((req, res) => {
    let body = ''
    req.on('data', (c) => (body += c))
    req.on('end', () => {
      try {
        const data = JSON.parse(body)
        for (const rs of data.resourceSpans ?? []) for (const ss of rs.scopeSpans ?? []) for (const s of ss.spans ?? []) spans.push({ name: s.name, kind: s.kind })
      } catch {}
      res.writeHead(200, { 'content-type': 'application/json' }).end('{}')
    })
  })
  collector.listen(0, '127.0.0.1')
  await once(collector, 'listening')
  t.teardown(() => collector.close())
  const fake = await startFakeModelServer()
  t.teardown(() => fake.close())

  const port = (collector.address() as { port: number }).port
  const server = await startServerProcess(t, {
    ...(await backendEnv(t, 'postgres')),
    OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${port}`,
    MODEL_PROVIDER: 'openai-compatible',
    MODEL_BASE_URL: fake.url,
    MODEL_NAME: 'fake-1'
  })
  const res = await fetch(`${server.base}/api/v1/conversations`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(conversation())
  })
  t.equal(res.status, 202)
  await waitFor(() => spans.some((s) => /POST/.test(s.name) && s.kind === 2), { what: 'an HTTP server span' })
  await waitFor(() => spans.some((s) => /^pg\./.test(s.name) || /INSERT|SELECT|UPDATE/.test(s.name)), { what: 'a database span' })
  await waitFor(() => spans.some((s) => s.kind === 3 && /POST/.test(s.name)), { what: 'a model call (client) span' })
  t.pass(`spans: ${[...new Set(spans.map((s) => s.name))].slice(0, 12).join(', ')}`)
})
