import t from 'tap'
import { AdaptiveBatchSize } from '../../src/pipeline/batch-size.ts'

const FAST = 100
const SLOW = 20_000
const TARGET = 10_000
const DEEP = 1_000_000

const make = (opts: Partial<{ min: number; max: number; initial: number }> = {}) =>
  new AdaptiveBatchSize({ min: 1, max: 100, initial: 20, latencyTargetMs: TARGET, ...opts })

t.test('grows additively by ceil(max / 20) under a deep backlog and good latency', async (t) => {
  const batch = make({ max: 100, initial: 20 })
  batch.onSuccess({ latencyMs: FAST, backlog: DEEP })
  t.equal(batch.size, 25)
  batch.onSuccess({ latencyMs: TARGET, backlog: DEEP })
  t.equal(batch.size, 30, 'latency exactly at the target still counts as good')
})

t.test('grows up to max and no further', async (t) => {
  const batch = make({ max: 100, initial: 1 })
  const seen: number[] = []
  for (let i = 0; i < 20; i++) {
    batch.onSuccess({ latencyMs: FAST, backlog: DEEP })
    seen.push(batch.size)
  }
  t.equal(seen.indexOf(100), 19, 'reaches max from min in 20 good batches')
  for (let i = 0; i < 5; i++) batch.onSuccess({ latencyMs: FAST, backlog: DEEP })
  t.equal(batch.size, 100, 'stays at max')
  const odd = make({ max: 7, initial: 6 })
  odd.onSuccess({ latencyMs: FAST, backlog: DEEP })
  odd.onSuccess({ latencyMs: FAST, backlog: DEEP })
  t.equal(odd.size, 7, 'a step that would overshoot is capped at max')
})

t.test('does not grow when the backlog is not deeper than the batch', async (t) => {
  const batch = make({ initial: 20 })
  batch.onSuccess({ latencyMs: FAST, backlog: 20 })
  t.equal(batch.size, 20, 'backlog equal to size')
  batch.onSuccess({ latencyMs: FAST, backlog: 3 })
  t.equal(batch.size, 20, 'backlog smaller than size')
  batch.onSuccess({ latencyMs: FAST, backlog: 0 })
  t.equal(batch.size, 20, 'empty backlog')
  batch.onSuccess({ latencyMs: FAST, backlog: 21 })
  t.equal(batch.size, 25, 'one more than size is enough')
})

t.test('halves on every kind of failure, never below min', async (t) => {
  const batch = make({ min: 3, initial: 80 })
  batch.onFailure('timeout')
  t.equal(batch.size, 40)
  batch.onFailure('error')
  t.equal(batch.size, 20)
  batch.onFailure('rate_limited')
  t.equal(batch.size, 10)
  batch.onFailure('timeout')
  t.equal(batch.size, 5)
  batch.onFailure('timeout')
  t.equal(batch.size, 3, 'floor(5 / 2) = 2 is clamped to min')
  batch.onFailure('error')
  t.equal(batch.size, 3, 'stays at min')
})

t.test('halves on a batch slower than the target, even with a deep backlog, never below min', async (t) => {
  const batch = make({ min: 1, initial: 20 })
  batch.onSuccess({ latencyMs: TARGET + 1, backlog: DEEP })
  t.equal(batch.size, 10)
  batch.onSuccess({ latencyMs: SLOW, backlog: 0 })
  t.equal(batch.size, 5)
  for (let i = 0; i < 10; i++) batch.onSuccess({ latencyMs: SLOW, backlog: DEEP })
  t.equal(batch.size, 1, 'bottoms out at min')
})

t.test('grows back after the model recovers', async (t) => {
  const batch = make({ max: 100, initial: 100 })
  batch.onFailure('timeout')
  batch.onFailure('timeout')
  batch.onFailure('timeout')
  t.equal(batch.size, 12)
  for (let i = 0; i < 3; i++) batch.onSuccess({ latencyMs: FAST, backlog: DEEP })
  t.equal(batch.size, 27, 'additive steps of 5 after recovery')
  for (let i = 0; i < 20; i++) batch.onSuccess({ latencyMs: FAST, backlog: DEEP })
  t.equal(batch.size, 100, 'back at max')
})

t.test('clamps the initial size into [min, max]', async (t) => {
  t.equal(make({ min: 5, max: 50, initial: 1 }).size, 5, 'below min')
  t.equal(make({ min: 5, max: 50, initial: 500 }).size, 50, 'above max')
  t.equal(make({ min: 5, max: 50, initial: 30 }).size, 30, 'inside')
})

t.test('rejects bounds that cannot hold a batch', async (t) => {
  t.throws(() => make({ min: 0 }), RangeError, 'min below 1')
  t.throws(() => make({ min: 10, max: 5 }), RangeError, 'max below min')
})
