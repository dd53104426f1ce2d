// A small consumer of the mpn-benefits API written against the types that openapi-typescript
// generates from api/openapi.yaml (gen/api.d.ts, made by scripts/checks/docs.sh types). It is
// type-checked with `tsc --noEmit` in CI, never run: it proves that the generated types are
// usable for what a client does most — read a paged list to its end, reveal keys and handle each
// problem `code`, start an activation and follow it until an operator decides. A field, code or
// status the consumer relies on that leaves the contract fails the type check.
import type { components, paths } from "./gen/api";

type Schemas = components["schemas"];
type Problem = Schemas["Problem"];
type ProblemCode = Schemas["ProblemCode"];

type UserList = paths["/v1/partners/{partnerId}/users"]["get"]["responses"][200]["content"]["application/json"];
type UserQuery = NonNullable<paths["/v1/partners/{partnerId}/users"]["get"]["parameters"]["query"]>;
type KeyRequest = NonNullable<
  paths["/v1/partners/{partnerId}/benefits/{benefitId}/keys"]["post"]["requestBody"]
>["content"]["application/json"];
type KeyReveal =
  paths["/v1/partners/{partnerId}/benefits/{benefitId}/keys"]["post"]["responses"][200]["content"]["application/json"];
type Activation =
  paths["/v1/partners/{partnerId}/benefits/{benefitId}/activation"]["post"]["responses"][202]["content"]["application/json"];
type ActivationRead =
  paths["/v1/partners/{partnerId}/activations/{activationId}"]["get"]["responses"][200]["content"]["application/json"];
type AuditEvent = Schemas["AuditEvent"];
type Package = Schemas["Package"];

export class ApiProblem extends Error {
  constructor(readonly problem: Problem) {
    super(`${problem.status} ${problem.code}: ${problem.detail}`);
  }
}

export interface Client {
  base: string;
  token: string;
}

async function call<T>(c: Client, method: string, path: string, body?: unknown, headers: Record<string, string> = {}) {
  const res = await fetch(c.base + path, {
    method,
    headers: {
      Authorization: `Bearer ${c.token}`,
      Accept: "application/json",
      ...(body === undefined ? {} : { "Content-Type": "application/json" }),
      ...headers,
    },
    body: body === undefined ? null : JSON.stringify(body),
  });
  const type = res.headers.get("Content-Type") ?? "";
  if (!res.ok) {
    if (type.startsWith("application/problem+json")) throw new ApiProblem((await res.json()) as Problem);
    throw new Error(`${method} ${path}: HTTP ${res.status}`);
  }
  return { status: res.status, headers: res.headers, body: (await res.json()) as T };
}

// 1. A paged list, read to its end by following next_cursor (null on the last page).
export async function allUsers(c: Client, partnerId: string): Promise<Map<string, string>> {
  const byEmail = new Map<string, string>();
  let cursor: string | null = null;
  do {
    const q: UserQuery = { limit: 200, ...(cursor === null ? {} : { cursor }) };
    const qs = new URLSearchParams(Object.entries(q).map(([k, v]) => [k, String(v)]));
    const page: UserList = (await call<UserList>(c, "GET", `/v1/partners/${partnerId}/users?${qs}`)).body;
    for (const u of page.items) byEmail.set(u.email, `${u.display_name} (${u.roles.join(", ")})`);
    cursor = page.next_cursor;
  } while (cursor !== null);
  return byEmail;
}

// 2. Reveal keys; every problem the operation documents gets its own handling.
export type RevealOutcome =
  | { ok: true; keys: string[]; links: string[]; instructions: string }
  | { ok: false; retry: boolean; message: string; fields?: string[] };

export async function revealKeys(c: Client, partnerId: string, benefitId: string, req: KeyRequest): Promise<RevealOutcome> {
  try {
    const r = await call<KeyReveal>(c, "POST", `/v1/partners/${partnerId}/benefits/${benefitId}/keys`, req, {
      "Idempotency-Key": crypto.randomUUID(),
    });
    return {
      ok: true,
      keys: r.body.keys,
      links: r.body.download_links.map((l) => l.url),
      instructions: r.body.instructions,
    };
  } catch (e) {
    if (!(e instanceof ApiProblem)) throw e;
    const p = e.problem;
    const code: ProblemCode = p.code;
    switch (code) {
      case "key-pool-exhausted":
        return { ok: false, retry: true, message: "No keys left for this product; an operator refills the pool." };
      case "membership-in-pmc":
        return { ok: false, retry: false, message: "The membership is still being set up." };
      case "validation-failed":
        return { ok: false, retry: false, message: p.detail, fields: (p.errors ?? []).map((f) => f.field) };
      case "unavailable":
        return { ok: false, retry: true, message: p.detail };
      default:
        return { ok: false, retry: false, message: `${p.title} (${code}, request ${p.request_id ?? "?"})` };
    }
  }
}

// 3. Start an activation (202 + Location) and follow it until an operator decides.
export async function activateAndWait(c: Client, partnerId: string, benefitId: string, maxWaitMs: number) {
  const started = await call<Activation>(c, "POST", `/v1/partners/${partnerId}/benefits/${benefitId}/activation`, {}, {
    "Idempotency-Key": crypto.randomUUID(),
  });
  const location = started.headers.get("Location") ?? `/v1/partners/${partnerId}/activations/${started.body.id}`;
  let a: ActivationRead = started.body;
  const deadline = Date.now() + maxWaitMs;
  while (a.status === "pending" && Date.now() < deadline) {
    const wait = Number(started.headers.get("Retry-After") ?? "60") * 1000;
    await new Promise((r) => setTimeout(r, Math.min(wait, Math.max(0, deadline - Date.now()))));
    a = (await call<ActivationRead>(c, "GET", location)).body;
  }
  switch (a.status) {
    case "active":
      return { done: true, access: a.access_id, contract: a.contract_id, until: a.expires_at ? new Date(a.expires_at) : null };
    case "rejected":
      return { done: true, rejected: a.reason ?? "no reason given", at: a.processed_at };
    case "pending":
      return { done: false, since: new Date(a.requested_at) };
    default: {
      const never: never = a.status; // a new status in the contract must be handled here
      return never;
    }
  }
}

// 4. Fields typed so that they can be read: audit details (any JSON object) and money.
export function describe(ev: AuditEvent): string {
  const seats = ev.details["seats_released"];
  const extra = typeof seats === "number" ? ` (${seats.toFixed(0)} seats released)` : "";
  return `${ev.at} ${ev.actor} ${ev.action} ${ev.target.type}/${ev.target.id}${extra}`;
}

export function priceLabel(p: Package): string {
  // `price` is a decimal amount in major units of `currency` (README, Money): format it, never
  // do float arithmetic with it.
  return new Intl.NumberFormat("en", { style: "currency", currency: p.currency }).format(p.price);
}
