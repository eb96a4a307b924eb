// The Tenantry dashboard: a plain ES module, no dependencies.
//
// The API key lives in this tab's session storage only (never in a URL); every request
// carries it as a bearer token, so the server decides what the page may see. All text
// from the server is set as text, never parsed as HTML.

const KEY = "tenantry.key";
const REFRESH_MS = 2000;
const PAGE = 50;
const MAX_EVENTS = 200;

const main = document.getElementById("main");
const who = document.getElementById("who");
const signOut = document.getElementById("sign-out");

/** Stops what the current page runs (timers, streams) when the page changes. */
let leave = () => {};

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else if (value !== undefined && value !== null && value !== false) node.setAttribute(name, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child !== null && child !== undefined) node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

/** The tab's key as a request header (the only place it travels). */
function authorization() {
  return { Authorization: `Bearer ${sessionStorage.getItem(KEY) || ""}` };
}

/** Calls refused so far by any limit. */
function throttledTotal(usage) {
  const t = usage?.throttled || {};
  return (t.rate || 0) + (t.concurrency || 0) + (t.fair_share || 0) + (t.instances || 0);
}

/** Calls the API with the tab's key; resolves to the `result` or throws the error. */
async function api(method, path, body) {
  const headers = authorization();
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const answer = await response.json().catch(() => ({ ok: false, error: { code: "bad_answer", message: response.statusText } }));
  if (!answer.ok) {
    const error = new Error(answer.error?.message || response.statusText);
    error.status = response.status;
    error.code = answer.error?.code;
    throw error;
  }
  return answer.result;
}

/** A latency in milliseconds (negative or missing: none measured). */
function millis(ms) {
  if (ms === undefined || ms === null || ms < 0) return "–";
  return ms < 10 ? `${ms.toFixed(2)} ms` : `${Math.round(ms)} ms`;
}

function bytes(n) {
  if (n === undefined || n === null) return "–";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i += 1; }
  return `${i === 0 ? n : n.toFixed(1)} ${units[i]}`;
}

function section(title, ...children) {
  return el("section", {}, el("h2", {}, title), ...children);
}

/** A table whose columns sort on a click of their header. */
function sortableTable(id, columns, rows, sort) {
  const sorted = [...rows].sort((a, b) => {
    const x = a[sort.by], y = b[sort.by];
    const order = typeof x === "number" && typeof y === "number" ? x - y : String(x).localeCompare(String(y));
    return sort.descending ? -order : order;
  });
  return el("div", { class: "scroll" }, el("table", { id },
    el("thead", {}, el("tr", {}, columns.map(c => el("th", {
      "data-sort": c.key, class: c.numeric ? "num" : null, title: c.hint,
      onclick: () => { sort.descending = sort.by === c.key ? !sort.descending : c.numeric; sort.by = c.key; sort.redraw(); },
    }, c.title)))),
    el("tbody", {}, sorted.map(row => el("tr", { "data-partition": row.partition },
      columns.map(c => el("td", { class: c.numeric ? "num" : null, "data-column": c.key }, c.render ? c.render(row) : row[c.key])))))));
}

// ---------------------------------------------------------------------------------------
// Sign-in.

function signIn(message) {
  leave();
  who.textContent = "";
  signOut.hidden = true;
  const input = el("input", { type: "password", id: "key", placeholder: "API key", autocomplete: "off", required: true });
  const status = el("p", { class: "error", id: "sign-in-error" }, message || "");
  const form = el("form", { class: "inline", id: "sign-in", onsubmit: async event => {
    event.preventDefault();
    sessionStorage.setItem(KEY, input.value.trim());
    try {
      await api("GET", "/v1/whoami");
      route();
    } catch (error) {
      sessionStorage.removeItem(KEY);
      status.textContent = error.status === 401 ? "That key is not known." : error.message;
    }
  } }, input, el("button", { type: "submit" }, "Sign in"));
  main.replaceChildren(section("Sign in", el("p", { class: "muted" }, "An admin key sees every tenant; a tenant key its own."), form, status));
  input.focus();
}

signOut.addEventListener("click", () => {
  sessionStorage.removeItem(KEY);
  location.hash = "#/";
  signIn();
});

// ---------------------------------------------------------------------------------------
// The admin's tenants.

