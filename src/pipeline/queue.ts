// The in-process queue: ids of conversations this process committed, waiting to be claimed.
// Bounded: when it is full, ingest still commits (the row stays pending in the database)
// and the queue is marked overflowed; the worker then claims from the database, oldest
// first, until the backlog there is drained. Memory stays bounded by QUEUE_MAX ids, and
// no pending row can starve behind newer ones.

export class WorkQueue {
  // a Set keeps FIFO order and makes a repeated id a no-op
  private readonly ids = new Set<string>()
  private waiters: (() => void)[] = []
  /** set when an id could not be queued; cleared by the worker once the database backlog is drained */
  overflowed = false

  constructor(readonly capacity: number) {}

  get size(): number {
    return this.ids.size
  }

  /** Returns false (and marks the overflow) when the queue is full. */
  offer(id: string): boolean {
    if (this.ids.size >= this.capacity) {
      this.overflowed = true
      this.wake()
      return false
    }
    this.ids.add(id)
    this.wake()
    return true
  }

  take(n: number): string[] {
    const out: string[] = []
    for (const id of this.ids) {
      if (out.length >= n) break
      out.push(id)
    }
    for (const id of out) this.ids.delete(id)
    return out
  }

  clear(): void {
    this.ids.clear()
  }

  /** Wake whoever waits for work (new ids, an overflow, the sweep, shutdown). */
  wake(): void {
    const w = this.waiters
    this.waiters = []
    for (const fn of w) fn()
  }

  /** Resolves on the next wake() or after ms, whichever is first. */
  waitForWork(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms)
      const self = this
      function done() {
        clearTimeout(timer)
        const i = self.waiters.indexOf(done)
        if (i >= 0) self.waiters.splice(i, 1)
        resolve()
      }
      this.waiters.push(done)
    })
  }
}
