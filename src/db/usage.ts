// Model usage per UTC day and model: feeds the daily budget and GET /api/v1/usage.
import { and, eq, gte, lte, sql } from 'drizzle-orm'
import type { Database } from './client.ts'
import { modelUsage } from './schema.ts'
import { standalone, type WriteFragment } from './write-fragment.ts'

/** What one model spent in a batch. */
export interface UsageRow {
  model: string
  calls: number
  input: number
  output: number
  costUsd: number
}

export const utcDay = (d = new Date()) => d.toISOString().slice(0, 10)

export function usageRepository(database: Database) {
  const { db } = database
  return {
    /** Usage booked by a fragment the store statement carries: what a batch spent commits with its insights. */
    addFragment(rows: readonly UsageRow[], day = utcDay()): WriteFragment {
      return {
        name: 'usage',
        text: (p) =>
          `INSERT INTO model_usage (day, model, calls, input_tokens, output_tokens, cost_usd)
           SELECT ${p(1)}::date, u.model, u.calls, u.input, u.output, u.cost
           FROM unnest(${p(2)}::text[], ${p(3)}::int[], ${p(4)}::bigint[], ${p(5)}::bigint[], ${p(6)}::float8[]) AS u(model, calls, input, output, cost)
           ON CONFLICT (day, model) DO UPDATE SET calls = model_usage.calls + excluded.calls,
             input_tokens = model_usage.input_tokens + excluded.input_tokens,
             output_tokens = model_usage.output_tokens + excluded.output_tokens,
             cost_usd = model_usage.cost_usd + excluded.cost_usd`,
        params: [day, rows.map((r) => r.model), rows.map((r) => r.calls), rows.map((r) => r.input), rows.map((r) => r.output), rows.map((r) => r.costUsd)]
      }
    },

    async addMany(rows: readonly UsageRow[], day = utcDay()) {
      if (rows.length === 0) return
      const { text, params } = standalone(this.addFragment(rows, day))
      await database.raw(text, params, 'gleaner_usage_add')
    },

    /** Spend of one UTC day over every model: the budget is per deployment, not per model. */
    async costForDay(day = utcDay()): Promise<number> {
      const rows = await db
        .select({ cost: sql<number>`coalesce(sum(${modelUsage.costUsd}), 0)::float8` })
        .from(modelUsage)
        .where(eq(modelUsage.day, day))
      return Number(rows[0]?.cost ?? 0)
    },

    async report(since?: string, until?: string) {
      return db
        .select()
        .from(modelUsage)
        .where(and(since ? gte(modelUsage.day, since) : undefined, until ? lte(modelUsage.day, until) : undefined))
        .orderBy(modelUsage.day, modelUsage.model)
    }
  }
}

export type UsageRepository = ReturnType<typeof usageRepository>
