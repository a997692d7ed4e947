/**
 * The server's URL space, parsed from the raw (still percent-encoded) request path:
 *
 * - `/state`: the workspaces (GET);
 * - `/state/<ws>`: the state of one workspace; `<ws>` is one path segment, percent-decoded, so a
 *   name with a slash is written `team%2Fprod`;
 * - `/state/<ws>/lock`: its lock;
 * - `/state/<ws>/versions`, `/state/<ws>/versions/<n>`, `/state/<ws>/versions/<n>/restore`.
 *
 * One trailing slash is ignored; nothing is ever redirected.
 *
 * @internal
 */

/** @internal */
export type Route =
  | { readonly _tag: "Workspaces" }
  | { readonly _tag: "State"; readonly workspace: string }
  | { readonly _tag: "Lock"; readonly workspace: string }
  | { readonly _tag: "Versions"; readonly workspace: string }
  | { readonly _tag: "Version"; readonly workspace: string; readonly version: number }
  | { readonly _tag: "Restore"; readonly workspace: string; readonly version: number }
  | { readonly _tag: "NotFound" }
  | { readonly _tag: "Invalid"; readonly reason: string }

/** The path of a request URL (no query, no fragment), still percent-encoded. @internal */
export const pathOf = (url: string): string => {
  const end = url.search(/[?#]/)
  return end === -1 ? url : url.slice(0, end)
}

/** The query string of a request URL, without `?`. @internal */
export const queryOf = (url: string): string => {
  const start = url.indexOf("?")
  if (start === -1) return ""
  const end = url.indexOf("#", start)
  return end === -1 ? url.slice(start + 1) : url.slice(start + 1, end)
}

const versionPattern = /^[1-9][0-9]{0,9}$/

/** @internal */
export const parseRoute = (url: string): Route => {
  const path = pathOf(url)
  if (path !== "/state" && !path.startsWith("/state/")) return { _tag: "NotFound" }
  const raw = path.slice("/state".length).split("/").slice(1)
  if (raw.length > 0 && raw[raw.length - 1] === "") raw.pop()
  if (raw.length === 0) return { _tag: "Workspaces" }
  const segments: Array<string> = []
  for (const segment of raw) {
    try {
      segments.push(decodeURIComponent(segment))
    } catch {
      return { _tag: "Invalid", reason: `invalid percent-encoding in path segment ${JSON.stringify(segment)}` }
    }
  }
  const [workspace, sub, version, action, ...rest] = segments as [string, ...Array<string | undefined>]
  if (workspace === "") return { _tag: "Invalid", reason: "the workspace name must not be empty" }
  if (rest.length > 0) return { _tag: "NotFound" }
  if (sub === undefined) return { _tag: "State", workspace }
  if (sub === "lock" && version === undefined) return { _tag: "Lock", workspace }
  if (sub !== "versions") return { _tag: "NotFound" }
  if (version === undefined) return { _tag: "Versions", workspace }
  if (!versionPattern.test(version)) {
    return { _tag: "Invalid", reason: `version must be a positive integer, not ${JSON.stringify(version)}` }
  }
  const n = Number(version)
  if (action === undefined) return { _tag: "Version", workspace, version: n }
  if (action === "restore") return { _tag: "Restore", workspace, version: n }
  return { _tag: "NotFound" }
}

/**
 * The `ID` query parameter (the lock a write claims to hold); an empty `ID` counts as none.
 *
 * @internal
 */
export const lockIdOf = (url: string): string | undefined => {
  const id = new URLSearchParams(queryOf(url)).get("ID")
  return id === null || id === "" ? undefined : id
}
