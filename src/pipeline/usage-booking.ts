// The usage stage: what a batch spent goes to the daily budget and the usage table.
import type { Analyzer, BatchResult } from '../analyzers/analyzer.ts'
import type { UsageRepository, UsageRow } from '../db/usage.ts'
import type { DailyBudget } from './budget.ts'

export interface UsageBookingDeps {
  analyzer: Pick<Analyzer, 'billable' | 'model'>
  budget: DailyBudget
  usage: UsageRepository
}

/**
 * Charges `spent` (a finished batch's usage, or what a failed batch spent before it failed)
 * to the daily budget, in memory, so the gate closes before any write; returns the rows to
 * book in the usage table, shared by every instance (the store statement carries them).
 * Free analyzers and batches that made no call charge nothing.
 */
export function chargeUsage(deps: Omit<UsageBookingDeps, 'usage'>, spent: BatchResult['usage'] | undefined): UsageRow[] {
  if (!deps.analyzer.billable || !spent || spent.calls === 0) return []
  deps.budget.add(spent.cost_usd)
  // spend is booked under the model that made it: a fallback's calls are its own
  const byModel = spent.byModel ?? { [deps.analyzer.model]: spent }
  return Object.entries(byModel)
    .filter(([, s]) => s.calls > 0)
    .map(([model, s]) => ({ model, calls: s.calls, input: s.input, output: s.output, costUsd: s.cost_usd }))
}

/** Charges `spent` and books it in a statement of its own: a batch that stores nothing. */
export async function bookUsage(deps: UsageBookingDeps, spent: BatchResult['usage'] | undefined): Promise<void> {
  await deps.usage.addMany(chargeUsage(deps, spent))
}
