// Circuit breaker for the model, hand-written rather than taken from opossum or cockatiel.
// Those wrap a function call and reject it while the circuit is open, which is too late
// for us: by then the worker has already claimed (leased) a batch and would have to give
// it back. Our worker asks `canRun()` *before* claiming, so an open circuit takes no work
// at all. Half-open must let exactly one probe batch through, and the state must be
// readable synchronously for /health and the gleaner_circuit_state gauge. Those three
// needs are about eighty lines here; adapting a library's event model to them is more.
//
// Contract with the caller: every `canRun()` that returned true is followed by exactly one
// `recordSuccess()` or `recordFailure()` (in a `finally`). A probe that never reports
// leaves the circuit half-open and the worker idle.

export const CIRCUIT_STATES = ['closed', 'open', 'half_open'] as const
export type CircuitState = (typeof CIRCUIT_STATES)[number]

/** gleaner_circuit_state value (docs/api.md): 0 closed, 1 half_open, 2 open. */
export function circuitStateValue(state: CircuitState): 0 | 1 | 2 {
  switch (state) {
    case 'closed':
      return 0
    case 'half_open':
      return 1
    case 'open':
      return 2
  }
}

export interface CircuitBreakerOptions {
  /** consecutive failures that open the circuit (BREAKER_FAILURE_THRESHOLD) */
  failureThreshold: number
  /** how long the circuit stays open before one probe may run (BREAKER_COOLDOWN_MS) */
  cooldownMs: number
  /** injected clock, so tests are deterministic */
  now?: () => number
  onStateChange?: (state: CircuitState) => void
}

export class CircuitBreaker {
  readonly #failureThreshold: number
  readonly #cooldownMs: number
  readonly #now: () => number
  readonly #onStateChange: ((state: CircuitState) => void) | undefined
  #state: CircuitState = 'closed'
  #consecutiveFailures = 0
  #openedAt = 0

  constructor(opts: CircuitBreakerOptions) {
    if (!Number.isInteger(opts.failureThreshold) || opts.failureThreshold < 1) {
      throw new RangeError('failureThreshold must be an integer >= 1')
    }
    if (!(opts.cooldownMs >= 0)) throw new RangeError('cooldownMs must be >= 0')
    this.#failureThreshold = opts.failureThreshold
    this.#cooldownMs = opts.cooldownMs
    this.#now = opts.now ?? Date.now
    this.#onStateChange = opts.onStateChange
  }

  get state(): CircuitState {
    return this.#state
  }

  /**
   * May the caller claim a batch now? Open → false until the cooldown has elapsed; the
   * first caller after that becomes the probe (state half_open) and every other caller
   * gets false until the probe reports.
   */
  canRun(): boolean {
    if (this.#state === 'closed') return true
    if (this.#state === 'half_open') return false // the probe is in flight
    if (this.retryInMs() > 0) return false
    this.#transition('half_open')
    return true
  }

  /** The model answered: close and forget past failures. */
  recordSuccess(): void {
    this.#consecutiveFailures = 0
    this.#transition('closed')
  }

  recordFailure(): void {
    if (this.#state === 'half_open') {
      this.#open() // the probe failed: wait a whole fresh cooldown
    } else if (this.#state === 'closed') {
      this.#consecutiveFailures++
      if (this.#consecutiveFailures >= this.#failureThreshold) this.#open()
    }
    // open: a batch claimed before the circuit opened reports late. It says nothing new
    // about the model, so it neither extends the cooldown nor counts.
  }

  /** Milliseconds until a probe may run; 0 when not open (or the cooldown is over). */
  retryInMs(): number {
    if (this.#state !== 'open') return 0
    return Math.max(0, this.#openedAt + this.#cooldownMs - this.#now())
  }

  #open(): void {
    this.#openedAt = this.#now()
    this.#consecutiveFailures = 0
    this.#transition('open')
  }

  #transition(next: CircuitState): void {
    if (this.#state === next) return
    this.#state = next
    this.#onStateChange?.(next)
  }
}
