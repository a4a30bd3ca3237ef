// The model client: any OpenAI-compatible chat API (xAI Grok, OpenAI, vLLM, Ollama) behind
// the Analyzer interface. It composes three parts, each its own module:
//   model-transport.ts   HTTP to the endpoint: one attempt, back-off, ping, redaction
//   batch-resolution.ts  which prompts a batch needs: the batch, then leftovers re-asked
//   model-usage.ts       tokens and cost, charged to the conversations they were for
// What stays here is the chat protocol: the request body built from a prompt template,
// the retry loop around the transport, and reading a completion into insights (parse.ts).
import type { Logger } from 'pino'
import type { Config } from '../config.ts'
import type { Metrics } from '../metrics.ts'
import { maskPii, newPiiNumbering, typedPlaceholder } from '../pii.ts'
import { type AnalysisInput, type Analyzer, type BatchResult, type ItemResult, ModelCallError, type TokenUsage } from './analyzer.ts'
import { type Ask, type CallOutcome, type Entry, type Resolution, resolveBatch } from './batch-resolution.ts'
import { createModelTransport, type ModelTransport, realClock, type TransportClock } from './model-transport.ts'
import { costOf, priceOf, UsageLedger } from './model-usage.ts'
import { type AnswerAdjustments, type ParsedAnswer, parseInsightsAnswer } from './parse.ts'
import { CURRENT_PROMPT_VERSION, estimateTokens, type PromptTemplate, promptFor, tokensOfChars } from './prompts.ts'
import { responseFormatFor } from './response-format.ts'

export interface OpenAICompatibleDeps {
  metrics: Metrics
  logger: Logger
  /** sleep and jitter; tests pass their own to check back-offs without waiting */
  clock?: TransportClock
  /** the endpoint; by default one built from MODEL_BASE_URL */
  transport?: ModelTransport
  /** the prompt; by default the current version with SUMMARY_LANGUAGE */
  prompt?: PromptTemplate
}

/** max_tokens for the wrapper around the items ({"insights": [...]}) and a little slack. */
const ANSWER_OVERHEAD_TOKENS = 64

/**
 * How OpenAI, xAI, vLLM, Ollama and Anthropic's compatibility layer word a prompt longer
 * than the context window (a 400, sometimes a 413). Matched on the refusal's message, which
 * is a few hundred characters of the provider's text, never client input.
 */
const CONTEXT_EXCEEDED_RE = /context_length_exceeded|maximum context length|maximum prompt length|context window|prompt is too long|too many tokens/i

