// The agent desk: sign in, start an enquiry, watch the citizen's context live, complete the enquiry.

import {
  SignedOut,
  agentName,
  authFetch,
  claims,
  expired,
  finishProviderSignIn,
  identityProvider,
  renewToken,
  renewalDue,
  signIn,
  signOut,
  signOutEverywhere,
  startProviderSignIn,
  takeTokenFromFragment,
  token,
  useSignInLink,
} from "./auth.js";
import { announcement, eventKey, renderProfile, renderSummary, timelineItem } from "./render.js";
import { ContextStream } from "./stream.js";

const ENQUIRY_KEY = "citizen-context.enquiry";
const MAX_TIMELINE = 200;
const $ = (id) => document.getElementById(id);

let stream = null;
let provider = null;
let enquiry = null;
let connectionState = null;
let pending = [];
let announceTimer = null;

const IDENTIFIER_LABELS = {
  phone: ["Phone number", "tel"],
  citizen_id: ["Citizen id", "text"],
  email: ["Email address", "email"],
  case: ["Case reference", "text"],
};

// ---- views -------------------------------------------------------------------------------------------

function show(view, focus) {
  for (const id of ["sign-in", "start", "enquiry"]) $(id).hidden = id !== view;
  $("agent").hidden = view === "sign-in";
  $("agent-name").textContent = view === "sign-in" ? "" : `Signed in as ${agentName()}`;
  if (focus) focus.focus();
}

function showError(id, message) {
  const node = $(id);
  node.textContent = message || "";
  node.hidden = !message;
}

function showSignIn(message) {
  clearTimeout(renewTimer);
  closeEnquiry();
  showError("sign-in-error", message);
  $("provider-sign-in").hidden = provider === null;
  const first = provider === null ? $("token") : $("provider-button");
  show("sign-in", message ? first : null);
}

async function showStart(message) {
  closeEnquiry();
  showError("start-error", message);
  show("start");
  $("identifier").focus();
}

/** What a problem (RFC 9457) says, with each of a 422's errors: where, and what is wrong. */
function problemText(body, fallback) {
  const text = (body && (body.detail || body.title)) || fallback;
  const errors = body && Array.isArray(body.errors) ? body.errors : [];
  const said = errors
    .filter((error) => error && typeof error.message === "string")
    .map((error) => {
      const where = typeof error.location === "string" ? error.location.replace(/^body\.?/, "") : "";
      return where ? `${where}: ${error.message}` : error.message;
    });
  return said.length ? `${text} ${said.join("; ")}.` : text;
}

async function readJson(response) {
  try {
    return await response.json();
  } catch {
    return null;
  }
}

function handleFailure(error, errorId) {
  if (error instanceof SignedOut) {
    showSignIn(error.message);
  } else {
    showError(errorId, "The desk could not reach the server. Check your connection and try again.");
  }
}

// ---- sign in -----------------------------------------------------------------------------------------

async function submitSignIn(event) {
  event.preventDefault();
  const value = $("token").value.trim();
  if (!value) {
    showError("sign-in-error", "Enter your access token.");
    $("token").focus();
    return;
  }
  signIn(value);
  $("token").value = "";
  try {
    // Any authenticated call tells whether the token is accepted.
    await authFetch("/v1/enquiries");
  } catch (error) {
    handleFailure(error, "sign-in-error");
    return;
  }
  showError("sign-in-error", "");
  await showStart();
}

function signOutClicked() {
  sessionStorage.removeItem(ENQUIRY_KEY);
  // The citizen's data leaves the page first, whether or not the page then leaves for the provider.
  showSignIn();
  signOutEverywhere(provider);
}

// ---- keeping the sign-in -----------------------------------------------------------------------------

// A renewal that fails (the provider unreachable) is tried again this often, while the token lasts.
const RENEW_RETRY_MS = 15_000;
// Renewals are at least this far apart, whatever the tokens say (a clock ahead, tokens cut short).
const RENEW_MIN_MS = 10_000;
let renewTimer = null;

/** Renews the provider's token before it ends, again and again, for as long as the provider allows. */
function keepSignedIn(delay = null) {
  clearTimeout(renewTimer);
  const due = renewalDue();
  if (provider === null || due === null) return;
  // setTimeout takes at most 2^31 - 1 ms (about 24 days); a token lasting longer is renewed then.
  renewTimer = setTimeout(renew, Math.min(delay ?? Math.max(0, due - Date.now()), 2 ** 31 - 1));
}

