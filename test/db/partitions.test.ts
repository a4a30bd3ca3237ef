// Month partitions and retention on both back ends: partitions are made ahead of time and
// take the rows of their month; retention drops whole partitions (with the conversations'
// keys and queue rows) and leaves the rollups, which it trims by their own setting.
import { sql } from 'drizzle-orm'
import pino from 'pino'
import t from 'tap'
import { v7 as uuidv7 } from 'uuid'
import { openDatabase } from '../../src/db/client.ts'
import { conversationsRepository } from '../../src/db/conversations.ts'
import { insightsRepository } from '../../src/db/insights.ts'
import { monthStart, msOfUuid, partitionsRepository, uuidAt } from '../../src/db/partitions.ts'
import { backendEnv, backends, buildTestApp, conversation, tempDir, testConfig } from '../helper.ts'

const DAY = 86_400_000

t.test('uuidAt and msOfUuid: a bound is the first UUIDv7 of its millisecond, and sorts before every id made then', async (t) => {
  const ms = Date.UTC(2027, 0, 1)
  t.equal(msOfUuid(uuidAt(ms)), ms)
  const id = uuidv7({ msecs: ms })
  t.ok(uuidAt(ms) <= id && id < uuidAt(ms + 1), 'an id made at ms is inside [uuidAt(ms), uuidAt(ms + 1))')
  t.equal(monthStart(Date.UTC(2026, 11, 31, 23, 59)), Date.UTC(2026, 11, 1))
  t.equal(monthStart(Date.UTC(2026, 11, 31), 1), Date.UTC(2027, 0, 1), 'December plus one is January')
})

