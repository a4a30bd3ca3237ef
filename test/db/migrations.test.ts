// Data migrations: what they do to rows written before them, on both back ends.
import { readFileSync } from 'node:fs'
import { PGlite } from '@electric-sql/pglite'
import { sql } from 'drizzle-orm'
import pg from 'pg'
import pino from 'pino'
import t from 'tap'
import { openDatabase } from '../../src/db/client.ts'
import { INTENTS } from '../../src/domain.ts'
import { type BackendName, backendEnv, backends, freshPostgresUrl, testConfig } from '../helper.ts'

const statements = (file: string) =>
  readFileSync(new URL(`../../migrations/${file}`, import.meta.url), 'utf8')
    .split('--> statement-breakpoint')
    .map((s) => s.trim())
    .filter(Boolean)

for (const backend of backends()) {
  t.test(`${backend}: 0001 maps free-form intents of prompt v1 onto the taxonomy`, async (t) => {
    const database = await openDatabase(testConfig(await backendEnv(t, backend)), pino({ level: 'silent' }))
    t.teardown(() => database.close())
    // what a v1 model could answer, and what each must become
    const cases: Array<[stored: string, expected: string]> = [
      ['refund_request', 'refund_request'],
      ['Refund Request', 'refund_request'],
      ['bug-report', 'bug_report'],
      ['request_refund', 'refund_request'],
      ['billing inquiry', 'other'],
      ['Login Issue', 'account_help'],
      ['cancel', 'cancellation'],
      ['totally made up', 'other']
    ]
    for (const [i, [stored]] of cases.entries()) {
      const id = `00000000-0000-7000-8000-${String(i).padStart(12, '0')}`
      await database.query(sql`INSERT INTO conversations (id, source, messages, text_hash) VALUES
        (${id}, 'web-chat', '[]'::jsonb, ${`h${i}`})`)
      await database.query(sql`INSERT INTO insights (conversation_id, source, sentiment, sentiment_score, intent, urgency, summary, language, model, prompt_version)
        VALUES (${id}, 'web-chat', 'neutral', 0, ${stored}, 'low', 's', 'en', 'm', 'v1')`)
      await database.query(sql`INSERT INTO analysis_cache (key, model, prompt_version, insight, expires_at)
        VALUES (${`k${i}`}, 'm', 'v1', ${JSON.stringify({ intent: stored })}::jsonb, now() + interval '1 day')`)
    }

    for (const statement of statements('0001_normalize_intents.sql')) await database.query(sql.raw(statement))

    const rows = await database.query<{ conversation_id: string; intent: string }>(
      sql`SELECT conversation_id, intent FROM insights ORDER BY conversation_id`
    )
    t.same(
      rows.map((r) => r.intent),
      cases.map(([, expected]) => expected),
      'every stored intent is on the taxonomy, mapped by name or synonym, else other'
    )
    t.ok(rows.every((r) => (INTENTS as readonly string[]).includes(r.intent)))
    const cached = await database.query<{ intent: string }>(sql`SELECT insight->>'intent' AS intent FROM analysis_cache ORDER BY key`)
    t.same(
      cached.map((r) => r.intent).sort(),
      ['refund_request'],
      'cache entries with off-taxonomy labels are dropped; valid ones stay'
    )
  })
}

