// The OpenAPI document is generated from the route schemas and lists every contract route.
import t from 'tap'
import { backendEnv, buildTestApp } from '../helper.ts'

const CONTRACT = [
  ['post', '/api/v1/conversations'],
  ['post', '/api/v1/conversations/batch'],
  ['get', '/api/v1/conversations/{id}'],
  ['get', '/api/v1/insights'],
  ['get', '/api/v1/insights/summary'],
  ['get', '/api/v1/insights/stream'],
  ['get', '/api/v1/usage'],
  ['get', '/api/v1/dead-letters'],
  ['post', '/api/v1/dead-letters/{id}/retry'],
  ['get', '/health'],
  ['get', '/health/ready']
] as const

t.test('every contract route is in /docs/json with its schemas', async (t) => {
  const app = await buildTestApp(t, { ...(await backendEnv(t, 'pglite')), WORKER_ENABLED: 'false' })
  const res = await app.inject({ url: '/docs/json' })
  t.equal(res.statusCode, 200)
  const doc = res.json()
  t.equal(doc.openapi, '3.1.0')
  for (const [method, path] of CONTRACT) {
    t.ok(doc.paths[path]?.[method], `${method.toUpperCase()} ${path}`)
  }
  const ingest = doc.paths['/api/v1/conversations'].post
  t.ok(ingest.requestBody.content['application/json'].schema.properties.messages, 'request schema included')
  t.ok(ingest.responses['202'], '202 response documented')
  t.equal((await app.inject({ url: '/docs' })).statusCode < 400, true, 'the UI is served')
})
