import t from 'tap'
import { CircuitBreaker, type CircuitState, circuitStateValue } from '../../src/pipeline/breaker.ts'

function setup(opts: { failureThreshold?: number; cooldownMs?: number } = {}) {
  let now = 1_000_000
  const changes: CircuitState[] = []
  const breaker = new CircuitBreaker({
    failureThreshold: opts.failureThreshold ?? 3,
    cooldownMs: opts.cooldownMs ?? 30_000,
    now: () => now,
    onStateChange: (state) => changes.push(state)
  })
  const advance = (ms: number) => {
    now += ms
  }
  const fail = (n: number) => {
    for (let i = 0; i < n; i++) breaker.recordFailure()
  }
  return { breaker, changes, advance, fail }
}

t.test('starts closed and lets work run', async (t) => {
  const { breaker } = setup()
  t.equal(breaker.state, 'closed')
  t.equal(breaker.canRun(), true)
  t.equal(breaker.retryInMs(), 0)
})

t.test('opens after exactly failureThreshold consecutive failures and not before', async (t) => {
  const { breaker, fail } = setup({ failureThreshold: 3 })
  fail(2)
  t.equal(breaker.state, 'closed', 'still closed after threshold - 1 failures')
  t.equal(breaker.canRun(), true)
  fail(1)
  t.equal(breaker.state, 'open', 'open at the threshold')
  t.equal(breaker.canRun(), false)
})

t.test('a success between failures resets the consecutive count', async (t) => {
  const { breaker, fail } = setup({ failureThreshold: 3 })
  fail(2)
  breaker.recordSuccess()
  fail(2)
  t.equal(breaker.state, 'closed', '2 + 2 failures split by a success do not open')
  fail(1)
  t.equal(breaker.state, 'open', 'three in a row do')
})

t.test('open rejects work until the cooldown has elapsed', async (t) => {
  const { breaker, fail, advance } = setup({ failureThreshold: 1, cooldownMs: 30_000 })
  fail(1)
  t.equal(breaker.canRun(), false, 'right after opening')
  advance(29_999)
  t.equal(breaker.canRun(), false, '1 ms before the cooldown ends')
  t.equal(breaker.state, 'open', 'rejected calls do not change the state')
  advance(1)
  t.equal(breaker.canRun(), true, 'once the cooldown has elapsed')
  t.equal(breaker.state, 'half_open')
})

t.test('half-open lets exactly one probe through until it reports', async (t) => {
  const { breaker, fail, advance } = setup({ failureThreshold: 1, cooldownMs: 1_000 })
  fail(1)
  advance(1_000)
  t.equal(breaker.canRun(), true, 'the first caller is the probe')
  t.equal(breaker.canRun(), false, 'a second caller is refused')
  advance(60_000)
  t.equal(breaker.canRun(), false, 'still refused however long the probe takes')
  t.equal(breaker.state, 'half_open')
})

t.test('a successful probe closes the circuit and resets the count', async (t) => {
  const { breaker, fail, advance } = setup({ failureThreshold: 2, cooldownMs: 1_000 })
  fail(2)
  advance(1_000)
  t.equal(breaker.canRun(), true)
  breaker.recordSuccess()
  t.equal(breaker.state, 'closed')
  t.equal(breaker.canRun(), true)
  t.equal(breaker.canRun(), true, 'closed lets every caller run')
  fail(1)
  t.equal(breaker.state, 'closed', 'failures before the opening no longer count')
})

t.test('a failed probe re-opens the circuit for a fresh cooldown', async (t) => {
  const { breaker, fail, advance } = setup({ failureThreshold: 1, cooldownMs: 1_000 })
  fail(1)
  advance(5_000) // well past the first cooldown
  t.equal(breaker.canRun(), true)
  advance(200) // the probe takes a while
  breaker.recordFailure()
  t.equal(breaker.state, 'open')
  t.equal(breaker.retryInMs(), 1_000, 'the cooldown restarts from the probe failure')
  advance(999)
  t.equal(breaker.canRun(), false)
  advance(1)
  t.equal(breaker.canRun(), true, 'a new probe after the fresh cooldown')
})

t.test('late failures while open neither count nor extend the cooldown', async (t) => {
  const { breaker, fail, advance } = setup({ failureThreshold: 1, cooldownMs: 1_000 })
  fail(1)
  advance(600)
  fail(3)
  t.equal(breaker.state, 'open')
  t.equal(breaker.retryInMs(), 400)
})

t.test('onStateChange is called once per transition, with the new state', async (t) => {
  const { breaker, changes, fail, advance } = setup({ failureThreshold: 2, cooldownMs: 1_000 })
  breaker.recordSuccess()
  fail(1)
  t.same(changes, [], 'no call without a transition')
  fail(1) // closed → open
  fail(1) // still open
  advance(1_000)
  breaker.canRun() // open → half_open
  breaker.canRun() // refused, no transition
  breaker.recordFailure() // half_open → open
  advance(1_000)
  breaker.canRun() // open → half_open
  breaker.recordSuccess() // half_open → closed
  breaker.recordSuccess() // still closed
  t.same(changes, ['open', 'half_open', 'open', 'half_open', 'closed'])
})

t.test('retryInMs counts down while open and is 0 otherwise', async (t) => {
  const { breaker, fail, advance } = setup({ failureThreshold: 1, cooldownMs: 30_000 })
  t.equal(breaker.retryInMs(), 0, 'closed')
  fail(1)
  t.equal(breaker.retryInMs(), 30_000, 'just opened')
  advance(12_345)
  t.equal(breaker.retryInMs(), 17_655, 'part way')
  advance(20_000)
  t.equal(breaker.retryInMs(), 0, 'cooldown over, never negative')
  breaker.canRun()
  t.equal(breaker.retryInMs(), 0, 'half_open')
})

t.test('circuitStateValue maps states to the gleaner_circuit_state gauge values', async (t) => {
  t.equal(circuitStateValue('closed'), 0)
  t.equal(circuitStateValue('half_open'), 1)
  t.equal(circuitStateValue('open'), 2)
})

t.test('rejects a threshold below 1 and a negative cooldown', async (t) => {
  t.throws(() => new CircuitBreaker({ failureThreshold: 0, cooldownMs: 1 }), RangeError)
  t.throws(() => new CircuitBreaker({ failureThreshold: 1, cooldownMs: -1 }), RangeError)
})