/** A bare database with only `files` applied, by hand, to write rows of the shape they made. */
async function migratedBefore(t: { teardown(fn: () => unknown): void }, backend: BackendName, files: string[]) {
  let exec: (text: string, params?: unknown[]) => Promise<Record<string, unknown>[]>
  if (backend === 'postgres') {
    const client = new pg.Client({ connectionString: await freshPostgresUrl(t) })
    await client.connect()
    t.teardown(() => client.end())
    exec = async (text, params) => (await client.query(text, params)).rows
  } else {
    const db = await PGlite.create('memory://')
    t.teardown(() => db.close())
    exec = async (text, params) => (await db.query<Record<string, unknown>>(text, params)).rows
  }
  for (const file of files) for (const statement of statements(file)) await exec(statement)
  return exec
}
for (const backend of backends()) {
  t.test(`${backend}: 0003 moves work into the queue, keys into conversation_keys and attempts onto insights`, async (t) => {
    const exec = await migratedBefore(t, backend, ['0000_init.sql', '0001_normalize_intents.sql', '0002_rollups_and_erasure.sql'])
    const id = (n: number) => `00000000-0000-7000-8000-${String(n).padStart(12, '0')}`
    // the old shape: status, lease and attempts on the conversation itself
    const rows: Array<[n: number, status: string, attempts: number, externalId: string | null, skipReason: string | null]> = [
      [1, 'pending', 0, 'ticket-1', null],
      [2, 'processing', 1, 'ticket-2', null],
      [3, 'failed', 5, null, null],
      [4, 'analyzed', 1, 'ticket-4', null],
      [5, 'analyzed', 3, null, null],
      [6, 'skipped', 0, 'ticket-6', 'too_short'],
      [7, 'skipped', 0, null, null]
    ]
    for (const [n, status, attempts, externalId, skipReason] of rows) {
      await exec(
        `INSERT INTO conversations (id, source, external_id, messages, status, attempts, text_hash, skip_reason, lease_owner, lease_expires_at, last_error)
         VALUES ($1, 'web-chat', $2, '[]'::jsonb, $3, $4, $5, $6, $7, $8, $9)`,
        [id(n), externalId, status, attempts, `h${n}`, skipReason, status === 'processing' ? 'old-instance' : null, status === 'processing' ? '2030-01-01T00:00:00Z' : null, status === 'failed' ? 'model kept failing' : null]
      )
      if (status === 'analyzed') {
        await exec(
          `INSERT INTO insights (conversation_id, source, sentiment, sentiment_score, intent, urgency, summary, language, model, prompt_version)
           VALUES ($1, 'web-chat', 'negative', -0.5, 'complaint', 'low', 's', 'en', 'm', 'v2')`,
          [id(n)]
        )
      }
    }
    const rollupsBefore = await exec('SELECT sum(n)::int AS n FROM insight_rollups')

    for (const statement of statements('0003_queue_keys_producers.sql')) await exec(statement)

    const queue = await exec('SELECT conversation_id, state, attempts, lease_owner, last_error FROM conversation_queue ORDER BY conversation_id')
    t.same(
      queue.map((q) => [q.conversation_id, q.state, Number(q.attempts), q.lease_owner, q.last_error]),
      [
        [id(1), 'pending', 0, null, null],
        [id(2), 'processing', 1, 'old-instance', null],
        [id(3), 'failed', 5, null, 'model kept failing']
      ],
      'work still to do (and dead letters) is in the queue with its attempts, lease and error; nothing else is'
    )
    const keys = await exec('SELECT source, external_id, producer, conversation_id FROM conversation_keys ORDER BY conversation_id')
    t.same(
      keys.map((k) => [k.external_id, k.producer, k.conversation_id]),
      [
        ['ticket-1', '', id(1)],
        ['ticket-2', '', id(2)],
        ['ticket-4', '', id(4)],
        ['ticket-6', '', id(6)]
      ],
      'every external_id keeps its key, in the shared legacy scope of producer \'\''
    )
    const attempts = await exec('SELECT conversation_id, attempts FROM insights ORDER BY conversation_id')
    t.same(
      attempts.map((a) => [a.conversation_id, Number(a.attempts)]),
      [
        [id(4), 1],
        [id(5), 3]
      ],
      'an insight carries the attempts its conversation took'
    )
    const skipped = await exec(`SELECT id, skip_reason FROM conversations WHERE skip_reason IS NOT NULL ORDER BY id`)
    t.same(
      skipped.map((c) => [c.id, c.skip_reason]),
      [
        [id(6), 'too_short'],
        [id(7), 'prefilter']
      ],
      'every skipped conversation has a skip reason, which is what marks it skipped now'
    )
    t.same(await exec('SELECT sum(n)::int AS n FROM insight_rollups'), rollupsBefore, 'moving the attempts leaves the rollups as they were')
    const columns = await exec(`SELECT column_name FROM information_schema.columns WHERE table_name = 'conversations' ORDER BY column_name`)
    t.same(
      columns.map((c) => c.column_name),
      ['external_id', 'id', 'messages', 'metadata', 'producer', 'received_at', 'skip_reason', 'source', 'text_hash'],
      'the conversation is the write-once record'
    )
  })
}

for (const backend of backends()) {
  t.test(`${backend}: 0004 makes the existing tables the first month partitions, rows and rollup triggers intact`, async (t) => {
    const exec = await migratedBefore(t, backend, ['0000_init.sql', '0001_normalize_intents.sql', '0002_rollups_and_erasure.sql', '0003_queue_keys_producers.sql'])
    const id = (n: number) => `00000000-0000-7000-8000-${String(n).padStart(12, '0')}`
    const insight = (n: number) =>
      exec(
        `INSERT INTO insights (conversation_id, source, sentiment, sentiment_score, intent, urgency, summary, language, model, prompt_version, topics)
         VALUES ($1, 'web-chat', 'negative', -0.5, 'complaint', 'low', 's', 'en', 'm', 'v2', ARRAY['billing'])`,
        [id(n)]
      )
    for (const n of [1, 2]) {
      await exec(`INSERT INTO conversations (id, source, messages, text_hash) VALUES ($1, 'web-chat', '[]'::jsonb, $2)`, [id(n), `h${n}`])
      await insight(n)
    }
    for (const statement of statements('0004_partition_by_month.sql')) await exec(statement)

    const parts = await exec(
      `SELECT p.relname AS parent, c.relname AS part, c.relkind AS kind FROM pg_inherits i JOIN pg_class p ON p.oid = i.inhparent JOIN pg_class c ON c.oid = i.inhrelid ORDER BY 1`
    )
    const tables = parts.filter((r) => r.kind === 'r')
    const indexes = parts.filter((r) => r.kind === 'i')
    t.same(
      tables.map((r) => [r.parent, r.part]),
      [
        ['conversations', 'conversations_p_legacy'],
        ['insights', 'insights_p_legacy']
      ],
      'each old table is now the first partition of its parent'
    )
    t.equal(indexes.length, 9, 'its indexes (2 + 7) were adopted by the parent\'s, not built again')
    t.ok(
      indexes.every((r) => String(r.part).includes('_p_legacy_')),
      'the adopted indexes are the old ones'
    )
    t.same(await exec('SELECT count(*)::int AS n FROM conversations'), [{ n: 2 }], 'no row lost or copied twice')
    t.same(await exec('SELECT count(*)::int AS n FROM insights'), [{ n: 2 }])
    await exec(`INSERT INTO conversations (id, source, messages, text_hash) VALUES ($1, 'web-chat', '[]'::jsonb, 'h3')`, [id(3)])
    await insight(3)
    t.same(await exec('SELECT sum(n)::int AS n FROM insight_rollups'), [{ n: 3 }], 'an insight stored after the migration is counted once, by the trigger on the parent')
    await exec('DELETE FROM insights WHERE conversation_id = $1', [id(1)])
    t.same(await exec('SELECT sum(n)::int AS n FROM insight_topic_totals'), [{ n: 2 }], 'and an erased one is taken out once')
  })
}
