// Configuration is read from the environment once, validated, defaulted and frozen here.
// Nothing else in Gleaner reads process.env. Keys keep their environment names so that
// the README, compose files and code all say the same thing.
import { hostname } from 'node:os'
import envSchema from 'env-schema'
import { type Static, Type } from 'typebox'
import { Value } from 'typebox/value'
import { PROMPT_VERSIONS } from './analyzers/prompts.ts'
import { RESPONSE_FORMATS, type ResponseFormat } from './analyzers/response-format.ts'
import { TIERS, type Tier } from './domain.ts'

const Int = (def: number, min: number, max: number, description: string) =>
  Type.Integer({ default: def, minimum: min, maximum: max, description })
const Num = (def: number, min: number, description: string) => Type.Number({ default: def, minimum: min, description })

export const ConfigSchema = Type.Object({
  NODE_ENV: Type.String({ default: 'production', description: 'informational; Gleaner behaves the same in every environment' }),
  PORT: Int(3000, 0, 65535, 'TCP port to listen on'),
  HOST: Type.String({ default: '127.0.0.1', description: 'address to listen on (0.0.0.0 in the container)' }),
  LOG_LEVEL: Type.Enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'], { default: 'info', description: 'pino level' }),
  LOG_REDACT_FIELDS: Type.String({
    default: '',
    description: 'extra comma-separated log paths to redact (PII), on top of authorization headers and keys'
  }),
  PLUGIN_TIMEOUT_MS: Int(
    0,
    0,
    3_600_000,
    'how long one start-up step (opening the database, migrating) may take before the start fails; 0 = no limit, so a slow machine or a small container starts however slowly (Fastify\'s 10 s default failed cold starts of PGlite on a busy 2-core machine); a slow step says so in the log every 10 s'
  ),
  INSTANCE_ID: Type.String({
    default: `${hostname()}-${process.pid}`,
    minLength: 1,
    maxLength: 100,
    description: 'names this process in leases, logs and /health; unique per running instance'
  }),

  // Tracing (off unless an endpoint is set)
  OTEL_EXPORTER_OTLP_ENDPOINT: Type.Optional(
    Type.String({ minLength: 1, description: 'OTLP/HTTP collector base URL, e.g. http://otel-collector:4318; unset → no tracing, no cost' })
  ),
  OTEL_SERVICE_NAME: Type.String({ default: 'gleaner', description: 'service.name on every span' }),

  // Database
  DATABASE_URL: Type.Optional(Type.String({ minLength: 1, description: 'PostgreSQL URL; unset → embedded PGlite' })),
  DATA_DIR: Type.String({ default: './data', description: 'embedded database directory' }),
  PGLITE_SHARED_BUFFERS: Type.String({
    default: '32MB',
    pattern: '^[0-9]{1,6}(kB|MB|GB)$',
    description:
      "the embedded database's page cache (PostgreSQL shared_buffers) inside this process's memory: PostgreSQL's 128MB default made a quarter of npm start's RSS; 32MB holds a busy backlog's working set"
  }),
  PGLITE_WASM_TIERING: Type.Union([Type.Literal('baseline'), Type.Literal('optimizing')], {
    default: 'baseline',
    description:
      "how V8 compiles the embedded database's WebAssembly: baseline (Liftoff only) keeps ~45 MB less resident and opens faster; optimizing (V8's default, TurboFan for hot code) drains ~14% faster on PGlite. Process-wide; PostgreSQL back ends are unaffected"
  }),
  DB_POOL_MAX: Int(10, 1, 200, 'pg pool size; 10 covers ingest plus the worker on a small machine'),
  DB_STATEMENT_TIMEOUT_MS: Int(15_000, 0, 600_000, 'server-side cap per statement, so a stuck query frees its connection'),
  DB_READ_POOL_MAX: Int(3, 1, 200, 'PostgreSQL connections for analytical reads (summary, lists, exports), apart from DB_POOL_MAX: reads queue for these and never take the ones ingest and the worker need'),
  DB_READ_STATEMENT_TIMEOUT_MS: Int(10_000, 0, 600_000, 'cap per analytical read; a read cut by it is a 503 with Retry-After, and its connection is free again'),

  // Auth and protection
  AUTH: Type.Union([Type.Literal('on'), Type.Literal('off')], {
    default: 'on',
    description: 'off disables API keys, rate limits per key and quotas (logs a warning at start)'
  }),
  AUTH_FAILURES_PER_WINDOW: Int(30, 1, 1_000_000, 'refused authentications (401, 403) per client IP per RATE_LIMIT_WINDOW_MS, summed over every instance with REDIS_URL, before that IP gets 429 without a key look-up: an honest client that got its key wrong stops long before 30'),
  KEY_CACHE_TTL_MS: Int(5_000, 0, 600_000, 'how long a looked-up key is trusted; bounds how late a revoke takes effect'),
  METRICS_API_KEY: Type.Optional(Type.String({ minLength: 8, description: 'when set, /metrics requires Authorization: Bearer <this>' })),
  METRICS_PORT: Type.Optional(
    Type.Integer({
      minimum: 1,
      maximum: 65535,
      description:
        'when set, /metrics is served on this port (on HOST) by a listener of its own and no longer on PORT, so operators can keep metrics off the public port; unset → /metrics on PORT'
    })
  ),
  REDIS_URL: Type.Optional(Type.String({ minLength: 1, description: 'shared store for rate limits and the refused-auth throttle; unset → per-process counts' })),
  RATE_LIMIT_ON_STORE_ERROR: Type.Enum(['local', 'open', 'closed'], {
    default: 'local',
    description:
      'when Redis fails or hangs: local = count in this process at the same limits (never unlimited), open = no limits, closed = 503 for every limited request'
  }),
  REDIS_CONNECT_TIMEOUT_MS: Int(1_000, 50, 60_000, 'a Redis that cannot be reached within this falls back at once; it is on loopback or the LAN'),
  REDIS_COMMAND_TIMEOUT_MS: Int(250, 10, 60_000, 'one rate-limit count takes well under 1 ms; a hung Redis must not hold requests longer than this'),
  REDIS_RETRY_MS: Int(5_000, 100, 600_000, 'after a Redis failure, count locally this long before trying Redis again, so a hung Redis costs one timeout per interval, not one per request'),
  TRUST_PROXY: Type.String({ default: 'false', description: 'fastify trustProxy: false, true, a hop count or a list of CIDRs' }),
  CORS_ORIGIN: Type.String({ default: '', description: 'comma-separated allowed origins; empty → CORS off' }),
  RATE_LIMIT_WINDOW_MS: Int(60_000, 1_000, 86_400_000, 'rate-limit window'),
  RATE_LIMIT_FREE: Int(60, 1, 10_000_000, 'requests per window, tier free (reads)'),
  RATE_LIMIT_PRO: Int(600, 1, 10_000_000, 'requests per window, tier pro (reads)'),
  RATE_LIMIT_ENTERPRISE: Int(6000, 1, 10_000_000, 'requests per window, tier enterprise (reads)'),
  RATE_LIMIT_INGEST_FACTOR: Num(0.5, 0.01, 'ingest limit = tier limit × this: ingest costs money downstream'),
  RATE_LIMIT_ANONYMOUS: Int(600, 1, 10_000_000, 'per-IP requests per window when no key applies (AUTH=off)'),
  QUOTA_FREE_DAILY: Int(1_000, 0, 1e12, 'conversations per UTC day, tier free'),
  QUOTA_FREE_MONTHLY: Int(20_000, 0, 1e12, 'conversations per UTC month, tier free'),
  QUOTA_PRO_DAILY: Int(100_000, 0, 1e12, 'conversations per UTC day, tier pro'),
  QUOTA_PRO_MONTHLY: Int(2_000_000, 0, 1e12, 'conversations per UTC month, tier pro'),
  QUOTA_ENTERPRISE_DAILY: Int(10_000_000, 0, 1e12, 'conversations per UTC day, tier enterprise'),
  QUOTA_ENTERPRISE_MONTHLY: Int(200_000_000, 0, 1e12, 'conversations per UTC month, tier enterprise'),

  // Input limits (the contract's defaults)
  REQUEST_TIMEOUT_MS: Int(30_000, 100, 600_000, 'a request (headers and body) must arrive within this: slow clients must not hold sockets; 30 s is far above any honest upload here'),
  BODY_LIMIT_BYTES: Int(1_048_576, 1024, 1_073_741_824, 'max body of a single ingest or any other route'),
  BATCH_BODY_LIMIT_BYTES: Int(16_777_216, 1024, 1_073_741_824, 'max body of a batch ingest'),
  BATCH_MAX_ITEMS: Int(1000, 1, 100_000, 'conversations per batch request'),
  MAX_MESSAGES: Int(500, 1, 100_000, 'messages per conversation'),
  MAX_CONTENT_CHARS: Int(32_000, 1, 10_000_000, 'characters per message'),
  METADATA_MAX_BYTES: Int(8192, 2, 1_048_576, 'serialized metadata size'),
  METADATA_MAX_DEPTH: Int(4, 1, 64, 'metadata nesting depth'),

  // Queue, worker, leases
  WORKER_ENABLED: Type.Boolean({ default: true, description: 'run the analysis worker in this process' }),
  QUEUE_MAX: Int(10_000, 1, 10_000_000, 'in-process queue of ids; beyond it rows wait in the database (bounded memory)'),
  BACKLOG_HARD_LIMIT: Int(5_000_000, 1, 1e12, 'pending rows above which ingest answers 503 instead of piling up'),
  WORKER_CONCURRENCY: Int(2, 1, 256, 'batches in flight per process; each batch is one model call at a time, so this bounds model calls too'),
  INGEST_LAG_BUDGET_MS: Int(
    50,
    1,
    60_000,
    'while the event loop was later than this in the last second, the worker runs one batch at a time so ingest requests never queue behind several batches of analysis; 50 ms keeps a single POST\'s p99 near its commit time'
  ),
  BATCH_MIN: Int(1, 1, 10_000, 'smallest adaptive batch'),
  BATCH_MAX: Int(100, 1, 10_000, 'largest adaptive batch'),
  BATCH_INITIAL: Int(20, 1, 10_000, 'batch size at start'),
  BATCH_LATENCY_TARGET_MS: Int(10_000, 1, 600_000, 'a batch slower than this shrinks the batch size'),
  SWEEP_INTERVAL_MS: Int(1_000, 10, 600_000, 'how often the sweep reclaims expired leases, refreshes the backlog and wakes the worker'),
  LEASE_SECONDS: Int(
    30,
    3,
    86_400,
    'a claim not renewed for this long is reclaimed by any instance; batches in flight renew theirs every third of it, so a crashed instance\'s work is back within one lease while a slow model call keeps its claim'
  ),
  MAX_ATTEMPTS: Int(5, 1, 100, 'claims before a conversation becomes a dead letter (failed)'),
  RETRY_BASE_MS: Int(2_000, 0, 3_600_000, 'first back-off after a failed analysis; doubles per attempt'),
  STUCK_AFTER_SECONDS: Int(300, 1, 86_400, 'work waiting and no batch finished for this long → /health answers 503 stuck'),
  STREAM_HEARTBEAT_MS: Int(15_000, 100, 600_000, 'comment line on idle streams; under common proxies\' 30-60 s idle cut-offs'),
  STREAM_MAX: Int(500, 1, 100_000, 'live streams per instance (503 beyond): each holds a socket and a share of every fan-out, and 600 unbounded streams cut ingest ninefold'),
  STREAM_MAX_PER_KEY: Int(10, 1, 100_000, 'live streams per API key, or per client IP without keys (429 beyond): a dashboard needs a few, not hundreds'),
  STREAM_SUBSCRIBE_TIMEOUT_MS: Int(5_000, 10, 600_000, 'a stream that cannot subscribe to new insights within this (database down) is answered 503'),
  SHUTDOWN_TIMEOUT_MS: Int(10_000, 100, 600_000, 'how long shutdown waits for in-flight batches'),

  // Retention
  RETENTION_DAYS: Int(
    0,
    0,
    36_500,
    'conversations and insights older than this are dropped, a whole month partition at a time (so kept between this and a month more); 0 = kept for ever'
  ),
  ROLLUP_RETENTION_DAYS: Int(
    0,
    0,
    36_500,
    'summary rollups (counts, no content) older than this are deleted; 0 = kept for ever; when set with RETENTION_DAYS, at least as long, so summaries can reach further back than the raw data'
  ),

  // Prefilter
  PREFILTER_ENABLED: Type.Boolean({ default: true, description: 'skip conversations with too little customer text' }),
  PREFILTER_MIN_USER_CHARS: Int(12, 0, 100_000, 'user text shorter than this (after removing links and boilerplate) is skipped'),
  PREFILTER_MIN_USER_WORDS: Int(3, 0, 100_000, 'user text with fewer words is skipped'),
  PREFILTER_BOILERPLATE: Type.String({
    default: 'hi,hello,hey,thanks,thank you,ok,okay,bye,test,yes,no,ping',
    description: 'comma-separated phrases that alone carry no signal'
  }),

  // Analysis cache
  CACHE_TTL_SECONDS: Int(7 * 86_400, 0, 10 * 365 * 86_400, 'how long a cached insight may be reused'),
  CACHE_LRU_SIZE: Int(10_000, 0, 10_000_000, 'in-memory entries in front of the cache table'),

  // Model
  MODEL_PROVIDER: Type.Union([Type.Literal('local'), Type.Literal('openai-compatible')], {
    default: 'local',
    description: 'local (embedded lexicon analyzer, no network) or openai-compatible'
  }),
  MODEL_BASE_URL: Type.Optional(Type.String({ minLength: 1, description: 'e.g. https://api.x.ai/v1; /chat/completions is appended' })),
  MODEL_API_KEY: Type.Optional(Type.String({ description: 'sent as a Bearer token; never logged' })),
  MODEL_NAME: Type.Optional(Type.String({ minLength: 1, description: 'model id, e.g. grok-4-fast, gpt-4o-mini, llama3.1' })),
  MODEL_TIMEOUT_MS: Int(60_000, 100, 600_000, 'per model call; a hung call is aborted'),
  MODEL_MAX_RETRIES: Int(3, 0, 20, 'retries of one call on network errors, 429 and 5xx'),
  MODEL_RETRY_BASE_MS: Int(500, 0, 600_000, 'base of exponential back-off with full jitter'),
  MODEL_RETRY_MAX_MS: Int(30_000, 0, 3_600_000, 'cap of one back-off (and of an honoured Retry-After)'),
  MODEL_MAX_CONNECTIONS: Int(8, 1, 1024, 'keep-alive connections to the model host'),
  MODEL_MAX_INPUT_TOKENS_PER_CONVERSATION: Int(1_500, 50, 1_000_000, 'conversation text is trimmed to this many tokens'),
  MODEL_JSON_MODE: Type.Boolean({ default: true, description: 'send response_format json_object (when MODEL_RESPONSE_FORMAT is unset)' }),
  MODEL_RESPONSE_FORMAT: Type.Optional(
    Type.Enum(RESPONSE_FORMATS, {
      description:
        'json_schema (OpenAI, xAI, recent vLLM and Ollama: the answer is held to the insight schema), json_object (JSON mode) or none; unset → json_object, or none when MODEL_JSON_MODE=false'
    })
  ),
  MODEL_MAX_INPUT_TOKENS_PER_CALL: Int(
    24_000,
    500,
    10_000_000,
    'a batch is cut into calls of at most this many estimated input tokens, as well as by count; 24k fits a 32k context window with room for the answer'
  ),
  MODEL_OUTPUT_TOKENS_PER_ITEM: Int(
    250,
    50,
    100_000,
    'max_tokens sent is this × the conversations in the call (plus a little); an insight is ~120 tokens, so 250 leaves room for a long summary'
  ),
  MODEL_MAX_TOKENS_PARAM: Type.Union([Type.Literal('max_tokens'), Type.Literal('max_completion_tokens')], {
    default: 'max_tokens',
    description:
      'the request field the output cap goes in: max_tokens (xAI, vLLM, Ollama, older OpenAI models) or max_completion_tokens (OpenAI\'s reasoning models, which refuse max_tokens)'
  }),
  MODEL_MAX_OUTPUT_TOKENS: Int(16_384, 256, 1_000_000, 'cap on max_tokens: the largest answer many models may write'),
  MODEL_FALLBACKS: Type.String({
    default: '',
    description:
      'ordered fallback endpoints, a JSON array of {"base_url", "api_key"?, "model", "price_input"?, "price_output"?, "price_cached_input"?} (USD per million tokens); each has its own breaker and takes a batch when those before it are open or failing'
  }),
  MODEL_FALLBACK_LOCAL: Type.Union([Type.Literal('on'), Type.Literal('off')], {
    default: 'off',
    description: 'on: when every model endpoint is open or failing, the embedded local analyzer answers, so the drain never stops'
  }),
  PROMPT_VARIANTS: Type.String({
    default: '',
    description:
      'A/B prompts: "v2:90,v2-terse:10" sends each conversation (by a stable hash of its id) to a registered prompt with those weights; empty → the current prompt for all'
  }),
  SUMMARY_LANGUAGE: Type.String({ default: 'English', minLength: 2, maxLength: 40, description: 'the language model summaries are written in' }),
  REDACT_PII: Type.Optional(
    Type.Union([Type.Literal('on'), Type.Literal('off')], {
      description:
        'replace emails, phones, cards, IBANs, IPs, handles, links and long numbers with typed placeholders (<EMAIL_1>) before any external model call; unset → on unless MODEL_PROVIDER=local'
    })
  ),
  MODEL_PRICE_INPUT_PER_MTOK: Num(0, 0, 'USD per million input tokens'),
  MODEL_PRICE_OUTPUT_PER_MTOK: Num(0, 0, 'USD per million output tokens'),
  MODEL_PRICE_CACHED_INPUT_PER_MTOK: Type.Optional(
    Type.Number({
      minimum: 0,
      description:
        "USD per million input tokens the provider served from its prompt cache (usage.prompt_tokens_details.cached_tokens); unset → the input price. OpenAI and xAI bill them at a fraction of it"
    })
  ),
  MODEL_PRICES: Type.String({
    default: '',
    description: 'per-model prices overriding the ones above: "model=in/out[/cached],model2=in/out" in USD per million tokens'
  }),
  DAILY_BUDGET_USD: Type.Optional(
    Type.Number({ minimum: 0, description: 'model spend cap per UTC day; when reached the worker pauses until the next day' })
  ),
  BREAKER_FAILURE_THRESHOLD: Int(5, 1, 1000, 'consecutive failed batches that open the circuit'),
  BREAKER_COOLDOWN_MS: Int(30_000, 10, 3_600_000, 'how long the circuit stays open before a half-open probe')
})

