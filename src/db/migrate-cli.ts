// npm run db:migrate: apply migrations/ to DATABASE_URL (or the embedded database) and exit.
// The server applies them at start-up too; this is for deploy pipelines that migrate first.
import { loadConfig } from '../config.ts'
import { createLogger } from '../logger.ts'
import { openDatabase } from './client.ts'

const config = loadConfig()
const logger = createLogger(config)
const database = await openDatabase(config, logger)
await database.close()
logger.info('migrations applied')