async function tenantsPage() {
  const sort = { by: "partition", descending: false, redraw: () => {} };
  const table = el("div", {}, el("p", { class: "muted" }, "Loading…"));
  const notice = el("div", { id: "onboarded" });
  const name = el("input", { id: "new-tenant", placeholder: "new tenant name", required: true });
  const onboard = el("form", { class: "inline", id: "onboard", onsubmit: async event => {
    event.preventDefault();
    try {
      const made = await api("POST", "/v1/admin/partitions", { partition: name.value.trim() });
      notice.replaceChildren(el("p", {}, `Onboarded ${made.partition}. Its API key, shown this once:`),
        el("p", { class: "secret" }, made.api_key));
      name.value = "";
      await refresh();
    } catch (error) {
      notice.replaceChildren(el("p", { class: "error" }, error.message));
    }
  } }, name, el("button", { type: "submit" }, "Onboard"));
  const cluster = el("div");
  main.replaceChildren(section("Tenants", table), section("Onboard a tenant", onboard, notice), cluster);

  let rows = [];
  const columns = [
    { key: "partition", title: "Tenant", render: r => el("a", { href: `#/tenant/${encodeURIComponent(r.partition)}` }, r.partition) },
    { key: "rate", title: "Calls/s", numeric: true, render: r => r.rate.toFixed(1), hint: "Calls over HTTP per second, the last 10 s" },
    { key: "p99", title: "p99", numeric: true, render: r => millis(r.p99), hint: "99th percentile latency of those calls" },
    { key: "errors", title: "Errors", numeric: true, hint: "Calls answered with a 5xx, the last 10 s" },
    { key: "live", title: "Live instances", numeric: true },
    { key: "in_flight", title: "In flight", numeric: true },
    { key: "admitted", title: "Calls", numeric: true, hint: "Calls admitted since the server started" },
    { key: "throttled", title: "Throttled", numeric: true },
    { key: "stored", title: "Stored", numeric: true, render: r => bytes(r.stored) },
  ];
  sort.redraw = () => table.replaceChildren(sortableTable("tenants", columns, rows, sort));

  async function refresh() {
    const [tenants, usage] = await Promise.all([api("GET", "/v1/admin/partitions"), api("GET", "/v1/admin/usage")]);
    rows = tenants.map(t => {
      const u = usage[t.partition] || {};
      const recent = u.recent_calls || {};
      return {
        partition: t.partition, rate: recent.per_sec || 0, p99: recent.p99_ms ?? -1, errors: recent.errors || 0,
        admitted: u.admitted || 0, live: u.live_instances || 0, in_flight: u.in_flight || 0,
        throttled: throttledTotal(u),
        stored: u.stored?.bytes ?? 0,
      };
    });
    sort.redraw();
  }

  let clustered = true;
  async function showCluster() {
    if (!clustered) return;
    try {
      cluster.replaceChildren(...clusterView(await api("GET", "/v1/admin/cluster")));
    } catch (error) {
      // 404: this server runs without cluster mode; anything else is shown.
      if (error.status === 404) clustered = false;
      else cluster.replaceChildren(section("Cluster", el("p", { class: "error" }, error.message)));
    }
  }

  let timer = null;
  let gone = false;
  leave = () => { gone = true; clearInterval(timer); };
  await refresh();
  await showCluster();
  if (!gone) timer = setInterval(() => Promise.all([refresh(), showCluster()]).catch(() => {}), REFRESH_MS);
}

