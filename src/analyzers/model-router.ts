// The model router: which prompt variant a conversation gets (A/B prompts, by a stable
// hash of its id) and which endpoint answers (the primary, then MODEL_FALLBACKS in order,
// each behind its own breaker, then the local analyzer when MODEL_FALLBACK_LOCAL=on).
// It is an Analyzer itself, so the worker neither knows nor cares: its own breaker sees
// a failure only when every endpoint failed.
import { hash } from 'node:crypto'
import type { Logger } from 'pino'
import { type Config, parseModelFallbacks, parsePromptVariants } from '../config.ts'
import type { Metrics } from '../metrics.ts'
import { CircuitBreaker, circuitStateValue } from '../pipeline/breaker.ts'
import { type AnalysisInput, type Analyzer, type BatchResult, type EndpointStatus, type ItemResult, ModelCallError, type Route, type Spend } from './analyzer.ts'
import { createLocalAnalyzer } from './local.ts'
import { createModelTransport, realClock, type TransportClock } from './model-transport.ts'
import { createOpenAICompatibleAnalyzer } from './openai-compatible.ts'
import { CURRENT_PROMPT_VERSION, type PromptVersion, promptFor } from './prompts.ts'

export interface ModelRouterDeps {
  metrics: Metrics
  logger: Logger
  clock?: TransportClock
  /** the breakers' clock, so tests move past a cooldown without waiting */
  now?: () => number
}

interface Endpoint {
  name: string
  model: string
  breaker: CircuitBreaker
  /** one analyzer per prompt variant, sharing the endpoint's connection pool */
  byVariant: Map<string, Analyzer>
}

interface Variant {
  name: PromptVersion
  version: string
  /** upper bound of its bucket in [0, 1) */
  until: number
}

/** A conversation's place in [0, 1): the first 32 bits of sha256(id). Stable across processes and restarts. */
export function variantBucket(id: string): number {
  return hash('sha256', id, 'buffer').readUInt32BE(0) / 2 ** 32
}

