// Admin routes through Fastify's inject, on both back ends: the usage report and its day
// filters, dead-letter pagination, and retrying a dead letter.
import { sql } from 'drizzle-orm'
import t from 'tap'
import { backendEnv, backends, buildTestApp, conversation } from '../helper.ts'

type TestApp = Awaited<ReturnType<typeof buildTestApp>>

/** Stores n pending conversations (the worker is off, so they stay pending). */
async function pendingConversations(app: TestApp, n: number): Promise<string[]> {
  const res = await app.inject({
    method: 'POST',
    url: '/api/v1/conversations/batch',
    payload: { conversations: Array.from({ length: n }, () => conversation()) }
  })
  return res.json().results.map((r: { id: string }) => r.id)
}

/**
 * The app is shared by the tests of a back end: rows a test turns into dead letters are put
 * back to pending when it ends, pass or fail, so the next test's pages hold only its own.
 */
function releaseAtTeardown(t: { teardown(fn: () => unknown): void }, app: TestApp, ids: string[]) {
  t.teardown(() =>
    app.database.query(sql`UPDATE conversation_queue SET state = 'pending', attempts = 0, lease_owner = NULL WHERE conversation_id IN (${sql.join(
      ids.map((id) => sql`${id}`),
      sql`, `
    )})`)
  )
}

/** Walks every page of the dead letters; returns the ids in order and the number of pages. */
async function allDeadLetterPages(app: TestApp, limit: number) {
  const ids: string[] = []
  let cursor: string | null = null
  let pages = 0
  do {
    const url: string = `/api/v1/dead-letters?limit=${limit}${cursor ? `&cursor=${cursor}` : ''}`
    const res = await app.inject({ url })
    if (res.statusCode !== 200) throw new Error(`${url} answered ${res.statusCode}: ${res.body}`)
    const body = res.json()
    ids.push(...body.items.map((i: { id: string }) => i.id))
    cursor = body.next_cursor
    pages++
  } while (cursor && pages < 100)
  return { ids, pages }
}

