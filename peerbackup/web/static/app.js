// The dashboard: a client of the daemon's admin API, like the command line.
// The token arrives once in the URL fragment (never sent to a server, never in a cookie), is kept in
// sessionStorage and sent in the X-Peerbackup-Token header. Live data comes as server-sent events read
// from a fetch stream (EventSource cannot send a header). Every value from the daemon goes into the
// page as text, never as HTML.
"use strict";

const TOKEN_KEY = "peerbackup-token";
const HEADER = "X-Peerbackup-Token";

(function takeToken() {
  const m = location.hash.match(/token=([A-Za-z0-9_\-]+)/);
  if (m) {
    sessionStorage.setItem(TOKEN_KEY, m[1]);
    history.replaceState(null, "", location.pathname + "#/office");
  }
})();

const state = { running: {}, listeners: new Set(), names: {} };

// ---- small helpers ------------------------------------------------------------------------------

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (v !== undefined && v !== null && v !== false) el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

function bytes(n) {
  if (n === null || n === undefined) return "–";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return `${n.toFixed(i ? 1 : 0)} ${units[i]}`;
}

function when(t) {
  if (!t) return "–";
  const d = typeof t === "number" ? new Date(t * 1000) : new Date(t);
  return d.toLocaleString();
}

function badge(text) { return h("span", { class: `badge state-${text}` }, text); }

function toast(message, isError) {
  const el = document.getElementById("toast");
  el.textContent = message;
  el.className = isError ? "error" : "";
  el.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { el.hidden = true; }, isError ? 9000 : 4000);
}

async function api(method, path, body) {
  const headers = { [HEADER]: sessionStorage.getItem(TOKEN_KEY) || "" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const r = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const data = await r.json().catch(() => ({}));
  if (!r.ok) throw new Error(data.error || `${r.status} ${r.statusText}`);
  return data;
}

function name(id) { return state.names[id] || id; }

// A button that changes the office's configuration: asks first, then posts, says what happened, redraws.
// Undoing never deletes data (docs/nodes.md); the question says what goes and what stays.
function confirmed(label, action, question, path, body, done) {
  return h("button", { class: "plain", "data-action": action, onclick: async (ev) => {
    if (!window.confirm(question)) return;
    ev.target.disabled = true;
    try {
      await api("POST", path, body);
      toast(done);
      render();
    } catch (e) { toast(e.message, true); ev.target.disabled = false; }
  } }, label);
}

// An event's fields as "key=value", peer ids by name, long ids cut: readable at a glance.
function details(fields) {
  return Object.entries(fields || {}).filter(([k]) => !["node", "job", "failed"].includes(k)).map(([k, v]) => {
    if (Array.isArray(v)) v = v.map((x) => String(x).slice(0, 12)).join(",");
    else if (["agent", "coordinator"].includes(k)) v = name(v);
    else if (k === "deadline" || k === "expires") v = when(v);
    return `${k}=${v}`;
  }).join("  ");
}

// ---- the live stream ----------------------------------------------------------------------------

async function stream() {
  const live = document.getElementById("live");
  for (;;) {
    try {
      const r = await fetch("/v1/stream", { headers: { [HEADER]: sessionStorage.getItem(TOKEN_KEY) || "" } });
      if (!r.ok) throw new Error(`${r.status}`);
      live.textContent = "live";
      live.className = "badge live";
      const reader = r.body.getReader();
      const decoder = new TextDecoder();
      let buf = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += decoder.decode(value, { stream: true });
        let cut;
        while ((cut = buf.indexOf("\n\n")) >= 0) {
          const block = buf.slice(0, cut);
          buf = buf.slice(cut + 2);
          let kind = "message", data = "";
          for (const line of block.split("\n")) {
            if (line.startsWith("event: ")) kind = line.slice(7);
            else if (line.startsWith("data: ")) data += line.slice(6);
          }
          if (!data) continue;
          const obj = JSON.parse(data);
          if (kind === "jobs") state.running = obj;
          for (const fn of state.listeners) fn(kind, obj);
        }
      }
    } catch (e) { /* the daemon restarted or went away: try again */ }
    live.textContent = "offline";
    live.className = "badge";
    await new Promise((r) => setTimeout(r, 2000));
  }
}