/** The cluster as one node sees it: its members, the owner of every shard, the pins. */
function clusterView(status) {
  const members = [...(status.members || [])].sort((a, b) => a.node.localeCompare(b.node));
  const owners = status.owners || [];
  const palette = new Map(members.map((m, i) => [m.node, i % 8]));
  const owned = new Map();
  for (const owner of owners) if (owner) owned.set(owner, (owned.get(owner) || 0) + 1);
  const pinOf = shard => (status.pins || []).find(p => shard >= p.first_shard && shard < p.first_shard + p.shards);
  // A shard whose owner is no live member is drawn grey and counted with the unowned.
  const unowned = owners.filter(o => !o || !palette.has(o)).length;

  const memberRows = members.map(m => el("tr", { "data-node": m.node },
    el("td", {}, el("span", { class: `swatch owner-${palette.get(m.node)}` }), " ", m.node, m.node === status.node ? " (this node)" : ""),
    el("td", { class: `state-${m.state === "serving" ? "active" : "backing_off"}` }, m.state),
    el("td", {}, m.address),
    el("td", { class: "num", "data-column": "owned" }, owned.get(m.node) || 0)));
  const grid = el("div", { class: "shards", id: "shard-grid" }, owners.map((owner, shard) => {
    const pin = pinOf(shard);
    const title = `shard ${shard}: ${owner || "no owner"}${pin ? ` (pinned: ${pin.partition})` : ""}`;
    const colour = owner && palette.has(owner) ? `owner-${palette.get(owner)}` : "owner-none";
    return el("span", { class: `shard ${colour}${pin ? " pinned" : ""}`, title, "data-owner": owner || "" });
  }));
  const pins = (status.pins || []).map(p => el("tr", {},
    el("td", {}, p.partition), el("td", {}, p.nodes.join(", ")), el("td", {}, p.exclusive ? "yes" : "no"),
    el("td", { class: "num" }, `${p.first_shard}–${p.first_shard + p.shards - 1}`), el("td", {}, p.state),
    el("td", {}, (p.waiting || []).join(", "))));
  return [
    section(`Cluster: ${members.length} members`,
      el("p", { class: status.serving ? "muted" : "error" },
        `This is ${status.node}, ${status.serving ? "serving" : "not serving (its lease does not hold)"}; it serves ${Object.keys(status.shards || {}).length} shards.`),
      el("div", { class: "scroll" }, el("table", { id: "members" },
        el("thead", {}, el("tr", {}, el("th", {}, "Node"), el("th", {}, "State"), el("th", {}, "Address"), el("th", { class: "num" }, "Shards owned"))),
        el("tbody", {}, memberRows)))),
    section(`Shard owners: ${owners.length} shards${unowned ? `, ${unowned} without a live owner` : ""}`,
      el("p", { class: "muted" }, "Each square is a shard, coloured by its owner; outlined squares belong to pinned tenants."),
      grid),
    pins.length ? section("Pinned tenants", el("div", { class: "scroll" }, el("table", { id: "pins" },
      el("thead", {}, el("tr", {}, ["Tenant", "Nodes", "Exclusive", "Shards", "State", "Waiting on"].map(h => el("th", {}, h)))),
      el("tbody", {}, pins)))) : null,
  ].filter(Boolean);
}

// ---------------------------------------------------------------------------------------
// One tenant.

