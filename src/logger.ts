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

export function createLogger(config: Config, destination?: DestinationStream): Logger {
  const extra = config.LOG_REDACT_FIELDS.split(',')
    .map((s) => s.trim())
    .filter(Boolean)
  return pino(
    {
      level: config.LOG_LEVEL,
      base: { instance: config.INSTANCE_ID },
      redact: { paths: [...REDACT_PATHS, ...extra], censor: '[redacted]' },
      timestamp: pino.stdTimeFunctions.isoTime
    },
    destination
  )
}