function listen(fn) { state.listeners.add(fn); return () => state.listeners.delete(fn); }

// ---- pages --------------------------------------------------------------------------------------

async function pageOffice(main) {
  const [st, peers, storage, alerts] = await Promise.all([api("GET", "/v1/status"), api("GET", "/v1/peers"),
    api("GET", "/v1/storage").catch((e) => ({ error: e.message })),
    api("GET", "/v1/alerts").catch(() => ({ incidents: [] }))]);
  const incidents = (alerts.incidents || []).slice(0, 10).map((i) => h("tr", { "data-incident": i.kind },
    h("td", {}, when(i.first)), h("td", {}, i.kind), h("td", {}, i.message),
    h("td", {}, i.resolved ? badge("done") : badge("open")),
    h("td", {}, (i.delivered || []).join(", ") || Object.keys(i.errors || {}).map((c) => `${c} failed`).join(", "))));
  const used = {};
  for (const p of storage.peers || []) used[p.peer_id] = p;
  const rows = peers.map((p) => h("tr", { "data-peer": p.name },
    h("td", {}, p.name, p.self ? h("span", { class: "muted" }, " (this peer)") : ""),
    h("td", {}, badge(p.state)), h("td", {}, p.address || "–"), h("td", {}, p.roles.join(", ")),
    h("td", {}, p.coordinator ? `coordinator (term ${st.term})` : ""),
    h("td", { class: "num" }, bytes((used[p.peer_id] || {}).used)),
    h("td", { class: "num" }, (used[p.peer_id] || {}).quota ? bytes(used[p.peer_id].quota) : "–")));
  main.replaceChildren(
    h("h1", {}, `Office ${st.office}`),
    h("div", { class: "card kv" },
      h("span", { class: "muted" }, "This peer"), h("span", {}, `${st.name} (${st.peer_id})`),
      h("span", { class: "muted" }, "Coordinator"), h("span", { id: "coordinator" },
        st.coordinator ? `${name(st.coordinator)} (term ${st.term})` : "none yet"),
      h("span", { class: "muted" }, "Under-replicated files"),
      h("span", {}, storage.error ? storage.error : storage.under_replicated === null
        ? "not checked yet (no repair round on this peer since it started)" : String(storage.under_replicated))),
    h("h2", {}, "Peers"),
    h("table", { id: "peers" }, h("thead", {}, h("tr", {}, ["Peer", "State", "Address", "Roles", "Role now",
      "Storage used", "Quota"].map((t) => h("th", {}, t)))), h("tbody", {}, rows)),
    h("h2", {}, "Alerts"),
    incidents.length ? h("table", { id: "alerts" }, h("thead", {}, h("tr", {}, ["Since", "Kind", "What", "State",
      "Sent to"].map((t) => h("th", {}, t)))), h("tbody", {}, incidents))
      : h("p", { class: "muted" }, alerts.config && (alerts.config.channels || []).length
        ? "No incident." : "No alert channel configured: peerbackup alerts set (docs/alerts.md)."));
}

