/**
 * A distribution-style token server for tests (node:http, 127.0.0.1 only).
 *
 * Issues ES256 JWTs that distribution 2.8 accepts: the signing cert travels in the `x5c` header
 * (std-base64 DER, chaining to the registry's `rootcertbundle`), `aud` is a string equal to the
 * service, `iss` equals the issuer, and the signature is raw r||s (not DER).
 *
 * Endpoints:
 *   GET  /token?service=…&scope=…&scope=…[&offline_token=true]   optional Basic auth
 *   POST /token   form: grant_type=password|refresh_token, username, password, refresh_token,
 *                       scope (space-separated), service, client_id, access_type=offline
 *   GET  /stats         → { requests: [{ method, scopes, user, grant_type, status }] }
 *   POST /stats/reset   → 204
 *
 * Policy: `tfuser` may do everything (including `registry:catalog:*`), `reader` may only pull
 * repositories, anonymous callers may only pull `public/*` repositories. The granted access is the
 * intersection of what was requested and what is allowed; a token is issued even when it is empty
 * (the registry then answers 401 insufficient_scope), which is what real token servers do.
 */
import { X509Certificate, createPrivateKey, randomBytes, randomUUID, sign, timingSafeEqual } from "node:crypto"
import type { KeyObject } from "node:crypto"
import { readFileSync } from "node:fs"
import { createServer } from "node:http"
import type { IncomingMessage, Server, ServerResponse } from "node:http"
import type { AddressInfo } from "node:net"
import { TEST_USERS, TOKEN_ISSUER, TOKEN_SERVICE, fixturePath } from "./fixtures.js"

export interface TokenServerOptions {
  /** Port on 127.0.0.1; default 0 (any free port). */
  readonly port?: number
  /** Token lifetime in seconds (`expires_in` and JWT `exp`); default 300. Note: distribution 2.8
   * applies a 60 s leeway to `exp`, so a token with a tiny lifetime stays usable for ~1 minute. */
  readonly expiresIn?: number
  readonly issuer?: string
  readonly service?: string
}

export interface RunningTokenServer {
  /** `http://127.0.0.1:PORT` */
  readonly url: string
  /** `http://127.0.0.1:PORT/token` — use as the registry's `auth.token.realm`. */
  readonly realm: string
  readonly service: string
  readonly issuer: string
  stop(): Promise<void>
}

/** One `/token` call, as reported by `GET /stats`. */
export interface TokenRequestRecord {
  readonly method: string
  /** Requested scopes, one entry per scope (space-separated lists are split). */
  readonly scopes: ReadonlyArray<string>
  /** Authenticated user, or null for anonymous / failed authentication. */
  readonly user: string | null
  /** `grant_type` of a POST, null for GET. */
  readonly grant_type: string | null
  /** HTTP status the server answered with. */
  readonly status: number
}

export interface TokenStats {
  readonly requests: ReadonlyArray<TokenRequestRecord>
}

type Role = "admin" | "reader"

interface Principal {
  readonly username: string
  readonly role: Role
}

interface Scope {
  readonly type: string
  readonly class: string | undefined
  readonly name: string
  readonly actions: ReadonlyArray<string>
}

interface AccessEntry {
  type: string
  class?: string
  name: string
  actions: Array<string>
}

interface TokenReply {
  readonly status: number
  readonly body: unknown
  readonly user: string | null
}

const USERS: ReadonlyMap<string, { readonly password: string; readonly role: Role }> = new Map([
  [TEST_USERS.writer.username, { password: TEST_USERS.writer.password, role: "admin" as const }],
  [TEST_USERS.reader.username, { password: TEST_USERS.reader.password, role: "reader" as const }]
])

const MAX_FORM_BYTES = 64 * 1024

class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string
  ) {
    super(message)
  }
}

// ---------------------------------------------------------------------------------------------
// Scopes and policy
// ---------------------------------------------------------------------------------------------

