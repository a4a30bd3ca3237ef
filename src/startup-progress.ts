// Start-up says what it is waiting for. Opening PGlite, or migrating, can take from under a
// second to over a minute on a busy small machine; with no plugin timeout (PLUGIN_TIMEOUT_MS=0)
// a step that hangs must still name itself, so an operator sees "still applying migrations
// (40 s)" instead of silence.
import type { Logger } from 'pino'

/**
 * How often a step still running says so: often enough that a hung start shows within a
 * probe period or two of an orchestrator, rarely enough not to flood a slow one.
 */
export const STARTUP_PROGRESS_LOG_MS = 10_000

/** Runs one start-up step, logging when it starts, while it runs, and how long it took. */
export async function startupStep<T>(log: Logger, step: string, fn: () => Promise<T>, everyMs = STARTUP_PROGRESS_LOG_MS): Promise<T> {
  const started = performance.now()
  const seconds = () => Math.round((performance.now() - started) / 1000)
  log.info({ startup_step: step }, `start-up: ${step}`)
  const timer = setInterval(() => log.info({ startup_step: step, waited_s: seconds() }, `start-up: still ${step}`), everyMs)
  timer.unref()
  try {
    const result = await fn()
    log.info({ startup_step: step, ms: Math.round(performance.now() - started) }, `start-up: done ${step}`)
    return result
  } finally {
    clearInterval(timer)
  }
}
