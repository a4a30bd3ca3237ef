// What the worker does when a batch or an item fails, as one table: which reason it is
// counted under, whether it uses up an attempt of the conversations (back-off, then a dead
// letter), how long the rows wait, and whether the breaker and the batch size hear of it.
// The worker only applies the plan; the rules are read, and tested, here.
import { type ItemFailureReason, ModelCallError } from '../analyzers/analyzer.ts'
import { isDatabaseUnavailable } from '../db/errors.ts'
import type { BatchFailureKind } from './batch-size.ts'

/** Values of gleaner_analysis_failures_total's reason label. */
export const ANALYSIS_FAILURE_REASONS = [
  'error',
  'timeout',
  'rate_limited',
  'rejected',
  'invalid_output',
  'internal',
  'shutdown',
  'database_unavailable',
  'dead_letter'
] as const satisfies readonly string[]
export type AnalysisFailureReason = (typeof ANALYSIS_FAILURE_REASONS)[number]

/**
 * The longest rows handed back after a model outage wait before they may be claimed again.
 * A provider's Retry-After is honoured up to this: a minute keeps a long Retry-After from
 * parking the backlog, and the breaker already stops claims while the outage lasts.
 */
export const MAX_OUTAGE_RELEASE_DELAY_MS = 60_000

/**
 * Cap of the back-off after a failed attempt (RETRY_BASE_MS doubling per attempt): an hour,
 * so even a large MAX_ATTEMPTS reaches its dead letter within a working day.
 */
export const MAX_RETRY_DELAY_MS = 3_600_000

export interface FailurePlan {
  reason: AnalysisFailureReason
  /**
   * true: the conversations' fault (or unknown), so the claim counts as an attempt: back-off,
   * and a dead letter after MAX_ATTEMPTS. false: handed back as if never claimed.
   */
  attemptUsed: boolean
  /** for attemptUsed=false: how long the rows wait before they may be claimed again */
  releaseDelayMs: number
  /** a model failure: the circuit breaker counts it */
  breakerFailure: boolean
  /** set when the adaptive batch size halves: an outage, a timeout or a rate limit says "ask less" */
  shrinkBatch: BatchFailureKind | null
  /** how loud the log line is: an operator acts on error, watches warn */
  level: 'warn' | 'error'
}

export interface FailureContext {
  /** the worker's shutdown signal had fired when the error arrived */
  aborted: boolean
  /** RETRY_BASE_MS */
  retryBaseMs: number
}

interface Rule {
  when: (err: unknown, ctx: FailureContext) => boolean
  plan: (err: unknown, ctx: FailureContext) => FailurePlan
}

// First match wins. Order matters: a model error is judged as one even during shutdown
// (the call had already failed), and only then does an abort count as the shutdown's doing.
const RULES: readonly Rule[] = [
  {
    // The model refused this input (a 4xx other than 408/409/429): asking again unchanged
    // will not help, so it is the conversations' attempt; the breaker still hears of it.
    when: (err) => err instanceof ModelCallError && err.kind === 'rejected',
    plan: () => ({ reason: 'rejected', attemptUsed: true, releaseDelayMs: 0, breakerFailure: true, shrinkBatch: null, level: 'warn' })
  },
  {
    // An outage, a timeout or a rate limit is not the conversations' fault: no attempt used,
    // back after the provider's Retry-After (or RETRY_BASE_MS), capped.
    when: (err) => err instanceof ModelCallError,
    plan: (err, ctx) => {
      const e = err as ModelCallError & { kind: BatchFailureKind }
      return {
        reason: e.kind,
        attemptUsed: false,
        releaseDelayMs: Math.min(e.retryAfterMs ?? ctx.retryBaseMs, MAX_OUTAGE_RELEASE_DELAY_MS),
        breakerFailure: true,
        shrinkBatch: e.kind,
        level: 'warn'
      }
    }
  },
  {
    // Shutdown cut the batch short: handed back at once for another instance or the next start.
    when: (_err, ctx) => ctx.aborted,
    plan: () => ({ reason: 'shutdown', attemptUsed: false, releaseDelayMs: 0, breakerFailure: false, shrinkBatch: null, level: 'warn' })
  },
  {
    // Like a model outage, a database outage is not these conversations' fault (and if the
    // database is still down, the release fails too and their leases expire).
    when: (err) => isDatabaseUnavailable(err),
    plan: (_err, ctx) => ({
      reason: 'database_unavailable',
      attemptUsed: false,
      releaseDelayMs: ctx.retryBaseMs,
      breakerFailure: false,
      shrinkBatch: null,
      level: 'warn'
    })
  },
  {
    // Anything else is a bug or a poisoned row: count the attempt, so a conversation that
    // breaks the worker every time ends as a dead letter instead of looping for ever.
    when: () => true,
    plan: () => ({ reason: 'internal', attemptUsed: true, releaseDelayMs: 0, breakerFailure: false, shrinkBatch: null, level: 'error' })
  }
]

/** How the worker handles a batch that threw `err`. */
export function classifyFailure(err: unknown, ctx: FailureContext): FailurePlan {
  for (const rule of RULES) if (rule.when(err, ctx)) return rule.plan(err, ctx)
  throw new Error('unreachable: the last rule matches everything')
}

/**
 * An item that failed alone (the rest of its batch was analysed) always uses an attempt:
 * the model answered, just not for this conversation. Its reason is what the analyzer
 * says went wrong; an analyzer that says nothing, or gives no result at all, is 'internal'.
 */
export function itemFailureReason(reason: ItemFailureReason | undefined): AnalysisFailureReason {
  return reason ?? 'internal'
}

/** Back-off before attempt `attempts + 1`: RETRY_BASE_MS doubling per attempt, capped. */
export function retryDelayMs(attempts: number, retryBaseMs: number): number {
  return Math.min(retryBaseMs * 2 ** Math.max(0, attempts - 1), MAX_RETRY_DELAY_MS)
}
