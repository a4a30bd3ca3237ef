// pino, JSON to stdout. Secrets are redacted by configuration, not by hope: authorization
// headers, API keys in any position we know of, and operator-named PII paths.
import pino, { type DestinationStream, type Logger } from 'pino'
import type { Config } from './config.ts'

export const REDACT_PATHS = [
  'req.headers.authorization',
  'req.headers["x-api-key"]',
  'req.headers.cookie',
  'headers.authorization',
  'authorization',
  'api_key',
  'apiKey',
  'key',
  '*.api_key',
  '*.apiKey',
  'MODEL_API_KEY',
  '*.MODEL_API_KEY',
  'METRICS_API_KEY',
  '*.METRICS_API_KEY'
]

/**
 * Fields of a database error that repeat what the failed statement held: drizzle's
 * `params` (a key hash, conversation text), PostgreSQL's `detail` ("Key (x)=(value)").
 */
const STATEMENT_VALUE_FIELDS = new Set(['params', 'parameters', 'detail'])
/** drizzle's message is "Failed query: <sql>\nparams: <values>": the values go. */
const PARAMS_MARKER = '\nparams:'
const MAX_ERROR_DEPTH = 5

function withoutStatementValues(value: unknown, depth = 0): unknown {
  if (depth > MAX_ERROR_DEPTH || value === null || typeof value !== 'object') {
    if (typeof value === 'string') {
      const cut = value.indexOf(PARAMS_MARKER)
      return cut === -1 ? value : `${value.slice(0, cut)}\nparams: [redacted]`
    }
    return value
  }
  const out: Record<string, unknown> = {}
  for (const [k, v] of Object.entries(value)) {
    if (!STATEMENT_VALUE_FIELDS.has(k)) out[k] = withoutStatementValues(v, depth + 1)
  }
  return out
}

/** pino's error serializer, then the statement's values removed: outages must not log secrets or text. */
export function serializeError(err: unknown): unknown {
  return withoutStatementValues(err instanceof Error ? pino.stdSerializers.err(err) : err)
}

export function createLogger(config: Config, destination?: DestinationStream): Logger {
  const extra = config.LOG_REDACT_FIELDS.split(',')
    .map((s) => s.trim())
    .filter(Boolean)
  return pino(
    {
      level: config.LOG_LEVEL,
      base: { instance: config.INSTANCE_ID },
      redact: { paths: [...REDACT_PATHS, ...extra], censor: '[redacted]' },
      serializers: { err: serializeError },
      timestamp: pino.stdTimeFunctions.isoTime
    },
    destination
  )
}
