/**
 * What `test/support/globalSetup.ts` provides to test files: `inject("registries")`.
 * Importing nothing from here is fine: the module augmentation applies as long as this file is part
 * of the TypeScript program (tsconfig.json includes `test/`).
 */

export interface ProvidedPlainRegistry {
  /** `http://127.0.0.1:PORT` */
  readonly url: string
  /** `127.0.0.1:PORT` */
  readonly host: string
}

export interface ProvidedHtpasswdRegistry extends ProvidedPlainRegistry {
  readonly username: string
  readonly password: string
}

export interface ProvidedTokenRegistry extends ProvidedHtpasswdRegistry {
  /** A user the token server grants `pull` only. */
  readonly readerUsername: string
  readonly readerPassword: string
  /** `http://127.0.0.1:PORT` of the token server (realm is `${tokenServerUrl}/token`). */
  readonly tokenServerUrl: string
}

export interface ProvidedRegistries {
  readonly plain: ProvidedPlainRegistry
  readonly htpasswd: ProvidedHtpasswdRegistry
  readonly token: ProvidedTokenRegistry
  /** Same as `token.tokenServerUrl`; `GET ${tokenServerUrl}/stats` counts token requests. */
  readonly tokenServerUrl: string
}

declare module "vitest" {
  export interface ProvidedContext {
    registries: ProvidedRegistries
  }
}