export function createOpenAICompatibleAnalyzer(config: Config, deps: OpenAICompatibleDeps): Analyzer {
  const { metrics } = deps
  const log = deps.logger.child({ component: 'model-client' })
  if (!config.MODEL_BASE_URL || !config.MODEL_NAME) {
    throw new Error('MODEL_BASE_URL and MODEL_NAME are required for the openai-compatible analyzer')
  }
  const model = config.MODEL_NAME
  const prompt = deps.prompt ?? promptFor(CURRENT_PROMPT_VERSION, { summaryLanguage: config.SUMMARY_LANGUAGE })
  const price = priceOf(config, model)
  const transport = deps.transport ?? createModelTransport(config, deps.clock ?? realClock)
  const maxTokens = config.MODEL_MAX_INPUT_TOKENS_PER_CONVERSATION
  const responseFormat = responseFormatFor(config.MODEL_RESPONSE_FORMAT)
  const systemTokens = estimateTokens(prompt.system)
  const maxOutputTokens = (n: number) => Math.min(config.MODEL_MAX_OUTPUT_TOKENS, ANSWER_OVERHEAD_TOKENS + n * config.MODEL_OUTPUT_TOKENS_PER_ITEM)

  /** The conversation as the model may see it: with REDACT_PII on, no personal data leaves the process. */
  const outbound = (item: AnalysisInput): AnalysisInput => {
    if (config.REDACT_PII !== 'on') return item
    const numbering = newPiiNumbering()
    const messages = item.messages.map((m) => ({
      ...m,
      content: maskPii(m.content, {
        numbering,
        replace: (span, n) => {
          metrics.piiRedactions.inc({ kind: span.kind })
          return typedPlaceholder(span, n)
        }
      })
    }))
    return { ...item, messages }
  }

  function analyzeBatch(items: AnalysisInput[], signal?: AbortSignal): Promise<BatchResult> {
    const entries: Entry[] = items.map((item, pos) => {
      const sent = outbound(item)
      return { pos, item: sent, weight: prompt.renderConversation(0, sent, maxTokens).length }
    })
    const ledger = new UsageLedger(items.length, price)

    /**
     * One prompt for `group`, retried on transport failures (and, when asked, on answers
     * that hold no insight list). Throws ModelCallError once the retries are spent.
     *
     * Hand-written rather than undici's RetryAgent: an answer can fail after a 200 (it does
     * not parse), every attempt must be counted with its own outcome, and the final failure
     * must be classified for the breaker; the interceptor hides attempts from its caller.
     */
    const ask: Ask = async (group, retryUnparseable): Promise<CallOutcome> => {
      const user = prompt.buildUser(
        group.map((e) => e.item),
        { maxInputTokensPerConversation: maxTokens }
      )
      const body = JSON.stringify({
        model,
        messages: [
          { role: 'system', content: prompt.system },
          { role: 'user', content: user }
        ],
        temperature: 0,
        [config.MODEL_MAX_TOKENS_PARAM]: maxOutputTokens(group.length),
        ...(responseFormat ? { response_format: responseFormat } : {})
      })
      for (let retry = 0; ; retry++) {
        signal?.throwIfAborted()
        const attempt = await transport.attempt(body, signal)
        ledger.countCall()
        metrics.modelDuration.observe({ model }, attempt.ms / 1000)
        const last = retry >= config.MODEL_MAX_RETRIES
        const fields = { model, batch_size: group.length, attempt: retry + 1, latency_ms: attempt.ms }

        if (attempt.type === 'rejected' && CONTEXT_EXCEEDED_RE.test(attempt.message)) {
          // the chunking estimate (MODEL_MAX_INPUT_TOKENS_PER_CALL, 4 characters a token) was
          // optimistic for this text or this model: let the resolution ask in halves
          metrics.modelCalls.inc({ model, outcome: 'error' })
          metrics.modelContextOverflows.inc({ model })
          log.warn({ ...fields, status: attempt.status, outcome: 'context_exceeded' }, 'model prompt longer than its context window; splitting')
          return { tooLong: true, message: attempt.message }
        }
        if (attempt.type === 'rejected') {
          metrics.modelCalls.inc({ model, outcome: 'error' })
          log.warn({ ...fields, status: attempt.status, outcome: 'rejected' }, 'model call rejected')
          throw new ModelCallError('rejected', attempt.message)
        }
        if (attempt.type === 'retryable') {
          metrics.modelCalls.inc({ model, outcome: attempt.kind })
          const wait = last ? 0 : transport.backoffMs(retry, attempt.retryAfterMs)
          log.warn({ ...fields, status: attempt.status, outcome: attempt.kind, retry_in_ms: last ? null : Math.round(wait) }, 'model call failed')
          if (last) {
            throw new ModelCallError(
              attempt.kind,
              `${attempt.message}; gave up after ${retry + 1} attempt${retry === 0 ? '' : 's'}`,
              attempt.retryAfterMs
            )
          }
          await transport.pause(wait, signal)
          continue
        }

        const answer = readCompletion(attempt.text)
        const tokens = {
          input: answer.usage?.input ?? estimateTokens(prompt.system + user),
          output: answer.usage?.output ?? estimateTokens(answer.content ?? attempt.text),
          cachedInput: answer.usage?.cachedInput ?? 0
        }
        ledger.charge(tokens, group)
        metrics.modelTokens.inc({ model, type: 'input' }, tokens.input)
        metrics.modelTokens.inc({ model, type: 'output' }, tokens.output)
        if (answer.usage?.cachedInput) metrics.modelTokens.inc({ model, type: 'cached_input' }, answer.usage.cachedInput)
        const cost = costOf(price, tokens)
        if (cost > 0) metrics.modelCost.inc({ model }, cost)
        const parsed = answer.content === undefined ? undefined : parseInsightsAnswer(answer.content, group.length)
        if (parsed) countCorrections(parsed.adjustments)
        const truncated = answer.finishReason === 'length'
        if (truncated) {
          // the same prompt would be cut at the same place: keep what is certain, split the rest
          metrics.modelTruncated.inc({ model })
          metrics.modelCalls.inc({ model, outcome: 'ok' })
          log.warn({ ...fields, status: attempt.status, outcome: 'truncated', answered: parsed?.byIndex.size ?? 0 }, 'model answer cut off at max_tokens')
          return { parsed: parsed && !parsed.parseError ? parsed : emptyAnswer(), truncated: true }
        }
        if (answer.refusal !== undefined) metrics.modelRefusals.inc({ model })
        const problem = answer.content === undefined ? answer.error : parsed?.parseError
        // A 200 whose text holds no insight list is a failed call for the dashboards:
        // it costs tokens and yields nothing.
        metrics.modelCalls.inc({ model, outcome: problem ? 'error' : 'ok' })
        if (!problem && parsed) {
          log.debug({ ...fields, status: attempt.status, outcome: 'ok', answered: parsed.byIndex.size }, 'model call')
          return { parsed }
        }
        // a refusal at temperature 0 repeats: asking the same prompt again only costs
        const again = retryUnparseable && !last && answer.refusal === undefined
        log.warn({ ...fields, status: attempt.status, outcome: answer.refusal !== undefined ? 'refused' : 'unparseable', retry: again }, 'model answer unparseable')
        if (!again) return { unparseable: problem ?? 'unparseable answer', ...(answer.refusal !== undefined ? { refused: true } : {}) }
        await transport.pause(transport.backoffMs(retry, undefined), signal)
      }
    }

    const countCorrections = (a: AnswerAdjustments) => {
      if (a.unknownIntent) metrics.modelAnswerCorrections.inc({ model, kind: 'unknown_intent' }, a.unknownIntent)
      if (a.scoreClamped) metrics.modelAnswerCorrections.inc({ model, kind: 'score_clamped' }, a.scoreClamped)
      if (a.positionalMismatch) metrics.modelAnswerCorrections.inc({ model, kind: 'positional_mismatch' }, a.positionalMismatch)
    }

    const run = async (): Promise<BatchResult> => {
      const insights: Resolution['insights'] = []
      const failures: Resolution['failures'] = []
      // the batch in calls that fit MODEL_MAX_INPUT_TOKENS_PER_CALL, one after another
      for (const [i, chunk] of chunkByTokens(entries, config.MODEL_MAX_INPUT_TOKENS_PER_CALL - systemTokens).entries()) {
        try {
          const r = await resolveBatch(chunk, ask)
          for (const e of chunk) {
            insights[e.pos] = r.insights[e.pos]
            failures[e.pos] = r.failures[e.pos]
          }
        } catch (err) {
          // the first call failing is the endpoint failing (the breaker's business); a
          // later one must not throw away the insights already won
          if (i === 0 || !(err instanceof ModelCallError)) throw err
          for (const e of chunk) failures[e.pos] = { error: err.message, retryable: err.kind !== 'rejected', reason: err.kind }
        }
      }
      const results: ItemResult[] = entries.map(({ pos, item }) => {
        const insight = insights[pos]
        if (insight) return { id: item.id, ok: true, insight, ...ledger.item(pos) }
        return { id: item.id, ok: false, ...(failures[pos] ?? { error: 'no result', retryable: true, reason: 'internal' as const }) }
      })
      return { results, usage: ledger.spent() }
    }
    return run().catch((err: unknown) => {
      // what the batch spent before it failed is real spend all the same
      if (err instanceof ModelCallError) err.usage = ledger.spent()
      throw err
    })
  }

  return {
    model,
    promptVersion: prompt.version,
    billable: true,
    analyzeBatch,
    ping: (signal) => transport.ping(signal),
    close: () => transport.close()
  }
}

