// The store stage: which insight each conversation of a batch gets (analysed now, from the
// cache, or its leader's), which failed and why; then one transaction for the insights
// and their conversations' status, and the cache write for what was analysed now.
import type { Logger } from 'pino'
import type { Analyzer, ItemResult } from '../analyzers/analyzer.ts'
import type { ClaimedConversation } from '../db/conversations.ts'
import type { InsightsRepository, NewInsight } from '../db/insights.ts'
import { type InsightFields, pickInsightFields } from '../domain.ts'
import type { AnalysisCache, CachePlan } from './cache.ts'
import { type AnalysisFailureReason, itemFailureReason } from './failures.ts'

export interface ItemFailure {
  row: ClaimedConversation
  reason: AnalysisFailureReason
  error: string
}

export interface BatchOutcome {
  insights: NewInsight[]
  /** insights analysed now, for the cache */
  fresh: { key: string; model: string; promptVersion: string; insight: InsightFields }[]
  failures: ItemFailure[]
}

/**
 * Pure: the plan of the cache stage plus the analyzer's results (by id; empty when the
 * batch needed no analysis) → what to store and what failed. A follower whose leader
 * failed fails with the leader's reason: it is the same text.
 */
export function assembleOutcome(
  plan: CachePlan,
  results: ReadonlyMap<string, ItemResult>,
  analyzer: Pick<Analyzer, 'model' | 'promptVersion' | 'routeOf'>
): BatchOutcome {
  const outcome: BatchOutcome = { insights: [], fresh: [], failures: [] }
  const routeOf = (id: string) => analyzer.routeOf?.(id) ?? analyzer
  const insight = (row: ClaimedConversation, fields: InsightFields, res?: Extract<ItemResult, { ok: true }>): NewInsight => ({
    ...pickInsightFields(fields),
    conversationId: row.id,
    source: row.source,
    // who actually answered (a fallback model, a prompt variant), else the route's
    model: res?.model ?? routeOf(row.id).model,
    promptVersion: res?.promptVersion ?? routeOf(row.id).promptVersion,
    cached: !res,
    inputTokens: res?.tokens.input ?? 0,
    outputTokens: res?.tokens.output ?? 0,
    costUsd: res?.cost_usd ?? 0
  })
  const byKey = new Map<string, { fields: InsightFields } | { failure: Omit<ItemFailure, 'row'> }>()
  for (const row of plan.leaders) {
    const key = plan.keyOf.get(row.id)!
    const res = results.get(row.id)
    if (res?.ok) {
      outcome.insights.push(insight(row, res.insight, res))
      const route = routeOf(row.id)
      // a fallback's answer is not cached under the key of the model it stood in for
      if ((res.model ?? route.model) === route.model) {
        outcome.fresh.push({ key, model: route.model, promptVersion: res.promptVersion ?? route.promptVersion, insight: pickInsightFields(res.insight) })
      }
      byKey.set(key, { fields: res.insight })
    } else {
      const failure = res
        ? { reason: itemFailureReason(res.reason), error: res.error }
        : { reason: itemFailureReason(undefined), error: 'the analyzer returned no result for this conversation' }
      outcome.failures.push({ row, ...failure })
      byKey.set(key, { failure })
    }
  }
  for (const { row, insight: fields } of plan.hits) outcome.insights.push(insight(row, fields))
  for (const row of plan.followers) {
    const leader = byKey.get(plan.keyOf.get(row.id)!)
    if (leader && 'fields' in leader) outcome.insights.push(insight(row, leader.fields))
    else {
      const reason = leader && 'failure' in leader ? leader.failure.reason : itemFailureReason(undefined)
      outcome.failures.push({ row, reason, error: 'an identical conversation in the same batch failed analysis' })
    }
  }
  return outcome
}

export interface StoreDeps {
  insights: InsightsRepository
  cache: AnalysisCache
  log: Logger
}

/**
 * Stores the insights and marks their conversations analysed (one transaction), then
 * writes the cache. Returns the conversation ids actually stored: a row whose lease was
 * lost to another instance is not. A failed cache write costs only a later re-analysis.
 */
export async function storeOutcome(deps: StoreDeps, outcome: BatchOutcome, owner: string): Promise<string[]> {
  const { stored } = await deps.insights.storeMany(outcome.insights, owner)
  await deps.cache.store(outcome.fresh).catch((err) => deps.log.warn({ err: { message: (err as Error).message } }, 'cache write failed'))
  return stored
}
