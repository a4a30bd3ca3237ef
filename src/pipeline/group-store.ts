// Group commit for the worker's store statements: one in flight per worker, and the batches
// that finish while it runs go together in the next. Batches started together finish
// together (a model's latency keeps them in step), and one statement each made them queue
// on the same rollup rows and pay a commit, a plan and the rollup trigger's fixed cost
// apiece; merged, each rollup row is written once per group, not once per batch.
import { isDatabaseUnavailable } from '../db/errors.ts'
import type { UsageRow } from '../db/usage.ts'
import { type BatchOutcome, type StoreDeps, storeOutcome } from './store.ts'

/**
 * Insights per merged statement at most: its JSON parameter stays well under a megabyte and
 * a group's rollup upserts hold their row locks briefly. A single batch larger than this
 * still goes alone.
 */
export const GROUP_MAX_INSIGHTS = 1000

interface Waiting {
  outcome: BatchOutcome
  spent: readonly UsageRow[]
  onWrite: (() => void) | undefined
  resolve: (stored: string[]) => void
  reject: (err: unknown) => void
}

/** Usage rows of several batches, one per model: one statement may not update a row twice. */
export function mergeSpent(spent: readonly (readonly UsageRow[])[]): UsageRow[] {
  const byModel = new Map<string, UsageRow>()
  for (const rows of spent) {
    for (const r of rows) {
      const had = byModel.get(r.model)
      byModel.set(
        r.model,
        had
          ? { model: r.model, calls: had.calls + r.calls, input: had.input + r.input, output: had.output + r.output, costUsd: had.costUsd + r.costUsd }
          : { ...r }
      )
    }
  }
  return [...byModel.values()]
}

/**
 * A statement that hangs holds every batch of its worker, where it held one before:
 * DB_STATEMENT_TIMEOUT_MS (15 s) bounds it, and /health reports the worker stuck meanwhile.
 */
export class GroupStore {
  private readonly waiting: Waiting[] = []
  private running = false
  private aborted: { reason: unknown } | undefined

  constructor(
    private readonly deps: StoreDeps,
    /** every batch of a group is this one owner's (a worker's claims), so one lease check serves them all */
    private readonly owner: string,
    private readonly opts: {
      maxInsights?: number
      /** after each statement, successful or not: how many batches it carried, and how long it took */
      observe?: (batches: number, seconds: number) => void
    } = {}
  ) {}

  /**
   * What storeOutcome does for one batch, in a statement shared with the batches that finish
   * meanwhile. Resolves with this batch's stored ids; rejects only if its own write failed:
   * a group that fails is retried batch by batch (nothing of it was written), so one bad
   * batch does not fail the others. The caller books `spent` itself when this rejects.
   * `onWrite` runs when the statement carrying this batch is sent: the worker frees the
   * batch's slot then, so the next claim overlaps this write, and a batch still waiting
   * behind another group's write keeps its slot (what stops the waiting list growing when
   * the database is slower than the analysis).
   */
  store(outcome: BatchOutcome, spent: readonly UsageRow[] = [], onWrite?: () => void): Promise<string[]> {
    // after an abort, a batch arriving late hands its rows back too
    if (this.aborted) return Promise.reject(this.aborted.reason)
    return new Promise((resolve, reject) => {
      this.waiting.push({ outcome, spent, onWrite, resolve, reject })
      if (this.running) return
      this.running = true
      // the first write waits for the end of this turn: batches resuming together (siblings
      // released by one ClaimGroup) all join it instead of the first going alone
      setImmediate(() => void this.drain())
    })
  }

  private async drain(): Promise<void> {
    try {
      while (this.waiting.length) await this.write(this.takeGroup())
    } finally {
      this.running = false
    }
  }

  private takeGroup(): Waiting[] {
    const group = [this.waiting.shift()!]
    let insights = group[0]!.outcome.insights.length
    const max = this.opts.maxInsights ?? GROUP_MAX_INSIGHTS
    while (this.waiting.length && insights + this.waiting[0]!.outcome.insights.length <= max) {
      const next = this.waiting.shift()!
      insights += next.outcome.insights.length
      group.push(next)
    }
    return group
  }

  /**
   * Rejects every batch still waiting (shutdown's abort): each then books its spend and hands
   * its rows back itself, instead of writing after the worker has released its claims.
   */
  abort(reason: unknown): void {
    this.aborted = { reason }
    for (const w of this.waiting.splice(0)) w.reject(reason)
  }

