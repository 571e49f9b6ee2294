// Turning a citizen's context into the page. Every value is set as text, never as HTML: events come from
// other services and may contain anything.

const TYPE_LABELS = {
  "call.started": "Call started",
  "call.ended": "Call ended",
  "chat.message": "Chat message",
  "email.received": "Email received",
  "web.form.submitted": "Web form submitted",
  "case.opened": "Case opened",
  "case.updated": "Case updated",
  "case.closed": "Case closed",
  "payment.received": "Payment received",
  "payment.failed": "Payment failed",
  "appointment.booked": "Appointment booked",
  "appointment.missed": "Appointment missed",
  "letter.sent": "Letter sent",
  "complaint.raised": "Complaint raised",
  "profile.updated": "Profile updated",
  "enquiry.completed": "Enquiry completed",
};

const NEED_LABELS = {
  "bsl-interpreter": "BSL interpreter",
  "spoken-interpreter": "Spoken-language interpreter",
  "large-print": "Large print",
  braille: "Braille",
  "easy-read": "Easy read",
  "hearing-loop": "Hearing loop",
  "text-relay": "Text relay",
  "no-phone-calls": "No phone calls",
};

// Types that call for the agent's attention in the timeline.
const ATTENTION = new Set(["payment.failed", "appointment.missed", "complaint.raised"]);

const dateTime = new Intl.DateTimeFormat("en-GB", { dateStyle: "medium", timeStyle: "short" });
const languageNames = new Intl.DisplayNames(["en-GB"], { type: "language" });

export function typeLabel(type) {
  return Object.hasOwn(TYPE_LABELS, type) ? TYPE_LABELS[type] : type;
}

function words(code) {
  const text = String(code).replace(/[-_.]/g, " ");
  return text.charAt(0).toUpperCase() + text.slice(1);
}

export function formatTime(value) {
  const date = new Date(value);
  return Number.isNaN(date.getTime()) ? String(value) : dateTime.format(date);
}

function element(tag, options = {}, children = []) {
  const node = document.createElement(tag);
  if (options.text !== undefined) node.textContent = options.text;
  if (options.className) node.className = options.className;
  for (const [name, value] of Object.entries(options.attrs || {})) node.setAttribute(name, value);
  for (const child of children) node.append(child);
  return node;
}

// A value from an event, set apart from the words around it: a direction mark in it (U+202E, say) would
// otherwise turn the desk's own text after it around ("updated 1 Dec" shown reversed, a reason moved).
function isolated(value) {
  return element("bdi", { text: String(value) });
}

function timeElement(value) {
  return element("time", { text: formatTime(value), attrs: { datetime: String(value) } });
}

function list(items, render) {
  const ul = element("ul", { className: "tags" });
  for (const item of items) ul.append(element("li", {}, [render(item)]));
  return ul;
}

function fill(node, content) {
  node.replaceChildren(...(Array.isArray(content) ? content : [content]));
}

/** Personal needs: what must not be missed. Empty values say so in words. */
export function renderProfile(profile) {
  const language = document.getElementById("need-language");
  const communication = document.getElementById("need-communication");
  const vulnerability = document.getElementById("need-vulnerability");
  const code = profile.preferred_language;
  if (code) {
    let name = code;
    try {
      name = languageNames.of(code) || code;
    } catch {
      name = code;
    }
    fill(language, element("strong", { text: `${name} (${code})`, attrs: { lang: "en-GB" } }));
  } else {
    fill(language, "Not recorded");
  }
  const needs = profile.communication_needs || [];
  fill(communication, needs.length ? list(needs, (need) => NEED_LABELS[need] || words(need)) : "None recorded");
  const flags = profile.vulnerability_flags || [];
  fill(vulnerability, flags.length ? list(flags, (flag) => words(flag)) : "None recorded");
  document.getElementById("needs").classList.toggle("needs-present", Boolean(code || needs.length || flags.length));
}

function summaryBlock(title, content) {
  return element("div", { className: "summary-block" }, [element("h3", { text: title }), content]);
}

