// Picks the analyzer named by MODEL_PROVIDER. Both are peers behind the Analyzer interface.
import type { Logger } from 'pino'
import type { Config } from '../config.ts'
import type { Metrics } from '../metrics.ts'
import type { Analyzer } from './analyzer.ts'
import { createLocalAnalyzer } from './local.ts'
import { createModelRouter } from './model-router.ts'
import { createOpenAICompatibleAnalyzer } from './openai-compatible.ts'

export function createAnalyzer(config: Config, deps: { metrics: Metrics; logger: Logger }): Analyzer {
  if (config.MODEL_PROVIDER !== 'openai-compatible') return createLocalAnalyzer()
  // the router only when there is something to route: one endpoint and one prompt keep
  // the worker's breaker as the only one, as before
  const routes = config.MODEL_FALLBACKS.trim() !== '' || config.PROMPT_VARIANTS.trim() !== '' || config.MODEL_FALLBACK_LOCAL === 'on'
  return routes ? createModelRouter(config, deps) : createOpenAICompatibleAnalyzer(config, deps)
}
