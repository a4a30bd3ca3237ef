// Model usage per UTC day and model: feeds the daily budget and GET /api/v1/usage.
import { and, eq, gte, lte, sql } from 'drizzle-orm'
import type { Database } from './client.ts'
import { modelUsage } from './schema.ts'

export const utcDay = (d = new Date()) => d.toISOString().slice(0, 10)

export function usageRepository(database: Database) {
  const { db } = database
  return {
    async add(model: string, u: { calls: number; input: number; output: number; costUsd: number }, day = utcDay()) {
      await db
        .insert(modelUsage)
        .values({ day, model, calls: u.calls, inputTokens: u.input, outputTokens: u.output, costUsd: u.costUsd })
        .onConflictDoUpdate({
          target: [modelUsage.day, modelUsage.model],
          set: {
            calls: sql`${modelUsage.calls} + excluded.calls`,
            inputTokens: sql`${modelUsage.inputTokens} + excluded.input_tokens`,
            outputTokens: sql`${modelUsage.outputTokens} + excluded.output_tokens`,
            costUsd: sql`${modelUsage.costUsd} + excluded.cost_usd`
          }
        })
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
