// Analyst reads through HTTP: every filter, keyset pagination while inserts continue, summary.
import t from 'tap'
import { backendEnv, backends, buildTestApp, conversation, waitFor } from '../helper.ts'

const TEXTS = [
  { content: 'My invoice is wrong, I was charged twice and I want a refund now. This is terrible!', source: 'web-chat' },
  { content: 'The app crashes every time I open settings, it is broken and useless.', source: 'email' },
  { content: 'Thank you so much, the new dashboard is wonderful and works great. Love it!', source: 'web-chat' },
  { content: 'How do I reset my password for my account? I cannot log in.', source: 'helpdesk' },
  { content: 'URGENT: the whole service is down since this morning and our team cannot access anything!', source: 'email' }
]

for (const backend of backends()) {
  t.test(backend, async (t) => {
    const app = await buildTestApp(t, await backendEnv(t, backend))
    const get = async (url: string) => app.inject({ method: 'GET', url })

    const ingest = async (n: number) => {
      const items = Array.from({ length: n }, (_, i) => {
        const x = TEXTS[i % TEXTS.length]!
        return conversation({ source: x.source, messages: [{ role: 'user', content: `${x.content} (ref ${i}-${Math.random()})` }] })
      })
      const res = await app.inject({ method: 'POST', url: '/api/v1/conversations/batch', payload: { conversations: items } })
      return res.json().results.map((r: { id: string }) => r.id) as string[]
    }
    const ids = await ingest(120)
    await waitFor(async () => (await app.repos.insights.getMany(ids)).length === 120, { what: '120 insights' })

    t.test('every filter narrows the list to matching insights only', async (t) => {
      const all = (await get('/api/v1/insights?limit=500')).json().items as Record<string, unknown>[]
      t.equal(all.length, 120)
      const sample = all[0]!
      const cases: [string, (i: Record<string, unknown>) => boolean][] = [
        ['source=email', (i) => i.source === 'email'],
        ['sentiment=negative', (i) => i.sentiment === 'negative'],
        ['urgency=high', (i) => i.urgency === 'high'],
        [`intent=${sample.intent}`, (i) => i.intent === sample.intent],
        [`topic=${(sample.topics as string[])[0]}`, (i) => (i.topics as string[]).includes((sample.topics as string[])[0]!)],
        ['source=web-chat&sentiment=positive', (i) => i.source === 'web-chat' && i.sentiment === 'positive']
      ]
      for (const [query, pred] of cases) {
        const res = await get(`/api/v1/insights?limit=500&${query}`)
        t.equal(res.statusCode, 200, query)
        const items = res.json().items as Record<string, unknown>[]
        t.equal(items.length, all.filter(pred).length, `${query}: same count as filtering by hand`)
        t.ok(items.length > 0, `${query}: the fixture has matches`)
        t.ok(items.every(pred), `${query}: only matches`)
      }
      const future = new Date(Date.now() + 3_600_000).toISOString()
      t.equal((await get(`/api/v1/insights?since=${encodeURIComponent(future)}`)).json().items.length, 0, 'since in the future')
      t.equal((await get(`/api/v1/insights?until=${encodeURIComponent(future)}&limit=500`)).json().items.length, 120, 'until in the future')
    })

    t.test('keyset pages cover everything exactly once, newest first, while inserts continue', async (t) => {
      const seen: string[] = []
      let cursor: string | null = null
      let pages = 0
      let lastCreated = Number.POSITIVE_INFINITY
      const more = ingest(40) // analysed while we page
      do {
        const res = await get(`/api/v1/insights?limit=7${cursor ? `&cursor=${cursor}` : ''}`)
        t.equal(res.statusCode, 200)
        const page = res.json()
        for (const item of page.items) {
          const created = Date.parse(item.created_at)
          if (pages === 0 && seen.length === 0) lastCreated = created
          t.ok(created <= lastCreated, 'newest first')
          lastCreated = created
          seen.push(item.conversation_id)
        }
        cursor = page.next_cursor
        pages++
      } while (cursor && pages < 100)
      await more
      t.equal(new Set(seen).size, seen.length, 'no insight repeated across pages')
      const missing = ids.filter((id) => !seen.includes(id))
      t.same(missing, [], 'no insight that existed before paging is missed')
    })

    t.test('malformed filters and cursors are 400 with a named field', async (t) => {
      for (const q of [
        'limit=0',
        'limit=501',
        'limit=-5',
        'limit=abc',
        'sentiment=furious',
        'urgency=extreme',
        'since=yesterday',
        'until=2026-13-45T00:00:00Z',
        'cursor=not-a-cursor',
        `cursor=${Buffer.from('2026-01-01T00:00:00.000Z|nope').toString('base64url')}`,
        'unknown_filter=1',
        'since=2026-11-20T00:00:00Z&until=2026-11-19T00:00:00Z'
      ]) {
        const res = await get(`/api/v1/insights?${q}`)
        t.equal(res.statusCode, 400, q)
        t.match(res.json(), { error: { code: /BAD_REQUEST|VALIDATION_FAILED/, message: String }, request_id: String }, q)
      }
    })

    t.test('summary counts what the list holds', async (t) => {
      // the paging test ingests more while it pages: compare once the worker has stored them all
      await waitFor(async () => {
        const b = await app.repos.conversations.backlogCounts()
        return b.pending + b.processing === 0
      }, { what: 'nothing left to analyse' })
      const res = await get('/api/v1/insights/summary')
      t.equal(res.statusCode, 200)
      const s = res.json()
      const total = (await app.repos.insights.list({}, 500)).items.length
      t.equal(s.total, total)
      t.equal(Object.values(s.by_sentiment as Record<string, number>).reduce((a, b) => a + b, 0), total)
      t.equal(Object.values(s.by_urgency as Record<string, number>).reduce((a, b) => a + b, 0), total)
      t.ok(s.top_topics.length > 0 && s.top_topics.length <= 10)
      t.ok(s.top_topics.every((x: { count: number }, i: number, a: { count: number }[]) => i === 0 || a[i - 1]!.count >= x.count))
      t.equal(s.by_day.length, 1)
      t.equal(s.by_day[0].day, new Date().toISOString().slice(0, 10))
      const email = (await get('/api/v1/insights/summary?source=email')).json()
      t.equal(email.total, (await get('/api/v1/insights?source=email&limit=500')).json().items.length)
      t.equal((await get('/api/v1/insights/summary?limit=5')).statusCode, 400, 'limit is not a summary parameter')
    })
  })
}
