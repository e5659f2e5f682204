// The swarm's page: one row per node, each linking to the node's own
// dashboard. Polls /swarm; peer-supplied text goes through textContent.
"use strict";

const $ = (id) => document.getElementById(id);
const cell = (text, cls) => {
  const td = document.createElement("td");
  td.textContent = text;
  if (cls) td.className = cls;
  return td;
};
const rate = (b) => (b >= 1048576 ? (b / 1048576).toFixed(1) + " MiB/s" : b >= 1024 ? (b / 1024).toFixed(1) + " KiB/s" : b + " B/s");
const size = (b) => { b = Number(b); return b >= 1048576 ? (b / 1048576).toFixed(1) + " MiB" : b >= 1024 ? (b / 1024).toFixed(1) + " KiB" : b + " B"; };

async function poll() {
  try {
    const res = await fetch("/swarm", { cache: "no-store" });
    if (!res.ok) throw new Error(`HTTP ${res.status}`);
    const s = await res.json();
    const within = s.nodes.filter((n) => n.connections >= s.min_threshold && n.connections <= s.max_threshold).length;
    $("summary").textContent = `${s.nodes.length} nodes, ${within} within their connection thresholds [${s.min_threshold}, ${s.max_threshold}], up ${Math.floor(s.uptime_s)} s`;
    $("swarm-body").replaceChildren(...s.nodes.map((n) => {
      const tr = document.createElement("tr");
      tr.dataset.peer = n.peer_id;
      const link = document.createElement("a");
      link.href = n.rpc;
      link.textContent = `node ${n.index}`;
      link.setAttribute("aria-label", `Dashboard of node ${n.index}`);
      const linkCell = document.createElement("td");
      linkCell.append(link);
      tr.append(cell(String(n.index), "num"), cell(n.peer_id, "mono"), cell(n.listening || "", "mono"),
        cell(String(n.connections), "num"), cell(rate(n.stat.current_inflow), "num"),
        cell(rate(n.stat.current_outflow), "num"), cell(size(n.stat.total_recv), "num"),
        cell(size(n.stat.total_sent), "num"), linkCell);
      return tr;
    }));
    $("status").textContent = "live";
    $("status").classList.remove("bad");
  } catch (e) {
    $("status").textContent = `disconnected (${e.message}), retrying`;
    $("status").classList.add("bad");
  }
  setTimeout(poll, 2000);
}
document.addEventListener("DOMContentLoaded", poll);