async function pageNodes(main) {
  const nodes = await api("GET", "/v1/ui/nodes");
  const cards = nodes.map((n) => {
    const sched = n.schedules.map((s) => {
      const what = s.cron ? `cron ${s.cron} (${s.tz})` : `every ${s.every} s`;
      const ref = { node: n.node, id: s.id };
      return h("tr", { "data-schedule": s.id },
        h("td", {}, what), h("td", {}, when(s.last_run)), h("td", {}, s.last_result ? badge(s.last_result) : "–"),
        h("td", {}, s.paused ? badge("paused") : when(s.next_run)),
        h("td", {}, s.paused
          ? confirmed("Resume", "resume", `Resume schedule ${s.id} (${what}) of ${n.node}? The slots missed while it ` +
            "was paused are not run.", "/v1/schedules/resume", ref, `Schedule ${s.id} resumed`)
          : confirmed("Pause", "pause", `Pause schedule ${s.id} (${what}) of ${n.node}? No backup runs for it, and ` +
            "no alert fires, until it is resumed.", "/v1/schedules/pause", ref, `Schedule ${s.id} paused`),
        " ", confirmed("Remove", "remove", `Remove schedule ${s.id} (${what}) of ${n.node}? Its snapshots stay.`,
          "/v1/schedules/remove", ref, `Schedule ${s.id} removed`)));
    });
    const datasets = n.datasets.map((d) => h("li", { "data-dataset": d.path }, d.path, " ",
      confirmed("Remove", "remove-dataset", `Remove data set ${d.path} from ${n.node}? It is no longer backed up; ` +
        "its snapshots stay.", "/v1/datasets/remove", { node: n.node, path: d.path }, `${d.path} removed from ${n.node}`)));
    const removeNode = confirmed("Remove node", "remove-node", `Remove backup node ${n.node}? No more jobs; its ` +
      "snapshots and keys stay, and restore-config brings it back during the grace (7 days by default).",
      "/v1/nodes/remove", { node: n.node }, `${n.node} removed (restorable)`);
    const backup = h("button", { "data-action": "backup", onclick: async (ev) => {
      ev.target.disabled = true;
      try {
        const out = await api("POST", "/v1/backup", { node: n.node });
        toast(`Backup of ${n.node} dispatched to ${out.agent_name || out.agent}`);
        location.hash = `#/job/${encodeURIComponent(out.job)}`;
      } catch (e) { toast(e.message, true); ev.target.disabled = false; }
    } }, "Back up now");
    const grantForm = h("form", { class: "inline", onsubmit: async (ev) => {
      ev.preventDefault();
      const agent = ev.target.agent.value.trim();
      const path = ev.submitter && ev.submitter.value === "revoke" ? "/v1/grants/revoke" : "/v1/grants";
      const id = Object.keys(state.names).find((k) => state.names[k] === agent) || agent;  // a name or an id
      try {
        await api("POST", path, { node: n.node, agents: [id] });
        toast(`${path.endsWith("revoke") ? "Revoked" : "Granted"} ${agent} for ${n.node}`);
        render();
      } catch (e) { toast(e.message, true); }
    } }, h("label", {}, "agent ", h("input", { name: "agent", placeholder: "peer name or id", required: true })),
    h("button", { class: "plain", value: "grant" }, "Grant"), h("button", { class: "plain", value: "revoke" }, "Revoke"));
    const schedForm = h("form", { class: "inline", onsubmit: async (ev) => {
      ev.preventDefault();
      const f = ev.target;
      const body = { node: n.node, window: Number(f.window.value) * 3600 };
      if (f.kind.value === "cron") { body.cron = f.spec.value; body.tz = f.tz.value || "UTC"; }
      else body.every = Number(f.spec.value);
      try {
        await api("POST", "/v1/schedules", body);
        toast(`Schedule added to ${n.node}`);
        render();
      } catch (e) { toast(e.message, true); }
    } }, h("label", {}, "kind ", h("select", { name: "kind" }, h("option", { value: "cron" }, "cron"),
      h("option", { value: "every" }, "every (s)"))),
    h("label", {}, "when ", h("input", { name: "spec", placeholder: "0 2 * * *  or  3600", required: true })),
    h("label", {}, "time zone ", h("input", { name: "tz", value: Intl.DateTimeFormat().resolvedOptions().timeZone })),
    h("label", {}, "window (hours) ", h("input", { name: "window", type: "number", min: "0.1", step: "0.1", value: "4",
      size: 4 })),
    h("button", { class: "plain" }, "Add schedule"));
    return h("section", { class: "card", "data-node": n.node },
      h("h2", {}, n.node, " ", backup, " ", h("a", { href: `#/snapshots/${encodeURIComponent(n.node)}` },
        `${n.snapshots ?? "?"} snapshot(s)`), " ", removeNode),
      h("div", { class: "kv" },
        h("span", { class: "muted" }, "Data sets"), datasets.length ? h("ul", { class: "datasets" }, datasets)
          : h("span", {}, "none"),
        h("span", { class: "muted" }, "Agents"), h("span", { class: "agents" }, n.agents.map(name).sort().join(", ") || "none"),
        h("span", { class: "muted" }, "Retention"), h("span", {},
          Object.entries(n.policy).map(([k, v]) => `keep ${v} ${k}`).join(", ") || "keep everything"),
        h("span", { class: "muted" }, "Replication"), h("span", {}, `${n.replicas} copies`,
          n.under_replicated ? h("span", { class: "error" }, `, ${n.under_replicated} file(s) short`) : ", complete"),
        h("span", { class: "muted" }, "Last result"), h("span", {}, n.last_result ? badge(n.last_result) : "–",
          " ", when(n.last_run), n.last_job ? [" ", h("a", { href: `#/job/${encodeURIComponent(n.last_job)}` },
            "details")] : null,
          n.last_result === "partial" ? h("ul", { class: "warn last-failed" },
            failedItems({ failed: n.last_failed, failures: n.last_failures })) : null)),
      h("table", {}, h("thead", {}, h("tr", {}, ["Schedule", "Last run", "Result", "Next run", ""].map((t) => h("th", {}, t)))),
        h("tbody", {}, sched.length ? sched : h("tr", {}, h("td", { colspan: 5, class: "muted" },
          "No schedule: back it up by hand, or add one below.")))),
      grantForm, schedForm);
  });
  const removed = (await api("GET", "/v1/nodes?removed=1")).map((n) => h("tr", { "data-removed": n.node },
    h("td", {}, n.node), h("td", {}, when(n.removed)),
    h("td", {}, n.purged ? `purged ${when(n.purged)}` : when(n.restorable_until)),
    h("td", {}, !n.purged && Date.now() / 1000 < n.restorable_until ? confirmed("Restore configuration", "restore-node",
      `Bring backup node ${n.node} back with its data sets, schedules, policy and grants as they were?`,
      "/v1/nodes/restore-config", { node: n.node }, `${n.node} restored`) : "")));
  main.replaceChildren(h("h1", {}, "Backup nodes"), ...(cards.length ? cards : [h("p", { class: "muted" },
    "No backup node yet: peerbackup node add NAME on an admin.")]),
  ...(removed.length ? [h("h2", {}, "Removed nodes"), h("table", { id: "removed" }, h("thead", {}, h("tr", {},
    ["Node", "Removed", "Restorable until", ""].map((t) => h("th", {}, t)))), h("tbody", {}, removed))] : []));
}

