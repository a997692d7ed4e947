/**
 * Plain-text tables and value formatting for human output.
 *
 * @since 0.1.0
 */

/**
 * Left-aligned columns separated by two spaces; trailing spaces trimmed.
 *
 * @since 0.1.0
 * @category formatting
 */
export const table = (header: ReadonlyArray<string>, rows: ReadonlyArray<ReadonlyArray<string>>): string => {
  const all = [header, ...rows]
  const widths = header.map((_, i) => Math.max(...all.map((row) => (row[i] ?? "").length)))
  return all
    .map((row) => row.map((cell, i) => (i === row.length - 1 ? cell : cell.padEnd(widths[i]!))).join("  ").trimEnd())
    .join("\n")
}

/**
 * `sha256:` and the first 12 hex digits.
 *
 * @since 0.1.0
 * @category formatting
 */
export const shortDigest = (digest: string): string => {
  const [algorithm, hex] = digest.split(":")
  return hex === undefined ? digest : `${algorithm}:${hex.slice(0, 12)}`
}

/**
 * A duration in words, e.g. `4m 10s`, `2h 5m`, `3d 4h`.
 *
 * @since 0.1.0
 * @category formatting
 */
export const formatDuration = (millis: number): string => {
  const s = Math.max(0, Math.round(millis / 1000))
  if (s < 60) return `${s}s`
  const m = Math.floor(s / 60)
  if (m < 60) return `${m}m ${s % 60}s`
  const h = Math.floor(m / 60)
  if (h < 24) return `${h}h ${m % 60}m`
  return `${Math.floor(h / 24)}d ${h % 24}h`
}

/**
 * An epoch-millisecond instant as ISO 8601, or undefined.
 *
 * @since 0.1.0
 * @category formatting
 */
export const isoOf = (millis: number | undefined): string | undefined =>
  millis === undefined || !Number.isFinite(millis) ? undefined : new Date(millis).toISOString()
