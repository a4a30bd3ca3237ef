// The Analyzer interface: the local analyzer and the OpenAI-compatible model client are
// peers behind it. The worker never knows which one it talks to.

import type { InsightFields, Message } from '../domain.ts'

export interface AnalysisInput {
  id: string
  source: string
  messages: Message[]
}

export interface TokenUsage {
  input: number
  output: number
  /** of `input`, the tokens the provider served from its prompt cache (billed at its cached price) */
  cachedInput?: number
}

export type ModelFailureKind = 'error' | 'timeout' | 'rate_limited' | 'rejected'

/**
 * Why one conversation got no insight while its batch went through: the model's answer
 * held none valid for it ('invalid_output'), or the call that re-asked for it alone failed
 * (a ModelFailureKind), or the analyzer itself broke ('internal').
 */
export type ItemFailureReason = ModelFailureKind | 'invalid_output' | 'internal'

export type ItemResult =
  | {
      id: string
      ok: true
      insight: InsightFields
      tokens: TokenUsage
      cost_usd: number
      /** who answered, when not the analyzer's own model and prompt (a fallback, an A/B variant) */
      model?: string
      promptVersion?: string
    }
  /**
   * retryable=false means retrying the same input cannot help (e.g. the model keeps
   * answering nonsense). reason is counted in gleaner_analysis_failures_total; absent, the
   * worker counts 'internal'.
   */
  | { id: string; ok: false; error: string; retryable: boolean; reason?: ItemFailureReason }

export interface BatchResult {
  results: ItemResult[] // one per input item, any order
  usage: Spend & {
    /** the same split by the model that spent it, when several may have (fallbacks); absent → all the analyzer's model */
    byModel?: Record<string, Spend>
  }
}

export type Spend = TokenUsage & { cost_usd: number; calls: number }

/** A whole call failed (after the analyzer's own retries). The worker counts it for the breaker. */
export class ModelCallError extends Error {
  /**
   * What the batch spent before it failed (calls made, tokens of answers that could not be
   * used). Real spend all the same: the worker books it, or a model that answers nonsense
   * would never touch the daily budget.
   */
  usage?: BatchResult['usage']

  constructor(
    readonly kind: ModelFailureKind,
    message: string,
    readonly retryAfterMs?: number
  ) {
    super(message)
    this.name = 'ModelCallError'
  }
}

export interface Analyzer {
  /** model name: stored on every insight and part of the cache key */
  readonly model: string
  /** prompt (or lexicon) version: stored on every insight and part of the cache key */
  readonly promptVersion: string
  /** true when results cost money and count against the budget */
  readonly billable: boolean
  analyzeBatch(items: AnalysisInput[], signal?: AbortSignal): Promise<BatchResult>
  /**
   * The model and prompt a conversation is meant for (A/B prompt variants): its analysis
   * cache key and stored prompt_version. Absent → `model` and `promptVersion` for all.
   */
  routeOf?(id: string): Route
  /** each model endpoint and its breaker, for /health and /metrics; absent for a single backend */
  endpoints?(): EndpointStatus[]
  /** readiness probe (?deep=true); resolves when the backend answers */
  ping(signal?: AbortSignal): Promise<void>
  close(): Promise<void>
}

export interface Route {
  model: string
  promptVersion: string
}

export interface EndpointStatus {
  /** "primary", "fallback_1"… (bounded: a metric label) */
  name: string
  model: string
  state: 'closed' | 'open' | 'half_open'
}