async function pageJob(main, job) {
  const bar = h("div", {});
  const text = h("div", { id: "progress-text" }, "waiting for the agent…");
  const events = h("tbody", {});
  const failedList = h("ul", { id: "failed", class: "warn" });
  main.replaceChildren(h("h1", {}, `Job ${job}`), h("div", { class: "card" },
    h("div", { class: "progress" }, bar), text, failedList), h("h2", {}, "Events"),
    h("table", {}, h("thead", {}, h("tr", {}, ["Time", "Writer", "Event", "Details"].map((t) => h("th", {}, t)))), events));
  let finished = false;
  const show = (p) => {
    if (finished) return;
    if (p.files === undefined) {  // dispatched, no heartbeat from the agent yet
      text.textContent = `started on ${name(p.agent)}, counting what to back up…`;
      return;
    }
    // A total of -1 is one the agent did not count (a retention job): no percentage, no ETA.
    const total = p.bytes_total > 0 ? p.bytes_total : null;
    const pct = total ? Math.min(100, Math.floor(100 * p.bytes / total)) : 0;
    bar.style.width = `${pct}%`;
    const eta = p.rate > 0 && total ? Math.max(0, Math.round((total - p.bytes) / p.rate)) : null;
    text.textContent = `${pct} % · ${p.files} of ${p.files_total >= 0 ? p.files_total : "?"} files · ` +
      `${bytes(p.bytes)} of ${bytes(total)} · ${bytes(p.rate)}/s` + (eta !== null ? ` · ETA ${eta} s` : "") +
      (p.waiting ? " · waiting for another job on the agent" : "");
  };
  const addEvent = (e) => {
    events.append(h("tr", {}, h("td", {}, when(e.time)), h("td", {}, e.writer_name || e.writer), h("td", {}, e.kind),
      h("td", {}, details(e.fields))));
    if (e.kind === "job.done" || e.kind === "job.failed") {
      finished = true;
      const ok = e.kind === "job.done";
      const partial = ok && e.fields.result === "partial";  // saved, without some files: amber, with the paths
      bar.style.width = ok ? "100%" : bar.style.width;
      const snaps = `snapshot ${(e.fields.snapshots || []).map((s) => s.slice(0, 8)).join(", ")}`;
      text.textContent = partial ? `partial · done by ${e.writer_name}: ${snaps}, but ${e.fields.failures} ` +
        "file(s) or data set(s) could not be backed up"
        : ok ? `100 % · done by ${e.writer_name}: ${snaps}` : `failed on ${e.writer_name}: ${e.fields.reason}`;
      text.className = partial ? "warn" : ok ? "" : "error";
      if (partial) failedList.replaceChildren(...failedItems(e.fields));
    }
  };
  const node = (await api("GET", `/v1/ui/job?job=${encodeURIComponent(job)}`)).node;
  for (const e of await api("GET", `/v1/log?log=${encodeURIComponent("node:" + node)}`)) {
    if (e.fields.job === job) addEvent(e);
  }
  if (state.running[job]) show(state.running[job]);
  return listen((kind, obj) => {
    if (kind === "jobs" && obj[job]) show(obj[job]);
    if (kind === "event" && obj.fields && obj.fields.job === job) addEvent(obj);
  });
}

