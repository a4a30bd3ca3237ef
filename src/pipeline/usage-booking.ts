// The usage stage: what a batch spent goes to the daily budget and the usage table.
import type { Analyzer, BatchResult } from '../analyzers/analyzer.ts'
import type { UsageRepository } from '../db/usage.ts'
import type { DailyBudget } from './budget.ts'

export interface UsageBookingDeps {
  analyzer: Pick<Analyzer, 'billable' | 'model'>
  budget: DailyBudget
  usage: UsageRepository
}

/**
 * Books `spent` (a finished batch's usage, or what a failed batch spent before it failed).
 * The budget first, in memory, so the gate closes even when the write then fails; then
 * the usage table, shared by every instance. Free analyzers and batches that made no call
 * book nothing.
 */
export async function bookUsage(deps: UsageBookingDeps, spent: BatchResult['usage'] | undefined): Promise<void> {
  if (!deps.analyzer.billable || !spent || spent.calls === 0) return
  deps.budget.add(spent.cost_usd)
  // spend is booked under the model that made it: a fallback's calls are its own
  const byModel = spent.byModel ?? { [deps.analyzer.model]: spent }
  for (const [model, s] of Object.entries(byModel)) {
    if (s.calls === 0) continue
    await deps.usage.add(model, { calls: s.calls, input: s.input, output: s.output, costUsd: s.cost_usd })
  }
}
