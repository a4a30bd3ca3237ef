// Fair sharing of one process between ingest and the worker. The local analyzer is CPU work
// on the event loop that also answers HTTP: it already runs in slices (it yields every
// 10 ms), and this is the second half of the policy: while the event loop is late by more
// than the ingest budget, the worker runs one batch at a time instead of WORKER_CONCURRENCY,
// so requests wait behind one slice at most, not behind a slice of every batch; once the
// loop is on time again, it goes back to its configured concurrency. The backlog keeps
// draining either way: one batch is still always allowed.
import { monitorEventLoopDelay } from 'node:perf_hooks'

/** How many batches may be in flight, given the event loop's recent lateness. */
export function batchesAllowed(configured: number, loopLagMs: number, budgetMs: number): number {
  return loopLagMs > budgetMs ? 1 : configured
}

/**
 * The lag monitor's timer, ms. Every tick wakes the event loop, idle or not: at 10 ms (Node's
 * and prom-client's default) an idle server spent 8 ms of CPU a second on it, 3.6 at 25. A
 * sample is late by the block it landed in less up to one resolution, so a single block is
 * always seen past INGEST_LAG_BUDGET_MS (50) once it is 75 ms long, and a loop busy slice
 * after slice is seen at any length. prom-client's event-loop gauges use the same timer.
 */
export const LOOP_MONITOR_RESOLUTION_MS = 25

/** How often the lag is read and its window restarted: recent enough to follow a burst of ingest. */
const LAG_WINDOW_MS = 1_000

/**
 * The event loop's worst lateness over the last window, in ms: a histogram Node keeps
 * (a libuv timer at `resolution` ms), read once a window and reset, so the figure follows
 * load. The maximum, not a percentile: one long slice of analysis is one late sample among
 * a hundred, which a p99 does not see, yet every request that arrived during it waited.
 */
export function eventLoopLag(): { lagMs: () => number; stop: () => void } {
  const histogram = monitorEventLoopDelay({ resolution: LOOP_MONITOR_RESOLUTION_MS })
  histogram.enable()
  let last = 0
  const timer = setInterval(() => {
    // the histogram counts the timer's own resolution in every sample: subtract it
    last = histogram.count ? Math.max(0, histogram.max / 1e6 - LOOP_MONITOR_RESOLUTION_MS) : 0
    histogram.reset()
  }, LAG_WINDOW_MS)
  timer.unref()
  return {
    lagMs: () => last,
    stop: () => {
      clearInterval(timer)
      histogram.disable()
    }
  }
}