async function renew() {
  const endedAt = (claims() || {}).exp;
  if (await renewToken(provider)) {
    // The open stream moves to the new token before the old one ends it.
    if (stream) stream.refresh();
    // A token that ends no later than the last (the provider's session is ending) is the last renewed:
    // asking again would only bring shorter ones.
    const renewed = claims();
    const due = renewalDue();
    if (!renewed || !(renewed.exp > endedAt) || due === null) return;
    keepSignedIn(Math.max(RENEW_MIN_MS, due - Date.now()));
  } else if (!expired()) {
    keepSignedIn(RENEW_RETRY_MS);
  }
}

// ---- start an enquiry ---------------------------------------------------------------------------------

function findByChanged() {
  const [label, type] = IDENTIFIER_LABELS[$("find-by").value];
  $("identifier-label").textContent = label;
  $("identifier").type = type;
}

let starting = false;

async function submitStart(event) {
  event.preventDefault();
  // A double click or a second Enter would start a second enquiry, the first left active, granting access.
  if (starting) return;
  starting = true;
  const button = event.submitter || $("start-form").querySelector("button");
  button.disabled = true;
  try {
    await startEnquiry();
  } finally {
    starting = false;
    button.disabled = false;
  }
}

async function startEnquiry() {
  const findBy = $("find-by").value;
  const value = $("identifier").value.trim();
  if (!value) {
    showError("start-error", `Enter the ${IDENTIFIER_LABELS[findBy][0].toLowerCase()}.`);
    $("identifier").focus();
    return;
  }
  let response;
  try {
    response = await authFetch("/v1/enquiries", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ [findBy]: value, channel: $("channel").value }),
    });
  } catch (error) {
    handleFailure(error, "start-error");
    return;
  }
  const body = await readJson(response);
  if (!response.ok) {
    const message =
      response.status === 404
        ? `No citizen is known for this ${IDENTIFIER_LABELS[findBy][0].toLowerCase()}.`
        : problemText(body, `The enquiry could not be started (${response.status}).`);
    showError("start-error", message);
    $("identifier").focus();
    return;
  }
  $("identifier").value = "";
  showError("start-error", "");
  openEnquiry(body);
}

// ---- the enquiry --------------------------------------------------------------------------------------

function openEnquiry(found) {
  closeEnquiry();
  // `completing` while a completion request is under way; `held`, the outcome and notes of a completion
  // the server has begun, which any retry must repeat; `completed` once the server says it is.
  enquiry = { id: found.id, citizen_id: found.citizen_id, completing: false, held: null, completed: false };
  sessionStorage.setItem(ENQUIRY_KEY, JSON.stringify({ id: found.id, citizen_id: found.citizen_id }));
  $("citizen-id").textContent = found.citizen_id;
  document.title = `Citizen ${found.citizen_id} · Agent desk`;
  $("complete-form").hidden = false;
  $("completed").hidden = true;
  showError("complete-error", "");
  for (const option of Array.from($("outcome").options)) if (option.dataset.held) option.remove();
  $("outcome").disabled = false;
  $("outcome").selectedIndex = 0;
  $("notes").readOnly = false;
  if (found.outcome) {
    // Active with an outcome: its completion was begun (here before a reload, or elsewhere) and not confirmed.
    holdCompletion(found);
    showError("complete-error", NOT_CONFIRMED);
  }
  connectionState = null;
  show("enquiry", $("citizen-heading"));
  // A stream calls none of these once stopped (closeEnquiry stops it): nothing late reaches the next enquiry.
  stream = new ContextStream(found.id, { snapshot, change, state: setConnection, presence });
  stream.start();
}

function closeEnquiry() {
  if (stream) stream.stop();
  stream = null;
  enquiry = null;
  pending = [];
  clearTimeout(announceTimer);
  offlineSince = null;
  clearCitizen();
  $("citizen-id").textContent = "";
  document.title = "Agent desk · Citizen Context";
}

/** Takes the citizen's data off the page: nothing of theirs stays in the DOM once the view may not show it
 * (signed out, access refused, the citizen erased), where the next user of the tab could find it. */
function clearCitizen() {
  $("timeline-list").replaceChildren();
  $("timeline-empty").hidden = false;
  $("summary-body").replaceChildren();
  renderProfile({});
  $("presence").hidden = true;
  $("presence").textContent = "";
  $("notes").value = "";
  $("announcer").replaceChildren();
}

function snapshot(context) {
  renderProfile(context.profile);
  renderSummary(context.summary);
  const list = $("timeline-list");
  list.replaceChildren(...context.timeline.slice(0, MAX_TIMELINE).map(timelineItem));
  $("timeline-empty").hidden = context.timeline.length > 0;
}

function change(message) {
  if (message.profile) renderProfile(message.profile);
  if (message.summary) renderSummary(message.summary);
  if (message.event && insertEvent(message.event)) queueAnnouncement(message.event);
}

