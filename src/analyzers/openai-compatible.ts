// The model client: any OpenAI-compatible chat API (xAI Grok, OpenAI, vLLM, Ollama) behind
// the Analyzer interface. One batch becomes one prompt; the answer is parsed leniently and
// validated strictly (parse.ts). What the model leaves out or mangles is asked again in
// smaller prompts, so one bad conversation never fails its whole batch.
import { setTimeout as sleep } from 'node:timers/promises'
import type { Logger } from 'pino'
import { type Dispatcher, Pool } from 'undici'
import { type Config, parseModelPrices } from '../config.ts'
import type { InsightFields } from '../domain.ts'
import type { Metrics } from '../metrics.ts'
import {
  type AnalysisInput,
  type Analyzer,
  type BatchResult,
  type ItemFailureReason,
  type ItemResult,
  ModelCallError,
  type ModelFailureKind,
  type TokenUsage
} from './analyzer.ts'
import { type ParsedAnswer, parseInsightsAnswer } from './parse.ts'
import { CURRENT_PROMPT_VERSION, estimateTokens, PROMPTS, renderConversation } from './prompts.ts'

export interface OpenAICompatibleDeps {
  metrics: Metrics
  logger: Logger
}

/** An answer larger than this is not an insight list; undici stops reading it. */
const MAX_RESPONSE_BYTES = 16 * 1024 * 1024
/** ping is a readiness probe: it must answer fast or say the backend is down. */
const PING_TIMEOUT_MS = 2_000
/**
 * Halvings allowed when re-asking for items a model dropped or an answer it mangled. Seven
 * take BATCH_MAX's default of 100 down to single items; anything left then fails retryably.
 */
const MAX_SPLIT_DEPTH = 7
/** Leftovers this small are asked one by one: halving them saves no call. */
const ASK_ALONE_AT_MOST = 3
/** Provider error text kept in a rejection message: enough to explain it, not to flood logs. */
const MAX_DETAIL_CHARS = 200

type Entry = { pos: number; item: AnalysisInput; weight: number }

type Attempt =
  | { type: 'answer'; status: number; text: string; ms: number }
  | { type: 'retryable'; kind: Exclude<ModelFailureKind, 'rejected'>; status?: number; message: string; retryAfterMs?: number; ms: number }
  | { type: 'rejected'; status: number; message: string; ms: number }

type CallOutcome = { parsed: ParsedAnswer } | { unparseable: string }

