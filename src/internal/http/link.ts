/**
 * `Link` header parsing (RFC 8288), enough to follow `rel="next"` pagination.
 *
 * @internal
 */

/** The `rel="next"` target of a Link header, resolved against the request URL. @internal */
export const nextLink = (header: string | undefined, base: URL): URL | undefined => {
  if (header === undefined) return undefined
  for (const part of header.split(/,(?=\s*<)/)) {
    const match = /^\s*<([^>]*)>(.*)$/.exec(part)
    if (match === null) continue
    const params = match[2]!
    if (!/;\s*rel\s*=\s*"?([^";]*\s)?next(\s[^";]*)?"?\s*(;|$)/i.test(params)) continue
    try {
      return new URL(match[1]!, base)
    } catch {
      return undefined
    }
  }
  return undefined
}
