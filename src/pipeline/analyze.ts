// The analyze stage: one call of the analyzer for the conversations the cache could not
// answer, its results by conversation id, and how long it took (for the batch size).
import type { AnalysisInput, Analyzer, BatchResult, ItemResult } from '../analyzers/analyzer.ts'
import type { ClaimedConversation } from '../db/conversations.ts'

export interface Analysis {
  results: Map<string, ItemResult>
  usage: BatchResult['usage']
  latencyMs: number
}

/**
 * Throws what the analyzer throws (ModelCallError when the whole call failed, the abort
 * reason on shutdown): the worker's failure table decides what that means. Never called
 * with an empty list: a batch answered entirely by the cache asks the analyzer nothing.
 */
export async function analyzeLeaders(
  analyzer: Analyzer,
  rows: readonly ClaimedConversation[],
  signal: AbortSignal,
  now: () => number = () => performance.now()
): Promise<Analysis> {
  if (rows.length === 0) throw new Error('analyzeLeaders needs at least one conversation')
  const inputs: AnalysisInput[] = rows.map((r) => ({ id: r.id, source: r.source, messages: r.messages }))
  const started = now()
  const batch = await analyzer.analyzeBatch(inputs, signal)
  const latencyMs = now() - started
  return { results: new Map(batch.results.map((r) => [r.id, r])), usage: batch.usage, latencyMs }
}