/** Inserts an event at its place by time (events may arrive late); false when it is already shown. */
function insertEvent(event) {
  const list = $("timeline-list");
  const key = eventKey(event);
  for (const item of list.children) if (item.dataset.key === key) return false;
  const node = timelineItem(event);
  node.classList.add("new");
  const time = Number(node.dataset.time);
  const before = Array.from(list.children).find((item) => Number(item.dataset.time) <= time);
  list.insertBefore(node, before || null);
  while (list.children.length > MAX_TIMELINE) list.lastElementChild.remove();
  $("timeline-empty").hidden = true;
  return true;
}

// Bursts are announced once, so a screen reader is not flooded.
function queueAnnouncement(event) {
  pending.push(event);
  clearTimeout(announceTimer);
  announceTimer = setTimeout(() => {
    const events = pending;
    pending = [];
    const text =
      events.length === 1
        ? announcement(events[0])
        : `${events.length} new items on the timeline. Newest: ${announcement(events[events.length - 1]).replace("New on the timeline: ", "")}`;
    const line = document.createElement("p");
    line.textContent = text;
    $("announcer").replaceChildren(line);
  }, 400);
}

function presence(viewers) {
  const node = $("presence");
  node.hidden = viewers.length === 0;
  node.textContent = viewers.length ? `Also viewing this citizen: ${viewers.join(", ")}` : "";
}

const lostAt = new Intl.DateTimeFormat("en-GB", { timeStyle: "short" });
let offlineSince = null;

function setConnection(state, detail) {
  if (state === "signed-out") {
    showSignIn(detail);
    return;
  }
  if (state === "offline" || state === "reconnecting") offlineSince = offlineSince || new Date();
  if (state === "live") offlineSince = null;
  const since = offlineSince ? ` since ${lostAt.format(offlineSince)}` : "";
  const texts = {
    connecting: "Connecting…",
    reconnecting: `Reconnecting${since}… What you see may be out of date.`,
    live: "Live: new events appear as they happen.",
    delayed: "Delayed: the server is not receiving updates right now. What you see may be out of date.",
    offline: `Connection lost${since}. Reconnecting… What you see may be out of date.`,
    ended: endedText(),
    failed: detail || "The live view stopped.",
    halted: detail || "The live view stopped.",
  };
  // "offline" and "reconnecting" alternate while retrying; one message covers both.
  const shown = state === "reconnecting" ? "offline" : state;
  if (shown === connectionState) return;
  connectionState = shown;
  $("connection").dataset.state = shown;
  $("connection-text").textContent = texts[state];
  if (state === "ended") streamEnded();
  if (state === "failed") {
    // Refused, erased or gone (4403, 4411, 4404): the citizen's data may not stay on screen, nor the
    // enquiry be resumed on a reload.
    clearCitizen();
    $("complete-form").hidden = true;
    sessionStorage.removeItem(ENQUIRY_KEY);
  }
}

function endedText() {
  return enquiry && enquiry.completed ? "Enquiry completed. Live updates have stopped." : "Live updates have stopped.";
}

// ---- complete ------------------------------------------------------------------------------------------

// Only the server's word completes an enquiry here: the complete request's 200, or, after a 409 or when the
// stream ends, a read that says it is completed. The stream's end (4410) alone is no proof: the completion's
// event reaches the timeline, and ends the stream, before the server records the enquiry as completed, and
// that may then fail. Until the server confirms it, the form stays, so the agent can retry.
const NOT_CONFIRMED =
  "The enquiry is not completed yet: its completion was not confirmed. Select Complete enquiry to try again.";
const NOT_RECORDED =
  "The enquiry is not completed yet: the server could not record its completion just now. Nothing is lost. " +
  "Select Complete enquiry to try again.";
const BEGUN_OTHERWISE =
  "This enquiry's completion was begun with the outcome and notes now shown, and is not confirmed yet. " +
  "Select Complete enquiry to confirm it.";

async function submitComplete(event) {
  event.preventDefault();
  const current = enquiry;
  if (!current || current.completing) return;
  const button = event.submitter || $("complete-form").querySelector("button");
  button.disabled = true;
  current.completing = true;
  const completion = current.held || { outcome: $("outcome").value, notes: $("notes").value.trim() || null };
  let response;
  try {
    response = await authFetch(`/v1/enquiries/${encodeURIComponent(current.id)}/complete`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(completion),
    });
  } catch (error) {
    if (current === enquiry) handleFailure(error, "complete-error");
    return;
  } finally {
    current.completing = false;
    button.disabled = false;
  }
  if (current !== enquiry) return;
  if (response.ok) {
    showError("complete-error", "");
    markCompleted();
    $("completed-text").focus();
    return;
  }
  const body = await readJson(response);
  if (response.status === 409) {
    await settleCompletion(BEGUN_OTHERWISE);
  } else if (response.status >= 500) {
    // The server may have begun the completion (503: Kafka did not acknowledge it): a retry repeats it.
    await settleCompletion(NOT_RECORDED);
  } else {
    showError("complete-error", problemText(body, `The enquiry could not be completed (${response.status}). Try again.`));
  }
}

