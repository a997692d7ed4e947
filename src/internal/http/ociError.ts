/**
 * Turning a non-success registry response into a tagged error. OCI error bodies
 * (`{"errors":[{"code","message","detail"}]}`) are parsed defensively: a 4xx body may be anything
 * (distribution 2.8's unmatched routes answer text/plain).
 *
 * @internal
 */
import { RegistryError, TransientRegistry, Unauthorized, Unsupported } from "../../Errors.js"

/** @internal */
export interface OciErrorBody {
  readonly code: string | undefined
  readonly message: string | undefined
}

/** @internal */
export const parseOciErrorBody = (text: string): OciErrorBody => {
  try {
    const json: unknown = JSON.parse(text)
    const first = (json as { errors?: ReadonlyArray<{ code?: unknown; message?: unknown }> } | null)?.errors?.[0]
    if (first !== undefined && first !== null) {
      return {
        code: typeof first.code === "string" ? sanitize(first.code, 64) : undefined,
        message: typeof first.message === "string" ? sanitize(first.message, 300) : undefined
      }
    }
  } catch {
    // not JSON: fall through
  }
  return { code: undefined, message: undefined }
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