/** The schema's values with the defaults that depend on other variables resolved. */
export type Config = Readonly<
  Omit<Static<typeof ConfigSchema>, 'MODEL_RESPONSE_FORMAT' | 'REDACT_PII'> & { MODEL_RESPONSE_FORMAT: ResponseFormat; REDACT_PII: 'on' | 'off' }
>

export class ConfigError extends Error {
  override name = 'ConfigError'
}

/** Parse and validate an environment; throws ConfigError naming the variable. */
export function loadConfig(env: Record<string, string | undefined> = process.env): Config {
  let parsed: Static<typeof ConfigSchema>
  try {
    parsed = envSchema<Static<typeof ConfigSchema>>({
      schema: ConfigSchema as object,
      data: env,
      dotenv: false,
      env: false // read only what we are given: tests pass their own environment
    })
  } catch (err) {
    throw new ConfigError(`invalid configuration: ${(err as Error).message}`)
  }
  if (parsed.BATCH_MIN > parsed.BATCH_MAX) throw new ConfigError('invalid configuration: BATCH_MIN must be <= BATCH_MAX')
  if (parsed.RETENTION_DAYS && parsed.ROLLUP_RETENTION_DAYS && parsed.ROLLUP_RETENTION_DAYS < parsed.RETENTION_DAYS) {
    throw new ConfigError('invalid configuration: ROLLUP_RETENTION_DAYS must be 0 (for ever) or at least RETENTION_DAYS: summaries would miss data the lists still hold')
  }
  if (parsed.METRICS_PORT === parsed.PORT) throw new ConfigError('invalid configuration: METRICS_PORT must differ from PORT')
  if (parsed.MODEL_PROVIDER === 'openai-compatible') {
    for (const name of ['MODEL_BASE_URL', 'MODEL_NAME'] as const) {
      if (!parsed[name]) throw new ConfigError(`invalid configuration: ${name} is required when MODEL_PROVIDER=openai-compatible`)
    }
  }
  parseModelPrices(parsed.MODEL_PRICES) // validates format early
  parseModelFallbacks(parsed.MODEL_FALLBACKS)
  for (const { name } of parsePromptVariants(parsed.PROMPT_VARIANTS)) {
    if (!(PROMPT_VERSIONS as readonly string[]).includes(name)) {
      throw new ConfigError(`invalid configuration: PROMPT_VARIANTS names "${name}", which is not a registered prompt (${PROMPT_VERSIONS.join(', ')})`)
    }
  }
  return Object.freeze({
    ...parsed,
    MODEL_RESPONSE_FORMAT: parsed.MODEL_RESPONSE_FORMAT ?? (parsed.MODEL_JSON_MODE ? 'json_object' : 'none'),
    // text leaves the machine only with an external model: redact by default exactly then
    REDACT_PII: parsed.REDACT_PII ?? (parsed.MODEL_PROVIDER === 'local' ? 'off' : 'on')
  })
}