for (const backend of backends()) {
  t.test(backend, async (t) => {
    // the worker is off: these tests set the rows up themselves and nothing moves them
    const app = await buildTestApp(t, { ...(await backendEnv(t, backend)), WORKER_ENABLED: 'false' })

    t.test('usage reports calls, tokens and cost per day and model, filtered by since and until', async (t) => {
      const usage = app.repos.usage
      await usage.addMany([{ model: 'model-a', calls: 1, input: 100, output: 10, costUsd: 0.001 }], '2026-01-01')
      await usage.addMany([{ model: 'model-a', calls: 2, input: 200, output: 20, costUsd: 0.002 }], '2026-01-02')
      await usage.addMany([{ model: 'model-b', calls: 3, input: 300, output: 30, costUsd: 0.003 }], '2026-01-02')
      await usage.addMany([{ model: 'model-a', calls: 4, input: 400, output: 40, costUsd: 0.004 }], '2026-01-03')
      // a second add on the same day and model accumulates
      await usage.addMany([{ model: 'model-a', calls: 1, input: 1, output: 1, costUsd: 0.0000004 }], '2026-01-03')

      const all = await app.inject({ url: '/api/v1/usage' })
      t.equal(all.statusCode, 200)
      t.same(
        all.json().days.map((d: { day: string; model: string }) => `${d.day}/${d.model}`),
        ['2026-01-01/model-a', '2026-01-02/model-a', '2026-01-02/model-b', '2026-01-03/model-a']
      )
      t.match(all.json().days[3], { calls: 5, input_tokens: 401, output_tokens: 41, cost_usd: 0.004 })
      t.same(all.json().totals, { calls: 11, input_tokens: 1001, output_tokens: 101, cost_usd: 0.01 })
      t.match(all.json().budget, { daily_limit_usd: null, remaining_today_usd: null, exhausted: false, resets_at: String })

      const one = (await app.inject({ url: '/api/v1/usage?since=2026-01-02&until=2026-01-02' })).json()
      t.same(
        one.days.map((d: { model: string }) => d.model),
        ['model-a', 'model-b'],
        'since and until are inclusive'
      )
      t.same(one.totals, { calls: 5, input_tokens: 500, output_tokens: 50, cost_usd: 0.005 })

      const since = (await app.inject({ url: '/api/v1/usage?since=2026-01-02' })).json()
      t.same(
        since.days.map((d: { day: string }) => d.day),
        ['2026-01-02', '2026-01-02', '2026-01-03']
      )
      const until = (await app.inject({ url: '/api/v1/usage?until=2026-01-01' })).json()
      t.same(
        until.days.map((d: { day: string }) => d.day),
        ['2026-01-01']
      )
      const none = (await app.inject({ url: '/api/v1/usage?since=2026-01-03&until=2026-01-01' })).json()
      t.same(none.days, [], 'since after until is an empty report, not an error')
      t.same(none.totals, { calls: 0, input_tokens: 0, output_tokens: 0, cost_usd: 0 })
    })

    t.test('a malformed day in the usage filters is a 400 naming it', async (t) => {
      const cases: [string, string][] = [
        ['since=2026-02-30', 'BAD_REQUEST'],
        ['until=2026-13-01', 'BAD_REQUEST'],
        ['since=yesterday', 'VALIDATION_FAILED'],
        ['until=20260101', 'VALIDATION_FAILED'],
        ['since=2026-1-1', 'VALIDATION_FAILED'],
        ['day=2026-01-01', 'VALIDATION_FAILED']
      ]
      for (const [query, code] of cases) {
        const res = await app.inject({ url: `/api/v1/usage?${query}` })
        t.equal(res.statusCode, 400, query)
        t.match(res.json(), { error: { code, message: String }, request_id: String }, query)
      }
      t.match((await app.inject({ url: '/api/v1/usage?since=2026-02-30' })).json().error.message, /2026-02-30/)
    })

    t.test('dead letters page newest failure first, every one exactly once', async (t) => {
      const ids = await pendingConversations(app, 7)
      releaseAtTeardown(t, app, ids)
      // failed in one statement, so all seven share one failure time and only the id orders
      // them; the time is cut to milliseconds, as the worker writes it (JS Date)
      await app.database.query(sql`
        UPDATE conversation_queue SET state = 'failed', attempts = 5, last_error = 'the model gave no valid insight',
          updated_at = date_trunc('milliseconds', now())
        WHERE conversation_id IN (${sql.join(
          ids.map((id) => sql`${id}`),
          sql`, `
        )})`)
      const first = (await app.inject({ url: '/api/v1/dead-letters?limit=3' })).json()
      t.equal(first.items.length, 3)
      t.match(first.items[0], {
        id: String,
        source: 'web-chat',
        external_id: String,
        attempts: 5,
        last_error: 'the model gave no valid insight',
        received_at: String,
        failed_at: String
      })
      t.type(first.next_cursor, 'string')

      const { ids: seen, pages } = await allDeadLetterPages(app, 3)
      t.equal(pages, 3, '7 at 3 a page is 3 pages')
      t.same(seen, [...ids].sort().reverse(), 'every dead letter once, newest (here: highest id) first')

      const exact = await allDeadLetterPages(app, 7)
      t.equal(exact.pages, 1, 'a page that holds the rest has no next cursor')
      t.equal(exact.ids.length, 7)
    })

    // PostgreSQL's clock has microseconds and cursors carry milliseconds: updated_at is
    // written truncated so rows failed in one statement still page exactly once
    t.test(
      'dead letters whose leases expired on the last attempt page every one exactly once',
      async (t) => {
        const ids = await pendingConversations(app, 5)
        releaseAtTeardown(t, app, ids)
        // a crashed instance held them on their last attempt: the sweep turns them into dead letters
        await app.database.query(sql`
          UPDATE conversation_queue SET state = 'processing', attempts = 5, lease_owner = 'crashed',
            lease_expires_at = now() - interval '1 minute'
          WHERE conversation_id IN (${sql.join(
            ids.map((id) => sql`${id}`),
            sql`, `
          )})`)
        t.same(await app.repos.conversations.reclaimExpired(5), { requeued: 0, failed: 5 })
        const { ids: seen } = await allDeadLetterPages(app, 2)
        t.same([...seen].sort(), [...ids].sort())
      }
    )

    t.test('a malformed dead-letter page request is a 400', async (t) => {
      for (const query of ['limit=0', 'limit=501', 'limit=ten', 'cursor=not-a-cursor', `cursor=${Buffer.from('x|y').toString('base64url')}`]) {
        const res = await app.inject({ url: `/api/v1/dead-letters?${query}` })
        t.equal(res.statusCode, 400, query)
        t.match(res.json(), { error: { code: /BAD_REQUEST|VALIDATION_FAILED/ } }, query)
      }
    })

    t.test('retrying a dead letter puts it back to pending with fresh attempts', async (t) => {
      const [id] = await pendingConversations(app, 1)
      releaseAtTeardown(t, app, [id!])
      await app.database.query(sql`UPDATE conversation_queue SET state = 'failed', attempts = 5, last_error = 'boom' WHERE conversation_id = ${id}`)
      const res = await app.inject({ method: 'POST', url: `/api/v1/dead-letters/${id}/retry` })
      t.equal(res.statusCode, 202)
      t.same(res.json(), { id, status: 'pending' })
      const row = await app.repos.conversations.getById(id!)
      t.equal(row?.status, 'pending')
      t.equal(row?.attempts, 0)
      const listed = await allDeadLetterPages(app, 50)
      t.notOk(listed.ids.includes(id!), 'no longer a dead letter')
      const again = await app.inject({ method: 'POST', url: `/api/v1/dead-letters/${id}/retry` })
      t.equal(again.statusCode, 404, 'a pending conversation is not a dead letter')
    })

    t.test('retrying an unknown or malformed dead-letter id is a 404', async (t) => {
      const [pending] = await pendingConversations(app, 1)
      for (const id of ['0190a0b0-0000-7000-8000-000000000000', 'not-a-uuid', '1', pending]) {
        const res = await app.inject({ method: 'POST', url: `/api/v1/dead-letters/${id}/retry` })
        t.equal(res.statusCode, 404, String(id))
        t.match(res.json(), { error: { code: 'NOT_FOUND' }, request_id: String })
      }
    })
  })
}
