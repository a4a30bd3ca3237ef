// The only file that listens (the app on PORT; with METRICS_PORT, the metrics listener too).
// Signals close the app gracefully: stop accepting, let in-flight batches finish (bounded),
// release claims, close the pool.
import closeWithGrace from 'close-with-grace'
import { ConfigError, loadConfig } from './config.ts'
import { SCOPES } from './domain.ts'
import { createLogger } from './logger.ts'

let config: ReturnType<typeof loadConfig>
try {
  config = loadConfig()
} catch (err) {
  if (err instanceof ConfigError) {
    console.error(err.message)
    process.exit(78) // EX_CONFIG
  }
  throw err
}

const logger = createLogger(config)
if (config.AUTH === 'off') logger.warn('AUTH=off: every route is open to anyone who can reach this port')

// tracing must hook modules before the app loads them, so the app is imported after it
const stopTracing = config.OTEL_EXPORTER_OTLP_ENDPOINT ? await (await import('./tracing.ts')).startTracing(config) : null
const { buildApp } = await import('./app.ts')
const { buildMetricsServer } = await import('./metrics-server.ts')
const app = await buildApp(config, { logger })
const metricsServer = config.METRICS_PORT === undefined ? null : await buildMetricsServer(app.metrics, config, logger)

closeWithGrace({ delay: config.SHUTDOWN_TIMEOUT_MS + 5_000, logger }, async ({ signal, err }) => {
  if (err) logger.error({ err }, 'closing after an uncaught error')
  else logger.info({ signal }, 'closing')
  await app.close()
  // metrics last: a scrape during the drain still sees it
  await metricsServer?.close()
  await stopTracing?.()
})

// Zero-setup start: a database without any key gets one admin key, printed once (after
// listening, with the address to use), so the first curl works without reading about the CLI.
let firstKey: string | undefined
if (config.AUTH === 'on' && (await app.repos.apiKeys.count()) === 0) {
  const { key, record } = await app.repos.apiKeys.create({ name: 'bootstrap-admin', scopes: [...SCOPES], tier: 'enterprise' })
  logger.warn({ audit: 'key_created', key_id: record.id, key_prefix: record.prefix }, 'no API key existed: created an admin key')
  firstKey = key
}

// the metrics port first: a port that is taken fails the start before the API serves traffic
const metricsAddress = metricsServer ? await metricsServer.listen({ port: config.METRICS_PORT, host: config.HOST }) : undefined
const address = await app.listen({ port: config.PORT, host: config.HOST })
// A parent that started this process with an IPC channel (the bench, with PORT=0) learns
// the address from the process itself, so it can never mistake another server for it.
process.send?.({ type: 'listening', url: address, metrics_url: metricsAddress, pid: process.pid, instance_id: config.INSTANCE_ID })

if (firstKey) {
  process.stdout.write(
    `\nGleaner created its first API key (scopes ${SCOPES.join(',')}). It is shown only this once:\n\n    ${firstKey}\n\n` +
      'Use it as "Authorization: Bearer <key>". While this server runs, create more through it:\n' +
      `    GLEANER_ADMIN_KEY=<this key> npm run keys -- create --name NAME --scopes ingest,read --url ${address}\n\n`
  )
}