export function createModelRouter(config: Config, deps: ModelRouterDeps): Analyzer {
  const { metrics } = deps
  const log = deps.logger.child({ component: 'model-router' })
  const summaryLanguage = config.SUMMARY_LANGUAGE

  const declared = parsePromptVariants(config.PROMPT_VARIANTS)
  const weights = declared.length ? declared : [{ name: CURRENT_PROMPT_VERSION, weight: 1 }]
  const total = weights.reduce((n, v) => n + v.weight, 0)
  let acc = 0
  const variants: Variant[] = weights
    .filter((v) => v.weight > 0)
    .map((v) => {
      acc += v.weight
      const name = v.name as PromptVersion
      return { name, version: promptFor(name, { summaryLanguage }).version, until: acc / total }
    })
  // one variant (no PROMPT_VARIANTS, the usual case): no hash at all. The store and the
  // worker ask a conversation's route several times each, a sha256 every time (bench:drain).
  const sole = variants.length === 1 ? variants[0] : undefined
  const variantOf = (id: string): Variant => {
    if (sole) return sole
    const b = variantBucket(id)
    return variants.find((v) => b < v.until) ?? variants[variants.length - 1]!
  }

  const specs = [
    {
      name: 'primary',
      config
    },
    ...parseModelFallbacks(config.MODEL_FALLBACKS).map((f, i) => ({
      name: `fallback_${i + 1}`,
      config: {
        ...config,
        MODEL_BASE_URL: f.base_url,
        MODEL_API_KEY: f.api_key,
        MODEL_NAME: f.model,
        MODEL_PRICES: '',
        MODEL_PRICE_INPUT_PER_MTOK: f.price_input ?? 0,
        MODEL_PRICE_OUTPUT_PER_MTOK: f.price_output ?? 0,
        MODEL_PRICE_CACHED_INPUT_PER_MTOK: f.price_cached_input
      } satisfies Config
    }))
  ]
  const endpoints: Endpoint[] = specs.map(({ name, config: c }) => {
    const transport = createModelTransport(c, deps.clock ?? realClock)
    const byVariant = new Map<string, Analyzer>()
    for (const v of variants) {
      byVariant.set(v.name, createOpenAICompatibleAnalyzer(c, { metrics, logger: deps.logger, transport, prompt: promptFor(v.name, { summaryLanguage }) }))
    }
    const model = c.MODEL_NAME!
    const breaker = new CircuitBreaker({
      failureThreshold: config.BREAKER_FAILURE_THRESHOLD,
      cooldownMs: config.BREAKER_COOLDOWN_MS,
      now: deps.now,
      onStateChange: (state) => {
        metrics.modelEndpointState.set({ endpoint: name, model }, circuitStateValue(state))
        log.warn({ endpoint: name, model, circuit: state }, 'model endpoint circuit changed state')
      }
    })
    metrics.modelEndpointState.set({ endpoint: name, model }, 0)
    return { name, model, breaker, byVariant }
  })
  const local = config.MODEL_FALLBACK_LOCAL === 'on' ? createLocalAnalyzer() : undefined
  const primary = endpoints[0]!

  /** One variant's items through the endpoints in order; the results tagged with who answered. */
  async function analyzeVariant(variant: Variant, items: AnalysisInput[], signal?: AbortSignal): Promise<BatchResult> {
    const spent: BatchResult['usage'] = { input: 0, output: 0, cost_usd: 0, calls: 0, byModel: {} }
    const addSpent = (u: BatchResult['usage'] | undefined, model: string) => {
      if (!u) return
      addInto(spent, u)
      addInto(slotOf(spent.byModel!, model), u)
    }
    let lastError: unknown
    for (const endpoint of endpoints) {
      // canRun() on an open breaker past its cooldown makes this batch the probe: that is
      // how the primary gets its traffic back once it recovers
      if (!endpoint.breaker.canRun()) continue
      const analyzer = endpoint.byVariant.get(variant.name)!
      try {
        const result = await analyzer.analyzeBatch(items, signal)
        endpoint.breaker.recordSuccess()
        addSpent(result.usage, endpoint.model)
        return { results: result.results.map((r) => tag(r, endpoint.model, variant.version)), usage: spent }
      } catch (err) {
        if (!(err instanceof ModelCallError)) {
          // an abort or a bug says nothing about the endpoint, but a probe must still report
          if (endpoint.breaker.state === 'half_open') endpoint.breaker.recordFailure()
          throw err
        }
        endpoint.breaker.recordFailure()
        addSpent(err.usage, endpoint.model)
        lastError = err
        log.warn({ endpoint: endpoint.name, model: endpoint.model, kind: err.kind, size: items.length }, 'model endpoint failed; trying the next')
      }
    }
    if (local) {
      const result = await local.analyzeBatch(items, signal)
      metrics.modelFallbackLocal.inc(items.length)
      return { results: result.results.map((r) => tag(r, local.model, local.promptVersion)), usage: spent }
    }
    const err = lastError instanceof ModelCallError ? lastError : new ModelCallError('error', 'every model endpoint is open: no call made')
    err.usage = spent
    throw err
  }

  async function analyzeBatch(items: AnalysisInput[], signal?: AbortSignal): Promise<BatchResult> {
    const groups = new Map<Variant, AnalysisInput[]>()
    for (const item of items) {
      const v = variantOf(item.id)
      groups.set(v, [...(groups.get(v) ?? []), item])
    }
    const results: ItemResult[] = []
    const usage: BatchResult['usage'] = { input: 0, output: 0, cost_usd: 0, calls: 0, byModel: {} }
    let failure: ModelCallError | undefined
    for (const [variant, group] of groups) {
      const started = performance.now()
      let result: BatchResult
      try {
        result = await analyzeVariant(variant, group, signal)
      } catch (err) {
        if (!(err instanceof ModelCallError)) throw err
        countVariant(variant.version, err.usage, group.length, [], performance.now() - started)
        failure ??= err
        if (err.usage) addInto(usage, err.usage)
        for (const item of group) results.push({ id: item.id, ok: false, error: err.message, retryable: err.kind !== 'rejected', reason: err.kind })
        continue
      }
      countVariant(variant.version, result.usage, group.length, result.results, performance.now() - started)
      addInto(usage, result.usage)
      results.push(...result.results)
    }
    // every variant failed as a call: the batch failed (the worker's breaker and failure
    // table); otherwise the failed variant's items fail alone and the rest is kept
    if (failure && results.every((r) => !r.ok)) {
      failure.usage = usage
      throw failure
    }
    return { results, usage }
  }

  function countVariant(version: string, usage: BatchResult['usage'] | undefined, items: number, results: ItemResult[], ms: number) {
    const labels = { prompt_version: version }
    metrics.variantBatches.inc(labels)
    metrics.variantDuration.observe(labels, ms / 1000)
    if (usage) {
      metrics.variantCalls.inc(labels, usage.calls)
      metrics.variantTokens.inc({ ...labels, type: 'input' }, usage.input)
      metrics.variantTokens.inc({ ...labels, type: 'output' }, usage.output)
      if (usage.cost_usd > 0) metrics.variantCost.inc(labels, usage.cost_usd)
    }
    const ok = results.filter((r) => r.ok).length
    metrics.variantItems.inc({ ...labels, outcome: 'ok' }, ok)
    const invalid = results.filter((r) => !r.ok && r.reason === 'invalid_output').length
    if (invalid) metrics.variantItems.inc({ ...labels, outcome: 'invalid_output' }, invalid)
    if (items - ok - invalid > 0) metrics.variantItems.inc({ ...labels, outcome: 'failed' }, items - ok - invalid)
  }

  const soleRoute: Route | undefined = sole && { model: primary.model, promptVersion: sole.version }
  return {
    model: primary.model,
    promptVersion: variants[0]!.version,
    billable: true,
    analyzeBatch,
    routeOf: (id: string): Route => soleRoute ?? { model: primary.model, promptVersion: variantOf(id).version },
    endpoints: (): EndpointStatus[] => endpoints.map((e) => ({ name: e.name, model: e.model, state: e.breaker.state })),
    async ping(signal) {
      // ready when any endpoint answers: that one will take the batches
      let last: unknown
      for (const e of endpoints) {
        try {
          return await e.byVariant.values().next().value!.ping(signal)
        } catch (err) {
          last = err
        }
      }
      if (local) return
      throw last
    },
    async close() {
      await Promise.all(endpoints.flatMap((e) => [...e.byVariant.values()].map((a) => a.close())))
      await local?.close()
    }
  }
}

/** Names who answered, unless the result already does. The spread last: see assembleOutcome (store.ts). */
function tag(r: ItemResult, model: string, promptVersion: string): ItemResult {
  return r.ok ? { model, promptVersion, ...r } : r
}

/** Adds `u` into `total`, and its per-model split into total's when both keep one. */
function addInto(total: Spend & { byModel?: Record<string, Spend> }, u: Spend & { byModel?: Record<string, Spend> }) {
  total.input += u.input
  total.output += u.output
  total.cost_usd += u.cost_usd
  total.calls += u.calls
  if (total.byModel && u.byModel) {
    for (const [model, s] of Object.entries(u.byModel)) addInto(slotOf(total.byModel, model), s)
  }
}

function slotOf(byModel: Record<string, Spend>, model: string): Spend {
  byModel[model] ??= { input: 0, output: 0, cost_usd: 0, calls: 0 }
  return byModel[model]
}