function streamEnded() {
  // While a completion request is under way, its answer decides.
  if (enquiry && !enquiry.completed && !enquiry.completing) settleCompletion(NOT_CONFIRMED);
}

/** Reads the enquiry: completed, or still active, with the completion the server has begun held in the form. */
async function settleCompletion(message) {
  const current = enquiry;
  let response;
  try {
    response = await authFetch(`/v1/enquiries/${encodeURIComponent(current.id)}`);
  } catch (error) {
    if (current === enquiry) handleFailure(error, "complete-error");
    return;
  }
  const body = await readJson(response);
  if (current !== enquiry || current.completed) return;
  if (response.ok && body && body.status === "completed") {
    showError("complete-error", "");
    markCompleted();
    return;
  }
  if (response.ok && body && body.outcome) holdCompletion(body);
  showError("complete-error", message);
}

/** Shows the outcome and notes of a completion the server has begun, fixed: a retry must send the same. */
function holdCompletion(found) {
  enquiry.held = { outcome: found.outcome, notes: found.notes };
  const outcome = $("outcome");
  if (!Array.from(outcome.options).some((option) => option.value === found.outcome)) {
    const held = new Option(found.outcome, found.outcome);
    held.dataset.held = "true"; // an outcome another client chose; removed with this enquiry
    outcome.append(held);
  }
  outcome.value = found.outcome;
  outcome.disabled = true;
  $("notes").value = found.notes || "";
  $("notes").readOnly = true;
}

function markCompleted() {
  if (enquiry) enquiry.completed = true;
  sessionStorage.removeItem(ENQUIRY_KEY);
  $("complete-form").hidden = true;
  $("completed").hidden = false;
  if (connectionState === "ended") $("connection-text").textContent = endedText();
}

// ---- start ---------------------------------------------------------------------------------------------

async function resumeStoredEnquiry() {
  const stored = sessionStorage.getItem(ENQUIRY_KEY);
  if (!stored) return false;
  let saved;
  try {
    saved = JSON.parse(stored);
  } catch {
    sessionStorage.removeItem(ENQUIRY_KEY);
    return false;
  }
  const response = await authFetch(`/v1/enquiries/${encodeURIComponent(saved.id)}`);
  const body = await readJson(response);
  if (response.ok && body && body.status === "active") {
    openEnquiry(body);
    return true;
  }
  if (!response.ok && response.status !== 403 && response.status !== 404) {
    // The server could not say (unavailable, busy): the enquiry is kept for the next try.
    throw new Error(problemText(body, `The enquiry could not be read (${response.status}).`));
  }
  sessionStorage.removeItem(ENQUIRY_KEY);
  return false;
}

async function main() {
  $("completed-text").tabIndex = -1;
  $("sign-in-form").addEventListener("submit", submitSignIn);
  $("start-form").addEventListener("submit", submitStart);
  $("complete-form").addEventListener("submit", submitComplete);
  $("find-by").addEventListener("change", findByChanged);
  $("sign-out").addEventListener("click", signOutClicked);
  $("new-enquiry").addEventListener("click", () => showStart());
  $("provider-button").addEventListener("click", () => startProviderSignIn(provider));
  findByChanged();
  const linked = takeTokenFromFragment();
  let settingsProblem = "";
  try {
    provider = await identityProvider();
  } catch (error) {
    // Whether a provider is set up is not known: a sign-in link is refused, as it is where one is (login
    // CSRF), and a session open in the tab goes on.
    provider = null;
    settingsProblem = error.message;
  }
  const refused = useSignInLink(linked, provider !== null || settingsProblem !== "");
  const linkNotUsed = linked !== null && settingsProblem ? settingsProblem : refused;
  try {
    await finishProviderSignIn(provider);
  } catch (error) {
    showSignIn(error.message);
    return;
  }
  if (!token()) {
    showSignIn(settingsProblem || linkNotUsed);
    return;
  }
  if (expired()) {
    signOut();
    showSignIn("Your sign-in has expired. Please sign in again.");
    return;
  }
  keepSignedIn();
  try {
    if (!(await resumeStoredEnquiry())) await showStart(linkNotUsed);
  } catch (error) {
    if (error instanceof SignedOut) showSignIn(error.message);
    else await showStart("The desk could not reach the server. Check your connection and try again.");
  }
}

main();