/** What one key may do, by its tier: requests per RATE_LIMIT_WINDOW_MS and new conversations per UTC day and month. */
export interface TierLimits {
  reads: number
  /** ingest costs model money downstream: RATE_LIMIT_INGEST_FACTOR of reads, at least 1 */
  ingests: number
  daily: number
  monthly: number
}

/**
 * The one tier → limits table, read by the rate limiter, the quotas and the usage report.
 * `anonymous` is a client without a key (AUTH=off): per-IP request limits, and no quotas,
 * since quotas are counted per key.
 */
export function tierLimits(config: Config): { tiers: Readonly<Record<Tier, TierLimits>>; anonymous: Omit<TierLimits, 'daily' | 'monthly'> } {
  const requests = (reads: number) => ({ reads, ingests: Math.max(1, Math.floor(reads * config.RATE_LIMIT_INGEST_FACTOR)) })
  const row: Record<Tier, TierLimits> = {
    free: { ...requests(config.RATE_LIMIT_FREE), daily: config.QUOTA_FREE_DAILY, monthly: config.QUOTA_FREE_MONTHLY },
    pro: { ...requests(config.RATE_LIMIT_PRO), daily: config.QUOTA_PRO_DAILY, monthly: config.QUOTA_PRO_MONTHLY },
    enterprise: { ...requests(config.RATE_LIMIT_ENTERPRISE), daily: config.QUOTA_ENTERPRISE_DAILY, monthly: config.QUOTA_ENTERPRISE_MONTHLY }
  }
  return { tiers: Object.freeze(Object.fromEntries(TIERS.map((t) => [t, Object.freeze(row[t])])) as Record<Tier, TierLimits>), anonymous: requests(config.RATE_LIMIT_ANONYMOUS) }
}

