/**
 * `Link` header parsing (RFC 8288), enough to follow `rel="next"` pagination.
 *
 * @internal
 */

/**
 * The `rel="next"` target of a Link header, resolved against the request URL; `undefined` when
 * there is none, or when the target is not a valid http(s) URL (a registry must not be able to
 * send the client to `file:`, `javascript:` or `data:` URLs). @internal
 */
export const nextLink = (header: string | undefined, base: URL): URL | undefined => {
  if (header === undefined) return undefined
  for (const link of splitOutside(header, ",")) {
    const trimmed = link.trim()
    if (!trimmed.startsWith("<")) continue
    const close = trimmed.indexOf(">")
    if (close < 0) continue
    const [, ...params] = splitOutside(trimmed.slice(close + 1), ";")
    if (!relations(params).includes("next")) continue
    let url: URL
    try {
      url = new URL(trimmed.slice(1, close), base)
    } catch {
      return undefined
    }
    return url.protocol === "http:" || url.protocol === "https:" ? url : undefined
  }
  return undefined
}

// The relation types of a link: the space-separated, case-insensitive values of its first `rel`.
const relations = (params: ReadonlyArray<string>): ReadonlyArray<string> => {
  for (const param of params) {
    const eq = param.indexOf("=")
    if (eq < 0 || param.slice(0, eq).trim().toLowerCase() !== "rel") continue
    return unquote(param.slice(eq + 1).trim()).toLowerCase().split(/[ \t]+/)
  }
  return []
}

const unquote = (value: string): string =>
  value.startsWith("\"") ? value.slice(1, value.endsWith("\"") && value.length > 1 ? -1 : undefined).replace(/\\(.)/g, "$1") : value

// Split on `separator` where it is neither inside <…> nor inside a quoted string. Linear time (the
// regular expressions this replaces backtracked quadratically on long runs of spaces).
const splitOutside = (s: string, separator: string): Array<string> => {
  const parts: Array<string> = []
  let start = 0
  let quoted = false
  let angle = false
  for (let i = 0; i < s.length; i++) {
    const c = s[i]
    if (quoted) {
      if (c === "\\") i++
      else if (c === "\"") quoted = false
    } else if (angle) {
      if (c === ">") angle = false
    } else if (c === "\"") quoted = true
    else if (c === "<") angle = true
    else if (c === separator) {
      parts.push(s.slice(start, i))
      start = i + 1
    }
  }
  parts.push(s.slice(start))
  return parts
}
