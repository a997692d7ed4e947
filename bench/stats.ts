/** Small statistics and formatting helpers for the benchmark. */

export const quantile = (values: ReadonlyArray<number>, q: number): number => {
  if (values.length === 0) return NaN
  const sorted = [...values].sort((a, b) => a - b)
  const position = (sorted.length - 1) * q
  const lower = Math.floor(position)
  const upper = Math.ceil(position)
  return sorted[lower]! + (sorted[upper]! - sorted[lower]!) * (position - lower)
}

export const median = (values: ReadonlyArray<number>): number => quantile(values, 0.5)

export const p95 = (values: ReadonlyArray<number>): number => quantile(values, 0.95)

export const fixed = (value: number, digits = 1): string => Number.isFinite(value) ? value.toFixed(digits) : "—"

export const table = (head: ReadonlyArray<string>, rows: ReadonlyArray<ReadonlyArray<string>>): string =>
  [
    `| ${head.join(" | ")} |`,
    `|${head.map(() => "---").join("|")}|`,
    ...rows.map((row) => `| ${row.join(" | ")} |`)
  ].join("\n")

/** Time an async function, in milliseconds. */
export const timed = async <A>(f: () => Promise<A>): Promise<[number, A]> => {
  const started = performance.now()
  const result = await f()
  return [performance.now() - started, result]
}
