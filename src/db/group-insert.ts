// Group commit for single-conversation ingest. Requests that arrive while an INSERT is in
// flight are gathered into the next one: one multi-row statement and one commit for many
// requests. Each request is still answered only after the commit that holds its row. No
// timer: at low load a row goes out on the next tick (no added latency); under load groups grow
// by themselves. On PGlite (one connection, a few ms a statement) this is the difference
// between hundreds and thousands of requests a second.
import type { IngestResult, NewConversation } from './conversations.ts'

interface Waiter {
  row: NewConversation
  resolve: (r: IngestResult) => void
  reject: (err: unknown) => void
}

export class GroupInserter {
  private queue: Waiter[] = []
  private inFlight = 0
  private scheduled = false

  constructor(
    private readonly insertMany: (rows: NewConversation[]) => Promise<IngestResult[]>,
    /** statements in flight at once: the pool's share for ingest (1 on PGlite) */
    private readonly concurrency: number,
    /** rows per statement: bounds statement size and one group's latency */
    private readonly maxRows = 500
  ) {}

  insert(row: NewConversation): Promise<IngestResult> {
    return new Promise((resolve, reject) => {
      this.queue.push({ row, resolve, reject })
      // Flush on the next turn of the event loop, after the requests already waiting in
      // socket buffers have been parsed and queued: PGlite answers within the same turn
      // (no real I/O), so an immediate flush would always send groups of one.
      if (!this.scheduled) {
        this.scheduled = true
        setImmediate(() => {
          this.scheduled = false
          this.kick()
        })
      }
    })
  }

  private kick() {
    while (this.inFlight < this.concurrency && this.queue.length > 0) {
      const group = this.queue.splice(0, this.maxRows)
      this.inFlight++
      void this.run(group)
    }
  }

  private async run(group: Waiter[]) {
    try {
      const results = await this.insertMany(group.map((w) => w.row))
      for (const [i, w] of group.entries()) w.resolve(results[i]!)
    } catch (err) {
      // one statement, one fate: every request of the group gets the error (and a 503 if
      // the database is down); rows were validated before, so no client can fail a group
      for (const w of group) w.reject(err)
    } finally {
      this.inFlight--
      this.kick()
    }
  }
}
