// The database resource: opens PostgreSQL or PGlite, applies migrations, builds the
// repositories, and closes the pool last (registered first, so its onClose runs last).
import fp from 'fastify-plugin'
import type { Logger } from 'pino'
import type { Config } from '../config.ts'
import { analysisCacheRepository } from '../db/analysis-cache.ts'
import { apiKeysRepository } from '../db/api-keys.ts'
import { type Database, openDatabase } from '../db/client.ts'
import { conversationsRepository } from '../db/conversations.ts'
import { erasureRepository } from '../db/erasure.ts'
import { insightsRepository } from '../db/insights.ts'
import { partitionsRepository } from '../db/partitions.ts'
import { usageRepository } from '../db/usage.ts'
import { startupStep } from '../startup-progress.ts'

export interface Repositories {
  conversations: ReturnType<typeof conversationsRepository>
  insights: ReturnType<typeof insightsRepository>
  analysisCache: ReturnType<typeof analysisCacheRepository>
  usage: ReturnType<typeof usageRepository>
  apiKeys: ReturnType<typeof apiKeysRepository>
  erasure: ReturnType<typeof erasureRepository>
  partitions: ReturnType<typeof partitionsRepository>
  /** insights read on the analytical connections: what the analyst routes use */
  insightReads: ReturnType<typeof insightsRepository>
}

declare module 'fastify' {
  interface FastifyInstance {
    database: Database
    repos: Repositories
  }
}

export default fp(
  async (app, opts: { config: Config; logger: Logger; database?: Database; open?: typeof openDatabase }) => {
    const open = opts.open ?? openDatabase
    const database =
      opts.database ?? (await startupStep(opts.logger.child({ module: 'database' }), 'opening the database', () => open(opts.config, opts.logger)))
    app.decorate('database', database)
    app.decorate('repos', {
      conversations: conversationsRepository(database),
      insights: insightsRepository(database),
      analysisCache: analysisCacheRepository(database),
      usage: usageRepository(database),
      apiKeys: apiKeysRepository(database),
      erasure: erasureRepository(database),
      partitions: partitionsRepository(database),
      insightReads: insightsRepository(database.analytics ?? database)
    })
    // a database handed in by the caller (tests sharing one PGlite) is the caller's to close
    if (!opts.database) app.addHook('onClose', async () => database.close())
  },
  { name: 'database' }
)
