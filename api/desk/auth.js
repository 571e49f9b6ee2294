// Everything the desk knows about authentication, in one place.
//
// The agent's token (a JWT) lives in sessionStorage: it survives a reload of this tab, is gone when the
// tab closes, and is never shared with other tabs. REST calls carry it as `Authorization: Bearer`. The
// stream is opened with a single-use ticket from `POST /v1/stream-tickets`, so no lasting secret is ever
// written into a URL (URLs end up in logs).


const STORAGE_KEY = "citizen-context.token";

/** Raised when the API refuses the agent's credentials (401); the desk then asks to sign in again. */
export class SignedOut extends Error {}

/** Moves a `#token=...` sign-in link's token into sessionStorage and removes it from the address bar. */
export function takeTokenFromFragment() {
  const fragment = new URLSearchParams(window.location.hash.slice(1));
  const token = fragment.get("token");
  if (token === null) return false;
  // Replace, not push: the token must not stay in the history either.
  history.replaceState(null, "", window.location.pathname + window.location.search);
  if (token.trim() === "") return false;
  signIn(token);
  return true;
}

export function signIn(token) {
  sessionStorage.setItem(STORAGE_KEY, token.trim());
}

export function signOut() {
  sessionStorage.removeItem(STORAGE_KEY);
}

export function token() {
  return sessionStorage.getItem(STORAGE_KEY);
}

/** The token's claims, for display only: the API verifies the signature, the desk never trusts these. */
export function claims() {
  const value = token();
  if (!value) return null;
  try {
    const payload = value.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    const json = new TextDecoder().decode(Uint8Array.from(atob(payload), (c) => c.charCodeAt(0)));
    const parsed = JSON.parse(json);
    return typeof parsed === "object" && parsed !== null ? parsed : null;
  } catch {
    return null;
  }
}

/** A name to greet the agent with. */
export function agentName() {
  const found = claims();
  return (found && (found.name || found.sub)) || "an agent";
}

function authHeaders() {
  const headers = {};
  const value = token();
  if (value) headers.Authorization = `Bearer ${value}`;
  return headers;
}

/** fetch() with the agent's credentials; a 401 signs the agent out and raises SignedOut. */
export async function authFetch(path, init = {}) {
  const response = await fetch(path, { ...init, headers: { ...authHeaders(), ...(init.headers || {}) } });
  if (response.status === 401) {
    signOut();
    throw new SignedOut("Your sign-in has expired or is not valid. Please sign in again.");
  }
  return response;
}

/** The WebSocket URL of a stream, with a fresh single-use ticket (and the position to resume from). */
export async function streamUrl(path, params) {
  const query = new URLSearchParams(params);
  const response = await authFetch("/v1/stream-tickets", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: "{}",
  });
  if (!response.ok) throw new Error(`stream ticket refused (${response.status})`);
  query.set("ticket", (await response.json()).ticket);
  const scheme = window.location.protocol === "https:" ? "wss:" : "ws:";
  const search = query.toString();
  return `${scheme}//${window.location.host}${path}${search ? `?${search}` : ""}`;
}
