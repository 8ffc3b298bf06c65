// TF Serving's REST API, and nothing else: the same page works in front of spade-serve and
// in front of a real TF Serving behind a reverse proxy.
//
//   GET  {api}/v1/models/{name}           model status
//   POST {api}/v1/models/{name}:predict   {"signature_name": ..., "inputs": {...}}
//
// Errors are TF Serving's {"error": "message"} with an HTTP status; they become ApiError.

export class ApiError extends Error {
  constructor(message, status = 0) {
    super(message);
    this.name = "ApiError";
    this.status = status;
  }
}

/** A base URL for the API from the page's `?api=` (default: this server, ""). */
export function apiBase(value) {
  return (value || "").trim().replace(/\/+$/, "");
}

/**
 * One output of a columnar answer. With a single output TF Serving answers
 * {"outputs": value}, with several {"outputs": {alias: value}}; both are accepted. A
 * per-example list of one value is unwrapped.
 */
export function outputOf(answer, alias) {
  let value = answer ? answer.outputs : undefined;
  if (value === undefined) throw new ApiError(`the answer has no "outputs": ${excerpt(answer)}`);
  if (value && typeof value === "object" && !Array.isArray(value) && !("b64" in value)) {
    if (!(alias in value)) throw new ApiError(`the answer has no output "${alias}"`);
    value = value[alias];
  }
  while (Array.isArray(value) && value.length === 1) value = value[0];
  return value;
}

/** The bytes of a `..._bytes` output ({"b64": ...}) as base64 text. */
export function b64Output(answer, alias) {
  const value = outputOf(answer, alias);
  if (!value || typeof value.b64 !== "string") {
    throw new ApiError(`output "${alias}" is not {"b64": ...}: ${excerpt(value)}`);
  }
  return value.b64;
}

function excerpt(value) {
  const text = JSON.stringify(value);
  return text && text.length > 160 ? `${text.slice(0, 160)}...` : String(text);
}

export class ServingApi {
  constructor(base, model, { timeoutMs = 120000 } = {}) {
    this.base = apiBase(base);
    this.model = model;
    this.timeoutMs = timeoutMs;
  }

  modelUrl(suffix = "") {
    return `${this.base}/v1/models/${encodeURIComponent(this.model)}${suffix}`;
  }

  async request(method, url, body, signal) {
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(new DOMException("timeout", "TimeoutError")),
      this.timeoutMs);
    const abort = () => controller.abort(signal.reason);
    if (signal) {
      if (signal.aborted) abort();
      else signal.addEventListener("abort", abort, { once: true });
    }
    let response;
    let text;
    try {
      response = await fetch(url, {
        method,
        headers: body === undefined ? {} : { "Content-Type": "application/json" },
        body: body === undefined ? undefined : JSON.stringify(body),
        signal: controller.signal,
        cache: "no-store",
      });
      text = await response.text();
    } catch (error) {
      if (signal && signal.aborted) throw error; // superseded: the caller ignores it
      if (controller.signal.aborted) {
        throw new ApiError(`${method} ${url}: no answer within ${this.timeoutMs / 1000} s`);
      }
      throw new ApiError(`${method} ${url}: cannot reach the server (${error.message || error})`);
    } finally {
      clearTimeout(timer);
      if (signal) signal.removeEventListener("abort", abort);
    }
    let document = null;
    try {
      document = text ? JSON.parse(text) : null;
    } catch {
      document = null;
    }
    if (!response.ok) {
      const message = document && typeof document.error === "string" ? document.error
        : (text || response.statusText || "no message").slice(0, 500);
      throw new ApiError(`HTTP ${response.status}: ${message}`, response.status);
    }
    if (document === null) {
      throw new ApiError(`${method} ${url}: the answer is not JSON: ${text.slice(0, 200)}`);
    }
    return document;
  }

  /** GetModelStatus: {"model_version_status": [{"version", "state", "status"}, ...]}. */
  status(signal) {
    return this.request("GET", this.modelUrl(), undefined, signal);
  }

  predict(signatureName, inputs, signal) {
    return this.request("POST", this.modelUrl(":predict"),
      { signature_name: signatureName, inputs }, signal);
  }

  /** The model_info signature's metadata, parsed. */
  async modelInfo(signal) {
    const answer = await this.predict("model_info", { request: [0] }, signal);
    const text = outputOf(answer, "metadata_json");
    if (typeof text !== "string") throw new ApiError("model_info: metadata_json is not text");
    try {
      return JSON.parse(text);
    } catch (error) {
      throw new ApiError(`model_info: metadata_json is not JSON (${error.message})`);
    }
  }
}
