// tezos-p2p-node dashboard. Plain script, no library, no network fetch but
// this node's own RPC. Everything a peer can influence (ids, versions,
// chain names, events) is written with textContent, never as HTML.
"use strict";

const POLL_MS = 2000;        // one snapshot at a time, this long apart
const HISTORY = 150;         // chart samples: 5 minutes at POLL_MS
const SPARK = 30;            // samples per connection sparkline
const LOG_MAX = 500;         // events kept by the page
const ROW_H = 30;            // must match --row-h in the CSS
const OVERSCAN = 8;          // rows rendered above and below the view

const $ = (id) => document.getElementById(id);
const el = (tag, attrs, ...kids) => {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v;
    else if (k === "text") e.textContent = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v);
  }
  for (const k of kids) e.append(k);
  return e;
};

function rate(bps) {
  if (bps >= 1048576) return (bps / 1048576).toFixed(1) + " MiB/s";
  if (bps >= 1024) return (bps / 1024).toFixed(1) + " KiB/s";
  return bps + " B/s";
}
function size(b) {
  b = Number(b);
  if (b >= 1073741824) return (b / 1073741824).toFixed(2) + " GiB";
  if (b >= 1048576) return (b / 1048576).toFixed(1) + " MiB";
  if (b >= 1024) return (b / 1024).toFixed(1) + " KiB";
  return b + " B";
}
function duration(s) {
  s = Math.max(0, Math.floor(s));
  const d = Math.floor(s / 86400), h = Math.floor(s / 3600) % 24, m = Math.floor(s / 60) % 60;
  if (d) return `${d}d ${h}h`;
  if (h) return `${h}h ${m}m`;
  if (m) return `${m}m ${s % 60}s`;
  return `${s}s`;
}
function ago(iso) {
  const t = Date.parse(iso);
  return isNaN(t) ? "" : duration((Date.now() - t) / 1000);
}

