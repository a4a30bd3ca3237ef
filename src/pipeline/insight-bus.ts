// Delivers stored insights to live streams on every instance. The statement that stores
// insights announces their ids with PostgreSQL NOTIFY (src/db/insights.ts); each instance
// LISTENs once (not once per client), loads the insights with one query per notification
// and fans them out in memory. PGlite speaks the same LISTEN/NOTIFY in-process, so both back
// ends take one path.
import { EventEmitter } from 'node:events'
import type { Logger } from 'pino'
import type { Database } from '../db/client.ts'
import type { InsightRow, InsightsRepository } from '../db/insights.ts'
import { INSIGHTS_CHANNEL } from '../db/notify.ts'


export class InsightBus {
  private readonly events = new EventEmitter()
  private unlisten: (() => Promise<void>) | null = null
  private listening: Promise<void> | null = null
  private subscribers = 0

  constructor(
    private readonly database: Database,
    private readonly insights: InsightsRepository,
    private readonly log: Logger
  ) {
    this.events.setMaxListeners(0) // one listener per stream client, bounded by connections
  }

  get clients() {
    return this.subscribers
  }

  /** Starts listening on first use: an instance nobody streams from pays nothing. */
  async subscribe(fn: (insight: InsightRow) => void): Promise<() => void> {
    this.listening ??= this.database
      .listen(INSIGHTS_CHANNEL, (payload) => void this.deliver(payload))
      .then((unlisten) => {
        this.unlisten = unlisten
      })
    await this.listening
    this.events.on('insight', fn)
    this.subscribers++
    let done = false
    return () => {
      if (done) return
      done = true
      this.subscribers--
      this.events.off('insight', fn)
    }
  }

  private async deliver(payload: string) {
    if (this.events.listenerCount('insight') === 0) return
    const ids = payload.split(',').filter(Boolean)
    try {
      for (const row of await this.insights.getMany(ids)) this.events.emit('insight', row)
    } catch (err) {
      this.log.warn({ err: { message: (err as Error).message } }, 'could not load announced insights')
    }
  }

  async close() {
    this.events.removeAllListeners()
    await this.unlisten?.()
  }
}