async function tenantPage(partition, admin) {
  const base = `/v1/partitions/${encodeURIComponent(partition)}`;
  const usageBox = el("div", { class: "cards", id: "usage" });
  const components = el("div", { id: "components" });
  const agents = el("div", { id: "agents" });
  const events = el("ul", { id: "events" });
  const search = el("input", { id: "agent-search", placeholder: "search keys", oninput: () => { page = 0; drawAgents(); } });
  const actions = el("div");
  const podBox = el("div", { id: "pod" });
  let keyed = [];
  let page = 0;

  main.replaceChildren(
    el("h2", {}, `Tenant ${partition}`),
    section("Usage", usageBox),
    section("Components", components),
    section("Agents and pods", search, agents),
    podBox,
    section("Live events", events),
    actions,
  );

  function card(title, value) {
    return el("div", { class: "card" }, el("span", { class: "muted" }, title), el("b", {}, value));
  }

  function statusCell(status) {
    const state = status?.state || "unknown";
    const reason = typeof status?.reason === "string" ? status.reason : status?.reason?.error;
    return el("span", { class: `state-${state}` }, state, reason ? ` — ${reason}` : "");
  }

  function drawAgents() {
    const filter = search.value.trim().toLowerCase();
    const shown = keyed.filter(k => `${k.manager} ${k.key}`.toLowerCase().includes(filter));
    const pages = Math.max(1, Math.ceil(shown.length / PAGE));
    page = Math.min(page, pages - 1);
    const slice = shown.slice(page * PAGE, (page + 1) * PAGE);
    agents.replaceChildren(
      el("div", { class: "scroll" }, el("table", { id: "agent-table" },
        el("thead", {}, el("tr", {}, el("th", {}, "Manager"), el("th", {}, "Key"), el("th", {}, "State"), admin ? el("th", {}, "") : null)),
        el("tbody", {}, slice.map(k => el("tr", {},
          el("td", {}, k.manager),
          el("td", {}, k.pod ? el("button", { type: "button", class: "link", "data-pod": k.key, onclick: () => showPod(k.manager, k.key) }, k.key) : k.key),
          el("td", {}, statusCell(k.status)),
          admin ? el("td", {}, el("button", { type: "button", class: "danger", onclick: () => stopAgent(k) }, "Stop")) : null))))),
      el("p", { class: "muted" }, `${shown.length} live or backing off · page ${page + 1} of ${pages} `,
        el("button", { type: "button", disabled: page === 0, onclick: () => { page -= 1; drawAgents(); } }, "Previous"), " ",
        el("button", { type: "button", disabled: page >= pages - 1, onclick: () => { page += 1; drawAgents(); } }, "Next")));
  }

  /** A pod's nodes as a tree (by the parent each should have), nested pods within. */
  async function podTree(manager, key, depth) {
    const snap = await api("GET", `${base}/pods/${encodeURIComponent(manager)}/${encodeURIComponent(key)}`);
    const id = (m, k) => JSON.stringify([m, k]);
    const children = new Map();
    for (const node of snap.nodes) {
      const parent = id(node.expected_parent.manager, node.expected_parent.key);
      if (!children.has(parent)) children.set(parent, []);
      children.get(parent).push(node);
    }
    const branch = async parent => el("ul", {}, await Promise.all((children.get(parent) || []).map(async node => {
      const nested = node.kind === "pod" && node.status !== "stopped" && depth < 4
        ? await podTree(node.manager, node.key, depth + 1).catch(() => null) : null;
      return el("li", { "data-node": node.name, "data-status": node.status },
        `${node.name} (${node.kind}) `, el("span", { class: `node-${node.status}` }, node.status.replaceAll("_", " ")),
        nested, await branch(id(node.manager, node.key)));
    })));
    return el("div", { class: "pod-tree" },
      el("strong", {}, `pod ${snap.pod.manager}/${snap.pod.key} · topology v${snap.topology_version}`),
      await branch(id(snap.pod.manager, snap.pod.key)));
  }

  async function showPod(manager, key) {
    try {
      podBox.replaceChildren(section(`Pod ${key}`, await podTree(manager, key, 0)));
    } catch (error) {
      podBox.replaceChildren(section(`Pod ${key}`, el("p", { class: "error" }, error.message)));
    }
  }

  async function stopAgent(k) {
    try {
      await api("DELETE", `${base}/instances/${encodeURIComponent(k.manager)}/${encodeURIComponent(k.key)}`);
      await refresh();
    } catch (error) {
      actions.replaceChildren(section("Error", el("p", { class: "error" }, error.message)));
    }
  }

  async function restart(name) {
    try {
      await api("POST", `/v1/admin/instances/${encodeURIComponent(name)}/restart`);
      await refresh();
    } catch (error) {
      actions.replaceChildren(section("Error", el("p", { class: "error" }, error.message)));
    }
  }

  async function refresh() {
    const [usage, instances] = await Promise.all([api("GET", `${base}/usage`), api("GET", `${base}/instances`)]);
    const recent = usage.recent_calls || {};
    usageBox.replaceChildren(
      card("Calls/s", (recent.per_sec || 0).toFixed(1)),
      card("p50 / p99", `${millis(recent.p50_ms)} / ${millis(recent.p99_ms)}`),
      card(`Errors, last ${recent.window_secs || 10} s`, recent.errors || 0),
      card(`Rejected, last ${recent.window_secs || 10} s`, recent.rejected || 0),
      card("Live instances", usage.live_instances),
      card("In flight", usage.in_flight),
      card("Calls", usage.admitted),
      card("Throttled", throttledTotal(usage)),
      card("Stored", bytes(usage.stored?.bytes)),
    );
    components.replaceChildren(el("div", { class: "scroll" }, el("table", { id: "component-table" },
      el("thead", {}, el("tr", {}, el("th", {}, "Name"), el("th", {}, "Factory"), el("th", {}, "Status"), admin ? el("th", {}, "") : null)),
      el("tbody", {}, (instances.components || []).map(c => el("tr", {},
        el("td", {}, c.name), el("td", {}, c.factory), el("td", {}, statusCell(c.status)),
        admin ? el("td", {}, c.status?.state === "active" ? "" : el("button", { type: "button", onclick: () => restart(c.name) }, "Restart")) : null))))));
    keyed = instances.keyed || [];
    drawAgents();
  }

  function offboardPanel() {
    const purge = el("input", { type: "checkbox", id: "purge" });
    const confirmBox = el("div");
    const ask = () => confirmBox.replaceChildren(el("div", { class: "confirm", id: "confirm-offboard" },
      el("p", {}, `Offboard ${partition}? Its keys stop working and its instances stop. `,
        purge.checked ? "Its data is purged: checkpoints, storage, credentials and config are deleted for good." : "Its data is kept and can be purged later."),
      el("button", { type: "button", class: "danger", id: "confirm-offboard-yes", onclick: async () => {
        try {
          await api("DELETE", `/v1/admin/partitions/${encodeURIComponent(partition)}${purge.checked ? "?purge=true" : ""}`);
          location.hash = "#/";
        } catch (error) {
          confirmBox.replaceChildren(el("p", { class: "error" }, error.message));
        }
      } }, `Offboard ${partition}`), " ",
      el("button", { type: "button", onclick: () => confirmBox.replaceChildren() }, "Cancel")));
    return section("Offboard", el("label", {}, purge, " purge its data"), " ",
      el("button", { type: "button", class: "danger", id: "offboard", onclick: ask }, "Offboard…"), confirmBox);
  }
  if (admin) actions.replaceChildren(offboardPanel());

  // Whatever this page starts stops when it is left, even before it finished loading.
  const abort = new AbortController();
  let timer = null;
  leave = () => { abort.abort(); clearInterval(timer); };

  // The live events: a fetch that reads the stream, so the key goes in a header.
  streamEvents(`${base}/events`, abort.signal, events).catch(error => {
    if (!abort.signal.aborted) events.dataset.state = `closed: ${error.message}`;
  });

  await refresh();
  if (!abort.signal.aborted) timer = setInterval(() => refresh().catch(() => {}), REFRESH_MS);
}