// A partial job's failing paths, each with its reason, and how many more it counted.
function failedItems(fields) {
  const failed = fields.failed || [];
  const items = failed.map((f) => h("li", {}, h("span", { class: "badge state-partial" }, f.reason), " ", f.path));
  const more = (fields.failures || 0) - failed.length;
  return more > 0 ? [...items, h("li", { class: "muted" }, `… and ${more} more`)] : items;
}

async function pageLog(main, params) {
  const nodes = await api("GET", "/v1/nodes");
  const f = { node: params.get("node") || (nodes[0] && nodes[0].node) || "", agent: params.get("agent") || "",
    kind: params.get("kind") || "", since: params.get("since") || "" };
  const rows = h("tbody", {});
  const form = h("form", { class: "inline", onsubmit: (ev) => {
    ev.preventDefault();
    const q = new URLSearchParams();
    for (const k of ["node", "agent", "kind", "since"]) if (ev.target[k].value) q.set(k, ev.target[k].value);
    location.hash = `#/log?${q}`;
  } },
  h("label", {}, "node ", h("select", { name: "node" }, nodes.map((n) => h("option", { value: n.node,
    selected: n.node === f.node }, n.node)))),
  h("label", {}, "agent ", h("input", { name: "agent", placeholder: "agent", value: f.agent })),
  h("label", {}, "kind ", h("input", { name: "kind", placeholder: "kind, e.g. job.done", value: f.kind })),
  h("label", {}, "since ", h("input", { name: "since", type: "datetime-local", value: f.since })),
  h("button", { class: "plain" }, "Filter"));
  const matches = (e) => (!f.kind || e.kind === f.kind || e.kind.startsWith(f.kind + ".")) &&
    (!f.agent || [e.fields.agent, name(e.fields.agent)].includes(f.agent)) &&
    (!f.since || new Date(e.time) >= new Date(f.since));
  const add = (e) => {
    if (!matches(e)) return;
    rows.prepend(h("tr", { "data-kind": e.kind }, h("td", {}, when(e.time)), h("td", {}, e.writer_name || e.writer),
      h("td", {}, e.kind), h("td", {}, e.fields.agent ? name(e.fields.agent) : ""),
      h("td", {}, e.fields.job ? h("a", { href: `#/job/${encodeURIComponent(e.fields.job)}` }, e.fields.job.slice(0, 16)) : ""),
      h("td", {}, details(e.fields))));
  };
  main.replaceChildren(h("h1", {}, "Event log"), form, h("table", { id: "log" }, h("thead", {}, h("tr", {},
    ["Time", "Writer", "Event", "Agent", "Job", "Details"].map((t) => h("th", {}, t)))), rows));
  if (!f.node) return;
  for (const e of await api("GET", `/v1/log?log=${encodeURIComponent("node:" + f.node)}`)) add(e);
  return listen((kind, obj) => { if (kind === "event" && obj.log === `node:${f.node}`) add(obj); });
}

