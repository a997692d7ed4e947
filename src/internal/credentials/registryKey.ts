/**
 * Registry keys as they appear in credential configuration (docker `config.json` / containers
 * `auth.json` `auths` keys, `credHelpers` keys, OpenTofu `oci_credentials` block labels), and the
 * rules that match them against a registry host and repository:
 *
 * - the scheme, trailing slashes and a final `/v1` or `/v2` segment are stripped
 *   (`http://127.0.0.1:5002/v2/` is `127.0.0.1:5002`); the host is lowercased;
 * - Docker Hub's names (`docker.io`, `index.docker.io`, `registry-1.docker.io` and the legacy
 *   key `https://index.docker.io/v1/`) are one registry, `docker.io`;
 * - a key `host/a/b` matches repositories `a/b` and `a/b/…` of `host`; its specificity is
 *   2 + the number of path segments (a bare host is 2; a global source such as `credsStore` is 1,
 *   as in OpenTofu's `ociauthconfig`).
 *
 * @internal
 */

/** @internal */
export interface RegistryKey {
  /** Canonical `host[:port]`, lowercase; Docker Hub is `docker.io`. */
  readonly host: string
  /** Repository path prefix, possibly empty. */
  readonly path: ReadonlyArray<string>
}

const dockerHubAliases = new Set(["docker.io", "index.docker.io", "registry-1.docker.io"])

/** The key docker, and every credential helper used with it, stores Docker Hub credentials under. @internal */
export const dockerHubLegacyKey = "https://index.docker.io/v1/"

/** @internal */
export const canonicalHost = (host: string): string => {
  const h = host.trim().toLowerCase()
  return dockerHubAliases.has(h) ? "docker.io" : h
}

/** `undefined` when the key has no host. @internal */
export const parseKey = (raw: string): RegistryKey | undefined => {
  let rest = raw.trim()
  const scheme = /^[a-z][a-z0-9+.-]*:\/\//i.exec(rest)
  if (scheme !== null) rest = rest.slice(scheme[0].length)
  const segments = rest.split("/").filter((s) => s.length > 0)
  const host = segments.shift()
  if (host === undefined || host.includes("@")) return undefined
  const last = segments[segments.length - 1]
  if (last === "v1" || last === "v2") segments.pop()
  return { host: canonicalHost(host), path: segments }
}

/** The key in its canonical text form. @internal */
export const formatKey = (key: RegistryKey): string => [key.host, ...key.path].join("/")

/** Repository path segments. @internal */
export const repositorySegments = (repository: string): ReadonlyArray<string> =>
  repository.split("/").filter((s) => s.length > 0)

/**
 * How specifically `key` names `host` / `repository`: `undefined` if it does not match at all,
 * else 2 + the number of path segments matched.
 *
 * @internal
 */
export const specificity = (key: RegistryKey, host: string, repository: ReadonlyArray<string>): number | undefined => {
  if (key.host !== host) return undefined
  if (key.path.length > repository.length) return undefined
  for (let i = 0; i < key.path.length; i++) if (key.path[i] !== repository[i]) return undefined
  return 2 + key.path.length
}

/** Specificity of a source that applies to every registry (`credsStore`, a default helper). @internal */
export const globalSpecificity = 1

/**
 * The server URL a credential helper is asked about: Docker Hub's legacy key for Docker Hub,
 * else the bare `host[:port]` (what `docker login <host>` stores and skopeo asks for).
 *
 * @internal
 */
export const helperServerUrl = (host: string): string => {
  const h = canonicalHost(host)
  return h === "docker.io" ? dockerHubLegacyKey : h
}

/** A helper name must be a plain program-name suffix: no path separators, no shell syntax. @internal */
export const isValidHelperName = (name: string): boolean => /^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$/.test(name)
