// Group commit: concurrent single inserts share statements, never exceed the concurrency,
// each caller gets its own row's result, and a failed statement fails only its group.
import t from 'tap'
import type { IngestResult, NewConversation } from '../../src/db/conversations.ts'
import { GroupInserter } from '../../src/db/group-insert.ts'
import { backendEnv, backends, buildTestApp, conversation } from '../helper.ts'

const row = (n: number): NewConversation => ({ producer: '', source: `s${n}`, messages: [], textHash: String(n), status: 'pending' })

t.test('concurrent inserts are grouped, in order, within the concurrency bound', async (t) => {
  const groups: number[] = []
  let inFlight = 0
  let maxInFlight = 0
  const g = new GroupInserter(async (rows) => {
    inFlight++
    maxInFlight = Math.max(maxInFlight, inFlight)
    groups.push(rows.length)
    await new Promise((r) => setTimeout(r, 5))
    inFlight--
    return rows.map((r) => ({ id: r.source, status: 'pending', duplicate: false, receivedAt: new Date() }) as IngestResult)
  }, 2, 50)
  const results = await Promise.all(Array.from({ length: 300 }, (_, i) => g.insert(row(i))))
  t.same(
    results.map((r) => r.id),
    Array.from({ length: 300 }, (_, i) => `s${i}`),
    'each caller gets its own row'
  )
  t.ok(maxInFlight <= 2, `at most 2 statements in flight (saw ${maxInFlight})`)
  t.ok(groups.length < 300 / 5, `grouped into ${groups.length} statements`)
  t.ok(Math.max(...groups) <= 50, 'no group over maxRows')
})

t.test('a failed statement rejects its own group only', async (t) => {
  let call = 0
  const g = new GroupInserter(async (rows) => {
    call++
    await new Promise((r) => setTimeout(r, 5))
    if (call === 1) throw new Error('database down')
    return rows.map((r) => ({ id: r.source, status: 'pending', duplicate: false, receivedAt: new Date() }) as IngestResult)
  }, 1)
  const first = g.insert(row(1))
  first.catch(() => {}) // asserted below
  await new Promise((r) => setImmediate(r)) // the first group leaves alone
  const later = [g.insert(row(2)), g.insert(row(3))]
  await t.rejects(first, /database down/)
  t.same((await Promise.all(later)).map((r) => r.id), ['s2', 's3'])
})

for (const backend of backends()) {
  t.test(`${backend}: the same key posted concurrently is stored once`, async (t) => {
    const app = await buildTestApp(t, { ...(await backendEnv(t, backend)), WORKER_ENABLED: 'false' })
    const c = conversation()
    const res = await Promise.all(Array.from({ length: 20 }, () => app.inject({ method: 'POST', url: '/api/v1/conversations', payload: c })))
    const ids = new Set(res.map((r) => r.json().id))
    t.equal(ids.size, 1, 'one conversation')
    t.equal(res.filter((r) => r.statusCode === 202).length, 1, 'one 202')
    t.equal(res.filter((r) => r.statusCode === 200 && r.json().duplicate).length, 19, 'the rest are duplicates')
  })
}