/** "grok-4=3/15,gpt-4o-mini=0.15/0.6" → map of USD per million tokens. */
export function parseModelPrices(spec: string): Map<string, { input: number; output: number; cachedInput?: number }> {
  const prices = new Map<string, { input: number; output: number; cachedInput?: number }>()
  for (const part of spec.split(',').map((s) => s.trim()).filter(Boolean)) {
    const m = /^([^=]+)=([0-9.]+)\/([0-9.]+)(?:\/([0-9.]+))?$/.exec(part)
    if (!m) throw new ConfigError(`invalid configuration: MODEL_PRICES entry "${part}" must look like model=in/out or model=in/out/cached`)
    prices.set(m[1]!.trim(), { input: Number(m[2]), output: Number(m[3]), ...(m[4] !== undefined ? { cachedInput: Number(m[4]) } : {}) })
  }
  return prices
}

export interface FallbackEndpoint {
  base_url: string
  api_key?: string
  model: string
  /** USD per million tokens */
  price_input?: number
  price_output?: number
  price_cached_input?: number
}

const FallbackEndpointSchema = Type.Object(
  {
    base_url: Type.String({ minLength: 1 }),
    api_key: Type.Optional(Type.String()),
    model: Type.String({ minLength: 1 }),
    price_input: Type.Optional(Type.Number({ minimum: 0 })),
    price_output: Type.Optional(Type.Number({ minimum: 0 })),
    price_cached_input: Type.Optional(Type.Number({ minimum: 0 }))
  },
  { additionalProperties: false }
)
/** More endpoints than this is a configuration mistake: each one is tried before giving up on a batch. */
const MAX_FALLBACKS = 8

