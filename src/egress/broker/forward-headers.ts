/**
 * The headers of a brokered exchange: hop-by-hop ones dropped each way (as the egress proxy drops
 * them for forwarded requests), and the secret binding applied to the request. The binding's value
 * exists only here and on the wire to the upstream: never in a log line or an error message.
 */
import type http from "node:http";
import { withoutHopByHop } from "../hop-by-hop.js";

/**
 * A credential the broker sets on every request to a host: `header: value`; `placeholder`, wherever
 * a request header holds it, becomes the value.
 */
export interface HeaderBinding {
  /** The header set on every request, replacing whatever the client sent (e.g. "authorization"). */
  header: string;
  /** The header's value (e.g. "Bearer …"). */
  value: string;
  /** A stand-in the container holds instead of the secret; in any request header value it is replaced by `value`. */
  placeholder?: string;
}

/**
 * The request's headers as the upstream gets them: end-to-end ones only, the placeholder replaced
 * in every value, then the binding's header set. `authority` is the Host when the client sent none.
 */
export function upstreamRequestHeaders(
  req: http.IncomingMessage,
  binding: HeaderBinding,
  authority: string,
): http.OutgoingHttpHeaders {
  const headers = withoutHopByHop(req.headers);
  const placeholder = binding.placeholder ?? "";
  if (placeholder !== "") {
    const replace = (text: string): string => text.split(placeholder).join(binding.value);
    for (const [name, value] of Object.entries(headers)) {
      if (typeof value === "string") headers[name] = replace(value);
      else if (Array.isArray(value)) headers[name] = value.map(replace);
    }
  }
  headers[binding.header.toLowerCase()] = binding.value;
  headers.host ??= authority;
  // The body is passed on as it comes: chunked from the client, chunked to the upstream (Node
  // would otherwise send a GET's or DELETE's unframed body and close the connection after it).
  if (req.headers["transfer-encoding"] !== undefined && headers["content-length"] === undefined)
    headers["transfer-encoding"] = "chunked";
  // Kept open for the client's next request: without an agent Node would ask the upstream to close.
  headers.connection = "keep-alive";
  return headers;
}
