// Usage and cost of model calls: the price of the configured model, and a ledger that
// charges each call's tokens to the conversations it was for, so every insight carries
// its own share and the shares add up to what the provider billed.
import { type Config, parseModelPrices } from '../config.ts'
import type { BatchResult, TokenUsage } from './analyzer.ts'

export interface Price {
  /** USD per million input tokens */
  input: number
  /** USD per million output tokens */
  output: number
  /** USD per million input tokens served from the provider's prompt cache; unset → the input price */
  cachedInput?: number
}

/** MODEL_PRICES for this model, else the two default prices. */
export function priceOf(config: Config, model: string): Price {
  return (
    parseModelPrices(config.MODEL_PRICES).get(model) ?? {
      input: config.MODEL_PRICE_INPUT_PER_MTOK,
      output: config.MODEL_PRICE_OUTPUT_PER_MTOK,
      ...(config.MODEL_PRICE_CACHED_INPUT_PER_MTOK !== undefined ? { cachedInput: config.MODEL_PRICE_CACHED_INPUT_PER_MTOK } : {})
    }
  )
}

/** Cached input tokens are part of the input count, billed at their own price. */
export const costOf = (price: Price, t: TokenUsage) => {
  const cached = Math.min(t.cachedInput ?? 0, t.input)
  return ((t.input - cached) * price.input + cached * (price.cachedInput ?? price.input) + t.output * price.output) / 1e6
}

/** One batch's usage: the calls it made, and each item's share of their tokens. */
export class UsageLedger {
  private readonly perItem: TokenUsage[]
  private readonly total = { input: 0, output: 0, cachedInput: 0, calls: 0 }

  constructor(
    items: number,
    private readonly price: Price
  ) {
    this.perItem = Array.from({ length: items }, () => ({ input: 0, output: 0, cachedInput: 0 }))
  }

  /** A call went out (answered or not): it counts, tokens or none. */
  countCall(): void {
    this.total.calls++
  }

  /**
   * The tokens of one answered call, split over the items it asked for (by position in the
   * batch) in proportion to their weights: their share of the prompt.
   */
  charge(tokens: TokenUsage, items: readonly { pos: number; weight: number }[]): void {
    this.total.input += tokens.input
    this.total.output += tokens.output
    this.total.cachedInput += tokens.cachedInput ?? 0
    const weights = items.map((e) => e.weight)
    const inputs = splitProportionally(tokens.input, weights)
    const outputs = splitProportionally(tokens.output, weights)
    const cached = splitProportionally(tokens.cachedInput ?? 0, weights)
    items.forEach((e, i) => {
      this.perItem[e.pos]!.input += inputs[i]!
      this.perItem[e.pos]!.output += outputs[i]!
      this.perItem[e.pos]!.cachedInput! += cached[i]!
    })
  }

  item(pos: number): { tokens: TokenUsage; cost_usd: number } {
    const { input, output, cachedInput } = this.perItem[pos]!
    return { tokens: { input, output }, cost_usd: costOf(this.price, { input, output, cachedInput }) }
  }

  spent(): BatchResult['usage'] {
    return { input: this.total.input, output: this.total.output, cost_usd: costOf(this.price, this.total), calls: this.total.calls }
  }
}

/** Integers summing exactly to `total`, in proportion to `weights` (largest remainder). */
export function splitProportionally(total: number, weights: number[]): number[] {
  if (weights.length === 0) return []
  const sum = weights.reduce((a, b) => a + b, 0)
  const exact = weights.map((w) => (sum > 0 ? (total * w) / sum : total / weights.length))
  const shares = exact.map(Math.floor)
  let left = total - shares.reduce((a, b) => a + b, 0)
  const order = exact.map((x, i) => ({ i, frac: x - Math.floor(x) })).sort((a, b) => b.frac - a.frac)
  for (let k = 0; left > 0; k = (k + 1) % order.length, left--) shares[order[k]!.i]!++
  return shares
}
