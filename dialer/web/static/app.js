// The console's only script: renders the wallboard from server-sent events and
// sends control requests to the JSON API (with the session's CSRF token).
"use strict";

const meta = (name) => (document.querySelector(`meta[name="${name}"]`) || {}).content || "";
const CSRF = meta("csrf-token");
const ROLE = meta("role");
const RANK = { viewer: 0, supervisor: 1, admin: 2 };
const can = (role) => (RANK[ROLE] ?? -1) >= RANK[role];

// Build elements without innerHTML: every text goes in as text.
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else if (k === "style") Object.assign(el.style, v);  // CSSOM: allowed by the CSP, unlike style=""
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}
const SVG = "http://www.w3.org/2000/svg";
function s(tag, attrs, ...children) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, v);
  for (const c of children) el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return el;
}

async function api(method, path, body) {
  const opts = { method, headers: { "X-CSRF-Token": CSRF, "Accept": "application/json" }, credentials: "same-origin" };
  if (body !== undefined) { opts.headers["Content-Type"] = "application/json"; opts.body = JSON.stringify(body); }
  const r = await fetch(path, opts);
  let data = null;
  try { data = await r.json(); } catch (e) { data = null; }
  if (!r.ok) throw new Error((data && data.error && data.error.message) || `${r.status} ${r.statusText}`);
  return data;
}

// --- the confirmation dialog ---------------------------------------------------
function confirmDialog(title, text, okLabel) {
  const dlg = document.getElementById("confirm");
  document.getElementById("confirm-title").textContent = title;
  document.getElementById("confirm-text").textContent = text;
  document.getElementById("confirm-ok").textContent = okLabel;
  const reason = document.getElementById("confirm-reason");
  reason.value = "";
  return new Promise((resolve) => {
    dlg.addEventListener("close", () => resolve(dlg.returnValue === "ok" ? reason.value.trim() : null), { once: true });
    dlg.showModal();
    reason.focus();
  });
}

// --- wallboard -------------------------------------------------------------------
let serverOffset = 0;  // server wall clock minus ours, from each document's "at"
let lastDoc = null;

const fmt = (v) => (v === null || v === undefined ? "–" : v);
const pct = (r) => (r === null || r === undefined ? "–" : (r * 100).toFixed(1) + " %");
function ago(epoch) {
  if (!epoch) return "–";
  const sec = Math.max(0, Date.now() / 1000 + serverOffset - epoch);
  if (sec < 60) return sec.toFixed(sec < 10 ? 1 : 0) + " s";
  if (sec < 3600) return Math.floor(sec / 60) + " min " + Math.floor(sec % 60) + " s";
  return Math.floor(sec / 3600) + " h " + Math.floor((sec % 3600) / 60) + " min";
}

const ACTIONS = { start: ["stopped", "done", "stopping"], pause: ["running"], resume: ["paused"], stop: ["running", "paused", "done"] };

async function command(name, cmd) {
  const reason = await confirmDialog(`${cmd} ${name}`, `${cmd[0].toUpperCase() + cmd.slice(1)} campaign ${name}? Engines act on it within a second.`, cmd);
  if (reason === null) return;
  try {
    const r = await api("POST", `/api/v1/campaigns/${encodeURIComponent(name)}/state`, { command: cmd, reason: reason || null });
    flash(`campaign ${r.name}: ${r.before} → ${r.state}`, false);
  } catch (e) { flash(e.message, true); }
}

function flash(text, error) {
  let el = document.getElementById("flash");
  if (!el) { el = h("p", { id: "flash", class: "result", role: "status" }); document.querySelector("main").prepend(el); }
  el.textContent = text;
  el.className = "result " + (error ? "error" : "ok");
}

function tile(key, value, id) { return h("div", { class: "tile", "data-k": id || key }, h("span", { class: "v" }, fmt(value)), h("span", { class: "k" }, key)); }

