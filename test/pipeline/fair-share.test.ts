// The fair-share policy: one batch at a time while the event loop is late, all of them when
// it is on time; and the lag reading follows a loop that was really blocked.
import t from 'tap'
import { loadConfig } from '../../src/config.ts'
import { batchesAllowed, eventLoopLag, LOOP_MONITOR_RESOLUTION_MS } from '../../src/pipeline/fair-share.ts'
import { waitFor } from '../helper.ts'

t.test('the configured concurrency while the loop is on time, one batch while it is late', async (t) => {
  t.equal(batchesAllowed(4, 0, 50), 4)
  t.equal(batchesAllowed(4, 50, 50), 4, 'at the budget is on time')
  t.equal(batchesAllowed(4, 51, 50), 1, 'past it, one batch: the backlog still drains')
  t.equal(batchesAllowed(1, 500, 50), 1)
})

t.test('the lag reading sees a blocked event loop', async (t) => {
  const lag = eventLoopLag()
  t.teardown(lag.stop)
  await new Promise((r) => setTimeout(r, 50)) // the monitor's timer runs from the next turn on
  const until = Date.now() + 300
  while (Date.now() < until) {
    // block the loop, as a long synchronous slice of analysis would
  }
  const seen = await waitFor(() => lag.lagMs() >= 200 && lag.lagMs(), { what: 'the next window to report the block' })
  t.ok(seen >= 200, `a 300 ms block reads as ${Math.round(seen)} ms late`)
})

t.test('one block of 100 ms, twice the default ingest budget, reads past it at the monitor resolution', async (t) => {
  const budget = loadConfig({}).INGEST_LAG_BUDGET_MS
  t.ok(100 - LOOP_MONITOR_RESOLUTION_MS > budget, 'the resolution leaves room to see it')
  const lag = eventLoopLag()
  t.teardown(lag.stop)
  await new Promise((r) => setTimeout(r, 50))
  const until = Date.now() + 100
  while (Date.now() < until) {
    // one slice of analysis twice the budget
  }
  // waits for a reading past the budget, not for any reading: a window read before the block
  // was recorded holds only the timer's jitter
  const seen = await waitFor(() => lag.lagMs() > budget && lag.lagMs(), { what: 'a window to report the block past the budget' })
  t.ok(seen > budget, `a 100 ms block reads as ${Math.round(seen)} ms late`)
})
