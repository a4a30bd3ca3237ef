// The store stage: which insight each conversation of a batch gets (analysed now, from the
// cache, or its leader's), which failed and why; then one statement for the insights, their
// queue rows, the cache write for what was analysed now and the usage the batch spent.
import type { Analyzer, ItemResult } from '../analyzers/analyzer.ts'
import type { ClaimedConversation } from '../db/conversations.ts'
import type { InsightsRepository, NewInsight } from '../db/insights.ts'
import type { UsageRepository, UsageRow } from '../db/usage.ts'
import type { WriteFragment } from '../db/write-fragment.ts'
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
  const insight = (row: ClaimedConversation, fields: InsightFields, res?: Extract<ItemResult, { ok: true }>): NewInsight => {
    const route = routeOf(row.id)
    // the spread last: on Node 20 each new key added after a spread costs ~0.6 µs (a
    // literal built as `{ ...fields, conversationId, … }` took 9 µs a conversation, bench:drain)
    return {
      conversationId: row.id,
      source: row.source,
      // who actually answered (a fallback model, a prompt variant), else the route's
      model: res?.model ?? route.model,
      promptVersion: res?.promptVersion ?? route.promptVersion,
      cached: !res,
      inputTokens: res?.tokens.input ?? 0,
      outputTokens: res?.tokens.output ?? 0,
      costUsd: res?.cost_usd ?? 0,
      ...pickInsightFields(fields)
    }
  }
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
  usage: Pick<UsageRepository, 'addFragment'>
}

/**
 * One statement: the insights stored, their queue rows ended, the fresh answers written to
 * the analysis cache and what the batch's model calls spent booked (the writes a batch
 * needs, in one round trip and one commit). Returns the conversation ids actually stored: a
 * row whose lease was lost to another instance is not. If it throws, nothing of it was
 * written: the caller books `spent` on its own (money spent stays spent).
 */
export async function storeOutcome(deps: StoreDeps, outcome: BatchOutcome, owner: string, spent: readonly UsageRow[] = []): Promise<string[]> {
  const also: WriteFragment[] = []
  const cacheWrite = deps.cache.persistFragment(outcome.fresh)
  if (cacheWrite) also.push(cacheWrite)
  if (spent.length) also.push(deps.usage.addFragment(spent))
  const { stored } = await deps.insights.storeMany(outcome.insights, owner, also)
  deps.cache.remember(outcome.fresh)
  return stored
}
