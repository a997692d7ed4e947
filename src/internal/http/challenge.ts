/**
 * `WWW-Authenticate` parsing (RFC 7235). A response may carry several challenges, in several
 * headers or comma-joined in one (which is how header maps present repeated headers); parameter
 * values are tokens or quoted strings with backslash escapes.
 *
 * @internal
 */

/** @internal */
export interface Challenge {
  /** Lower-cased auth scheme: "bearer", "basic", … */
  readonly scheme: string
  /** Parameters with lower-cased names. */
  readonly params: Readonly<Record<string, string>>
}

const tokenChar = /[!#$%&'*+\-.^_`|~0-9A-Za-z]/

/** @internal */
export const parseChallenges = (header: string): ReadonlyArray<Challenge> => {
  const challenges: Array<{ scheme: string; params: Record<string, string> }> = []
  let i = 0
  const n = header.length
  const skipSpace = () => {
    while (i < n && (header[i] === " " || header[i] === "\t")) i++
  }
  const readToken = (): string => {
    const start = i
    while (i < n && tokenChar.test(header[i]!)) i++
    return header.slice(start, i)
  }
  // An unquoted value should be a token, but some servers send e.g. `realm=https://host/token`;
  // read it up to the next separator rather than split it into bogus challenges.
  const readBare = (): string => {
    const start = i
    while (i < n && header[i] !== "," && header[i] !== " " && header[i] !== "\t") i++
    return header.slice(start, i)
  }
  const readQuoted = (): string => {
    // assumes header[i] === '"'
    i++
    let out = ""
    while (i < n && header[i] !== "\"") {
      if (header[i] === "\\" && i + 1 < n) i++
      out += header[i]
      i++
    }
    i++ // closing quote (or end of input for an unterminated string)
    return out
  }
  while (i < n) {
    skipSpace()
    if (header[i] === ",") {
      i++
      continue
    }
    const word = readToken()
    if (word === "") {
      i++ // an unexpected character: skip it rather than loop forever
      continue
    }
    skipSpace()
    if (header[i] === "=" && challenges.length > 0) {
      // `word` is a parameter name of the current challenge
      i++
      skipSpace()
      const value = header[i] === "\"" ? readQuoted() : readBare()
      // An own property even for names such as `__proto__`, which plain assignment would drop.
      Object.defineProperty(challenges[challenges.length - 1]!.params, word.toLowerCase(), {
        value,
        enumerable: true,
        writable: true,
        configurable: true
      })
    } else {
      challenges.push({ scheme: word.toLowerCase(), params: {} })
    }
    skipSpace()
    if (header[i] === ",") i++
  }
  return challenges
}

/** The scopes a Bearer challenge asks for (`scope` holds space-separated scopes). @internal */
export const challengeScopes = (challenge: Challenge): ReadonlyArray<string> =>
  (challenge.params["scope"] ?? "").split(" ").filter((s) => s.length > 0)
