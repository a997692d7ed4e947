/**
 * HTTP Basic authentication of Terraform/OpenTofu clients (`username` / `password` in the backend
 * block, or `TF_HTTP_USERNAME` / `TF_HTTP_PASSWORD`). Both fields are compared in constant time
 * (SHA-256 of each side, then `timingSafeEqual`), and both are always compared.
 *
 * @internal
 */
import * as Redacted from "effect/Redacted"
import * as Crypto from "node:crypto"

/** @internal */
export interface BasicAuth {
  readonly username: string
  readonly password: Redacted.Redacted<string>
}

const sha256 = (s: string): Buffer => Crypto.createHash("sha256").update(s, "utf8").digest()

/** A checker for the `Authorization` header. @internal */
export const makeBasicAuth = (auth: BasicAuth): (authorization: string | undefined) => boolean => {
  const user = sha256(auth.username)
  const pass = sha256(Redacted.value(auth.password))
  return (authorization) => {
    if (authorization === undefined) return false
    const match = /^Basic[ \t]+([A-Za-z0-9+/=_-]+)[ \t]*$/i.exec(authorization)
    if (match === null) return false
    const decoded = Buffer.from(match[1]!, "base64").toString("utf8")
    const colon = decoded.indexOf(":")
    if (colon === -1) return false
    const userOk = Crypto.timingSafeEqual(sha256(decoded.slice(0, colon)), user)
    const passOk = Crypto.timingSafeEqual(sha256(decoded.slice(colon + 1)), pass)
    return userOk && passOk
  }
}

/** @internal */
export const challenge = 'Basic realm="oras-state"'