/** One server-sent message: its type and its data lines joined. */
function parseMessage(block) {
  let kind = "message";
  const data = [];
  for (const line of block.split("\n")) {
    const colon = line.indexOf(":");
    if (colon === 0) continue; // a comment (keep-alive)
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "event") kind = value;
    else if (field === "data") data.push(value);
  }
  return { kind, data: data.join("\n") };
}

/** Reads an event stream into `list` until `signal` aborts or the stream ends. */
async function streamEvents(url, signal, list) {
  const response = await fetch(url, {
    headers: authorization(), signal,
  });
  if (!response.ok || !response.body) {
    const answer = await response.json().catch(() => null);
    list.dataset.state = "refused";
    list.replaceChildren(el("li", { class: "error" }, `Live events unavailable: ${answer?.error?.message || response.statusText}`));
    return;
  }
  list.dataset.state = "open";
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer = (buffer + value).replace(/\r\n?/g, "\n");
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const message = parseMessage(buffer.slice(0, end));
        buffer = buffer.slice(end + 2);
        if (!message.data) continue;
        let item;
        try { item = JSON.parse(message.data); } catch { continue; }
        const text = message.kind === "dropped"
          ? `… ${item.dropped} events dropped (this page fell behind)`
          : `${new Date(item.at_ms).toLocaleTimeString()} ${item.kind} ${item.manager}/${item.key}`
            + Object.entries(item.detail || {})
              .map(([name, value]) => ` ${name}=${typeof value === "object" ? JSON.stringify(value) : value}`).join("");
        list.prepend(el("li", { "data-kind": item.kind || message.kind }, text));
        while (list.children.length > MAX_EVENTS) list.lastChild.remove();
      }
    }
  } finally {
    reader.cancel().catch(() => {});
    list.dataset.state = "closed";
  }
}

// ---------------------------------------------------------------------------------------
// Routing: #/ and #/tenant/<name>.

/** Counts route changes: a route whose page changed while it awaited gives up. */
let generation = 0;

async function route() {
  leave();
  leave = () => {};
  const mine = ++generation;
  if (!sessionStorage.getItem(KEY)) return signIn();
  let me;
  try {
    me = await api("GET", "/v1/whoami");
  } catch (error) {
    if (mine !== generation) return;
    sessionStorage.removeItem(KEY);
    return signIn(error.status === 401 ? "Your key is no longer valid." : error.message);
  }
  if (mine !== generation) return;
  const admin = me.kind === "admin";
  who.textContent = admin ? "admin" : `tenant ${me.partition}`;
  signOut.hidden = false;
  const wanted = /^#\/tenant\/(.+)$/.exec(location.hash);
  try {
    if (wanted) await tenantPage(decodeURIComponent(wanted[1]), admin);
    else if (admin) await tenantsPage();
    else await tenantPage(me.partition, false);
  } catch (error) {
    main.replaceChildren(section("Error", el("p", { class: "error" }, error.message)));
  }
}

window.addEventListener("hashchange", route);
route();
