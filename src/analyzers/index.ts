// Picks the analyzer named by MODEL_PROVIDER. Both are peers behind the Analyzer interface.
import type { Logger } from 'pino'
import type { Config } from '../config.ts'
import type { Metrics } from '../metrics.ts'
import type { Analyzer } from './analyzer.ts'
import { createLocalAnalyzer } from './local.ts'
import { createOpenAICompatibleAnalyzer } from './openai-compatible.ts'

export function createAnalyzer(config: Config, deps: { metrics: Metrics; logger: Logger }): Analyzer {
  return config.MODEL_PROVIDER === 'openai-compatible' ? createOpenAICompatibleAnalyzer(config, deps) : createLocalAnalyzer()
}
