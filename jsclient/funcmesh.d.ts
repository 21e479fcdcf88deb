// Types of funcmesh.js, the JavaScript client of a funcmesh gateway.

/** The gateway's error codes, and those the client sets when no HTTP answer came. */
export type MeshErrorCode =
  | "invalid_argument"
  | "unauthenticated"
  | "permission_denied"
  | "not_found"
  | "conflict"
  | "too_large"
  | "unprocessable"
  | "resource_exhausted"
  | "canceled"
  | "internal"
  | "not_implemented"
  | "bad_reply"
  | "unavailable"
  | "deadline_exceeded"
  | "network";

/** Every failure of a call. */
export class MeshError extends Error {
  constructor(code: string, status: number, message: string, requestId?: string, options?: { cause?: unknown });
  readonly name: "MeshError";
  /** The gateway's code, or "network", "canceled", "deadline_exceeded", "invalid_argument" with status 0. */
  code: MeshErrorCode | (string & {});
  /** The HTTP status; 0 when no answer came. */
  status: number;
  /** The gateway's request ID; "" when unknown. */
  requestId: string;
  /** The task's ID when a callAsync failed after the task was stored. */
  taskId?: string;
}

/** A bearer token, or a function returning one (asked before every call). */
export type TokenSource = string | null | undefined | (() => string | null | undefined | Promise<string | null | undefined>);

export interface ClientOptions {
  /** The gateway's origin and any path before the prefix; "" is the page's own origin. */
  baseURL?: string;
  /** The gateway's route prefix; "/fn" by default. */
  prefix?: string;
  token?: TokenSource;
  /** Milliseconds a call may take, sent as Mesh-Timeout-Ms. */
  timeout?: number;
  headers?: Record<string, string>;
  fetch?: typeof globalThis.fetch;
}

export interface CallOptions {
  token?: TokenSource;
  /** Milliseconds the call may take, sent as Mesh-Timeout-Ms; the client gives up a second later. */
  timeout?: number;
  signal?: AbortSignal;
  /** Merged over the client's headers. */
  headers?: Record<string, string>;
  /** How to read the result: parsed JSON (the default), text or bytes. */
  responseType?: "json" | "text" | "arrayBuffer";
}

/** A task the gateway stored for callAsync. */
export interface AcceptedTask {
  id: string;
  /** The absolute URL of the task's status. */
  status: string;
  /** True when an earlier callAsync with the same idempotencyKey stored it. */
  duplicate: boolean;
}

export interface AsyncCallOptions extends CallOptions {
  /** Sent as Idempotency-Key, so that a retry stores one task. */
  idempotencyKey?: string;
  /** Milliseconds before the first status read; 200 by default. */
  pollInterval?: number;
  /** The longest wait between two status reads, in ms; 5000 by default. */
  maxPollInterval?: number;
  /** Milliseconds to wait for the task in all; no limit by default. */
  maxWait?: number;
  /** Called once the gateway stored the task. */
  onAccepted?: (task: AcceptedTask) => void;
}

export interface EmitOptions extends CallOptions {
  /** Sent as Idempotency-Key, so that a retry emits once. */
  idempotencyKey?: string;
  /** The service name of the events route; "events" by default. */
  eventsService?: string;
}

export interface Client {
  /** Calls service.fn with params (sent as JSON; undefined sends no body) and returns the result. */
  call<T = unknown>(service: string, fn: string, params?: unknown, options?: CallOptions): Promise<T>;
  /** Calls service.fn as a durable task (Prefer: respond-async) and waits for its result. */
  callAsync<T = unknown>(service: string, fn: string, params?: unknown, options?: AsyncCallOptions): Promise<T>;
  /** Emits an event of the given type with payload as its data; returns the event's ID. */
  emit(type: string, payload?: unknown, options?: EmitOptions): Promise<string>;
}

/** Returns a client of the gateway at options.baseURL. */
export function createClient(options?: ClientOptions): Client;

/** Calls service.fn on the page's own origin. */
export function call<T = unknown>(service: string, fn: string, params?: unknown, options?: CallOptions): Promise<T>;

/** The code of an HTTP status, as the gateway maps them; "" outside 400-599. */
export function codeForStatus(status: number): MeshErrorCode | "";
