// The key admin routes through Fastify's inject: create shows the key once and it works,
// list never shows a secret, revoke by id or prefix takes it out of service, bad input is a 400.
import { Writable } from 'node:stream'
import pino from 'pino'
import t from 'tap'
import { backendEnv, backends, buildTestApp } from '../helper.ts'

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
      { ...(await backendEnv(t, backend)), AUTH: 'on', WORKER_ENABLED: 'false', KEY_CACHE_TTL_MS: '0' },
      { logger: pino({ level: 'info' }, capture) }
    )
    const admin = (await app.repos.apiKeys.create({ name: 'ops', scopes: ['admin'], tier: 'free' })).key
    const as = (key: string) => ({ authorization: `Bearer ${key}` })

    t.test('create answers the key once; it works at once with exactly its scopes', async (t) => {
      const res = await app.inject({
        method: 'POST',
        url: '/api/v1/keys',
        headers: as(admin),
        payload: { name: 'shop-widget', scopes: ['ingest', 'read'], tier: 'pro' }
      })
      t.equal(res.statusCode, 201)
      const created = res.json()
      t.match(created, { id: String, name: 'shop-widget', scopes: ['ingest', 'read'], tier: 'pro', created_at: String, revoked_at: null })
      t.match(created.key, /^gln_[A-Za-z0-9_-]{43}$/)
      t.equal(created.prefix, created.key.slice(0, 12))
      t.equal((await app.inject({ url: '/api/v1/insights', headers: as(created.key) })).statusCode, 200, 'reads with it')
      t.equal((await app.inject({ url: '/api/v1/keys', headers: as(created.key) })).statusCode, 403, 'but is no admin')
      const log = lines.join('')
      t.match(log, /"audit":"key_created"/)
      t.notOk(log.includes(created.key), 'the key is in no log line')
    })

    t.test('the tier defaults to free', async (t) => {
      const res = await app.inject({ method: 'POST', url: '/api/v1/keys', headers: as(admin), payload: { name: 'n', scopes: ['read'] } })
      t.equal(res.json().tier, 'free')
    })

    t.test('list shows every key without its secret; revoke by id or by prefix ends it', async (t) => {
      const a = (await app.inject({ method: 'POST', url: '/api/v1/keys', headers: as(admin), payload: { name: 'a', scopes: ['read'] } })).json()
      const b = (await app.inject({ method: 'POST', url: '/api/v1/keys', headers: as(admin), payload: { name: 'b', scopes: ['read'] } })).json()
      const listed = await app.inject({ url: '/api/v1/keys', headers: as(admin) })
      t.equal(listed.statusCode, 200)
      t.notOk(listed.body.includes(a.key) || listed.body.includes(b.key), 'no secret listed')
      t.ok(listed.json().items.some((k: { id: string }) => k.id === a.id))

      t.same((await app.inject({ method: 'POST', url: `/api/v1/keys/${a.id}/revoke`, headers: as(admin) })).json(), { revoked: 1 })
      t.same((await app.inject({ method: 'POST', url: `/api/v1/keys/${b.prefix}/revoke`, headers: as(admin) })).json(), { revoked: 1 })
      t.same((await app.inject({ method: 'POST', url: `/api/v1/keys/${b.prefix}/revoke`, headers: as(admin) })).json(), { revoked: 0 }, 'once')
      for (const k of [a, b]) t.equal((await app.inject({ url: '/api/v1/insights', headers: as(k.key) })).statusCode, 401, 'revoked')
      const after = (await app.inject({ url: '/api/v1/keys', headers: as(admin) })).json().items
      t.match(after.find((k: { id: string }) => k.id === a.id), { revoked_at: String })
    })

    t.test('a malformed key request is a 400 naming the field', async (t) => {
      for (const payload of [
        { name: 'x', scopes: ['root'] },
        { name: 'x', scopes: [] },
        { name: 'x', scopes: ['read', 'read'] },
        { name: '', scopes: ['read'] },
        { name: 'x', scopes: ['read'], tier: 'platinum' },
        { name: 'x', scopes: ['read'], key: 'gln_chosen_by_the_client' }
      ]) {
        const res = await app.inject({ method: 'POST', url: '/api/v1/keys', headers: as(admin), payload })
        t.equal(res.statusCode, 400, JSON.stringify(payload))
        t.equal(res.json().error.code, 'VALIDATION_FAILED')
      }
    })

    t.test('idempotency keys are scoped to the producer: one key cannot squat another\'s external ids', async (t) => {
      const make = async (name: string, producer?: string) =>
        (
          await app.inject({
            method: 'POST',
            url: '/api/v1/keys',
            headers: as(admin),
            payload: { name, scopes: ['ingest', 'read'], ...(producer ? { producer } : {}) }
          })
        ).json() as { key: string; id: string; producer: string }
      const a = await make('squatter')
      const b = await make('help-desk')
      t.equal(a.producer, a.id, "a new key is a producer of its own")
      const post = (key: string, content: string) =>
        app.inject({
          method: 'POST',
          url: '/api/v1/conversations',
          headers: as(key),
          payload: { source: 'web-chat', external_id: 'ticket-8812', messages: [{ role: 'user', content }] }
        })
      const squat = await post(a.key, 'Squatted text, not the real customer at all, please ignore.')
      t.equal(squat.statusCode, 202)
      const real = await post(b.key, 'My invoice is wrong, I was charged twice this month.')
      t.equal(real.statusCode, 202, "B's conversation is stored, not answered as A's duplicate")
      t.equal(real.json().duplicate, false)
      const stored = (await app.inject({ url: `/api/v1/conversations/${real.json().id}`, headers: as(b.key) })).json()
      t.equal(stored.messages[0].content, 'My invoice is wrong, I was charged twice this month.', "with B's own text")
      const again = await post(b.key, 'resent by the help desk')
      t.match(again.json(), { id: real.json().id, duplicate: true }, "B's own re-post is B's duplicate")
      // a rotated key ingests as its predecessor's producer: re-posts stay duplicates
      const rotated = await make('help-desk-2026', b.producer)
      t.equal(rotated.producer, b.producer)
      t.match((await post(rotated.key, 'resent after the rotation')).json(), { id: real.json().id, duplicate: true })
      const listed = (await app.inject({ url: '/api/v1/keys', headers: as(admin) })).json().items
      t.equal(listed.find((k: { id: string }) => k.id === rotated.id).producer, b.producer, 'list shows the producer')
    })
  })
}
