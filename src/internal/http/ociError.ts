/**
 * Turning a non-success registry response into a tagged error. OCI error bodies
 * (`{"errors":[{"code","message","detail"}]}`) are parsed defensively: a 4xx body may be anything
 * (distribution 2.8's unmatched routes answer text/plain).
 *
 * Registry-supplied text is untrusted and ends up in error messages, so it is scrubbed of the
 * credentials the request carried (a registry or proxy may echo the `Authorization` header or a
 * form body back) and of anything shaped like a credential, then truncated to printable ASCII.
 *
 * @internal
 */
import { RegistryError, TransientRegistry, Unauthorized, Unsupported } from "../../Errors.js"

/** @internal */
export interface OciErrorBody {
  readonly code: string | undefined
  readonly message: string | undefined
}

/**
 * The first entry of an OCI error body; `secrets` (Authorization header values, tokens sent in a
 * form) are removed from the text before it is kept.
 *
 * @internal
 */
export const parseOciErrorBody = (text: string, secrets: ReadonlyArray<string> = []): OciErrorBody => {
  const clean = (s: string, max: number) => {
    const scrubbed = scrubCredentials(s, secrets)
    return scrubbed === "" ? undefined : sanitize(scrubbed, max)
  }
  try {
    const json: unknown = JSON.parse(text)
    const errors = (json as { errors?: unknown } | null)?.errors
    const first = Array.isArray(errors) ? (errors[0] as { code?: unknown; message?: unknown } | null | undefined) : undefined
    if (typeof first === "object" && first !== null) {
      return {
        code: typeof first.code === "string" ? clean(first.code, 64) : undefined,
        message: typeof first.message === "string" ? clean(first.message, 300) : undefined
      }
    }
  } catch {
    // not JSON: fall through
  }
  return { code: undefined, message: undefined }
}

const redacted = "<redacted>"
// Below this length a secret cannot be cut out without mangling ordinary words; text containing
// one is dropped whole instead.
const minReplaceable = 4

/**
 * Remove credentials from registry-supplied text: every form of each secret (an Authorization
 * header value, its credential part, a Basic pair decoded, its password, and their URL encodings),
 * then anything that looks like a credential whatever its origin (`Basic …`/`Bearer …` values,
 * JWTs, which may come from an earlier request). Returns "" when a secret too short to cut out
 * cleanly occurs in the text.
 *
 * @internal
 */
export const scrubCredentials = (text: string, secrets: ReadonlyArray<string>): string => {
  let out = text
  const variants = [...new Set(secrets.flatMap(secretVariants))].sort((a, b) => b.length - a.length)
  for (const secret of variants) {
    if (!out.includes(secret)) continue
    if (secret.length < minReplaceable) return ""
    out = out.split(secret).join(redacted)
  }
  // A credential-looking word after the scheme: 8+ token characters, not all letters (so that
  // "Basic authentication" survives).
  return redactJwts(out.replace(/\b(basic|bearer)(\s+)(?=[A-Za-z]*[0-9+/=_~-])[A-Za-z0-9._~+/=-]{8,}/gi, `$1$2${redacted}`))
}

const isJwtChar = (c: string | undefined): boolean => c !== undefined && /[A-Za-z0-9_-]/.test(c)
const isWordChar = (c: string | undefined): boolean => c !== undefined && /[A-Za-z0-9_]/.test(c)

/**
 * Replace JWT-shaped words: the matches of `/\beyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*\/g`,
 * found in linear time. (That expression re-scans a whole run of token characters from every `eyJ`
 * inside it: a hostile 64 KiB body of `eyJ-eyJ-…` took seconds.) Every start inside one run of
 * token characters ends that run at the same place, so a failed start skips the whole run.
 */
const redactJwts = (text: string): string => {
  const runEnd = (i: number) => {
    while (isJwtChar(text[i])) i++
    return i
  }
  let out = ""
  let copied = 0
  let search = 0
  for (;;) {
    const start = text.indexOf("eyJ", search)
    if (start < 0) break
    if (isWordChar(text[start - 1])) {
      search = start + 1
      continue
    }
    const first = runEnd(start + 3)
    const second = first > start + 3 && text[first] === "." ? runEnd(first + 1) : -1
    if (second <= first + 1 || text[second] !== ".") {
      search = Math.max(first, start + 1)
      continue
    }
    const end = runEnd(second + 1)
    out += text.slice(copied, start) + redacted
    copied = search = end
  }
  return copied === 0 ? text : out + text.slice(copied)
}

const secretVariants = (secret: string): ReadonlyArray<string> => {
  const forms = [secret]
  const header = /^(basic|bearer)\s+(\S+)$/i.exec(secret)
  if (header !== null) {
    const credential = header[2]!
    forms.push(credential)
    if (header[1]!.toLowerCase() === "basic") {
      const pair = Buffer.from(credential, "base64").toString("utf8")
      const colon = pair.indexOf(":")
      // The username alone is not a secret; the pair and the password are.
      if (colon >= 0) forms.push(pair, pair.slice(colon + 1))
    }
  }
  return forms
    .flatMap((form) => [form, encodeURIComponent(form), new URLSearchParams({ x: form }).toString().slice(2)])
    .filter((form) => form.length > 0)
}

/** @internal */
export const isTransientStatus = (status: number): boolean =>
  status === 408 || status === 429 || (status >= 500 && status !== 501)

/** @internal */
export const errorFromStatus = (
  operation: string,
  status: number,
  body: OciErrorBody,
  retryAfterMillis: number | undefined
): TransientRegistry | RegistryError | Unauthorized | Unsupported => {
  const reason = body.message ?? `unexpected HTTP status ${status}`
  const code = body.code === undefined ? {} : { code: body.code }
  if (isTransientStatus(status)) {
    return new TransientRegistry({
      operation,
      status,
      reason,
      ...code,
      ...(retryAfterMillis === undefined ? {} : { retryAfterMillis })
    })
  }
  if (status === 401 || status === 403) return new Unauthorized({ operation, status, reason, ...code })
  if (status === 405) return new Unsupported({ operation, status, reason, ...code })
  return new RegistryError({ operation, status, reason, ...code })
}

// Registry-supplied text ends up in error messages: keep it short and printable.
const sanitize = (s: string, max: number): string => {
  const printable = s.replace(/[^\x20-\x7e]/g, "?")
  return printable.length <= max ? printable : `${printable.slice(0, max)}…`
}