async function pageSnapshots(main, node) {
  const snaps = await api("GET", `/v1/ui/snapshots?node=${encodeURIComponent(node)}`);
  main.replaceChildren(h("h1", {}, `Snapshots of ${node}`), h("table", { id: "snapshots" }, h("thead", {}, h("tr", {},
    ["Snapshot", "Time", "Agent", "Paths", "Files", "Added", "Retention"].map((t) => h("th", {}, t)))),
  h("tbody", {}, snaps.map((s) => h("tr", {},
    h("td", {}, h("a", { href: `#/browse/${encodeURIComponent(node)}/${s.id}?path=/` }, s.short_id)),
    h("td", {}, when(s.time)), h("td", {}, s.agent_name || s.agent || "–"), h("td", {}, s.paths.join(", ")),
    h("td", { class: "num" }, s.summary.files_new + s.summary.files_changed + s.summary.files_unmodified),
    h("td", { class: "num" }, bytes(s.summary.bytes_added)),
    // What the node's next retention job does with it, per data set: kept by which rules, held, or removed.
    h("td", { class: "retention" }, !s.retention ? "no policy"
      : s.retention.keep ? `kept: ${s.retention.why}` : "removed by the next retention"))))));
}

async function download(node, snap, path) {
  const q = new URLSearchParams({ node, snapshot: snap, path });
  const r = await fetch(`/v1/ui/download?${q}`, { headers: { [HEADER]: sessionStorage.getItem(TOKEN_KEY) || "" } });
  if (!r.ok) throw new Error((await r.json().catch(() => ({}))).error || r.statusText);
  const disposition = r.headers.get("Content-Disposition") || "";
  const m = disposition.match(/filename="([^"]+)"/);
  const a = h("a", { href: URL.createObjectURL(await r.blob()), download: m ? m[1] : "download" });
  document.body.append(a);
  a.click();
  a.remove();
}

