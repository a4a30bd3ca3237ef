// Batch resolution: how a batch of conversations becomes one insight each from a model that
// drops items, invalidates some and mangles whole answers. One prompt for the batch; what
// it leaves without a valid insight is asked again in smaller prompts (alone when few,
// else in halves), so one bad conversation never fails its batch. It only decides what to
// ask; `ask` (the analyzer) sends, retries and parses.
import type { InsightFields } from '../domain.ts'
import { type AnalysisInput, type ItemFailureReason, ModelCallError } from './analyzer.ts'
import type { ParsedAnswer } from './parse.ts'

/**
 * Halvings allowed when re-asking for items a model dropped or an answer it mangled. Seven
 * take BATCH_MAX's default of 100 down to single items; anything left then fails retryably.
 */
const MAX_SPLIT_DEPTH = 7
/** Leftovers this small are asked one by one: halving them saves no call. */
const ASK_ALONE_AT_MOST = 3

/** One conversation of the batch: its position, and its weight (prompt length) for the usage split. */
export type Entry = { pos: number; item: AnalysisInput; weight: number }

/**
 * What one prompt brought back. `truncated`: the answer hit max_tokens; its certain items
 * are kept and the rest are asked again in halves, on purpose, never as the same prompt.
 */
export type CallOutcome =
  | { parsed: ParsedAnswer; truncated?: boolean }
  | { unparseable: string; refused?: boolean }
  /** the provider refused the prompt as longer than its context window: smaller prompts may fit */
  | { tooLong: true; message: string }

/**
 * One prompt for `group`, retried on transport failures (and, when asked, on answers that
 * hold no insight list). Throws ModelCallError once its retries are spent.
 */
export type Ask = (group: Entry[], retryUnparseable: boolean) => Promise<CallOutcome>

export interface ItemFailure {
  error: string
  retryable: boolean
  reason: ItemFailureReason
}

export interface Resolution {
  /** by position in the batch */
  insights: Array<InsightFields | undefined>
  failures: Array<ItemFailure | undefined>
}

const NO_VALID_INSIGHT = 'the model gave no valid insight for this conversation'
const REFUSED = 'the model refused to analyse this conversation'
const TRUNCATED_ALONE = 'the answer for this conversation alone was cut off at max_tokens'
const TOO_LONG_ALONE = "this conversation alone does not fit the model's context window"

/**
 * Throws ModelCallError when the first prompt fails after its retries (the whole call
 * failed: the breaker's business), or when no answer at all could be parsed.
 */
export async function resolveBatch(entries: Entry[], ask: Ask): Promise<Resolution> {
  const n = entries.reduce((m, e) => Math.max(m, e.pos + 1), 0)
  const insights: Array<InsightFields | undefined> = new Array(n)
  const failures: Array<ItemFailure | undefined> = new Array(n)
  if (entries.length === 0) return { insights, failures }

  const fail = (group: Entry[], error: string, reason: ItemFailureReason, retryable = true) => {
    for (const e of group) if (!insights[e.pos]) failures[e.pos] = { error, retryable, reason }
  }

  /** Takes the valid insights of an answer; returns the entries still without one. */
  const accept = (group: Entry[], parsed: ParsedAnswer): Entry[] => {
    const rest: Entry[] = []
    group.forEach((e, i) => {
      const insight = parsed.byIndex.get(i)
      if (insight) insights[e.pos] = insight
      else rest.push(e)
    })
    return rest
  }

  /**
   * Re-asks for entries an answer dropped, invalidated or mangled: small leftovers one by
   * one, larger ones in halves. Calls run one after another so a batch never holds more
   * than one call in flight (WORKER_CONCURRENCY bounds batches, and so calls, per process).
   */
  const resolveLeftovers = async (group: Entry[], depth: number, split = false): Promise<void> => {
    if (group.length === 0) return
    if (group.length === 1) split = false
    if (depth > MAX_SPLIT_DEPTH) return fail(group, NO_VALID_INSIGHT, 'invalid_output')
    const parts = group.length <= ASK_ALONE_AT_MOST && !split ? group.map((e) => [e]) : halves(group)
    const next: Entry[][] = []
    let anyParsed = false
    let tooLongSeen = false
    for (const [i, part] of parts.entries()) {
      let outcome: CallOutcome
      try {
        outcome = await ask(part, false)
      } catch (err) {
        if (!(err instanceof ModelCallError)) throw err
        fail(part, err.message, err.kind, err.kind !== 'rejected')
        // An outage or rate limit will not spare the next part; a refused part might be alone in that.
        if (err.kind !== 'rejected') {
          for (const later of parts.slice(i + 1)) fail(later, err.message, err.kind)
          return
        }
        continue
      }
      if ('tooLong' in outcome) {
        // Not a broken model: the prompt was too big. Halves may fit; one conversation alone
        // will not fit next time either, so it fails for good (a dead letter, not a retry loop).
        tooLongSeen = true
        if (part.length === 1) fail(part, `${TOO_LONG_ALONE}: ${outcome.message}`, 'rejected', false)
        else next.push(part)
      } else if ('parsed' in outcome) {
        anyParsed = true
        const rest = accept(part, outcome.parsed)
        if (rest.length === 0) continue
        if (part.length === 1) fail(rest, outcome.truncated ? TRUNCATED_ALONE : NO_VALID_INSIGHT, 'invalid_output')
        else next.push(rest)
      } else if (part.length === 1) {
        fail(part, outcome.refused ? REFUSED : `the model answer could not be parsed: ${outcome.unparseable}`, 'invalid_output')
      } else {
        next.push(part)
      }
    }
    // Every part unparseable means the model is broken, not one conversation: stop spending.
    if (!anyParsed && !tooLongSeen) {
      for (const part of next) fail(part, 'the model answer could not be parsed', 'invalid_output')
      return
    }
    for (const part of next) await resolveLeftovers(part, depth + 1)
  }

  const first = await ask(entries, true)
  const leftovers = 'parsed' in first ? accept(entries, first.parsed) : entries
  if ('tooLong' in first) {
    if (entries.length === 1) fail(entries, `${TOO_LONG_ALONE}: ${first.message}`, 'rejected', false)
    else await resolveLeftovers(entries, 1, true)
  } else if ('parsed' in first && first.truncated && entries.length === 1) fail(leftovers, TRUNCATED_ALONE, 'invalid_output')
  // A refusal is about the text, not the endpoint: never a failed call for the breaker, and
  // one conversation refused alone is not asked again in the same words. It stays
  // retryable (not a dead letter at once): MAX_ATTEMPTS bounds its cost, and a later
  // attempt may meet another prompt variant or a fallback model that answers.
  else if ('unparseable' in first && first.refused && entries.length === 1) fail(entries, REFUSED, 'invalid_output')
  else await resolveLeftovers(leftovers, 1, 'parsed' in first && first.truncated === true)
  if ('unparseable' in first && !first.refused && !insights.some(Boolean)) {
    throw new ModelCallError('error', `the model answer could not be parsed: ${first.unparseable}`)
  }
  for (const e of entries) if (!insights[e.pos] && !failures[e.pos]) failures[e.pos] = { error: NO_VALID_INSIGHT, retryable: true, reason: 'invalid_output' }
  return { insights, failures }
}

function halves<T>(list: T[]): [T[], T[]] {
  const mid = Math.ceil(list.length / 2)
  return [list.slice(0, mid), list.slice(mid)]
}
