// Database upkeep every instance runs, worker or not: month partitions made ahead of time (an
// ingest into a month without one would fail), and retention (RETENTION_DAYS,
// ROLLUP_RETENTION_DAYS). Each step takes a lock only one instance gets at a time; the
// others skip it. Registered after the database, so its onClose (waiting for a step in
// flight) runs before the pool closes.
import fp from 'fastify-plugin'
import type { Logger } from 'pino'
import type { Config } from '../config.ts'

/**
 * Partitions exist for this month and the next two: an instance that cannot reach the
 * database for weeks still finds next month's partition when it comes back.
 */
const MONTHS_AHEAD = 2
/** Hourly: partitions are made months ahead and retention is counted in days. */
const MAINTENANCE_EVERY_MS = 3_600_000
const DAY_MS = 86_400_000

export default fp(
  async (app, opts: { config: Config; logger: Logger; now?: () => number }) => {
    const { config } = opts
    const now = opts.now ?? Date.now
    const log = opts.logger.child({ module: 'maintenance' })
    const repo = app.repos.partitions

    async function run(): Promise<void> {
      const created = await repo.ensureAhead(now(), MONTHS_AHEAD)
      if (created.length) log.info({ created }, 'created month partitions ahead of time')
      if (config.RETENTION_DAYS > 0) {
        const { dropped, keys, queued } = await repo.dropBefore(now() - config.RETENTION_DAYS * DAY_MS)
        if (dropped.length) log.info({ dropped, keys, queued, retention_days: config.RETENTION_DAYS }, 'retention dropped partitions older than RETENTION_DAYS')
      }
      if (config.ROLLUP_RETENTION_DAYS > 0) {
        const day = new Date(now() - config.ROLLUP_RETENTION_DAYS * DAY_MS).toISOString().slice(0, 10)
        const trimmed = await repo.trimRollups(day)
        if (trimmed) log.info({ trimmed, before: day }, 'retention deleted old rollup rows')
      }
    }

    let running: Promise<void> | undefined
    const step = () => {
      running ??= run()
        .catch((err) => log.warn({ err: { message: (err as Error).message } }, 'maintenance step failed; trying again at the next one'))
        .finally(() => {
          running = undefined
        })
      return running
    }
    app.decorate('maintenance', { run: step })

    // before the app serves: this month and the next ones have their partitions
    await step()
    const timer = setInterval(() => void step(), MAINTENANCE_EVERY_MS)
    timer.unref()
    app.addHook('onClose', async () => {
      clearInterval(timer)
      await running
    })
  },
  { name: 'maintenance', dependencies: ['database'] }
)

declare module 'fastify' {
  interface FastifyInstance {
    /** one maintenance step now (partitions ahead, retention); resolves when it is done */
    maintenance: { run(): Promise<void> }
  }
}