/** MODEL_FALLBACKS → the endpoints, in order; '' → none. */
export function parseModelFallbacks(spec: string): FallbackEndpoint[] {
  if (!spec.trim()) return []
  let value: unknown
  try {
    value = JSON.parse(spec)
  } catch {
    throw new ConfigError('invalid configuration: MODEL_FALLBACKS must be a JSON array')
  }
  if (!Array.isArray(value) || value.length > MAX_FALLBACKS) throw new ConfigError(`invalid configuration: MODEL_FALLBACKS must be a JSON array of at most ${MAX_FALLBACKS} endpoints`)
  value.forEach((e, i) => {
    if (!Value.Check(FallbackEndpointSchema, e)) {
      throw new ConfigError(`invalid configuration: MODEL_FALLBACKS[${i}] must be {"base_url", "api_key"?, "model", "price_input"?, "price_output"?, "price_cached_input"?}`)
    }
    try {
      new URL((e as FallbackEndpoint).base_url)
    } catch {
      throw new ConfigError(`invalid configuration: MODEL_FALLBACKS[${i}].base_url is not a URL`)
    }
  })
  return value as FallbackEndpoint[]
}

/** PROMPT_VARIANTS → [name, weight] pairs; names are checked against the registry by the analyzer. */
export function parsePromptVariants(spec: string): Array<{ name: string; weight: number }> {
  const variants: Array<{ name: string; weight: number }> = []
  for (const part of spec.split(',').map((s) => s.trim()).filter(Boolean)) {
    const m = /^([\w.@-]{1,40}):(\d{1,6})$/.exec(part)
    if (!m) throw new ConfigError(`invalid configuration: PROMPT_VARIANTS entry "${part}" must look like name:weight`)
    if (variants.some((v) => v.name === m[1])) throw new ConfigError(`invalid configuration: PROMPT_VARIANTS names ${m[1]} twice`)
    variants.push({ name: m[1]!, weight: Number(m[2]) })
  }
  if (variants.length && variants.every((v) => v.weight === 0)) throw new ConfigError('invalid configuration: PROMPT_VARIANTS weights must not all be 0')
  return variants
}
