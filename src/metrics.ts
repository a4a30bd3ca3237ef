// Every metric Gleaner exports, defined once on a Registry per app instance (tests build
// many apps in one process; a global registry would collide). Names and labels are the
// contract's (docs/api.md, kept in step by test/docs/api.test.ts); label values are bounded
// sets, never ids or raw URLs.
import client from 'prom-client'
import { LOOP_MONITOR_RESOLUTION_MS } from './pipeline/fair-share.ts'

const LATENCY_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]
const MODEL_BUCKETS = [0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120]
const INSIGHT_BUCKETS = [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600]

export function createMetrics(opts: { defaultMetrics?: boolean } = {}) {
  const registry = new client.Registry()
  if (opts.defaultMetrics !== false) {
    // one lag timer for both monitors, at the fair share's resolution: a second one at
    // prom-client's default of 10 ms would wake the loop as often as before
    client.collectDefaultMetrics({ register: registry, eventLoopMonitoringPrecision: LOOP_MONITOR_RESOLUTION_MS })
    // prom-client names these gauges *_total, which promtool rejects as counters-in-disguise;
    // they carry nothing we alert on, so they are dropped rather than renamed.
    for (const name of ['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total']) {
      registry.removeSingleMetric(name)
    }
  }
  const r = [registry]
  return {
    registry,
    httpRequests: new client.Counter({
      name: 'gleaner_http_requests_total',
      help: 'HTTP requests answered, by route template and status',
      labelNames: ['method', 'route', 'status'] as const,
      registers: r
    }),
    httpDuration: new client.Histogram({
      name: 'gleaner_http_request_duration_seconds',
      help: 'HTTP request duration by route template',
      labelNames: ['method', 'route'] as const,
      buckets: LATENCY_BUCKETS,
      registers: r
    }),
    ingested: new client.Counter({
      name: 'gleaner_conversations_ingested_total',
      help: 'Conversations received, by source and outcome',
      labelNames: ['source', 'outcome'] as const,
      registers: r
    }),
    queueDepth: new client.Gauge({
      name: 'gleaner_queue_depth',
      help: 'Conversation ids waiting in this process\'s in-process queue',
      registers: r
    }),
    backlog: new client.Gauge({
      name: 'gleaner_backlog_conversations',
      help: 'Conversations not yet analysed, by status, read from the shared database',
      labelNames: ['status'] as const,
      registers: r
    }),
    batchSize: new client.Gauge({
      name: 'gleaner_batch_size',
      help: 'Current adaptive batch size',
      registers: r
    }),
    prefilterSkips: new client.Counter({
      name: 'gleaner_prefilter_skips_total',
      help: 'Conversations skipped by the prefilter, by reason',
      labelNames: ['reason'] as const,
      registers: r
    }),
    cacheRequests: new client.Counter({
      name: 'gleaner_analysis_cache_requests_total',
      help: 'Analysis cache look-ups, by result',
      labelNames: ['result'] as const,
      registers: r
    }),
    modelCalls: new client.Counter({
      name: 'gleaner_model_calls_total',
      help: 'Model calls, by model and outcome',
      labelNames: ['model', 'outcome'] as const,
      registers: r
    }),
    modelDuration: new client.Histogram({
      name: 'gleaner_model_call_duration_seconds',
      help: 'Duration of one model call (one batch prompt)',
      labelNames: ['model'] as const,
      buckets: MODEL_BUCKETS,
      registers: r
    }),
    modelTokens: new client.Counter({
      name: 'gleaner_model_tokens_total',
      help: 'Model tokens, by model and type (input, output, and cached_input: the part of input the provider served from its prompt cache)',
      labelNames: ['model', 'type'] as const,
      registers: r
    }),
    modelCost: new client.Counter({
      name: 'gleaner_model_cost_usd_total',
      help: 'Model spend in US dollars, by model',
      labelNames: ['model'] as const,
      registers: r
    }),
    modelTruncated: new client.Counter({
      name: 'gleaner_model_truncated_answers_total',
      help: 'Model answers cut off at max_tokens (finish_reason length); each splits its call once',
      labelNames: ['model'] as const,
      registers: r
    }),
    modelContextOverflows: new client.Counter({
      name: 'gleaner_model_context_overflows_total',
      help: "Model prompts refused as longer than the model's context window; each is asked again in halves",
      labelNames: ['model'] as const,
      registers: r
    }),
    modelAnswerCorrections: new client.Counter({
      name: 'gleaner_model_answer_corrections_total',
      help: 'What the parser corrected in model answers: unknown_intent (mapped to other), score_clamped (into its label band), positional_mismatch (index-less answer of the wrong length, re-asked)',
      labelNames: ['model', 'kind'] as const,
      registers: r
    }),
    modelRefusals: new client.Counter({
      name: 'gleaner_model_refusals_total',
      help: 'Model answers that were refusals instead of insights',
      labelNames: ['model'] as const,
      registers: r
    }),
    piiRedactions: new client.Counter({
      name: 'gleaner_pii_redactions_total',
      help: 'Personal data replaced by a placeholder before an external model call, by kind',
      labelNames: ['kind'] as const,
      registers: r
    }),
    modelEndpointState: new client.Gauge({
      name: 'gleaner_model_endpoint_state',
      help: 'Each model endpoint\'s own breaker (primary, fallback_1…): 0 closed, 1 half_open, 2 open',
      labelNames: ['endpoint', 'model'] as const,
      registers: r
    }),
    modelFallbackLocal: new client.Counter({
      name: 'gleaner_model_fallback_local_total',
      help: 'Conversations the local analyzer answered because every model endpoint was open or failing',
      registers: r
    }),
    variantBatches: new client.Counter({
      name: 'gleaner_prompt_variant_batches_total',
      help: 'Batches (or their share) analysed per A/B prompt variant',
      labelNames: ['prompt_version'] as const,
      registers: r
    }),
    variantCalls: new client.Counter({
      name: 'gleaner_prompt_variant_calls_total',
      help: 'Model calls per A/B prompt variant, retries and re-asks included',
      labelNames: ['prompt_version'] as const,
      registers: r
    }),
    variantItems: new client.Counter({
      name: 'gleaner_prompt_variant_items_total',
      help: 'Conversations per A/B prompt variant, by outcome (ok, invalid_output: the answer held no valid insight, failed)',
      labelNames: ['prompt_version', 'outcome'] as const,
      registers: r
    }),
    variantTokens: new client.Counter({
      name: 'gleaner_prompt_variant_tokens_total',
      help: 'Model tokens per A/B prompt variant and type',
      labelNames: ['prompt_version', 'type'] as const,
      registers: r
    }),
    variantCost: new client.Counter({
      name: 'gleaner_prompt_variant_cost_usd_total',
      help: 'Model spend in US dollars per A/B prompt variant',
      labelNames: ['prompt_version'] as const,
      registers: r
    }),
    variantDuration: new client.Histogram({
      name: 'gleaner_prompt_variant_batch_duration_seconds',
      help: 'Time to analyse one batch share per A/B prompt variant, fallbacks and re-asks included',
      labelNames: ['prompt_version'] as const,
      buckets: MODEL_BUCKETS,
      registers: r
    }),
    circuitState: new client.Gauge({
      name: 'gleaner_circuit_state',
      help: 'Model circuit breaker: 0 closed, 1 half_open, 2 open',
      registers: r
    }),
    insightsStored: new client.Counter({
      name: 'gleaner_insights_stored_total',
      help: 'Insights stored, by model and whether served from the cache',
      labelNames: ['model', 'cached'] as const,
      registers: r
    }),
    analysisFailures: new client.Counter({
      name: 'gleaner_analysis_failures_total',
      help: 'Failed analysis attempts, by reason: a failed batch counts once, a conversation failing alone once each; dead_letter when one runs out of attempts',
      labelNames: ['reason'] as const,
      registers: r
    }),
    insightLatency: new client.Histogram({
      name: 'gleaner_insight_latency_seconds',
      help: 'From ingest commit to insight commit',
      buckets: INSIGHT_BUCKETS,
      registers: r
    }),
    claimDuration: new client.Histogram({
      name: 'gleaner_claim_duration_seconds',
      help: 'One claim statement of the worker (by ids from the in-process queue, or the oldest pending rows)',
      labelNames: ['kind'] as const,
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
      registers: r
    }),
    storeDuration: new client.Histogram({
      name: 'gleaner_store_duration_seconds',
      help: 'One store statement of the worker (insights, queue rows, cache and usage of the batches it carries), commit included',
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10],
      registers: r
    }),
    storeBatches: new client.Histogram({
      name: 'gleaner_store_batches_per_statement',
      help: 'Batches one store statement carries: the batches of one claim, and those that finished while the previous statement ran',
      buckets: [1, 2, 4, 8, 16, 32, 64],
      registers: r
    }),
    claimsHeld: new client.Gauge({
      name: 'gleaner_worker_claims',
      help: 'Conversations this instance holds claims on: in_flight (in a batch, leases renewed) or stranded (the release failed; retried every sweep, never renewed)',
      labelNames: ['state'] as const,
      registers: r
    }),
    leasesLost: new client.Counter({
      name: 'gleaner_worker_leases_lost_total',
      help: 'Claims of batches in flight found reclaimed by another instance at renewal (this instance was too slow to renew); their insights are not stored by this instance',
      registers: r
    }),
    workerConcurrency: new client.Gauge({
      name: 'gleaner_worker_concurrency',
      help: 'Batches the worker may run at once: WORKER_CONCURRENCY, or 1 while the event loop is later than INGEST_LAG_BUDGET_MS',
      registers: r
    }),
    workerPaused: new client.Gauge({
      name: 'gleaner_worker_paused',
      help: '1 while the worker is paused, by reason (circuit_open, budget_exhausted, database_unavailable)',
      labelNames: ['reason'] as const,
      registers: r
    }),
    streamClients: new client.Gauge({
      name: 'gleaner_stream_clients',
      help: 'Open /api/v1/insights/stream connections on this instance',
      registers: r
    }),
    streamRefused: new client.Counter({
      name: 'gleaner_stream_refused_total',
      help: 'Live streams refused, by reason (per_key_limit, instance_limit, unavailable)',
      labelNames: ['reason'] as const,
      registers: r
    }),
    streamSlowDisconnects: new client.Counter({
      name: 'gleaner_stream_slow_disconnects_total',
      help: 'Live streams closed because the client stopped reading and its buffer passed the bound',
      registers: r
    }),
    exportsInProgress: new client.Gauge({
      name: 'gleaner_exports_in_progress',
      help: 'Insight exports (/api/v1/insights/export) streaming on this instance',
      registers: r
    }),
    rateLimitStoreDegraded: new client.Gauge({
      name: 'gleaner_rate_limit_store_degraded',
      help: '1 while the shared rate-limit store (Redis) is failing and RATE_LIMIT_ON_STORE_ERROR applies',
      registers: r
    }),
    rateLimitFallbacks: new client.Counter({
      name: 'gleaner_rate_limit_store_fallbacks_total',
      help: 'Requests limited, and refused authentications counted, without Redis, by the policy applied (local, open, closed)',
      labelNames: ['policy'] as const,
      registers: r
    }),
    budgetRemaining: new client.Gauge({
      name: 'gleaner_budget_remaining_usd',
      help: 'Remaining model budget for the current UTC day (absent when no budget is set)',
      registers: r
    })
  }
}

export type Metrics = ReturnType<typeof createMetrics>
