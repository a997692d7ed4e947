/**
 * oras-state: Terraform/OpenTofu state in any OCI registry.
 *
 * @since 0.1.0
 */

/** @since 0.1.0 */
export * as BackendConfig from "./BackendConfig.js"
/** @since 0.1.0 */
export * as CredentialHelper from "./CredentialHelper.js"
/** @since 0.1.0 */
export * as Credentials from "./Credentials.js"
/** @since 0.1.0 */
export * as Digest from "./Digest.js"
/** @since 0.1.0 */
export * as DockerConfig from "./DockerConfig.js"
/** @since 0.1.0 */
export * as GitHubPackages from "./GitHubPackages.js"
/** @since 0.1.0 */
export * as HttpRegistry from "./HttpRegistry.js"
/** @since 0.1.0 */
export * as LockInfo from "./LockInfo.js"
/** @since 0.1.0 */
export * as MemoryRegistry from "./MemoryRegistry.js"
/** @since 0.1.0 */
export * as OciLayoutRegistry from "./OciLayoutRegistry.js"
/** @since 0.1.0 */
export * as OrasBackend from "./OrasBackend.js"
/** @since 0.1.0 */
export * as RateLimiter from "./RateLimiter.js"
/** @since 0.1.0 */
export * as Registry from "./Registry.js"
/** @since 0.1.0 */
export * as Retry from "./Retry.js"
/** @since 0.1.0 */
export * as Server from "./Server.js"
/** @since 0.1.0 */
export * as StateBackend from "./StateBackend.js"
/** @since 0.1.0 */
export * as Telemetry from "./Telemetry.js"
/** @since 0.1.0 */
export * as WireFormat from "./WireFormat.js"

/** @since 0.1.0 */
export {
  CorruptState,
  CredentialsError,
  InconsistentRead,
  InvalidConfig,
  InvalidReference,
  LockConflict,
  LockIdMismatch,
  LockLost,
  RegistryError,
  StateTooLarge,
  TransientRegistry,
  Unauthorized,
  Unsupported
} from "./Errors.js"
/** @since 0.1.0 */
export type { RegistryFailure } from "./Errors.js"
