// How many conversations the worker claims per batch, adapted to how the model copes.

export type BatchFailureKind = 'timeout' | 'error' | 'rate_limited'

export interface AdaptiveBatchSizeOptions {
  /** smallest batch (BATCH_MIN) */
  min: number
  /** largest batch (BATCH_MAX) */
  max: number
  /** starting size (BATCH_INITIAL), clamped into [min, max] */
  initial: number
  /** a batch slower than this shrinks the size (BATCH_LATENCY_TARGET_MS) */
  latencyTargetMs: number
}

/**
 * AIMD (additive increase, multiplicative decrease), as in TCP congestion control.
 *
 * Why this shape: halving on trouble backs off fast enough to get under whatever limit we
 * hit (slow model, timeouts, 429s) within a few batches, while growing by a fixed step
 * probes upwards gently, so one overshoot costs at most one step. The asymmetry is also
 * what lets several workers (or instances) sharing one model converge on fair shares
 * instead of one crowding out the others (Chiu and Jain, 1989).
 *
 * The step is ceil(max / 20), not TCP's +1: a batch takes seconds, not a round trip, and
 * +1 would need ~100 batches to climb from 1 to the default max of 100 after every
 * halving. With max / 20 the size reaches max from anywhere in at most 20 good batches,
 * and still one step overshoots by only 5 % of max.
 *
 * Growth needs the backlog to be deeper than the current batch. When it is not, the batch
 * was not limited by its size, so its good latency says nothing about a larger one
 * (RFC 7661's "application-limited" rule for TCP windows). Growing anyway would drift the
 * size to max during a quiet spell, and the next burst would go out at an untested size.
 */
export class AdaptiveBatchSize {
  readonly #min: number
  readonly #max: number
  readonly #step: number
  readonly #latencyTargetMs: number
  #size: number

  constructor(opts: AdaptiveBatchSizeOptions) {
    if (!Number.isInteger(opts.min) || opts.min < 1) throw new RangeError('min must be an integer >= 1')
    if (!Number.isInteger(opts.max) || opts.max < opts.min) throw new RangeError('max must be an integer >= min')
    if (!(opts.latencyTargetMs > 0)) throw new RangeError('latencyTargetMs must be > 0')
    this.#min = opts.min
    this.#max = opts.max
    this.#step = Math.ceil(opts.max / 20)
    this.#latencyTargetMs = opts.latencyTargetMs
    this.#size = this.#clamp(Math.round(opts.initial))
  }

  get size(): number {
    return this.#size
  }

  /** A batch finished; `backlog` is how many conversations were waiting when it did. */
  onSuccess({ latencyMs, backlog }: { latencyMs: number; backlog: number }): void {
    if (latencyMs > this.#latencyTargetMs) {
      this.#halve()
    } else if (backlog > this.#size) {
      this.#size = this.#clamp(this.#size + this.#step)
    }
  }

  /** The batch failed (timed out, errored, was rate limited): back off the same way. */
  onFailure(_kind: BatchFailureKind): void {
    this.#halve()
  }

  #halve(): void {
    this.#size = this.#clamp(Math.floor(this.#size / 2))
  }

  #clamp(n: number): number {
    return Math.min(this.#max, Math.max(this.#min, n))
  }
}