function chart(hours) {
  const w = 480, hgt = 90, pad = 14;
  const svg = s("svg", { class: "chart", viewBox: `0 0 ${w} ${hgt}`, preserveAspectRatio: "none", role: "img", "aria-label": "today by hour" });
  const slots = 24, bw = (w - pad) / slots;
  const max = Math.max(1, ...hours.map((x) => x.attempts));
  const byHour = {};
  for (const x of hours) byHour[parseInt(x.hour.slice(11, 13), 10)] = x;
  let line = "";
  for (let i = 0; i < slots; i++) {
    const x = byHour[i];
    const x0 = pad + i * bw;
    if (x) {
      const y = (v) => hgt - 12 - (v / max) * (hgt - 20);
      svg.append(s("rect", { class: "c-att", x: x0 + 1, y: y(x.attempts), width: bw / 3, height: hgt - 12 - y(x.attempts) }));
      svg.append(s("rect", { class: "c-ans", x: x0 + 1 + bw / 3, y: y(x.answered), width: bw / 3, height: hgt - 12 - y(x.answered) }));
      svg.append(s("rect", { class: "c-drop", x: x0 + 1 + (2 * bw) / 3, y: y(x.dropped), width: bw / 3 - 1, height: hgt - 12 - y(x.dropped) }));
      if (x.abandon_rate !== null) {
        const ly = hgt - 12 - Math.min(1, x.abandon_rate / 0.05) * (hgt - 20);
        line += `${line ? "L" : "M"}${x0 + bw / 2},${ly}`;
      }
      svg.append(s("title", {}, `${x.hour}: ${x.attempts} calls, ${x.answered} answered, ${x.dropped} dropped, abandon ${pct(x.abandon_rate)}`));
    }
    if (i % 3 === 0) svg.append(s("text", { x: x0, y: hgt - 1 }, String(i).padStart(2, "0")));
  }
  if (line) svg.append(s("path", { d: line, fill: "none", stroke: "#d29922", "stroke-width": 2 }));
  svg.append(s("text", { x: 0, y: 9 }, String(max)));
  return svg;
}

function campaignCard(c) {
  const live = c.live || {};
  const controls = can("supervisor")
    ? h("div", { class: "controls" }, ...Object.keys(ACTIONS).map((cmd) =>
        h("button", { "data-cmd": cmd, disabled: !ACTIONS[cmd].includes(c.state), onclick: () => command(c.name, cmd) }, cmd)))
    : null;
  const leads = c.leads || { total: 0, left: 0, dialed: 0, finished: 0 };
  const total = Math.max(1, leads.total);
  const ab = c.abandon || { rolling_30d: {}, last_24h: {}, level: "ok", target: c.target };
  const agents = live.agents;
  return h("article", { class: "card campaign", "data-campaign": c.name, "data-state": c.state },
    h("div", { class: "camp-head" },
      h("h2", {}, h("a", { href: `/campaigns/${encodeURIComponent(c.name)}` }, c.name)),
      h("span", { class: `state state-${c.state}`, "data-field": "state" }, c.state),
      h("span", { class: "muted" }, c.mode, c.live ? "" : " · no engine reporting"),
      controls),
    h("div", { class: "progress", title: `${leads.finished} finished, ${leads.left} left of ${leads.total}` },
      h("div", { class: "finished", style: { width: `${(100 * leads.finished) / total}%` } })),
    h("div", { class: "muted", "data-field": "progress" },
      `${leads.left} leads left · ${leads.dialed} dialed · ${leads.finished} finished of ${leads.total}`),
    h("div", { class: "tiles" },
      tile("ringing", live.ringing), tile("answered", live.answered), tile("talking", live.talking),
      tile("waiting for agent", live.waiting, "waiting"), tile("in flight", live.in_flight, "in_flight"),
      tile("dial level (calls per agent)", live.dial_level, "dial_level")),
    h("div", { class: "row2" },
      h("div", {},
        h("div", { class: "muted" }, agents
          ? `agents: ${agents.free} free · ${agents.talking} talking · ${agents.wrapup} wrap-up · ${agents.paused} paused`
          : "agents: –"),
        h("div", { class: "agents" }, ...(agents ? agents.agents : []).map((a) =>
          h("span", { class: `agent ${a.state}`, "data-since": a.since || "" }, `${a.name} ${a.state} `, h("b", {}, ago(a.since))))),
        h("div", { class: "muted", "data-field": "pacing" }, `pacing: ${fmt(live.decision)} to place now · placed ${fmt(live.placed)}`,
          live.reasons && live.reasons.length ? ` · ${live.reasons.join(", ")}` : "")),
      h("div", { class: `abandon level-${ab.level}`, "data-field": "abandon" },
        h("div", {}, "abandon 30 d ", h("span", { class: "rate" }, pct(ab.rolling_30d.rate)),
          h("span", { class: "muted" }, ` (${fmt(ab.rolling_30d.dropped)}/${fmt(ab.rolling_30d.answered)})`)),
        h("div", {}, "abandon 24 h ", h("span", { class: "rate" }, pct(ab.last_24h.rate)),
          h("span", { class: "muted" }, ` (${fmt(ab.last_24h.dropped)}/${fmt(ab.last_24h.answered)})`)),
        h("div", { class: "muted" }, `target ${pct(ab.target)}`))),
    h("div", { class: "legend" }, h("span", {}, h("i", { class: "c-att" }), "attempts"), h("span", {}, h("i", { class: "c-ans" }), "answered"),
      h("span", {}, h("i", { class: "c-drop" }), "dropped"), h("span", {}, "— abandon rate (0–5 %), today by UTC hour")),
    chart(c.hours || []));
}

