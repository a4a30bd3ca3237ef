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
import { type AnalysisInput, type Analyzer, type BatchResult, type ItemResult, ModelCallError, type TokenUsage } from './analyzer.ts'
import { type Ask, type CallOutcome, type Entry, resolveBatch } from './batch-resolution.ts'
import { createModelTransport, type ModelTransport, realClock, type TransportClock } from './model-transport.ts'
import { costOf, priceOf, UsageLedger } from './model-usage.ts'
import { parseInsightsAnswer } from './parse.ts'
import { CURRENT_PROMPT_VERSION, estimateTokens, PROMPTS, type PromptTemplate, renderConversation } from './prompts.ts'

export interface OpenAICompatibleDeps {
  metrics: Metrics
  logger: Logger
  /** sleep and jitter; tests pass their own to check back-offs without waiting */
  clock?: TransportClock
  /** the endpoint; by default one built from MODEL_BASE_URL */
  transport?: ModelTransport
  /** the prompt; by default PROMPTS[CURRENT_PROMPT_VERSION] */
  prompt?: PromptTemplate
}

export function createOpenAICompatibleAnalyzer(config: Config, deps: OpenAICompatibleDeps): Analyzer {
  const { metrics } = deps
  const log = deps.logger.child({ component: 'model-client' })
  if (!config.MODEL_BASE_URL || !config.MODEL_NAME) {
    throw new Error('MODEL_BASE_URL and MODEL_NAME are required for the openai-compatible analyzer')
  }
  const model = config.MODEL_NAME
  const prompt = deps.prompt ?? PROMPTS[CURRENT_PROMPT_VERSION]
  const price = priceOf(config, model)
  const transport = deps.transport ?? createModelTransport(config, deps.clock ?? realClock)
  const maxTokens = config.MODEL_MAX_INPUT_TOKENS_PER_CONVERSATION

  function analyzeBatch(items: AnalysisInput[], signal?: AbortSignal): Promise<BatchResult> {
    const entries: Entry[] = items.map((item, pos) => ({ pos, item, weight: renderConversation(0, item, maxTokens).length }))
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
        ...(config.MODEL_JSON_MODE ? { response_format: { type: 'json_object' } } : {})
      })
      for (let retry = 0; ; retry++) {
        signal?.throwIfAborted()
        const attempt = await transport.attempt(body, signal)
        ledger.countCall()
        metrics.modelDuration.observe({ model }, attempt.ms / 1000)
        const last = retry >= config.MODEL_MAX_RETRIES
        const fields = { model, batch_size: group.length, attempt: retry + 1, latency_ms: attempt.ms }

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
          output: answer.usage?.output ?? estimateTokens(answer.content ?? attempt.text)
        }
        ledger.charge(tokens, group)
        metrics.modelTokens.inc({ model, type: 'input' }, tokens.input)
        metrics.modelTokens.inc({ model, type: 'output' }, tokens.output)
        const cost = costOf(price, tokens)
        if (cost > 0) metrics.modelCost.inc({ model }, cost)
        const parsed = answer.content === undefined ? undefined : parseInsightsAnswer(answer.content, group.length)
        const problem = answer.content === undefined ? answer.error : parsed?.parseError
        // A 200 whose text holds no insight list is a failed call for the dashboards:
        // it costs tokens and yields nothing.
        metrics.modelCalls.inc({ model, outcome: problem ? 'error' : 'ok' })
        if (!problem && parsed) {
          log.debug({ ...fields, status: attempt.status, outcome: 'ok', answered: parsed.byIndex.size }, 'model call')
          return { parsed }
        }
        const again = retryUnparseable && !last
        log.warn({ ...fields, status: attempt.status, outcome: 'unparseable', retry: again }, 'model answer unparseable')
        if (!again) return { unparseable: problem ?? 'unparseable answer' }
        await transport.pause(transport.backoffMs(retry, undefined), signal)
      }
    }

    const run = async (): Promise<BatchResult> => {
      const { insights, failures } = await resolveBatch(entries, ask)
      const results: ItemResult[] = entries.map(({ pos, item }) => {
        const insight = insights[pos]
        if (insight) return { id: item.id, ok: true, insight, ...ledger.item(pos) }
        return { id: item.id, ok: false, ...failures[pos]! }
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

/** The assistant text and token counts of a chat completion body; `error` says why there is no text. */
export function readCompletion(text: string): { content?: string; usage?: Partial<TokenUsage>; error?: string } {
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
  const tokens = u ? { input: count(u.prompt_tokens), output: count(u.completion_tokens) } : undefined
  const message = Array.isArray(choices) ? (choices[0] as { message?: { content?: unknown } } | undefined)?.message : undefined
  const content = message?.content
  if (typeof content !== 'string') return { usage: tokens, error: 'the completion has no message content' }
  return { content, usage: tokens }
}
