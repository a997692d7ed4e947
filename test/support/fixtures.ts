/**
 * Paths and constants shared by the test harness (token server, registry processes, global setup).
 * The files themselves live in `test/fixtures/` — see its README for how they were generated.
 */
import { join } from "node:path"
import { fileURLToPath } from "node:url"

export const FIXTURES_DIR = fileURLToPath(new URL("../fixtures/", import.meta.url))

export type FixtureName =
  | "token-signing.key"
  | "token-signing.crt"
  | "htpasswd"
  | "tls-ca.crt"
  | "tls-server.crt"
  | "tls-server.key"

export const fixturePath = (name: FixtureName): string => join(FIXTURES_DIR, name)

/** JWT `iss`; must equal `auth.token.issuer` of the token-mode registry. */
export const TOKEN_ISSUER = "oras-state-test-issuer"
/** JWT `aud` (a plain string: distribution 2.8 rejects an array); must equal `auth.token.service`. */
export const TOKEN_SERVICE = "oras-state-test-registry"
/** Realm announced by the htpasswd-mode registry in `WWW-Authenticate: Basic realm="…"`. */
export const HTPASSWD_REALM = "oras-state-test-registry"

export interface TestCredentials {
  readonly username: string
  readonly password: string
}

/** The users in `test/fixtures/htpasswd`; the token server uses the same names and passwords. */
export const TEST_USERS = {
  /** All actions on all repositories (token mode); any access (htpasswd mode). */
  writer: { username: "tfuser", password: "s3cret-pass" },
  /** Pull only in token mode. htpasswd mode has no authorisation, so there it can do everything. */
  reader: { username: "reader", password: "r3ad-only" }
} as const satisfies Record<string, TestCredentials>
