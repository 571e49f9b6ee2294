// Everything the desk knows about authentication, in one place.
//
// The agent's token (a JWT) lives in sessionStorage: it survives a reload of this tab (and may come back
// with a tab the browser restores), and is never shared with other tabs. REST calls carry it as
// `Authorization: Bearer`. The stream is opened with a single-use ticket from `POST /v1/stream-tickets`, so
// no lasting secret is ever written into a URL (URLs end up in logs).


const STORAGE_KEY = "citizen-context.token";
// The identity provider's refresh token, when it gives one: the access token is renewed with it before it
// ends (a provider's tokens often last minutes, an agent's shift hours).
const REFRESH_KEY = "citizen-context.refresh";
// The provider's ID token, when it gives one: signing out at the provider names the session it ends with it.
const ID_TOKEN_KEY = "citizen-context.id-token";

/** Raised when the API refuses the agent's credentials (401); the desk then asks to sign in again. */
export class SignedOut extends Error {}

/** Takes a `#token=...` sign-in link's token out of the address bar (and the history); returns it, or null. */
export function takeTokenFromFragment() {
  const fragment = new URLSearchParams(window.location.hash.slice(1));
  const token = fragment.get("token");
  if (token === null) return null;
  // Replace, not push: the token must not stay in the history either.
  history.replaceState(null, "", window.location.pathname + window.location.search);
  return token.trim() === "" ? null : token.trim();
}

/**
 * Signs in with a sign-in link's token where that is safe; returns why not ("" when it did, or there was none).
 *
 * Anyone can send a colleague a link carrying their own token: followed, it would have the colleague work,
 * and write notes, as the sender (login CSRF). So a link is used only where no identity provider is set up
 * (development, or a deployment whose agents are given tokens), and never in place of a session already
 * open in the tab.
 */
export function useSignInLink(linked, providerConfigured) {
  if (linked === null) return "";
  if (providerConfigured) return "Sign-in links are not used here: sign in with your organisation.";
  const current = token();
  // A session that has expired is over already: the link signs the agent in again.
  if (current && current !== linked && !expired()) {
    return "This tab is signed in already, so the sign-in link was not used. Sign out first to use it.";
  }
  signIn(linked);
  return "";
}

/** Holds the agent's token, with what the provider gave besides: the refresh token that renews it (none: it
 * is not renewed) and the ID token that names the session to end at sign-out. */
export function signIn(token, refreshToken = null, idToken = null) {
  sessionStorage.setItem(STORAGE_KEY, token.trim());
  for (const [key, value] of [
    [REFRESH_KEY, refreshToken],
    [ID_TOKEN_KEY, idToken],
  ]) {
    if (value) sessionStorage.setItem(key, value);
    else sessionStorage.removeItem(key);
  }
}

/** A text field of a token endpoint's answer, or null. */
function text(body, name) {
  return typeof body[name] === "string" ? body[name] : null;
}

export function signOut() {
  sessionStorage.removeItem(STORAGE_KEY);
  sessionStorage.removeItem(REFRESH_KEY);
  sessionStorage.removeItem(ID_TOKEN_KEY);
}

/**
 * Signs out here and, where the provider has an end-session endpoint, there too (OpenID Connect
 * RP-initiated logout): on a shared desk, the next agent's "Sign in with your organisation" would otherwise
 * find the previous agent's session still open at the provider, and sign them in as that agent. The page
 * then leaves for the provider, which sends the browser back to the desk.
 */
