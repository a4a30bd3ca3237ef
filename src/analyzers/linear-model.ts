// A multinomial logistic-regression model over hashed text features: the local analyzer's
// sentiment and intent classifiers. Hand-written rather than taken from a library because
// none fits all of: a few MB of weights, microseconds per prediction, deterministic
// training and no native code. `natural`'s classifiers store a vocabulary as JSON (tens of
// MB for this data) and predict in milliseconds; `ml-logistic-regression` wants dense
// matrices; fastText needs a native or WASM build and its models are 100s of MB. The whole
// model is a dot product, so it stays small and checked by tests.
//
// On disk: `<name>.json` (classes, hash width, scale, bias, provenance) and `<name>.bin`
// (int8 weights, bucket-major: weight[bucket * classes + class] = int8 * scale). Int8
// quantisation keeps a 2^18-bucket model under 1 MB per class with no measurable loss.

import { readFileSync } from 'node:fs'
import { textFeatures } from './text-features.ts'

export const LINEAR_MODEL_FORMAT = 'gleaner-linear-1'

export interface LinearModelMeta {
  format: typeof LINEAR_MODEL_FORMAT
  name: string
  classes: string[]
  bits: number
  scale: number
  bias: number[]
  /** what it was trained on and how: for people, never read by the code */
  provenance: Record<string, unknown>
}

export class LinearModel {
  readonly classes: readonly string[]
  private readonly width: number

  constructor(
    readonly meta: LinearModelMeta,
    private readonly weights: Int8Array
  ) {
    if (meta.format !== LINEAR_MODEL_FORMAT) throw new Error(`model ${meta.name}: unknown format ${String(meta.format)}`)
    const expected = (1 << meta.bits) * meta.classes.length
    if (weights.length !== expected) throw new Error(`model ${meta.name}: ${weights.length} weights, expected ${expected}`)
    if (meta.bias.length !== meta.classes.length) throw new Error(`model ${meta.name}: bias does not match its classes`)
    this.classes = meta.classes
    this.width = meta.classes.length
  }

  /** Class probabilities (softmax over the linear scores), in the order of `classes`. */
  predict(text: string): Float64Array {
    return this.predictFeatures(textFeatures(text, this.meta.bits))
  }

  predictFeatures(features: readonly number[]): Float64Array {
    const width = this.width
    const scores = new Float64Array(width)
    const norm = features.length ? this.meta.scale / Math.sqrt(features.length) : 0
    for (const f of features) {
      const base = f * width
      for (let c = 0; c < width; c++) scores[c]! += this.weights[base + c]!
    }
    let max = Number.NEGATIVE_INFINITY
    for (let c = 0; c < width; c++) {
      scores[c] = scores[c]! * norm + this.meta.bias[c]!
      if (scores[c]! > max) max = scores[c]!
    }
    let sum = 0
    for (let c = 0; c < width; c++) {
      scores[c] = Math.exp(scores[c]! - max)
      sum += scores[c]!
    }
    for (let c = 0; c < width; c++) scores[c] = scores[c]! / sum
    return scores
  }
}

/** Reads `<dir>/<name>.json` and `<dir>/<name>.bin`; throws with the file named when either is missing or wrong. */
export function loadLinearModel(dir: URL | string, name: string): LinearModel {
  const base = typeof dir === 'string' ? dir.replace(/\/?$/, '/') : dir.href.replace(/\/?$/, '/')
  const at = (file: string) => (typeof dir === 'string' ? `${base}${file}` : new URL(file, base))
  const meta = JSON.parse(readFileSync(at(`${name}.json`), 'utf8')) as LinearModelMeta
  const bytes = readFileSync(at(`${name}.bin`))
  return new LinearModel(meta, new Int8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength))
}
