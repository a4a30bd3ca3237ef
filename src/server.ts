// The only file that listens. Signals close the app gracefully: stop accepting, let
// in-flight batches finish (bounded), release claims, close the pool.
import closeWithGrace from 'close-with-grace'
import { buildApp } from './app.ts'
import { ConfigError, loadConfig } from './config.ts'
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

const app = await buildApp(config, { logger })

closeWithGrace({ delay: config.SHUTDOWN_TIMEOUT_MS + 5_000, logger }, async ({ signal, err }) => {
  if (err) logger.error({ err }, 'closing after an uncaught error')
  else logger.info({ signal }, 'closing')
  await app.close()
})

await app.listen({ port: config.PORT, host: config.HOST })