export function createOpenAICompatibleAnalyzer(config: Config, deps: OpenAICompatibleDeps): Analyzer {
  const { metrics } = deps
  const log = deps.logger.child({ component: 'model-client' })
  if (!config.MODEL_BASE_URL || !config.MODEL_NAME) {
    throw new Error('MODEL_BASE_URL and MODEL_NAME are required for the openai-compatible analyzer')
  }
  const model = config.MODEL_NAME
  const prompt = PROMPTS[CURRENT_PROMPT_VERSION]
  const base = new URL(config.MODEL_BASE_URL)
  const basePath = base.pathname.replace(/\/+$/, '')
  const chatPath = `${basePath}/chat/completions`
  const modelsPath = `${basePath}/models`
  const price = parseModelPrices(config.MODEL_PRICES).get(model) ?? {
    input: config.MODEL_PRICE_INPUT_PER_MTOK,
    output: config.MODEL_PRICE_OUTPUT_PER_MTOK
  }
  const costOf = (t: TokenUsage) => (t.input * price.input + t.output * price.output) / 1e6

  const apiKey = config.MODEL_API_KEY ? config.MODEL_API_KEY : undefined
  const headers: Record<string, string> = { 'content-type': 'application/json', accept: 'application/json' }
  if (apiKey) headers.authorization = `Bearer ${apiKey}`
  /** Every string leaving this module that may carry provider or socket text goes through here. */
  const redact = (s: string) => {
    // Providers quote a refused key in part ("Incorrect API key provided: sk-…abcd"); mask key-like tokens too.
    const masked = s.replace(/Bearer\s+\S+/gi, 'Bearer [redacted]').replace(/\b(?:sk|xai|gsk|key)[-_][\w*.-]{4,}/gi, '[redacted]')
    return apiKey ? masked.split(apiKey).join('[redacted]') : masked
  }

  const pool = new Pool(base.origin, {
    connections: config.MODEL_MAX_CONNECTIONS,
    maxResponseSize: MAX_RESPONSE_BYTES
  })
  // Aborts in-flight calls and back-off sleeps on close(); the worker has stopped waiting by then.
  const closing = new AbortController()
  let closed: Promise<void> | undefined

  /** One HTTP request; never throws except when the caller aborts or the analyzer closes. */
  async function attemptOnce(body: string, callerSignal: AbortSignal | undefined): Promise<Attempt> {
    const link = linkSignals([closing.signal, callerSignal], config.MODEL_TIMEOUT_MS)
    const { signal } = link
    const started = performance.now()
    const ms = () => Math.round(performance.now() - started)
    let res: Dispatcher.ResponseData | undefined
    try {
      res = await pool.request({ method: 'POST', path: chatPath, headers, body, signal })
      const status = res.statusCode
      if (status >= 200 && status < 300) return { type: 'answer', status, text: await res.body.text(), ms: ms() }
      const retryAfterMs = parseRetryAfter(res.headers)
      // 408 and 409 are the provider's own transient states; other 4xx will not change on retry.
      if (status === 429 || status >= 500 || status === 408 || status === 409) {
        await res.body.dump()
        return status === 429
          ? { type: 'retryable', kind: 'rate_limited', status, message: 'rate limited (429)', retryAfterMs, ms: ms() }
          : { type: 'retryable', kind: 'error', status, message: `model endpoint answered ${status}`, retryAfterMs, ms: ms() }
      }
      const detail = await readErrorDetail(res.body)
      return { type: 'rejected', status, message: redact(`model endpoint refused the request (${status})${detail ? `: ${detail}` : ''}`), ms: ms() }
    } catch (err) {
      if (res && !res.body.destroyed) res.body.destroy()
      if (callerSignal?.aborted) throw callerSignal.reason
      if (closing.signal.aborted) throw new ModelCallError('error', 'the model client was closed')
      if (link.timedOut()) return { type: 'retryable', kind: 'timeout', message: `no answer within ${config.MODEL_TIMEOUT_MS} ms`, ms: ms() }
      // undici's messages can quote the request; keep only the error code.
      const code = (err as { code?: unknown }).code
      return { type: 'retryable', kind: 'error', message: `network error${typeof code === 'string' ? ` (${redact(code)})` : ''}`, ms: ms() }
    } finally {
      link.dispose()
    }
  }

  function backoffMs(retry: number, retryAfterMs: number | undefined): number {
    if (retryAfterMs !== undefined) return Math.min(retryAfterMs, config.MODEL_RETRY_MAX_MS)
    // Full jitter (AWS architecture blog): spreads the retries of many workers hit by the same outage.
    return Math.random() * Math.min(config.MODEL_RETRY_MAX_MS, config.MODEL_RETRY_BASE_MS * 2 ** retry)
  }

  async function pause(ms: number, callerSignal: AbortSignal | undefined) {
    if (ms <= 0) return
    const link = linkSignals([closing.signal, callerSignal])
    try {
      await sleep(ms, undefined, { signal: link.signal })
    } catch {
      if (callerSignal?.aborted) throw callerSignal.reason
      throw new ModelCallError('error', 'the model client was closed')
    } finally {
      link.dispose()
    }
  }

  function analyzeBatch(items: AnalysisInput[], signal?: AbortSignal): Promise<BatchResult> {
    const maxTokens = config.MODEL_MAX_INPUT_TOKENS_PER_CONVERSATION
    const entries: Entry[] = items.map((item, pos) => ({ pos, item, weight: renderConversation(0, item, maxTokens).length }))
    const insights: Array<InsightFields | undefined> = new Array(items.length)
    const failures: Array<{ error: string; retryable: boolean; reason: ItemFailureReason } | undefined> = new Array(items.length)
    const itemTokens: TokenUsage[] = items.map(() => ({ input: 0, output: 0 }))
    const usage = { input: 0, output: 0, calls: 0 }

    const fail = (group: Entry[], error: string, reason: ItemFailureReason, retryable = true) => {
      for (const e of group) if (!insights[e.pos]) failures[e.pos] = { error, retryable, reason }
    }

    /**
     * One prompt for `group`, retried on transport failures (and, when asked, on answers
     * that hold no insight list). Throws ModelCallError once the retries are spent.
     *
     * Hand-written rather than undici's RetryAgent: an answer can fail after a 200 (it does
     * not parse), every attempt must be counted with its own outcome, and the final failure
     * must be classified for the breaker; the interceptor hides attempts from its caller.
     */
    async function callModel(group: Entry[], retryUnparseable: boolean): Promise<CallOutcome> {
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
        const attempt = await attemptOnce(body, signal)
        usage.calls++
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
          const wait = last ? 0 : backoffMs(retry, attempt.retryAfterMs)
          log.warn({ ...fields, status: attempt.status, outcome: attempt.kind, retry_in_ms: last ? null : Math.round(wait) }, 'model call failed')
          if (last) {
            throw new ModelCallError(
              attempt.kind,
              `${attempt.message}; gave up after ${retry + 1} attempt${retry === 0 ? '' : 's'}`,
              attempt.retryAfterMs
            )
          }
          await pause(wait, signal)
          continue
        }

        const answer = readCompletion(attempt.text)
        const tokens = {
          input: answer.usage?.input ?? estimateTokens(prompt.system + user),
          output: answer.usage?.output ?? estimateTokens(answer.content ?? attempt.text)
        }
        chargeTokens(group, tokens)
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
        await pause(backoffMs(retry, undefined), signal)
      }
    }

    /** Splits the usage of one call over its items by prompt length, exactly (largest remainder). */
    function chargeTokens(group: Entry[], tokens: TokenUsage) {
      usage.input += tokens.input
      usage.output += tokens.output
      metrics.modelTokens.inc({ model, type: 'input' }, tokens.input)
      metrics.modelTokens.inc({ model, type: 'output' }, tokens.output)
      const cost = costOf(tokens)
      if (cost > 0) metrics.modelCost.inc({ model }, cost)
      const weights = group.map((e) => e.weight)
      const inputs = splitProportionally(tokens.input, weights)
      const outputs = splitProportionally(tokens.output, weights)
      group.forEach((e, i) => {
        itemTokens[e.pos]!.input += inputs[i]!
        itemTokens[e.pos]!.output += outputs[i]!
      })
    }

    /** Takes the valid insights of an answer; returns the entries still without one. */
    function accept(group: Entry[], parsed: ParsedAnswer): Entry[] {
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
    async function resolveLeftovers(group: Entry[], depth: number): Promise<void> {
      if (group.length === 0) return
      if (depth > MAX_SPLIT_DEPTH) return fail(group, 'the model gave no valid insight for this conversation', 'invalid_output')
      const parts = group.length <= ASK_ALONE_AT_MOST ? group.map((e) => [e]) : halves(group)
      const next: Entry[][] = []
      let anyParsed = false
      for (const [i, part] of parts.entries()) {
        let outcome: CallOutcome
        try {
          outcome = await callModel(part, false)
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
        if ('parsed' in outcome) {
          anyParsed = true
          const rest = accept(part, outcome.parsed)
          if (rest.length === 0) continue
          if (part.length === 1) fail(rest, 'the model gave no valid insight for this conversation', 'invalid_output')
          else next.push(rest)
        } else if (part.length === 1) {
          fail(part, `the model answer could not be parsed: ${outcome.unparseable}`, 'invalid_output')
        } else {
          next.push(part)
        }
      }
      // Every part unparseable means the model is broken, not one conversation: stop spending.
      if (!anyParsed) {
        for (const part of next) fail(part, 'the model answer could not be parsed', 'invalid_output')
        return
      }
      for (const part of next) await resolveLeftovers(part, depth + 1)
    }

    async function run(): Promise<BatchResult> {
      if (entries.length > 0) {
        const first = await callModel(entries, true)
        const leftovers = 'parsed' in first ? accept(entries, first.parsed) : entries
        await resolveLeftovers(leftovers, 1)
        if ('unparseable' in first && !insights.some(Boolean)) {
          throw new ModelCallError('error', `the model answer could not be parsed: ${first.unparseable}`)
        }
      }
      const results: ItemResult[] = entries.map(({ pos, item }) => {
        const insight = insights[pos]
        if (insight) {
          const tokens = itemTokens[pos]!
          return { id: item.id, ok: true, insight, tokens, cost_usd: costOf(tokens) }
        }
        const failure = failures[pos] ?? { error: 'the model gave no valid insight for this conversation', retryable: true, reason: 'invalid_output' as const }
        return { id: item.id, ok: false, ...failure }
      })
      return { results, usage: spent() }
    }

    const spent = () => ({ input: usage.input, output: usage.output, cost_usd: costOf(usage), calls: usage.calls })
    return run().catch((err: unknown) => {
      if (err instanceof ModelCallError) err.usage = spent()
      throw err
    })
  }

  async function ping(signal?: AbortSignal): Promise<void> {
    const link = linkSignals([closing.signal, signal], PING_TIMEOUT_MS)
    let status: number
    try {
      const res = await pool.request({ method: 'GET', path: modelsPath, headers, signal: link.signal })
      status = res.statusCode
      await res.body.dump()
    } catch (err) {
      if (signal?.aborted) throw signal.reason
      if (link.timedOut()) throw new ModelCallError('timeout', `model endpoint did not answer within ${PING_TIMEOUT_MS} ms`)
      const code = (err as { code?: unknown }).code
      throw new ModelCallError('error', `model endpoint unreachable${typeof code === 'string' ? ` (${redact(code)})` : ''}`)
    } finally {
      link.dispose()
    }
    if (status === 429) throw new ModelCallError('rate_limited', 'model endpoint answered 429')
    if (status >= 500) throw new ModelCallError('error', `model endpoint answered ${status}`)
    if (status >= 400) throw new ModelCallError('rejected', `model endpoint answered ${status}`)
  }

  return {
    model,
    promptVersion: prompt.version,
    billable: true,
    analyzeBatch,
    ping,
    close() {
      closed ??= (async () => {
        closing.abort()
        await pool.close()
      })()
      return closed
    }
  }

  /** Provider error text, for rejections only; reading it also frees the connection. */
  async function readErrorDetail(body: Dispatcher.ResponseData['body']): Promise<string> {
    let text: string
    try {
      text = await body.text()
    } catch {
      return ''
    }
    let message: unknown = text
    try {
      const json = JSON.parse(text) as { error?: { message?: unknown } | string; message?: unknown }
      message = typeof json.error === 'string' ? json.error : (json.error?.message ?? json.message ?? text)
    } catch {
      // not JSON: keep the raw text
    }
    return typeof message === 'string' ? redact(message.replace(/\s+/g, ' ').trim().slice(0, MAX_DETAIL_CHARS)) : ''
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

/** Retry-After in ms: delta-seconds or an HTTP date (RFC 9110), or the retry-after-ms some providers send. */
export function parseRetryAfter(headers: Record<string, string | string[] | undefined>, now = Date.now()): number | undefined {
  const first = (v: string | string[] | undefined) => (Array.isArray(v) ? v[0] : v)
  const ms = first(headers['retry-after-ms'])
  if (ms && /^\s*\d+(\.\d+)?\s*$/.test(ms)) return Math.round(Number(ms))
  const value = first(headers['retry-after'])
  if (!value) return undefined
  if (/^\s*\d+(\.\d+)?\s*$/.test(value)) return Math.round(Number(value) * 1000)
  const date = Date.parse(value)
  return Number.isNaN(date) ? undefined : Math.max(0, date - now)
}

/** Integers summing exactly to `total`, in proportion to `weights` (largest remainder). */
export function splitProportionally(total: number, weights: number[]): number[] {
  if (weights.length === 0) return []
  const sum = weights.reduce((a, b) => a + b, 0)
  const exact = weights.map((w) => (sum > 0 ? (total * w) / sum : total / weights.length))
  const shares = exact.map(Math.floor)
  let left = total - shares.reduce((a, b) => a + b, 0)
  const order = exact.map((x, i) => ({ i, frac: x - Math.floor(x) })).sort((a, b) => b.frac - a.frac)
  for (let k = 0; left > 0; k = (k + 1) % order.length, left--) shares[order[k]!.i]!++
  return shares
}

/**
 * A signal that aborts when any of `signals` does, or after `timeoutMs`; dispose() unlinks it.
 * Hand-written instead of AbortSignal.any + AbortSignal.timeout: on Node 20, AbortSignal.any
 * keeps every combined signal reachable from a long-lived input (nodejs/node#55351), and
 * both our close signal and a worker's shutdown signal live as long as the process, so
 * one leaked signal per model call would add up over millions of calls.
 */
export function linkSignals(
  signals: Array<AbortSignal | undefined>,
  timeoutMs?: number
): { signal: AbortSignal; timedOut(): boolean; dispose(): void } {
  const controller = new AbortController()
  const unlink: Array<() => void> = []
  let timedOut = false
  for (const s of signals) {
    if (!s) continue
    if (s.aborted) {
      controller.abort(s.reason)
      break
    }
    const onAbort = () => controller.abort(s.reason)
    s.addEventListener('abort', onAbort, { once: true })
    unlink.push(() => s.removeEventListener('abort', onAbort))
  }
  if (timeoutMs !== undefined && !controller.signal.aborted) {
    const timer = setTimeout(() => {
      timedOut = true
      controller.abort(new DOMException(`timed out after ${timeoutMs} ms`, 'TimeoutError'))
    }, timeoutMs)
    unlink.push(() => clearTimeout(timer))
  }
  return {
    signal: controller.signal,
    timedOut: () => timedOut,
    dispose() {
      for (const fn of unlink.splice(0)) fn()
    }
  }
}

function halves<T>(list: T[]): [T[], T[]] {
  const mid = Math.ceil(list.length / 2)
  return [list.slice(0, mid), list.slice(mid)]
}