/** `type[(class)]:name:actions` — type ends at the first `:`, actions start after the last `:`. */
export function parseScope(raw: string): Scope {
  const first = raw.indexOf(":")
  const last = raw.lastIndexOf(":")
  if (first <= 0 || last === first) throw new HttpError(400, "invalid_request", `malformed scope: ${raw}`)
  const typePart = raw.slice(0, first)
  const classMatch = /^([a-z0-9]+)\(([a-z0-9]+)\)$/i.exec(typePart)
  return {
    type: classMatch?.[1] ?? typePart,
    class: classMatch?.[2],
    name: raw.slice(first + 1, last),
    actions: raw.slice(last + 1).split(",").filter((a) => a.length > 0)
  }
}

/** Actions `principal` may perform on one resource; "all" means any action, including `*`. */
function allowedActions(principal: Principal | null, scope: Scope): "all" | ReadonlySet<string> {
  if (principal?.role === "admin") return "all"
  const isRepository = scope.type === "repository"
  if (principal?.role === "reader") return new Set(isRepository ? ["pull"] : [])
  return new Set(isRepository && scope.name.startsWith("public/") ? ["pull"] : [])
}

function grantActions(requested: ReadonlyArray<string>, allowed: "all" | ReadonlySet<string>): Array<string> {
  if (allowed === "all") return [...new Set(requested)]
  if (requested.includes("*")) return [...allowed]
  return [...new Set(requested.filter((a) => allowed.has(a)))]
}

/** Grants per requested scope, merging scopes that name the same resource; empty grants are dropped. */
function computeAccess(principal: Principal | null, scopes: ReadonlyArray<Scope>): Array<AccessEntry> {
  const byResource = new Map<string, AccessEntry>()
  for (const scope of scopes) {
    const actions = grantActions(scope.actions, allowedActions(principal, scope))
    if (actions.length === 0) continue
    const key = `${scope.type}(${scope.class ?? ""}):${scope.name}`
    const entry: AccessEntry = byResource.get(key) ?? {
      type: scope.type,
      ...(scope.class === undefined ? {} : { class: scope.class }),
      name: scope.name,
      actions: []
    }
    entry.actions = [...new Set([...entry.actions, ...actions])]
    byResource.set(key, entry)
  }
  return [...byResource.values()]
}

// ---------------------------------------------------------------------------------------------
// Credentials
// ---------------------------------------------------------------------------------------------

function safeEqual(a: string, b: string): boolean {
  const ab = Buffer.from(a)
  const bb = Buffer.from(b)
  return ab.length === bb.length && timingSafeEqual(ab, bb)
}

function authenticate(username: string, password: string): Principal {
  const user = USERS.get(username)
  if (user === undefined || !safeEqual(user.password, password)) {
    throw new HttpError(401, "unauthorized", "invalid username or password")
  }
  return { username, role: user.role }
}

/** Principal from an `Authorization: Basic` header; null when there is none (anonymous). */
function basicPrincipal(req: IncomingMessage): Principal | null {
  const header = req.headers.authorization
  if (header === undefined) return null
  const match = /^Basic\s+(\S+)$/i.exec(header)
  if (match?.[1] === undefined) throw new HttpError(401, "unauthorized", "unsupported Authorization header")
  const decoded = Buffer.from(match[1], "base64").toString("utf8")
  const colon = decoded.indexOf(":")
  if (colon < 0) throw new HttpError(401, "unauthorized", "malformed Basic credentials")
  return authenticate(decoded.slice(0, colon), decoded.slice(colon + 1))
}

// ---------------------------------------------------------------------------------------------
// JWT
// ---------------------------------------------------------------------------------------------

interface Signer {
  readonly key: KeyObject
  /** std-base64 DER of the signing cert, as distribution expects in `x5c`. */
  readonly x5c: string
}

