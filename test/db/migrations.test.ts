// Data migrations: what they do to rows written before them, on both back ends.
import { readFileSync } from 'node:fs'
import { sql } from 'drizzle-orm'
import pino from 'pino'
import t from 'tap'
import { openDatabase } from '../../src/db/client.ts'
import { INTENTS } from '../../src/domain.ts'
import { backendEnv, backends, testConfig } from '../helper.ts'

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
      await database.query(sql`INSERT INTO conversations (id, source, messages, text_hash, status) VALUES
        (${id}, 'web-chat', '[]'::jsonb, ${`h${i}`}, 'analyzed')`)
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
