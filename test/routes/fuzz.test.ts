// Seeded random input against every route: whatever a client sends, the answer is never a
// 5xx, and the service keeps serving. The seed is fixed so a failure reproduces.
import t from 'tap'
import { backendEnv, buildTestApp, conversation } from '../helper.ts'

function prng(seed: number) {
  return () => {
    seed = (seed * 1664525 + 1013904223) >>> 0
    return seed / 2 ** 32
  }
}

const STRINGS = [
  '', ' ', 'a', 'csv', 'ndjson', 'null', 'true', '-1', '0', '1e309', 'NaN', '[]', '{}', '"', "'", '\\', '%00', '%', '%%', '😡', 'ﬀ', '\u202e',
  '2026-11-20T00:00:00Z', '0000-01-01T00:00:00Z', '9999-12-31T23:59:59Z', '2026-11-20T23:59:60Z', '2026-02-30T00:00:00Z',
  'x'.repeat(300), '<script>', "'; DROP TABLE insights; --", '00000000-0000-0000-0000-000000000000', 'positive', 'high', 'billing'
]

t.test('random input never gets a 5xx', async (t) => {
  const app = await buildTestApp(t, { ...(await backendEnv(t, 'pglite')), WORKER_ENABLED: 'false' })
  const rand = prng(20261126)
  const pick = <T>(a: readonly T[]) => a[Math.floor(rand() * a.length)]!
  const value = (depth = 0): unknown => {
    const r = rand()
    if (r < 0.3) return pick(STRINGS)
    if (r < 0.45) return Math.floor(rand() * 2e6) - 1e6
    if (r < 0.5) return rand() < 0.5
    if (r < 0.55) return null
    if (depth > 3) return 1
    if (r < 0.75) return Array.from({ length: Math.floor(rand() * 4) }, () => value(depth + 1))
    return Object.fromEntries(Array.from({ length: Math.floor(rand() * 4) }, () => [pick(['source', 'messages', 'role', 'content', 'at', 'metadata', 'external_id', pick(STRINGS)]), value(depth + 1)]))
  }
  const mutate = () => {
    const c: Record<string, unknown> = conversation()
    const key = pick(['source', 'messages', 'metadata', 'external_id', 'extra'])
    c[key] = value()
    if (rand() < 0.3) (c.messages as unknown[]) = [{ role: pick(['user', 'bot', 1]), content: value(), at: pick(STRINGS) }]
    return c
  }
  const params = ['source', 'sentiment', 'topic', 'intent', 'urgency', 'since', 'until', 'limit', 'cursor', 'format', 'deep', 'x']
  const query = () =>
    Array.from({ length: 1 + Math.floor(rand() * 3) }, () => `${pick(params)}=${encodeURIComponent(pick(STRINGS))}`).join('&')

  const fives: string[] = []
  for (let i = 0; i < 400; i++) {
    const kind = i % 6
    let res: Awaited<ReturnType<typeof app.inject>>
    if (kind === 0) res = await app.inject({ method: 'POST', url: '/api/v1/conversations', payload: mutate() })
    else if (kind === 1) res = await app.inject({ method: 'POST', url: '/api/v1/conversations/batch', payload: { conversations: [mutate(), mutate(), value()] } })
    else if (kind === 2) res = await app.inject({ url: `/api/v1/insights?${query()}` })
    else if (kind === 3) res = await app.inject({ url: `/api/v1/insights/${pick(['summary', 'export'])}?${query()}` })
    else if (kind === 4) res = await app.inject({ url: `/api/v1/conversations/${encodeURIComponent(pick(STRINGS))}` })
    else res = await app.inject({ url: `/api/v1/${pick(['usage', 'dead-letters'])}?${query()}` })
    if (res.statusCode >= 500) fives.push(`${res.statusCode} ${res.json().error?.message} (case ${i}, kind ${kind})`)
  }
  t.same(fives, [], 'no 5xx')
  const ok = await app.inject({ method: 'POST', url: '/api/v1/conversations', payload: conversation() })
  t.equal(ok.statusCode, 202, 'still serving')
})