function loadSigner(): Signer {
  const key = createPrivateKey(readFileSync(fixturePath("token-signing.key")))
  const cert = new X509Certificate(readFileSync(fixturePath("token-signing.crt")))
  return { key, x5c: cert.raw.toString("base64") }
}

const b64url = (value: unknown): string => Buffer.from(JSON.stringify(value)).toString("base64url")

function signJwt(signer: Signer, claims: Record<string, unknown>): string {
  const header = { typ: "JWT", alg: "ES256", x5c: [signer.x5c] }
  const signingInput = `${b64url(header)}.${b64url(claims)}`
  // ieee-p1363 = raw r||s, the JWS encoding; Node's default (DER) is rejected by distribution.
  const signature = sign("sha256", Buffer.from(signingInput), { key: signer.key, dsaEncoding: "ieee-p1363" })
  return `${signingInput}.${signature.toString("base64url")}`
}

// ---------------------------------------------------------------------------------------------
// Server
// ---------------------------------------------------------------------------------------------

interface ServerState {
  readonly signer: Signer
  readonly issuer: string
  readonly service: string
  readonly expiresIn: number
  /** Opaque refresh token → username. */
  readonly refreshTokens: Map<string, string>
  readonly requests: Array<TokenRequestRecord>
}

function issueToken(
  state: ServerState,
  principal: Principal | null,
  scopes: ReadonlyArray<Scope>,
  withRefreshToken: boolean
): Record<string, unknown> {
  const nowMs = Date.now()
  const now = Math.floor(nowMs / 1000)
  const token = signJwt(state.signer, {
    iss: state.issuer,
    sub: principal?.username ?? "",
    aud: state.service,
    exp: now + state.expiresIn,
    nbf: now - 5,
    iat: now,
    jti: randomUUID(),
    access: computeAccess(principal, scopes)
  })
  const reply: Record<string, unknown> = {
    token,
    access_token: token,
    expires_in: state.expiresIn,
    issued_at: new Date(nowMs).toISOString()
  }
  if (withRefreshToken && principal !== null) {
    const refreshToken = randomBytes(32).toString("base64url")
    state.refreshTokens.set(refreshToken, principal.username)
    reply["refresh_token"] = refreshToken
  }
  return reply
}

/** All `scope` values, each possibly a space-separated list. */
const scopesOf = (params: URLSearchParams): Array<string> =>
  params.getAll("scope").flatMap((s) => s.split(" ")).filter((s) => s.length > 0)

function checkService(state: ServerState, params: URLSearchParams): void {
  const service = params.get("service")
  if (service !== null && service !== state.service) {
    throw new HttpError(400, "invalid_request", `unknown service ${service}, expected ${state.service}`)
  }
}

function handleGetToken(state: ServerState, req: IncomingMessage, params: URLSearchParams): TokenReply {
  checkService(state, params)
  const scopes = scopesOf(params).map(parseScope)
  const principal = basicPrincipal(req)
  const offline = params.get("offline_token") === "true"
  return { status: 200, body: issueToken(state, principal, scopes, offline), user: principal?.username ?? null }
}

function principalForGrant(state: ServerState, form: URLSearchParams): Principal {
  const grantType = form.get("grant_type")
  if (grantType === "password") {
    const username = form.get("username")
    const password = form.get("password")
    if (username === null || password === null) {
      throw new HttpError(400, "invalid_request", "username and password are required")
    }
    return authenticate(username, password)
  }
  if (grantType === "refresh_token") {
    const username = state.refreshTokens.get(form.get("refresh_token") ?? "")
    const user = username === undefined ? undefined : USERS.get(username)
    if (username === undefined || user === undefined) {
      throw new HttpError(400, "invalid_grant", "unknown refresh token")
    }
    return { username, role: user.role }
  }
  throw new HttpError(400, "unsupported_grant_type", `unsupported grant_type: ${grantType ?? "(none)"}`)
}