for (const backend of backends()) {
  t.test(`${backend}: partitions and retention`, async (t) => {
    const database = await openDatabase(testConfig(await backendEnv(t, backend)), pino({ level: 'silent' }))
    t.teardown(() => database.close())
    const repo = partitionsRepository(database)
    const conversations = conversationsRepository(database)
    const insights = insightsRepository(database)

    /** a conversation received at `ms` (its id says so), keyed, queued and claimed, as ingest and the worker leave it */
    const storedAt = async (ms: number, externalId: string) => {
      const id = uuidv7({ msecs: ms })
      await database.query(sql`INSERT INTO conversations (id, source, external_id, messages, text_hash, received_at)
        VALUES (${id}, 'web-chat', ${externalId}, '[]'::jsonb, ${`h-${externalId}`}, ${new Date(ms)})`)
      await database.query(sql`INSERT INTO conversation_keys (source, external_id, producer, conversation_id) VALUES ('web-chat', ${externalId}, '', ${id})`)
      await database.query(sql`INSERT INTO conversation_queue (conversation_id, received_at, available_at) VALUES (${id}, ${new Date(ms)}, now())`)
      return id
    }
    const analysed = async (id: string) => {
      await conversations.claimByIds([id], 'w1', 60)
      const { stored } = await insights.storeMany(
        [
          {
            conversationId: id,
            source: 'web-chat',
            sentiment: 'negative',
            sentiment_score: -0.5,
            topics: ['billing'],
            intent: 'complaint',
            urgency: 'low',
            summary: 's',
            language: 'en',
            model: 'm',
            promptVersion: 'v',
            cached: false,
            inputTokens: 0,
            outputTokens: 0,
            costUsd: 0
          }
        ],
        'w1'
      )
      return stored.length === 1
    }
    const rollupTotal = async () => Number((await database.query<{ n: number }>(sql`SELECT coalesce(sum(n), 0)::int AS n FROM insight_rollups`))[0]!.n)

    const now = Date.now()
    const [made] = await database.query<{ id: string }>(sql`SELECT gleaner_uuidv7('2027-03-04T05:06:07.089Z')::text AS id`)
    t.match(made!.id, /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/, 'gleaner_uuidv7() makes a version 7 UUID in SQL')
    t.equal(msOfUuid(made!.id), Date.parse('2027-03-04T05:06:07.089Z'), 'whose first bits are the time given')
    const first = await repo.list()
    t.same(
      first.map((p) => [p.table, p.from]),
      [
        ['conversations', null],
        ['insights', null]
      ],
      'after migration each table has one partition, from the beginning'
    )
    t.equal(first[0]!.to, uuidAt(monthStart(now, 1)), '...to the end of this month')

    const created = await repo.ensureAhead(now, 2)
    const months = [1, 2].map((m) => {
      const d = new Date(monthStart(now, m))
      return `${d.getUTCFullYear()}${String(d.getUTCMonth() + 1).padStart(2, '0')}`
    })
    t.same(created, [...months.map((m) => `conversations_p${m}`), ...months.map((m) => `insights_p${m}`)], 'the next two months, for both tables')
    t.same(await repo.ensureAhead(now, 2), [], 'made once')

    const nextMonth = await storedAt(monthStart(now, 1) + DAY, 'next-month')
    t.ok(await analysed(nextMonth), 'a conversation and its insight of next month go in')
    const [{ part }] = (await database.query<{ part: string }>(sql`SELECT tableoid::regclass::text AS part FROM conversations WHERE id = ${nextMonth}`)) as [
      { part: string }
    ]
    t.equal(part, `conversations_p${months[0]}`, 'into its month’s partition')
    await t.rejects(storedAt(monthStart(now, 4) + DAY, 'too-far'), 'a month without a partition takes no rows (hence partitions ahead of time)')

    // months on: this month's rows are old, next month's are not
    const later = monthStart(now, 3) + 5 * DAY
    await repo.ensureAhead(later, 2)
    const old = await storedAt(now, 'this-month')
    t.ok(await analysed(old))
    const dead = await storedAt(now + 1, 'dead-letter')
    const keep = await storedAt(later - DAY, 'recent')
    const totalBefore = await rollupTotal()

    const cutoff = monthStart(now, 1) + 10 * DAY // after this month's end, inside next month's
    const { dropped, keys, queued } = await repo.dropBefore(cutoff)
    t.same(dropped.sort(), ['conversations_p_legacy', 'insights_p_legacy'], 'only partitions wholly before the cutoff go')
    t.equal(keys, 2, 'with the idempotency keys of their conversations')
    t.equal(queued, 1, 'and their queue rows (a dead letter older than retention goes too)')
    t.equal(await conversations.getById(old), null, 'the old conversation is gone')
    t.equal(await conversations.getById(dead), null)
    t.equal(await insights.getByConversation(old), null, 'its insight too')
    t.equal((await conversations.getById(nextMonth))?.status, 'analyzed', 'next month’s, newer than the cutoff’s month, stays')
    t.equal((await conversations.getById(keep))?.status, 'pending')
    t.equal(await rollupTotal(), totalBefore, 'dropping partitions leaves the rollups: summaries reach further back than the rows')
    t.equal((await conversations.findByKeys([{ producer: '', source: 'web-chat', externalId: 'this-month' }])).size, 0, 'the key of a dropped conversation is free again')
    t.equal((await conversations.findByKeys([{ producer: '', source: 'web-chat', externalId: 'next-month' }])).size, 1, 'a kept one keeps its key')
    t.same(await repo.dropBefore(cutoff), { dropped: [], keys: 0, queued: 0 }, 'nothing more to drop')

    const firstDay = new Date(monthStart(now, 1) + DAY).toISOString().slice(0, 10)
    const trimmed = await repo.trimRollups(new Date(monthStart(now, 1) + 2 * DAY).toISOString().slice(0, 10))
    t.ok(trimmed > 0, `rollup rows before the rollup cutoff deleted (${trimmed})`)
    const days = await database.query<{ day: string }>(sql`SELECT DISTINCT day::text AS day FROM insight_rollups ORDER BY 1`)
    t.notOk(
      days.some((d) => d.day <= firstDay),
      'no rollup day before the cutoff is left'
    )
  })

  t.test(`${backend}: an app runs the upkeep at start: partitions ahead, and retention with RETENTION_DAYS`, async (t) => {
    // a folder for PGlite: the second app opens the same database
    const env = await backendEnv(t, backend, backend === 'pglite' ? { dataDir: tempDir(t) } : {})
    const app = await buildTestApp(t, { ...env, WORKER_ENABLED: 'false' })
    const { id } = (await app.inject({ method: 'POST', url: '/api/v1/conversations', payload: conversation() })).json()
    const names = (await app.repos.partitions.list()).map((p) => p.name)
    t.ok(names.some((n) => n.startsWith('conversations_p2')), `next months' partitions made at start (${names.join(', ')})`)
    await app.close()
    // the same database a year on, keeping 30 days
    const yearOn = Date.now() + 365 * DAY
    const later = await buildTestApp(t, { ...env, WORKER_ENABLED: 'false', RETENTION_DAYS: '30' }, { now: () => yearOn })
    t.equal((await later.inject({ url: `/api/v1/conversations/${id}` })).statusCode, 404, 'a year-old conversation is gone with RETENTION_DAYS=30')
    const left = await later.repos.partitions.list()
    t.ok(
      left.every((p) => msOfUuid(p.to) > yearOn - 30 * DAY),
      'every partition left holds rows newer than the cutoff'
    )
    t.ok(
      left.some((p) => msOfUuid(p.to) > monthStart(yearOn, 2)),
      'and the months ahead of the (moved) clock exist'
    )
  })
}
