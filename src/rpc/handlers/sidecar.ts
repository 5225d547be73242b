/** sidecar.* methods. */
import type { MethodHandler } from "../protocol.js";

/** sidecar.health takes no params (any given are ignored). */
export const handleHealth: MethodHandler = (_params, { service, signal }) => service.health(signal);