function handlePostToken(state: ServerState, form: URLSearchParams): TokenReply {
  checkService(state, form)
  const scopes = scopesOf(form).map(parseScope)
  const principal = principalForGrant(state, form)
  const offline = form.get("access_type") === "offline"
  return { status: 200, body: issueToken(state, principal, scopes, offline), user: principal.username }
}

async function readBody(req: IncomingMessage): Promise<string> {
  const chunks: Array<Buffer> = []
  let size = 0
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length
    if (size > MAX_FORM_BYTES) throw new HttpError(413, "invalid_request", "request body too large")
    chunks.push(chunk)
  }
  return Buffer.concat(chunks).toString("utf8")
}

function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const payload = JSON.stringify(body)
  if (status === 401) res.setHeader("WWW-Authenticate", 'Basic realm="oras-state-test-token"')
  res.writeHead(status, { "Content-Type": "application/json", "Content-Length": Buffer.byteLength(payload) })
  res.end(payload)
}

function dispatchToken(state: ServerState, req: IncomingMessage, params: URLSearchParams): TokenReply {
  if (req.method === "GET") return handleGetToken(state, req, params)
  if (req.method === "POST") return handlePostToken(state, params)
  throw new HttpError(405, "method_not_allowed", `${req.method ?? "?"} not allowed on /token`)
}

/** Serves `/token` and records the call for `/stats`, whatever the outcome. */
async function serveToken(state: ServerState, req: IncomingMessage, res: ServerResponse, url: URL): Promise<void> {
  const isPost = req.method === "POST"
  let params = url.searchParams
  let reply: TokenReply
  try {
    if (isPost) params = new URLSearchParams(await readBody(req))
    reply = dispatchToken(state, req, params)
  } catch (error) {
    if (!(error instanceof HttpError)) throw error
    reply = { status: error.status, body: { error: error.code, error_description: error.message }, user: null }
  }
  state.requests.push({
    method: req.method ?? "GET",
    scopes: scopesOf(params),
    user: reply.user,
    grant_type: isPost ? params.get("grant_type") : null,
    status: reply.status
  })
  sendJson(res, reply.status, reply.body)
}

async function route(state: ServerState, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const url = new URL(req.url ?? "/", "http://127.0.0.1")
  if (url.pathname === "/token") return serveToken(state, req, res, url)
  if (url.pathname === "/stats" && req.method === "GET") {
    return sendJson(res, 200, { requests: state.requests } satisfies TokenStats)
  }
  if (url.pathname === "/stats/reset" && req.method === "POST") {
    state.requests.length = 0
    res.writeHead(204).end()
    return
  }
  sendJson(res, 404, { error: "not_found", error_description: url.pathname })
}

function listen(server: Server, port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once("error", reject)
    server.listen(port, "127.0.0.1", () => {
      server.off("error", reject)
      resolve((server.address() as AddressInfo).port)
    })
  })
}

function close(server: Server): Promise<void> {
  return new Promise((resolve, reject) => {
    server.close((error) => (error === undefined ? resolve() : reject(error)))
    // Keep-alive connections (fetch, the registry's Go client) would otherwise hold close() open.
    server.closeAllConnections()
  })
}

export async function startTokenServer(options: TokenServerOptions = {}): Promise<RunningTokenServer> {
  const state: ServerState = {
    signer: loadSigner(),
    issuer: options.issuer ?? TOKEN_ISSUER,
    service: options.service ?? TOKEN_SERVICE,
    expiresIn: options.expiresIn ?? 300,
    refreshTokens: new Map(),
    requests: []
  }
  const server = createServer((req, res) => {
    route(state, req, res).catch((error: unknown) => {
      if (!res.headersSent) sendJson(res, 500, { error: "server_error", error_description: String(error) })
      else res.destroy()
    })
  })
  const port = await listen(server, options.port ?? 0)
  const url = `http://127.0.0.1:${port}`
  return {
    url,
    realm: `${url}/token`,
    service: state.service,
    issuer: state.issuer,
    stop: () => close(server)
  }
}