export function signOutEverywhere(provider) {
  const idToken = sessionStorage.getItem(ID_TOKEN_KEY);
  signOut();
  if (!provider || !provider.logout_url) return;
  const url = new URL(provider.logout_url); // it may hold parameters of its own (a policy, say): kept
  url.searchParams.set("client_id", provider.client_id);
  url.searchParams.set("post_logout_redirect_uri", redirectUri());
  if (idToken) url.searchParams.set("id_token_hint", idToken);
  window.location.assign(url.href);
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

/** Whether the token says it has expired (display only, as `claims`): the desk asks to sign in again at
 * once, rather than when the agent submits what they typed. The API still judges every request. */
export function expired(now = Date.now()) {
  const found = claims();
  return Boolean(found && typeof found.exp === "number" && found.exp * 1000 <= now);
}

/** When to renew the token (ms since 1970): three quarters into its life (a minute before its end when it
 * does not say when it began); null when it says no end, or nothing can renew it. */
export function renewalDue() {
  const found = claims();
  if (!found || typeof found.exp !== "number" || !sessionStorage.getItem(REFRESH_KEY)) return null;
  const end = found.exp * 1000;
  const start = typeof found.iat === "number" && found.iat < found.exp ? found.iat * 1000 : end - 4 * 60_000;
  return start + 0.75 * (end - start);
}

/** Renews the token at the identity provider with its refresh token; true when a new one is in hand. */
export async function renewToken(provider) {
  const refresh = sessionStorage.getItem(REFRESH_KEY);
  if (!provider || !refresh) return false;
  let response;
  let body = null;
  try {
    response = await fetch(provider.token_url, {
      method: "POST",
      headers: { "Content-Type": "application/x-www-form-urlencoded" },
      body: new URLSearchParams({ grant_type: "refresh_token", refresh_token: refresh, client_id: provider.client_id }),
    });
    if (response.ok) body = await response.json();
  } catch {
    return false; // unreachable just now: tried again later, while the token lasts
  }
  // Signed out (or in again) meanwhile: what comes back is not this session's to keep.
  if (sessionStorage.getItem(REFRESH_KEY) !== refresh) return false;
  if (!body || typeof body.access_token !== "string") {
    // Refused (the provider's session ended): asking again would be refused again.
    if (response.status === 400 || response.status === 401) sessionStorage.removeItem(REFRESH_KEY);
    return false;
  }
  // A provider that rotates refresh tokens sends a new one with each renewal; others keep the first valid.
  signIn(body.access_token, text(body, "refresh_token") || refresh, text(body, "id_token") || sessionStorage.getItem(ID_TOKEN_KEY));
  return true;
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

// ---- signing in through the organisation's identity provider (OpenID Connect, code flow with PKCE) ----
//
// The desk is a public client: no secret. A random verifier stays in this tab's sessionStorage; the
// provider sees only its SHA-256 (the challenge), and the code it returns is worth nothing without the
// verifier. `state` ties the answer to this tab's request.

const PKCE_KEY = "citizen-context.pkce";

/** The desk's sign-in settings could not be read: whether a provider is set up is not known. */
export class SettingsUnavailable extends Error {}

/** The identity provider's settings, or null when the desk offers only the token form (development);
 * SettingsUnavailable when they cannot be read (a deploy under way, a proxy's error page). */
export async function identityProvider() {
  let config;
  try {
    const response = await fetch("config.json");
    if (!response.ok) throw new Error(`config.json: ${response.status}`);
    config = await response.json();
  } catch {
    throw new SettingsUnavailable("The desk could not load its sign-in settings. Reload the page to try again.");
  }
  return config && config.oidc ? config.oidc : null;
}

function randomText(bytes) {
  return base64Url(crypto.getRandomValues(new Uint8Array(bytes)));
}

function base64Url(bytes) {
  let binary = "";
  for (const byte of new Uint8Array(bytes)) binary += String.fromCharCode(byte);
  return btoa(binary).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

function redirectUri() {
  return `${window.location.origin}${window.location.pathname}`;
}

/** Leaves for the provider's sign-in page; it sends the agent back here with a code. */
export async function startProviderSignIn(provider) {
  const verifier = randomText(32);
  const state = randomText(16);
  sessionStorage.setItem(PKCE_KEY, JSON.stringify({ verifier, state }));
  const challenge = base64Url(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(verifier)));
  const url = new URL(provider.authorization_url); // parameters of its own (a policy, say) are kept
  for (const [name, value] of Object.entries({
    response_type: "code",
    client_id: provider.client_id,
    redirect_uri: redirectUri(),
    scope: provider.scope,
    state,
    code_challenge: challenge,
    code_challenge_method: "S256",
  })) {
    url.searchParams.set(name, value);
  }
  window.location.assign(url.href);
}

/** On the way back from the provider: exchanges the code for a token. False when this is not a return. */
export async function finishProviderSignIn(provider) {
  const params = new URLSearchParams(window.location.search);
  if (!params.has("code") && !params.has("error")) return false;
  // The code must not stay in the address bar or the history.
  history.replaceState(null, "", window.location.pathname);
  const pending = JSON.parse(sessionStorage.getItem(PKCE_KEY) || "null");
  sessionStorage.removeItem(PKCE_KEY);
  if (params.has("error")) throw new SignedOut("The sign-in was cancelled or refused. Please try again.");
  if (!provider || !pending || pending.state !== params.get("state")) {
    throw new SignedOut("That sign-in did not start here. Please sign in again.");
  }
  const response = await fetch(provider.token_url, {
    method: "POST",
    headers: { "Content-Type": "application/x-www-form-urlencoded" },
    body: new URLSearchParams({
      grant_type: "authorization_code",
      code: params.get("code"),
      redirect_uri: redirectUri(),
      client_id: provider.client_id,
      code_verifier: pending.verifier,
    }),
  });
  const body = response.ok ? await response.json() : null;
  if (!body || typeof body.access_token !== "string") {
    throw new SignedOut("The identity provider did not sign you in. Please try again.");
  }
  signIn(body.access_token, text(body, "refresh_token"), text(body, "id_token"));
  return true;
}
