// The daily model budget. Spend is kept in the database (model_usage), so it is shared by
// every instance and survives restarts; this object holds today's figure, refreshed by the
// sweep and advanced by this process's own calls. A check happens before each claim, so
// the overshoot past the cap is bounded by the batches already in flight
// (WORKER_CONCURRENCY × one batch's cost).
import { type UsageRepository, utcDay } from '../db/usage.ts'

export class DailyBudget {
  private day = utcDay()
  private spent = 0

  constructor(
    private readonly limitUsd: number | undefined,
    private readonly repo: UsageRepository,
    private readonly now: () => Date = () => new Date()
  ) {}

  get limit() {
    return this.limitUsd
  }

  private rollover() {
    const today = utcDay(this.now())
    if (today !== this.day) {
      this.day = today
      this.spent = 0
    }
  }

  async refresh(): Promise<void> {
    const today = utcDay(this.now())
    const spent = await this.repo.costForDay(today)
    this.day = today
    this.spent = spent
  }

  add(costUsd: number): void {
    this.rollover()
    this.spent += costUsd
  }

  spentToday(): number {
    this.rollover()
    return this.spent
  }

  remaining(): number | null {
    if (this.limitUsd === undefined) return null
    return Math.max(0, this.limitUsd - this.spentToday())
  }

  exhausted(): boolean {
    return this.limitUsd !== undefined && this.spentToday() >= this.limitUsd
  }

  /** the next UTC midnight, when the budget starts afresh */
  resetsAt(): Date {
    const n = this.now()
    return new Date(Date.UTC(n.getUTCFullYear(), n.getUTCMonth(), n.getUTCDate() + 1))
  }
}