function byChannel(counts) {
  const entries = Object.entries(counts || {});
  if (!entries.length) return "none";
  const total = entries.reduce((sum, [, n]) => sum + n, 0);
  return `${total} (${entries.map(([channel, n]) => `${channel} ${n}`).join(", ")})`;
}

/** The summary: repeat contact first, then contacts, open cases, appointments, failed payments. */
export function renderSummary(summary) {
  const blocks = [];
  if (summary.repeat_contact) {
    blocks.push(element("p", { className: "alert", text: "Repeat contact: the citizen has been in touch several times this week." }));
  }
  const contacts = element("dl", { className: "facts" }, [
    element("dt", { text: "Last contact" }),
    element(
      "dd",
      {},
      summary.last_contact ? [timeElement(summary.last_contact.time), ` by ${summary.last_contact.channel}`] : ["None recorded"],
    ),
    element("dt", { text: "Contacts, last 7 days" }),
    element("dd", { text: byChannel(summary.contacts_7d) }),
    element("dt", { text: "Contacts, last 30 days" }),
    element("dd", { text: byChannel(summary.contacts_30d) }),
  ]);
  blocks.push(summaryBlock("Contact", contacts));
  const cases = summary.open_cases || [];
  blocks.push(
    summaryBlock(
      "Open cases",
      cases.length
        ? list(cases, (c) => element("span", {}, [element("strong", {}, [isolated(c.case_ref)]), ": ", isolated(words(c.status)), ", updated ", timeElement(c.updated_at)]))
        : element("p", { text: "None" }),
    ),
  );
  const upcoming = summary.upcoming_appointments || [];
  const missed = summary.missed_appointments || [];
  const appointments = [];
  for (const a of upcoming) {
    appointments.push(element("li", {}, [element("strong", {}, [isolated(a.appointment_id)]), ": ", timeElement(a.starts_at), ...(a.location ? [", ", isolated(a.location)] : [])]));
  }
  for (const a of missed) {
    appointments.push(element("li", { className: "attention" }, [element("strong", {}, ["Missed ", isolated(a.appointment_id)]), a.starts_at ? [": ", timeElement(a.starts_at)] : ""].flat()));
  }
  blocks.push(summaryBlock("Appointments", appointments.length ? element("ul", { className: "tags" }, appointments) : element("p", { text: "None" })));
  const payments = summary.recent_failed_payments || [];
  blocks.push(
    summaryBlock(
      "Failed payments",
      payments.length
        ? list(payments, (p) => element("span", { className: "attention" }, [isolated(`${p.currency} ${p.amount}`), " on ", timeElement(p.time), ": ", isolated(p.reason)]))
        : element("p", { text: "None recent" }),
    ),
  );
  fill(document.getElementById("summary-body"), blocks);
}

/** One timeline entry. */
export function timelineItem(event) {
  const data = event.data && typeof event.data === "object" ? event.data : {};
  const item = element("li", { className: ATTENTION.has(event.type) ? "event attention" : "event" });
  item.dataset.key = eventKey(event);
  item.dataset.time = String(Date.parse(event.time) || 0);
  const heading = element("h3", { className: "event-title" }, [
    // A type outside the taxonomy is shown as published: a value from the event, set apart like the others.
    Object.hasOwn(TYPE_LABELS, event.type) ? element("span", { text: typeLabel(event.type) }) : isolated(event.type),
    data.channel ? element("span", { className: "channel", text: data.channel }) : "",
  ]);
  item.append(heading, element("p", { className: "event-time" }, [timeElement(event.time)]));
  if (data.summary) item.append(element("p", { className: "event-summary" }, [isolated(data.summary)]));
  if (event.type === "enquiry.completed") {
    item.append(element("p", { className: "event-detail" }, ["Outcome: ", isolated(words(data.outcome || ""))]));
    if (data.notes) item.append(element("p", { className: "event-detail" }, ["Notes: ", isolated(data.notes)]));
  }
  return item;
}

export function eventKey(event) {
  return `${event.source}\u0000${event.id}`;
}

/** A short sentence for screen readers about a new event. */
export function announcement(event) {
  const data = event.data && typeof event.data === "object" ? event.data : {};
  return `New on the timeline: ${typeLabel(event.type)}${data.summary ? `. ${data.summary}` : ""}`;
}
