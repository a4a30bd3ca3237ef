// Security headers on every response; CORS off unless configured.
import t from 'tap'
import { API_CSP, securityHeaders } from '../../src/plugins/security.ts'
import { backendEnv, buildTestApp } from '../helper.ts'

// helmet 8's default set, written out so an upgrade that changes it is noticed here
const HELMET_HEADERS = [
  'content-security-policy',
  'cross-origin-opener-policy',
  'cross-origin-resource-policy',
  'origin-agent-cluster',
  'referrer-policy',
  'strict-transport-security',
  'x-content-type-options',
  'x-dns-prefetch-control',
  'x-download-options',
  'x-frame-options',
  'x-permitted-cross-domain-policies',
  'x-xss-protection'
]

t.test('helmet headers on success, error and not-found responses', async (t) => {
  const app = await buildTestApp(t, { ...(await backendEnv(t, 'pglite')), WORKER_ENABLED: 'false' })
  for (const url of ['/health', '/api/v1/insights?limit=0', '/nope']) {
    const res = await app.inject({ url })
    t.equal(res.headers['x-content-type-options'], 'nosniff', url)
    t.ok(res.headers['x-frame-options'], url)
    t.ok(res.headers['strict-transport-security'], url)
    t.match(res.headers['content-security-policy'], /default-src 'none'/, url)
    t.ok(res.headers['referrer-policy'], url)
    t.ok(res.headers['x-request-id'], url)
    t.equal(res.headers['content-security-policy'], "default-src 'none';frame-ancestors 'none';base-uri 'none';form-action 'none'", url)
    t.equal(res.headers['cross-origin-resource-policy'], 'same-origin', url)
    t.equal(res.headers['x-powered-by'], undefined, url)
  }
  const apiHeaders = Object.keys(securityHeaders(API_CSP)).sort()
  t.same(apiHeaders, HELMET_HEADERS, 'every header helmet sets by default, no more')
  const cors = await app.inject({ url: '/health', headers: { origin: 'https://evil.example' } })
  t.notOk(cors.headers['access-control-allow-origin'], 'no CORS by default')
})

t.test('CORS answers only the configured origins', async (t) => {
  const app = await buildTestApp(t, { ...(await backendEnv(t, 'pglite')), WORKER_ENABLED: 'false', CORS_ORIGIN: 'https://app.example' })
  const ok = await app.inject({ url: '/health', headers: { origin: 'https://app.example' } })
  t.equal(ok.headers['access-control-allow-origin'], 'https://app.example')
  const other = await app.inject({ url: '/health', headers: { origin: 'https://evil.example' } })
  t.notOk(other.headers['access-control-allow-origin'])
})

t.test('a well-formed x-request-id is reused, a malformed one replaced', async (t) => {
  const app = await buildTestApp(t, { ...(await backendEnv(t, 'pglite')), WORKER_ENABLED: 'false' })
  t.equal((await app.inject({ url: '/health', headers: { 'x-request-id': 'abc-123' } })).headers['x-request-id'], 'abc-123')
  const bad = await app.inject({ url: '/nope', headers: { 'x-request-id': 'bad id\u0001<script>' } })
  t.match(bad.headers['x-request-id'], /^[0-9a-f-]{36}$/)
  t.equal(bad.json().request_id, bad.headers['x-request-id'], 'error bodies carry the same id')
})