const emptyAnswer = (): ParsedAnswer => ({
  byIndex: new Map(),
  invalid: [],
  adjustments: { unknownIntent: 0, scoreClamped: 0, positionalMismatch: 0 }
})

/**
 * Consecutive runs of entries whose estimated tokens (prompt length / 4) fit `budget`;
 * a conversation larger than the budget alone still gets its own call (it is already
 * trimmed to MODEL_MAX_INPUT_TOKENS_PER_CONVERSATION).
 */
export function chunkByTokens(entries: readonly Entry[], budget: number): Entry[][] {
  const chunks: Entry[][] = []
  let current: Entry[] = []
  let used = 0
  for (const e of entries) {
    const cost = tokensOfChars(e.weight)
    if (current.length > 0 && used + cost > budget) {
      chunks.push(current)
      current = []
      used = 0
    }
    current.push(e)
    used += cost
  }
  if (current.length) chunks.push(current)
  return chunks
}

export interface CompletionUsage extends Partial<TokenUsage> {
  /** prompt tokens the provider served from its cache (usage.prompt_tokens_details.cached_tokens) */
  cachedInput?: number
}

export interface Completion {
  content?: string
  usage?: CompletionUsage
  /** choices[0].finish_reason: "stop", "length", "content_filter"… */
  finishReason?: string
  /** the model declined (message.refusal, OpenAI structured outputs) */
  refusal?: string
  error?: string
}