async function pageBrowse(main, node, snap, params) {
  const path = params.get("path") || "/";
  const out = await api("GET", `/v1/ui/tree?${new URLSearchParams({ node, snapshot: snap, path })}`);
  const up = path === "/" ? null : path.replace(/\/[^/]+\/?$/, "") || "/";
  const restore = (p) => h("form", { class: "inline", onsubmit: async (ev) => {
    ev.preventDefault();
    try {
      const res = await api("POST", "/v1/ui/restore", { node, snapshot: snap, path: p, target: ev.target.target.value });
      toast(`Restored ${res.files} file(s), ${bytes(res.bytes)} to ${res.target}`);
    } catch (e) { toast(e.message, true); }
  } }, h("label", {}, "to ", h("input", { name: "target", placeholder: `a folder under ${out.restore_root}`,
    value: out.restore_root, size: 40 })),
  h("button", { class: "plain" }, "Restore here"));
  const rows = out.entries.map((e) => {
    const full = (path === "/" ? "" : path) + "/" + e.name;
    return h("tr", { "data-entry": e.name },
      h("td", {}, e.type === "dir" ? h("a", { href: `#/browse/${encodeURIComponent(node)}/${snap}?path=${encodeURIComponent(full)}` },
        e.name + "/") : e.name),
      h("td", { class: "num" }, e.type === "dir" ? "" : bytes(e.size)), h("td", {}, when(e.mtime)),
      h("td", {}, h("button", { class: "plain", "data-action": "download", onclick: () => download(node, snap, full)
        .catch((err) => toast(err.message, true)) }, e.type === "dir" ? "Download .tar" : "Download")));
  });
  main.replaceChildren(h("h1", {}, `${node} · snapshot ${snap.slice(0, 8)} · ${path}`),
    up ? h("p", {}, h("a", { href: `#/browse/${encodeURIComponent(node)}/${snap}?path=${encodeURIComponent(up)}` }, "↑ up")) : "",
    h("div", { class: "card" }, h("span", { class: "muted" }, `Restore ${path} to a folder on this machine (under ${out.restore_root}): `),
      restore(path)),
    h("table", { id: "tree" }, h("thead", {}, h("tr", {}, ["Name", "Size", "Modified", ""].map((t) => h("th", {}, t)))),
      h("tbody", {}, rows)));
}

// ---- routing ------------------------------------------------------------------------------------

let stopPage = null;
let renderSeq = 0;

async function render() {
  // Each page renders into a fresh container that is shown only if no later navigation began meanwhile: a
  // slow page (the office page asks for storage and alerts) must not replace the page the user went on to.
  const seq = ++renderSeq;
  const host = document.getElementById("main");
  const main = h("div", { class: "page" });
  const [route, query] = (location.hash.slice(1) || "/office").split("?");
  const parts = route.split("/").filter(Boolean).map(decodeURIComponent);
  const params = new URLSearchParams(query || "");
  for (const a of document.querySelectorAll("nav a")) a.classList.toggle("active", a.dataset.page === parts[0]);
  if (stopPage) { stopPage(); stopPage = null; }
  if (!sessionStorage.getItem(TOKEN_KEY)) {
    host.replaceChildren(h("p", { class: "error" }, "No token: open the address that `peerbackup ui` prints."));
    return;
  }
  let stop = null;
  try {
    const page = { office: pageOffice, nodes: pageNodes, job: pageJob, log: pageLog, snapshots: pageSnapshots,
      browse: pageBrowse }[parts[0]] || pageOffice;
    const args = parts[0] === "browse" ? [parts[1], parts[2], params] : parts[0] === "log" ? [params] : [parts[1]];
    stop = await page(main, ...args);
  } catch (e) {
    main.replaceChildren(h("p", { class: "error" }, e.message));
  }
  if (seq !== renderSeq) {  // the user has gone on: this page is never shown, and stops listening
    if (typeof stop === "function") stop();
    return;
  }
  if (typeof stop === "function") stopPage = stop;
  host.replaceChildren(main);
}

async function start() {
  try {
    const [st, peers] = await Promise.all([api("GET", "/v1/status"), api("GET", "/v1/peers")]);
    for (const p of peers) state.names[p.peer_id] = p.name;
    document.getElementById("whoami").textContent = `${st.office} · ${st.name}`;
  } catch (e) { /* render says what is wrong */ }
  window.addEventListener("hashchange", render);
  listen((kind) => { if (kind === "peers" && location.hash.startsWith("#/office")) render(); });
  render();
  stream();
}

start();