function render(doc) {
  lastDoc = doc;
  serverOffset = doc.at - Date.now() / 1000;
  const root = document.getElementById("campaigns");
  root.replaceChildren(...(doc.campaigns.length ? doc.campaigns.map(campaignCard) : [h("p", { class: "muted" }, "No campaigns yet: dialer campaign create NAME")]));
  document.querySelector("#connections tbody").replaceChildren(...doc.connections.map((x) =>
    h("tr", {}, h("td", {}, x.engine), h("td", {}, `${x.server}/${x.connection}${x.reader ? " (events)" : ""}`),
      h("td", { class: x.up ? "up" : "down" }, x.up ? "up" : "DOWN"),
      h("td", {}, `${fmt(x.rate_1s)} / ${fmt(x.rate_cap)}`), h("td", {}, fmt(x.in_flight)),
      h("td", {}, fmt(x.originates_sent)), h("td", {}, fmt(x.failures)))));
  renderEngines();
  document.body.dataset.version = doc.version;
}

function renderEngines() {
  if (!lastDoc) return;
  document.querySelector("#engines tbody").replaceChildren(...lastDoc.engines.map((e) =>
    h("tr", { class: e.live ? "" : "stale" }, h("td", {}, e.engine_id), h("td", {}, e.campaigns.join(", ")),
      h("td", { "data-heartbeat": e.heartbeat }, ago(e.heartbeat) + " ago" + (e.live ? "" : " (stopped?)")))));
}

function tick() {
  for (const el of document.querySelectorAll(".agent[data-since]")) {
    const b = el.querySelector("b");
    if (b && el.dataset.since) b.textContent = ago(parseFloat(el.dataset.since));
  }
  for (const el of document.querySelectorAll("[data-heartbeat]")) {
    el.firstChild.textContent = ago(parseFloat(el.dataset.heartbeat)) + " ago";
  }
}

function connect() {
  const status = document.getElementById("conn-status");
  const es = new EventSource("/events");
  es.addEventListener("board", (ev) => {
    status.textContent = "live"; status.className = "pill live";
    render(JSON.parse(ev.data));
  });
  es.onerror = () => { status.textContent = "reconnecting…"; status.className = "pill lost"; };
}

// --- campaign page ------------------------------------------------------------------
function campaignPage(page) {
  const name = page.dataset.campaign;
  const settings = document.getElementById("settings-form");
  if (settings && can("admin")) {
    settings.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const changed = {};
      for (const input of settings.querySelectorAll("input[name]")) {
        if (input.value !== input.dataset.original) changed[input.name] = input.value;
      }
      const out = document.getElementById("settings-result");
      if (!Object.keys(changed).length) { out.textContent = "nothing changed"; out.className = "result"; return; }
      try {
        const r = await api("PATCH", `/api/v1/campaigns/${encodeURIComponent(name)}/settings`, { settings: changed });
        for (const input of settings.querySelectorAll("input[name]")) {
          input.value = input.dataset.original = r.settings[input.name];
        }
        out.textContent = "saved: " + Object.keys(changed).join(", "); out.className = "result ok";
      } catch (e) { out.textContent = e.message; out.className = "result error"; }
    });
  }
  const upload = document.getElementById("upload-form");
  if (upload) {
    upload.addEventListener("submit", (ev) => {
      ev.preventDefault();
      const bar = document.getElementById("upload-progress");
      const out = document.getElementById("upload-result");
      const data = new FormData();
      data.append("file", document.getElementById("upload-file").files[0]);
      const region = upload.querySelector("input[name=region]").value || "US";
      const xhr = new XMLHttpRequest();
      xhr.open("POST", `/api/v1/campaigns/${encodeURIComponent(name)}/leads?region=${encodeURIComponent(region)}`);
      xhr.setRequestHeader("X-CSRF-Token", CSRF);
      xhr.setRequestHeader("Accept", "application/json");
      bar.hidden = false; bar.value = 0;
      out.textContent = "uploading…"; out.className = "result";
      xhr.upload.onprogress = (e) => {
        if (e.lengthComputable) {
          bar.value = (100 * e.loaded) / e.total;
          out.textContent = `uploading… ${Math.round(bar.value)} %` + (e.loaded === e.total ? ", importing" : "");
        }
      };
      xhr.onload = () => {
        let r = null;
        try { r = JSON.parse(xhr.responseText); } catch (e) { r = null; }
        bar.value = 100;
        if (xhr.status !== 200) {
          out.textContent = (r && r.error && r.error.message) || `upload failed (${xhr.status})`;
          out.className = "result error";
          return;
        }
        out.replaceChildren(`${r.loaded} loaded, ${r.rejected} rejected (${r.invalid} invalid, ${r.duplicate} duplicate, ${r.dnc} do-not-call) of ${r.rows} rows`,
          r.rejects_url ? h("span", {}, " · ", h("a", { href: r.rejects_url, id: "rejects-link", download: "" }, "download the rejects report")) : "");
        out.className = "result ok";
      };
      xhr.onerror = () => { out.textContent = "upload failed: connection lost"; out.className = "result error"; };
      xhr.send(data);
    });
  }
}