/**
 * The assistant text and token counts of a chat completion body; `error` says why there is
 * no text. Content comes as a string (most providers) or as an array of parts (some
 * OpenAI-compatible servers); only text parts count. `reasoning_content` (vLLM's and
 * xAI's reasoning models, DeepSeek) is the model thinking aloud, never the answer.
 */
export function readCompletion(text: string): Completion {
  let json: unknown
  try {
    json = JSON.parse(text)
  } catch {
    return { error: 'the completion body is not JSON' }
  }
  if (typeof json !== 'object' || json === null) return { error: 'the completion body is not an object' }
  const { choices, usage } = json as { choices?: unknown; usage?: unknown }
  const count = (v: unknown) => (typeof v === 'number' && Number.isFinite(v) && v >= 0 ? Math.round(v) : undefined)
  const u = typeof usage === 'object' && usage !== null ? (usage as Record<string, unknown>) : undefined
  const details = u && typeof u.prompt_tokens_details === 'object' && u.prompt_tokens_details !== null ? (u.prompt_tokens_details as Record<string, unknown>) : undefined
  const tokens = u ? { input: count(u.prompt_tokens), output: count(u.completion_tokens), cachedInput: count(details?.cached_tokens) } : undefined
  const choice = Array.isArray(choices) ? (choices[0] as { message?: { content?: unknown; refusal?: unknown }; finish_reason?: unknown } | undefined) : undefined
  const finishReason = typeof choice?.finish_reason === 'string' ? choice.finish_reason : undefined
  const message = choice?.message
  const refusal = typeof message?.refusal === 'string' && message.refusal.trim() ? message.refusal : undefined
  const content = textOf(message?.content)
  if (refusal !== undefined && !content) return { usage: tokens, finishReason, refusal, error: 'the model refused to answer' }
  if (content === undefined) return { usage: tokens, finishReason, error: 'the completion has no message content' }
  return { content, usage: tokens, finishReason }
}

/** A message's text: the string itself, or the text parts of an array of parts joined. */
function textOf(content: unknown): string | undefined {
  if (typeof content === 'string') return content
  if (!Array.isArray(content)) return undefined
  const texts = content
    .filter((p): p is { type: string; text: string } => typeof p === 'object' && p !== null && (p as { type?: unknown }).type === 'text' && typeof (p as { text?: unknown }).text === 'string')
    .map((p) => p.text)
  return texts.length ? texts.join('') : undefined
}