// ---- actions: the node's own RPC, always as JSON (the server refuses
// anything else that changes state: see the README's "Security").
async function rpc(method, path, body, alsoOk) {
  const res = await fetch(path, {
    method,
    headers: { "Content-Type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  let text = await res.text();
  try { const v = JSON.parse(text); if (v && v.error) text = v.error; } catch (_) { /* keep text */ }
  if (!res.ok && res.status !== alsoOk) throw new Error(`${res.status}: ${text}`);
  return text;
}
function act(label, method, path, body, alsoOk) {
  const out = $("action-result");
  out.textContent = `${label}…`;
  rpc(method, path, body, alsoOk)
    .then(() => { out.textContent = `${label}: done`; poll(true); })
    .catch((e) => { out.textContent = `${label}: ${e.message}`; });
}
const enc = encodeURIComponent;
const peerAcl = (id, acl) => act(`${acl} ${id.slice(0, 10)}…`, "PATCH", `/network/peers/${enc(id)}`, { acl });
const pointAcl = (p, acl) => act(`${acl} ${p}`, "PATCH", `/network/points/${enc(p)}`, { acl });
// An address's ban is lifted through any point of it; as Octez, the answer
// is a 404 when that point is unknown, after the change is made.
const ipAcl = (ip, acl) => act(`${acl} ${ip}`, "PATCH", `/network/points/${enc(ip.includes(":") ? `[${ip}]:0` : `${ip}:0`)}`, { acl }, 404);
const disconnect = (id) => act(`disconnect ${id.slice(0, 10)}…`, "DELETE", `/network/connections/${enc(id)}`);

// ---- connections table: sortable, filtered, virtualised (only the rows
// in view are in the DOM, so 10 000 connections cost what 30 do).
const COLUMNS = [
  { key: "peer_id", label: "Peer", cls: "mono" },
  { key: "point", label: "Point", cls: "mono" },
  { key: "incoming", label: "Dir", fmt: (c) => (c.incoming ? "in" : "out") },
  { key: "version", label: "Version" },
  { key: "meta", label: "Metadata", sortKey: (c) => `${c.private}${c.disable_mempool}`,
    fmt: (c) => [c.private ? "private" : "", c.disable_mempool ? "no mempool" : ""].filter(Boolean).join(", ") || "–" },
  { key: "inflow", label: "Inflow", num: true, fmt: (c) => rate(c.inflow) },
  { key: "outflow", label: "Outflow", num: true, fmt: (c) => rate(c.outflow) },
  { key: "recv", label: "Received", num: true, sortKey: (c) => Number(c.recv), fmt: (c) => size(c.recv) },
  { key: "sent", label: "Sent", num: true, sortKey: (c) => Number(c.sent), fmt: (c) => size(c.sent) },
  { key: "since", label: "For", sortKey: (c) => (c.since ? -Date.parse(c.since) : 0), fmt: (c) => (c.since ? ago(c.since) : "") },
  { key: "spark", label: "Activity", nosort: true },
  { key: "actions", label: "Actions", nosort: true },
];
const table = { rows: [], view: [], sort: "peer_id", dir: 1, filter: "" };
const sparks = new Map(); // peer id -> recent inflow + outflow samples

function buildHead() {
  const tr = $("conn-head");
  for (const col of COLUMNS) {
    const th = el("th", { scope: "col", class: col.num ? "num" : "" });
    if (col.nosort) th.textContent = col.label;
    else {
      th.setAttribute("aria-sort", col.key === table.sort ? "ascending" : "none");
      th.append(el("button", { type: "button", text: col.label, onclick: () => sortBy(col.key) }));
    }
    tr.append(th);
  }
}
function sortBy(key) {
  table.dir = table.sort === key ? -table.dir : 1;
  table.sort = key;
  for (const th of $("conn-head").children) {
    const col = COLUMNS[th.cellIndex];
    if (!col.nosort) th.setAttribute("aria-sort", col.key !== key ? "none" : table.dir > 0 ? "ascending" : "descending");
  }
  refreshView();
}
function refreshView() {
  const col = COLUMNS.find((c) => c.key === table.sort);
  const k = col.sortKey || ((c) => c[col.key]);
  const f = table.filter.toLowerCase();
  table.view = table.rows.filter((c) => !f || `${c.peer_id} ${c.point} ${c.version}`.toLowerCase().includes(f));
  table.view.sort((a, b) => {
    const x = k(a), y = k(b);
    return (x < y ? -1 : x > y ? 1 : 0) * table.dir || (a.peer_id < b.peer_id ? -1 : 1);
  });
  $("conn-table").setAttribute("aria-rowcount", String(table.view.length + 1));
  renderRows();
}
function sparkline(id) {
  const s = sparks.get(id) || [];
  const max = Math.max(1, ...s);
  const pts = s.map((v, i) => `${(i * 60) / (SPARK - 1)},${15 - (v / max) * 14}`).join(" ");
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("class", "spark");
  svg.setAttribute("viewBox", "0 0 60 16");
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", `traffic, last ${s.length} samples, up to ${rate(max)}`);
  const pl = document.createElementNS("http://www.w3.org/2000/svg", "polyline");
  pl.setAttribute("points", pts);
  svg.append(pl);
  return svg;
}
function row(c, index) {
  const tr = el("tr", { "data-peer": c.peer_id, "aria-rowindex": String(index + 2) });
  for (const col of COLUMNS) {
    const td = el("td", { class: `${col.cls || ""} ${col.num ? "num" : ""}`.trim() });
    if (col.key === "spark") td.append(sparkline(c.peer_id));
    else if (col.key === "actions") {
      td.className = "actions";
      const short = c.peer_id.slice(0, 10);
      td.append(
        el("button", { type: "button", class: "danger ban", "aria-label": `Ban peer ${c.peer_id}`, text: "Ban", onclick: () => peerAcl(c.peer_id, "ban") }), " ",
        el("button", { type: "button", class: "trust", "aria-label": `Trust peer ${c.peer_id}`, text: "Trust", onclick: () => peerAcl(c.peer_id, "trust") }), " ",
        el("button", { type: "button", class: "open", "aria-label": `Open (unban, untrust) peer ${c.peer_id}`, text: "Open", onclick: () => peerAcl(c.peer_id, "open") }), " ",
        el("button", { type: "button", class: "disconnect", "aria-label": `Disconnect peer ${c.peer_id}`, text: "Disconnect", onclick: () => disconnect(c.peer_id) }),
      );
      td.title = short;
    } else {
      td.textContent = col.fmt ? col.fmt(c) : String(c[col.key]);
      td.title = td.textContent;
    }
    tr.append(td);
  }
  return tr;
}
function renderRows() {
  const scroll = $("conn-scroll"), body = $("conn-body");
  const n = table.view.length;
  const first = Math.max(0, Math.floor(scroll.scrollTop / ROW_H) - OVERSCAN);
  const count = Math.ceil(scroll.clientHeight / ROW_H) + 2 * OVERSCAN;
  const last = Math.min(n, first + count);
  // Keep focus on a button across re-renders (keyboard users).
  const focused = document.activeElement && body.contains(document.activeElement)
    ? [document.activeElement.closest("tr")?.dataset.peer, document.activeElement.className] : null;
  const frag = document.createDocumentFragment();
  // (Set through the CSSOM: the page's policy forbids style attributes.)
  const pad = (h) => {
    const td = el("td", { colspan: String(COLUMNS.length) });
    td.style.height = `${h}px`;
    return el("tr", { class: "pad", "aria-hidden": "true" }, td);
  };
  if (first > 0) frag.append(pad(first * ROW_H));
  for (let i = first; i < last; i++) frag.append(row(table.view[i], i));
  if (last < n) frag.append(pad((n - last) * ROW_H));
  body.replaceChildren(frag);
  if (focused && focused[0]) {
    const tr = body.querySelector(`tr[data-peer="${CSS.escape(focused[0])}"]`);
    const b = tr && tr.querySelector(`button.${focused[1].split(" ").filter(Boolean).map(CSS.escape).join(".")}`);
    if (b) b.focus();
  }
}

// ---- the global chart: plain SVG.
const history = [];
function drawChart() {
  const svg = $("chart");
  const W = 600, H = 160, top = 12;
  for (const n of [...svg.querySelectorAll("polyline, text, line")]) n.remove();
  const max = Math.max(1024, ...history.map((h) => Math.max(h.in, h.out)));
  // The samples held span the width (the legend says how long they cover).
  const x = (i) => (history.length < 2 ? W : (i * W) / (history.length - 1));
  const y = (v) => H - (v / max) * (H - top);
  const ns = "http://www.w3.org/2000/svg";
  for (const [k, cls] of [["in", "in"], ["out", "out"]]) {
    const pl = document.createElementNS(ns, "polyline");
    pl.setAttribute("class", cls);
    pl.setAttribute("points", history.map((h, i) => `${x(i).toFixed(1)},${y(h[k]).toFixed(1)}`).join(" "));
    svg.append(pl);
  }
  const line = document.createElementNS(ns, "line");
  for (const [a, v] of [["x1", 0], ["x2", W], ["y1", top], ["y2", top]]) line.setAttribute(a, v);
  svg.append(line);
  const label = document.createElementNS(ns, "text");
  label.setAttribute("x", "4"); label.setAttribute("y", "10");
  label.textContent = rate(max);
  svg.append(label);
  $("chart-span").textContent = String(Math.round((history.length * POLL_MS) / 1000));
}

// ---- the rest of the snapshot.
function facts(dl, pairs) {
  dl.replaceChildren(...pairs.filter(([, v]) => v !== null && v !== undefined && v !== "")
    .map(([k, v]) => el("div", {}, el("dt", { text: k }), el("dd", { text: String(v) }))));
}
function list(ul, items, button) {
  const shown = items.list.map((x) => {
    const li = el("li", {}, el("span", { text: x }));
    if (button) li.append(el("button", { type: "button", text: button.label, "aria-label": `${button.label} ${x}`, onclick: () => button.run(x) }));
    return li;
  });
  if (items.total > items.list.length) shown.push(el("li", { class: "muted", text: `… and ${items.total - items.list.length} more` }));
  if (!shown.length) shown.push(el("li", { class: "muted", text: "none" }));
  ul.replaceChildren(...shown);
}
function counts(ul, m) {
  const e = Object.entries(m);
  ul.replaceChildren(...(e.length ? e.map(([k, v]) => el("li", { text: `${k}: ${v}` })) : [el("li", { class: "muted", text: "none" })]));
}

function render(s) {
  const n = s.node, v = n.network_version;
  facts($("node"), [
    ["peer", n.peer_id], ["network", n.network], ["chain", n.chain_id], ["listening", n.listening || "no"],
    ["uptime", duration(n.uptime_s)], ["version", n.version],
    ["announces", `${v.chain_name} ddb ${v.distributed_db_version} p2p ${v.p2p_version}`],
    ["connections", `${n.connections} (min ${s.limits.min_connections}, max ${s.limits.max_connections})`],
    ["received", size(n.stat.total_recv)], ["sent", size(n.stat.total_sent)],
  ]);
  document.title = `tezos-p2p-node ${n.peer_id.slice(0, 10)}… (${n.connections})`;
  history.push({ in: n.stat.current_inflow, out: n.stat.current_outflow });
  if (history.length > HISTORY) history.shift();
  $("cur-in").textContent = rate(n.stat.current_inflow);
  $("cur-out").textContent = rate(n.stat.current_outflow);
  drawChart();

  const live = new Set();
  for (const c of s.connections) {
    live.add(c.peer_id);
    const sp = sparks.get(c.peer_id) || [];
    sp.push(c.inflow + c.outflow);
    if (sp.length > SPARK) sp.shift();
    sparks.set(c.peer_id, sp);
  }
  for (const id of sparks.keys()) if (!live.has(id)) sparks.delete(id);
  table.rows = s.connections;
  $("conn-count").textContent = `(${s.connections.length})`;
  refreshView();

  counts($("points"), s.points);
  counts($("peers"), s.peers);
  list($("grey-ips"), s.greylist.ips, { label: "Unban", run: (ip) => ipAcl(ip, "open") });
  list($("grey-peers"), s.greylist.peers, { label: "Unban", run: (id) => peerAcl(id, "open") });
  list($("banned-ips"), s.banned.ips, { label: "Unban", run: (ip) => ipAcl(ip, "open") });
  list($("banned-peers"), s.banned.peers, { label: "Unban", run: (id) => peerAcl(id, "open") });
  list($("trusted-points"), s.trusted.points, { label: "Untrust", run: (p) => pointAcl(p, "open") });
  list($("trusted-peers"), s.trusted.peers, { label: "Untrust", run: (id) => peerAcl(id, "open") });

  const heads = s.heads;
  $("heads").hidden = !heads;
  if (heads) {
    const b = heads.best;
    facts($("best-head"), b ? [["best head", b.hash], ["level", b.level], ["timestamp", b.timestamp],
      ["age", duration(b.age_s)], ["first seen", b.first_seen]] : [["best head", "none yet"]]);
    $("announcers").replaceChildren(...(b ? b.announced_by : []).map((a) =>
      el("tr", {}, el("td", { class: "mono", text: a.peer_id }), el("td", { class: "num", text: `${(a.after_ms / 1000).toFixed(3)} s` }))));
    $("other-heads").replaceChildren(...(heads.others.length ? heads.others.map((h) =>
      el("li", { text: `${h.hash} level ${h.level}: ${h.peers} peer(s)` })) : [el("li", { class: "muted", text: "none" })]));
  }
}

let timer = null, inFlight = false;
async function poll(now) {
  if (now && inFlight) return;
  clearTimeout(timer);
  inFlight = true;
  const status = $("status");
  try {
    const res = await fetch("/dashboard/snapshot", { cache: "no-store" });
    if (!res.ok) throw new Error(`HTTP ${res.status}`);
    render(await res.json());
    status.textContent = "live";
    status.classList.remove("bad");
  } catch (e) {
    status.textContent = `disconnected (${e.message}), retrying`;
    status.classList.add("bad");
  } finally {
    inFlight = false;
    timer = setTimeout(poll, POLL_MS);
  }
}

// ---- the event log: /network/log streams one JSON object per line.
const log = { items: [], kinds: new Set() };
function logMatches(e) {
  const kind = $("log-kind").value, f = $("log-filter").value.toLowerCase();
  return (!kind || e.event === kind) && (!f || e.text.toLowerCase().includes(f));
}
function logItem(e) {
  const li = el("li", {}, el("span", { class: "muted", text: e.at + " " }), el("span", { class: "kind", text: e.event }));
  li.append(" " + e.detail);
  return li;
}
function renderLog() {
  const shown = log.items.filter(logMatches);
  $("log").replaceChildren(...shown.slice(-200).reverse().map(logItem));
  $("log-count").textContent = `${shown.length} of ${log.items.length} kept (newest first)`;
}
function addEvent(obj) {
  const { event = "?", ...rest } = obj;
  const detail = Object.entries(rest).map(([k, v]) => `${k}=${typeof v === "string" ? v : JSON.stringify(v)}`).join(" ");
  const e = { event, detail, at: new Date().toLocaleTimeString(), text: `${event} ${detail}` };
  log.items.push(e);
  if (log.items.length > LOG_MAX) log.items.shift();
  if (!log.kinds.has(event)) {
    log.kinds.add(event);
    const sel = $("log-kind");
    const opts = [...log.kinds].sort().map((k) => el("option", { value: k, text: k }));
    const cur = sel.value;
    sel.replaceChildren(el("option", { value: "", text: "all" }), ...opts);
    sel.value = cur;
  }
  if (!$("log-pause").checked) scheduleLog();
}
let logPending = false;
function scheduleLog() {
  if (logPending) return;
  logPending = true;
  requestAnimationFrame(() => { logPending = false; renderLog(); });
}
async function streamLog() {
  for (;;) {
    try {
      const res = await fetch("/network/log", { cache: "no-store" });
      const reader = res.body.getReader();
      const dec = new TextDecoder();
      let buf = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += dec.decode(value, { stream: true });
        let i;
        while ((i = buf.indexOf("\n")) >= 0) {
          const line = buf.slice(0, i);
          buf = buf.slice(i + 1);
          if (line.trim()) { try { addEvent(JSON.parse(line)); } catch (_) { /* skip a bad line */ } }
        }
        if (buf.length > 1 << 20) buf = ""; // one line is never this long
      }
    } catch (_) { /* the node went away: retry */ }
    await new Promise((r) => setTimeout(r, 2000));
  }
}

function start() {
  buildHead();
  $("conn-scroll").addEventListener("scroll", () => requestAnimationFrame(renderRows), { passive: true });
  $("conn-filter").addEventListener("input", (e) => { table.filter = e.target.value; refreshView(); });
  $("connect-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const p = $("connect-point").value.trim();
    if (p) act(`connect ${p}`, "PUT", `/network/points/${enc(p)}`);
  });
  $("clear-grey").addEventListener("click", () => act("clear greylists", "DELETE", "/network/greylist"));
  for (const id of ["log-filter", "log-kind", "log-pause"]) $(id).addEventListener("input", renderLog);
  poll();
  streamLog();
}
document.addEventListener("DOMContentLoaded", start);