// --- start -----------------------------------------------------------------------------
document.addEventListener("DOMContentLoaded", () => {
  if (document.body.classList.contains("board")) {
    connect();
    setInterval(tick, 1000);
    const dncForm = document.getElementById("dnc-form");
    if (dncForm) {
      dncForm.addEventListener("submit", async (ev) => {
        ev.preventDefault();
        const out = document.getElementById("dnc-result");
        const numbers = dncForm.numbers.value.split(/[,;\s]+/).filter(Boolean);
        try {
          const r = await api("POST", "/api/v1/dnc", { numbers });
          out.textContent = `${r.added} added, ${r.already_listed} already listed`; out.className = "result ok";
          dncForm.reset();
        } catch (e) { out.textContent = e.message; out.className = "result error"; }
      });
    }
  } else {
    const status = document.getElementById("conn-status");
    if (status) status.hidden = true;
  }
  const stopAll = document.getElementById("stop-all");
  if (stopAll) {
    stopAll.addEventListener("click", async () => {
      const reason = await confirmDialog("Emergency stop", "Stop EVERY campaign now? No new call leaves; calls in flight finish.", "Stop all campaigns");
      if (reason === null) return;
      try {
        const r = await api("POST", "/api/v1/stop-all", { reason: reason || null });
        flash(r.stopped.length ? `stopped: ${r.stopped.map((c) => c.name).join(", ")}` : "no campaign to stop", false);
      } catch (e) { flash(e.message, true); }
    });
  }
  const page = document.querySelector(".page[data-campaign]");
  if (page) campaignPage(page);
  if (document.querySelector(".admin")) adminPage();
});

// --- users and tokens (admins) ---------------------------------------------------------
function adminPage() {
  const show = (id, text, error) => { const el = document.getElementById(id); el.textContent = text; el.className = "result " + (error ? "error" : "ok"); };
  const userForm = document.getElementById("user-form");
  userForm.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    try {
      const r = await api("POST", "/api/v1/users", { name: userForm.name.value, role: userForm.role.value,
        password: userForm.password.value, replace: userForm.replace.checked });
      show("user-result", `user ${r.name}: ${r.role} (reload to see the list)`, false);
      userForm.reset();
    } catch (e) { show("user-result", e.message, true); }
  });
  const tokenForm = document.getElementById("token-form");
  tokenForm.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    try {
      const r = await api("POST", "/api/v1/tokens", { name: tokenForm.name.value, role: tokenForm.role.value });
      show("token-result", `token ${r.name} (${r.role}), shown only now: ${r.token}`, false);
      tokenForm.reset();
    } catch (e) { show("token-result", e.message, true); }
  });
  for (const b of document.querySelectorAll("[data-disable-user]")) {
    b.addEventListener("click", async () => {
      if (await confirmDialog("Disable user", `Disable ${b.dataset.disableUser} and end their sessions?`, "Disable") === null) return;
      try { await api("POST", `/api/v1/users/${encodeURIComponent(b.dataset.disableUser)}/disable`, {}); location.reload(); }
      catch (e) { show("user-result", e.message, true); }
    });
  }
  for (const b of document.querySelectorAll("[data-revoke-token]")) {
    b.addEventListener("click", async () => {
      if (await confirmDialog("Revoke token", `Revoke ${b.dataset.revokeToken}? Whatever uses it is refused at once.`, "Revoke") === null) return;
      try { await api("POST", `/api/v1/tokens/${encodeURIComponent(b.dataset.revokeToken)}/revoke`, {}); location.reload(); }
      catch (e) { show("token-result", e.message, true); }
    });
  }
}
