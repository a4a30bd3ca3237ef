// Classification figures: accuracy, per-class precision/recall/F1, macro averages over the
// classes that have support (a class nobody labelled cannot be recalled), and a confusion
// matrix (rows: truth, columns: prediction).

export interface ClassFigures {
  support: number
  precision: number
  recall: number
  f1: number
}

export interface Figures {
  n: number
  accuracy: number
  macroF1: number
  macroRecall: number
  perClass: Record<string, ClassFigures>
  confusion: { labels: string[]; rows: number[][] }
}

export function classificationFigures(truth: readonly string[], predicted: readonly string[], labelOrder?: readonly string[]): Figures {
  const labels = [...(labelOrder ?? [...new Set([...truth, ...predicted])].sort())]
  for (const l of [...truth, ...predicted]) if (!labels.includes(l)) labels.push(l)
  const index = new Map(labels.map((l, i) => [l, i]))
  const rows = labels.map(() => new Array<number>(labels.length).fill(0))
  let correct = 0
  for (let i = 0; i < truth.length; i++) {
    rows[index.get(truth[i]!)!]![index.get(predicted[i]!)!]!++
    if (truth[i] === predicted[i]) correct++
  }
  const perClass: Record<string, ClassFigures> = {}
  let f1Sum = 0
  let recallSum = 0
  let supported = 0
  labels.forEach((label, i) => {
    const support = rows[i]!.reduce((a, b) => a + b, 0)
    const predictedAs = rows.reduce((a, row) => a + row[i]!, 0)
    const tp = rows[i]![i]!
    const precision = predictedAs ? tp / predictedAs : 0
    const recall = support ? tp / support : 0
    const f1 = precision + recall ? (2 * precision * recall) / (precision + recall) : 0
    perClass[label] = { support, precision, recall, f1 }
    if (support) {
      supported++
      f1Sum += f1
      recallSum += recall
    }
  })
  return {
    n: truth.length,
    accuracy: truth.length ? correct / truth.length : 0,
    macroF1: supported ? f1Sum / supported : 0,
    macroRecall: supported ? recallSum / supported : 0,
    perClass,
    confusion: { labels, rows }
  }
}

/** ROUGE-1 and ROUGE-L F-measures of a candidate against one reference, on lower-cased word tokens. */
export function rouge(candidate: string, reference: string): { rouge1: number; rougeL: number } {
  const words = (s: string) => s.toLowerCase().match(/[\p{L}\p{N}']+/gu) ?? []
  const c = words(candidate)
  const r = words(reference)
  if (!c.length || !r.length) return { rouge1: 0, rougeL: 0 }
  const counts = new Map<string, number>()
  for (const w of r) counts.set(w, (counts.get(w) ?? 0) + 1)
  let overlap = 0
  for (const w of c) {
    const n = counts.get(w) ?? 0
    if (n > 0) {
      overlap++
      counts.set(w, n - 1)
    }
  }
  const f = (hits: number) => (hits ? (2 * (hits / c.length) * (hits / r.length)) / (hits / c.length + hits / r.length) : 0)
  // longest common subsequence, O(|c|·|r|) on summaries of a few dozen words
  let prev = new Array<number>(r.length + 1).fill(0)
  for (let i = 1; i <= c.length; i++) {
    const row = new Array<number>(r.length + 1).fill(0)
    for (let j = 1; j <= r.length; j++) row[j] = c[i - 1] === r[j - 1] ? prev[j - 1]! + 1 : Math.max(prev[j]!, row[j - 1]!)
    prev = row
  }
  return { rouge1: f(overlap), rougeL: f(prev[r.length]!) }
}