  /** Takes batches again after an abort (the worker started again). */
  resume(): void {
    this.aborted = undefined
  }

  /** storeOutcome, observed */
  private async statement(outcome: BatchOutcome, spent: readonly UsageRow[], batches: number): Promise<string[]> {
    const started = performance.now()
    try {
      return await storeOutcome(this.deps, outcome, this.owner, spent)
    } finally {
      this.opts.observe?.(batches, (performance.now() - started) / 1000)
    }
  }

  private async write(group: Waiting[]): Promise<void> {
    if (this.aborted) {
      for (const w of group) w.reject(this.aborted.reason)
      return
    }
    for (const w of group) w.onWrite?.()
    // a conversation in two batches (our lease ran out and we claimed it again) goes in once
    const seen = new Set<string>()
    const merged: BatchOutcome = {
      insights: group.flatMap((w) => w.outcome.insights).filter((i) => !seen.has(i.conversationId) && seen.add(i.conversationId)),
      fresh: group.flatMap((w) => w.outcome.fresh),
      failures: []
    }
    let stored: Set<string>
    try {
      stored = new Set(await this.statement(merged, mergeSpent(group.map((w) => w.spent)), group.length))
    } catch (err) {
      // A group the database answered was rolled back (a refused row, a deadlock, a timeout
      // of the larger statement): each batch tries alone, so one bad batch fails only itself.
      // The database away fails every batch at once, as their own statements would have:
      // trying one by one would wait out the same connection fault once a batch.
      if (group.length === 1 || isDatabaseUnavailable(err)) for (const w of group) w.reject(err)
      else for (const w of group) await this.write([w])
      return
    }
    // each stored id is told to the first batch that carried it
    for (const w of group) w.resolve(w.outcome.insights.filter((i) => stored.delete(i.conversationId)).map((i) => i.conversationId))
  }
}

/**
 * How long a batch that reached the store waits for the batches claimed with it, as a share of
 * its own time since the claim (a 300 ms model call waits up to 30 ms), and at most
 * SIBLING_WAIT_MAX_MS: latency added is bounded by a tenth, while a sibling hung on its model
 * call holds no one for long.
 */
export const SIBLING_WAIT_SHARE = 0.1
export const SIBLING_WAIT_MAX_MS = 250

/** How long a batch `elapsedMs` after its claim waits for its siblings at most. */
export function siblingWaitMs(elapsedMs: number): number {
  return Math.min(SIBLING_WAIT_MAX_MS, Math.max(0, elapsedMs) * SIBLING_WAIT_SHARE)
}

/**
 * The batches of one claim. They started together, so they finish together, and waiting for
 * one another to store in one statement keeps them together: their slots free at once, and
 * the next claim takes them all again. Without it, the first to finish went alone, freed one
 * slot and was claimed for alone, and within a few rounds every batch was out of step with
 * the rest (bench:drain, batches of 20 at concurrency 8: 48 store statements per 1,000
 * conversations where 7 would do).
 */
export interface ClaimMember {
  arrive(): void
  arriveAndWait(): Promise<void>
}

export class ClaimGroup {
  private outstanding: number
  private readonly all: Promise<void>
  private release: () => void = () => {}

  constructor(
    batches: number,
    private readonly claimedAt = performance.now()
  ) {
    this.outstanding = batches
    this.all = new Promise((resolve) => {
      this.release = resolve
    })
    if (batches <= 1) this.release()
  }

  /** One batch's place in the group: it arrives once, whether it stores or fails. */
  member(): ClaimMember {
    let arrived = false
    const arrive = () => {
      if (arrived) return
      arrived = true
      if (--this.outstanding === 0) this.release()
    }
    return {
      arrive,
      // then waits for the rest of the claim, at most the share of its own time above
      arriveAndWait: async () => {
        arrive()
        if (this.outstanding === 0) return
        const waitMs = siblingWaitMs(performance.now() - this.claimedAt)
        let timer: NodeJS.Timeout | undefined
        const late = new Promise<void>((resolve) => {
          timer = setTimeout(resolve, waitMs)
        })
        await Promise.race([this.all, late])
        clearTimeout(timer)
      }
    }
  }
}
