// API keys over HTTP: the auth matrix for every route, revocation, and no secret in logs.
import { Writable } from 'node:stream'
import pino from 'pino'
import t from 'tap'
import { backendEnv, backends, buildTestApp, conversation } from '../helper.ts'

const ROUTES: { method: 'GET' | 'POST'; url: string; scope: 'ingest' | 'read' | 'admin'; body?: () => object }[] = [
  { method: 'POST', url: '/api/v1/conversations', scope: 'ingest', body: () => conversation() },
  { method: 'POST', url: '/api/v1/conversations/batch', scope: 'ingest', body: () => ({ conversations: [conversation()] }) },
  { method: 'GET', url: '/api/v1/conversations/01a21707-d7b5-7224-9b79-4b49e121f239', scope: 'read' },
  { method: 'GET', url: '/api/v1/insights', scope: 'read' },
  { method: 'GET', url: '/api/v1/insights/summary', scope: 'read' },
  { method: 'GET', url: '/api/v1/usage', scope: 'admin' },
  { method: 'GET', url: '/api/v1/dead-letters', scope: 'admin' },
  { method: 'POST', url: '/api/v1/dead-letters/01a21707-d7b5-7224-9b79-4b49e121f239/retry', scope: 'admin', body: () => ({}) },
  { method: 'GET', url: '/api/v1/keys', scope: 'admin' },
  { method: 'POST', url: '/api/v1/keys', scope: 'admin', body: () => ({ name: 'made-in-a-test', scopes: ['read'] }) },
  { method: 'POST', url: '/api/v1/keys/gln_nothing_/revoke', scope: 'admin', body: () => ({}) }
]

for (const backend of backends()) {
  t.test(backend, async (t) => {
    const lines: string[] = []
    const capture = new Writable({
      write(chunk, _enc, cb) {
        lines.push(chunk.toString())
        cb()
      }
    })
    const app = await buildTestApp(
      t,
      { ...(await backendEnv(t, backend)), AUTH: 'on', WORKER_ENABLED: 'false', KEY_CACHE_TTL_MS: '200', RATE_LIMIT_ANONYMOUS: '100000', RATE_LIMIT_FREE: '100000', AUTH_FAILURES_PER_WINDOW: '100000' },
      { logger: pino({ level: 'debug' }, capture) }
    )
    const keys = {
      ingest: (await app.repos.apiKeys.create({ name: 'producer', scopes: ['ingest'], tier: 'free' })).key,
      read: (await app.repos.apiKeys.create({ name: 'analyst', scopes: ['read'], tier: 'free' })).key,
      admin: (await app.repos.apiKeys.create({ name: 'ops', scopes: ['admin'], tier: 'free' })).key
    }
    const call = (r: (typeof ROUTES)[number], auth?: string) =>
      app.inject({
        method: r.method,
        url: r.url,
        headers: auth === undefined ? {} : { authorization: auth },
        ...(r.body ? { payload: r.body() } : {})
      })

    t.test('every route: 401 without a key or with an unknown one, 403 without the scope, allowed with it', async (t) => {
      for (const r of ROUTES) {
        const name = `${r.method} ${r.url}`
        for (const auth of [undefined, 'Bearer gln_not_a_real_key_000000000', 'Basic dXNlcjpwYXNz', 'Bearer', `Token ${keys[r.scope]}`]) {
          const res = await call(r, auth)
          t.equal(res.statusCode, 401, `${name} with ${auth ?? 'no header'}`)
          t.equal(res.json().error.code, 'UNAUTHORIZED')
        }
        for (const other of ['ingest', 'read', 'admin'] as const) {
          if (other === r.scope) continue
          const res = await call(r, `Bearer ${keys[other]}`)
          t.equal(res.statusCode, 403, `${name} with a ${other} key`)
          t.equal(res.json().error.code, 'FORBIDDEN')
        }
        const ok = await call(r, `Bearer ${keys[r.scope]}`)
        t.ok(ok.statusCode < 400 || ok.statusCode === 404, `${name} with a ${r.scope} key → ${ok.statusCode}`)
      }
    })

    t.test('operators need no key', async (t) => {
      for (const url of ['/health', '/health/ready', '/metrics']) {
        t.equal((await app.inject({ url })).statusCode, 200, url)
      }
    })

    t.test('a revoked key stops working within the cache TTL', async (t) => {
      const { key, record } = await app.repos.apiKeys.create({ name: 'temp', scopes: ['read'], tier: 'free' })
      const get = () => app.inject({ url: '/api/v1/insights', headers: { authorization: `Bearer ${key}` } })
      t.equal((await get()).statusCode, 200)
      t.equal(await app.repos.apiKeys.revoke(record.id), 1)
      await new Promise((r) => setTimeout(r, 300))
      t.equal((await get()).statusCode, 401)
    })

    t.test('no key or authorization header ever reaches the logs; refusals are audited', async (t) => {
      await app.inject({ url: '/api/v1/insights', headers: { authorization: `Bearer ${keys.ingest}` } })
      await app.inject({ url: '/api/v1/insights', headers: { authorization: 'Bearer gln_guess_guess_guess_guess' } })
      const all = lines.join('')
      for (const k of Object.values(keys)) t.notOk(all.includes(k), 'key absent from logs')
      t.notOk(all.includes('gln_guess_guess'), 'a guessed key is not logged either')
      t.match(all, /"audit":"auth_denied"/)
    })
  })
}
